/**
 * Reference twin of the integer calibration GEMM (assembly/igemm.ts, WASM kind K_I16GEMM), bit for bit: symmetric
 * integer codes per row (weights) and per token (activations), exact integer sums, then two f32 multiplies.
 *
 *   s = fround(absmax / qmax), q = nearest-even(fround(x · fround(qmax / absmax))) (0 for an all-zero row)
 *   OUT[t, r] = fround(fround(fround(Σ_c qw[r,c]·qx[t,c]) · sw[r]) · sx[t])
 *
 * The sums are exact when cols · qmax² < 2^31 (calibrationQmax picks the largest such qmax), so no order of
 * summation, tiling or thread split changes a bit.
 */
import { QuantlabError } from "../../core/errors.js";

/** The largest code bound whose int32 sums over `cols` products cannot overflow, capped at 2^(bits−1) − 1 when bits is given. */
export function calibrationQmax(cols: number, bits?: number): number {
  let q = Math.min(32767, Math.floor(Math.sqrt((2 ** 31 - 1) / cols)));
  while (cols * q * q >= 2 ** 31) q--;
  if (bits !== undefined) {
    if (!Number.isInteger(bits) || bits < 2 || bits > 16) throw new QuantlabError("E_ARG", `integer calibration: ${bits} bits, expected 2…16`);
    q = Math.min(q, 2 ** (bits - 1) - 1);
  }
  return q;
}

/** f32 nearest, ties to even, of an f32 value (f32x4.nearest) */
function nearestEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Codes (n, cols) and scales (n) of n rows of x; throws on Inf/NaN. */
export function quantizeRowsI16Ref(x: Float32Array, n: number, cols: number, qmax: number): { codes: Int16Array; scales: Float32Array } {
  const codes = new Int16Array(n * cols);
  const scales = new Float32Array(n);
  for (let t = 0; t < n; t++) {
    let m = 0;
    for (let c = 0; c < cols; c++) {
      const a = Math.abs(x[t * cols + c]!);
      if (!Number.isFinite(a)) throw new QuantlabError("E_VALUE", `integer calibration: row ${t} holds Inf/NaN`);
      if (a > m) m = a;
    }
    const s = Math.fround(m / qmax);
    scales[t] = s;
    if (m === 0) continue;
    const inv = Math.fround(qmax / m);
    for (let c = 0; c < cols; c++) codes[t * cols + c] = nearestEven(Math.fround(x[t * cols + c]! * inv));
  }
  return { codes, scales };
}

/** OUT (n, rows) from weight codes (rows, cols) + row scales and token codes (n, cols) + token scales. */
export function igemmRef(wq: Int16Array, ws: Float32Array, rows: number, xq: Int16Array, xs: Float32Array, n: number, cols: number, out: Float32Array): void {
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      for (let c = 0; c < cols; c++) acc += wq[r * cols + c]! * xq[t * cols + c]!;
      out[t * rows + r] = Math.fround(Math.fround(Math.fround(acc) * ws[r]!) * xs[t]!);
    }
  }
}
