/**
 * QTensor, the QuantizedTensor implementation: packed codes + stored scales (+ super-scales, zero points,
 * learned codebook, outlier side table) + the spec; and `quantizeTensor`, the round-to-nearest entry point.
 *
 * Storage (what `storageBits` counts, equal to 8 × the bytes `toEntries` writes):
 *   codes     ⌈n·bits/8⌉ bytes, row-major, LSB-first (quant/pack.ts), or ⌈n/5⌉ bytes for ternary trits
 *   scales    per group in the scale dtype (u6/u4 bit-packed), + 4 bytes per super-block for quantized dtypes
 *   zeros     asym: ⌈nGroups·bits/8⌉ bytes of integer zero points; asymf: f32 (f32 scales) or f16 per group
 *   codebook  4 bytes per level (learned codebooks only; registry formats need none)
 *   outliers  4-byte index + f16 value per outlier
 */
import { QuantlabError } from "../core/errors.js";
import { f16BitsToF32, f32ToF16Bits } from "../core/f16.js";
import { Rng } from "../core/rng.js";
import { numel } from "../core/tensor.js";
import { groupLayout, type GroupLayout } from "./granularity.js";
import { pack, packedBytes, packTernary5, packedTritBytes, unpack, unpackTernary5 } from "./pack.js";
import { SpecQuantizer, type GroupParams, type GroupRange } from "./quantizer.js";
import { isUnsignedDtype, scaleStorageBits, storeScales, type StoredScales } from "./scales.js";
import { printSpec, toSpec, type QuantSpec } from "./spec.js";
import type { QuantizedTensor } from "./types.js";
import type { NearestTable } from "../formats/types.js";
import { attachLazy, type LazyData } from "../core/lazy.js";
import { resolveElement } from "./elements.js";

export interface OutlierTable {
  /** flat element indices, ascending, (k) */
  indices: Uint32Array;
  /** f16 bits of the kept values, (k) */
  valuesF16: Uint16Array;
}

export type ZeroPoints =
  | { kind: "int"; values: Uint16Array } // (nGroups), each < 2^bits
  | { kind: "float"; dtype: "f32" | "f16"; values: Float32Array }; // (nGroups), exactly representable in dtype

export interface QTensorParts {
  spec: QuantSpec;
  shape: readonly number[];
  /** packed codes (see file comment) */
  codes: Uint8Array;
  /** absent only for granularity none */
  scales?: StoredScales;
  zeros?: ZeroPoints;
  codebook?: Float32Array;
  outliers?: OutlierTable;
}

/** The data of a QTensor: what a lazily loaded one reads on first use. */
interface QTensorData {
  codes: Uint8Array;
  scales: StoredScales | undefined;
  zeros: ZeroPoints | undefined;
  codebook: Float32Array | undefined;
  outliers: OutlierTable | undefined;
  quantizer: SpecQuantizer;
}

export class QTensor implements QuantizedTensor {
  readonly spec: string;
  readonly specObject: QuantSpec;
  readonly shape: readonly number[];
  readonly layout: GroupLayout;
  /** weights per code (the sub-vector length of vector quantization), from the spec alone */
  private readonly dim: number;
  private readonly own: QTensorData | undefined;
  private readonly lazy: LazyData<QTensor> | undefined;
  private readonly lazyStorageBits: number | undefined;

  constructor(p: QTensorParts) {
    this.specObject = p.spec;
    this.spec = printSpec(p.spec);
    this.shape = [...p.shape];
    this.layout = groupLayout(this.shape, p.spec.granularity);
    this.lazy = undefined;
    this.lazyStorageBits = undefined;
    const quantizer = new SpecQuantizer(p.spec, p.codebook ? { codebook: p.codebook } : {});
    this.dim = quantizer.dim;
    this.own = { codes: p.codes, scales: p.scales, zeros: p.zeros, codebook: p.codebook, outliers: p.outliers, quantizer };
    const n = this.numel;
    const needCodes = this.codeBytes;
    if (this.codes.length !== needCodes) throw new QuantlabError("E_FORMAT", `${this.spec}: ${n} codes need ${needCodes} bytes, got ${this.codes.length}`);
    const nG = this.layout.nGroups;
    if (p.spec.granularity.kind !== "none" && (!this.scales || this.scales.values.length !== nG)) {
      throw new QuantlabError("E_FORMAT", `${this.spec}: shape [${this.shape.join(", ")}] has ${nG} groups, got ${this.scales?.values.length ?? 0} scales`);
    }
    const affine = p.spec.scheme === "asym" || p.spec.scheme === "asymf";
    if (affine !== (this.zeros !== undefined) || (this.zeros && this.zeros.values.length !== nG)) {
      throw new QuantlabError("E_FORMAT", `${this.spec}: expected ${affine ? nG : 0} zero points, got ${this.zeros?.values.length ?? 0}`);
    }
  }

