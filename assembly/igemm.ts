// Integer calibration GEMM (kind K_I16GEMM, src/kernels/wasm/igemm.ts): weights and activations as symmetric
// integer codes in i16 lanes, one f32 scale per weight row and one per token, products summed exactly in int32
// (the host picks the code range so that cols · qmax² < 2^31: no overflow, so the sum is independent of order,
// tiling and threads). OUT[t, r] = fround(fround(f32(Σ_c q_w[r,c]·q_x[t,c]) · s_w[r]) · s_x[t]).
// i32x4.dot_i16x8_s (pmaddwd) does 8 exact multiply-adds per instruction, twice the f32 GEMM's 4 per
// mul + add pair; it is plain SIMD128, so both builds give the same bits.
import { D_ROWS, D_COLS, D_W0, D_W1, D_X16, D_XD, D_OUT, D_N } from "./abi";
import { dptr, dint } from "./desc";

/** tokens per block: a block's codes (64 × cols × 2 B) stay in L2 while every row tile runs on them */
const IG_TB = 64;

@inline function hsum_i32(v: v128): i32 {
  return (i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1)) + (i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3));
}

@inline function istore(out: usize, a: v128, ws: usize, sx: f32): void {
  store<f32>(out, (<f32>hsum_i32(a) * load<f32>(ws)) * sx);
}

/** R rows × T tokens (R ≤ 4, T ≤ 2, constants at every call) over cols (a multiple of 8) columns. */
@inline function itile(R: i32, T: i32, w: usize, ws: usize, x: usize, xs: usize, cols: i32, wsc: usize, xsc: usize, out: usize, os: usize): void {
  const z = i32x4.splat(0);
  let a00 = z, a10 = z, a20 = z, a30 = z;
  let a01 = z, a11 = z, a21 = z, a31 = z;
  const w1 = w + ws, w2 = w + 2 * ws, w3 = w + 3 * ws;
  const x1 = x + xs;
  for (let c = 0; c < cols; c += 8) {
    const uc = <usize>c << 1;
    const v0 = v128.load(w + uc);
    const v1 = R > 1 ? v128.load(w1 + uc) : z;
    const v2 = R > 2 ? v128.load(w2 + uc) : z;
    const v3 = R > 3 ? v128.load(w3 + uc) : z;
    const u0 = v128.load(x + uc);
    a00 = i32x4.add(a00, i32x4.dot_i16x8_s(v0, u0));
    if (R > 1) a10 = i32x4.add(a10, i32x4.dot_i16x8_s(v1, u0));
    if (R > 2) a20 = i32x4.add(a20, i32x4.dot_i16x8_s(v2, u0));
    if (R > 3) a30 = i32x4.add(a30, i32x4.dot_i16x8_s(v3, u0));
    if (T > 1) {
      const u1 = v128.load(x1 + uc);
      a01 = i32x4.add(a01, i32x4.dot_i16x8_s(v0, u1));
      if (R > 1) a11 = i32x4.add(a11, i32x4.dot_i16x8_s(v1, u1));
      if (R > 2) a21 = i32x4.add(a21, i32x4.dot_i16x8_s(v2, u1));
      if (R > 3) a31 = i32x4.add(a31, i32x4.dot_i16x8_s(v3, u1));
    }
  }
  const s0 = load<f32>(xsc);
  istore(out, a00, wsc, s0);
  if (R > 1) istore(out + 4, a10, wsc + 4, s0);
  if (R > 2) istore(out + 8, a20, wsc + 8, s0);
  if (R > 3) istore(out + 12, a30, wsc + 12, s0);
  if (T > 1) {
    const s1 = load<f32>(xsc + 4);
    istore(out + os, a01, wsc, s1);
    if (R > 1) istore(out + os + 4, a11, wsc + 4, s1);
    if (R > 2) istore(out + os + 8, a21, wsc + 8, s1);
    if (R > 3) istore(out + os + 12, a31, wsc + 12, s1);
  }
}

