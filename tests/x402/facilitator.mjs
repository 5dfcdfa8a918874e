// The official x402 facilitator (`@x402/core/facilitator` with `@x402/svm`'s `exact` scheme)
// behind the HTTP API facilitators serve (`GET /supported`, `POST /verify`, `POST /settle`),
// for a gateway configured with `x402.facilitator_url`. Prints its URL as the first line of
// standard output once it listens, then serves until killed.
//
// Environment: RPC_URL (the cluster it sends payments to), NETWORK (the CAIP-2 id it settles),
// FACILITATOR_KEYPAIR (its fee payer's keypair file, as solana-keygen writes).
import { createKeyPairSignerFromBytes } from "@solana/kit";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorSvmSigner } from "@x402/svm";
import { registerExactSvmScheme } from "@x402/svm/exact/facilitator";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const { RPC_URL, NETWORK, FACILITATOR_KEYPAIR } = process.env;
const secret = Uint8Array.from(JSON.parse(readFileSync(FACILITATOR_KEYPAIR, "utf8")));
const keypair = await createKeyPairSignerFromBytes(secret);
const facilitator = new x402Facilitator();
registerExactSvmScheme(facilitator, {
  signer: toFacilitatorSvmSigner(keypair, { defaultRpcUrl: RPC_URL }),
  networks: NETWORK,
});

async function body(request) {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const server = createServer(async (request, response) => {
  const reply = (status, value) => {
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(value));
  };
  try {
    if (request.method === "GET" && request.url === "/supported") {
      return reply(200, facilitator.getSupported());
    }
    if (request.method === "POST" && (request.url === "/verify" || request.url === "/settle")) {
      const { paymentPayload, paymentRequirements } = await body(request);
      const answer =
        request.url === "/verify"
          ? await facilitator.verify(paymentPayload, paymentRequirements)
          : await facilitator.settle(paymentPayload, paymentRequirements);
      return reply(200, answer);
    }
    reply(404, { error: "not found" });
  } catch (error) {
    reply(500, { error: String(error?.message ?? error) });
  }
});
server.listen(0, "127.0.0.1", () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
});
