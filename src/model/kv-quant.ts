/**
 * Quantized KV cache: keys and values stored as codes + scales under any quant spec suited to a stream of
 * small vectors (int8/int4 per token-and-head, groups along the head dimension, fp8 E4M3/E5M2 casts or
 * scaled, NF4, MX presets, asym/sym …), behind the KvCache interface of src/model/kv-cache.ts, so the
 * forward pass is unchanged.
 *
 * What a spec means for the cache: every store(layer, pos) quantizes the position's keys (and, apart, its
 * values) as one (nKvHeads, headDim) tensor with the spec, exactly as quantizeTensor would
 * (src/quant/tensor.ts): `channel` = one scale per (token, KV head), `g<N>` = groups of N along the head
 * dimension (ragged last group), `tensor` = one scale per token across heads, `none` = a direct cast
 * (fp16, bf16, fp8). Scales are computed on the fly from the vector being stored (dynamic, as KIVI /
 * llama.cpp's q8_0/q4_0 caches do), so no calibration is needed. Attention reads decode the codes of one
 * head with a per-code table: x̂ = fround((level[code] − zero) · scale), the same f32 values
 * QTensor.dequantize gives.
 *
 * Storage: codes (nLayers, nKvHeads, capacity, headDim) one per element (u8, or u16 above 8 bits), scales
 * and zero points (nLayers, capacity, nGroups); `bytes` reports what the packed layout costs
 * (bits·elements + stored scales + zero points), `bitsPerElement` the same per K or V element.
 */
