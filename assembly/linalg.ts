// Float64 dense linear algebra for GPTQ (src/algos/gptq.ts, src/kernels/wasm/linalg.ts): one cache-blocked
// GEMM C ±= A·Bᵀ on f64x2 (2×4 register tiles, K in panels of 256, B's columns in panels that stay in
// L2), the pieces of a blocked Cholesky and triangular inverse that are not GEMMs (the panel
// factorization, the small diagonal-block inverse), and the f32 → f64 transpose the Gram accumulation
// needs. The relaxed build fuses the GEMM's and the dot products' multiply-adds (relaxed_madd: FMA where
// the CPU has it), the SIMD128 build multiplies then adds; both agree with the TypeScript reference within
// float64 rounding (test/kernels/wasm/linalg.test.ts).
import { reduce4f, hsum_f32_02 } from "./vmath";
import { L_C, L_LDC, L_A, L_LDA, L_B, L_LDB, L_M, L_N, L_K, L_FLAGS, L_ROW0, L_K0, LF_SUB, LF_LOWER, LF_TRI_A } from "./abi-linalg";

const KP: i32 = 256; // K panel: a 2-row strip of A (4 KiB) and B's panel columns stay in L1/L2
const PANEL_VALUES: i32 = 16384; // B panel (rows × K panel) of 128 KiB in the 1 MiB L2: 64 rows at K ≥ 256

/** c + a·b: fused (one rounding) in the relaxed build, multiply then add in the SIMD128 build */
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f64x2.relaxed_madd(a, b, c);
  return f64x2.add(c, f64x2.mul(a, b));
}

@inline function hsum2(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

@inline function ld(p: usize, i: i32): f64 {
  return load<f64>(p + (<usize>i << 3));
}

/** dot product of a[0..n) and b[0..n) (f64x2, two accumulators, scalar tail) */
@inline function dot(a: usize, b: usize, n: i32): f64 {
  let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    const o = <usize>k << 3;
    s0 = madd(v128.load(a + o), v128.load(b + o), s0);
    s1 = madd(v128.load(a + o, 16), v128.load(b + o, 16), s1);
  }
  let s = hsum2(f64x2.add(s0, s1));
  for (; k < n; k++) s += ld(a, k) * ld(b, k);
  return s;
}

/**
 * Job rows [r0, r1) of C ±= A·Bᵀ: a job row is a pair of C rows. With LF_LOWER the pairs are taken in a
 * zig-zag order (job row 2t = pair t, 2t+1 = pair P−1−t) so every contiguous chunk of job rows holds as
 * much of the triangle as any other.
 */
