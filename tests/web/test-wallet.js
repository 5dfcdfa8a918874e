// A Wallet Standard wallet for tests, injected into the page before its scripts run (after
// tweetnacl's nacl-fast.js, which sets `self.nacl`). It holds one fixed keypair
// (`window.__testWalletSeed`, 32 bytes), registers itself the way Phantom or Solflare do
// (the `wallet-standard:register-wallet` event), and signs what the page asks — unless the test
// sets `window.__testWalletRejects = true`, when it refuses like a person pressing "Reject"
// (or `__testWalletTampers`, when its message signatures are invalid).
(() => {
  const keys = nacl.sign.keyPair.fromSeed(Uint8Array.from(window.__testWalletSeed));
  const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  const base58 = (bytes) => {
    let digits = [0];
    for (const byte of bytes) {
      let carry = byte;
      for (let i = 0; i < digits.length; i++) {
        carry += digits[i] << 8;
        digits[i] = carry % 58;
        carry = (carry / 58) | 0;
      }
      while (carry) {
        digits.push(carry % 58);
        carry = (carry / 58) | 0;
      }
    }
    let text = "";
    for (const byte of bytes) {
      if (byte !== 0) break;
      text += "1";
    }
    return text + digits.reverse().map((d) => ALPHABET[d]).join("");
  };
  const chains = ["solana:localnet", "solana:devnet", "solana:mainnet"];
  const account = Object.freeze({
    address: base58(keys.publicKey),
    publicKey: keys.publicKey,
    chains,
    features: ["solana:signMessage", "solana:signTransaction"],
  });
  window.__testWalletAddress = account.address;
  const listeners = { change: [] };
  const refuse = () => {
    if (window.__testWalletRejects) throw new Error("User rejected the request.");
  };
  const compactU16 = (bytes, at) => {
    let value = 0;
    for (let shift = 0, i = 0; ; i++, shift += 7) {
      const byte = bytes[at + i];
      value |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return [value, at + i + 1];
    }
  };
  /** Signs a wire transaction in our key's signature slot (legacy or v0 message). */
  const signTransaction = (wire) => {
    const [signatures, messageAt] = compactU16(wire, 0);
    const message = wire.slice(messageAt + 64 * signatures);
    let at = message[0] & 0x80 ? 1 : 0; // v0 messages start with their version
    const required = message[at];
    const [keyCount, keysAt] = compactU16(message, at + 3);
    for (let i = 0; i < Math.min(required, keyCount); i++) {
      const key = message.slice(keysAt + 32 * i, keysAt + 32 * (i + 1));
      if (key.every((b, j) => b === keys.publicKey[j])) {
        const signed = wire.slice();
        signed.set(nacl.sign.detached(message, keys.secretKey), messageAt + 64 * i);
        return signed;
      }
    }
    throw new Error("This transaction does not need the test wallet's signature.");
  };
  const wallet = {
    version: "1.0.0",
    name: "Test Wallet",
    icon: "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAxIDEiLz4=",
    chains,
    accounts: [],
    features: {
      "standard:connect": {
        version: "1.0.0",
        connect: async () => {
          refuse();
          wallet.accounts = [account];
          listeners.change.forEach((listener) => listener({ accounts: wallet.accounts }));
          return { accounts: wallet.accounts };
        },
      },
      "standard:disconnect": {
        version: "1.0.0",
        disconnect: async () => {
          wallet.accounts = [];
          listeners.change.forEach((listener) => listener({ accounts: [] }));
        },
      },
      "standard:events": {
        version: "1.0.0",
        on: (event, listener) => {
          (listeners[event] ??= []).push(listener);
          return () => (listeners[event] = listeners[event].filter((l) => l !== listener));
        },
      },
      "solana:signMessage": {
        version: "1.0.0",
        signMessage: async (...inputs) => {
          refuse();
          return inputs.map(({ message }) => {
            window.__testWalletSigned = [...(window.__testWalletSigned ?? []), new TextDecoder().decode(message)];
            // `__testWalletTampers`: a signature over other bytes, which every verifier refuses.
            const signed = window.__testWalletTampers ? new TextEncoder().encode("tampered") : message;
            return { signedMessage: message, signature: nacl.sign.detached(signed, keys.secretKey) };
          });
        },
      },
      "solana:signTransaction": {
        version: "1.0.0",
        supportedTransactionVersions: ["legacy", 0],
        signTransaction: async (...inputs) => {
          refuse();
          return inputs.map(({ transaction }) => ({ signedTransaction: signTransaction(transaction) }));
        },
      },
    },
  };
  const register = ({ register }) => register(wallet);
  window.addEventListener("wallet-standard:app-ready", ({ detail }) => register(detail));
  window.dispatchEvent(new CustomEvent("wallet-standard:register-wallet", { detail: register }));
})();
