// The wallet page: connect a wallet, see the vault and the ledger, deposit, top up, log in,
// make and revoke API keys, see usage — in SOL, or in any token the gateway takes (USDC…).
// Everything is signed by the wallet; no secret of the wallet ever reaches this page.
import * as anchor from "@coral-xyz/anchor";
import * as api from "./gateway.js";
import * as chain from "./chain.js";
import * as tokens from "./tokens.js";
import { watchWallets, connect, signText } from "./wallets.js";
import { topupFlow } from "./flow.js";
import { renderKeys, createKey } from "./keyview.js";
import { $, show, status, fillTable, button, number, when, drawSpending, explain } from "./view.js";

const bs58 = anchor.utils.bytes.bs58;
/** How long the operator may take to answer a top-up, and the ledger to show its credit. */
const OPERATOR_WAIT_SECONDS = 90;
const CREDIT_WAIT_SECONDS = 120;

const state = { info: null, models: [], adapter: null, program: null, token: null, vault: null, tokenVaults: new Map() };
const ASSET_SELECTS = ["deposit-asset", "withdraw-asset", "topup-asset"];
/** The token the form's asset select names, or null for SOL. */
const chosenToken = (selectId) => state.info.tokens?.find((t) => t.mint === $(selectId).value) ?? null;
const user = () => state.adapter.publicKey.toBase58();

function notice(text) {
  $("notice").textContent = text;
  show("notice", Boolean(text));
}

/** Runs a user action with its button disabled; failures go to the section's status line. */
function action(form, statusId, run) {
  return async (event) => {
    event?.preventDefault();
    const controls = form ? [...form.querySelectorAll("button")] : [];
    controls.forEach((c) => (c.disabled = true));
    try {
      await run();
    } catch (error) {
      console.warn(error); // the page shows it; a declined signature is no page error
      status(statusId, explain(error), "error");
    } finally {
      controls.forEach((c) => (c.disabled = false));
    }
  };
}

async function start() {
  try {
    [state.info, state.models] = await Promise.all([api.discover(), api.models()]);
  } catch (error) {
    notice(explain(error));
    return;
  }
  $("api-base").textContent = `${location.origin}/v1`;
  const accepted = state.info.tokens ?? [];
  $("rate").textContent = [`1 SOL buys ${number(state.info.tokens_per_sol)} ledger tokens.`, ...accepted.map((t) => `1 ${t.symbol} buys ${number(t.tokens_per_unit)}.`)].join(" ");
  for (const id of ASSET_SELECTS) {
    $(id).append(...accepted.map((t) => Object.assign(document.createElement("option"), { value: t.mint, textContent: t.symbol })));
    show(id, accepted.length > 0);
  }
  // Each accepted token's price (prompt / completion per 1M), as the gateway quotes it.
  const inToken = (m, t) => {
    const price = m.prices?.assets?.find((a) => a.asset === t.mint);
    return price ? `${tokens.show(BigInt(price.prompt), t.decimals)} / ${tokens.show(BigInt(price.completion), t.decimals)}` : "–";
  };
  $("model-head").append(...accepted.map((t) => Object.assign(document.createElement("th"), { textContent: `${t.symbol} / 1M` })));
  fillTable("model-table", state.models.map((m) => [m.id, number(m.pricing.prompt), number(m.pricing.completion), number(m.max_output_tokens), ...accepted.map((t) => inToken(m, t))]));
  $("key-models").append(
    ...state.models.map((m) => {
      const label = document.createElement("label");
      label.className = "check";
      label.innerHTML = `<input type="checkbox" value="${encodeURIComponent(m.id)}"> `;
      label.append(m.id);
      return label;
    }),
  );
  watchWallets((wallets) => {
    show("no-wallet", wallets.length === 0);
    $("wallet-list").replaceChildren(
      ...wallets.map((wallet) => {
        const choice = button(`Connect ${wallet.name}`, action(null, "vault-status", () => useWallet(wallet)), "");
        if (wallet.icon) choice.prepend(Object.assign(document.createElement("img"), { src: wallet.icon, alt: "" }));
        return choice;
      }),
    );
  });
}

/** Connects `wallet`; what stops it (declined, no RPC published) goes to the notice line. */
async function useWallet(wallet) {
  notice("");
  try {
    const adapter = await connect(wallet);
    Object.assign(state, { adapter, token: null, program: chain.openProgram(state.info, adapter) });
  } catch (error) {
    notice(explain(error));
    throw error;
  }
  $("wallet-address").textContent = user();
  show("wallet-address");
  show("disconnect");
  show("connect", false);
  for (const id of ["vault", "credit"]) show(id);
  await refreshVault();
}

