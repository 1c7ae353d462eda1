/**
 * HQQ, half-quadratic quantization (Badri & Shaji 2023, "Half-Quadratic Quantization of Large
 * Machine Learning Models", mobiusml blog; reference code hqq/core/optimize.py,
 * `optimize_weights_proximal_legacy`). Calibration-free: for an affine group
 *     W_q = clamp(round(W/scale + zero), 0, 2^b − 1),  W_r = scale · (W_q − zero)
 * it minimizes ‖W − W_r‖_p^p with p < 1 (robust to the heavy-tailed rounding errors) by splitting
 * off an auxiliary error variable W_e and alternating:
 *     W_e  ← shrink_p(W − W_r, β)       generalized soft threshold: sign(x)·relu(|x| − |x|^(p−1)/β)
 *     zero ← mean(W_q − (W − W_e)/scale)  closed-form least squares in the zero point
 *     β    ← κ·β
 * and stops when the mean absolute error stops improving. Constants from the reference: p = 0.7,
 * β = 10, κ = 1.01, 20 iterations. The zero point is a float (stored f16 or re-quantized by the spec).
 * Optional extension (`optimizeScale`): the same least-squares step solved jointly for scale and zero.
 */
import { QuantlabError } from "../core/errors.js";
import { type AffineParams, type GroupQuantizer, roundHalfEven } from "./quantizer.js";

export interface HqqOptions {
  bits: number;
  /** 0 = per row */
  groupSize?: number;
  /** p of the lp (p < 1) error norm (reference 0.7) */
  lpNorm?: number;
  beta?: number;
  kappa?: number;
  iters?: number;
  /** also refit the scale, jointly with the zero, by least squares each iteration */
  optimizeScale?: boolean;
  /**
   * integer zero points: every zero update is projected to the nearest code in [0, 2^b − 1] (HQQ's
   * round_zero applied inside the loop, so the best-scoring iterate is a valid int-asym group)
   */
  roundZero?: boolean;
}

/** Generalized soft-thresholding, the proximal step of the lp term (hqq `shrink_lp_op`). */
export function shrinkLp(x: number, beta: number, p: number): number {
  const a = Math.abs(x);
  const t = p === 1 ? a - 1 / beta : a - Math.pow(a, p - 1) / beta;
  return t > 0 ? Math.sign(x) * t : 0;
}

export class HqqQuantizer implements GroupQuantizer<AffineParams> {
  readonly name: string;
  readonly groupSize: number;
  readonly bits: number;
  readonly qMax: number;
  readonly lpNorm: number;
  readonly beta: number;
  readonly kappa: number;
  readonly iters: number;
  readonly optimizeScale: boolean;
  readonly roundZero: boolean;

  constructor(opts: HqqOptions) {
    if (!Number.isInteger(opts.bits) || opts.bits < 1 || opts.bits > 8) {
      throw new QuantlabError("E_SPEC", `hqq: bits must be an integer in 1..8, got ${opts.bits}`);
    }
    this.bits = opts.bits;
    this.qMax = 2 ** opts.bits - 1;
    this.groupSize = opts.groupSize ?? 0;
    this.lpNorm = opts.lpNorm ?? 0.7;
    this.beta = opts.beta ?? 10;
    this.kappa = opts.kappa ?? 1.01;
    this.iters = opts.iters ?? 20;
    this.optimizeScale = opts.optimizeScale ?? false;
    this.roundZero = opts.roundZero ?? false;
    if (!(this.lpNorm > 0 && this.lpNorm <= 1)) throw new QuantlabError("E_SPEC", `hqq: lpNorm must be in (0, 1], got ${this.lpNorm}`);
    this.name = `int${this.bits}:${this.groupSize === 0 ? "channel" : `g${this.groupSize}`}:hqq`;
  }

  /** RTN start: min–max range, float zero point (hqq Quantizer.quantize with round_zero = false). */
  initialParams(segment: ArrayLike<number>): AffineParams {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < segment.length; i++) {
      lo = Math.min(lo, segment[i]!);
      hi = Math.max(hi, segment[i]!);
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new QuantlabError("E_VALUE", `hqq: NaN or Inf in a weight group`);
    if (hi === lo) return lo === 0 ? { scale: 1, zero: 0 } : { scale: Math.abs(lo), zero: lo > 0 ? -1 : 1 };
    // the reference caps the inverse scale at 2e4
    const scale = Math.max((hi - lo) / this.qMax, 1 / 2e4);
    return { scale, zero: -lo / scale };
  }

  fit(segment: ArrayLike<number>): AffineParams {
    return this.optimize(segment).params;
  }

  /** Runs the solver; `errors[k]` is the mean |W − W_r| after iteration k (for inspection and tests). */
  optimize(segment: ArrayLike<number>): { params: AffineParams; errors: number[] } {
    const n = segment.length;
    let { scale, zero } = this.initialParams(segment);
    if (this.roundZero) zero = this.projectZero(zero);
    const errors: number[] = [];
    if (n === 0) return { params: { scale, zero }, errors };
    const wq = new Float64Array(n);
    let best: AffineParams = { scale, zero };
    let bestErr = Infinity;
    let beta = this.beta;
    for (let it = 0; it < this.iters; it++) {
      // W_q, W_r and the error at the current (scale, zero)
      let err = 0;
      for (let i = 0; i < n; i++) {
        const q = this.code(segment[i]!, scale, zero);
        wq[i] = q;
        err += Math.abs(segment[i]! - scale * (q - zero));
      }
      err /= n;
      // stop at the first non-improvement, as the reference does; unlike the reference (which returns
      // the zero already updated in that iteration) keep the parameters that scored best, and judge
      // each group on its own error rather than the whole tensor's mean
      if (err < bestErr) {
        bestErr = err;
        best = { scale, zero };
        errors.push(err);
      } else {
        errors.push(err);
        break;
      }
      // W_e = shrink(W − W_r); then least squares for the parameters against the target W − W_e
      let sumQ = 0, sumT = 0, sumQQ = 0, sumQT = 0;
      for (let i = 0; i < n; i++) {
        const wr = scale * (wq[i]! - zero);
        const t = segment[i]! - shrinkLp(segment[i]! - wr, beta, this.lpNorm);
        sumQ += wq[i]!;
        sumT += t;
        sumQQ += wq[i]! * wq[i]!;
        sumQT += wq[i]! * t;
      }
      if (this.optimizeScale) {
        // t ≈ d·q + m  →  scale = d, zero = −m/d
        const varQ = sumQQ - (sumQ * sumQ) / n;
        const d = varQ > 0 ? (sumQT - (sumQ * sumT) / n) / varQ : 0;
        if (d > 0) {
          const m = (sumT - d * sumQ) / n;
          scale = d;
          zero = -m / d;
        } else {
          zero = (sumQ - sumT / scale) / n;
        }
      } else {
        // zero = mean(W_q − (W − W_e)/scale)
        zero = (sumQ - sumT / scale) / n;
      }
      if (this.roundZero) zero = this.projectZero(zero);
      beta *= this.kappa;
    }
    return { params: best, errors };
  }

  private projectZero(z: number): number {
    return Math.min(this.qMax, Math.max(0, roundHalfEven(z)));
  }

  private code(x: number, scale: number, zero: number): number {
    const q = roundHalfEven(x / scale + zero);
    return q < 0 ? 0 : q > this.qMax ? this.qMax : q;
  }

  fakeQuant(x: number, p: AffineParams): number {
    return p.scale * (this.code(x, p.scale, p.zero) - p.zero);
  }
}