export function run_k48(desc: usize, r0: i32, r1: i32): void {
  const c = <usize>load<u32>(desc + (L_C << 2));
  const ldc = <i32>load<u32>(desc + (L_LDC << 2));
  const a = <usize>load<u32>(desc + (L_A << 2));
  const lda = <i32>load<u32>(desc + (L_LDA << 2));
  const b = <usize>load<u32>(desc + (L_B << 2));
  const ldb = <i32>load<u32>(desc + (L_LDB << 2));
  const M = <i32>load<u32>(desc + (L_M << 2));
  const N = <i32>load<u32>(desc + (L_N << 2));
  const K = <i32>load<u32>(desc + (L_K << 2));
  const flags = <i32>load<u32>(desc + (L_FLAGS << 2));
  const row0 = <i32>load<u32>(desc + (L_ROW0 << 2));
  const k0g = <i32>load<u32>(desc + (L_K0 << 2));
  const lower = (flags & LF_LOWER) != 0;
  const tri = (flags & LF_TRI_A) != 0;
  const sgn: f64 = (flags & LF_SUB) != 0 ? -1 : 1;
  const P = (M + 1) >> 1;
  const JP = max(64, (PANEL_VALUES / min(K, KP)) & ~3);
  for (let kp = 0; kp < K; kp += KP) {
    const kpEnd = min(K, kp + KP);
    for (let jp = 0; jp < N; jp += JP) {
      const jpEnd = min(N, jp + JP);
      for (let r = r0; r < r1; r++) {
        const t = lower ? ((r & 1) == 0 ? r >> 1 : P - 1 - (r >> 1)) : r;
        const i = t << 1;
        const two = i + 1 < M;
        const iLast = two ? i + 1 : i;
        // k range of this row pair in this panel: A is zero past the diagonal with LF_TRI_A
        let kEnd = kpEnd;
        if (tri) kEnd = min(kEnd, iLast + row0 - k0g + 1);
        const kn = kEnd - kp;
        if (kn <= 0) continue;
        let jEnd = jpEnd;
        if (lower) jEnd = min(jEnd, iLast + 1);
        if (jEnd <= jp) continue;
        const a0 = a + ((<usize>i * <usize>lda + <usize>kp) << 3);
        const a1 = two ? a0 + (<usize>lda << 3) : a0;
        const c0 = c + (<usize>i * <usize>ldc << 3);
        const c1 = c0 + (<usize>ldc << 3);
        let j = jp;
        for (; j + 4 <= jEnd; j += 4) {
          const b0 = b + ((<usize>j * <usize>ldb + <usize>kp) << 3);
          const b1 = b0 + (<usize>ldb << 3), b2 = b1 + (<usize>ldb << 3), b3 = b2 + (<usize>ldb << 3);
          let s00 = f64x2.splat(0), s01 = f64x2.splat(0), s02 = f64x2.splat(0), s03 = f64x2.splat(0);
          let s10 = f64x2.splat(0), s11 = f64x2.splat(0), s12 = f64x2.splat(0), s13 = f64x2.splat(0);
          let k = 0;
          for (; k + 2 <= kn; k += 2) {
            const o = <usize>k << 3;
            const x0 = v128.load(a0 + o), x1 = v128.load(a1 + o);
            const y0 = v128.load(b0 + o), y1 = v128.load(b1 + o), y2 = v128.load(b2 + o), y3 = v128.load(b3 + o);
            s00 = madd(x0, y0, s00); s01 = madd(x0, y1, s01);
            s02 = madd(x0, y2, s02); s03 = madd(x0, y3, s03);
            s10 = madd(x1, y0, s10); s11 = madd(x1, y1, s11);
            s12 = madd(x1, y2, s12); s13 = madd(x1, y3, s13);
          }
          let t00 = hsum2(s00), t01 = hsum2(s01), t02 = hsum2(s02), t03 = hsum2(s03);
          let t10 = hsum2(s10), t11 = hsum2(s11), t12 = hsum2(s12), t13 = hsum2(s13);
          if (k < kn) {
            const x0 = ld(a0, k), x1 = ld(a1, k);
            const y0 = ld(b0, k), y1 = ld(b1, k), y2 = ld(b2, k), y3 = ld(b3, k);
            t00 += x0 * y0; t01 += x0 * y1; t02 += x0 * y2; t03 += x0 * y3;
            t10 += x1 * y0; t11 += x1 * y1; t12 += x1 * y2; t13 += x1 * y3;
          }
          const o = <usize>j << 3;
          store<f64>(c0 + o, load<f64>(c0 + o) + sgn * t00);
          store<f64>(c0 + o + 8, load<f64>(c0 + o + 8) + sgn * t01);
          store<f64>(c0 + o + 16, load<f64>(c0 + o + 16) + sgn * t02);
          store<f64>(c0 + o + 24, load<f64>(c0 + o + 24) + sgn * t03);
          if (two) {
            store<f64>(c1 + o, load<f64>(c1 + o) + sgn * t10);
            store<f64>(c1 + o + 8, load<f64>(c1 + o + 8) + sgn * t11);
            store<f64>(c1 + o + 16, load<f64>(c1 + o + 16) + sgn * t12);
            store<f64>(c1 + o + 24, load<f64>(c1 + o + 24) + sgn * t13);
          }
        }
        for (; j < jEnd; j++) {
          const bj = b + ((<usize>j * <usize>ldb + <usize>kp) << 3);
          const o = <usize>j << 3;
          store<f64>(c0 + o, load<f64>(c0 + o) + sgn * dot(a0, bj, kn));
          if (two) store<f64>(c1 + o, load<f64>(c1 + o) + sgn * dot(a1, bj, kn));
        }
      }
    }
  }
}

/** t[i·ldt + s] = x[s·n + i] for s < m, i < n: m rows of f32 (m, n) to channel-major f64 (n, ldt), in
 * 16 × 16 blocks */
