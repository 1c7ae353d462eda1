/**
 * The reference KV cache: plain f32 in JS arrays, read by the forward pass one head at a time (`scores`,
 * a softmax in llama.ts, `mix`). The interface (KvCache) lives with the Backend (kernels/types.ts), since a
 * backend may offer a cache of its own (the WASM backend's, with a batched `attend`); this one is what
 * such caches are tested against.
 */
import type { KvCache, KvCacheFactory } from "../kernels/types.js";

export type { KvCache, KvCacheFactory } from "../kernels/types.js";

/**
 * Plain f32 cache. Each KV head's rows are contiguous — (nLayers, nKvHeads, capacity, headDim) — so
 * a head's keys and values are one dense (positions, headDim) matrix, read with unit stride.
 */
export class F32KvCache implements KvCache {
  private readonly k: Float32Array; // (nLayers, nKvHeads, capacity, headDim)
  private readonly v: Float32Array; // (nLayers, nKvHeads, capacity, headDim)

  constructor(readonly nLayers: number, readonly capacity: number, readonly nKvHeads: number, readonly headDim: number) {
    const n = nLayers * nKvHeads * capacity * headDim;
    this.k = new Float32Array(n);
    this.v = new Float32Array(n);
  }

  get bytes(): number {
    return this.k.byteLength + this.v.byteLength;
  }

  private base(layer: number, kvHead: number): number {
    return (layer * this.nKvHeads + kvHead) * this.capacity * this.headDim;
  }

  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
    const hd = this.headDim;
    for (let g = 0; g < this.nKvHeads; g++) {
      const o = this.base(layer, g) + pos * hd;
      this.k.set(k.subarray(g * hd, (g + 1) * hd), o);
      this.v.set(v.subarray(g * hd, (g + 1) * hd), o);
    }
  }

  scores(layer: number, kvHead: number, q: Float32Array, qOff: number, n: number, out: Float32Array): void {
    const hd = this.headDim;
    const k = this.k;
    let o = this.base(layer, kvHead);
    if (hd % 4 !== 0) {
      for (let t = 0; t < n; t++, o += hd) {
        let s = 0;
        for (let i = 0; i < hd; i++) s += q[qOff + i]! * k[o + i]!;
        out[t] = s;
      }
      return;
    }
    // four partial sums: fewer loop trips and independent adds (heads are 8..128 wide, multiples of 4)
    for (let t = 0; t < n; t++, o += hd) {
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < hd; i += 4) {
        s0 += q[qOff + i]! * k[o + i]!;
        s1 += q[qOff + i + 1]! * k[o + i + 1]!;
        s2 += q[qOff + i + 2]! * k[o + i + 2]!;
        s3 += q[qOff + i + 3]! * k[o + i + 3]!;
      }
      out[t] = s0 + s1 + s2 + s3;
    }
  }

  mix(layer: number, kvHead: number, p: Float32Array, n: number, out: Float32Array, outOff: number): void {
    const hd = this.headDim;
    const v = this.v;
    const b = this.base(layer, kvHead);
    if (hd % 4 !== 0) {
      for (let i = 0; i < hd; i++) {
        let s = 0;
        for (let t = 0, o = b + i; t < n; t++, o += hd) s += p[t]! * v[o]!;
        out[outOff + i] = s;
      }
      return;
    }
    // four output elements at a time, accumulated in registers, stepping through the head's rows
    for (let i = 0; i < hd; i += 4) {
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let t = 0, o = b + i; t < n; t++, o += hd) {
        const a = p[t]!;
        s0 += a * v[o]!;
        s1 += a * v[o + 1]!;
        s2 += a * v[o + 2]!;
        s3 += a * v[o + 3]!;
      }
      out[outOff + i] = s0;
      out[outOff + i + 1] = s1;
      out[outOff + i + 2] = s2;
      out[outOff + i + 3] = s3;
    }
  }
  reset(): void {
    // positions are always written before they are read, so nothing needs clearing
  }
}

export const f32KvCache: KvCacheFactory = (l, c, h, d) => new F32KvCache(l, c, h, d);

/**
 * Causal softmax attention through a cache's per-head `scores` and `mix` — the reference for
 * KvCache.attend, and what the forward pass runs on caches without it. For each of n positions
 * pos0 … pos0+n−1 and each head: scores over positions 0..pos divided by √headDim (run.c: score /=
 * sqrtf(head_size)), max-subtracted exp, then the V mix scaled by 1/Σ. q, out: (n, nHeads·headDim);
 * att: (≥ pos0 + n) scratch. `window`: this layer's sliding window; `softcap`: Gemma 2's score soft-cap.
 */
export function attendRef(kv: KvCache, layer: number, q: Float32Array, pos0: number, n: number, nHeads: number, out: Float32Array, att: Float32Array, window?: number, softcap?: number): void {
  const hd = kv.headDim;
  const qDim = nHeads * hd;
  const kvMul = nHeads / kv.nKvHeads;
  const scale = Math.fround(Math.sqrt(hd));
  for (let i = 0; i < n; i++) {
    const len = pos0 + i + 1; // causal: this position sees 0..pos
    // a sliding window of W sees only positions pos − W + 1 … pos (llama.cpp is_masked_swa: masked when p1 − p0 ≥ W)
    const first = window !== undefined ? Math.max(0, len - window) : 0;
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / kvMul);
      const off = i * qDim + h * hd;
      kv.scores(layer, kvh, q, off, len, att);
      for (let t = 0; t < first; t++) att[t] = -Infinity; // exp → exactly 0: nothing of those positions reaches the output
      const sum = expScores(att, len, scale, softcap);
      kv.mix(layer, kvh, att, len, out, off);
      const inv = 1 / sum; // softmax normalization applied to the mixed head instead of every weight
      for (let j = off; j < off + hd; j++) out[j] = out[j]! * inv;
    }
  }
}

/**
 * a[t] ← exp(z[t] − max) for t < n (unnormalized softmax), z = a/scale (run.c divides by √hd), soft-capped
 * to c·tanh(z/c) when a cap is given (Gemma 2 attn_logit_softcapping; masked −∞ stays −∞); returns Σ.
 */
function expScores(a: Float32Array, n: number, scale: number, softcap?: number): number {
  let max = -Infinity;
  for (let t = 0; t < n; t++) {
    let z = a[t]! / scale;
    if (softcap !== undefined && z !== -Infinity) z = softcap * Math.tanh(z / softcap); // tanh(−∞) would unmask a masked key
    a[t] = z;
    if (z > max) max = z;
  }
  let sum = 0;
  for (let t = 0; t < n; t++) {
    const e = Math.exp(a[t]! - max);
    a[t] = e;
    sum += e;
  }
  return sum;
}
