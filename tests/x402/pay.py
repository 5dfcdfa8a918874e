"""An agent pays the gateway's chat completions with the official Python `x402` package,
unchanged: its httpx client meets the 402, the `exact` SVM scheme signs a USDC transfer to the
treasury (the gateway co-signs it as fee payer and submits it), and the retried request is
answered. Non-streamed, then streamed. Prints what each payment settled as JSON.

Environment: GATEWAY_URL, RPC_URL (the cluster the payer's wallet reads), NETWORK (the CAIP-2
id the gateway offers), ASSET (the token's mint), PAYER_KEYPAIR (a keypair file, as
solana-keygen writes).
"""

import asyncio
import base64
import json
import os
import sys
import time

from solders.keypair import Keypair
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.http.utils import decode_payment_response_header
from x402.mechanisms.svm.exact import register_exact_svm_client
from x402.mechanisms.svm.signers import KeypairSigner


async def main() -> None:
    gateway, network = os.environ["GATEWAY_URL"], os.environ["NETWORK"]
    with open(os.environ["PAYER_KEYPAIR"], encoding="utf8") as file:
        signer = KeypairSigner(Keypair.from_bytes(bytes(json.load(file))))
    client = x402Client()
    # As the package's README registers it; only the RPC it reads the mint through is ours.
    register_exact_svm_client(client, signer, networks=network, rpc_url=os.environ["RPC_URL"])
    # The client pays only the public clusters' USDC unless told otherwise: allow the local
    # stand-in, at most 1 USDC (1,000,000 base units) per payment.
    client.set_spend_controls(
        {
            "allowed_assets": [
                {"network": network, "asset": os.environ["ASSET"], "max_amount_per_payment": "1000000"}
            ]
        }
    )

    results = []
    async with x402HttpxClient(client, timeout=120) as http:
        for stream in (False, True):
            text = f"paid with x402 from Python (stream: {stream})"
            started = time.monotonic()
            response = await http.post(
                f"{gateway}/v1/chat/completions",
                json={
                    "model": "echo",
                    "messages": [{"role": "user", "content": text}],
                    "max_tokens": 32,
                    "stream": stream,
                },
            )
            body = response.text
            milliseconds = round((time.monotonic() - started) * 1000)
            assert response.status_code == 200, f"stream {stream}: {response.status_code} {body}"
            settled = decode_payment_response_header(response.headers["PAYMENT-RESPONSE"])
            assert settled.success, settled
            assert settled.payer == signer.address, settled
            assert settled.network == network, settled
            if stream:
                assert "data: [DONE]" in body, body
                content = "".join(
                    (json.loads(line[6:]).get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                    for line in body.splitlines()
                    if line.startswith("data: {")
                )
                assert text in content, content
            else:
                assert text in response.json()["choices"][0]["message"]["content"], body
            # The gateway's own field: what the payment credited to the payer's balance.
            credited = json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))["credited"]
            print(f"stream {stream}: paid by {settled.transaction}", file=sys.stderr)
            results.append(
                {
                    "stream": stream,
                    "transaction": settled.transaction,
                    "credited": credited,
                    "milliseconds": milliseconds,
                }
            )
    print(json.dumps(results))


asyncio.run(main())
