"""An independent client of the Cashu rail: Nutshell's wallet (the `cashu` package, another
Cashu implementation than ours) mints ecash at the test mint, and a person with nothing else
uses the official `openai` client with the token in a default header. They get their change
back in `X-Cashu` (and, streaming, in the last chunk), receive it with their wallet, pay the
next call with it, and retry with the amount a 402 names.

Usage: python check.py <gateway base URL> <mint URL>
"""

import asyncio
import sys
import tempfile

import openai
from cashu.wallet.helpers import deserialize_token_from_string, receive
from cashu.wallet.wallet import Wallet

MESSAGES = [{"role": "user", "content": "hello from a Nutshell wallet"}]


async def token_worth(wallet: Wallet, sats: int) -> str:
    proofs, _ = await wallet.select_to_send(wallet.proofs, sats, set_reserved=True)
    return await wallet.serialize_proofs(proofs)


async def main(gateway: str, mint: str) -> None:
    wallet = await Wallet.with_db(url=mint, db=tempfile.mkdtemp(), name="check")
    await wallet.load_mint()
    quote = await wallet.request_mint(200)
    await wallet.mint(200, quote_id=quote.quote)
    assert wallet.available_balance.amount == 200, wallet.available_balance

    # 1. Pay a call with a token in a default header; the change comes back in X-Cashu.
    token = await token_worth(wallet, 100)
    client = openai.OpenAI(
        base_url=f"{gateway}/v1", api_key="unused", default_headers={"X-Cashu": token}
    )
    raw = client.chat.completions.with_raw_response.create(
        model="echo", max_tokens=5, messages=MESSAGES
    )
    completion = raw.parse()
    cost = completion.usage.prompt_tokens + completion.usage.completion_tokens
    change = raw.headers["x-cashu"]
    before = wallet.available_balance.amount
    await receive(wallet, deserialize_token_from_string(change))
    assert wallet.available_balance.amount - before == 100 - cost, (
        wallet.available_balance,
        before,
        cost,
    )

    # 2. Too little: a 402 says how much (NUT-24); paying that much is served.
    small = await token_worth(wallet, 1)
    try:
        client.with_options(default_headers={"X-Cashu": small}).chat.completions.create(
            model="echo", max_tokens=50, messages=MESSAGES
        )
        raise AssertionError("a 1-sat token paid for 50 tokens")
    except openai.APIStatusError as error:
        assert error.status_code == 402, error
        assert error.response.headers["x-cashu"].startswith("creqA")
        needed = error.response.json()["cashu"]["amount"]
    # The refused token was not spent: it is still ours to receive back.
    await receive(wallet, deserialize_token_from_string(small))
    enough = await token_worth(wallet, needed)
    paid = client.with_options(default_headers={"X-Cashu": enough})
    assert paid.chat.completions.create(model="echo", max_tokens=50, messages=MESSAGES).choices

    # 3. A stream: the change is the last chunk's `x_cashu`.
    token = await token_worth(wallet, 60)
    stream = client.with_options(default_headers={"X-Cashu": token}).chat.completions.create(
        model="echo",
        max_tokens=5,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    change, cost = None, None
    for chunk in stream:
        if chunk.usage:
            cost = chunk.usage.prompt_tokens + chunk.usage.completion_tokens
        change = getattr(chunk, "x_cashu", None) or change
    assert change and cost, (change, cost)
    before = wallet.available_balance.amount
    await receive(wallet, deserialize_token_from_string(change))
    assert wallet.available_balance.amount - before == 60 - cost
    print("ok: paid, refunded, refused, retried and streamed with Nutshell's wallet")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].rstrip("/"), sys.argv[2]))