  /**
   * A QTensor whose codes, scales and side tables are read on first access (io/quant-model.ts). `load`
   * gives the eager QTensor of the same spec and shape; `storageBits` is known from the file header.
   */
  static lazy(spec: QuantSpec, shape: readonly number[], storageBits: number, load: LazyData<QTensor>): QTensor {
    const q = Object.create(QTensor.prototype) as QTensor;
    const el = resolveElement(spec.format, spec.bits);
    const fields: Record<string, unknown> = {
      specObject: spec,
      spec: printSpec(spec),
      shape: [...shape],
      layout: groupLayout(shape, spec.granularity),
      dim: el?.kind === "learned" ? el.dim : 1,
      own: undefined,
      lazy: load,
      lazyStorageBits: storageBits,
    };
    Object.assign(q, fields);
    attachLazy(q, load);
    return q;
  }

  // the loader returns an eager QTensor of this spec and shape (fromEntries on the same metadata)
  private get data(): QTensorData {
    return this.own ?? this.lazy!.get().own!;
  }

  /** packed codes (see file comment) */
  get codes(): Uint8Array { return this.data.codes; }
  get scales(): StoredScales | undefined { return this.data.scales; }
  get zeros(): ZeroPoints | undefined { return this.data.zeros; }
  get codebook(): Float32Array | undefined { return this.data.codebook; }
  get outliers(): OutlierTable | undefined { return this.data.outliers; }
  get quantizer(): SpecQuantizer { return this.data.quantizer; }

  get numel(): number {
    return numel(this.shape);
  }

  /** stored codes: one per element, or one per sub-vector for vector quantization */
  get codeCount(): number {
    return this.numel / this.dim;
  }

  get codeBytes(): number {
    return this.specObject.packing === "trits" ? packedTritBytes(this.numel) : packedBytes(this.codeCount, this.specObject.bits);
  }

  get storageBits(): number {
    // a lazy tensor's cost comes from its entries' sizes in the header (8 × bytes, see the file comment),
    // so asking for it reads nothing
    if (!this.own) return this.lazyStorageBits!;
    let bits = 8 * this.codes.length;
    if (this.scales) bits += scaleStorageBits(this.scales);
    if (this.zeros) bits += this.zeros.kind === "int" ? 8 * packedBytes(this.zeros.values.length, this.specObject.bits) : this.zeros.values.length * (this.zeros.dtype === "f32" ? 32 : 16);
    if (this.codebook) bits += 32 * this.codebook.length;
    if (this.outliers) bits += 48 * this.outliers.indices.length;
    return bits;
  }

  /** bits per weight, everything included */
  get bitsPerWeight(): number {
    return this.numel === 0 ? 0 : this.storageBits / this.numel;
  }

  /** unpacked storage codes, row-major (codeCount) */
  unpackCodes(): Uint16Array {
    const n = this.codeCount;
    if (this.specObject.packing === "trits") return Uint16Array.from(unpackTernary5(this.codes, n));
    return unpack(this.codes, this.specObject.bits, n, new Uint16Array(n)) as Uint16Array;
  }

  /** (scale, zero) of group g as dequantization uses them */
  groupParams(g: number): GroupParams {
    return { scale: this.scales ? this.scales.values[g]! : 1, zero: this.zeros ? this.zeros.values[g]! : 0 };
  }

