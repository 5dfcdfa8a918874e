// Delegated keys: claims the wallet signs (`dk1.<base64url claims>.<base58 signature>`), kept
// in this browser so the page can show each key's spending (asked of the gateway with the key
// itself) and revoke it (a revocation text the wallet signs).
import * as anchor from "@coral-xyz/anchor";

const bs58 = anchor.utils.bytes.bs58;
const SIGNED_PREFIX = "LLM gateway delegated key\n";
const storageKey = (audience, wallet) => `llm-gateway-keys:${audience}:${wallet}`;

/** The claims JSON for a new key (the fields of proxy/README.md, "Authentication"). */
export function claimsJson({ user, audience, name, budget, expiresAt, models, maxTokens, singleUse }) {
  const claims = { user, audience, id: name, budget, expires_at: expiresAt };
  if (models.length > 0) claims.models = models;
  if (maxTokens) claims.max_tokens = maxTokens;
  if (singleUse) claims.single_use = true;
  return JSON.stringify(claims);
}

/** The text the wallet signs for `claims`. */
export const keyText = (claims) => SIGNED_PREFIX + claims;

/** The key a person copies, from the claims and the wallet's signature. */
export function keyToken(claims, signature) {
  const base64 = btoa(String.fromCharCode(...new TextEncoder().encode(claims)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
  return `dk1.${base64}.${bs58.encode(signature)}`;
}

/** The key's id: hex SHA-256 of its claims JSON (what the ledger and revocations name). */
export async function keyId(claims) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(claims));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The text the wallet signs to revoke key `id` at `audience`. */
export const revocationText = (audience, id) => `LLM gateway key revocation\naudience: ${audience}\nkey: ${id}`;

/** Keys made in this browser for `wallet` at `audience`. */
export function savedKeys(audience, wallet) {
  try {
    const keys = JSON.parse(localStorage.getItem(storageKey(audience, wallet)) ?? "[]");
    return Array.isArray(keys) ? keys : [];
  } catch {
    return [];
  }
}

export function saveKeys(audience, wallet, keys) {
  localStorage.setItem(storageKey(audience, wallet), JSON.stringify(keys));
}
