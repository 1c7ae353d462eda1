/**
 * ActivationObserver: accumulates statistics of activations fed in (nTokens, channels) batches — the model's
 * forward pass calls `observe` on each linear layer's input — and turns them into static scales.
 *
 * Histogram: 2·bins equal bins over [−R, R], R a power of two. When a batch exceeds R, R doubles and
 * pairs of bins merge (exact: old bin j lands in new bin ⌊(bins + j)/2⌋), so the histogram never depends
 * on batch order beyond the final range, and nothing is re-binned approximately.
 */
import { QuantlabError } from "../core/errors.js";
import { searchClipRatio } from "./calibrate.js";
import { SpecQuantizer, type GroupParams, type GroupRange } from "./quantizer.js";
import { floorLog2 } from "./scales.js";
import { toSpec, type QuantSpec } from "./spec.js";

export interface ActivationStats {
  nTokens: number;
  channels: number;
  min: number;
  max: number;
  absMax: number;
  mean: number;
  std: number;
  /** excess kurtosis E[(x−μ)^4]/σ^4 − 3 (0 for a Gaussian) */
  kurtosis: number;
  /** absMax / std: how far the extreme sits from the bulk */
  maxOverStd: number;
  tokenAbsMax: { mean: number; min: number; max: number };
  /** channels whose absmax exceeds 6× the median channel absmax (LLM.int8's outlier threshold is 6.0 in value; here relative) */
  outlierChannels: number[];
  channelAbsMax: number[];
}

export class ActivationObserver {
  readonly channels: number;
  readonly bins: number;
  private nTok = 0;
  private count = 0;
  private lo = Infinity;
  private hi = -Infinity;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private s4 = 0;
  private tokSum = 0;
  private tokMin = Infinity;
  private tokMax = 0;
  readonly channelAbsMax: Float32Array; // (channels)
  /** signed histogram, (2·bins) over [−range, range) */
  private hist: Float64Array;
  private range = 0;

  constructor(channels: number, bins = 2048) {
    if (!Number.isInteger(channels) || channels < 1) throw new QuantlabError("E_ARG", `ActivationObserver: channels must be a positive integer, got ${channels}`);
    if (!Number.isInteger(bins) || bins < 8) throw new QuantlabError("E_ARG", `ActivationObserver: bins must be an integer ≥ 8, got ${bins}`);
    this.channels = channels;
    this.bins = bins;
    this.channelAbsMax = new Float32Array(channels);
    this.hist = new Float64Array(2 * bins);
  }

  get tokens(): number {
    return this.nTok;
  }

