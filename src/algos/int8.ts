/**
 * Symmetric int8 building blocks shared by W8A8 (SmoothQuant) and LLM.int8(): absmax row
 * quantization (scale = max|v|/127, round half to even, codes in [−127, 127]) and an int8 × int8
 * matmul with exact integer accumulation (|Σ| ≤ 127² · cols, far inside 2^53).
 */
import { QuantlabError } from "../core/errors.js";
import { roundHalfEven } from "./quantizer.js";

export interface Int8Rows {
  /** (rows, cols) codes */
  q: Int8Array;
  /** (rows) scale per row, or (1) for one scale over the whole matrix */
  scale: Float32Array;
}

/** Quantizes each row of x (rows, cols) with its own absmax scale; `skipCols` columns are coded 0. */
export function quantizeRowsInt8(x: ArrayLike<number>, rows: number, cols: number, skipCols?: Uint8Array): Int8Rows {
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let c = 0; c < cols; c++) if (!skipCols?.[c]) amax = Math.max(amax, Math.abs(x[r * cols + c]!));
    const s = int8Scale(amax);
    scale[r] = s;
    for (let c = 0; c < cols; c++) if (!skipCols?.[c]) q[r * cols + c] = clamp127(roundHalfEven(x[r * cols + c]! / s));
  }
  return { q, scale };
}

/** Quantizes all of x with one scale (absMax given by calibration, or the tensor's own). */
export function quantizeTensorInt8(x: ArrayLike<number>, absMax?: number): Int8Rows {
  let amax = absMax ?? 0;
  if (absMax === undefined) for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(x[i]!));
  const s = int8Scale(amax);
  const q = new Int8Array(x.length);
  // values beyond a static calibration range saturate at ±127
  for (let i = 0; i < x.length; i++) q[i] = clamp127(roundHalfEven(x[i]! / s));
  return { q, scale: Float32Array.of(s) };
}

/**
 * absmax/127 rounded to f32 (how the scale is stored, so codes are computed with the stored value);
 * a range so small that the scale underflows f32 gets the smallest subnormal instead of 0.
 */
function int8Scale(amax: number): number {
  if (!(amax > 0)) return 1;
  const s = Math.fround(amax / 127);
  return s > 0 ? s : 2 ** -149;
}

function clamp127(v: number): number {
  return v > 127 ? 127 : v < -127 ? -127 : v;
}

/**
 * Y = X·Wᵀ in int8: x (nTok, cols) codes with per-row or per-tensor scales, w (rows, cols) codes with
 * per-row (output channel) scales. Y[t, r] = sx[t] · sw[r] · Σ_c qx[t,c] · qw[r,c]; (nTok, rows).
 */
export function int8Matmul(x: Int8Rows, nTok: number, w: Int8Rows, rows: number, cols: number): Float32Array {
  if (x.q.length !== nTok * cols || w.q.length !== rows * cols) {
    throw new QuantlabError("E_ARG", `int8Matmul: codes (${x.q.length}, ${w.q.length}) do not match (${nTok}, ${cols}) × (${rows}, ${cols})`);
  }
  const y = new Float32Array(nTok * rows);
  for (let t = 0; t < nTok; t++) {
    const sx = x.scale.length === 1 ? x.scale[0]! : x.scale[t]!;
    for (let r = 0; r < rows; r++) {
      let acc = 0; // exact integer sum
      const xo = t * cols;
      const wo = r * cols;
      for (let c = 0; c < cols; c++) acc += x.q[xo + c]! * w.q[wo + c]!;
      const sw = w.scale.length === 1 ? w.scale[0]! : w.scale[r]!;
      y[t * rows + r] = acc * sx * sw;
    }
  }
  return y;
}
