// Loads the committed IDL with @coral-xyz/anchor, encodes the pinned `pay` call through it and
// checks the bytes and accounts equal what the Rust SDK produced (tests/idl/pay_vector.json).
// Rebuilds the signed message (cluster line included) from the vector's fields, as a wallet
// app would, and verifies the user's signature over it with Node's ed25519.
import anchor from "@coral-xyz/anchor";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { createPublicKey, verify } from "node:crypto";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { authorizationMessage } from "./authorization.mjs";

const { AnchorProvider, BN, Program, web3, BorshEventCoder } = anchor;
const here = dirname(fileURLToPath(import.meta.url));
const idl = JSON.parse(readFileSync(join(here, "../../programs/balance-payment/idl/balance_payment.json"), "utf8"));
const vector = JSON.parse(readFileSync(join(here, "pay_vector.json"), "utf8"));

// No network is touched: the connection is never used to build an instruction.
const wallet = {
  publicKey: new web3.PublicKey(vector.accounts.bot),
  signTransaction: async (tx) => tx,
  signAllTransactions: async (txs) => txs,
};
const provider = new AnchorProvider(new web3.Connection("http://127.0.0.1:1"), wallet, {});
const program = new Program(idl, provider);
assert.equal(program.programId.toBase58(), vector.programId, "IDL address is the program id");

const info = vector.recoverInfo;
const instruction = await program.methods
  .pay(new BN(vector.namespaceId), {
    nonce: new BN(info.nonce),
    maxAmount: new BN(info.maxAmount),
    deadline: new BN(info.deadline),
    extraData: info.extraData,
    signature: info.signature,
  }, new BN(vector.amount))
  .accountsPartial({
    bot: vector.accounts.bot,
    user: vector.accounts.user,
    treasury: vector.accounts.treasury,
  })
  .instruction();

assert.equal(Buffer.from(instruction.data).toString("hex"), vector.instruction.data, "instruction data");
const keys = instruction.keys.map((k) => ({ pubkey: k.pubkey.toBase58(), isSigner: k.isSigner, isWritable: k.isWritable }));
assert.deepEqual(keys, vector.instruction.keys, "accounts (resolved from the IDL's PDA seeds)");

// The signed message, built the way a JavaScript wallet app builds it (layout in
// programs/balance-payment/README.md, "The signed message").
const message = authorizationMessage({
  programId: vector.programId,
  cluster: vector.cluster,
  namespaceId: vector.namespaceId,
  user: vector.accounts.user,
  nonce: info.nonce,
  maxAmount: info.maxAmount,
  deadline: info.deadline,
  extraData: info.extraData,
});
assert.equal(message, vector.message, "signed message layout");
assert.equal(new web3.PublicKey(vector.cluster).toBytes().length, 32, "cluster tag is 32 bytes");
const spki = Buffer.concat([
  Buffer.from("302a300506032b6570032100", "hex"),
  new web3.PublicKey(vector.accounts.user).toBuffer(),
]);
const userKey = createPublicKey({ key: spki, format: "der", type: "spki" });
assert.ok(verify(null, Buffer.from(message, "utf8"), userKey, Buffer.from(info.signature)), "signature over the message");
assert.equal(vector.amount, info.maxAmount, "pay redeems exactly the signed amount");

const globalAccount = idl.accounts.find((a) => a.name === "Global");
assert.ok(globalAccount, "IDL has the Global account");
const globalType = idl.types.find((t) => t.name === "Global");
assert.ok(globalType.type.fields.some((f) => f.name === "cluster"), "Global holds the cluster tag");
const initialize = idl.instructions.find((ix) => ix.name === "initialize");
assert.deepEqual(initialize.args.map((a) => a.name), ["cluster"], "initialize takes the cluster tag");

const names = idl.instructions.map((ix) => ix.name).sort();
assert.deepEqual(names, [
  "accept_mint", "create_namespace", "delist_mint", "deposit", "deposit_token", "initialize", "lock", "lock_token",
  "open_token_vault", "pay", "pay_token", "register", "release", "release_token", "settle", "settle_token",
  "update_namespace", "withdraw", "withdraw_token",
]);
assert.ok(new BorshEventCoder(idl), "event coder builds");

// The token escrow: `pay_token` through the IDL, with the escrow's PDAs (the namespace's
// listing of the mint, the user's balance and vault of it) resolved from their seeds.
const token = vector.payToken;
const tokenInfo = token.recoverInfo;
const payToken = await program.methods
  .payToken(new BN(vector.namespaceId), {
    nonce: new BN(tokenInfo.nonce),
    maxAmount: new BN(tokenInfo.maxAmount),
    deadline: new BN(tokenInfo.deadline),
    extraData: tokenInfo.extraData,
    signature: tokenInfo.signature,
  }, new BN(token.amount))
  .accountsPartial({
    bot: vector.accounts.bot,
    user: vector.accounts.user,
    mint: token.accounts.mint,
    treasury: token.accounts.treasury,
    tokenProgram: token.accounts.tokenProgram,
  })
  .instruction();
assert.equal(Buffer.from(payToken.data).toString("hex"), token.instruction.data, "pay_token data");
const tokenKeys = payToken.keys.map((k) => ({ pubkey: k.pubkey.toBase58(), isSigner: k.isSigner, isWritable: k.isWritable }));
assert.deepEqual(tokenKeys, token.instruction.keys, "pay_token accounts (resolved from the IDL's PDA seeds)");
const tokenMessage = authorizationMessage({
  programId: vector.programId,
  cluster: vector.cluster,
  namespaceId: vector.namespaceId,
  user: vector.accounts.user,
  nonce: tokenInfo.nonce,
  maxAmount: tokenInfo.maxAmount,
  mint: token.accounts.mint,
  deadline: tokenInfo.deadline,
  extraData: tokenInfo.extraData,
});
assert.equal(tokenMessage, token.message, "token message names the mint");
assert.ok(verify(null, Buffer.from(tokenMessage, "utf8"), userKey, Buffer.from(tokenInfo.signature)), "signature over the token message");
for (const event of ["TokenPaid", "TokenLocked", "TokenSettled", "TokenReleased", "TokenDeposited", "TokenWithdrawn"]) {
  const fields = idl.types.find((t) => t.name === event).type.fields.map((f) => f.name);
  assert.ok(fields.includes("mint"), `${event} carries the mint`);
}

console.log(`IDL check: pay encodes byte-for-byte like the Rust SDK (${instruction.data.length} bytes, ${keys.length} accounts)`);
console.log("IDL check: the signed message (with its cluster line) and signature match the Rust SDK");
console.log(`IDL check: pay_token encodes byte-for-byte like the Rust SDK (${payToken.data.length} bytes, ${tokenKeys.length} accounts); its message names the mint`);
console.log("3 passed, 0 failed");
