/**
 * Small dense linear algebra in float64 for the calibration algorithms (Hessians, Cholesky, Gram
 * matrices, random orthogonal matrices). Matrices are row-major Float64Array, (n, n) unless stated.
 * Sizes here are a layer's input width (≤ a few thousand), so plain O(n³) loops ordered for
 * contiguous inner access are enough.
 */
import { QuantlabError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";

/**
 * In-place lower Cholesky factor: a (n, n) symmetric positive definite → L with A = L·Lᵀ in the
 * lower triangle; the strict upper triangle is zeroed. Returns false (a left partly overwritten) when
 * a pivot is not positive.
 */
export function choleskyLowerInPlace(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j]!;
    for (let k = 0; k < j; k++) d -= a[rj + k]! * a[rj + k]!;
    if (!(d > 0) || !Number.isFinite(d)) return false;
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    const inv = 1 / ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j]!;
      for (let k = 0; k < j; k++) s -= a[ri + k]! * a[rj + k]!;
      a[ri + j] = s * inv;
    }
    for (let k = j + 1; k < n; k++) a[rj + k] = 0;
  }
  return true;
}

/**
 * Inverse of a lower-triangular L (n, n), returned as a new lower-triangular matrix. Row by row:
 * X_i = (e_i − Σ_{k<i} L_ik X_k) / L_ii, where row X_k is non-zero only in columns ≤ k, so every
 * inner loop runs over contiguous memory.
 */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const f = l[ri + k]!;
      if (f === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) x[ri + j]! -= f * x[rk + j]!;
    }
    x[ri + i]! += 1;
    const inv = 1 / l[ri + i]!;
    for (let j = 0; j <= i; j++) x[ri + j]! *= inv;
  }
  return x;
}

/** A⁻¹ from the lower Cholesky factor of A: A⁻¹ = L⁻ᵀ·L⁻¹ (symmetric, full matrix). */
export function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  const li = invertLower(l, n);
  const out = new Float64Array(n * n);
  // out_{ij} = Σ_k (L⁻¹)_{ki} (L⁻¹)_{kj}, k ≥ max(i, j)
  for (let k = 0; k < n; k++) {
    const rk = k * n;
    for (let i = 0; i <= k; i++) {
      const v = li[rk + i]!;
      if (v === 0) continue;
      const ri = i * n;
      for (let j = 0; j <= i; j++) out[ri + j] += v * li[rk + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) out[j * n + i] = out[i * n + j]!;
  return out;
}

/**
 * Upper Cholesky factor U of A⁻¹ (A⁻¹ = Uᵀ·U), as GPTQ needs: row q of U, scaled, is the
 * optimal-brain-quantizer update direction once columns < q have been quantized.
 * Computed with one Cholesky and one triangular inverse: with J the order-reversing permutation and
 * J·A·J = L·Lᵀ, A⁻¹ = (J L⁻ᵀ J)(J L⁻¹ J), and J L⁻¹ J is upper triangular with a positive
 * diagonal, hence the (unique) U. Returns undefined when A is not positive definite.
 */
export function upperCholeskyOfInverse(a: Float64Array, n: number): Float64Array | undefined {
  const b = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) b[(n - 1 - i) * n + (n - 1 - j)] = a[i * n + j]!;
  if (!choleskyLowerInPlace(b, n)) return undefined;
  const li = invertLower(b, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) u[(n - 1 - i) * n + (n - 1 - j)] = li[i * n + j]!;
  for (let i = 0; i < u.length; i++) if (!Number.isFinite(u[i]!)) return undefined;
  return u;
}

/**
 * Gram matrix XᵀX of x (nTok, n) row-major, accumulated in float64 into `acc` (n, n), full symmetric.
 * Tokens are processed in chunks transposed to (n, chunk) so the inner loop is a contiguous dot.
 */
export function addGram(x: ArrayLike<number>, nTok: number, n: number, acc: Float64Array): void {
  const chunk = 64;
  const t = new Float64Array(n * chunk); // (n, chunk)
  for (let t0 = 0; t0 < nTok; t0 += chunk) {
    const m = Math.min(chunk, nTok - t0);
    for (let s = 0; s < m; s++) {
      const row = (t0 + s) * n;
      for (let i = 0; i < n; i++) t[i * chunk + s] = x[row + i]!;
    }
    for (let i = 0; i < n; i++) {
      const oi = i * chunk;
      for (let j = 0; j <= i; j++) {
        const oj = j * chunk;
        let s = 0;
        for (let k = 0; k < m; k++) s += t[oi + k]! * t[oj + k]!;
        acc[i * n + j] += s;
      }
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) acc[j * n + i] = acc[i * n + j]!;
}

/** ΔᵀGΔ for a vector Δ of length n and G (n, n) symmetric (full), starting at offset `o` of G's rows/cols. */
export function quadForm(g: Float64Array, n: number, d: ArrayLike<number>, o = 0, len = n - o): number {
  let s = 0;
  for (let i = 0; i < len; i++) {
    const di = d[i]!;
    if (di === 0) continue;
    const row = (o + i) * n + o;
    let t = 0;
    for (let j = 0; j < len; j++) t += g[row + j]! * d[j]!;
    s += di * t;
  }
  return s;
}

/**
 * Haar-random orthogonal (n, n): QR of a seeded Gaussian matrix by Householder reflections, with
 * the signs of R's diagonal moved into Q (Mezzadri 2007, "How to generate random matrices from the
 * classical compact groups") so the distribution is uniform over O(n).
 */
export function randomOrthogonal(n: number, rng: Rng): Float64Array {
  if (!(n >= 1)) throw new QuantlabError("E_ARG", `randomOrthogonal: size must be ≥ 1, got ${n}`);
  const a = new Float64Array(n * n);
  for (let i = 0; i < a.length; i++) a[i] = rng.normal();
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  const v = new Float64Array(n);
  const signs = new Float64Array(n).fill(1);
  for (let k = 0; k < n; k++) {
    // Householder vector for column k, rows k..n-1
    let norm = 0;
    for (let i = k; i < n; i++) norm += a[i * n + k]! * a[i * n + k]!;
    norm = Math.sqrt(norm);
    const akk = a[k * n + k]!;
    const alpha = akk >= 0 ? -norm : norm;
    // R_kk = alpha; record sign for the Haar correction
    signs[k] = alpha >= 0 ? 1 : -1;
    v.fill(0);
    for (let i = k; i < n; i++) v[i] = a[i * n + k]!;
    v[k]! -= alpha;
    let vn = 0;
    for (let i = k; i < n; i++) vn += v[i]! * v[i]!;
    if (vn === 0) continue;
    // A ← (I − 2vvᵀ/vᵀv) A
    for (let j = k; j < n; j++) {
      let s = 0;
      for (let i = k; i < n; i++) s += v[i]! * a[i * n + j]!;
      s = (2 * s) / vn;
      for (let i = k; i < n; i++) a[i * n + j]! -= s * v[i]!;
    }
    // Q ← Q (I − 2vvᵀ/vᵀv)
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = k; j < n; j++) s += q[i * n + j]! * v[j]!;
      s = (2 * s) / vn;
      for (let j = k; j < n; j++) q[i * n + j]! -= s * v[j]!;
    }
  }
  // Q·diag(sign(R_kk))
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) q[i * n + j]! *= signs[j]!;
  return q;
}