export function f32_to_f64_transposed(x: usize, m: i32, n: i32, t: usize, ldt: i32): void {
  for (let s0 = 0; s0 < m; s0 += 16) {
    const s1 = min(m, s0 + 16);
    for (let i0 = 0; i0 < n; i0 += 16) {
      const i1 = min(n, i0 + 16);
      for (let s = s0; s < s1; s++) {
        const xr = x + (<usize>s * <usize>n << 2);
        for (let i = i0; i < i1; i++) store<f64>(t + ((<usize>i * <usize>ldt + <usize>s) << 3), <f64>load<f32>(xr + (<usize>i << 2)));
      }
    }
  }
}

/** a[i·n + j] ← a[j·n + i] for j > i (the upper triangle from the lower), in 32 × 32 blocks */
export function f64_mirror_lower(a: usize, n: i32): void {
  for (let i0 = 0; i0 < n; i0 += 32) {
    for (let j0 = i0; j0 < n; j0 += 32) {
      const i1 = min(n, i0 + 32), j1 = min(n, j0 + 32);
      for (let i = i0; i < i1; i++) {
        for (let j = max(j0, i + 1); j < j1; j++) store<f64>(a + ((<usize>i * <usize>n + <usize>j) << 3), load<f64>(a + ((<usize>j * <usize>n + <usize>i) << 3)));
      }
    }
  }
}

/** reverses the order of n f64 (A ← J·A·J for an (n', n') matrix when n = n'²) */
export function f64_reverse(a: usize, n: i32): void {
  let i: usize = a, j: usize = a + (<usize>(n - 1) << 3);
  while (i < j) {
    const t = load<f64>(i);
    store<f64>(i, load<f64>(j));
    store<f64>(j, t);
    i += 8;
    j -= 8;
  }
}

/** zeroes the strict upper triangle of a (n, n) */
export function f64_zero_upper(a: usize, n: i32): void {
  for (let i = 0; i < n - 1; i++) memory.fill(a + ((<usize>i * <usize>n + <usize>i + 1) << 3), 0, <usize>(n - 1 - i) << 3);
}

/**
 * Diagonal block of a left-looking blocked lower Cholesky of a (n, n) in place, columns [j0, j1): rows ≥ j0
 * must already have had Σ_{k<j0} L_ik L_jk subtracted (one GEMM, lower part only inside the block). Column by
 * column (as src/algos/linalg.ts choleskyColumn, over the block's own columns): L_cc = √(a_cc − Σ_{j0≤k<c}
 * L_ck²), L_ic = (a_ic − Σ_{j0≤k<c} L_ik L_ck) / L_cc for c < i < j1. Writes only the lower triangle. Returns
 * −1, or the column whose pivot was not positive (nothing of that column written). The rows below the block
 * are chol_below_f64's.
 */
export function chol_panel_f64(a: usize, n: i32, j0: i32, j1: i32): i32 {
  const rb = <usize>n << 3;
  const o0 = <usize>j0 << 3;
  for (let c = j0; c < j1; c++) {
    const rc = a + <usize>c * rb;
    const w = c - j0;
    const d = load<f64>(rc + (<usize>c << 3)) - dot(rc + o0, rc + o0, w);
    if (!(d > 0) || !isFinite(d)) return c;
    const l = Math.sqrt(d);
    store<f64>(rc + (<usize>c << 3), l);
    const inv = 1 / l;
    for (let i = c + 1; i < j1; i++) {
      const ri = a + <usize>i * rb;
      store<f64>(ri + (<usize>c << 3), (load<f64>(ri + (<usize>c << 3)) - dot(ri + o0, rc + o0, w)) * inv);
    }
  }
  return -1;
}

/** Rows j1 + [r0, r1) of the block columns [j0, j1) after chol_panel_f64 (rows are independent given the
 * block's L): L_ic = (a_ic − Σ_{j0≤k<c} L_ik L_ck)·(1 / L_cc), column by column */
