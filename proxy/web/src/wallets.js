// Wallet Standard wallets (Phantom, Solflare, Backpack, …), found with `@wallet-standard/app`
// and driven through the wallet adapter's `StandardWalletAdapter`, the same adapter the
// ecosystem's React kit uses. The page needs connect, signMessage and signTransaction.
import { getWallets } from "@wallet-standard/app";
import { isWalletAdapterCompatibleStandardWallet } from "@solana/wallet-adapter-base";
import { StandardWalletAdapter } from "@solana/wallet-standard-wallet-adapter-base";
import { SolanaSignMessage, SolanaSignTransaction } from "@solana/wallet-standard-features";

/** Wallets that can connect, sign messages and sign transactions, as they register. */
export function watchWallets(onChange) {
  const registry = getWallets();
  const usable = () =>
    registry
      .get()
      .filter(
        (wallet) =>
          isWalletAdapterCompatibleStandardWallet(wallet) &&
          SolanaSignMessage in wallet.features &&
          SolanaSignTransaction in wallet.features,
      );
  onChange(usable());
  registry.on("register", () => onChange(usable()));
  registry.on("unregister", () => onChange(usable()));
}

/** Connects `wallet`; the adapter, whose `publicKey` is set. */
export async function connect(wallet) {
  const adapter = new StandardWalletAdapter({ wallet });
  await adapter.connect();
  if (!adapter.publicKey) throw new Error(`${wallet.name} connected without an account.`);
  return adapter;
}

/** The wallet's ed25519 signature over `text` (UTF-8), raw bytes. */
export async function signText(adapter, text) {
  return adapter.signMessage(new TextEncoder().encode(text));
}
