/**
 * Small dense linear algebra in float64 for the calibration algorithms (Hessians, Cholesky, Gram
 * matrices, random orthogonal matrices). Matrices are row-major Float64Array, (n, n) unless stated.
 * Sizes here are a layer's input width (≤ a few thousand), so plain O(n³) loops ordered for
 * contiguous inner access are enough.
 */
import { QuantlabError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import type { LinalgKernels } from "../kernels/types.js";

/**
 * In-place lower Cholesky factor: a (n, n) symmetric positive definite → L with A = L·Lᵀ in the
 * lower triangle; the strict upper triangle is zeroed. Returns false (a left partly overwritten) when
 * a pivot is not positive.
 */
export function choleskyLowerInPlace(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    if (!choleskyColumn(a, n, j)) return false;
    for (let k = j + 1; k < n; k++) a[j * n + k] = 0;
  }
  return true;
}

/**
 * Column j of an in-place lower Cholesky factorization (columns < j done; reads only the lower
 * triangle): L_jj and L_ij for i > j. Returns false, writing nothing, when the pivot is not positive.
 */
function choleskyColumn(a: Float64Array, n: number, j: number): boolean {
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

/** Reverses the element order of a (n, n) matrix in place: A ← J·A·J (J the order-reversing permutation). */
function rotate180InPlace(a: Float64Array): void {
  for (let i = 0, j = a.length - 1; i < j; i++, j--) {
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

/**
 * `upperCholeskyOfInverse` without extra n×n buffers, for large layers (an 8192-wide Hessian is 512 MiB
 * in float64): a (n, n) symmetric is replaced by U (A⁻¹ = Uᵀ·U, upper triangular, zeros below).
 * On failure (not positive definite) a is restored and false is returned, so the caller can add more
 * dampening and retry. Uses an (n) scratch for the diagonal and one for a column.
 */
export function upperCholeskyOfInverseInPlace(a: Float64Array, n: number): boolean {
  rotate180InPlace(a); // B = J·A·J
  const diag = new Float64Array(n);
  for (let i = 0; i < n; i++) diag[i] = a[i * n + i]!;
  // lower Cholesky of B in place, leaving the strict upper triangle (= B's, by symmetry) untouched
  for (let j = 0; j < n; j++) {
    if (!choleskyColumn(a, n, j)) {
      // restore B from its intact upper triangle and the saved diagonal, then A
      for (let i = 0; i < n; i++) {
        a[i * n + i] = diag[i]!;
        for (let k = 0; k < i; k++) a[i * n + k] = a[k * n + i]!;
      }
      rotate180InPlace(a);
      return false;
    }
  }
  // L⁻¹ in place, columns from the last (LAPACK dtrti2 order): column j of X = −X[j+1:, j+1:]·L[j+1:, j] / L_jj,
  // where X[j+1:, j+1:] is already inverted; the column is copied out so every inner loop reads a row
  const col = new Float64Array(n);
  for (let j = n - 1; j >= 0; j--) {
    const xjj = 1 / a[j * n + j]!;
    a[j * n + j] = xjj;
    for (let k = j + 1; k < n; k++) col[k] = a[k * n + j]!;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = 0;
      for (let k = j + 1; k <= i; k++) s += a[ri + k]! * col[k]!;
      a[ri + j] = -s * xjj;
    }
  }
  for (let i = 0; i < n; i++) for (let k = i + 1; k < n; k++) a[i * n + k] = 0;
  rotate180InPlace(a); // U = J·L⁻¹·J
  return true;
}

/**
 * Gram matrix XᵀX of x (nTok, n) row-major, accumulated in float64 into `acc` (n, n), full symmetric.
 * Blocked for the cache and the registers: tokens are taken in chunks of 64, transposed to (n, chunk)
 * so every channel's values are contiguous; the lower triangle is computed in 4×4 tiles (16
 * accumulators, 8 loads per token: 4× fewer loads per multiply-add than one dot product at a time),
 * column panel by column panel so the panel's rows stay in cache while the rows sweep past.
 */
export function addGram(x: ArrayLike<number>, nTok: number, n: number, acc: Float64Array): void {
  const chunk = 64;
  const PANEL = 128; // 128 channels × 64 tokens × 8 bytes = 64 KiB of t per panel
  const t = new Float64Array(n * chunk); // (n, chunk)
  const nb = n - (n % 4); // rows/cols covered by whole 4×4 tiles
  for (let t0 = 0; t0 < nTok; t0 += chunk) {
    const m = Math.min(chunk, nTok - t0);
    for (let s = 0; s < m; s++) {
      const row = (t0 + s) * n;
      for (let i = 0; i < n; i++) t[i * chunk + s] = x[row + i]!;
    }
    // column panels of PANEL channels: the panel's (PANEL, chunk) slice of t stays in L2 while i sweeps
    for (let jp = 0; jp < nb; jp += PANEL) {
    const jEnd = Math.min(nb, jp + PANEL);
    for (let i0 = jp; i0 < nb; i0 += 4) {
      const a0 = i0 * chunk, a1 = a0 + chunk, a2 = a1 + chunk, a3 = a2 + chunk;
      const jStop = Math.min(jEnd - 4, i0);
      for (let j0 = jp; j0 <= jStop; j0 += 4) {
        const b0 = j0 * chunk, b1 = b0 + chunk, b2 = b1 + chunk, b3 = b2 + chunk;
        let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
        let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
        for (let k = 0; k < m; k++) {
          const x0 = t[a0 + k]!, x1 = t[a1 + k]!, x2 = t[a2 + k]!, x3 = t[a3 + k]!;
          const y0 = t[b0 + k]!, y1 = t[b1 + k]!, y2 = t[b2 + k]!, y3 = t[b3 + k]!;
          s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3;
          s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3;
          s20 += x2 * y0; s21 += x2 * y1; s22 += x2 * y2; s23 += x2 * y3;
          s30 += x3 * y0; s31 += x3 * y1; s32 += x3 * y2; s33 += x3 * y3;
        }
        // the diagonal tile's upper half is written too and overwritten by the mirror below
        let r = i0 * n + j0;
        acc[r] += s00; acc[r + 1] += s01; acc[r + 2] += s02; acc[r + 3] += s03;
        r += n;
        acc[r] += s10; acc[r + 1] += s11; acc[r + 2] += s12; acc[r + 3] += s13;
        r += n;
        acc[r] += s20; acc[r + 1] += s21; acc[r + 2] += s22; acc[r + 3] += s23;
        r += n;
        acc[r] += s30; acc[r + 1] += s31; acc[r + 2] += s32; acc[r + 3] += s33;
      }
    }
    }
    // leftover rows (n not a multiple of 4): plain dot products against every column ≤ i
    for (let i = nb; i < n; i++) {
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

/** tokens per panel of addGramF32 (and of the kernels' gramAddLowerF32) */
export const GRAM_F32_PANEL = 256;

/**
 * The lower triangle (j ≤ i) of acc (n, n) += xᵀx with f32 products and f32 panel sums: the reference twin of
 * LinalgKernels.gramAddLowerF32 (see there), multiply then add, every step rounded to f32 with Math.fround
 * except the accumulation into acc (f64). The WASM SIMD128 build gives these bits; a
 * build that fuses multiply-adds differs within the stated bound. Plain loops: a test oracle, not fast.
 */
export function addGramF32(x: ArrayLike<number>, nTok: number, n: number, acc: Float64Array): void {
  const f = Math.fround;
  const lanes = new Float64Array(4);
  for (let t0 = 0; t0 < nTok; t0 += GRAM_F32_PANEL) {
    const t1 = Math.min(nTok, t0 + GRAM_F32_PANEL);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        lanes.fill(0);
        for (let s = t0; s < t1; s++) {
          const l = (s - t0) & 3;
          lanes[l] = f(lanes[l]! + f(f(x[s * n + i]!) * f(x[s * n + j]!)));
        }
        acc[i * n + j] += f(f(lanes[0]! + lanes[2]!) + f(lanes[1]! + lanes[3]!));
      }
    }
  }
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

/**
 * The reference twin of the WASM float64 kernels (kernels/types.ts LinalgKernels,
 * kernels/wasm/linalg.ts): the plain TypeScript algorithms above on ordinary Float64Arrays. It lives
 * here, not in kernels/ref, because kernels must not import algos.
 */
export class RefLinalg implements LinalgKernels {
  readonly name = "ref";
  alloc(n: number): Float64Array {
    return new Float64Array(n);
  }
  free(_a: Float64Array): void {
    // garbage collected
  }
  owns(_a: Float64Array): boolean {
    return true;
  }
  gramAddLower(x: Float32Array, nTok: number, n: number, acc: Float64Array): void {
    addGram(x, nTok, n, acc);
  }
  gramAddLowerF32(x: Float32Array, nTok: number, n: number, acc: Float64Array): void {
    addGramF32(x, nTok, n, acc);
  }
  mirrorLower(acc: Float64Array, n: number): void {
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) acc[j * n + i] = acc[i * n + j]!;
  }
  upperCholeskyOfInverseInPlace(a: Float64Array, n: number): boolean {
    return upperCholeskyOfInverseInPlace(a, n);
  }
  lazyUpdate(w: Float64Array, rows: number, cols: number, e: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void {
    lazyUpdateRef(w, rows, cols, e, count, u, i1, j0);
  }
  rank1Update(w: Float64Array, rows: number, cols: number, j0: number, j1: number, e: Float64Array, lde: number, eCol: number, u: Float64Array, uRow: number): void {
    rank1UpdateRef(w, rows, cols, j0, j1, e, lde, eCol, u, uRow);
  }
  lazyUpdateF32(w: Float64Array, rows: number, cols: number, eT: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void {
    lazyUpdateF32Ref(w, rows, cols, eT, count, u, i1, j0);
  }
  transposeBlock(a: Float64Array, lda: number, r0: number, c0: number, rows: number, cols: number, bt: Float64Array, ldb: number): void {
    for (let k = 0; k < rows; k++) for (let j = 0; j < cols; j++) bt[j * ldb + k] = a[(r0 + k) * lda + c0 + j]!;
  }
  rank1UpdateT(wt: Float64Array, ldw: number, rows: number, j0: number, j1: number, e: Float64Array, eOff: number, u: Float64Array, uOff: number): void {
    for (let j = j0; j < j1; j++) {
      const uj = u[uOff + j]!;
      const o = j * ldw;
      for (let r = 0; r < rows; r++) wt[o + r]! -= e[eOff + r]! * uj;
    }
  }
}

/** w[r, j] −= e[r·lde + eCol]·u[uRow·cols + j] for j0 ≤ j < j1 (algos/gptq.ts's in-block loop) */
export function rank1UpdateRef(w: Float64Array, rows: number, cols: number, j0: number, j1: number, e: Float64Array, lde: number, eCol: number, u: Float64Array, uRow: number): void {
  const uo = uRow * cols;
  for (let r = 0; r < rows; r++) {
    const ev = e[r * lde + eCol]!;
    if (ev === 0) continue;
    const ro = r * cols;
    for (let j = j0; j < j1; j++) w[ro + j]! -= ev * u[uo + j]!;
  }
}

/** The reference twin of LinalgKernels.lazyUpdateF32 (see there): W[:, j0:] −= E·U[i1:i1+count, j0:] with E
 * transposed (eT (count, rows)), f32 products and lane sums (Math.fround at every f32 step), subtracted in f64.
 * Plain loops: a test oracle. */
export function lazyUpdateF32Ref(w: Float64Array, rows: number, cols: number, eT: ArrayLike<number>, count: number, u: Float64Array, i1: number, j0: number): void {
  const f = Math.fround;
  const lanes = new Float64Array(4);
  for (let r = 0; r < rows; r++) {
    for (let j = j0; j < cols; j++) {
      lanes.fill(0);
      for (let k = 0; k < count; k++) lanes[k & 3] = f(lanes[k & 3]! + f(f(eT[k * rows + r]!) * f(u[(i1 + k) * cols + j]!)));
      w[r * cols + j]! -= f(f(lanes[0]! + lanes[2]!) + f(lanes[1]! + lanes[3]!));
    }
  }
}

/** W[:, j0:] −= E·U[i1:i1+count, j0:], four rows of U per pass over a row of W (algos/gptq.ts's loop) */
export function lazyUpdateRef(w: Float64Array, rows: number, cols: number, err: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void {
  for (let r = 0; r < rows; r++) {
    const ro = r * cols;
    const eo = r * count;
    let k = 0;
    for (; k + 4 <= count; k += 4) {
      const e0 = err[eo + k]!, e1 = err[eo + k + 1]!, e2 = err[eo + k + 2]!, e3 = err[eo + k + 3]!;
      const u0 = (i1 + k) * cols, u1 = u0 + cols, u2 = u1 + cols, u3 = u2 + cols;
      for (let j = j0; j < cols; j++) w[ro + j]! -= e0 * u[u0 + j]! + e1 * u[u1 + j]! + e2 * u[u2 + j]! + e3 * u[u3 + j]!;
    }
    for (; k < count; k++) {
      const e = err[eo + k]!;
      if (e === 0) continue;
      const uo = (i1 + k) * cols;
      for (let j = j0; j < cols; j++) w[ro + j]! -= e * u[uo + j]!;
    }
  }
}