/** Rows [r0, r1) × all n tokens of a K_I16GEMM job: D_W0 i16 codes (rows, cols), D_W1 f32 row scales, D_X16 i16
 * codes (n, cols), D_XD f32 token scales, D_OUT f32 (n, rows). Tokens in blocks of IG_TB, 4 × 2 tiles inside,
 * rows left over as 1 × 2, tokens left over as 4 × 1 / 1 × 1. */
export function run_k68(desc: usize, r0: i32, r1: i32): void {
  const rows = dint(desc, D_ROWS), cols = dint(desc, D_COLS), n = dint(desc, D_N);
  const w0 = dptr(desc, D_W0), sw = dptr(desc, D_W1), x0 = dptr(desc, D_X16), sx = dptr(desc, D_XD), out = dptr(desc, D_OUT);
  const ws = <usize>cols << 1, os = <usize>rows << 2;
  for (let t0 = 0; t0 < n; t0 += IG_TB) {
    const t1 = min(n, t0 + IG_TB);
    let r = r0;
    for (; r + 4 <= r1; r += 4) {
      const ur = <usize>r;
      let t = t0;
      for (; t + 2 <= t1; t += 2) itile(4, 2, w0 + ur * ws, ws, x0 + <usize>t * ws, ws, cols, sw + (ur << 2), sx + (<usize>t << 2), out + <usize>t * os + (ur << 2), os);
      for (; t < t1; t++) itile(4, 1, w0 + ur * ws, ws, x0 + <usize>t * ws, ws, cols, sw + (ur << 2), sx + (<usize>t << 2), out + <usize>t * os + (ur << 2), os);
    }
    for (; r < r1; r++) {
      const ur = <usize>r;
      let t = t0;
      for (; t + 2 <= t1; t += 2) itile(1, 2, w0 + ur * ws, ws, x0 + <usize>t * ws, ws, cols, sw + (ur << 2), sx + (<usize>t << 2), out + <usize>t * os + (ur << 2), os);
      for (; t < t1; t++) itile(1, 1, w0 + ur * ws, ws, x0 + <usize>t * ws, ws, cols, sw + (ur << 2), sx + (<usize>t << 2), out + <usize>t * os + (ur << 2), os);
    }
  }
}

/**
 * Symmetric integer codes of n rows of f32 (rows `cols` apart, cols a multiple of 8): per row s = fround(absmax / qmax),
 * q = nearest-even(fround(x · fround(qmax / absmax))) as i16 (0 for an all-zero row, s = 0; one multiply per value,
 * not a division: f32x4.div was 5.6% of an int-forward imatrix profile). Writes codes (n, cols) and scales (n).
 * Returns the number of rows holding an Inf or NaN (their codes are left unwritten).
 */
export function quantize_rows_i16(x: usize, n: i32, cols: i32, qmax: f32, codes: usize, scales: usize): i32 {
  let bad = 0;
  for (let t = 0; t < n; t++) {
    const xr = x + (<usize>t * <usize>cols << 2);
    const qr = codes + (<usize>t * <usize>cols << 1);
    let m = f32x4.splat(0);
    let fin = v128.splat<i32>(-1);
    const inf = f32x4.splat(Infinity);
    for (let c = 0; c < cols; c += 4) {
      const a = f32x4.abs(v128.load(xr + (<usize>c << 2)));
      fin = v128.and(fin, f32x4.lt(a, inf)); // false for Inf and NaN
      m = f32x4.max(m, a);
    }
    if (!v128.all_true<i32>(fin)) {
      bad++;
      store<f32>(scales + (<usize>t << 2), 0);
      continue;
    }
    const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    const s: f32 = amax / qmax;
    store<f32>(scales + (<usize>t << 2), s);
    if (amax == 0) {
      for (let c = 0; c < cols; c += 8) v128.store(qr + (<usize>c << 1), i32x4.splat(0));
      continue;
    }
    const sv = f32x4.splat(qmax / amax);
    for (let c = 0; c < cols; c += 8) {
      const p = xr + (<usize>c << 2);
      const lo = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), sv)));
      const hi = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), sv)));
      v128.store(qr + (<usize>c << 1), i16x8.narrow_i32x4_s(lo, hi));
    }
  }
  return bad;
}