export function chol_below_f64(a: usize, n: i32, j0: i32, j1: i32, r0: i32, r1: i32): void {
  const rb = <usize>n << 3;
  const o0 = <usize>j0 << 3;
  for (let i = j1 + r0; i < j1 + r1; i++) {
    const ri = a + <usize>i * rb;
    for (let c = j0; c < j1; c++) {
      const rc = a + <usize>c * rb;
      store<f64>(ri + (<usize>c << 3), (load<f64>(ri + (<usize>c << 3)) - dot(ri + o0, rc + o0, c - j0)) * (1 / load<f64>(rc + (<usize>c << 3))));
    }
  }
}

/** Pool entry of chol_below_f64 (L_C = a, L_LDC = n, L_N = j0, L_K = j1; rows = rows below the block) */
export function run_k87(desc: usize, r0: i32, r1: i32): void {
  chol_below_f64(<usize>load<u32>(desc + (L_C << 2)), <i32>load<u32>(desc + (L_LDC << 2)), <i32>load<u32>(desc + (L_N << 2)), <i32>load<u32>(desc + (L_K << 2)), r0, r1);
}

/**
 * The block step of an in-place lower triangular inverse, columns [j0, j1) (blocks taken from the last):
 * rows ≥ j1 of a already hold X = L⁻¹ in columns ≥ j1 (zeros above the diagonal) and L in columns
 * [j0, j1); g (rows n − j1, bs = j1 − j0, row-major) holds X[i, j1:]·L[j1:, J]. Writes X[J, J] =
 * L[J, J]⁻¹ (row by row, as linalg.ts invertLower) and X[i, J] = −g[i]·X[J, J] for i ≥ j1, the upper
 * part of the block row zeroed. s: bs·bs f64 scratch.
 */
export function trinv_block_f64(a: usize, n: i32, j0: i32, j1: i32, g: usize, s: usize): void {
  const bs = j1 - j0;
  const rb = <usize>n << 3;
  const sb = <usize>bs << 3;
  // s = L[J, J]⁻¹ (lower), row i: X_i = (e_i − Σ_{k<i} L_ik X_k) / L_ii
  memory.fill(s, 0, <usize>bs * sb);
  for (let i = 0; i < bs; i++) {
    const li = a + <usize>(j0 + i) * rb + (<usize>j0 << 3);
    const si = s + <usize>i * sb;
    for (let k = 0; k < i; k++) {
      const f = load<f64>(li + (<usize>k << 3));
      if (f == 0) continue;
      const sk = s + <usize>k * sb;
      for (let j = 0; j <= k; j++) store<f64>(si + (<usize>j << 3), load<f64>(si + (<usize>j << 3)) - f * load<f64>(sk + (<usize>j << 3)));
    }
    store<f64>(si + (<usize>i << 3), load<f64>(si + (<usize>i << 3)) + 1);
    const inv = 1 / load<f64>(li + (<usize>i << 3));
    for (let j = 0; j <= i; j++) store<f64>(si + (<usize>j << 3), load<f64>(si + (<usize>j << 3)) * inv);
  }
  // rows below the block: X[i, c] = −Σ_{c' ≥ c} g[i, c'] s[c', c] (g = 0: the host runs this as a GEMM)
  for (let i = j1; g != 0 && i < n; i++) {
    const gi = g + <usize>(i - j1) * sb;
    const xi = a + <usize>i * rb + (<usize>j0 << 3);
    for (let c = 0; c < bs; c++) {
      let t: f64 = 0;
      for (let k = c; k < bs; k++) t += load<f64>(gi + (<usize>k << 3)) * load<f64>(s + <usize>k * sb + (<usize>c << 3));
      store<f64>(xi + (<usize>c << 3), -t);
    }
  }
  // the block itself
  for (let i = 0; i < bs; i++) {
    const xi = a + <usize>(j0 + i) * rb + (<usize>j0 << 3);
    memory.copy(xi, s + <usize>i * sb, <usize>bs << 3);
  }
}

/** Bt[j·ldb + k] = a[(r0 + k)·lda + c0 + j] for k < rows, j < cols: a block of rows of a transposed
 * into B's (N, K) layout for run_k48 */
export function f64_transpose_block(a: usize, lda: i32, r0: i32, c0: i32, rows: i32, cols: i32, bt: usize, ldb: i32): void {
  for (let k0 = 0; k0 < rows; k0 += 16) {
    const k1 = min(rows, k0 + 16);
    for (let jb = 0; jb < cols; jb += 16) {
      const jb1 = min(cols, jb + 16);
      for (let k = k0; k < k1; k++) {
        const ar = a + ((<usize>(r0 + k) * <usize>lda + <usize>c0) << 3);
        for (let j = jb; j < jb1; j++) store<f64>(bt + ((<usize>j * <usize>ldb + <usize>k) << 3), load<f64>(ar + (<usize>j << 3)));
      }
    }
  }
}