  dequantize(out?: Float32Array): Float32Array {
    const n = this.numel;
    const dst = out ?? new Float32Array(n);
    if (dst.length !== n) throw new QuantlabError("E_ARG", `dequantize: destination has ${dst.length} elements, tensor has ${n}`);
    const codes = this.unpackCodes();
    const q = this.quantizer;
    if (q.dim > 1) {
      // vector quantization: groups hold whole sub-vectors (checked at quantization), so element i's scale is its group's
      const d = q.dim, cb = this.codebook!, gOf = this.layout.groupOfElement();
      for (let v = 0; v < codes.length; v++) {
        const s = this.groupParams(gOf[v * d]!).scale, c = codes[v]! * d;
        for (let t = 0; t < d; t++) dst[v * d + t] = cb[c + t]! * s;
      }
      const o = this.outliers;
      if (o) for (let j = 0; j < o.indices.length; j++) dst[o.indices[j]!] = f16BitsToF32(o.valuesF16[j]!);
      return dst;
    }
    // decode table: the per-code factor, so x̂ = fround((lut[c] − z)·s) reproduces q.decode exactly
    const nCodes = 2 ** this.specObject.bits;
    const lut = new Float64Array(Math.max(1, nCodes));
    for (let c = 0; c < lut.length; c++) lut[c] = q.levelOf(c);
    const L = this.layout;
    const idx = new Uint32Array(L.maxGroupLength);
    for (let g = 0; g < L.nGroups; g++) {
      const { scale: s, zero: z } = this.groupParams(g);
      const start = L.contiguousStart(g);
      if (start >= 0) {
        const len = L.length(g);
        for (let i = start; i < start + len; i++) dst[i] = (lut[codes[i]!]! - z) * s;
      } else {
        const k = L.indices(g, idx);
        for (let j = 0; j < k; j++) { const i = idx[j]!; dst[i] = (lut[codes[i]!]! - z) * s; }
      }
    }
    const o = this.outliers;
    if (o) for (let j = 0; j < o.indices.length; j++) dst[o.indices[j]!] = f16BitsToF32(o.valuesF16[j]!);
    return dst;
  }
}

export interface QuantizeOptions {
  /** tensor name for error messages */
  name?: string;
  /** seed of the stochastic-rounding rng (default 0); ignored with nearest rounding */
  seed?: number;
  rng?: Rng;
  /** learned codebook levels (in scale units), code i ↔ level i */
  codebook?: Float32Array;
  /**
   * Group parameters to use instead of calibrating (GPTQ/AWQ/HQQ output), in group order (row-major
   * (row, group) for channel and g<N>). Values are then encoded with these scales; pass the algorithm's
   * dequantized weights as `w` and the codes come out exactly. Double-quantized scale dtypes re-round
   * the given scales per super-block.
   */
  params?: ArrayLike<GroupParams>;
  /** layer granularity: the range shared by every tensor of the layer (see quantizeLayer) */
  sharedRange?: GroupRange;
}

/** Throws E_VALUE naming the tensor and the first NaN/Inf. */
export function checkFinite(w: ArrayLike<number>, name: string): void {
  for (let i = 0; i < w.length; i++) {
    const v = w[i]!;
    if (!Number.isFinite(v)) throw new QuantlabError("E_VALUE", `tensor ${name}: element ${i} is ${v}; cannot quantize NaN/Inf weights`);
  }
}

/** Flat indices of the ⌈pct/100 · n⌉ largest |w| (ties: lower index first), ascending. */
export function selectOutliers(w: ArrayLike<number>, percent: number): Uint32Array {
  const n = w.length;
  const k = Math.min(n, Math.ceil((percent / 100) * n));
  if (k === 0) return new Uint32Array(0);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => Math.abs(w[b]!) - Math.abs(w[a]!) || a - b);
  return order.slice(0, k).sort();
}

