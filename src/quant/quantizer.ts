/**
 * SpecQuantizer: one spec's element grid + scheme + calibration, applied to one group of values at a
 * time. This is the lower-level API algorithms (GPTQ, AWQ, HQQ…) build on:
 *   const q = new SpecQuantizer(spec);
 *   const r = q.calibrate(values);            // range/clip of a group (the spec's calibration method)
 *   const s = q.rawScale(r);                  // scale before storage rounding
 *   const z = q.zeroPoint(r, storedScale);    // zero point for the stored scale (0 for symmetric)
 *   const c = q.encode(x, storedScale, z);    // storage code (unsigned, < 2^bits)
 *   const v = q.decode(c, storedScale, z);    // the f32 value the code stands for
 *
 * Dequantization rules (x̂ is rounded to f32):
 *   sym / symfull: x̂ = (code − 2^(b−1)) · s        codes hold q + 2^(b−1); q ∈ [−(2^(b−1)−1), 2^(b−1)−1] (sym)
 *                                                     or [−2^(b−1), 2^(b−1)−1] (symfull)
 *   asym:          x̂ = (code − z) · s,  z integer in [0, 2^b−1], q = clamp(round(x/s) + z)
 *   asymf:         x̂ = (code − z) · s,  z float (HQQ), q = clamp(round(x/s + z))
 *   levels:        x̂ = decode_fmt(code) · s         (or codebook[code] · s for learned codebooks)
 *   mean:          x̂ = s                            (0-bit: the group mean, no codes)
 */
