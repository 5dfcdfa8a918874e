// An agent pays the gateway's chat completions with the official x402 client packages,
// unchanged: `@x402/fetch` meets the 402, `@x402/svm`'s `exact` scheme signs a USDC transfer
// to the treasury (the gateway co-signs it as fee payer and submits it), and the retried
// request is answered. Non-streamed, then streamed. Prints what each payment settled as JSON.
//
// Environment: GATEWAY_URL, RPC_URL (the cluster the payer's wallet reads), NETWORK (the CAIP-2
// id the gateway offers), ASSET (the token's mint), PAYER_KEYPAIR (a keypair file, as
// solana-keygen writes).
import { createKeyPairSignerFromBytes } from "@solana/kit";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const { GATEWAY_URL, RPC_URL, NETWORK, ASSET, PAYER_KEYPAIR } = process.env;
const secret = Uint8Array.from(JSON.parse(readFileSync(PAYER_KEYPAIR, "utf8")));
const signer = await createKeyPairSignerFromBytes(secret);

// The scheme as its README registers it; only the RPC it reads the mint through is ours.
const client = new x402Client();
client.register(NETWORK, new ExactSvmScheme(signer, { rpcUrl: RPC_URL }));
// The client pays only the public clusters' USDC unless told otherwise: allow the local
// stand-in, at most 1 USDC (1,000,000 base units) per payment.
client.setSpendControls({
  allowedAssets: [{ network: NETWORK, asset: ASSET, maxAmountPerPayment: "1000000" }],
});
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

const results = [];
for (const stream of [false, true]) {
  const text = `paid with x402 (stream: ${stream})`;
  const started = performance.now();
  const response = await fetchWithPayment(`${GATEWAY_URL}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "echo",
      messages: [{ role: "user", content: text }],
      max_tokens: 32,
      stream,
    }),
  });
  const body = await response.text();
  const milliseconds = Math.round(performance.now() - started);
  assert.equal(response.status, 200, `stream ${stream}: ${response.status} ${body}`);
  const settled = decodePaymentResponseHeader(response.headers.get("PAYMENT-RESPONSE"));
  assert.equal(settled.success, true, JSON.stringify(settled));
  assert.equal(settled.payer, signer.address);
  assert.equal(settled.network, NETWORK);
  if (stream) {
    assert.match(body, /data: \[DONE\]/);
    const content = body
      .split("\n")
      .filter((line) => line.startsWith("data: {"))
      .map((line) => JSON.parse(line.slice(6)).choices?.[0]?.delta?.content ?? "")
      .join("");
    assert.ok(content.includes(text), `streamed: ${content}`);
  } else {
    const answer = JSON.parse(body);
    assert.ok(answer.choices[0].message.content.includes(text), body);
  }
  console.error(`stream ${stream}: paid by ${settled.transaction}, credited ${settled.credited}`);
  results.push({ stream, transaction: settled.transaction, credited: settled.credited, milliseconds });
}
console.log(JSON.stringify(results));