/** Round-to-nearest quantization of one tensor (rows, cols) = w (row-major) under a spec. */
export function quantizeTensor(w: Float32Array, shape: readonly number[], specIn: string | QuantSpec, opts: QuantizeOptions = {}): QTensor {
  const spec = toSpec(specIn);
  const name = opts.name ?? "tensor";
  const n = numel(shape);
  if (w.length !== n) throw new QuantlabError("E_ARG", `tensor ${name}: ${w.length} values but shape [${shape.join(", ")}] needs ${n}`);
  checkFinite(w, name);
  const q = new SpecQuantizer(spec, opts.codebook ? { codebook: opts.codebook } : {});
  const L = groupLayout(shape, spec.granularity);
  const nG = L.nGroups;
  if (q.dim > 1 && L.cols % q.dim !== 0) {
    throw new QuantlabError("E_SPEC", `tensor ${name}: rows of ${L.cols} do not split into ${q.dim}-weight sub-vectors of ${printSpec(spec)}`);
  }

  // outliers: kept in f16, removed (zeroed) before calibration and encoding
  let outliers: OutlierTable | undefined;
  let src = w;
  if (spec.outlierPercent !== undefined) {
    const indices = selectOutliers(w, spec.outlierPercent);
    const valuesF16 = new Uint16Array(indices.length);
    src = new Float32Array(w);
    for (let j = 0; j < indices.length; j++) {
      valuesF16[j] = f32ToF16Bits(w[indices[j]!]!);
      src[indices[j]!] = 0;
    }
    outliers = { indices, valuesF16 };
  }

  // pass 1: group ranges → raw scales
  const scratch = new Float32Array(L.maxGroupLength);
  const idx = new Uint32Array(L.maxGroupLength);
  const groupValues = (g: number): Float32Array => {
    const start = L.contiguousStart(g);
    if (start >= 0) return src.subarray(start, start + L.length(g));
    const k = L.indices(g, idx);
    for (let j = 0; j < k; j++) scratch[j] = src[idx[j]!]!;
    return scratch.subarray(0, k);
  };
  const ranges: GroupRange[] = new Array(nG);
  const raw = new Float64Array(nG);
  if (opts.params) {
    if (opts.params.length !== nG) throw new QuantlabError("E_ARG", `tensor ${name}: ${opts.params.length} group params given, ${printSpec(spec)} has ${nG} groups`);
    for (let g = 0; g < nG; g++) raw[g] = opts.params[g]!.scale;
  } else {
    for (let g = 0; g < nG; g++) {
      const r = opts.sharedRange ?? q.calibrate(groupValues(g));
      ranges[g] = r;
      raw[g] = q.rawScale(r);
    }
  }
  const scales = spec.granularity.kind === "none" ? undefined : storeScales(raw, spec.scale.dtype, spec.scale.superBlock, q.e8m0Offset, spec.scheme === "asym");

  // zero points for the stored scales
  let zeros: ZeroPoints | undefined;
  if (q.isAffine) {
    if (spec.scheme === "asym") {
      const zv = new Uint16Array(nG);
      for (let g = 0; g < nG; g++) zv[g] = opts.params ? opts.params[g]!.zero : q.zeroPoint(ranges[g]!, scales!.values[g]!);
      for (let g = 0; g < nG; g++) if (!(zv[g]! <= q.qmax)) throw new QuantlabError("E_ARG", `tensor ${name}: zero point ${zv[g]} of group ${g} does not fit ${spec.bits} bits`);
      zeros = { kind: "int", values: zv };
    } else {
      const dtype = spec.scale.dtype === "f32" ? "f32" : "f16";
      const zv = new Float32Array(nG);
      for (let g = 0; g < nG; g++) {
        const z = opts.params ? opts.params[g]!.zero : q.zeroPoint(ranges[g]!, scales!.values[g]!);
        zv[g] = dtype === "f32" ? z : f16BitsToF32(f32ToF16Bits(z));
      }
      zeros = { kind: "float", dtype, values: zv };
    }
  }

  // pass 2: codes
  const rng = spec.rounding === "stochastic" ? (opts.rng ?? new Rng(opts.seed ?? 0)) : undefined;
  if (q.dim > 1) {
    // vector quantization: the nearest codeword of each sub-vector, at its group's scale
    const d = q.dim, gOf = L.groupOfElement();
    const vcodes = new Uint16Array(n / d);
    for (let v = 0; v < vcodes.length; v++) vcodes[v] = q.nearestCodeword(src, v * d, scales!.values[gOf[v * d]!]!);
    const parts: QTensorParts = { spec, shape, codes: pack(vcodes, spec.bits), scales: scales!, codebook: new Float32Array(opts.codebook!) };
    if (outliers) parts.outliers = outliers;
    return new QTensor(parts);
  }
  const codes = new Uint16Array(n);
  const intFast = q.isInt && !rng;
  const qmin = q.qmin, qmax = q.qmax, off = q.codeOffset;
  const table = q.nearestTable;
  for (let g = 0; g < nG; g++) {
    const s = scales ? scales.values[g]! : 1;
    const z = zeros ? zeros.values[g]! : 0;
    const thr = opts.params ? opts.params[g]!.threshold : ranges[g]!.threshold;
    const start = L.contiguousStart(g);
    if (start >= 0 && table && thr === undefined && s !== 0 && Number.isFinite(s)) {
      // level formats: fmt.encode(x/s) inlined — binary search of the sorted values, ties to the even code
      // (formats/round.ts LevelSet.encode, step for step)
      encodeNearest(table, src, start, start + L.length(g), s, codes);
    } else if (start >= 0 && intFast && s !== 0 && Number.isFinite(s)) {
      // integer grid, nearest-even: the arithmetic of SpecQuantizer.encode inlined for contiguous groups
      const end = start + L.length(g);
      const zf = spec.scheme === "asymf" ? z : 0, zi = spec.scheme === "asym" ? z : 0;
      for (let i = start; i < end; i++) {
        const v = src[i]! / s + zf;
        let r = Math.round(v);
        if (r - v === 0.5 && r % 2 !== 0) r--; // ties to even
        r += zi;
        codes[i] = (r < qmin ? qmin : r > qmax ? qmax : r) + off;
      }
    } else if (start >= 0) {
      const end = start + L.length(g);
      for (let i = start; i < end; i++) codes[i] = q.encode(src[i]!, s, z, rng, thr);
    } else {
      const k = L.indices(g, idx);
      for (let j = 0; j < k; j++) { const i = idx[j]!; codes[i] = q.encode(src[i]!, s, z, rng, thr); }
    }
  }
  if (spec.granularity.kind === "none") {
    // a direct cast must not turn a finite weight into ±Inf/NaN
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(q.decode(codes[i]!, 1, 0))) {
        throw new QuantlabError("E_VALUE", `tensor ${name}: element ${i} = ${src[i]} overflows ${spec.format}; use a scaled granularity (e.g. ${spec.format}:tensor)`);
      }
    }
  }
  if (scales && isUnsignedDtype(spec.scale.dtype)) for (const v of scales.values) if (v < 0) throw new QuantlabError("E_INTERNAL", "negative scale in an unsigned scale dtype");
  const packed = spec.packing === "trits" ? packTernary5(codes) : pack(codes, spec.bits);
  const parts: QTensorParts = { spec, shape, codes: packed };
  if (scales) parts.scales = scales;
  if (zeros) parts.zeros = zeros;
  if (opts.codebook) parts.codebook = new Float32Array(opts.codebook);
  if (outliers) parts.outliers = outliers;
  return new QTensor(parts);
}

