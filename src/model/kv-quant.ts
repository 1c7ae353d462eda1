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
 * Storage: codes bit-packed as the spec's width (LSB first, each (layer, KV head, position) row starting on a
 * byte; u16 per code above 8 bits), scales and zero points as f32 (nLayers, capacity, nGroups); `bytes`
 * reports what the packed layout costs (bits·elements + stored scales at their dtype + zero points),
 * `residentBytes` what the arrays really take, `bitsPerElement` the packed cost per V element
 * (`keyBitsPerElement` per K element).
 *
 * Options (KIVI, Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache",
 * arXiv:2402.02750):
 * - `keys: "channel"`: keys quantized per channel over groups of G consecutive tokens (the spec must be
 *   g<G>; each (layer, KV head, token group, channel) gets its scale and zero), values per token as
 *   above. Keys have outlier channels, values do not: per-channel scales confine a key outlier to its
 *   channel. A group is quantized when its last token is stored; until then its keys are read in f32.
 * - `window: R`: the R most recent positions are read unquantized (KIVI's full-precision residual).
 * The rule depends only on how many positions a read covers (n), never on how the positions were fed:
 * a read over n positions takes K of t in f32 iff t ≥ min(n − R, ⌊n/G⌋·G) (channel keys; t ≥ n − R
 * otherwise) and V in f32 iff t ≥ n − R, so chunked prefill and one-token decode see the same cache.
 * The f32 rows are held in a ring per layer, which drops rows no later read can want.
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
  /** "token" (default): keys quantized per position as values are; "channel": per channel over groups of G tokens (KIVI; spec g<G>) */
  keys?: "token" | "channel";
  /** positions read in f32 at the end of every read (KIVI's residual), default 0 */
  window?: number;
}

/**
 * Codes of (rows, width) elements, bit-packed LSB first with every row starting on a byte (one spare byte
 * at the end so a 2-byte read never leaves the array); codes wider than 8 bits are kept one per u16.
 */
class PackedCodes {
  readonly data: Uint8Array | Uint16Array;
  readonly rowBytes: number;
  private readonly mask: number;
  constructor(rows: number, readonly width: number, readonly bits: number) {
    this.mask = (1 << bits) - 1;
    if (bits > 8) {
      this.rowBytes = 2 * width;
      this.data = new Uint16Array(rows * width);
    } else {
      this.rowBytes = Math.ceil((width * bits) / 8);
      this.data = new Uint8Array(rows * this.rowBytes + 1);
    }
  }
  /** clears row `row` (codes are OR-ed in by set) */
  clearRow(row: number): void {
    if (this.bits > 8) this.data.fill(0, row * this.width, (row + 1) * this.width);
    else this.data.fill(0, row * this.rowBytes, (row + 1) * this.rowBytes);
  }
  /** sets code i of a cleared row */
  set(row: number, i: number, c: number): void {
    if (this.bits > 8) { this.data[row * this.width + i] = c; return; }
    const bit = i * this.bits;
    const at = row * this.rowBytes + (bit >> 3), sh = bit & 7;
    const d = this.data as Uint8Array;
    const v = c << sh;
    d[at] = d[at]! | (v & 0xff);
    if (sh + this.bits > 8) d[at + 1] = d[at + 1]! | (v >> 8);
  }
  get(row: number, i: number): number {
    if (this.bits > 8) return this.data[row * this.width + i]!;
    const bit = i * this.bits;
    const at = row * this.rowBytes + (bit >> 3);
    const d = this.data as Uint8Array;
    return ((d[at]! | (d[at + 1]! << 8)) >> (bit & 7)) & this.mask;
  }
}

/** One of K or V: codes, scales and zero points of every stored position. */
class Plane {
  readonly codes: PackedCodes; // rows (nLayers, nKvHeads, capacity), headDim codes each
  readonly scales: Float32Array; // (nLayers, capacity, nGroups); channel keys: (nLayers, nKvHeads, token groups, headDim)
  readonly zeros: Float32Array | undefined; // as scales, affine schemes only
  constructor(rows: number, width: number, bits: number, nParams: number, affine: boolean) {
    this.codes = new PackedCodes(rows, width, bits);
    this.scales = new Float32Array(nParams);
    this.zeros = affine ? new Float32Array(nParams) : undefined;
  }
  get residentBytes(): number {
    return this.codes.data.byteLength + this.scales.byteLength + (this.zeros?.byteLength ?? 0);
  }
}