async function refreshVault() {
  const vault = (state.vault = await chain.readVault(state.program));
  $("wallet-sol").textContent = `${chain.sol(vault.wallet)} SOL`;
  $("vault-held").textContent = `${chain.sol(vault.held)} SOL`;
  $("vault-locked").textContent = `${chain.sol(vault.locked)} SOL`;
  $("vault-free").textContent = `${chain.sol(vault.free)} SOL`;
  show("unregistered", !vault.registered);
  show("deposit-form", vault.registered);
  const accepted = state.info.tokens ?? [];
  const held = await Promise.all(accepted.map((t) => tokens.readTokenVault(state.program, t)));
  accepted.forEach((t, i) => state.tokenVaults.set(t.mint, held[i]));
  $("token-figures").replaceChildren(
    ...accepted.flatMap((t, i) => [
      figure(`${t.symbol} in your wallet`, `token-${i}-wallet`, held[i].wallet, t),
      figure(`${t.symbol} deposited`, `token-${i}-held`, held[i].held, t),
      figure(`${t.symbol} free for top-ups`, `token-${i}-free`, held[i].free, t),
    ]),
  );
  show("token-figures", vault.registered && accepted.length > 0);
  show("withdraw-form", vault.registered && (vault.held > 0n || held.some((h) => h.held > 0n)));
  show("topup-form", vault.registered && state.token !== null);
}

/** One figure of the token part of the vault: `amount` base units of `token`. */
function figure(label, id, amount, token) {
  const item = document.createElement("div");
  const term = Object.assign(document.createElement("dt"), { textContent: label });
  const value = Object.assign(document.createElement("dd"), { id, textContent: `${tokens.show(amount, token.decimals)} ${token.symbol}` });
  item.append(term, value);
  return item;
}

async function refreshLedger() {
  const balance = await api.balance(state.token);
  for (const field of ["credited", "debited", "reserved", "available"]) $(field).textContent = number(balance[field]);
  return balance;
}

async function refreshUsage() {
  const rows = await api.usage(state.token);
  fillTable("usage-table", rows.map((r) => [when(r.created_at), r.model, number(r.prompt_tokens), number(r.completion_tokens), number(r.cost)]));
  drawSpending($("usage-chart"), rows);
}

const register = action(null, "vault-status", async () => {
  status("vault-status", "Approve the registration in your wallet…");
  const signature = await chain.register(state.program);
  status("vault-status", `Registered (${signature.slice(0, 12)}…).`, "ok");
  await refreshVault();
});

const depositToken = async (token) => {
  const amount = tokens.units($("deposit-amount").value, token.decimals);
  if (!amount) return status("vault-status", `Enter an amount of ${token.symbol}, like 2.5.`, "error");
  await refreshVault();
  const vault = state.tokenVaults.get(token.mint);
  if (vault.wallet < amount) {
    return status("vault-status", `Not enough ${token.symbol}: your wallet holds ${tokens.show(vault.wallet, token.decimals)} ${token.symbol}.`, "error");
  }
  status("vault-status", "Approve the deposit in your wallet…");
  await tokens.depositToken(state.program, state.info, token, amount, vault.opened);
  status("vault-status", `Deposited ${tokens.show(amount, token.decimals)} ${token.symbol}.`, "ok");
  await refreshVault();
};

const withdrawToken = async (token) => {
  await refreshVault();
  const vault = state.tokenVaults.get(token.mint);
  const text = $("withdraw-amount").value.trim();
  const amount = text === "" || text === "all" ? vault.free : tokens.units(text, token.decimals);
  if (!amount) return status("vault-status", `Enter an amount of ${token.symbol}, or leave it empty to withdraw everything you can.`, "error");
  if (amount > vault.free) {
    return status("vault-status", `Only ${tokens.show(vault.free, token.decimals)} ${token.symbol} can be withdrawn now (${tokens.show(vault.locked, token.decimals)} ${token.symbol} is locked).`, "error");
  }
  status("vault-status", "Approve the withdrawal in your wallet…");
  await tokens.withdrawToken(state.program, token, amount);
  status("vault-status", `Withdrew ${tokens.show(amount, token.decimals)} ${token.symbol} to your wallet.`, "ok");
  await refreshVault();
};

