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
