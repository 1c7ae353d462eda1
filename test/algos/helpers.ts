/** Direct (slow, obvious) references shared by the algos tests. */
import { Rng } from "../../src/core/rng.js";

/** Y = X·Wᵀ: x (nTok, cols), w (rows, cols) → (nTok, rows), float64. */
export function matmulXWt(x: ArrayLike<number>, nTok: number, w: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const y = new Float64Array(nTok * rows);
  for (let t = 0; t < nTok; t++)
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += x[t * cols + c]! * w[r * cols + c]!;
      y[t * rows + r] = s;
    }
  return y;
}

/** ‖A − B‖² */
export function sqErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

export function sqNorm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! ** 2;
  return s;
}

/** ‖X·Wᵀ − X·Qᵀ‖² computed from the outputs. */
export function outputError(x: ArrayLike<number>, nTok: number, w: ArrayLike<number>, q: ArrayLike<number>, rows: number, cols: number): number {
  return sqErr(matmulXWt(x, nTok, w, rows, cols), matmulXWt(x, nTok, q, rows, cols));
}

/** Gauss–Jordan inverse with partial pivoting, (n, n) float64. */
export function invertGJ(a: ArrayLike<number>, n: number): Float64Array {
  const m = new Float64Array(n * 2 * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) m[i * 2 * n + j] = a[i * n + j]!;
    m[i * 2 * n + n + i] = 1;
  }
  const w = 2 * n;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * w + c]!) > Math.abs(m[p * w + c]!)) p = r;
    if (p !== c) for (let j = 0; j < w; j++) { const t = m[c * w + j]!; m[c * w + j] = m[p * w + j]!; m[p * w + j] = t; }
    const piv = m[c * w + c]!;
    for (let j = 0; j < w; j++) m[c * w + j]! /= piv;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * w + c]!;
      if (f === 0) continue;
      for (let j = 0; j < w; j++) m[r * w + j]! -= f * m[c * w + j]!;
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) inv[i * n + j] = m[i * w + n + j]!;
  return inv;
}

/**
 * Correlated activations: x = z·A with z standard normal (nTok, k), A (k, cols) random, plus small
 * independent noise; optionally some columns scaled up (planted outlier channels).
 */
export function correlatedInputs(rng: Rng, nTok: number, cols: number, opts: { k?: number; noise?: number; outliers?: Map<number, number> } = {}): Float32Array {
  const k = opts.k ?? Math.max(2, Math.floor(cols / 4));
  const noise = opts.noise ?? 0.1;
  const a = new Float64Array(k * cols);
  for (let i = 0; i < a.length; i++) a[i] = rng.normal() / Math.sqrt(k);
  const x = new Float32Array(nTok * cols);
  const z = new Float64Array(k);
  for (let t = 0; t < nTok; t++) {
    for (let i = 0; i < k; i++) z[i] = rng.normal();
    for (let c = 0; c < cols; c++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += z[i]! * a[i * cols + c]!;
      x[t * cols + c] = s + noise * rng.normal();
    }
  }
  if (opts.outliers) for (const [c, f] of opts.outliers) for (let t = 0; t < nTok; t++) x[t * cols + c]! *= f;
  return x;
}

export function gaussian(rng: Rng, n: number, std = 1): Float32Array {
  return rng.fillNormal(new Float32Array(n), std);
}
