// The synthetic model of bench/packed.ts, shared with its probes (bench/_int4-ab.ts, bench/_int4-kab.ts) so every
// one of them times the same weights. Not a bench (files starting with "_" are skipped by bench/run.ts).
import type { ModelConfig } from "../src/model/config.js";

/** A mid-size Llama shape (the 1B one's per-layer matrices at half width): quantizing 1.2 B weights with
 * the TypeScript RTN per run takes too long on this 2-core machine. */
export const PACKED_SHAPE: ModelConfig = {
  arch: "llama", dim: 1024, hiddenDim: 4096, nLayers: 8, nHeads: 16, nKvHeads: 4, headDim: 64, vocabSize: 4096,
  seqLen: 256, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: true, name: "synthetic Llama (dim 1024, ffn 4096, 8 layers)",
};

/** n weights in ±0.05 from a xorshift32 stream seeded with `seed` (0 counts as 1). */
export function packedRand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * 0.05;
  }
  return out;
}
