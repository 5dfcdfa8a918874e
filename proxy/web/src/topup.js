// Top-up: the wallet signs a spending authorisation for exactly the amount (its next nonce, a
// deadline), the page publishes it to the gateway's relays as a kind-1573 `Request`, and
// follows it: the operator's `Status` reply (paid, or refused with the reason), then the
// credit in the ledger. Replies are believed only from the gateway's published controllers.
import { finalizeEvent, generateSecretKey } from "nostr-tools/pure";
import { Relay } from "nostr-tools/relay";
import { authorizationMessage } from "../../../tests/idl/authorization.mjs";

/** How long the authorisation stays redeemable. */
export const VALID_FOR_SECONDS = 600;
const now = () => Math.floor(Date.now() / 1000);

/**
 * The exact text the wallet signs for paying `amount` from its vault: lamports, or with `mint`
 * base units of that token (the text then names the mint).
 */
export function authorization(info, cluster, user, nonce, amount, mint = undefined) {
  const terms = {
    programId: info.solana.program_id,
    cluster,
    namespaceId: BigInt(info.solana.namespace_id),
    user,
    nonce,
    maxAmount: amount,
    mint,
    deadline: now() + VALID_FOR_SECONDS,
    extraData: new Uint8Array(32),
  };
  return { terms, text: authorizationMessage(terms) };
}

/** The `Request` event carrying a signed authorisation, signed by a throwaway Nostr key. */
export function requestEvent(info, { terms }, signature) {
  const recoverInfo = JSON.stringify({
    signature: Array.from(signature),
    max_amount: Number(terms.maxAmount),
    deadline: terms.deadline,
    extra_data: Array.from(terms.extraData),
  });
  const payload = JSON.stringify({
    user: terms.user,
    nonce: Number(terms.nonce),
    recover_info: recoverInfo,
    amount: Number(terms.maxAmount),
    namespace_id: Number(terms.namespaceId),
    ...(terms.mint ? { mint: terms.mint } : {}),
  });
  return finalizeEvent(
    {
      kind: 1573,
      created_at: now(),
      tags: [
        ["s", info.nostr.session],
        ["p", info.nostr.machine],
      ],
      content: JSON.stringify({
        Request: { to_status: "Working", reason: "UserRequest", initial_request: "0".repeat(64), payload },
      }),
    },
    generateSecretKey(),
  );
}

/**
 * Publishes `request` to every relay that takes it and resolves with the controller's answer,
 * `{signature, tokens}` or `{error}`; rejects when no relay accepts it or no answer comes in
 * `seconds`.
 */
export async function publishAndFollow(info, request, seconds) {
  const relays = (
    await Promise.all(
      info.nostr.relays.map((url) => Relay.connect(url).catch(() => null)),
    )
  ).filter(Boolean);
  if (relays.length === 0) throw new Error("No relay of this gateway can be reached, so the top-up cannot be sent.");
  const trusted = new Set(info.nostr.controllers);
  const subscriptions = [];
  try {
    const answer = new Promise((resolve) => {
      const filter = { kinds: [1573], "#s": [info.nostr.session], "#p": [info.nostr.machine], since: request.created_at - 60 };
      for (const relay of relays) {
        subscriptions.push(relay.subscribe([filter], {
          onevent(event) {
            if (trusted.size > 0 && !trusted.has(event.pubkey)) return;
            const status = parseStatus(event, request.id);
            if (status) resolve(status);
          },
        }));
      }
    });
    const published = await Promise.allSettled(relays.map((relay) => relay.publish(request)));
    if (!published.some((outcome) => outcome.status === "fulfilled")) {
      const reason = published.find((outcome) => outcome.status === "rejected")?.reason;
      throw new Error(`The relays refused the top-up request${reason ? `: ${reason.message ?? reason}` : ""}.`);
    }
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("timeout")), seconds * 1000);
    });
    try {
      return await Promise.race([answer, timeout]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    // nostr-tools sends a subscription's CLOSE once its connection promise settles: let those
    // go out before the sockets close.
    for (const subscription of subscriptions) subscription.close();
    await new Promise((resolve) => setTimeout(resolve, 0));
    for (const relay of relays) relay.close();
  }
}

/** The controller's `Status` payload answering `requestId`, or null. */
function parseStatus(event, requestId) {
  try {
    const status = JSON.parse(event.content).Status;
    if (status?.initial_request !== requestId) return null;
    const payload = JSON.parse(status.payload);
    if (typeof payload.error === "string") return { error: payload.error };
    if (typeof payload.signature === "string" && Number.isSafeInteger(payload.tokens)) {
      return { signature: payload.signature, tokens: payload.tokens };
    }
    return null;
  } catch {
    return null; // Anyone can publish: what does not parse is not an answer.
  }
}

/** What a controller's refusal means for a person. */
export function explainRefusal(error) {
  if (/AuthorizationExpired|deadline/i.test(error)) {
    return `${error} — the authorisation expired before the operator redeemed it; sign a new top-up.`;
  }
  if (/Insufficient|free lamports|funds/i.test(error)) {
    return `${error} — the vault does not hold enough free SOL; deposit more first.`;
  }
  return error;
}
