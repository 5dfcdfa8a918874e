// Plays a wallet user against a running local stack (`cargo run -p sandbox`), the way a browser wallet
// app does it: transactions from the committed IDL through @coral-xyz/anchor, the spending
// authorisation signed with tweetnacl (what `signMessage` does), the kind-1573 Request sent to
// the relay, then a wallet login at the gateway, the credit read from /v1/balance and spent on
// the echo model. Exits 0 with a one-line summary, non-zero with the failing step.
//
// Env: RPC_URL (Solana JSON-RPC), optional WS_URL (its websocket; default port + 1), RELAY_URL (ws://…), GATEWAY_URL
// (http://host:port, API under /v1), MACHINE (gateway's Nostr pubkey, hex), SESSION (s tag),
// NAMESPACE_ID, optional TOKENS_PER_SOL (default 1000000).
import anchor from "@coral-xyz/anchor";
import nacl from "tweetnacl";
import { finalizeEvent, generateSecretKey } from "nostr-tools/pure";
import WebSocket from "ws";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { authorizationMessage } from "../idl/authorization.mjs";

const { AnchorProvider, BN, Program, Wallet, web3, utils } = anchor;
const { Keypair, PublicKey, LAMPORTS_PER_SOL } = web3;
const bs58 = utils.bytes.bs58;
const here = dirname(fileURLToPath(import.meta.url));
const idl = JSON.parse(readFileSync(join(here, "../../programs/balance-payment/idl/balance_payment.json"), "utf8"));

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === "") {
    console.error(`wallet check FAILED: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}
const RPC_URL = env("RPC_URL");
const WS_URL = process.env.WS_URL || undefined; // web3.js derives port + 1 when unset
const RELAY_URL = env("RELAY_URL");
const GATEWAY_URL = env("GATEWAY_URL").replace(/\/+$/, "");
const MACHINE = env("MACHINE");
const SESSION = env("SESSION");
const NAMESPACE_ID = BigInt(env("NAMESPACE_ID"));
const TOKENS_PER_SOL = BigInt(env("TOKENS_PER_SOL", "1000000"));
assert.match(MACHINE, /^[0-9a-f]{64}$/, "MACHINE must be a 64-digit lowercase hex Nostr pubkey");

const AIRDROP = 2n * BigInt(LAMPORTS_PER_SOL);
const DEPOSIT = BigInt(LAMPORTS_PER_SOL) / 2n; // 0.5 SOL
const PAY = BigInt(LAMPORTS_PER_SOL) / 100n; // 0.01 SOL
const EXPECTED_TOKENS = (PAY * TOKENS_PER_SOL) / 1_000_000_000n; // what the payment is worth
const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let current = "start";
const step = (name) => {
  current = name;
  console.log(`- ${name}`);
};

/** Polls `probe` until it returns a value other than undefined, or fails after `seconds`. */
async function until(what, seconds, probe) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await sleep(500);
  }
}

/** A gateway call; any status other than `expect` throws with the body. */
async function gateway(method, path, { token, body, expect = 200 } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${GATEWAY_URL}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  }).catch((error) => {
    throw new Error(`${method} ${GATEWAY_URL}${path}: ${error.cause?.message ?? error.message}`);
  });
  const text = await response.text();
  if (response.status !== expect) throw new Error(`${method} ${path}: HTTP ${response.status} (expected ${expect}): ${text}`);
  return { json: JSON.parse(text), headers: response.headers };
}

/** A minimal NIP-01 client: one connection, publish with OK, and a subscription. */
async function relay(url) {
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", (e) => reject(new Error(`relay ${url}: ${e.message}`)));
  });
  const waiting = new Map(); // event id → resolve of its OK
  const listeners = new Map(); // subscription id → callback(event)
  socket.on("message", (data) => {
    const message = JSON.parse(data.toString());
    if (message[0] === "OK") waiting.get(message[1])?.(message);
    else if (message[0] === "EVENT") listeners.get(message[1])?.(message[2]);
    else if (message[0] === "NOTICE" || message[0] === "CLOSED") console.log(`  relay says: ${JSON.stringify(message)}`);
  });
  return {
    async publish(event) {
      const ok = new Promise((resolve, reject) => {
        waiting.set(event.id, resolve);
        setTimeout(() => reject(new Error(`relay gave no OK for ${event.id} within 10 s`)), 10_000).unref();
      });
      socket.send(JSON.stringify(["EVENT", event]));
      const [, , accepted, reason] = await ok;
      if (!accepted) throw new Error(`relay refused the event: ${reason}`);
    },
    subscribe(id, filter, onEvent) {
      listeners.set(id, onEvent);
      socket.send(JSON.stringify(["REQ", id, filter]));
    },
    close: () => socket.close(),
  };
}

/** Waits for `signature` to reach "confirmed" by asking its status, for up to 30 s. Not web3.js's
 * block-height strategy: a busy CI box can let the simnet's 150 short slots pass before the
 * websocket notice arrives, and the airdrop then reads as expired though it landed. */
async function confirmed(connection, signature) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const { value: [status] } = await connection.getSignatureStatuses([signature]);
    if (status?.err) throw new Error(`${signature} failed: ${JSON.stringify(status.err)}`);
    if (status?.confirmationStatus === "confirmed" || status?.confirmationStatus === "finalized") return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${signature} was not confirmed within 30 s`);
}

