// The API keys section: create a key the wallet signs, list the keys made in this browser with
// what each has spent, copy and revoke them.
import * as anchor from "@coral-xyz/anchor";
import * as api from "./gateway.js";
import * as keys from "./keys.js";
import { signText } from "./wallets.js";
import { $, show, status, fillTable, button, number, when } from "./view.js";

const bs58 = anchor.utils.bytes.bs58;
const positive = (text) => (/^\d+$/.test(text.trim()) && BigInt(text.trim()) > 0n ? Number(text.trim()) : null);

export async function createKey(state) {
  const user = state.adapter.publicKey.toBase58();
  const name = $("key-name").value.trim();
  const budget = positive($("key-budget").value);
  const hours = positive($("key-hours").value);
  const capText = $("key-max-tokens").value.trim();
  const maxTokens = capText === "" ? null : positive(capText);
  if (!name || !budget || !hours || (capText !== "" && !maxTokens)) {
    return status("keys-status", "Give the key a name, a budget and a lifetime in whole positive numbers.", "error");
  }
  const models = [...$("key-models").querySelectorAll("input:checked")].map((box) => decodeURIComponent(box.value));
  const expiresAt = Math.floor(Date.now() / 1000) + hours * 3600;
  const claims = keys.claimsJson({ user, audience: state.info.audience, name, budget, expiresAt, models, maxTokens, singleUse: $("key-single-use").checked });
  status("keys-status", "Approve the key in your wallet: it signs the key's limits, no transaction.");
  const signature = await signText(state.adapter, keys.keyText(claims));
  const token = keys.keyToken(claims, signature);
  const saved = keys.savedKeys(state.info.audience, user);
  saved.unshift({ name, token, id: await keys.keyId(claims), budget, expires_at: expiresAt, models, revoked: false });
  keys.saveKeys(state.info.audience, user, saved);
  $("new-key-value").textContent = token;
  show("new-key");
  status("keys-status", `Key "${name}" created: use it as the API key of any OpenAI client.`, "ok");
  await renderKeys(state);
}

export async function renderKeys(state) {
  const user = state.adapter.publicKey.toBase58();
  const saved = keys.savedKeys(state.info.audience, user);
  const rows = await Promise.all(
    saved.map(async (key) => {
      let spent = "–";
      let remaining = "–";
      let condition = key.revoked ? "revoked" : key.expires_at * 1000 < Date.now() ? "expired" : null;
      if (!condition) {
        try {
          const budget = (await api.balance(key.token)).key;
          [spent, remaining] = [number(budget.spent), number(budget.remaining)];
        } catch (error) {
          condition = error.status === 401 ? "refused" : "unknown";
        }
      }
      const actions = document.createElement("span");
      actions.append(button("Copy", () => navigator.clipboard?.writeText(key.token)));
      if (!condition) actions.append(" ", button("Revoke", () => revokeKey(state, key.id)));
      return [key.name, number(key.budget), spent, remaining, condition ?? when(key.expires_at), actions];
    }),
  );
  fillTable("key-table", rows);
}

async function revokeKey(state, id) {
  const user = state.adapter.publicKey.toBase58();
  const saved = keys.savedKeys(state.info.audience, user);
  const key = saved.find((k) => k.id === id);
  if (!key) return;
  try {
    status("keys-status", `Approve revoking "${key.name}" in your wallet.`);
    const signature = await signText(state.adapter, keys.revocationText(state.info.audience, id));
    await api.revoke(key.token, bs58.encode(signature));
    key.revoked = true;
    keys.saveKeys(state.info.audience, user, saved);
    status("keys-status", `Key "${key.name}" revoked: every replica refuses it from its next request.`, "ok");
  } catch (error) {
    status("keys-status", error.message, "error");
  }
  await renderKeys(state);
}
