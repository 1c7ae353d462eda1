// Reading a job descriptor (assembly/abi.ts D_* words, written by src/kernels/wasm/dispatch.ts): the one
// helper every run_k* entry uses. Inlined, so each read is the same single load as written out by hand.

/** Word `k` of the descriptor at `desc` as a byte offset into memory (pointer words). */
@inline export function dptr(desc: usize, k: i32): usize {
  return load<u32>(desc + (<usize>k << 2)) as usize;
}

/** Word `k` of the descriptor at `desc` as an i32 (counts, sizes, flags). */
@inline export function dint(desc: usize, k: i32): i32 {
  return load<i32>(desc + (<usize>k << 2));
}

/** A free slot of a prefill panel scratch (F16, Q6_K: lock words at sc, one i32 per slot), claimed; −1 if none */
export function claimPanelSlot(sc: usize, nslots: i32): i32 {
  for (let i = 0; i < nslots; i++) if (atomic.cmpxchg<i32>(sc + (<usize>i << 2), 0, 1) == 0) return i;
  return -1;
}

/** Tokens per block of the interleaved kinds' prefill: as many as keep one block's activation codes (cols ×
 * actBytes each) within PREFILL_ACT_BYTES (L2: 1 MiB per core on the Zen 4 this was tuned on; the weights of a
 * row group, ≤ 40 KB for 8192 columns, stay in L1), a multiple of 4 and at least 4. With all 128 tokens of a
 * 2048×8192 Q8_0 matmul in one block (2 MiB of i16 codes) the tile ran at 19 G weight·token/s against 23 at n = 32. */
@inline export function prefillTokenBlock(cols: i32, actBytes: i32): i32 {
  return max(4, (PREFILL_ACT_BYTES / (cols * actBytes)) & ~3);
}
const PREFILL_ACT_BYTES = 256 << 10;

/** out[k·os] = lane k of acc: the 4 interleaved rows' outputs of one token. */
@inline export function storeRows4(out: usize, os: usize, acc: v128): void {
  store<f32>(out, f32x4.extract_lane(acc, 0));
  store<f32>(out + os, f32x4.extract_lane(acc, 1));
  store<f32>(out + 2 * os, f32x4.extract_lane(acc, 2));
  store<f32>(out + 3 * os, f32x4.extract_lane(acc, 3));
}

/** A prefill tile's outputs: token t's 4 row outputs (acc_t) at out + t·os, for the tile's tt = 2 or 4 tokens. */
@inline export function storeTile(out: usize, os: usize, tt: i32, acc0: v128, acc1: v128, acc2: v128, acc3: v128): void {
  v128.store(out, acc0);
  v128.store(out + os, acc1);
  if (tt == 4) {
    v128.store(out + 2 * os, acc2);
    v128.store(out + 3 * os, acc3);
  }
}
