// Node's `Buffer`, which @solana/web3.js and anchor expect as a global.
export { Buffer } from "buffer";