/** The f32 K and V rows of one layer's recent positions: slot = pos mod cap, grown when a wanted row would be overwritten. */
class Ring {
  cap: number;
  k: Float32Array;
  v: Float32Array;
  pos: Int32Array; // position held by each slot, −1 when empty
  /** no later read wants f32 rows below this position */
  keepFrom = 0;
  constructor(cap: number, readonly width: number) {
    this.cap = cap;
    this.k = new Float32Array(cap * width);
    this.v = new Float32Array(cap * width);
    this.pos = new Int32Array(cap).fill(-1);
  }
  put(p: number, k: Float32Array, v: Float32Array): void {
    let slot = p % this.cap;
    const held = this.pos[slot]!;
    if (held !== -1 && held !== p && held >= this.keepFrom) {
      this.grow();
      slot = p % this.cap;
    }
    this.pos[slot] = p;
    this.k.set(k.subarray(0, this.width), slot * this.width);
    this.v.set(v.subarray(0, this.width), slot * this.width);
  }
  /** offset of position p's row, or −1 when it is not held */
  at(p: number): number {
    const slot = p % this.cap;
    return this.pos[slot] === p ? slot * this.width : -1;
  }
  clear(): void {
    this.pos.fill(-1);
    this.keepFrom = 0;
  }
  private grow(): void {
    const old = { k: this.k, v: this.v, pos: this.pos, cap: this.cap };
    this.cap *= 2;
    this.k = new Float32Array(this.cap * this.width);
    this.v = new Float32Array(this.cap * this.width);
    this.pos = new Int32Array(this.cap).fill(-1);
    for (let s = 0; s < old.cap; s++) {
      const p = old.pos[s]!;
      if (p < this.keepFrom) continue;
      const to = p % this.cap;
      this.pos[to] = p;
      this.k.set(old.k.subarray(s * this.width, (s + 1) * this.width), to * this.width);
      this.v.set(old.v.subarray(s * this.width, (s + 1) * this.width), to * this.width);
    }
  }
}