import { QuantlabError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import type { Format, NearestTable } from "../formats/types.js";
import { absMax, absMean, absHistogram, absPercentile, KL_BINS, klThreshold, minMax, percentileRange, searchClipRatio } from "./calibrate.js";
import { elementMaxValue, resolveElement, type Element } from "./elements.js";
import { floorLog2, isUnsignedDtype, mxScaleExponent, roundHalfEven, storeScales } from "./scales.js";
import { f16BitsToF32, f32ToF16Bits } from "../core/f16.js";
import { printSpec, type QuantSpec } from "./spec.js";

/** A calibrated group range. Symmetric schemes use `clip` (and `negative`: the extreme value is < 0). */
export interface GroupRange {
  lo: number;
  hi: number;
  clip: number;
  negative: boolean;
  /** TWN threshold Δ (|x| ≤ Δ → 0), only for twn calibration */
  threshold?: number;
}

/** One group's stored parameters: x̂ = (q − zero)·scale (zero 0 for symmetric and level formats). */
export interface GroupParams {
  scale: number;
  zero: number;
  /** TWN threshold for ternary groups calibrated with `twn` */
  threshold?: number;
}

export interface SpecQuantizerOptions {
  /** learned codebook levels (in scale units) replacing the format's value set; code i ↔ codebook[i] */
  codebook?: Float32Array;
}

export class SpecQuantizer {
  readonly spec: QuantSpec;
  readonly element: Element;
  readonly bits: number;
  /** integer-domain code range: sym [−qmax, qmax], symfull [−2^(b−1), 2^(b−1)−1], asym [0, 2^b−1] */
  readonly qmin: number;
  readonly qmax: number;
  /** added to the signed integer q to get the stored code (2^(b−1) for symmetric int grids) */
  readonly codeOffset: number;
  /** what the clip maps to: scale = clip / maxValue */
  readonly maxValue: number;
  /** exponent of the element's largest value (MX emax_elem), for e8m0 scales */
  readonly emax: number;
  /** the code standing for 0 (used for outlier holes and empty groups) */
  readonly zeroCode: number;
  private readonly fmt: Format | undefined;
  private readonly codebook: Float32Array | undefined;
  private readonly cbOrder: Uint32Array | undefined;
  private readonly signedScale: boolean;
  private readonly specString: string;
  /** weights per code: 1, or the sub-vector length of vector quantization (vq<b>d<d>) */
  readonly dim: number = 1;

  constructor(spec: QuantSpec, opts: SpecQuantizerOptions = {}) {
    this.spec = spec;
    this.specString = printSpec(spec);
    const el = resolveElement(spec.format, spec.bits);
    if (!el) throw new QuantlabError("E_SPEC", `format "${spec.format}" is not available`);
    this.element = el;
    this.bits = spec.bits;
    const b = spec.bits;
    this.signedScale = !isUnsignedDtype(spec.scale.dtype);
    if (el.kind === "int") {
      if (spec.scheme === "asym" || spec.scheme === "asymf") {
        this.qmin = 0; this.qmax = 2 ** b - 1; this.codeOffset = 0;
      } else if (spec.scheme === "symfull") {
        this.qmin = -(2 ** (b - 1)); this.qmax = 2 ** (b - 1) - 1; this.codeOffset = 2 ** (b - 1);
      } else {
        if (b < 2) throw new QuantlabError("E_SPEC", `${spec.format}: restricted symmetric needs at least 2 bits`);
        this.qmax = 2 ** (b - 1) - 1; this.qmin = -this.qmax; this.codeOffset = 2 ** (b - 1);
      }
      this.maxValue = spec.scheme === "symfull" && this.signedScale && spec.scale.dtype !== "e8m0" ? 2 ** (b - 1) : elementMaxValue(el);
      this.emax = floorLog2(elementMaxValue(el));
      this.zeroCode = this.codeOffset;
      this.fmt = undefined;
    } else {
      this.qmin = 0; this.qmax = 2 ** b - 1; this.codeOffset = 0;
      this.fmt = el.kind === "format" ? el.format : undefined;
      const dim = el.kind === "learned" ? el.dim : 1;
      this.dim = dim;
      if (el.kind === "learned" && !opts.codebook) {
        throw new QuantlabError("E_SPEC", `${this.specString}: learned codebooks are fitted to the tensor first (algos/learned.ts quantizeLearned); pass the fitted codebook`);
      }
      if (opts.codebook) {
        const cb = opts.codebook;
        const k = cb.length / dim;
        if (!Number.isInteger(k) || k === 0 || k > 2 ** Math.max(b, 0)) throw new QuantlabError("E_ARG", `codebook has ${cb.length} values; ${spec.format} codes hold at most ${2 ** b} ${dim > 1 ? `codewords of ${dim}` : "levels"}`);
        for (const v of cb) if (!Number.isFinite(v)) throw new QuantlabError("E_VALUE", "codebook has a non-finite level");
        this.codebook = cb;
        this.maxValue = absMax(cb) || 1;
        if (dim === 1) {
          this.cbOrder = Uint32Array.from(cb.keys()).sort((i, j) => cb[i]! - cb[j]! || i - j);
          let z = 0;
          for (let i = 1; i < cb.length; i++) if (Math.abs(cb[i]!) < Math.abs(cb[z]!)) z = i;
          this.zeroCode = z;
        } else {
          this.zeroCode = this.nearestCodeword(new Float32Array(dim), 0, 1);
        }
      } else if (el.kind === "format") {
        this.maxValue = el.format.maxValue;
        this.zeroCode = el.format.family === "zero" ? 0 : el.format.encode(0);
      } else {
        throw new QuantlabError("E_INTERNAL", "unreachable: learned element without codebook");
      }
      this.emax = this.maxValue > 0 ? floorLog2(this.maxValue) : 0;
    }
  }

  /**
   * The element format's nearest-level table when `encode(x, s, z)` is exactly "table lookup of x/s" (a
   * registry level format, no learned codebook, round to nearest), for inline encode loops; else undefined.
   */
  get nearestTable(): NearestTable | undefined {
    if (this.spec.scheme !== "levels" || this.codebook || this.spec.rounding !== "nearest" || !this.fmt) return undefined;
    return this.fmt.nearestTable?.();
  }

  get isInt(): boolean {
    return this.element.kind === "int";
  }

  get isAffine(): boolean {
    return this.spec.scheme === "asym" || this.spec.scheme === "asymf";
  }

  /** exponent offset between an e8m0 byte and log2(scale): int grids carry an implicit 2^-(b-2) (MX INT8 2^-6) */
  get e8m0Offset(): number {
    return this.isInt ? this.emax : 0;
  }

  // ---------------------------------------------------------------- calibration

  /** The spec's calibration of one group: values[0..n). */
  calibrate(values: ArrayLike<number>, n = values.length, importance?: ArrayLike<number>): GroupRange {
    const cal = this.spec.calibration;
    if (this.spec.scheme === "mean") {
      let s = 0;
      for (let i = 0; i < n; i++) s += values[i]!;
      const m = n ? s / n : 0;
      return { lo: m, hi: m, clip: m, negative: m < 0 };
    }
    if (this.isAffine) {
      let lo: number, hi: number;
      if (cal.method === "percentile") ({ lo, hi } = percentileRange(values, cal.percentile, n));
      else ({ min: lo, max: hi } = minMax(values, n));
      if (this.spec.scheme === "asym") { lo = Math.min(lo, 0); hi = Math.max(hi, 0); } // keep 0 exact with an integer zero point
      if (cal.method === "mse" && hi > lo) {
        const r = searchClipRatio((ratio) => this.groupError(values, n, { lo: lo * ratio, hi: hi * ratio, clip: 0, negative: false }, importance));
        lo *= r; hi *= r;
      }
      return { lo, hi, clip: Math.max(-lo, hi), negative: -lo > hi };
    }
    // symmetric: a clip on |x|, plus the sign of the extreme value (for the full-range trick)
    let amax = 0, neg = false;
    for (let i = 0; i < n; i++) {
      const v = values[i]!, a = Math.abs(v);
      if (a > amax) { amax = a; neg = v < 0; }
    }
    let clip = amax;
    let threshold: number | undefined;
    switch (cal.method) {
      case "minmax": break;
      case "percentile": clip = absPercentile(values, cal.percentile, n); break;
      case "absmean": clip = absMean(values, n) * this.maxValue; break;
      case "twn": {
        // TWN (Li & Liu 2016): Δ = 0.7·E|w|, α = mean of |w| over |w| > Δ
        const delta = 0.7 * absMean(values, n);
        let s = 0, c = 0;
        for (let i = 0; i < n; i++) { const a = Math.abs(values[i]!); if (a > delta) { s += a; c++; } }
        clip = (c ? s / c : 0) * this.maxValue;
        threshold = delta;
        break;
      }
      case "mse":
        if (amax > 0) clip = amax * searchClipRatio((r) => this.groupError(values, n, { lo: -amax * r, hi: amax * r, clip: amax * r, negative: neg }, importance));
        break;
      case "kl":
        if (amax > 0) clip = this.klClip(absHistogram(values, klBins(n), amax, n), amax);
        break;
    }
    const r: GroupRange = { lo: -clip, hi: clip, clip, negative: neg };
    if (threshold !== undefined) r.threshold = threshold;
    return r;
  }

  /** KL threshold from an |x| histogram over [0, maxAbs]. */
  klClip(hist: Float64Array, maxAbs: number): number {
    const binWidth = maxAbs / hist.length;
    const nLevels = this.isInt ? this.qmax + 1 : this.positiveLevels();
    return klThreshold(hist, binWidth, (v, T) => {
      const s = this.rawScale({ lo: -T, hi: T, clip: T, negative: false });
      return s > 0 ? this.decode(this.encode(v, s, 0), s, 0) : 0;
    }, nLevels);
  }

  private positiveLevels(): number {
    const vals = this.codebook ?? this.fmt?.values();
    if (!vals) return 16;
    let k = 0;
    for (const v of vals) if (v >= 0) k++;
    return Math.max(1, k);
  }

  /** Σ wᵢ(x − x̂)² for one group at a candidate range, with unrounded scales (wᵢ = importance, default 1). */
  groupError(values: ArrayLike<number>, n: number, r: GroupRange, importance?: ArrayLike<number>): number {
    const s = this.rawScale(r);
    const z = this.zeroPoint(r, s);
    let e = 0;
    for (let i = 0; i < n; i++) {
      const x = values[i]!;
      const d = x - this.decode(this.encode(x, s, z, undefined, r.threshold), s, z);
      e += (importance ? importance[i]! : 1) * d * d;
    }
    return e;
  }

  // ---------------------------------------------------------------- scales and zero points

  /** Scale before storage rounding. e8m0 storage uses the MX rule 2^(floor(log2 clip) − emax). */
  rawScale(r: GroupRange): number {
    const sc = this.spec;
    if (sc.scheme === "mean") return r.clip;
    if (sc.granularity.kind === "none") return 1;
    if (this.isAffine) {
      const span = r.hi - r.lo;
      if (span > 0) return span / this.qmax;
      return sc.scheme === "asymf" && r.lo !== 0 ? Math.abs(r.lo) : 0; // constant group: any scale, the zero point carries the value
    }
    if (sc.scale.dtype === "e8m0") {
      if (!(r.clip > 0)) return 0;
      // MX v1.0 §6.3: X = floor(log2(amax)) − emax_elem. Int grids: emax_elem = 0 for values code·2^-(b-2), so the
      // per-integer scale is 2^(X − (b−2)); X is what the E8M0 byte stores (see e8m0Offset).
      const X = mxScaleExponent(r.clip, this.isInt ? 0 : this.emax);
      return 2 ** (X - this.e8m0Offset);
    }
    const s = r.clip / this.maxValue;
    // full range: the extreme maps to −2^(b−1) (llama.cpp Q4_0's signed scale) when the scale can hold a sign
    return sc.scheme === "symfull" && this.signedScale && r.negative === false ? -s : s;
  }

  /** Zero point for a stored scale: integer (asym), float (asymf) or 0. */
  zeroPoint(r: GroupRange, scale: number): number {
    if (!this.isAffine) return 0;
    if (!(scale !== 0)) return 0;
    if (this.spec.scheme === "asymf") {
      // constant group: scale = |c|, and an integer zero (1 for c < 0 → code 0 gives −s; 0 for c > 0 → code 1 gives s)
      if (r.hi === r.lo) return r.lo < 0 ? 1 : 0;
      return -r.lo / scale;
    }
    return Math.min(this.qmax, Math.max(0, roundHalfEven(-r.lo / scale)));
  }

  // ---------------------------------------------------------------- codes

  /** Storage code of x for a stored scale and zero point (nearest-even or stochastic per spec; rng required for sr). */
  encode(x: number, scale: number, zero: number, rng?: Rng, threshold?: number): number {
    const sr = this.spec.rounding === "stochastic";
    if (sr && !rng) throw new QuantlabError("E_ARG", "stochastic rounding needs an rng (opts.seed)");
    if (this.spec.scheme === "mean") return 0;
    if (!(scale !== 0) || !Number.isFinite(scale)) return this.isAffine ? Math.min(this.qmax, Math.max(0, Math.round(zero))) : this.zeroCode;
    if (this.element.kind === "int") {
      let v = x / scale;
      if (this.spec.scheme === "asymf") v += zero;
      let q = sr ? Math.floor(v + rng!.next()) : roundHalfEven(v);
      if (this.spec.scheme === "asym") q += zero;
      if (q < this.qmin) q = this.qmin;
      else if (q > this.qmax) q = this.qmax;
      return q + this.codeOffset;
    }
    let v = x / scale;
    if (threshold !== undefined) v = Math.abs(x) > threshold ? Math.sign(x) * this.maxValue : 0; // TWN: threshold decides, α scales
    if (this.codebook) return this.nearestLevel(v, sr ? rng : undefined);
    return sr ? this.fmt!.encode(v, { rounding: "stochastic", rng: rng! }) : this.fmt!.encode(v);
  }

  /** The unscaled factor of a code: decode(code, s, z) = fround((levelOf(code) − z)·s). */
  levelOf(code: number): number {
    switch (this.spec.scheme) {
      case "mean": return 1;
      case "asym": case "asymf": return code;
      case "sym": case "symfull": return code - this.codeOffset;
      case "levels": return this.codebook ? this.codebook[code]! : this.fmt!.decode(code);
    }
  }

  /** The f32 value of a code for a stored scale and zero point. */
  decode(code: number, scale: number, zero: number): number {
    switch (this.spec.scheme) {
      case "mean": return Math.fround(scale);
      case "asym": case "asymf": return Math.fround((code - zero) * scale);
      case "sym": case "symfull": return Math.fround((code - this.codeOffset) * scale);
      case "levels": return Math.fround((this.codebook ? this.codebook[code]! : this.fmt!.decode(code)) * scale);
    }
  }

  // ---------------------------------------------------------------- the algorithms' GroupQuantizer shape

  /** Spec string, for reports (algos' GroupQuantizer.name). */
  get name(): string {
    return this.specString;
  }

  /** Columns per group along a row: 0 = per channel (row), G for g<G>; other granularities cannot be walked column-wise. */
  get groupSize(): number {
    const g = this.spec.granularity;
    if (g.kind === "channel") return 0;
    if (g.kind === "group") return g.size;
    throw new QuantlabError("E_SPEC", `${this.specString}: column-wise algorithms (GPTQ, AWQ, RTN) need channel or g<N> granularity, not ${g.kind}`);
  }

  /**
   * Parameters of one group as they will be stored: calibrated range → scale rounded to the scale dtype
   * (f16/bf16/e8m0; double-quantized dtypes are rounded later per super-block, so here they stay raw)
   * → zero point for that scale.
   */
  fit(segment: ArrayLike<number>, importance?: ArrayLike<number>): GroupParams {
    const r = this.calibrate(segment, segment.length, importance);
    const raw = this.rawScale(r);
    const dt = this.spec.scale.dtype;
    const scale = this.storeOne(raw);
    const p: GroupParams = { scale, zero: this.storedZero(this.zeroPoint(r, scale)) };
    if (r.threshold !== undefined) p.threshold = r.threshold;
    return p;
  }

  /** One scale as stored (f32/f16/bf16/e8m0; double-quantized dtypes, which need a super-block, stay f32). */
  storeOne(raw: number): number {
    const dt = this.spec.scale.dtype;
    if (this.spec.granularity.kind === "none") return 1;
    const single = dt === "f16" || dt === "bf16" || dt === "e8m0" ? dt : "f32";
    return storeScales([raw], single, undefined, this.e8m0Offset, this.spec.scheme === "asym").values[0]!;
  }

  /** Quantize then dequantize one value with a group's parameters (round to nearest even). */
  fakeQuant(x: number, p: GroupParams, _index?: number): number {
    return this.decode(this.encode(x, p.scale, p.zero, undefined, p.threshold), p.scale, p.zero);
  }

  /** A float zero point as stored (f32, or f16 when scales are not f32), an integer one as is. */
  storedZero(z: number): number {
    if (this.spec.scheme !== "asymf") return z;
    return this.spec.scale.dtype === "f32" ? Math.fround(z) : f16BitsToF32(f32ToF16Bits(z));
  }

  /**
   * Vector quantization: index of the codeword nearest (squared distance) to x[off..off+dim) / scale;
   * ties → the lower index. Scale 0 (an all-zero group) gives the codeword nearest to the origin.
   */
  nearestCodeword(x: ArrayLike<number>, off: number, scale: number): number {
    const cb = this.codebook!, d = this.dim;
    const k = cb.length / d;
    const ok = scale !== 0 && Number.isFinite(scale);
    let best = 0, bestD = Infinity;
    for (let j = 0; j < k; j++) {
      let e = 0;
      for (let t = 0; t < d; t++) {
        const u = (ok ? x[off + t]! / scale : 0) - cb[j * d + t]!;
        e += u * u;
      }
      if (e < bestD) { bestD = e; best = j; }
    }
    return best;
  }

  /** Nearest codebook level (ties → the lower level); stochastic: between the two neighbours, unbiased. */
  private nearestLevel(v: number, rng?: Rng): number {
    const cb = this.codebook!, ord = this.cbOrder!;
    let lo = 0, hi = ord.length - 1;
    if (v <= cb[ord[0]!]!) return ord[0]!;
    if (v >= cb[ord[hi]!]!) return ord[hi]!;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (cb[ord[mid]!]! <= v) lo = mid; else hi = mid;
    }
    const a = cb[ord[lo]!]!, b = cb[ord[hi]!]!;
    if (rng) return rng.next() < (v - a) / (b - a) ? ord[hi]! : ord[lo]!;
    return v - a <= b - v ? ord[lo]! : ord[hi]!;
  }
}

/** KL histogram bins for a group of n values: about 4 values per bin, 16..2048 bins (TensorRT uses 2048). */
export function klBins(n: number): number {
  return Math.min(KL_BINS, Math.max(16, 2 ** Math.ceil(Math.log2(Math.max(1, n / 4)))));
}