/** w[r·ldw + j] −= e[r·lde]·u[j] for r0 ≤ r < r1, j0 ≤ j < j1 (GPTQ's in-block update after one column;
 * the same multiply and subtract per element as the reference loop) */
export function f64_rank1_sub(w: usize, ldw: i32, r0: i32, r1: i32, j0: i32, j1: i32, e: usize, lde: i32, u: usize): void {
  const len = j1 - j0;
  if (len <= 0) return;
  const ub = u + (<usize>j0 << 3);
  for (let r = r0; r < r1; r++) {
    const ev = load<f64>(e + (<usize>r * <usize>lde << 3));
    if (ev == 0) continue;
    const es = f64x2.splat(ev);
    const wr = w + ((<usize>r * <usize>ldw + <usize>j0) << 3);
    let j = 0;
    for (; j + 2 <= len; j += 2) {
      const o = <usize>j << 3;
      v128.store(wr + o, f64x2.sub(v128.load(wr + o), f64x2.mul(es, v128.load(ub + o))));
    }
    if (j < len) store<f64>(wr + (<usize>j << 3), load<f64>(wr + (<usize>j << 3)) - ev * load<f64>(ub + (<usize>j << 3)));
  }
}

/** Pool entry of f64_rank1_sub: rows [r0, r1) of the update its descriptor names (L_C = w, L_LDC, L_A = e,
 * L_LDA = lde, L_B = u, L_N = j0, L_K = j1) */
export function run_k49(desc: usize, r0: i32, r1: i32): void {
  f64_rank1_sub(<usize>load<u32>(desc + (L_C << 2)), <i32>load<u32>(desc + (L_LDC << 2)), r0, r1,
    <i32>load<u32>(desc + (L_N << 2)), <i32>load<u32>(desc + (L_K << 2)),
    <usize>load<u32>(desc + (L_A << 2)), <i32>load<u32>(desc + (L_LDA << 2)), <usize>load<u32>(desc + (L_B << 2)));
}

// ---------------------------------------------------------------- f32-product Gram panels (K_GRAM_F32)

/** c + a·b on f32x4: fused in the relaxed build, multiply then add in the SIMD128 build */
@inline function madd32(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}


/** c[0..4) −= the 4 f32 lanes of v, in f64 */
@inline function sub4(c: usize, v: v128): void {
  v128.store(c, f64x2.sub(v128.load(c), f64x2.promote_low_f32x4(v)));
  v128.store(c, f64x2.sub(v128.load(c, 16), f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 2, 3))), 16);
}

/** c[0..4) += the 4 f32 lanes of v, in f64 */
@inline function add4(c: usize, v: v128): void {
  v128.store(c, f64x2.add(v128.load(c), f64x2.promote_low_f32x4(v)));
  v128.store(c, f64x2.add(v128.load(c, 16), f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 2, 3))), 16);
}

/** t[i·ldt + s] = x[s·n + i] for s < m, i < n, and 0 for m ≤ s < ldt: m rows of f32 (m, n) to channel-major
 * f32 (n, ldt), zero-padded to ldt tokens (ldt a multiple of 4, so the Gram tiles never need a tail), in
 * 16 × 16 blocks */
export function f32_transpose_pad(x: usize, m: i32, n: i32, t: usize, ldt: i32): void {
  for (let s0 = 0; s0 < m; s0 += 16) {
    const s1 = min(m, s0 + 16);
    for (let i0 = 0; i0 < n; i0 += 16) {
      const i1 = min(n, i0 + 16);
      for (let s = s0; s < s1; s++) {
        const xr = x + (<usize>s * <usize>n << 2);
        for (let i = i0; i < i1; i++) store<f32>(t + ((<usize>i * <usize>ldt + <usize>s) << 2), load<f32>(xr + (<usize>i << 2)));
      }
    }
  }
  if (m < ldt) for (let i = 0; i < n; i++) memory.fill(t + ((<usize>i * <usize>ldt + <usize>m) << 2), 0, <usize>(ldt - m) << 2);
}