async function main() {
  step("wallet: fresh keypair, airdrop");
  const wallet = Keypair.generate();
  const user = wallet.publicKey.toBase58();
  const connection = new web3.Connection(RPC_URL, { commitment: "confirmed", wsEndpoint: WS_URL });
  const provider = new AnchorProvider(connection, new Wallet(wallet), { commitment: "confirmed" });
  const program = new Program(idl, provider);
  const airdrop = await connection.requestAirdrop(wallet.publicKey, Number(AIRDROP));
  await confirmed(connection, airdrop);
  assert.equal(BigInt(await connection.getBalance(wallet.publicKey)), AIRDROP, "airdropped balance");

  step("program: register and deposit through the IDL");
  const pda = (...seeds) => PublicKey.findProgramAddressSync(seeds, program.programId)[0];
  const userAccount = pda(Buffer.from("USER"), wallet.publicKey.toBuffer());
  const vault = pda(Buffer.from("VAULT"), wallet.publicKey.toBuffer());
  await program.methods.register().accountsPartial({ user: wallet.publicKey }).rpc();
  await program.methods
    .deposit(new BN(DEPOSIT.toString()))
    .accountsPartial({ depositor: wallet.publicKey, user: wallet.publicKey })
    .rpc();
  const vaultBefore = BigInt(await connection.getBalance(vault));
  assert.ok(vaultBefore >= DEPOSIT, `vault holds the deposit (${vaultBefore} < ${DEPOSIT})`);

  step("program: read the cluster tag from Global and the nonce from the user account");
  const global = await program.account.global.fetch(pda(Buffer.from("GLOBAL")));
  const cluster = bs58.encode(Uint8Array.from(global.cluster));
  const genesis = await connection.getGenesisHash();
  assert.equal(cluster, genesis, "Global.cluster is the cluster's genesis hash (programs/balance-payment/README.md)");
  const account = await program.account.userAccount.fetch(userAccount);
  assert.equal(account.owner.toBase58(), user, "user account owner");
  const nonce = BigInt(account.nonce.toString());

  step("wallet: sign the spending authorisation (ed25519, as signMessage does)");
  const deadline = now() + 600;
  const extraData = new Uint8Array(32);
  const message = authorizationMessage({
    programId: program.programId.toBase58(),
    cluster,
    namespaceId: NAMESPACE_ID,
    user,
    nonce,
    maxAmount: PAY,
    deadline,
    extraData,
  });
  const signature = nacl.sign.detached(Buffer.from(message, "utf8"), wallet.secretKey);
  assert.ok(nacl.sign.detached.verify(Buffer.from(message, "utf8"), signature, wallet.publicKey.toBytes()));

  step("nostr: publish the kind-1573 Request");
  const recoverInfo = JSON.stringify({
    signature: Array.from(signature),
    max_amount: Number(PAY),
    deadline,
    extra_data: Array.from(extraData),
  });
  const payload = JSON.stringify({
    user,
    nonce: Number(nonce),
    recover_info: recoverInfo,
    amount: Number(PAY),
    namespace_id: Number(NAMESPACE_ID),
  });
  const request = finalizeEvent(
    {
      kind: 1573,
      created_at: now(),
      tags: [["s", SESSION], ["p", MACHINE]],
      content: JSON.stringify({
        Request: { to_status: "Working", reason: "UserRequest", initial_request: "0".repeat(64), payload },
      }),
    },
    generateSecretKey(),
  );
  const nostr = await relay(RELAY_URL);
  let status; // the controller's Status reply to our request
  nostr.subscribe("status", { kinds: [1573], "#s": [SESSION], "#p": [MACHINE], since: now() - 5 }, (event) => {
    const content = JSON.parse(event.content);
    if (content.Status?.initial_request === request.id) status = JSON.parse(content.Status.payload);
  });
  await nostr.publish(request);

  step("controller: its Status reply on the relay, and the payment on chain");
  const reply = await until(
    "the controller's Status reply on the relay (it answers nothing to a request its checks refuse: " +
      "wrong namespace, cluster, nonce, signature or amount, unregistered or unfunded wallet)",
    60,
    async () => status,
  );
  nostr.close();
  assert.equal(reply.error, undefined, `controller reported an error: ${reply.error}`);
  assert.equal(BigInt(reply.tokens), EXPECTED_TOKENS, "Status tokens");
  const after = await program.account.userAccount.fetch(userAccount);
  assert.equal(BigInt(after.nonce.toString()), nonce + 1n, "pay bumped the nonce");
  const vaultAfter = BigInt(await connection.getBalance(vault));
  assert.equal(vaultBefore - vaultAfter, PAY, "the vault paid exactly the signed amount");

  step("gateway: wallet login (nonce → signed login text → bearer token)");
  const issued = (await gateway("POST", "/v1/auth/nonce", { body: { wallet: user } })).json;
  const loginText = ["LLM gateway login", `audience: ${issued.audience}`, `wallet: ${user}`, `nonce: ${issued.nonce}`].join("\n");
  assert.equal(issued.message, loginText, "the login text the gateway asks for has the layout of proxy/README.md, \"Authentication\"");
  const loginSignature = bs58.encode(nacl.sign.detached(Buffer.from(loginText, "utf8"), wallet.secretKey));
  const login = (await gateway("POST", "/v1/auth/login", { body: { wallet: user, nonce: issued.nonce, signature: loginSignature } })).json;
  assert.match(login.token, /^gws1\./, "session token");
  const token = login.token;

  step(`gateway: wait for the credit of ${EXPECTED_TOKENS} tokens on /v1/balance`);
  const credited = await until("the credit on /v1/balance", 60, async () => {
    const balance = (await gateway("GET", "/v1/balance", { token })).json;
    return balance.credited > 0 ? balance : undefined;
  });
  assert.equal(credited.user, user, "balance is the wallet's");
  assert.equal(BigInt(credited.credited), EXPECTED_TOKENS, "credited = what the payment is worth");
  assert.equal(credited.debited, 0, "nothing debited yet");
  assert.equal(credited.reserved, 0, "nothing reserved");
  assert.equal(BigInt(credited.available), EXPECTED_TOKENS, "available = credited");

  step("gateway: spend on the echo model");
  const pricing = (await gateway("GET", "/v1/models/echo")).json.pricing;
  const chat = await gateway("POST", "/v1/chat/completions", {
    token,
    body: { model: "echo", max_tokens: 32, messages: [{ role: "user", content: "hello from a wallet" }] },
  });
  const requestId = chat.headers.get("x-request-id");
  assert.ok(requestId, "x-request-id header");
  assert.equal(typeof chat.json.choices?.[0]?.message?.content, "string", "a chat completion");
  const spent = await until("the settled charge on /v1/balance", 15, async () => {
    const balance = (await gateway("GET", "/v1/balance", { token })).json;
    return balance.debited > 0 && balance.reserved === 0 ? balance : undefined;
  });
  const usage = (await gateway("GET", "/v1/usage", { token })).json.data.find((row) => row.request_id === requestId);
  assert.ok(usage, `usage row for ${requestId}`);
  const cost = (BigInt(usage.prompt_tokens) * BigInt(pricing.prompt) + BigInt(usage.completion_tokens) * BigInt(pricing.completion) + 999_999n) / 1_000_000n;
  assert.equal(BigInt(usage.cost), cost, "usage cost = ceil(prompt × price + completion × price) / 1e6");
  assert.equal(BigInt(spent.debited), cost, "debited = the request's cost");
  assert.equal(BigInt(spent.available), EXPECTED_TOKENS - cost, "available = credited − debited");

  console.log(
    `wallet check: ${user} paid ${PAY} lamports (nonce ${nonce}, pay ${reply.signature}), ` +
      `credited ${credited.credited} tokens, spent ${cost} on echo (${requestId}), ${spent.available} left`,
  );
  console.log("1 passed, 0 failed");
}

try {
  await main();
  process.exit(0);
} catch (error) {
  console.error(`wallet check FAILED at "${current}": ${error.stack ?? error}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
