/**
 * SmoothQuant (Xiao, Lin, Seznec, Wu, Demouth, Han 2022, "SmoothQuant: Accurate and Efficient
 * Post-Training Quantization for Large Language Models", arXiv:2211.10438). Activation outliers sit
 * in a few input channels; dividing channel j of the activations by s_j and multiplying column j of
 * the weights by s_j moves quantization difficulty from activations to weights, with
 *     s_j = max|X_j|^α / max|W_j|^(1−α)        (paper eq. 4, migration strength α, default 0.5)
 * where max|W_j| runs over every linear reading the same input. 1/s folds into the preceding
 * RMSNorm weight (or previous linear), so the float model is unchanged; then W8A8 runs with int8
 * weights per output channel and int8 activations per tensor (static, calibrated) or per token
 * (dynamic) — the paper's O1–O3 settings.
 */
import { QuantlabError } from "../core/errors.js";
import { int8Matmul, quantizeRowsInt8, quantizeTensorInt8 } from "./int8.js";
import { roundHalfEven } from "./quantizer.js";
import { checkMatrix } from "./rtn.js";
import { divideNormInPlace, scaleColumnsInPlace } from "./stats.js";

export interface Linear {
  /** (rows, cols) */
  w: Float32Array;
  rows: number;
}

/** s_j = max|X_j|^α / max|W_j|^(1−α), both maxima clamped at 1e-5 as the authors' smooth.py does. */
export function smoothQuantScales(actAbsMax: ArrayLike<number>, linears: readonly Linear[], alpha = 0.5): Float64Array {
  const cols = actAbsMax.length;
  if (!(alpha >= 0 && alpha <= 1)) throw new QuantlabError("E_ARG", `smoothquant: alpha must be in [0, 1], got ${alpha}`);
  const wMax = new Float64Array(cols);
  for (const l of linears) {
    checkMatrix(l.w, l.rows, cols, "smoothquant");
    for (let r = 0; r < l.rows; r++) for (let c = 0; c < cols; c++) wMax[c] = Math.max(wMax[c]!, Math.abs(l.w[r * cols + c]!));
  }
  const s = new Float64Array(cols);
  for (let j = 0; j < cols; j++) {
    s[j] = Math.pow(Math.max(actAbsMax[j]!, 1e-5), alpha) / Math.pow(Math.max(wMax[j]!, 1e-5), 1 - alpha);
  }
  return s;
}

/**
 * Applies smoothing in place: norm weight g ← g/s (when the input comes from a norm) and every
 * linear's columns W ← W·diag(s). Returns the activation channel maxima after smoothing.
 */
export function applySmoothing(s: ArrayLike<number>, linears: readonly Linear[], norm?: Float32Array, actAbsMax?: ArrayLike<number>): Float64Array | undefined {
  const cols = s.length;
  if (norm) divideNormInPlace(norm, s);
  for (const l of linears) scaleColumnsInPlace(l.w, l.rows, cols, s);
  return actAbsMax ? Float64Array.from({ length: cols }, (_, j) => actAbsMax[j]! / s[j]!) : undefined;
}

export type ActScaleMode = "per-token" | "per-tensor";

export interface W8A8Options {
  /** "per-token": dynamic absmax per row of X; "per-tensor": one scale */
  act: ActScaleMode;
  /** static per-tensor activation range from calibration (max over channels of max|x|); absent → the batch's own */
  staticAbsMax?: number;
}

/** Weight quantized once: int8, symmetric, one scale per output channel. */
export function quantizeWeightInt8(w: ArrayLike<number>, rows: number, cols: number) {
  checkMatrix(w, rows, cols, "w8a8 weight");
  return quantizeRowsInt8(w, rows, cols);
}

/** Y = X·Wᵀ with int8 weights (per channel) and int8 activations (per token or per tensor). */
export function w8a8Matmul(x: ArrayLike<number>, nTok: number, w: ArrayLike<number>, rows: number, cols: number, opts: W8A8Options): Float32Array {
  checkMatrix(x, nTok, cols, "w8a8 input");
  const qw = quantizeWeightInt8(w, rows, cols);
  const qx = opts.act === "per-token" ? quantizeRowsInt8(x, nTok, cols) : quantizeTensorInt8(x, opts.staticAbsMax);
  return int8Matmul(qx, nTok, qw, rows, cols);
}

/**
 * Fake-quantizes activations x (nTok, cols) to symmetric `bits`-bit integers, per token or per
 * tensor (optionally with a static range), and dequantizes: for W4A4-style measurements.
 */
export function fakeQuantActivations(x: ArrayLike<number>, nTok: number, cols: number, bits: number, mode: ActScaleMode, staticAbsMax?: number): Float32Array {
  checkMatrix(x, nTok, cols, "activation fake-quant");
  if (!Number.isInteger(bits) || bits < 2 || bits > 16) throw new QuantlabError("E_ARG", `activation bits must be in 2..16, got ${bits}`);
  const qMax = 2 ** (bits - 1) - 1;
  const out = new Float32Array(nTok * cols);
  const rowsOfScale = mode === "per-token" ? nTok : 1;
  const span = mode === "per-token" ? cols : nTok * cols;
  for (let g = 0; g < rowsOfScale; g++) {
    let amax = staticAbsMax ?? 0;
    if (staticAbsMax === undefined) for (let i = 0; i < span; i++) amax = Math.max(amax, Math.abs(x[g * span + i]!));
    const s = amax > 0 ? amax / qMax : 1;
    for (let i = 0; i < span; i++) {
      const q = Math.max(-qMax, Math.min(qMax, roundHalfEven(x[g * span + i]! / s)));
      out[g * span + i] = q * s;
    }
  }
  return out;
}