/** tile2x4f32's two results (an inline function returns one value): the 4 column sums of tile row 0 and of row 1 */
let tileRow0: v128 = f32x4.splat(0);
let tileRow1: v128 = f32x4.splat(0);

/** The f32-product tile of run_k84 and run_k86: rows a0, a1 × columns b0…b3 over K (a multiple of 4), 8 f32x4
 * accumulators (lane l sums the products of k ≡ l (mod 4) in k order), reduced as reduce4f into tileRow0 / tileRow1. */
@inline function tile2x4f32(a0: usize, a1: usize, b0: usize, b1: usize, b2: usize, b3: usize, K: i32): void {
  const z = f32x4.splat(0);
  let s00 = z, s01 = z, s02 = z, s03 = z, s10 = z, s11 = z, s12 = z, s13 = z;
  for (let k = 0; k < K; k += 4) {
    const o = <usize>k << 2;
    const x0 = v128.load(a0 + o), x1 = v128.load(a1 + o);
    const y0 = v128.load(b0 + o);
    s00 = madd32(x0, y0, s00); s10 = madd32(x1, y0, s10);
    const y1 = v128.load(b1 + o);
    s01 = madd32(x0, y1, s01); s11 = madd32(x1, y1, s11);
    const y2 = v128.load(b2 + o);
    s02 = madd32(x0, y2, s02); s12 = madd32(x1, y2, s12);
    const y3 = v128.load(b3 + o);
    s03 = madd32(x0, y3, s03); s13 = madd32(x1, y3, s13);
  }
  tileRow0 = reduce4f(s00, s01, s02, s03);
  tileRow1 = reduce4f(s10, s11, s12, s13);
}

const GRAM_JP: i32 = 128; // channels per column panel: 128 × 256 tokens × 4 B = 128 KiB of T in L2

/**
 * Job rows [r0, r1) of the f32-product Gram panel C[i, j] += Σ_s T[i, s]·T[j, s] for j ≤ i (C f64 (M, M)
 * row-major, L_LDC; T f32 (M, L_LDA), L_K tokens, a multiple of 4). A job row is a pair of channels, taken
 * zig-zag (job 2t = pair t, 2t + 1 = pair P−1−t) so every chunk holds as much of the triangle. Tiles of 2
 * rows × 4 columns as run_k86 (lane l sums the products of tokens s ≡ l (mod 4) in f32, in token order; the
 * lanes added in f32 as (l0 + l2) + (l1 + l3)), added to C in f64; a tile crossing the diagonal stores only
 * its j ≤ i part. Each C element comes from one tile whatever the split, so the thread count does not change
 * a bit.
 */
