// The wallet's escrow of a token the gateway takes (USDC…), through the same program: what the
// wallet and its vault hold, deposit (the first one opens the vault) and withdraw. Tokens come
// from, and go back to, the wallet's associated token account of the mint. Amounts are base
// units (bigint); `units`/`show` convert to and from what a person types, exactly.
import * as anchor from "@coral-xyz/anchor";

const { BN, web3 } = anchor;
const { PublicKey, SystemProgram, TransactionInstruction } = web3;

/** The associated token account program. */
const ATA_PROGRAM = new PublicKey("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");

const text = (tag) => new TextEncoder().encode(tag);
const pda = (program, ...seeds) => PublicKey.findProgramAddressSync(seeds, program.programId)[0];

/** `owner`'s associated token account of `token` (`{mint, token_program}` as published). */
export const associatedAccount = (owner, token) =>
  PublicKey.findProgramAddressSync(
    [owner.toBytes(), new PublicKey(token.token_program).toBytes(), new PublicKey(token.mint).toBytes()],
    ATA_PROGRAM,
  )[0];

/** The wallet's and its vault's holdings of `token`; `opened: false` before the first deposit. */
export async function readTokenVault(program, token) {
  const owner = program.provider.publicKey;
  const mint = new PublicKey(token.mint);
  const connection = program.provider.connection;
  const amountOf = async (account) => {
    const info = await connection.getTokenAccountBalance(account).catch(() => null);
    return info ? BigInt(info.value.amount) : 0n;
  };
  const [wallet, balance, held] = await Promise.all([
    amountOf(associatedAccount(owner, token)),
    program.account.tokenBalance.fetchNullable(pda(program, text("TOKEN_BALANCE"), owner.toBytes(), mint.toBytes())),
    amountOf(pda(program, text("TOKEN_VAULT"), owner.toBytes(), mint.toBytes())),
  ]);
  const locked = balance ? BigInt(balance.lockedAmount.toString()) : 0n;
  return { wallet, opened: balance !== null, held, locked, free: held > locked ? held - locked : 0n };
}

/** Moves `amount` base units of `token` from the wallet into its vault, opening it if needed. */
export async function depositToken(program, info, token, amount, opened) {
  const owner = program.provider.publicKey;
  const mint = new PublicKey(token.mint);
  const tokenProgram = new PublicKey(token.token_program);
  const before = [];
  if (!opened) {
    const namespace = new BN(info.solana.namespace_id).toArrayLike(Uint8Array, "le", 8);
    before.push(
      await program.methods
        .openTokenVault()
        .accountsPartial({
          payer: owner,
          user: owner,
          mint,
          acceptedMint: pda(program, text("ACCEPTED_MINT"), namespace, mint.toBytes()),
          tokenProgram,
        })
        .instruction(),
    );
  }
  return program.methods
    .depositToken(new BN(amount.toString()))
    .accountsPartial({ depositor: owner, source: associatedAccount(owner, token), user: owner, mint, tokenProgram })
    .preInstructions(before)
    .rpc();
}

/** Moves `amount` base units of `token` from the vault back to the wallet's token account. */
export function withdrawToken(program, token, amount) {
  const owner = program.provider.publicKey;
  const mint = new PublicKey(token.mint);
  const tokenProgram = new PublicKey(token.token_program);
  const destination = associatedAccount(owner, token);
  // Creates the wallet's token account unless it exists (the instruction's "idempotent" form).
  const createAccount = new TransactionInstruction({
    programId: ATA_PROGRAM,
    keys: [
      { pubkey: owner, isSigner: true, isWritable: true },
      { pubkey: destination, isSigner: false, isWritable: true },
      { pubkey: owner, isSigner: false, isWritable: false },
      { pubkey: mint, isSigner: false, isWritable: false },
      { pubkey: SystemProgram.programId, isSigner: false, isWritable: false },
      { pubkey: tokenProgram, isSigner: false, isWritable: false },
    ],
    data: Uint8Array.of(1),
  });
  return program.methods
    .withdrawToken(new BN(amount.toString()))
    .accountsPartial({ user: owner, destination, mint, tokenProgram })
    .preInstructions([createAccount])
    .rpc();
}

/** Base units as a person reads them: 2500000 with 6 decimals → "2.5". */
export function show(amount, decimals) {
  const scale = 10n ** BigInt(decimals);
  const fraction = (amount % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
  return fraction ? `${amount / scale}.${fraction}` : `${amount / scale}`;
}

/** What a person typed ("2.5") in base units of an asset with `decimals`; null for anything else. */
export function units(typed, decimals) {
  const match = /^\s*(\d+)?(?:\.(\d+))?\s*$/.exec(typed);
  if (!match || (match[1] === undefined && match[2] === undefined)) return null;
  const fraction = match[2] ?? "";
  if (fraction.length > decimals) return null;
  return BigInt(match[1] ?? "0") * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, "0") || "0");
}