import { QuantlabError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import { groupLayout, type GroupLayout } from "../quant/granularity.js";
import { SpecQuantizer, type GroupRange } from "../quant/quantizer.js";
import { scaleStorageBits, storeScales } from "../quant/scales.js";
import { f16BitsToF32, f32ToF16Bits } from "../core/f16.js";
import { packedBytes } from "../quant/pack.js";
import { printSpec, toSpec, type QuantSpec } from "../quant/spec.js";
import type { KvCache, KvCacheFactory } from "./kv-cache.js";

/** Parses and checks a KV-cache spec; E_SPEC naming the part that a cache cannot use. */
export function parseKvSpec(text: string | QuantSpec): QuantSpec {
  const s = toSpec(text);
  const name = printSpec(s);
  const bad = (why: string): never => {
    throw new QuantlabError("E_SPEC", `KV-cache spec "${name}": ${why}`);
  };
  if (s.granularity.kind === "layer") bad("layer granularity needs every tensor of a layer at once; a cache stores one position at a time (use channel, g<N>, tensor or none)");
  if (s.activations) bad("activation parts (a<b>, afp8) apply to linear inputs, not to the cache");
  if (s.outlierPercent !== undefined) bad("outliers=<pct> is not supported in the cache");
  if (s.packing === "trits") bad("trits packing is not supported in the cache (use ternary with 2-bit codes)");
  if (s.bits > 16) bad("codes wider than 16 bits");
  return s;
}

export interface QuantKvCacheOptions {
  /** seed of stochastic rounding (specs with :sr) */
  seed?: number;
}

/** One of K or V: codes, scales and zero points of every stored position. */
class Plane {
  readonly codes: Uint8Array | Uint16Array; // (nLayers, nKvHeads, capacity, headDim)
  readonly scales: Float32Array; // (nLayers, capacity, nGroups)
  readonly zeros: Float32Array | undefined; // (nLayers, capacity, nGroups), affine schemes only
  constructor(nCodes: number, nParams: number, wide: boolean, affine: boolean) {
    this.codes = wide ? new Uint16Array(nCodes) : new Uint8Array(nCodes);
    this.scales = new Float32Array(nParams);
    this.zeros = affine ? new Float32Array(nParams) : undefined;
  }
}

export class QuantKvCache implements KvCache {
  readonly spec: QuantSpec;
  readonly specString: string;
  /** storage bits per K (or V) element: codes + scales + zero points */
  readonly bitsPerElement: number;
  private readonly q: SpecQuantizer;
  private readonly layout: GroupLayout; // of one (nKvHeads, headDim) tile
  private readonly nGroups: number;
  private readonly groupOf: Uint32Array; // (nKvHeads·headDim) group of each tile element
  private readonly lut: Float64Array; // (2^bits) level of each code
  private readonly k: Plane;
  private readonly v: Plane;
  private readonly rng: Rng | undefined;
  private readonly bitsPerTile: number;
  // scratch
  private readonly ranges: GroupRange[];
  private readonly raw: Float64Array; // (nGroups)
  private readonly idx: Uint32Array; // (max group length)
  private readonly gbuf: Float32Array; // (max group length)
  private readonly row: Float32Array; // (headDim) one decoded row
  private readonly acc: Float64Array; // (headDim) mix accumulators

  constructor(spec: string | QuantSpec, readonly nLayers: number, readonly capacity: number, readonly nKvHeads: number, readonly headDim: number, opts: QuantKvCacheOptions = {}) {
    this.spec = parseKvSpec(spec);
    this.specString = printSpec(this.spec);
    const s = this.spec;
    this.q = new SpecQuantizer(s);
    const tileN = nKvHeads * headDim;
    this.layout = groupLayout([nKvHeads, headDim], s.granularity);
    this.nGroups = this.layout.nGroups;
    this.groupOf = this.layout.groupOfElement();
    this.lut = new Float64Array(2 ** s.bits);
    for (let c = 0; c < this.lut.length; c++) this.lut[c] = this.q.levelOf(c);
    const affine = s.scheme === "asym" || s.scheme === "asymf";
    const nCodes = nLayers * capacity * tileN;
    const nParams = nLayers * capacity * this.nGroups;
    this.k = new Plane(nCodes, nParams, s.bits > 8, affine);
    this.v = new Plane(nCodes, nParams, s.bits > 8, affine);
    this.rng = s.rounding === "stochastic" ? new Rng(opts.seed ?? 0) : undefined;
    // storage of one tile: packed codes + stored scales (with super-scales) + zero points
    let bits = 8 * packedBytes(tileN, s.bits);
    if (s.granularity.kind !== "none") bits += scaleStorageBits(storeScales(new Float64Array(this.nGroups).fill(1), s.scale.dtype, s.scale.superBlock, this.q.e8m0Offset, s.scheme === "asym"));
    if (s.scheme === "asym") bits += 8 * packedBytes(this.nGroups, s.bits);
    else if (s.scheme === "asymf") bits += this.nGroups * (s.scale.dtype === "f32" ? 32 : 16);
    this.bitsPerTile = bits;
    this.bitsPerElement = bits / tileN;
    this.ranges = new Array<GroupRange>(this.nGroups);
    this.raw = new Float64Array(this.nGroups);
    this.idx = new Uint32Array(this.layout.maxGroupLength);
    this.gbuf = new Float32Array(this.layout.maxGroupLength);
    this.row = new Float32Array(headDim);
    this.acc = new Float64Array(headDim);
  }

  /** packed bytes of every position the cache can hold (K and V) */
  get bytes(): number {
    return Math.ceil((2 * this.nLayers * this.capacity * this.bitsPerTile) / 8);
  }

  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
    this.storeTile(this.k, layer, pos, k, "K");
    this.storeTile(this.v, layer, pos, v, "V");
  }

  /** Quantizes one (nKvHeads, headDim) tile as quantizeTensor does: calibrate → raw scales → stored scales → zeros → codes. */
  private storeTile(p: Plane, layer: number, pos: number, x: Float32Array, which: "K" | "V"): void {
    const { q, layout: L, nGroups: nG, ranges, raw, idx, gbuf } = this;
    const s = this.spec;
    const hd = this.headDim;
    for (let i = 0; i < this.nKvHeads * hd; i++) {
      if (!Number.isFinite(x[i]!)) throw new QuantlabError("E_VALUE", `KV cache: ${which} of layer ${layer} position ${pos} element ${i} is ${x[i]}`);
    }
    const groupValues = (g: number): Float32Array => {
      const start = L.contiguousStart(g);
      if (start >= 0) return x.subarray(start, start + L.length(g));
      const n = L.indices(g, idx);
      for (let j = 0; j < n; j++) gbuf[j] = x[idx[j]!]!;
      return gbuf.subarray(0, n);
    };
    const po = (layer * this.capacity + pos) * nG;
    if (s.granularity.kind === "none") {
      p.scales[po] = 1;
    } else {
      for (let g = 0; g < nG; g++) {
        ranges[g] = q.calibrate(groupValues(g));
        raw[g] = q.rawScale(ranges[g]!);
      }
      const st = storeScales(raw, s.scale.dtype, s.scale.superBlock, q.e8m0Offset, s.scheme === "asym");
      p.scales.set(st.values, po);
      if (p.zeros) {
        for (let g = 0; g < nG; g++) {
          const z = q.zeroPoint(ranges[g]!, st.values[g]!);
          // asymf zero points are stored in f32 (f32 scales) or f16, as quantizeTensor stores them
          p.zeros[po + g] = s.scheme === "asymf" && s.scale.dtype !== "f32" ? f16BitsToF32(f32ToF16Bits(z)) : z;
        }
      }
    }
    const gmap = this.groupOf;
    for (let h = 0; h < this.nKvHeads; h++) {
      const co = this.codeBase(layer, h) + pos * hd;
      for (let i = 0; i < hd; i++) {
        const e = h * hd + i;
        const g = gmap[e]!;
        const sc = p.scales[po + g]!;
        const z = p.zeros ? p.zeros[po + g]! : 0;
        const c = q.encode(x[e]!, sc, z, this.rng, s.granularity.kind === "none" ? undefined : ranges[g]!.threshold);
        if (s.granularity.kind === "none" && !Number.isFinite(this.lut[c]!)) {
          throw new QuantlabError("E_VALUE", `KV cache: ${which} of layer ${layer} position ${pos} element ${e} = ${x[e]} overflows ${s.format}; use a scaled spec (e.g. ${s.format}:channel)`);
        }
        p.codes[co + i] = c;
      }
    }
  }

  private codeBase(layer: number, kvHead: number): number {
    return (layer * this.nKvHeads + kvHead) * this.capacity * this.headDim;
  }

  /** Decodes row (layer, t, kvHead) of a plane into out[0..headDim). */
  private decodeRow(p: Plane, layer: number, kvHead: number, t: number, out: Float32Array): void {
    const hd = this.headDim;
    const co = this.codeBase(layer, kvHead) + t * hd;
    const po = (layer * this.capacity + t) * this.nGroups;
    const { lut, groupOf } = this;
    const codes = p.codes, scales = p.scales, zeros = p.zeros;
    const e0 = kvHead * hd;
    for (let i = 0; i < hd; i++) {
      const g = po + groupOf[e0 + i]!;
      out[i] = (lut[codes[co + i]!]! - (zeros ? zeros[g]! : 0)) * scales[g]!;
    }
  }

  scores(layer: number, kvHead: number, q: Float32Array, qOff: number, n: number, out: Float32Array): void {
    const hd = this.headDim;
    const r = this.row;
    for (let t = 0; t < n; t++) {
      this.decodeRow(this.k, layer, kvHead, t, r);
      let s = 0;
      for (let i = 0; i < hd; i++) s += q[qOff + i]! * r[i]!;
      out[t] = s;
    }
  }

  mix(layer: number, kvHead: number, p: Float32Array, n: number, out: Float32Array, outOff: number): void {
    const hd = this.headDim;
    const r = this.row;
    const acc = this.acc; // f64 partial sums, as the f32 cache's registers
    acc.fill(0);
    for (let t = 0; t < n; t++) {
      this.decodeRow(this.v, layer, kvHead, t, r);
      const a = p[t]!;
      for (let i = 0; i < hd; i++) acc[i] += a * r[i]!;
    }
    for (let i = 0; i < hd; i++) out[outOff + i] = acc[i]!;
  }

  /** The dequantized K or V tile (nKvHeads·headDim) of (layer, pos), for tests and inspection. */
  dequantizeTile(which: "k" | "v", layer: number, pos: number, out = new Float32Array(this.nKvHeads * this.headDim)): Float32Array {
    const p = which === "k" ? this.k : this.v;
    for (let h = 0; h < this.nKvHeads; h++) this.decodeRow(p, layer, h, pos, out.subarray(h * this.headDim, (h + 1) * this.headDim));
    return out;
  }

  reset(): void {
    // positions are always written before they are read
  }
}

/** A KvCacheFactory for Llama's `kvCache` option. */
export function quantKvCacheFactory(spec: string | QuantSpec, opts: QuantKvCacheOptions = {}): KvCacheFactory {
  const s = parseKvSpec(spec); // bad specs fail before a model is built
  return (l, c, h, d) => new QuantKvCache(s, l, c, h, d, opts);
}