const deposit = action($("deposit-form"), "vault-status", async () => {
  const token = chosenToken("deposit-asset");
  if (token) return depositToken(token);
  const lamports = chain.lamportsOf($("deposit-amount").value);
  if (!lamports) return status("vault-status", "Enter an amount of SOL, like 0.5.", "error");
  await refreshVault();
  if (state.vault.wallet < lamports + chain.FEE_RESERVE) {
    return status("vault-status", `Not enough SOL: your wallet holds ${chain.sol(state.vault.wallet)} SOL; depositing ${chain.sol(lamports)} SOL needs ${chain.sol(lamports + chain.FEE_RESERVE)} SOL with the fee.`, "error");
  }
  status("vault-status", "Approve the deposit in your wallet…");
  await chain.deposit(state.program, lamports);
  status("vault-status", `Deposited ${chain.sol(lamports)} SOL.`, "ok");
  await refreshVault();
});

const withdraw = action($("withdraw-form"), "vault-status", async () => {
  const token = chosenToken("withdraw-asset");
  if (token) return withdrawToken(token);
  await refreshVault();
  const text = $("withdraw-amount").value.trim();
  const lamports = text === "" || text === "all" ? state.vault.withdrawable : chain.lamportsOf(text);
  if (!lamports) return status("vault-status", "Enter an amount of SOL, or leave it empty to withdraw everything you can.", "error");
  if (lamports > state.vault.withdrawable) {
    return status("vault-status", `Only ${chain.sol(state.vault.withdrawable)} SOL can be withdrawn now (${chain.sol(state.vault.locked)} SOL is locked).`, "error");
  }
  const rest = state.vault.held - lamports;
  if (rest !== 0n && rest < state.vault.rentExempt) {
    return status("vault-status", `The vault must keep at least ${chain.sol(state.vault.rentExempt)} SOL or be emptied: withdraw everything, or less.`, "error");
  }
  status("vault-status", "Approve the withdrawal in your wallet…");
  await chain.withdraw(state.program, lamports);
  status("vault-status", `Withdrew ${chain.sol(lamports)} SOL to your wallet.`, "ok");
  await refreshVault();
});

const login = action(null, "topup-status", async () => {
  const issued = await api.loginNonce(user());
  const expected = [`${state.info.realm} login`, `audience: ${state.info.audience}`, `wallet: ${user()}`, `nonce: ${issued.nonce}`].join("\n");
  if (issued.message !== expected) throw new Error("The gateway asked to sign an unexpected login text; nothing was signed.");
  const signature = await signText(state.adapter, issued.message);
  state.token = (await api.login(user(), issued.nonce, bs58.encode(signature))).token;
  await Promise.all([refreshLedger(), refreshUsage(), refreshVault(), renderKeys(state)]);
  show("login-needed", false);
  for (const id of ["ledger", "refresh", "keys", "usage"]) show(id);
});

const startTopup = action($("topup-form"), "topup-status", async () => {
  const token = chosenToken("topup-asset");
  const typed = $("topup-amount").value;
  const amount = token ? tokens.units(typed, token.decimals) : chain.lamportsOf(typed);
  if (!amount) return status("topup-status", `Enter an amount of ${token?.symbol ?? "SOL"}, like ${token ? "2.5" : "0.01"}.`, "error");
  await topupFlow({ state, amount, token, refreshVault, refreshLedger, waits: { operator: OPERATOR_WAIT_SECONDS, credit: CREDIT_WAIT_SECONDS } });
  await refreshUsage();
});

const refresh = action(null, "topup-status", async () => {
  await Promise.all([refreshLedger(), refreshUsage(), refreshVault(), renderKeys(state)]);
});

$("register").addEventListener("click", register);
$("refresh").addEventListener("click", refresh);
$("deposit-form").addEventListener("submit", deposit);
$("withdraw-form").addEventListener("submit", withdraw);
$("login").addEventListener("click", login);
$("topup-form").addEventListener("submit", startTopup);
$("disconnect").addEventListener("click", async () => {
  await state.adapter?.disconnect().catch(() => {});
  location.reload();
});

$("key-form").addEventListener("submit", action($("key-form"), "keys-status", () => createKey(state)));
$("copy-new-key").addEventListener("click", () => navigator.clipboard?.writeText($("new-key-value").textContent));

start();
