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

/** Plain f32 cache, as llama2.c's key_cache/value_cache. */
export class F32KvCache implements KvCache {
  private readonly k: Float32Array; // (nLayers, capacity, kvDim)
  private readonly v: Float32Array; // (nLayers, capacity, kvDim)
  private readonly kvDim: number;

  constructor(readonly nLayers: number, readonly capacity: number, readonly nKvHeads: number, readonly headDim: number) {
    this.kvDim = nKvHeads * headDim;
    this.k = new Float32Array(nLayers * capacity * this.kvDim);
    this.v = new Float32Array(nLayers * capacity * this.kvDim);
  }

  get bytes(): number {
    return this.k.byteLength + this.v.byteLength;
  }

  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
    const o = (layer * this.capacity + pos) * this.kvDim;
    this.k.set(k.subarray(0, this.kvDim), o);
    this.v.set(v.subarray(0, this.kvDim), o);
  }

  scores(layer: number, kvHead: number, q: Float32Array, qOff: number, n: number, out: Float32Array): void {
    const hd = this.headDim;
    const stride = this.kvDim;
    const k = this.k;
    let o = layer * this.capacity * stride + kvHead * hd;
    for (let t = 0; t < n; t++, o += stride) {
      let s = 0;
      for (let i = 0; i < hd; i++) s += q[qOff + i]! * k[o + i]!;
      out[t] = s;
    }
  }

  mix(layer: number, kvHead: number, p: Float32Array, n: number, out: Float32Array, outOff: number): void {
    const hd = this.headDim;
    const stride = this.kvDim;
    const v = this.v;
    out.fill(0, outOff, outOff + hd);
    let o = layer * this.capacity * stride + kvHead * hd;
    for (let t = 0; t < n; t++, o += stride) {
      const a = p[t]!;
      for (let i = 0; i < hd; i++) out[outOff + i] += a * v[o + i]!;
    }
  }

  reset(): void {
    // positions are always written before they are read, so nothing needs clearing
  }
}

export const f32KvCache: KvCacheFactory = (l, c, h, d) => new F32KvCache(l, c, h, d);
