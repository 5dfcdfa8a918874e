// The text a wallet signs to authorise a spending (programs/balance-payment/README.md, "The signed
// message"), built the way a JavaScript wallet app builds it. No dependencies, so any test folder
// can import it; check.mjs pins it to the Rust SDK's bytes, tests/wallet signs it against a live
// stack.

/** Lowercase hex of a byte array. */
export const hex = (bytes) => Buffer.from(bytes).toString("hex");

/**
 * The UTF-8 text to sign: lines joined by "\n", no trailing newline. Numbers may be given as
 * numbers, bigints, BNs or decimal strings; `programId`, `cluster`, `user` and `mint` as base58;
 * `extraData` as 32 bytes. Without `mint` the amount is lamports (`pay`, `lock`); with it, base
 * units of that mint (`pay_token`, `lock_token`).
 */
export function authorizationMessage({ programId, cluster, namespaceId, user, nonce, maxAmount, mint, deadline, extraData }) {
  if (extraData.length !== 32) throw new Error(`extra data must be 32 bytes, got ${extraData.length}`);
  return [
    "LLM gateway spending authorization",
    `program: ${programId}`,
    `cluster: ${cluster}`,
    `namespace: ${namespaceId.toString()}`,
    `user: ${user}`,
    `nonce: ${nonce.toString()}`,
    mint ? `max amount: ${maxAmount.toString()} of mint ${mint}` : `max amount: ${maxAmount.toString()} lamports`,
    `deadline: ${deadline.toString()}`,
    `extra data: ${hex(extraData)}`,
  ].join("\n");
}