export function run_k84(desc: usize, r0: i32, r1: i32): void {
  const c = <usize>load<u32>(desc + (L_C << 2));
  const ldc = <i32>load<u32>(desc + (L_LDC << 2));
  const t = <usize>load<u32>(desc + (L_A << 2));
  const ldt = <i32>load<u32>(desc + (L_LDA << 2));
  const M = <i32>load<u32>(desc + (L_M << 2));
  const K = <i32>load<u32>(desc + (L_K << 2));
  const P = (M + 1) >> 1;
  const rs = <usize>ldt << 2;
  const cs = <usize>ldc << 3;
  for (let jp = 0; jp < M; jp += GRAM_JP) {
    const jpEnd = min(M, jp + GRAM_JP);
    for (let r = r0; r < r1; r++) {
      const p = (r & 1) == 0 ? r >> 1 : P - 1 - (r >> 1);
      const i = p << 1;
      const two = i + 1 < M;
      const iLast = two ? i + 1 : i;
      const jEnd = min(jpEnd, iLast + 1);
      if (jEnd <= jp) continue;
      const a0 = t + <usize>i * rs;
      const a1 = two ? a0 + rs : a0;
      const c0 = c + <usize>i * cs;
      const c1 = c0 + cs;
      for (let j = jp; j < jEnd; j += 4) {
        // columns past jEnd alias column j (their sums are not stored)
        const b0 = t + <usize>j * rs;
        const b1 = j + 1 < jEnd ? b0 + rs : b0, b2 = j + 2 < jEnd ? b0 + 2 * rs : b0, b3 = j + 3 < jEnd ? b0 + 3 * rs : b0;
        tile2x4f32(a0, a1, b0, b1, b2, b3, K);
        const o = <usize>j << 3;
        const v0 = tileRow0, v1 = tileRow1;
        if (j + 3 <= i) {
          add4(c0 + o, v0);
          if (two) add4(c1 + o, v1);
        } else {
          // the diagonal tile: row i takes columns ≤ i, row i + 1 columns ≤ i + 1 (all below jEnd)
          const n0 = min(4, i + 1 - j), n1 = min(4, i + 2 - j);
          if (n0 > 0) store<f64>(c0 + o, load<f64>(c0 + o) + <f64>f32x4.extract_lane(v0, 0));
          if (n0 > 1) store<f64>(c0 + o + 8, load<f64>(c0 + o + 8) + <f64>f32x4.extract_lane(v0, 1));
          if (n0 > 2) store<f64>(c0 + o + 16, load<f64>(c0 + o + 16) + <f64>f32x4.extract_lane(v0, 2));
          if (n0 > 3) store<f64>(c0 + o + 24, load<f64>(c0 + o + 24) + <f64>f32x4.extract_lane(v0, 3));
          if (two) {
            if (n1 > 0) store<f64>(c1 + o, load<f64>(c1 + o) + <f64>f32x4.extract_lane(v1, 0));
            if (n1 > 1) store<f64>(c1 + o + 8, load<f64>(c1 + o + 8) + <f64>f32x4.extract_lane(v1, 1));
            if (n1 > 2) store<f64>(c1 + o + 16, load<f64>(c1 + o + 16) + <f64>f32x4.extract_lane(v1, 2));
            if (n1 > 3) store<f64>(c1 + o + 24, load<f64>(c1 + o + 24) + <f64>f32x4.extract_lane(v1, 3));
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------- GPTQ's in-block update, transposed block (K_RANK1T_F64)

/** wt[j·ldw + r] −= e[r]·u[j] for r0 ≤ r < r1, j0 ≤ j < j1: the in-block update after one column on the
 * block held transposed (column j of the block = a contiguous run over the rows), the same multiply then
 * subtract per element as f64_rank1_sub and the reference loop */
export function f64_rank1t_sub(wt: usize, ldw: i32, r0: i32, r1: i32, j0: i32, j1: i32, e: usize, u: usize): void {
  for (let j = j0; j < j1; j++) {
    const uj = load<f64>(u + (<usize>j << 3));
    const us = f64x2.splat(uj);
    const wr = wt + (<usize>j * <usize>ldw << 3);
    let r = r0;
    for (; r + 4 <= r1; r += 4) {
      const o = <usize>r << 3;
      v128.store(wr + o, f64x2.sub(v128.load(wr + o), f64x2.mul(v128.load(e + o), us)));
      v128.store(wr + o, f64x2.sub(v128.load(wr + o, 16), f64x2.mul(v128.load(e + o, 16), us)), 16);
    }
    for (; r < r1; r++) {
      const o = <usize>r << 3;
      store<f64>(wr + o, load<f64>(wr + o) - load<f64>(e + o) * uj);
    }
  }
}

/** Pool entry of f64_rank1t_sub: rows [r0, r1) (rows of W) of the update its descriptor names (L_C = wt,
 * L_LDC, L_A = e, L_B = u, L_N = j0, L_K = j1) */
export function run_k85(desc: usize, r0: i32, r1: i32): void {
  f64_rank1t_sub(<usize>load<u32>(desc + (L_C << 2)), <i32>load<u32>(desc + (L_LDC << 2)), r0, r1,
    <i32>load<u32>(desc + (L_N << 2)), <i32>load<u32>(desc + (L_K << 2)),
    <usize>load<u32>(desc + (L_A << 2)), <usize>load<u32>(desc + (L_B << 2)));
}

// ---------------------------------------------------------------- f32-product GEMM, C −= A·Bᵀ (K_GEMM_SUB_F32)

/** bt[j·ldb + k] = f32(a[(r0 + k)·lda + c0 + j]) for k < rows, j < cols, and 0 for rows ≤ k < ldb: a block of an
 * f64 matrix transposed into f32, zero-padded (the f32 GEMM's operand layout), in 16 × 16 blocks */
export function f64_to_f32_transpose_pad(a: usize, lda: i32, r0: i32, c0: i32, rows: i32, cols: i32, bt: usize, ldb: i32): void {
  for (let k0 = 0; k0 < rows; k0 += 16) {
    const k1 = min(rows, k0 + 16);
    for (let jb = 0; jb < cols; jb += 16) {
      const jb1 = min(cols, jb + 16);
      for (let k = k0; k < k1; k++) {
        const ar = a + ((<usize>(r0 + k) * <usize>lda + <usize>c0) << 3);
        for (let j = jb; j < jb1; j++) store<f32>(bt + ((<usize>j * <usize>ldb + <usize>k) << 2), <f32>load<f64>(ar + (<usize>j << 3)));
      }
    }
  }
  if (rows < ldb) for (let j = 0; j < cols; j++) memory.fill(bt + ((<usize>j * <usize>ldb + <usize>rows) << 2), 0, <usize>(ldb - rows) << 2);
}

const GEMM32_JP: i32 = 256; // B rows per column panel: 256 × 128 floats = 128 KiB in L2 at K = 128

/** Σ_k a[k]·b[k] over K (a multiple of 4) in the lane order of the tiles below, for a C column left over */
@inline function dot32(a: usize, b: usize, K: i32): f32 {
  let s = f32x4.splat(0);
  for (let k = 0; k < K; k += 4) s = madd32(v128.load(a + (<usize>k << 2)), v128.load(b + (<usize>k << 2)), s);
  return hsum_f32_02(s);
}

/**
 * Job rows [r0, r1) of C −= A·Bᵀ with f32 products: a job row is 2 rows of C. Tiles of 2 rows × 4 columns
 * (8 f32x4 accumulators, 6 loads per 8 multiply-adds): lane l of an accumulator sums the products of k ≡ l
 * (mod 4) in f32, in k order; the four lanes are added in f32 as (l0 + l2) + (l1 + l3) (one shuffle tree
 * for a tile row's 4 columns), and subtracted from C in f64. Each C element comes from one tile whatever
 * the split, so the thread count does not change a bit.
 */
export function run_k86(desc: usize, r0: i32, r1: i32): void {
  const c = <usize>load<u32>(desc + (L_C << 2));
  const ldc = <i32>load<u32>(desc + (L_LDC << 2));
  const a = <usize>load<u32>(desc + (L_A << 2));
  const lda = <i32>load<u32>(desc + (L_LDA << 2));
  const b = <usize>load<u32>(desc + (L_B << 2));
  const ldb = <i32>load<u32>(desc + (L_LDB << 2));
  const M = <i32>load<u32>(desc + (L_M << 2));
  const N = <i32>load<u32>(desc + (L_N << 2));
  const K = <i32>load<u32>(desc + (L_K << 2));
  const ras = <usize>lda << 2, rbs = <usize>ldb << 2, cs = <usize>ldc << 3;
  for (let jp = 0; jp < N; jp += GEMM32_JP) {
    const jpEnd = min(N, jp + GEMM32_JP);
    for (let r = r0; r < r1; r++) {
      const i = r << 1;
      const two = i + 1 < M;
      const a0 = a + <usize>i * ras;
      const a1 = two ? a0 + ras : a0;
      const c0 = c + <usize>i * cs;
      const c1 = c0 + cs;
      let j = jp;
      for (; j + 4 <= jpEnd; j += 4) {
        const b0 = b + <usize>j * rbs;
        const b1 = b0 + rbs, b2 = b1 + rbs, b3 = b2 + rbs;
        tile2x4f32(a0, a1, b0, b1, b2, b3, K);
        const o = <usize>j << 3;
        sub4(c0 + o, tileRow0);
        if (two) sub4(c1 + o, tileRow1);
      }
      for (; j < jpEnd; j++) {
        const bj = b + <usize>j * rbs;
        const o = <usize>j << 3;
        store<f64>(c0 + o, load<f64>(c0 + o) - <f64>dot32(a0, bj, K));
        if (two) store<f64>(c1 + o, load<f64>(c1 + o) - <f64>dot32(a1, bj, K));
      }
    }
  }
}
