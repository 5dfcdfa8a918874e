// The escrow program, through `@coral-xyz/anchor` and the committed IDL: the wallet's vault
// (deposited, locked, free), register, deposit and withdraw — every transaction signed by the
// connected wallet.
import * as anchor from "@coral-xyz/anchor";
import idl from "../../../programs/balance-payment/idl/balance_payment.json";

const { AnchorProvider, BN, Program, web3 } = anchor;
const { Connection, PublicKey, LAMPORTS_PER_SOL } = web3;

/** Lamports a transaction fee may need (kept in the wallet when depositing). */
export const FEE_RESERVE = 10_000n;

/** The program on the gateway's cluster, as `adapter`'s wallet. */
export function openProgram(info, adapter) {
  if (!info.solana.rpc_url) {
    throw new Error("This gateway publishes no Solana RPC URL, so the page cannot reach the chain.");
  }
  if (info.solana.program_id !== idl.address) {
    throw new Error(`The gateway names program ${info.solana.program_id}, this page was built for ${idl.address}.`);
  }
  const connection = new Connection(info.solana.rpc_url, {
    commitment: "confirmed",
    wsEndpoint: info.solana.ws_url ?? undefined,
  });
  const wallet = {
    publicKey: adapter.publicKey,
    signTransaction: (tx) => adapter.signTransaction(tx),
    signAllTransactions: (txs) => adapter.signAllTransactions(txs),
  };
  const provider = new AnchorProvider(connection, wallet, { commitment: "confirmed" });
  return new Program(idl, provider);
}

const pda = (program, ...seeds) => PublicKey.findProgramAddressSync(seeds, program.programId)[0];
const userSeed = (program, tag) => pda(program, new TextEncoder().encode(tag), program.provider.publicKey.toBytes());

/** The wallet's SOL, its vault and its account with the program (`registered: false` if none). */
export async function readVault(program) {
  const connection = program.provider.connection;
  const owner = program.provider.publicKey;
  const [walletLamports, account, held, rentExempt] = await Promise.all([
    connection.getBalance(owner),
    program.account.userAccount.fetchNullable(userSeed(program, "USER")),
    connection.getBalance(userSeed(program, "VAULT")),
    connection.getMinimumBalanceForRentExemption(0),
  ]);
  const vault = {
    wallet: BigInt(walletLamports),
    registered: account !== null,
    held: BigInt(held),
    locked: account ? BigInt(account.lockedAmount.toString()) : 0n,
    nonce: account ? BigInt(account.nonce.toString()) : 0n,
    rentExempt: BigInt(rentExempt),
  };
  vault.free = max0(vault.held - vault.locked - vault.rentExempt);
  vault.withdrawable = vault.locked === 0n ? vault.held : max0(vault.held - max(vault.locked, vault.rentExempt));
  return vault;
}

/** The cluster tag every authorisation names (the program's `Global.cluster`). */
export async function clusterTag(program) {
  const global = await program.account.global.fetch(pda(program, new TextEncoder().encode("GLOBAL")));
  return anchor.utils.bytes.bs58.encode(Uint8Array.from(global.cluster));
}

/** Registers the wallet with the program; the transaction signature. */
export const register = (program) =>
  program.methods.register().accountsPartial({ user: program.provider.publicKey }).rpc();

/** Moves `lamports` from the wallet into its vault. */
export const deposit = (program, lamports) =>
  program.methods
    .deposit(new BN(lamports.toString()))
    .accountsPartial({ depositor: program.provider.publicKey, user: program.provider.publicKey })
    .rpc();

/** Takes `lamports` back from the vault to the wallet. */
export const withdraw = (program, lamports) =>
  program.methods.withdraw(new BN(lamports.toString())).accountsPartial({ user: program.provider.publicKey }).rpc();

/** Lamports as SOL text, without trailing zeros. */
export function sol(lamports) {
  const whole = lamports / BigInt(LAMPORTS_PER_SOL);
  const fraction = (lamports % BigInt(LAMPORTS_PER_SOL)).toString().padStart(9, "0").replace(/0+$/, "");
  return fraction ? `${whole}.${fraction}` : `${whole}`;
}

/** SOL text ("0.5") as lamports; null for anything else. */
export function lamportsOf(text) {
  const match = /^\s*(\d+)(?:\.(\d{1,9}))?\s*$/.exec(text);
  if (!match) return null;
  return BigInt(match[1]) * BigInt(LAMPORTS_PER_SOL) + BigInt((match[2] ?? "").padEnd(9, "0"));
}

const max = (a, b) => (a > b ? a : b);
const max0 = (value) => max(value, 0n);