export class QuantKvCache implements KvCache {
  readonly spec: QuantSpec;
  readonly specString: string;
  /** storage bits per K (or V) element: codes + scales + zero points */
  readonly bitsPerElement: number;
  /** storage bits per K element (≠ bitsPerElement with channel keys) */
  readonly keyBitsPerElement: number;
  readonly keys: "token" | "channel";
  readonly window: number;
  /** channel keys: tokens per key group */
  readonly keyGroup: number;
  private readonly rings: Ring[] | undefined;
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
    this.keys = opts.keys ?? "token";
    this.window = opts.window ?? 0;
    if (!Number.isInteger(this.window) || this.window < 0) throw new QuantlabError("E_ARG", `KV cache: window must be a non-negative integer, got ${opts.window}`);
    if (this.keys === "channel") {
      if (s.granularity.kind !== "group") throw new QuantlabError("E_SPEC", `KV-cache spec "${this.specString}": channel keys (KIVI) quantize each channel over groups of G tokens: give the group as g<G> (e.g. int2:g32:asym), not ${s.granularity.kind} granularity`);
      if (s.rounding === "stochastic") throw new QuantlabError("E_SPEC", `KV-cache spec "${this.specString}": stochastic rounding is not supported with channel keys`);
      this.keyGroup = s.granularity.size;
    } else this.keyGroup = 0;
    const rows = nLayers * nKvHeads * capacity;
    const nParams = nLayers * capacity * this.nGroups;
    const keyParams = this.keys === "channel" ? nLayers * nKvHeads * Math.ceil(capacity / this.keyGroup) * headDim : nParams;
    this.k = new Plane(rows, headDim, s.bits, keyParams, affine);
    this.v = new Plane(rows, headDim, s.bits, nParams, affine);
    this.rings = this.window > 0 || this.keys === "channel" ? Array.from({ length: nLayers }, () => new Ring(this.window + Math.max(this.keyGroup, 1) + 16, tileN)) : undefined;
    this.rng = s.rounding === "stochastic" ? new Rng(opts.seed ?? 0) : undefined;
    // storage of one tile: packed codes + stored scales (with super-scales) + zero points
    let bits = 8 * packedBytes(tileN, s.bits);
    if (s.granularity.kind !== "none") bits += scaleStorageBits(storeScales(new Float64Array(this.nGroups).fill(1), s.scale.dtype, s.scale.superBlock, this.q.e8m0Offset, s.scheme === "asym"));
    if (s.scheme === "asym") bits += 8 * packedBytes(this.nGroups, s.bits);
    else if (s.scheme === "asymf") bits += this.nGroups * (s.scale.dtype === "f32" ? 32 : 16);
    this.bitsPerTile = bits;
    this.bitsPerElement = bits / tileN;
    // channel keys: codes + per (channel, G tokens) scale (+ zero) at the stored dtype
    if (this.keys === "channel") {
      const G = this.keyGroup;
      let kb = 8 * packedBytes(headDim, s.bits) * G; // one KV head's G rows
      kb += scaleStorageBits(storeScales(new Float64Array(headDim).fill(1), s.scale.dtype, s.scale.superBlock, this.q.e8m0Offset, s.scheme === "asym"));
      if (s.scheme === "asym") kb += 8 * packedBytes(headDim, s.bits);
      else if (s.scheme === "asymf") kb += headDim * (s.scale.dtype === "f32" ? 32 : 16);
      this.keyBitsPerElement = kb / (G * headDim);
    } else this.keyBitsPerElement = this.bitsPerElement;
    this.ranges = new Array<GroupRange>(this.nGroups);
    this.raw = new Float64Array(this.nGroups);
    this.idx = new Uint32Array(this.layout.maxGroupLength);
    this.gbuf = new Float32Array(this.layout.maxGroupLength);
    this.row = new Float32Array(headDim);
    this.acc = new Float64Array(headDim);
  }

  /** packed bytes of every position the cache can hold (K and V), plus the f32 window rows */
  get bytes(): number {
    const el = this.nLayers * this.capacity * this.nKvHeads * this.headDim;
    const ring = this.rings ? this.rings.reduce((a, r) => a + r.k.byteLength + r.v.byteLength, 0) : 0;
    return Math.ceil((el * (this.bitsPerElement + this.keyBitsPerElement)) / 8) + ring;
  }

  /** bytes the cache's arrays take (codes packed, scales and zeros held as f32, the window rings) */
  get residentBytes(): number {
    const ring = this.rings ? this.rings.reduce((a, r) => a + r.k.byteLength + r.v.byteLength + r.pos.byteLength, 0) : 0;
    return this.k.residentBytes + this.v.residentBytes + ring;
  }

  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
    const ring = this.rings?.[layer];
    if (ring) {
      if (pos < ring.keepFrom) {
        // a new sequence from position 0; any other step back would want f32 rows already dropped
        if (pos !== 0) throw new QuantlabError("E_ARG", `KV cache (window ${this.window}${this.keys === "channel" ? `, channel keys g${this.keyGroup}` : ""}): position ${pos} of layer ${layer} fed again after reads up to ${ring.keepFrom}; start the sequence again from position 0`);
        ring.clear();
      }
      for (let i = 0; i < this.nKvHeads * this.headDim; i++) {
        if (!Number.isFinite(k[i]!) || !Number.isFinite(v[i]!)) throw new QuantlabError("E_VALUE", `KV cache: ${Number.isFinite(k[i]!) ? "V" : "K"} of layer ${layer} position ${pos} element ${i} is ${Number.isFinite(k[i]!) ? v[i] : k[i]}`);
      }
      ring.put(pos, k, v);
    }
    if (this.keys === "channel") {
      const G = this.keyGroup;
      if ((pos + 1) % G === 0) this.storeKeyGroup(layer, (pos + 1) / G - 1);
    } else this.storeTile(this.k, layer, pos, k, "K");
    this.storeTile(this.v, layer, pos, v, "V");
  }

  /** Channel keys: quantizes token group g of a layer (its G rows in the ring), each (KV head, channel) over the group's G tokens. */
  private storeKeyGroup(layer: number, g: number): void {
    const { q, headDim: hd, keyGroup: G } = this;
    const s = this.spec;
    const ring = this.rings![layer]!;
    const kvDim = this.nKvHeads * hd;
    const t0 = g * G;
    const offs = new Int32Array(G);
    for (let j = 0; j < G; j++) {
      const o = ring.at(t0 + j);
      if (o < 0) throw new QuantlabError("E_INTERNAL", `KV cache: key row ${t0 + j} of layer ${layer} left the window before its group was quantized`);
      offs[j] = o;
    }
    const nTG = Math.ceil(this.capacity / G);
    const vals = new Float32Array(G);
    const ranges = new Array<GroupRange>(hd);
    const raw = new Float64Array(hd);
    const p = this.k;
    for (let h = 0; h < this.nKvHeads; h++) {
      for (let i = 0; i < hd; i++) {
        for (let j = 0; j < G; j++) vals[j] = ring.k[offs[j]! + h * hd + i]!;
        ranges[i] = q.calibrate(vals);
        raw[i] = q.rawScale(ranges[i]!);
      }
      const st = storeScales(raw, s.scale.dtype, s.scale.superBlock, q.e8m0Offset, s.scheme === "asym");
      const po = ((layer * this.nKvHeads + h) * nTG + g) * hd;
      p.scales.set(st.values, po);
      if (p.zeros) {
        for (let i = 0; i < hd; i++) {
          const z = q.zeroPoint(ranges[i]!, st.values[i]!);
          p.zeros[po + i] = s.scheme === "asymf" && s.scale.dtype !== "f32" ? f16BitsToF32(f32ToF16Bits(z)) : z;
        }
      }
      const rowBase = (layer * this.nKvHeads + h) * this.capacity;
      for (let j = 0; j < G; j++) {
        const row = rowBase + t0 + j;
        p.codes.clearRow(row);
        for (let i = 0; i < hd; i++) p.codes.set(row, i, q.encode(ring.k[offs[j]! + h * hd + i]!, st.values[i]!, p.zeros ? p.zeros[po + i]! : 0, undefined, ranges[i]!.threshold));
      }
    }
  }

  /** first position a read over n positions takes in f32: K (which "k") or V */
  private floatFrom(which: "k" | "v", n: number): number {
    if (!this.rings) return n;
    const w = n - this.window;
    return which === "k" && this.keys === "channel" ? Math.min(w, Math.floor(n / this.keyGroup) * this.keyGroup) : w;
  }

  /** Row (layer, t, kvHead) of K or V as a read over n positions sees it. */
  private readRow(which: "k" | "v", layer: number, kvHead: number, t: number, n: number, out: Float32Array): void {
    if (t >= this.floatFrom(which, n)) {
      const ring = this.rings![layer]!;
      const o = ring.at(t);
      if (o < 0) throw new QuantlabError("E_INTERNAL", `KV cache: f32 row ${t} of layer ${layer} is no longer held`);
      const src = which === "k" ? ring.k : ring.v;
      out.set(src.subarray(o + kvHead * this.headDim, o + (kvHead + 1) * this.headDim));
      return;
    }
    if (which === "k" && this.keys === "channel") this.decodeKeyRow(layer, kvHead, t, out);
    else this.decodeRow(which === "k" ? this.k : this.v, layer, kvHead, t, out);
  }

  private decodeKeyRow(layer: number, kvHead: number, t: number, out: Float32Array): void {
    const hd = this.headDim, G = this.keyGroup;
    const p = this.k;
    const row = (layer * this.nKvHeads + kvHead) * this.capacity + t;
    const po = ((layer * this.nKvHeads + kvHead) * Math.ceil(this.capacity / G) + Math.floor(t / G)) * hd;
    const lut = this.lut;
    for (let i = 0; i < hd; i++) out[i] = (lut[p.codes.get(row, i)]! - (p.zeros ? p.zeros[po + i]! : 0)) * p.scales[po + i]!;
  }

  /** a read over n positions: rows the ring no longer needs are dropped at the next store */
  private noteRead(layer: number, n: number): void {
    const ring = this.rings?.[layer];
    if (ring) ring.keepFrom = Math.max(ring.keepFrom, Math.min(this.floatFrom("k", n), this.floatFrom("v", n)));
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
      const row = (layer * this.nKvHeads + h) * this.capacity + pos;
      p.codes.clearRow(row);
      for (let i = 0; i < hd; i++) {
        const e = h * hd + i;
        const g = gmap[e]!;
        const sc = p.scales[po + g]!;
        const z = p.zeros ? p.zeros[po + g]! : 0;
        const c = q.encode(x[e]!, sc, z, this.rng, s.granularity.kind === "none" ? undefined : ranges[g]!.threshold);
        if (s.granularity.kind === "none" && !Number.isFinite(this.lut[c]!)) {
          throw new QuantlabError("E_VALUE", `KV cache: ${which} of layer ${layer} position ${pos} element ${e} = ${x[e]} overflows ${s.format}; use a scaled spec (e.g. ${s.format}:channel)`);
        }
        p.codes.set(row, i, c);
      }
    }
  }

  /** Decodes row (layer, t, kvHead) of a per-token plane into out[0..headDim). */
  private decodeRow(p: Plane, layer: number, kvHead: number, t: number, out: Float32Array): void {
    const hd = this.headDim;
    const row = (layer * this.nKvHeads + kvHead) * this.capacity + t;
    const po = (layer * this.capacity + t) * this.nGroups;
    const { lut, groupOf } = this;
    const codes = p.codes, scales = p.scales, zeros = p.zeros;
    const e0 = kvHead * hd;
    for (let i = 0; i < hd; i++) {
      const g = po + groupOf[e0 + i]!;
      out[i] = (lut[codes.get(row, i)]! - (zeros ? zeros[g]! : 0)) * scales[g]!;
    }
  }

  scores(layer: number, kvHead: number, q: Float32Array, qOff: number, n: number, out: Float32Array): void {
    const hd = this.headDim;
    const r = this.row;
    this.noteRead(layer, n);
    for (let t = 0; t < n; t++) {
      this.readRow("k", layer, kvHead, t, n, r);
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
    this.noteRead(layer, n);
    for (let t = 0; t < n; t++) {
      this.readRow("v", layer, kvHead, t, n, r);
      const a = p[t]!;
      for (let i = 0; i < hd; i++) acc[i] += a * r[i]!;
    }
    for (let i = 0; i < hd; i++) out[outOff + i] = acc[i]!;
  }

  /**
   * The K or V tile (nKvHeads·headDim) of (layer, pos) as a read over n positions sees it (default: its
   * quantized form, n = capacity and no window), for tests and inspection.
   */
  dequantizeTile(which: "k" | "v", layer: number, pos: number, out = new Float32Array(this.nKvHeads * this.headDim), n?: number): Float32Array {
    for (let h = 0; h < this.nKvHeads; h++) {
      const o = out.subarray(h * this.headDim, (h + 1) * this.headDim);
      if (n !== undefined) this.readRow(which, layer, h, pos, n, o);
      else if (which === "k" && this.keys === "channel") this.decodeKeyRow(layer, h, pos, o);
      else this.decodeRow(which === "k" ? this.k : this.v, layer, h, pos, o);
    }
    return out;
  }

  reset(): void {
    // positions are always written before they are read; the window rings start again
    for (const r of this.rings ?? []) r.clear();
  }
}

/** A KvCacheFactory for Llama's `kvCache` option. */
export function quantKvCacheFactory(spec: string | QuantSpec, opts: QuantKvCacheOptions = {}): KvCacheFactory {
  const s = parseKvSpec(spec); // bad specs fail before a model is built
  new QuantKvCache(s, 1, Math.max(1, s.granularity.kind === "group" ? s.granularity.size : 1), 1, s.granularity.kind === "group" ? s.granularity.size : 4, opts); // and bad options
  return (l, c, h, d) => new QuantKvCache(s, l, c, h, d, opts);
}
