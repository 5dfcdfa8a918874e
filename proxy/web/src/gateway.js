// The gateway's HTTP API, same origin as this page: the discovery document, wallet login, the
// ledger balance, usage, the model catalog and key revocation. Every failure becomes an Error
// whose message a person can act on.

/** An error the gateway answered with (OpenAI-shaped body), or a network failure. */
export class GatewayError extends Error {
  constructor(message, { status = 0, code = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, { token, body } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new GatewayError("The gateway is unreachable: check your connection and reload the page.");
  }
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: a proxy in front of the gateway, or an outage page.
  }
  if (!response.ok) {
    const error = json?.error ?? {};
    throw new GatewayError(error.message ?? `The gateway answered HTTP ${response.status}.`, {
      status: response.status,
      code: error.code ?? null,
    });
  }
  if (json === null) throw new GatewayError(`The gateway answered ${path} with something other than JSON.`);
  return json;
}

/** Everything needed to pay this gateway (RPC, program, relays, audience, prices). */
export const discover = () => call("GET", "/.well-known/llm-gateway");

/** The model catalog with prices (ledger tokens per 1M tokens). */
export const models = async () => (await call("GET", "/v1/models")).data;

/** The login text to sign for `wallet`, with its nonce. */
export const loginNonce = (wallet) => call("POST", "/v1/auth/nonce", { body: { wallet } });

/** Exchanges a signed login text for a bearer token. */
export const login = (wallet, nonce, signature) =>
  call("POST", "/v1/auth/login", { body: { wallet, nonce, signature } });

/** The caller's ledger balance (and, for a delegated key, the key's budget and spending). */
export const balance = (token) => call("GET", "/v1/balance", { token });

/** The caller's settled requests, newest first. */
export const usage = async (token, limit = 200) => (await call("GET", `/v1/usage?limit=${limit}`, { token })).data;

/** Stores a revocation signed by the key's wallet. */
export const revoke = (key, signature) => call("POST", "/v1/auth/revoke", { body: { key, signature } });
