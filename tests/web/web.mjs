// A person at the wallet page, in headless Chromium (Debian's `chromium`, driven by
// playwright-core; no browser download) against a running local stack. A Wallet Standard test
// wallet with a fixed keypair (test-wallet.js) connects, registers, deposits, logs in, tops up
// and sees the credit, is refused a top-up its vault cannot cover, declines a signature, makes
// a delegated key that the official `openai` client then uses, sees the spending and the
// usage, revokes the key (and the client is refused), and withdraws; and the same with USDC
// (the test wallet holds 5 of the stack's stand-in): deposit, a refused and a credited top-up,
// withdrawal. A screenshot of each step goes to $SCREENSHOTS. Exits 0 with "1 passed, 0
// failed", non-zero with the failing step.
//
// The operator's refusal is staged: the wallet's signature is made invalid (so the real
// controller ignores the request, as it does every request failing its cheap checks), and the
// test answers on the relay, first with a forged refusal from another key (which the page must
// ignore), then with one signed by the controller's key (which it must show, with the reason).
//
// Env: GATEWAY_URL (the page's origin), RPC_URL (for the airdrop), TOKENS_PER_SOL, USDC_MINT,
// TOKENS_PER_USDC, RELAY_URL,
// MACHINE and SESSION (the gateway's Nostr address and s tag), CONTROLLER_SECRET (hex, the
// controller's Nostr key), optional CHROMIUM (default /usr/bin/chromium), SCREENSHOTS (default
// ./screenshots).
import { chromium } from "playwright-core";
import { finalizeEvent, generateSecretKey } from "nostr-tools/pure";
import WebSocket from "ws";
import OpenAI from "openai";
import assert from "node:assert/strict";
import { mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const GATEWAY_URL = process.env.GATEWAY_URL?.replace(/\/+$/, "");
const RPC_URL = process.env.RPC_URL;
const TOKENS_PER_SOL = BigInt(process.env.TOKENS_PER_SOL ?? "1000000");
const TOKENS_PER_USDC = BigInt(process.env.TOKENS_PER_USDC ?? "10000");
const { USDC_MINT } = process.env;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOTS = process.env.SCREENSHOTS ?? join(here, "screenshots");
const { RELAY_URL, MACHINE, SESSION, CONTROLLER_SECRET } = process.env;
if (!GATEWAY_URL || !RPC_URL || !RELAY_URL || !MACHINE || !SESSION || !CONTROLLER_SECRET || !USDC_MINT) {
  console.error("web check FAILED: GATEWAY_URL, RPC_URL, RELAY_URL, MACHINE, SESSION, CONTROLLER_SECRET and USDC_MINT are required");
  process.exit(2);
}
/** The test wallet's fixed keypair seed. */
const SEED = Array.from({ length: 32 }, (_, i) => (i * 7 + 3) % 256);

let current = "start";
let shot = 0;
const step = (name) => {
  current = name;
  console.log(`- ${name}`);
};

async function rpc(method, params) {
  const response = await fetch(RPC_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

/**
 * Answers the next top-up `Request` on the relay with refusals: one from a stranger's key,
 * then one from `secret`'s. Returns `listening`, settled once the subscription is in place,
 * and `answered`, settled with the request's id once both answers are published.
 */
function answerNextRequestWithRefusals(secret, reason) {
  const socket = new WebSocket(RELAY_URL);
  const now = () => Math.floor(Date.now() / 1000);
  const status = (requestId, error, key) =>
    finalizeEvent(
      {
        kind: 1573,
        created_at: now(),
        tags: [["s", SESSION], ["p", MACHINE]],
        content: JSON.stringify({
          Status: { status: "Available", reason: "LockFailed", initial_request: requestId, payload: JSON.stringify({ error }) },
        }),
      },
      key,
    );
  let subscribed;
  const listening = new Promise((resolve) => (subscribed = resolve));
  const answered = new Promise((resolve, reject) => {
    let answers = []; // still to send, each after the relay accepted the one before
    let requestId;
    let live = false;
    const next = () => {
      const answer = answers.shift();
      if (answer) return socket.send(JSON.stringify(["EVENT", answer]));
      socket.close();
      resolve(requestId);
    };
    socket.once("error", reject);
    socket.once("open", () => socket.send(JSON.stringify(["REQ", "requests", { kinds: [1573], "#p": [MACHINE], since: now() }])));
    socket.on("message", (data) => {
      const [type, , event, why] = JSON.parse(data.toString());
      // Stored requests (an earlier top-up in the same second) are not this one: only a
      // request that arrives after the stored ones, live, is answered.
      if (type === "EOSE") return (live = true), subscribed();
      if (type === "OK") return event === true ? next() : reject(new Error(`the relay refused an answer: ${why}`));
      if (type !== "EVENT" || !live || requestId || !JSON.parse(event.content).Request) return;
      requestId = event.id;
      answers = [status(requestId, "forged: a stranger's answer", generateSecretKey()), status(requestId, reason, secret)];
      next();
    });
  });
  // The page's request must come after the subscription is in place, or the relay has
  // nothing new to send it.
  return { listening, answered };
}

async function main() {
  rmSync(SCREENSHOTS, { recursive: true, force: true }); // only this run's steps
  mkdirSync(SCREENSHOTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: GATEWAY_URL });
    await context.addInitScript({ content: `window.__testWalletSeed = ${JSON.stringify(SEED)};` });
    await context.addInitScript({ path: require.resolve("tweetnacl/nacl-fast.min.js") });
    await context.addInitScript({ path: join(here, "test-wallet.js") });
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()} (${message.location().url}:${message.location().lineNumber}:${message.location().columnNumber})`));
    const snap = async (name) => page.screenshot({ path: join(SCREENSHOTS, `${String(++shot).padStart(2, "0")}-${name}.png`), fullPage: true });
    const text = (selector) => page.locator(selector).innerText();
    const statusIs = async (selector, pattern, timeout = 30_000) => {
      try {
        await page.locator(selector).filter({ hasText: pattern }).waitFor({ timeout });
      } catch {
        const shown = await page.locator(selector).innerText().catch(() => "(not shown)");
        throw new Error(`${selector} never matched ${pattern}; it says: ${JSON.stringify(shown)}; page problems: ${JSON.stringify(problems)}`);
      }
    };

    step("the page loads with the catalog, and finds the test wallet");
    await page.goto(`${GATEWAY_URL}/`);
    await page.locator("#model-table tbody tr").first().waitFor();
    assert.match(await text("#model-table"), /echo/, "the catalog lists the echo model");
    // 1,000,000 ledger tokens per 1M at 10,000 per USDC: 100 USDC per 1M, prompt and completion.
    assert.match(await text("#model-table"), /USDC \/ 1M/, "prices are quoted in USDC too");
    assert.match(await text("#model-table"), /echo\t1,000,000\t1,000,000\t100\t100 \/ 100/);
    const connectButton = page.getByRole("button", { name: "Connect Test Wallet" });
    await connectButton.waitFor();
    await snap("connect");

    step("airdrop to the test wallet (a funded wallet is where a person starts)");
    const wallet = await page.evaluate(() => window.__testWalletAddress);
    const airdrop = await rpc("requestAirdrop", [wallet, 2_000_000_000]);
    for (let i = 0; ; i++) {
      const [status] = (await rpc("getSignatureStatuses", [[airdrop]])).value;
      if (status?.confirmationStatus === "confirmed" || status?.confirmationStatus === "finalized") break;
      assert.ok(i < 100, "the airdrop is confirmed within 20 s");
      await new Promise((r) => setTimeout(r, 200));
    }

    step("a declined connection is said, then connect: the vault is shown, not registered yet");
    await page.evaluate(() => (window.__testWalletRejects = true));
    await connectButton.click();
    await page.locator("#notice").filter({ hasText: /The wallet declined/ }).waitFor();
    await page.evaluate(() => (window.__testWalletRejects = false));
    await connectButton.click();
    await page.locator("#register").waitFor();
    assert.equal(await text("#wallet-address"), wallet, "the connected wallet's address is shown");
    assert.match(await text("#wallet-sol"), /^2 SOL$/);
    await snap("connected");

    step("register and deposit 0.5 SOL (transactions signed by the wallet)");
    await page.locator("#register").click();
    await statusIs("#vault-status", /Registered/);
    await page.locator("#deposit-amount").fill("5");
    await page.locator("#deposit-form button").click();
    await statusIs("#vault-status", /Not enough SOL: your wallet holds 1\.9\d* SOL; depositing 5 SOL needs 5\.00001 SOL with the fee/);
    await page.locator("#deposit-amount").fill("0.5");
    await page.locator("#deposit-form button").click();
    await statusIs("#vault-status", /Deposited 0.5 SOL/);
    // The page says "Deposited" and then reads the vault again: wait for the figure.
    await statusIs("#vault-held", /^0\.5 SOL$/);
    await snap("deposited");

    step("log in (the wallet signs the gateway's login text)");
    await page.locator("#login").click();
    await page.locator("#ledger").waitFor();
    assert.equal(await text("#credited"), "0", "a new wallet has no credit");
    assert.match(await text("#rate"), new RegExp(`1 SOL buys ${Number(TOKENS_PER_SOL).toLocaleString("en-US")} ledger tokens`));

    step("a top-up over the operator's maximum is refused with the reason, before anything is signed");
    await page.locator("#topup-amount").fill("150");
    await page.locator("#topup-form button").click();
    await statusIs("#topup-status", /Refused: this gateway takes at most 100 SOL per top-up/);

    step("a top-up the vault cannot cover is refused with the reason, before anything is signed");
    await page.locator("#topup-amount").fill("5");
    await page.locator("#topup-form button").click();
    await statusIs("#topup-status", /Refused: your vault has .* SOL free for top-ups and this needs 5 SOL/);
    await snap("topup-refused");

    step("the wallet declines: the page says so and nothing is sent");
    await page.evaluate(() => (window.__testWalletRejects = true));
    await page.locator("#topup-amount").fill("0.01");
    await page.locator("#topup-form button").click();
    await statusIs("#topup-status", /The wallet declined/);
    await page.evaluate(() => (window.__testWalletRejects = false));

    step("top up 0.01 SOL: the exact text is shown, signed, paid on chain, credited");
    await page.locator("#topup-form button").click();
    await statusIs("#topup-status", /Credited 10,000 tokens/, 150_000);
    const signed = await page.evaluate(() => window.__testWalletSigned.at(-1));
    assert.equal(signed, await text("#topup-text"), "the wallet signed exactly the text the page showed");
    assert.match(signed, /^LLM gateway spending authorization\n/);
    assert.match(signed, /\nmax amount: 10000000 lamports\n/);
    const expected = (TOKENS_PER_SOL / 100n).toLocaleString("en-US");
    assert.equal(await text("#credited"), expected);
    await snap("credited");

    step("USDC: the wallet's and the vault's are shown; deposit 2 (not 20), top up 1 (not 3), credited at the USDC rate");
    assert.match(await text("#rate"), new RegExp(`1 USDC buys ${Number(TOKENS_PER_USDC).toLocaleString("en-US")}`));
    await statusIs("#token-0-wallet", /^5 USDC$/);
    await page.locator("#deposit-asset").selectOption({ label: "USDC" });
    await page.locator("#deposit-amount").fill("20");
    await page.locator("#deposit-form button").click();
    await statusIs("#vault-status", /Not enough USDC: your wallet holds 5 USDC/);
    await page.locator("#deposit-amount").fill("2");
    await page.locator("#deposit-form button").click();
    await statusIs("#vault-status", /Deposited 2 USDC/);
    await statusIs("#token-0-held", /^2 USDC$/);
    await page.locator("#topup-asset").selectOption({ label: "USDC" });
    await page.locator("#topup-amount").fill("3");
    await page.locator("#topup-form button").click();
    await statusIs("#topup-status", /Refused: your vault has 2 USDC free for top-ups and this needs 3 USDC/);
    await page.locator("#topup-amount").fill("1");
    await page.locator("#topup-form button").click();
    const usdcCredit = TOKENS_PER_USDC.toLocaleString("en-US");
    await statusIs("#topup-status", new RegExp(`Credited ${usdcCredit} tokens`), 150_000);
    const signedUsdc = await page.evaluate(() => window.__testWalletSigned.at(-1));
    assert.match(signedUsdc, new RegExp(`\nmax amount: 1000000 of mint ${USDC_MINT}\n`), "the text names the mint");
    assert.equal(await text("#credited"), (TOKENS_PER_SOL / 100n + TOKENS_PER_USDC).toLocaleString("en-US"));
    await statusIs("#token-0-held", /^1 USDC$/);
    await page.locator("#withdraw-asset").selectOption({ label: "USDC" });
    await page.locator("#withdraw-amount").fill("");
    await page.locator("#withdraw-form button").click();
    await statusIs("#vault-status", /Withdrew 1 USDC to your wallet/);
    await statusIs("#token-0-wallet", /^4 USDC$/);
    await snap("usdc");
    // Back to SOL for what follows.
    for (const id of ["#deposit-asset", "#withdraw-asset", "#topup-asset"]) await page.locator(id).selectOption({ label: "SOL" });
    await page.locator("#topup-amount").fill("0.01");

    step("a top-up the operator refuses shows the reason; a stranger's answer is ignored");
    const { listening, answered } = answerNextRequestWithRefusals(Buffer.from(CONTROLLER_SECRET, "hex"), "vault holds 0 free lamports, 10000000 needed");
    await listening;
    await page.evaluate(() => (window.__testWalletTampers = true));
    await page.locator("#topup-form button").click();
    await answered;
    await statusIs("#topup-status", /Refused by the operator: vault holds 0 free lamports, 10000000 needed — the vault does not hold enough free SOL/);
    assert.doesNotMatch(await text("#topup-status"), /forged/);
    assert.match(await text("#topup-steps"), /Waiting for the operator: refused/);
    await page.evaluate(() => (window.__testWalletTampers = false));
    await snap("topup-refused-by-operator");

    step("create a delegated key for the echo model and use it with the openai client");
    await page.locator("#key-name").fill("agent-1");
    await page.locator("#key-budget").fill("5000");
    await page.locator('#key-models input[value="echo"]').check();
    await page.locator("#key-form button").click();
    await statusIs("#keys-status", /Key "agent-1" created/);
    const key = await text("#new-key-value");
    assert.match(key, /^dk1\./);
    const client = new OpenAI({ baseURL: `${GATEWAY_URL}/v1`, apiKey: key });
    const reply = await client.chat.completions.create({ model: "echo", max_tokens: 16, messages: [{ role: "user", content: "hello from the page's key" }] });
    assert.equal(typeof reply.choices[0].message.content, "string");
    await assert.rejects(
      client.chat.completions.create({ model: "not-granted", messages: [{ role: "user", content: "hi" }] }),
      (error) => error.status === 403 || error.status === 404,
    );

    step("the page shows what the key spent, the usage row and the chart");
    await page.locator("#refresh").click();
    await page.locator("#usage-table tbody tr").first().waitFor();
    assert.match(await text("#usage-table"), /echo/);
    const row = page.locator("#key-table tbody tr").filter({ hasText: "agent-1" });
    const cells = await row.locator("td").allInnerTexts();
    assert.equal(cells[1], "5,000", "budget");
    assert.ok(Number(cells[2].replace(/,/g, "")) > 0, `spent > 0 (${cells[2]})`);
    assert.equal(Number(cells[2].replace(/,/g, "")) + Number(cells[3].replace(/,/g, "")), 5000, "spent + remaining = budget");
    assert.equal(await page.locator("#usage-chart polyline").count(), 1, "the spending chart is drawn");
    await snap("key-and-usage");

    step("revoke the key: the page marks it, the client is refused");
    await row.getByRole("button", { name: "Revoke" }).click();
    await statusIs("#keys-status", /revoked/);
    await row.filter({ hasText: "revoked" }).waitFor();
    await assert.rejects(
      client.chat.completions.create({ model: "echo", messages: [{ role: "user", content: "hi" }] }),
      (error) => error.status === 401,
    );

    step("withdraw everything that is free");
    await page.locator("#withdraw-amount").fill("");
    await page.locator("#withdraw-form button").click();
    await statusIs("#vault-status", /Withdrew .* SOL to your wallet/);
    // As after the deposit: the page says so, then reads the vault again.
    await statusIs("#vault-held", /^0 SOL$/);
    await snap("withdrawn");

    step("the gateway unreachable: the page says so");
    await page.route("**/v1/**", (route) => route.abort("connectionrefused"));
    await page.locator("#refresh").click();
    await statusIs("#topup-status", /The gateway is unreachable/);
    await page.unroute("**/v1/**");
    problems.splice(0, problems.length, ...problems.filter((p) => !p.includes("net::ERR_CONNECTION_REFUSED")));

    step("on a phone-sized screen");
    await page.setViewportSize({ width: 390, height: 844 });
    await snap("phone");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page fits a phone's width (overflows by ${overflow}px)`);

    assert.deepEqual(problems, [], "no page errors");
  } finally {
    await browser.close();
  }
  console.log(`web check: screenshots in ${SCREENSHOTS}`);
  console.log("1 passed, 0 failed");
}

try {
  await main();
  process.exit(0);
} catch (error) {
  console.error(`web check FAILED at "${current}": ${error.stack ?? error}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