/** codes[i] = table encode of src[i]/s for i in [start, end): LevelSet.encode inlined (same codes). */
function encodeNearest(t: NearestTable, src: Float32Array, start: number, end: number, s: number, codes: Uint16Array): void {
  const S = t.sorted, C = t.codes, M = t.mids, nz = t.negZeroCode, last = S.length - 1;
  for (let i = start; i < end; i++) {
    const v = src[i]! / s;
    let lo = 0, hi = last + 1; // invariant: S[lo-1] ≤ v < S[hi]
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (S[mid]! <= v) lo = mid + 1;
      else hi = mid;
    }
    let j = lo - 1;
    if (j < 0) j = 0;
    else if (j < last && S[j] !== v) {
      const m = M[j]!;
      if (v > m || (v === m && (C[j]! & 1) !== 0)) j++;
    }
    codes[i] = nz >= 0 && S[j] === 0 && (v < 0 || Object.is(v, -0)) ? nz : C[j]!;
  }
}

export interface LayerEntry {
  name: string;
  w: Float32Array;
  shape: readonly number[];
}

/**
 * Per-layer granularity: one range shared by a set of tensors (calibrated on all their values together),
 * each tensor then quantized with it. Works for any spec; the spec's own granularity should be `layer`.
 */
export function quantizeLayer(entries: readonly LayerEntry[], specIn: string | QuantSpec, opts: Omit<QuantizeOptions, "sharedRange" | "params" | "name"> = {}): QTensor[] {
  const spec = toSpec(specIn);
  if (spec.granularity.kind !== "layer") throw new QuantlabError("E_SPEC", `quantizeLayer: spec ${printSpec(spec)} must have granularity layer`);
  let total = 0;
  for (const e of entries) { checkFinite(e.w, e.name); total += e.w.length; }
  const all = new Float32Array(total);
  let o = 0;
  for (const e of entries) { all.set(e.w, o); o += e.w.length; }
  const q = new SpecQuantizer(spec, opts.codebook ? { codebook: opts.codebook } : {});
  const sharedRange = q.calibrate(all);
  return entries.map((e) => quantizeTensor(e.w, e.shape, spec, { ...opts, name: e.name, sharedRange }));
}

/** quantize → dequantize in one call (fake quantization), e.g. to measure a spec's error. */
export function fakeQuantize(w: Float32Array, shape: readonly number[], spec: string | QuantSpec, opts: QuantizeOptions = {}): Float32Array {
  return quantizeTensor(w, shape, spec, opts).dequantize();
}
