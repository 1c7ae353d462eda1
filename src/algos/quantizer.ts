/**
 * The target quantizer as the algorithms see it. GPTQ, AWQ's clip search, HQQ, RTN and mixed
 * precision only need two things from a number format + scheme + granularity: choose the parameters of
 * one group from its values, and quantize-dequantize one value with them. The spec machinery in quant/
 * provides a GroupQuantizer for any registry spec; `IntAffineQuantizer` below is the plain int-b
 * (asymmetric / symmetric) implementation the algorithms are tested with.
 *
 * Conventions: a weight is (rows = out features, cols = in features), row-major. Groups run along a
 * row (the input dimension): group g of a row covers cols [g·groupSize, min((g+1)·groupSize, cols)),
 * so the last group of a row may be shorter. groupSize 0 means one group per row (per output channel).
 */
import { QuantlabError } from "../core/errors.js";

export interface GroupQuantizer<P = unknown> {
  /** human-readable recipe (a spec string when it comes from the registry), for reports */
  readonly name: string;
  /** columns per group along a row; 0 = the whole row */
  readonly groupSize: number;
  /**
   * Chooses the parameters of one group from its current values (length ≤ groupSize; the last
   * group of a row may be shorter). `importance[i] ≥ 0`, when given, weighs element i's squared
   * error for quantizers that search (MSE clipping, imatrix-style weighting); others ignore it.
   */
  fit(segment: ArrayLike<number>, importance?: ArrayLike<number>): P;
  /** Quantizes then dequantizes x, element `index` of its group, with the group's parameters. */
  fakeQuant(x: number, params: P, index: number): number;
}

/** Number of groups in a row of `cols` elements. */
export function groupsPerRow(cols: number, groupSize: number): number {
  return groupSize <= 0 ? 1 : Math.ceil(cols / groupSize);
}

/** Effective group width (groupSize 0 → the whole row). */
export function groupWidth(cols: number, groupSize: number): number {
  return groupSize <= 0 || groupSize > cols ? cols : groupSize;
}

/** Round half to even, the rounding the format registry uses by default. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round sends .5 up; pull exact ties that landed on an odd integer back down
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Affine group parameters: x ≈ scale · (q − zero), q an integer in the quantizer's [qMin, qMax]. */
export interface AffineParams {
  scale: number;
  /** zero point in code units; an integer for classic int-asym, any float for HQQ, 0 for symmetric */
  zero: number;
}

export interface IntAffineOptions {
  bits: number;
  /** symmetric: q ∈ [−(2^(b−1)−1), 2^(b−1)−1], zero 0 (restricted range); else q ∈ [0, 2^b − 1] */
  symmetric?: boolean;
  /** 0 = per row */
  groupSize?: number;
  /**
   * "minmax": the range of the group (asymmetric ranges include 0, as in GPTQ's quantizer);
   * "mse": also try shrunken ranges p·range for p = 1, 0.99, …, 0.2 and keep the one with the
   * least (importance-weighted) squared error (GPTQ's `mse` option, maxshrink 0.8, grid 100).
   */
  clip?: "minmax" | "mse";
}

/** Plain uniform integer quantizer: int-b, asymmetric (integer zero point) or symmetric. */
export class IntAffineQuantizer implements GroupQuantizer<AffineParams> {
  readonly name: string;
  readonly groupSize: number;
  readonly bits: number;
  readonly symmetric: boolean;
  readonly clip: "minmax" | "mse";
  readonly qMin: number;
  readonly qMax: number;

  constructor(opts: IntAffineOptions) {
    const { bits } = opts;
    if (!Number.isInteger(bits) || bits < 1 || bits > 16 || (opts.symmetric && bits < 2)) {
      throw new QuantlabError("E_SPEC", `int quantizer: bits must be an integer in 1..16 (≥ 2 when symmetric), got ${bits}`);
    }
    this.bits = bits;
    this.symmetric = opts.symmetric ?? false;
    this.groupSize = opts.groupSize ?? 0;
    if (!Number.isInteger(this.groupSize) || this.groupSize < 0) {
      throw new QuantlabError("E_SPEC", `int quantizer: group size must be a non-negative integer, got ${this.groupSize}`);
    }
    this.clip = opts.clip ?? "minmax";
    if (this.symmetric) {
      this.qMax = 2 ** (bits - 1) - 1;
      this.qMin = -this.qMax;
    } else {
      this.qMin = 0;
      this.qMax = 2 ** bits - 1;
    }
    const g = this.groupSize === 0 ? "channel" : `g${this.groupSize}`;
    this.name = `int${bits}:${g}:${this.symmetric ? "sym" : "asym"}${this.clip === "mse" ? ":mse" : ""}`;
  }

  /** Parameters for the range [lo, hi] (lo ≤ 0 ≤ hi for asymmetric). */
  paramsForRange(lo: number, hi: number): AffineParams {
    if (this.symmetric) {
      const amax = Math.max(Math.abs(lo), Math.abs(hi));
      return { scale: amax > 0 ? amax / this.qMax : 1, zero: 0 };
    }
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
    if (hi === lo) return { scale: 1, zero: 0 };
    const scale = (hi - lo) / this.qMax;
    return { scale, zero: roundHalfEven(-lo / scale) };
  }

  fit(segment: ArrayLike<number>, importance?: ArrayLike<number>): AffineParams {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < segment.length; i++) {
      const v = segment[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (segment.length === 0) return { scale: 1, zero: 0 };
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
      throw new QuantlabError("E_VALUE", `int quantizer: NaN or Inf in a weight group`);
    }
    let best = this.paramsForRange(lo, hi);
    if (this.clip === "mse") {
      let bestErr = this.groupError(segment, best, importance);
      for (let i = 1; i <= 80; i++) {
        const p = 1 - i / 100;
        const cand = this.paramsForRange(p * lo, p * hi);
        const err = this.groupError(segment, cand, importance);
        if (err < bestErr) {
          bestErr = err;
          best = cand;
        }
      }
    }
    return best;
  }

  fakeQuant(x: number, p: AffineParams): number {
    let q = roundHalfEven(x / p.scale + p.zero);
    if (q < this.qMin) q = this.qMin;
    else if (q > this.qMax) q = this.qMax;
    return p.scale * (q - p.zero);
  }

  /** Σ importance_i (x_i − fq(x_i))² over a group. */
  groupError(segment: ArrayLike<number>, p: AffineParams, importance?: ArrayLike<number>): number {
    let s = 0;
    for (let i = 0; i < segment.length; i++) {
      const e = segment[i]! - this.fakeQuant(segment[i]!, p);
      s += (importance ? importance[i]! : 1) * e * e;
    }
    return s;
  }
}