  /** Adds a batch x: (nTokens, channels) row-major. NaN/Inf → E_VALUE naming `name`. */
  observe(x: Float32Array, name = "activation"): void {
    const C = this.channels;
    if (x.length % C !== 0) throw new QuantlabError("E_ARG", `${name}: ${x.length} values is not a whole number of ${C}-channel tokens`);
    const T = x.length / C;
    let batchAbs = 0;
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      if (!Number.isFinite(v)) throw new QuantlabError("E_VALUE", `${name}: value ${i} is ${v}`);
      const a = Math.abs(v);
      if (a > batchAbs) batchAbs = a;
    }
    if (batchAbs > 0 && batchAbs >= this.range) this.growTo(batchAbs);
    const B = this.bins, R = this.range, k = R > 0 ? B / R : 0, h = this.hist;
    for (let t = 0; t < T; t++) {
      let tokAbs = 0;
      const row = t * C;
      for (let c = 0; c < C; c++) {
        const v = x[row + c]!;
        const a = Math.abs(v);
        if (a > tokAbs) tokAbs = a;
        if (a > this.channelAbsMax[c]!) this.channelAbsMax[c] = a;
        if (v < this.lo) this.lo = v;
        if (v > this.hi) this.hi = v;
        const v2 = v * v;
        this.s1 += v; this.s2 += v2; this.s3 += v2 * v; this.s4 += v2 * v2;
        let b = R > 0 ? Math.floor((v + R) * k) : B; // nothing but zeros so far: the center bin
        if (b >= 2 * B) b = 2 * B - 1;
        else if (b < 0) b = 0;
        h[b]! += 1;
      }
      this.tokSum += tokAbs;
      if (tokAbs < this.tokMin) this.tokMin = tokAbs;
      if (tokAbs > this.tokMax) this.tokMax = tokAbs;
    }
    this.nTok += T;
    this.count += x.length;
  }

  private growTo(a: number): void {
    if (this.range === 0) {
      // first non-zero data: R = next power of two above a (zeros seen so far sit in the middle bins either way)
      const zeros = this.hist.reduce((s, v) => s + v, 0);
      this.range = 2 ** (floorLog2(a) + 1);
      this.hist.fill(0);
      this.hist[this.bins] = zeros;
      return;
    }
    const B = this.bins;
    while (this.range <= a) {
      const next = new Float64Array(2 * B);
      for (let j = 0; j < 2 * B; j++) next[(B + j) >> 1]! += this.hist[j]!;
      this.hist = next;
      this.range *= 2;
    }
  }

  /** |x| histogram: bins over [0, range), with its bin width. */
  absHistogram(): { counts: Float64Array; binWidth: number } {
    const B = this.bins, h = this.hist;
    const counts = new Float64Array(B);
    for (let i = 0; i < B; i++) counts[i] = h[B + i]! + h[B - 1 - i]!;
    return { counts, binWidth: this.range > 0 ? this.range / B : 0 };
  }

  /** Signed histogram: 2·bins over [−range, range). */
  signedHistogram(): { counts: Float64Array; lo: number; binWidth: number } {
    return { counts: this.hist.slice(), lo: -this.range, binWidth: this.range > 0 ? this.range / this.bins : 0 };
  }

  stats(): ActivationStats {
    const n = this.count;
    const mean = n ? this.s1 / n : 0;
    const m2 = n ? this.s2 / n - mean * mean : 0;
    const std = Math.sqrt(Math.max(0, m2));
    const m4 = n ? this.s4 / n - 4 * mean * (this.s3 / n) + 6 * mean * mean * (this.s2 / n) - 3 * mean ** 4 : 0;
    const absMax = n ? Math.max(-this.lo, this.hi) : 0;
    const sorted = Float32Array.from(this.channelAbsMax).sort();
    const median = sorted.length ? sorted[sorted.length >> 1]! : 0;
    const outlierChannels: number[] = [];
    for (let c = 0; c < this.channels; c++) if (median > 0 && this.channelAbsMax[c]! > 6 * median) outlierChannels.push(c);
    return {
      nTokens: this.nTok,
      channels: this.channels,
      min: n ? this.lo : 0,
      max: n ? this.hi : 0,
      absMax,
      mean,
      std,
      kurtosis: m2 > 0 ? m4 / (m2 * m2) - 3 : 0,
      maxOverStd: std > 0 ? absMax / std : 0,
      tokenAbsMax: { mean: this.nTok ? this.tokSum / this.nTok : 0, min: this.nTok ? this.tokMin : 0, max: this.tokMax },
      outlierChannels,
      channelAbsMax: Array.from(this.channelAbsMax),
    };
  }

  /**
   * Calibrated range of everything observed, by the spec's calibration method: minmax, percentile
   * (from the histogram, bin-interpolated), mse (clip grid over bin centers weighted by counts) or kl.
   */
  calibratedRange(specIn: string | QuantSpec): GroupRange {
    const spec = toSpec(specIn);
    const q = new SpecQuantizer(spec);
    const n = this.count;
    if (n === 0) throw new QuantlabError("E_ARG", "ActivationObserver: no data observed");
    const lo0 = Math.min(this.lo, 0), hi0 = Math.max(this.hi, 0);
    const amax = Math.max(-this.lo, this.hi);
    const cal = spec.calibration;
    const affine = q.isAffine;
    const mk = (lo: number, hi: number): GroupRange => ({ lo, hi, clip: Math.max(-lo, hi), negative: -lo > hi });
    if (amax === 0) return mk(0, 0);
    switch (cal.method) {
      case "percentile": {
        if (affine) {
          const { counts, lo, binWidth } = this.signedHistogram();
          return mk(Math.min(0, histQuantile(counts, lo, binWidth, 1 - cal.percentile / 100)), Math.max(0, histQuantile(counts, lo, binWidth, cal.percentile / 100)));
        }
        const { counts, binWidth } = this.absHistogram();
        const c = Math.min(amax, histQuantile(counts, 0, binWidth, cal.percentile / 100));
        return mk(-c, c);
      }
      case "mse": {
        const { counts, lo, binWidth } = this.signedHistogram();
        const centers = new Float64Array(counts.length);
        for (let i = 0; i < counts.length; i++) centers[i] = Math.min(this.hi, Math.max(this.lo, lo + (i + 0.5) * binWidth));
        const base = affine ? mk(lo0, hi0) : mk(-amax, amax);
        const r = searchClipRatio((ratio) => q.groupError(centers, centers.length, mk(base.lo * ratio, base.hi * ratio), counts));
        return mk(base.lo * r, base.hi * r);
      }
      case "kl": {
        const { counts } = this.absHistogram();
        const T = Math.min(amax, q.klClip(counts, this.range));
        return mk(-T, T);
      }
      default:
        return affine ? mk(lo0, hi0) : mk(-amax, amax);
    }
  }

  /** Static per-tensor parameters (scale rounded to the spec's scale dtype, zero point) from everything observed. */
  staticParams(specIn: string | QuantSpec): GroupParams {
    const spec = toSpec(specIn);
    const q = new SpecQuantizer(spec);
    const r = this.calibratedRange(spec);
    const raw = q.rawScale(r);
    const scale = q.storeOne(raw);
    return { scale, zero: q.storedZero(q.zeroPoint(r, scale)) };
  }
}

/** Value at cumulative fraction f of a histogram (linear inside the bin). */
function histQuantile(counts: Float64Array, lo: number, binWidth: number, f: number): number {
  let total = 0;
  for (const c of counts) total += c;
  const target = f * total;
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (acc + c >= target && c > 0) return lo + (i + (target - acc) / c) * binWidth;
    acc += c;
  }
  return lo + counts.length * binWidth;
}
