/**
 * The attention KV cache behind a small interface, so a quantized cache (int8/fp8/… keys and values,
 * another issue) can replace the f32 one without touching the forward pass: attention only asks for
 * q·K scores and a probability-weighted sum of V rows, which a packed cache computes on its layout.
 */
export interface KvCache {
  readonly nLayers: number;
  /** positions the cache holds */
  readonly capacity: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** stores position `pos`'s keys and values of one layer; k, v: (nKvHeads·headDim) */
  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void;
  /** out[t] = q[qOff..qOff+headDim) · K[layer, t, kvHead] for t < n;  out: (≥ n) */
  scores(layer: number, kvHead: number, q: Float32Array, qOff: number, n: number, out: Float32Array): void;
  /** out[outOff..outOff+headDim) = Σ_{t<n} p[t] · V[layer, t, kvHead];  p: (≥ n) */
  mix(layer: number, kvHead: number, p: Float32Array, n: number, out: Float32Array, outOff: number): void;
  /** forgets every position (a fresh sequence) */
  reset(): void;
  /** bytes held */
  readonly bytes: number;
}

export type KvCacheFactory = (nLayers: number, capacity: number, nKvHeads: number, headDim: number) => KvCache;

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
