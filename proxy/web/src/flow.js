// The top-up as a person follows it: checked against the vault, signed in the wallet, sent to
// the operator, paid on chain, credited in the ledger — or refused, with the reason.
import * as chain from "./chain.js";
import * as topup from "./topup.js";
import * as tokens from "./tokens.js";
import { signText } from "./wallets.js";
import { $, show, status } from "./view.js";

const STEPS = ["Sign the authorisation in your wallet", "Waiting for the operator", "Paid on chain", "Credited"];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Shows step `index` as current, those before it done; `failed` marks it failed instead. */
function progress(index, { failed = false, note = "" } = {}) {
  const list = $("topup-steps");
  show("topup-steps");
  list.replaceChildren(
    ...STEPS.map((text, i) => {
      const item = document.createElement("li");
      item.textContent = i === index && note ? `${text}: ${note}` : text;
      item.className = i < index ? "done" : i === index ? (failed ? "failed" : "current") : "";
      return item;
    }),
  );
}

/** Why the vault cannot pay `amount` now (SOL, or `token` when given), or null. */
async function refusal(state, amount, token, refreshVault) {
  if (!token) {
    const max = state.info.max_topup_lamports;
    if (max !== undefined && amount > BigInt(max)) {
      return `Refused: this gateway takes at most ${chain.sol(BigInt(max))} SOL per top-up. Top up in parts.`;
    }
  }
  await refreshVault();
  const free = token ? state.tokenVaults.get(token.mint).free : state.vault.free;
  const show = (value) => (token ? `${tokens.show(value, token.decimals)} ${token.symbol}` : `${chain.sol(value)} SOL`);
  if (amount > free) {
    return `Refused: your vault has ${show(free)} free for top-ups and this needs ${show(amount)}. Deposit more first.`;
  }
  return null;
}

/** Tops up `amount` lamports, or with `token` (`{mint, symbol, decimals}`) base units of it. */
export async function topupFlow({ state, amount, token = null, refreshVault, refreshLedger, waits }) {
  show("topup-text", false);
  show("topup-steps", false);
  const refused = await refusal(state, amount, token, refreshVault);
  if (refused) return status("topup-status", refused, "error");
  const vault = state.vault;
  const user = state.adapter.publicKey.toBase58();
  const cluster = await chain.clusterTag(state.program);
  const authorization = topup.authorization(state.info, cluster, user, vault.nonce, amount, token?.mint);
  $("topup-text").textContent = authorization.text;
  show("topup-text");
  progress(0);
  status("topup-status", "Your wallet shows the text above: it lets this gateway's operator take exactly this amount, once.");
  const signature = await signText(state.adapter, authorization.text).catch((error) => {
    progress(0, { failed: true });
    throw error;
  });
  const before = (await refreshLedger()).credited;
  progress(1);
  status("topup-status", "Sent. The operator redeems it on chain; this takes a few seconds.");
  let answer;
  try {
    answer = await topup.publishAndFollow(state.info, topup.requestEvent(state.info, authorization, signature), waits.operator);
  } catch (error) {
    progress(1, { failed: true });
    if (error.message !== "timeout") throw error;
    return status(
      "topup-status",
      `The operator has not answered in ${waits.operator} s. Your authorisation stays redeemable until ${new Date(authorization.terms.deadline * 1000).toLocaleTimeString()}; reload later to see whether it was credited.`,
      "error",
    );
  }
  if (answer.error) {
    progress(1, { failed: true, note: "refused" });
    return status("topup-status", `Refused by the operator: ${topup.explainRefusal(answer.error)}`, "error");
  }
  // Anyone can publish on a relay: the answer counts once the chain shows the nonce used.
  await refreshVault();
  if (state.vault.nonce <= vault.nonce) {
    progress(2, { failed: true });
    return status("topup-status", `An answer says the top-up was paid (${answer.signature}), but the chain shows its authorisation unused. Reload in a minute to see whether it was credited.`, "error");
  }
  progress(2, { note: `${answer.signature.slice(0, 16)}…` });
  status("topup-status", `Paid on chain. The gateway credits ${answer.tokens.toLocaleString("en-US")} tokens once the payment is final.`);
  const end = Date.now() + waits.credit * 1000;
  for (;;) {
    const balance = await refreshLedger();
    if (balance.credited >= before + answer.tokens) break;
    if (Date.now() > end) {
      return status("topup-status", "Paid on chain, but the gateway has not credited it yet: it does once the payment is final. Reload in a minute.", "error");
    }
    await sleep(1000);
  }
  progress(4);
  status("topup-status", `Credited ${answer.tokens.toLocaleString("en-US")} tokens.`, "ok");
}
