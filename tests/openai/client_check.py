"""The official `openai` package against the gateway, unchanged except `base_url`.

Run by proxy/tests/openai_python.rs with GATEWAY_BASE_URL, GATEWAY_KEY (funded) and
GATEWAY_POOR_KEY (unfunded). Exits non-zero on the first mismatch.
"""
import os

import openai
from openai import OpenAI

base_url = os.environ["GATEWAY_BASE_URL"]
client = OpenAI(base_url=base_url, api_key=os.environ["GATEWAY_KEY"], max_retries=0)

# Non-streaming.
completion = client.chat.completions.create(
    model="echo", messages=[{"role": "user", "content": "hello from python"}]
)
assert completion.choices[0].message.content == "echo: hello from python", completion
assert completion.usage.total_tokens > 0, completion.usage

# Streaming, with the usage chunk asked for.
text = ""
usage = None
with client.chat.completions.create(
    model="echo",
    messages=[{"role": "user", "content": "streamed words arrive"}],
    stream=True,
    stream_options={"include_usage": True},
) as stream:
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
assert text == "echo: streamed words arrive", text
assert usage is not None and usage.completion_tokens == 4, usage

# Streaming without asking for usage: every chunk has choices (the gateway's own usage
# request is not leaked to a client that indexes choices[0]).
text = ""
for chunk in client.chat.completions.create(
    model="echo", messages=[{"role": "user", "content": "plain stream"}], stream=True
):
    text += chunk.choices[0].delta.content or ""
assert text == "echo: plain stream", text

# Models with prices.
models = {m.id: m for m in client.models.list()}
assert "echo" in models, models

# Errors map onto the package's exception types.
try:
    client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("unknown model accepted")
except openai.NotFoundError as error:
    assert error.status_code == 404

try:
    client_bad = OpenAI(base_url=base_url, api_key="nonsense", max_retries=0)
    client_bad.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("bad key accepted")
except openai.AuthenticationError as error:
    assert error.status_code == 401

poor = OpenAI(base_url=base_url, api_key=os.environ["GATEWAY_POOR_KEY"], max_retries=0)
try:
    poor.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("unfunded request served")
except openai.APIStatusError as error:
    assert error.status_code == 402, error
    assert error.body["code"] == "insufficient_balance", error.body
    assert error.body["needed"] > error.body["available"], error.body

print("openai", openai.__version__, "ok")
