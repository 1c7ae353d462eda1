// quantlab WebAssembly SIMD kernels (AssemblyScript). Built twice by scripts/build-wasm.mjs: baseline
// SIMD128 and relaxed SIMD (ASC_FEATURE_RELAXED_SIMD picks the nibble kernels at compile time).
// Everything works on byte offsets into the one shared memory the host allocates (AssemblyScript minimal runtime: no
// GC, no heap here; the host runs a bump allocator above __heap_base). Measurements that chose these
// instruction sequences: shared/notes/kernels.md.
import {
  K_F32, K_F16, K_I8S32, K_Q4_0, K_N4A32, K_I8S16, K_I8A32, K_I8A16, K_Q8_0N, K_Q4_0N, K_Q4_KN, K_Q6_KN, K_Q4_0X4, K_Q8_0X4,
  D_KIND, D_ROWS, D_COLS, D_W0, D_W1, D_W2, D_XF, D_X16, D_X8, D_XD, D_XS, D_OUT, D_N, D_GROUP, D_LUT, D_BITS,
  F16_PANEL_SLOT_BYTES,
} from "./abi";

/** First free byte after static data: the host's allocator starts here. */
export function heap_base(): usize {
  return __heap_base;
}

/** 0 = SIMD128 build (Q4 nibbles repacked "r16"), 1 = relaxed build (Q4 nibbles in GGUF order). */
export function variant(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

// ---------------------------------------------------------------- helpers

/** High nibbles of 16 bytes. Not i8x16.shr_u: V8 11.3 lowers that to a 16-bit shift plus a mask it
 * rebuilds from an immediate at every use (3 more instructions); the constant mask here stays in a register. */
@inline function hi4(v: v128): v128 {
  return v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f));
}

@inline function hsum_f32(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline function hsum_i32(v: v128): i32 {
  return (i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1)) + (i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3));
}

export { f32_to_f16, f16_to_f32 } from "./f16";
import { f32_to_f16, f16_to_f32, f16x4_to_f32 } from "./f16";
import { reduce4f, hsum_f32_02 } from "./vmath";
import { dptr, dint, prefillTokenBlock, storeRows4, storeTile, claimPanelSlot } from "./desc";

/** v itself, through one instruction neither binaryen nor TurboFan folds: a loop-carried constant stays a
 * register value (a loop phi) instead of being rebuilt from its splat at every use (as kdecode.ts keep). */
@inline function keep(v: v128): v128 {
  return i8x16.min_u(v, v);
}

// ---------------------------------------------------------------- dense rows

/** Σ w[i]·x[i], f32 weights; 16 per step in 4 accumulators, then 4-wide, then scalar tail. */
@inline function dot_f32(w: usize, x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(w + o), v128.load(x + o)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(w + o, 16), v128.load(x + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(w + o, 32), v128.load(x + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(w + o, 48), v128.load(x + o, 48)));
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(w + o), v128.load(x + o)));
  }
  let s = hsum_f32(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; i < n; i++) {
    const o = <usize>i << 2;
    s += load<f32>(w + o) * load<f32>(x + o);
  }
  return s;
}

// dot_f16's main loop converts 8 binary16 values at a time in 16-bit halves, the f16x4_to_f32 bits
// without widening first: an f32's upper half is sign | 000 | exponent | top 7 mantissa bits =
// (h >>s 3) & 0x8fff, its lower half the last 3 mantissa bits = h << 13; the halves are interleaved
// (punpcklwd / punpckhwd). Those bits are the f32 w·2^-112 exactly (normals, subnormals and ±0); the
// rebias ×2^112 is either one multiply per 4 values (`scaled` false) or folded into the activations: with
// xs = x·2^112 (exact when every |x| < 2^16, dispatch's scale_act_f16) the product fl(w·2^-112 · x·2^112)
// is fl(w·x), the same real number rounded once, so both forms give the same products and, in the same
// order, the same sums as dot_f32 on the decoded weights. The mask is carried through the loop by `keep`
// (TurboFan rebuilt the splat from an immediate at every use: 3 instructions).
@inline function dot_f16(scaled: bool, w: usize, x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let m = i16x8.splat(<i16>(0x8fff | (n >> 31))); // 0x8fff (n ≥ 0), opaque to binaryen
  let k = f32x4.splat(reinterpret<f32>(0x77800000 | (n >> 31))); // 2^112
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const h0 = v128.load(w + (<usize>i << 1));
    const h1 = v128.load(w + (<usize>i << 1), 16);
    const o = <usize>i << 2;
    const u0 = v128.and(i16x8.shr_s(h0, 3), m), d0 = i16x8.shl(h0, 13);
    const u1 = v128.and(i16x8.shr_s(h1, 3), m), d1 = i16x8.shl(h1, 13);
    let v0 = i16x8.shuffle(d0, u0, 0, 8, 1, 9, 2, 10, 3, 11), v1 = i16x8.shuffle(d0, u0, 4, 12, 5, 13, 6, 14, 7, 15);
    let v2 = i16x8.shuffle(d1, u1, 0, 8, 1, 9, 2, 10, 3, 11), v3 = i16x8.shuffle(d1, u1, 4, 12, 5, 13, 6, 14, 7, 15);
    if (!scaled) {
      v0 = f32x4.mul(v0, k); v1 = f32x4.mul(v1, k); v2 = f32x4.mul(v2, k); v3 = f32x4.mul(v3, k);
      k = keep(k);
    }
    a0 = f32x4.add(a0, f32x4.mul(v0, v128.load(x + o)));
    a1 = f32x4.add(a1, f32x4.mul(v1, v128.load(x + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(v2, v128.load(x + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(v3, v128.load(x + o, 48)));
    m = keep(m);
  }
  return f16Tail(scaled, w, x, n, i, a0, a1, a2, a3);
}

/** dot_f16's (and dot2_f16's) 4-wide and scalar tails from column i, then the accumulators' sum (dot_f32's order). */
@inline function f16Tail(scaled: bool, w: usize, x: usize, n: i32, i: i32, a0: v128, a1: v128, a2: v128, a3: v128): f32 {
  for (; i + 4 <= n; i += 4) {
    const v = v128.load16x4_s(w + (<usize>i << 1));
    const b = scaled ? v128.and(i32x4.shl(v, 13), i32x4.splat(0x8fffe000)) : f16x4_to_f32(v);
    a0 = f32x4.add(a0, f32x4.mul(b, v128.load(x + (<usize>i << 2))));
  }
  let s = hsum_f32(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; i < n; i++) {
    const h = <u32>load<u16>(w + (<usize>i << 1));
    const b = scaled ? reinterpret<f32>(((h & 0x7fff) << 13) | ((h & 0x8000) << 16)) : f16_to_f32(h);
    s += b * load<f32>(x + (<usize>i << 2));
  }
  return s;
}

/** dot_f16 (scaled) of two rows (w, w + ws) at once, each activation vector loaded once for both: each row's
 * products and accumulators are dot_f16's, so the same bits. Used for long rows (cols ≥ 4096), where x
 * (16+ KiB) no longer stays in L1 beside the weight stream and one load per row pair halves its traffic
 * (1.15× at 8192 columns; at 2048 columns two rows at once were 0.65×: docs/kernels.md). Half a 16-column
 * step at a time, so 8 accumulators, 2 activation vectors and the mask fit the 16 xmm registers. */
@inline function dot2_f16(w: usize, ws: usize, x: usize, n: i32, out: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  let m = i16x8.splat(<i16>(0x8fff | (n >> 31)));
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const p = w + (<usize>i << 1);
    const o = x + (<usize>i << 2);
    let x0 = v128.load(o), x1 = v128.load(o, 16);
    let h = v128.load(p);
    let u = v128.and(i16x8.shr_s(h, 3), m), d = i16x8.shl(h, 13);
    a0 = f32x4.add(a0, f32x4.mul(i16x8.shuffle(d, u, 0, 8, 1, 9, 2, 10, 3, 11), x0));
    a1 = f32x4.add(a1, f32x4.mul(i16x8.shuffle(d, u, 4, 12, 5, 13, 6, 14, 7, 15), x1));
    h = v128.load(p + ws);
    u = v128.and(i16x8.shr_s(h, 3), m); d = i16x8.shl(h, 13);
    b0 = f32x4.add(b0, f32x4.mul(i16x8.shuffle(d, u, 0, 8, 1, 9, 2, 10, 3, 11), x0));
    b1 = f32x4.add(b1, f32x4.mul(i16x8.shuffle(d, u, 4, 12, 5, 13, 6, 14, 7, 15), x1));
    x0 = v128.load(o, 32); x1 = v128.load(o, 48);
    h = v128.load(p, 16);
    u = v128.and(i16x8.shr_s(h, 3), m); d = i16x8.shl(h, 13);
    a2 = f32x4.add(a2, f32x4.mul(i16x8.shuffle(d, u, 0, 8, 1, 9, 2, 10, 3, 11), x0));
    a3 = f32x4.add(a3, f32x4.mul(i16x8.shuffle(d, u, 4, 12, 5, 13, 6, 14, 7, 15), x1));
    h = v128.load(p + ws, 16);
    u = v128.and(i16x8.shr_s(h, 3), m); d = i16x8.shl(h, 13);
    b2 = f32x4.add(b2, f32x4.mul(i16x8.shuffle(d, u, 0, 8, 1, 9, 2, 10, 3, 11), x0));
    b3 = f32x4.add(b3, f32x4.mul(i16x8.shuffle(d, u, 4, 12, 5, 13, 6, 14, 7, 15), x1));
    m = keep(m);
  }
  store<f32>(out, f16Tail(true, w, x, n, i, a0, a1, a2, a3));
  store<f32>(out + 4, f16Tail(true, w + ws, x, n, i, b0, b1, b2, b3));
}

/** xs = x·2^112 for the n f32 values at x (n a multiple of 4 or not); returns 1 when that is exact for
 * every value (all |x| < 2^16, or NaN), else 0 and dot_f16 must take x unscaled. */
export function scale_act_f16(x: usize, n: i32, xs: usize): i32 {
  const k = f32x4.splat(reinterpret<f32>(0x77800000));
  const lim = f32x4.splat(65536.0);
  let big = i32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    big = v128.or(big, f32x4.ge(f32x4.abs(v), lim));
    v128.store(xs + (<usize>i << 2), f32x4.mul(v, k));
  }
  let ok = !v128.any_true(big);
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (abs(v) >= 65536.0) ok = false;
    store<f32>(xs + (<usize>i << 2), v * reinterpret<f32>(0x77800000));
  }
  return ok ? 1 : 0;
}

// ---------------------------------------------------------------- dense prefill: register-blocked GEMM

/** acc + w·x per lane, a multiply and an add in both builds. Not relaxed_madd: whether it fuses is up to
 * the engine and the CPU (the spec allows either), so results would depend on the machine and differ
 * between the two builds — and calibration outputs (importance matrices, hence file bytes) must be the
 * same on every engine for a recipe to reproduce its file. Measured cost: the relaxed build's GEMM was
 * ~1.2× faster fused (docs/kernels.md). */
@inline function mac(acc: v128, w: v128, x: v128): v128 {
  return f32x4.add(acc, f32x4.mul(w, x));
}

/** 4 weights of a row from column c (f32, or f16 bits converted in registers) as f32x4. */
@inline function wvec(f16: bool, p: usize, c: usize): v128 {
  if (f16) return f16x4_to_f32(v128.load16x4_s(p + (c << 1)));
  return v128.load(p + (c << 2));
}

/** The last m (1..3) weights of a row from column c, zero in the lanes above (never reads past them). */
@inline function wpart(f16: bool, p: usize, c: usize, m: i32): v128 {
  if (f16) {
    const q = p + (c << 1);
    let v = i32x4.replace_lane(i32x4.splat(0), 0, <i32>load<i16>(q));
    if (m > 1) v = i32x4.replace_lane(v, 1, <i32>load<i16>(q, 2));
    if (m > 2) v = i32x4.replace_lane(v, 2, <i32>load<i16>(q, 4));
    return f16x4_to_f32(v);
  }
  return xpart(p, c, m);
}

/** The last m (1..3) activations of a row from column c, zero above. */
@inline function xpart(p: usize, c: usize, m: i32): v128 {
  const q = p + (c << 2);
  let v = f32x4.replace_lane(f32x4.splat(0), 0, load<f32>(q));
  if (m > 1) v = f32x4.replace_lane(v, 1, load<f32>(q, 4));
  if (m > 2) v = f32x4.replace_lane(v, 2, load<f32>(q, 8));
  return v;
}


/** One token's outputs of an R-row tile: rows r…r+R−1 are consecutive floats at o. `add`: a later
 * column block adds to what the earlier ones stored. */
@inline function storeRows(R: i32, o: usize, add: bool, a0: v128, a1: v128, a2: v128, a3: v128): void {
  if (R == 4) {
    let v = reduce4f(a0, a1, a2, a3);
    if (add) v = f32x4.add(v128.load(o), v);
    v128.store(o, v);
    return;
  }
  store<f32>(o, add ? load<f32>(o) + hsum_f32_02(a0) : hsum_f32_02(a0));
  if (R > 1) store<f32>(o, add ? load<f32>(o, 4) + hsum_f32_02(a1) : hsum_f32_02(a1), 4);
  if (R > 2) store<f32>(o, add ? load<f32>(o, 8) + hsum_f32_02(a2) : hsum_f32_02(a2), 8);
}

/** Micro-kernel: R rows × T tokens (R, T ≤ 4, compile-time constants at every call) over k columns.
 * Accumulator a<r><t> holds 4 partial sums (lane = column mod 4) of row r · token t; each 4-column step
 * loads R weight vectors and T activation vectors and does R·T multiply-adds, so a weight is loaded once
 * per T tokens and an activation once per R rows (the row dots load both for every multiply-add).
 * w: row 0 at column 0 of the block, rows ws bytes apart; x: token 0, tokens xs bytes apart; out: the
 * token-0 output of row 0, tokens os bytes apart. The last k mod 4 columns run as one zero-padded step.
 * The loop steps 4 columns: TurboFan unrolls it 4× by itself, keeping each step's loads next to their
 * multiply-adds, while a hand-unrolled 16-column body had all its loads hoisted to the top and spilled. */
@inline function gemmTile(f16: bool, R: i32, T: i32, w: usize, ws: usize, x: usize, xs: usize, k: i32, out: usize, os: usize, add: bool): void {
  const z = f32x4.splat(0);
  let a00 = z, a01 = z, a02 = z, a03 = z;
  let a10 = z, a11 = z, a12 = z, a13 = z;
  let a20 = z, a21 = z, a22 = z, a23 = z;
  let a30 = z, a31 = z, a32 = z, a33 = z;
  const w1 = w + ws, w2 = w + 2 * ws, w3 = w + 3 * ws;
  const x1 = x + xs, x2 = x + 2 * xs, x3 = x + 3 * xs;
  let c = 0;
  for (; c + 4 <= k; c += 4) {
    const uc = <usize>c;
    const v0 = wvec(f16, w, uc);
    const v1 = R > 1 ? wvec(f16, w1, uc) : z;
    const v2 = R > 2 ? wvec(f16, w2, uc) : z;
    const v3 = R > 3 ? wvec(f16, w3, uc) : z;
    const u0 = v128.load(x + (uc << 2));
    a00 = mac(a00, v0, u0);
    if (R > 1) a10 = mac(a10, v1, u0);
    if (R > 2) a20 = mac(a20, v2, u0);
    if (R > 3) a30 = mac(a30, v3, u0);
    if (T > 1) {
      const u1 = v128.load(x1 + (uc << 2));
      a01 = mac(a01, v0, u1);
      if (R > 1) a11 = mac(a11, v1, u1);
      if (R > 2) a21 = mac(a21, v2, u1);
      if (R > 3) a31 = mac(a31, v3, u1);
    }
    if (T > 2) {
      const u2 = v128.load(x2 + (uc << 2));
      a02 = mac(a02, v0, u2);
      if (R > 1) a12 = mac(a12, v1, u2);
      if (R > 2) a22 = mac(a22, v2, u2);
      if (R > 3) a32 = mac(a32, v3, u2);
    }
    if (T > 3) {
      const u3 = v128.load(x3 + (uc << 2));
      a03 = mac(a03, v0, u3);
      if (R > 1) a13 = mac(a13, v1, u3);
      if (R > 2) a23 = mac(a23, v2, u3);
      if (R > 3) a33 = mac(a33, v3, u3);
    }
  }
  if (c < k) {
    const uc = <usize>c, m = k - c;
    const v0 = wpart(f16, w, uc, m);
    const v1 = R > 1 ? wpart(f16, w1, uc, m) : z;
    const v2 = R > 2 ? wpart(f16, w2, uc, m) : z;
    const v3 = R > 3 ? wpart(f16, w3, uc, m) : z;
    const u0 = xpart(x, uc, m);
    a00 = mac(a00, v0, u0);
    if (R > 1) a10 = mac(a10, v1, u0);
    if (R > 2) a20 = mac(a20, v2, u0);
    if (R > 3) a30 = mac(a30, v3, u0);
    if (T > 1) {
      const u1 = xpart(x1, uc, m);
      a01 = mac(a01, v0, u1);
      if (R > 1) a11 = mac(a11, v1, u1);
      if (R > 2) a21 = mac(a21, v2, u1);
      if (R > 3) a31 = mac(a31, v3, u1);
    }
    if (T > 2) {
      const u2 = xpart(x2, uc, m);
      a02 = mac(a02, v0, u2);
      if (R > 1) a12 = mac(a12, v1, u2);
      if (R > 2) a22 = mac(a22, v2, u2);
      if (R > 3) a32 = mac(a32, v3, u2);
    }
    if (T > 3) {
      const u3 = xpart(x3, uc, m);
      a03 = mac(a03, v0, u3);
      if (R > 1) a13 = mac(a13, v1, u3);
      if (R > 2) a23 = mac(a23, v2, u3);
      if (R > 3) a33 = mac(a33, v3, u3);
    }
  }
  storeRows(R, out, add, a00, a10, a20, a30);
  if (T > 1) storeRows(R, out + os, add, a01, a11, a21, a31);
  if (T > 2) storeRows(R, out + 2 * os, add, a02, a12, a22, a32);
  if (T > 3) storeRows(R, out + 3 * os, add, a03, a13, a23, a33);
}

/** Prefill of f32 / f16 weights, rows [r0, r1) × all n tokens: OUT(n, rows) = X(n, cols)·Wᵀ, W read in
 * place, (rows, cols) row-major. Tokens in blocks of GEMM_TB; inside a block, tiles of RM rows × TM
 * tokens, every token tile of the block on one row tile before the next, so the row tile's weights
 * (RM × cols: 32 KiB at 2048 f32 columns) are read from RAM once per token block and then from L2/L1,
 * while the block's activations (GEMM_TB × cols) are reused by every row tile from L2 (L3 for very wide
 * rows). Columns run in blocks of GEMM_KC only for rows wider than that, so a row tile stays within L2;
 * later column blocks add to the outputs. Rows left over run as 1 × TM tiles, tokens left over as RM × 1.
 * The pool may start a chunk at any row: tiles start at r0, so a thread writes only its own rows. */
@inline function gemmRows(f16: bool, RM: i32, TM: i32, w0: usize, rows: i32, cols: i32, xf: usize, out: usize, n: i32, r0: i32, r1: i32): void {
  const ws = <usize>cols << (f16 ? 1 : 2);
  const xs = <usize>cols << 2;
  const os = <usize>rows << 2;
  for (let k0 = 0; k0 < cols; k0 += GEMM_KC) {
    const k = min(GEMM_KC, cols - k0);
    const add = k0 > 0;
    const wk = w0 + (<usize>k0 << (f16 ? 1 : 2));
    const xk = xf + (<usize>k0 << 2);
    for (let t0 = 0; t0 < n; t0 += GEMM_TB) {
      const t1 = min(n, t0 + GEMM_TB);
      let r = r0;
      for (; r + RM <= r1; r += RM) {
        const wr = wk + <usize>r * ws;
        let t = t0;
        for (; t + TM <= t1; t += TM) gemmTile(f16, RM, TM, wr, ws, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + <usize>r) * 4, os, add);
        for (; t < t1; t++) gemmTile(f16, RM, 1, wr, ws, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + <usize>r) * 4, os, add);
      }
      for (; r < r1; r++) {
        const wr = wk + <usize>r * ws;
        let t = t0;
        for (; t + TM <= t1; t += TM) gemmTile(f16, 1, TM, wr, ws, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + <usize>r) * 4, os, add);
        for (; t < t1; t++) gemmTile(f16, 1, 1, wr, ws, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + <usize>r) * 4, os, add);
      }
    }
  }
}

/** f16 rows → f32, nrows rows of k values: row i from w + i·ws (binary16 bits) to p + i·k·4. Exact. */
@inline function panelF16(w: usize, ws: usize, nrows: i32, k: i32, p: usize): void {
  const uk = <usize>k;
  for (let i = 0; i < nrows; i++) {
    const src = w + <usize>i * ws, dst = p + <usize>i * uk * 4;
    let c: usize = 0;
    for (; c + 8 <= uk; c += 8) {
      const h = v128.load(src + (c << 1));
      v128.store(dst + (c << 2), f16x4_to_f32(i32x4.extend_low_i16x8_s(h)));
      v128.store(dst + (c << 2), f16x4_to_f32(i32x4.extend_high_i16x8_s(h)), 16);
    }
    for (; c < uk; c++) store<f32>(dst + (c << 2), f16_to_f32(<u32>load<u16>(src + (c << 1))));
  }
}

/** Prefill of f16 weights through an f32 panel: the loops of gemmRows, but each row tile's (RM = F32_R rows)
 * weights of a column block are converted to f32 once per token block into the panel p (RM × GEMM_KC f32, this
 * call's scratch slot) and the f32 RM × TM tile runs on the panel: the conversion is paid once per GEMM_TB tokens
 * instead of once per 3 (gemmRows' f16 2 × 3 tile). The conversion is exact and the f32 tile sums every output in
 * the same order as gemmRows (any tile shape: an output's 4 lanes run over the columns in order, reduced as
 * (l0 + l2) + (l1 + l3)), so the bits are gemmRows(true, …)'s and the f32 GEMM's on the converted weights. */
@inline function gemmRowsF16Panel(w0: usize, rows: i32, cols: i32, xf: usize, out: usize, n: i32, r0: i32, r1: i32, p: usize): void {
  const RM = F32_R, TM = F32_T;
  const ws = <usize>cols << 1;
  const xs = <usize>cols << 2;
  const os = <usize>rows << 2;
  for (let k0 = 0; k0 < cols; k0 += GEMM_KC) {
    const k = min(GEMM_KC, cols - k0);
    const ps = <usize>k << 2;
    const add = k0 > 0;
    const wk = w0 + (<usize>k0 << 1);
    const xk = xf + (<usize>k0 << 2);
    for (let t0 = 0; t0 < n; t0 += GEMM_TB) {
      const t1 = min(n, t0 + GEMM_TB);
      let r = r0;
      for (; r + RM <= r1; r += RM) {
        panelF16(wk + <usize>r * ws, ws, RM, k, p);
        let t = t0;
        for (; t + TM <= t1; t += TM) gemmTile(false, RM, TM, p, ps, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + <usize>r) * 4, os, add);
        for (; t < t1; t++) gemmTile(false, RM, 1, p, ps, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + <usize>r) * 4, os, add);
      }
      if (r < r1) {
        panelF16(wk + <usize>r * ws, ws, r1 - r, k, p);
        for (let i = 0; r + i < r1; i++) {
          const pr = p + <usize>i * ps, rr = <usize>(r + i);
          let t = t0;
          for (; t + TM <= t1; t += TM) gemmTile(false, 1, TM, pr, ps, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + rr) * 4, os, add);
          for (; t < t1; t++) gemmTile(false, 1, 1, pr, ps, xk + <usize>t * xs, xs, k, out + (<usize>t * <usize>rows + rr) * 4, os, add);
        }
      }
    }
  }
}

// Tile shapes. V8 (x64) allocates 15 xmm registers to wasm SIMD (xmm15 is its scratch), and TurboFan
// issues all loads of a loop body before the arithmetic, so a tile needs R·T accumulators + R weight +
// T activation vectors live at once. f32 4×2: 8 + 4 + 2 = 14 (+1 product temporary for mul + add in the
// SIMD128 build); 3×3 (15 + 1) spills in the SIMD128 build, 3×4 and 4×3 (19) in both. f16 also keeps
// its two conversion constants (mask, 2^112) in registers, so 4×2 spills an accumulator; 2×3
// (6 + 2 + 3 + 2 = 13) converts each weight vector once for 3 tokens and measured fastest of 4×2, 2×4,
// 3×3, 2×3, 3×2 (docs/kernels.md) of the tiles that convert in the loop. F16 prefill now runs the f32 tile
// on converted panels (gemmRowsF16Panel); the f16 2×3 tile serves n = 3 and jobs without panel scratch.
const F32_R = 4;
const F32_T = 2;
const F16_R = 2;
const F16_T = 3;
// Blocking: column blocks of 512 measured 13–24% slower than whole rows at 2048 and 8192 columns (short
// runs restart the hardware prefetcher, and the tile is not bound by L2/L3 bandwidth), 2048 and 4096 the
// same as whole rows; token blocks of 32–128 were equal, 256 slower at 8192 columns (an 8 MiB block).
const GEMM_KC = 4096;
const GEMM_TB = 64;

// ---------------------------------------------------------------- int8 codes × Q8 activations

/** Σ of 32 int8 codes × 32 i16-widened activation codes, as 4 i32 lanes (load8x8_s + dot_i16x8_s). */
@inline function i8dot32(q: usize, x16: usize): v128 {
  const p0 = i32x4.dot_i16x8_s(v128.load8x8_s(q), v128.load(x16));
  const p1 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 8), v128.load(x16, 16));
  const p2 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 16), v128.load(x16, 32));
  const p3 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 24), v128.load(x16, 48));
  return i32x4.add(i32x4.add(p0, p1), i32x4.add(p2, p3));
}

@inline function i8dot16(q: usize, x16: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(q), v128.load(x16)), i32x4.dot_i16x8_s(v128.load8x8_s(q, 8), v128.load(x16, 16)));
}

/** K_I8S32: Σ_b s_b·xd_b·(q_b·x_b). Two blocks per step in two accumulators. */
@inline function dot_i8s32(q: usize, s: usize, x16: usize, xd: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let b = 0;
  for (; b + 2 <= nb; b += 2) {
    const i0 = i8dot32(q, x16);
    const i1 = i8dot32(q + 32, x16 + 64);
    const o = <usize>b << 2;
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i0), f32x4.splat(load<f32>(s + o) * load<f32>(xd + o))));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(i1), f32x4.splat(load<f32>(s + o, 4) * load<f32>(xd + o, 4))));
    q += 64;
    x16 += 128;
  }
  if (b < nb) {
    const o = <usize>b << 2;
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i8dot32(q, x16)), f32x4.splat(load<f32>(s + o) * load<f32>(xd + o))));
  }
  return hsum_f32(f32x4.add(a0, a1));
}

/** K_I8A32: Σ_b xd_b·(s_b·(q_b·x_b) − m_b·Σx_b). */
@inline function dot_i8a32(q: usize, s: usize, m: usize, x16: usize, xd: usize, xs: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0);
  let mins: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const o = <usize>b << 2;
    const d = load<f32>(xd + o);
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i8dot32(q, x16)), f32x4.splat(load<f32>(s + o) * d)));
    const sum = load<i32>(xs + (o << 1)) + load<i32>(xs + (o << 1), 4);
    mins += load<f32>(m + o) * d * <f32>sum;
    q += 32;
    x16 += 64;
  }
  return hsum_f32(a0) - mins;
}

/** K_I8S16: one scale per 16 codes. */
@inline function dot_i8s16(q: usize, s: usize, x16: usize, xd: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const d = load<f32>(xd + (<usize>b << 2));
    const o = <usize>b << 3;
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i8dot16(q, x16)), f32x4.splat(load<f32>(s + o) * d)));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(i8dot16(q + 16, x16 + 32)), f32x4.splat(load<f32>(s + o, 4) * d)));
    q += 32;
    x16 += 64;
  }
  return hsum_f32(f32x4.add(a0, a1));
}

/** K_I8A16: scale and min per 16 codes. */
@inline function dot_i8a16(q: usize, s: usize, m: usize, x16: usize, xd: usize, xs: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let mins: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const d = load<f32>(xd + (<usize>b << 2));
    const o = <usize>b << 3;
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i8dot16(q, x16)), f32x4.splat(load<f32>(s + o) * d)));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(i8dot16(q + 16, x16 + 32)), f32x4.splat(load<f32>(s + o, 4) * d)));
    mins += d * (load<f32>(m + o) * <f32>load<i32>(xs + o) + load<f32>(m + o, 4) * <f32>load<i32>(xs + o, 4));
    q += 32;
    x16 += 64;
  }
  return hsum_f32(f32x4.add(a0, a1)) - mins;
}

// ---------------------------------------------------------------- nibbles × Q8 activations

/** Σ over one 32-block of unsigned nibbles (0..15) × activation codes, as 4 i32 lanes.
 * SIMD128 build, "r16" order: the 16 bytes are 8 u16 lanes, lane j holds weights j, 8+j, 16+j, 24+j in
 * nibbles 0..3, so and/shr give i16 lanes directly (6 ops for 32 weights, no extends).
 * Relaxed build, GGUF order: byte j = weight j (low nibble) | weight j+16 (high nibble), int8 activations;
 * i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw) does 16 MACs; nibbles are valid i7 operands. The
 * i32x4.relaxed_dot_i8x16_i7x16_add_s form is avoided: V8 11.3's Liftoff miscompiles it (kernels.md). */
@inline function nibdot32(q: usize, x16: usize, x8: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const v = v128.load(q);
    const lo = v128.and(v, i8x16.splat(0x0f));
    const hi = hi4(v);
    const d = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8), lo), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8, 16), hi));
    return i32x4.extadd_pairwise_i16x8_s(d);
  } else {
    const v = v128.load(q);
    const m = i16x8.splat(0x0f);
    const p0 = i32x4.dot_i16x8_s(v128.and(v, m), v128.load(x16));
    const p1 = i32x4.dot_i16x8_s(v128.and(i16x8.shr_u(v, 4), m), v128.load(x16, 16));
    const p2 = i32x4.dot_i16x8_s(v128.and(i16x8.shr_u(v, 8), m), v128.load(x16, 32));
    const p3 = i32x4.dot_i16x8_s(i16x8.shr_u(v, 12), v128.load(x16, 48));
    return i32x4.add(i32x4.add(p0, p1), i32x4.add(p2, p3));
  }
}

/** K_Q4_0: Σ_b d_b·xd_b·(q_b·x_b − 8·Σx_b); the −8 offset folds into the activation block sum. */
@inline function dot_q4_0(q: usize, s: usize, x16: usize, x8: usize, xd: usize, xs: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let b = 0;
  for (; b + 2 <= nb; b += 2) {
    const o = <usize>b << 2;
    // 8·Σx spread as 2·Σx over the 4 lanes (the lanes are summed at the end anyway)
    const c0 = (load<i32>(xs + (o << 1)) + load<i32>(xs + (o << 1), 4)) << 1;
    const c1 = (load<i32>(xs + (o << 1), 8) + load<i32>(xs + (o << 1), 12)) << 1;
    const i0 = i32x4.sub(nibdot32(q, x16, x8), i32x4.splat(c0));
    const i1 = i32x4.sub(nibdot32(q + 16, x16 + 64, x8 + 32), i32x4.splat(c1));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i0), f32x4.splat(load<f32>(s + o) * load<f32>(xd + o))));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(i1), f32x4.splat(load<f32>(s + o, 4) * load<f32>(xd + o, 4))));
    q += 32;
    x16 += 128;
    x8 += 64;
  }
  if (b < nb) {
    const o = <usize>b << 2;
    const c0 = (load<i32>(xs + (o << 1)) + load<i32>(xs + (o << 1), 4)) << 1;
    const i0 = i32x4.sub(nibdot32(q, x16, x8), i32x4.splat(c0));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i0), f32x4.splat(load<f32>(s + o) * load<f32>(xd + o))));
  }
  return hsum_f32(f32x4.add(a0, a1));
}

/** K_N4A32: Σ_b xd_b·(s_b·(q_b·x_b) − m_b·Σx_b). */
@inline function dot_n4a32(q: usize, s: usize, m: usize, x16: usize, x8: usize, xd: usize, xs: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0);
  let mins: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const o = <usize>b << 2;
    const d = load<f32>(xd + o);
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(nibdot32(q, x16, x8)), f32x4.splat(load<f32>(s + o) * d)));
    const sum = load<i32>(xs + (o << 1)) + load<i32>(xs + (o << 1), 4);
    mins += load<f32>(m + o) * d * <f32>sum;
    q += 16;
    x16 += 64;
    x8 += 32;
  }
  return hsum_f32(a0) - mins;
}

// ---------------------------------------------------------------- native ggml blocks × Q8 activations

/** binary16 at p → f32 through the host's 65536-entry table at `lut` (every f16 bit pattern's f32 value,
 * Inf/NaN included: exact). Two scalar loads; converting with integer or float ops per block measured
 * 1.5–2.5× slower on V8 11.3 in these kernels. */
@inline function f16s(p: usize, lut: usize): f32 {
  return load<f32>(lut + (<usize>load<u16>(p) << 2));
}

/** 16 unsigned bytes (0..127) × 16 activation codes → 4 i32 lanes. Relaxed: int8 activations and
 * i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw); SIMD128: zero-extend to i16 and i32x4.dot_i16x8_s. */
@inline function udot16(u: v128, x16: usize, x8: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8), u));
  } else {
    return i32x4.add(
      i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(u), v128.load(x16)),
      i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(u), v128.load(x16, 16)),
    );
  }
}

/** Two 16-byte halves of unsigned codes (elements 0..15, 16..31) × 32 activation codes. Relaxed: the
 * two i16 partial dots are added before widening (|lane| ≤ 2·2·63·127 < 2^15). */
@inline function udot32(u0: v128, u1: v128, x16: usize, x8: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.extadd_pairwise_i16x8_s(i16x8.add(
      i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8), u0),
      i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8, 16), u1),
    ));
  } else {
    return i32x4.add(udot16(u0, x16, x8), udot16(u1, x16 + 32, x8 + 16));
  }
}

/** K_Q8_0N: block_q8_0 rows in place; Σ_b f16(d_b)·xd_b·(q_b·x_b). */
@inline function dot_q8_0n(q: usize, lut: usize, x16: usize, xd: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let b = 0;
  for (; b + 2 <= nb; b += 2) {
    const o = <usize>b << 2;
    const i0 = i8dot32(q + 2, x16);
    const i1 = i8dot32(q + 36, x16 + 64);
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i0), f32x4.splat(f16s(q, lut) * load<f32>(xd + o))));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(i1), f32x4.splat(f16s(q + 34, lut) * load<f32>(xd + o, 4))));
    q += 68;
    x16 += 128;
  }
  if (b < nb) {
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i8dot32(q + 2, x16)), f32x4.splat(f16s(q, lut) * load<f32>(xd + (<usize>b << 2)))));
  }
  return hsum_f32(f32x4.add(a0, a1));
}

/** K_Q4_0N: block_q4_0 rows in place; Σ_b d_b·xd_b·(q_b·x_b − 8·Σx_b). Byte j holds weight j (low
 * nibble) and weight j+16 (high nibble). */
@inline function dot_q4_0n(q: usize, lut: usize, x16: usize, x8: usize, xd: usize, xs: usize, nb: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const m = i8x16.splat(0x0f);
  let b = 0;
  for (; b + 2 <= nb; b += 2) {
    const o = <usize>b << 2;
    const v0 = v128.load(q + 2);
    const v1 = v128.load(q + 20);
    const c0 = (load<i32>(xs + (o << 1)) + load<i32>(xs + (o << 1), 4)) << 1;
    const c1 = (load<i32>(xs + (o << 1), 8) + load<i32>(xs + (o << 1), 12)) << 1;
    const i0 = i32x4.sub(udot32(v128.and(v0, m), hi4(v0), x16, x8), i32x4.splat(c0));
    const i1 = i32x4.sub(udot32(v128.and(v1, m), hi4(v1), x16 + 64, x8 + 32), i32x4.splat(c1));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i0), f32x4.splat(f16s(q, lut) * load<f32>(xd + o))));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(i1), f32x4.splat(f16s(q + 18, lut) * load<f32>(xd + o, 4))));
    q += 36;
    x16 += 128;
    x8 += 64;
  }
  if (b < nb) {
    const o = <usize>b << 2;
    const v0 = v128.load(q + 2);
    const c0 = (load<i32>(xs + (o << 1)) + load<i32>(xs + (o << 1), 4)) << 1;
    const i0 = i32x4.sub(udot32(v128.and(v0, m), hi4(v0), x16, x8), i32x4.splat(c0));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i0), f32x4.splat(f16s(q, lut) * load<f32>(xd + o))));
  }
  return hsum_f32(f32x4.add(a0, a1));
}

/** out[0], out[os], out[2·os], out[3·os] = the lane sums of a0 … a3 */
@inline function store4(out: usize, os: usize, a0: v128, a1: v128, a2: v128, a3: v128): void {
  store<f32>(out, hsum_f32(a0));
  store<f32>(out + os, hsum_f32(a1));
  store<f32>(out + 2 * os, hsum_f32(a2));
  store<f32>(out + 3 * os, hsum_f32(a3));
}

/** K_Q4_0X4: 4 rows whose blocks sit rs bytes apart, st bytes per block step (interleaved: rs 18,
 * st 72), one activation row; each block's activation codes, code sum and scale are loaded once for the
 * 4 rows. (Four separate row streams, rs = a row, measured 2.4× slower from RAM than the interleaved
 * single stream.) Writes out[0], out[os], … */
@inline function dot4_q4_0x(q: usize, rs: usize, st: usize, lut: usize, x16: usize, x8: usize, xd: usize, xs: usize, nb: i32, out: usize, os: usize): void {
  // the 4 rows' exact block sums reduced into one vector (lane = row), then tileTok's f32 step: the prefill
  // tiles (tile4xT_q4_0x) give the same bits
  let acc = f32x4.splat(0);
  const m = i8x16.splat(0x0f);
  for (let b = 0; b < nb; b++) {
    const v0 = v128.load(q + 2);
    const v1 = v128.load(q + rs + 2);
    const v2 = v128.load(q + 2 * rs + 2);
    const v3 = v128.load(q + 3 * rs + 2);
    let dv = f32x4.splat(f16s(q, lut));
    dv = f32x4.replace_lane(dv, 1, f16s(q + rs, lut));
    dv = f32x4.replace_lane(dv, 2, f16s(q + 2 * rs, lut));
    dv = f32x4.replace_lane(dv, 3, f16s(q + 3 * rs, lut));
    acc = tileTok(acc, v128.and(v0, m), hi4(v0), v128.and(v1, m), hi4(v1), v128.and(v2, m), hi4(v2), v128.and(v3, m), hi4(v3), dv, x16, x8, xd, xs);
    q += st;
    x16 += 64;
    x8 += 32;
    xd += 4;
    xs += 8;
  }
  storeRows4(out, os, acc);
}

/** Lane k of the result = the sum of s_k's four lanes (four rows' block sums side by side). */
@inline function reduce4(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** Relaxed build: udot32 before its widening, 8 i16 lanes of |lane| ≤ 2·2·15·127 = 7620. */
@inline function udot32w(u0: v128, u1: v128, x8: usize): v128 {
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8), u0), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8, 16), u1));
}

/** reduce4 of four rows' udot32w sums, widened late: two rows' i16 lane pairs are interleaved (punpck[lh]dq)
 * and added in i16 (|lane| ≤ 15240 < 2^15, so exact), then widened by one pairwise add per two rows —
 * 11 instructions instead of 4 widenings + reduce4's 9. Integer sums, so the same values. */
@inline function reduce4w(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7)));
  const b = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7)));
  // a = [row 0, row 1, row 0, row 1] partial sums, b the same for rows 2, 3
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** Prefill on K_Q4_0X4: 4 interleaved rows × 2 tokens per block step. Each block's nibbles are unpacked
 * once for both tokens; a token's 4 row sums are reduced into one vector (lane = row) before the float
 * work, so scaling by [d_0…d_3]·dx and accumulating cost one multiply-add per 4 rows. Writes rows
 * 4g…4g+3 of both tokens (out, out + os). */
@inline function tileTok(acc: v128, l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128, dv: v128, x16: usize, x8: usize, xd: usize, xs: usize): v128 {
  const r = ASC_FEATURE_RELAXED_SIMD
    ? reduce4w(udot32w(l0, h0, x8), udot32w(l1, h1, x8), udot32w(l2, h2, x8), udot32w(l3, h3, x8))
    : reduce4(udot32(l0, h0, x16, x8), udot32(l1, h1, x16, x8), udot32(l2, h2, x16, x8), udot32(l3, h3, x16, x8));
  const c = i32x4.splat((load<i32>(xs) + load<i32>(xs, 4)) << 3);
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(r, c)), f32x4.mul(dv, f32x4.splat(load<f32>(xd)))));
}

/** Prefill on K_Q4_0X4: 4 interleaved rows × TT tokens (2 or 4) per block step. Each block's nibbles are
 * unpacked once for the tokens; a token's 4 row sums are reduced into one vector (lane = row) before the
 * float work, so scaling by [d_0…d_3]·dx and accumulating cost one multiply-add per 4 rows. Writes rows
 * 4g…4g+3 of each token (out + j·os). */
@inline function tile4xT_q4_0x(tt: i32, q: usize, lut: usize, x16: usize, x8: usize, xd: usize, xs: usize, nb: i32, ucols: usize, unb: usize, out: usize, os: usize): void {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  const m = i8x16.splat(0x0f);
  const s16 = ucols * 2, sd = unb * 4, ss = unb * 8;
  for (let b = 0; b < nb; b++) {
    const v0 = v128.load(q + 2), v1 = v128.load(q + 20), v2 = v128.load(q + 38), v3 = v128.load(q + 56);
    const l0 = v128.and(v0, m), h0 = hi4(v0);
    const l1 = v128.and(v1, m), h1 = hi4(v1);
    const l2 = v128.and(v2, m), h2 = hi4(v2);
    const l3 = v128.and(v3, m), h3 = hi4(v3);
    let dv = f32x4.splat(f16s(q, lut));
    dv = f32x4.replace_lane(dv, 1, f16s(q + 18, lut));
    dv = f32x4.replace_lane(dv, 2, f16s(q + 36, lut));
    dv = f32x4.replace_lane(dv, 3, f16s(q + 54, lut));
    const ub = <usize>b;
    const a16 = x16 + ub * 64, a8 = x8 + ub * 32, ad = xd + ub * 4, as = xs + ub * 8;
    acc0 = tileTok(acc0, l0, h0, l1, h1, l2, h2, l3, h3, dv, a16, a8, ad, as);
    acc1 = tileTok(acc1, l0, h0, l1, h1, l2, h2, l3, h3, dv, a16 + s16, a8 + ucols, ad + sd, as + ss);
    if (tt == 4) {
      acc2 = tileTok(acc2, l0, h0, l1, h1, l2, h2, l3, h3, dv, a16 + 2 * s16, a8 + 2 * ucols, ad + 2 * sd, as + 2 * ss);
      acc3 = tileTok(acc3, l0, h0, l1, h1, l2, h2, l3, h3, dv, a16 + 3 * s16, a8 + 3 * ucols, ad + 3 * sd, as + 3 * ss);
    }
    q += 72;
  }
  storeTile(out, os, tt, acc0, acc1, acc2, acc3);
}

/** [f16(d) of the 4 interleaved rows whose blocks start at q + k·rs], lane k = row k */
@inline function dRows4(q: usize, rs: usize, lut: usize): v128 {
  let dv = f32x4.splat(f16s(q, lut));
  dv = f32x4.replace_lane(dv, 1, f16s(q + rs, lut));
  dv = f32x4.replace_lane(dv, 2, f16s(q + 2 * rs, lut));
  return f32x4.replace_lane(dv, 3, f16s(q + 3 * rs, lut));
}

/** K_Q8_0X4: 4 interleaved rows (block b of row k at b·136 + k·34), one activation row. Per block the 4 rows'
 * exact integer sums are reduced into one vector (lane = row) and cost one f32 step,
 * acc += f32(isum)·fr([d_0…d_3]·xd), the step of the prefill tile (tile4xT_q8_0x), so prefill and mat-vec
 * agree bit for bit. Writes out[k·os]. */
@inline function dot4_q8_0x(q: usize, lut: usize, x16: usize, xd: usize, nb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const r = reduce4(i8dot32(q + 2, x16), i8dot32(q + 36, x16), i8dot32(q + 70, x16), i8dot32(q + 104, x16));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(dRows4(q, 34, lut), f32x4.splat(load<f32>(xd)))));
    q += 136;
    x16 += 64;
    xd += 4;
  }
  storeRows4(out, os, acc);
}

/** dot4_q8_0x on two row groups at once (blocks at q and q + gs), each activation chunk loaded once for
 * the 8 rows: each group's integer block sums and f32 steps are dot4_q8_0x's, so the same bits. Used for
 * long rows (cols ≥ 4096), where x16 (16+ KiB) no longer stays in L1 beside a group's 34+ KiB weight
 * stream; one load per 8 rows halves its L2 traffic. Writes out[k·os] for the 8 rows. */
@inline function dot8_q8_0x(q: usize, gs: usize, lut: usize, x16: usize, xd: usize, nb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0), acd = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    let r0 = i32x4.splat(0), r1 = i32x4.splat(0), r2 = i32x4.splat(0), r3 = i32x4.splat(0);
    let s0 = i32x4.splat(0), s1 = i32x4.splat(0), s2 = i32x4.splat(0), s3 = i32x4.splat(0);
    const p = q + gs;
    for (let c: usize = 0; c < 32; c += 8) {
      const x = v128.load(x16 + (c << 1));
      r0 = madd(r0, v128.load8x8_s(q + 2 + c), x); r1 = madd(r1, v128.load8x8_s(q + 36 + c), x);
      r2 = madd(r2, v128.load8x8_s(q + 70 + c), x); r3 = madd(r3, v128.load8x8_s(q + 104 + c), x);
      s0 = madd(s0, v128.load8x8_s(p + 2 + c), x); s1 = madd(s1, v128.load8x8_s(p + 36 + c), x);
      s2 = madd(s2, v128.load8x8_s(p + 70 + c), x); s3 = madd(s3, v128.load8x8_s(p + 104 + c), x);
    }
    const dx = f32x4.splat(load<f32>(xd));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(reduce4(r0, r1, r2, r3)), f32x4.mul(dRows4(q, 34, lut), dx)));
    acd = f32x4.add(acd, f32x4.mul(f32x4.convert_i32x4_s(reduce4(s0, s1, s2, s3)), f32x4.mul(dRows4(p, 34, lut), dx)));
    q += 136;
    x16 += 64;
    xd += 4;
  }
  storeRows4(out, os, acc);
  storeRows4(out + 4 * os, os, acd);
}

/** acc + pmaddwd(w, x) */
@inline function madd(acc: v128, w: v128, x: v128): v128 {
  return i32x4.add(acc, i32x4.dot_i16x8_s(w, x));
}

/** One token's block step of the Q8_0 tile: dot4_q8_0x's f32 step on the 4 rows' i32 partial sums */
@inline function q8Step(acc: v128, r0: v128, r1: v128, r2: v128, r3: v128, dv: v128, xd: usize): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(reduce4(r0, r1, r2, r3)), f32x4.mul(dv, f32x4.splat(load<f32>(xd)))));
}

/** Prefill on K_Q8_0X4: 4 interleaved rows × TT tokens (2 or 4) per block step. Each 8-code chunk of a row is
 * sign-extended once and multiplied (i32x4.dot_i16x8_s) with the TT tokens' i16 activation codes, each token's
 * chunk loaded once for the 4 rows; the integer block sums are exact, and each token's f32 step is dot4_q8_0x's,
 * so every output equals the mat-vec's bit for bit. s16 / sd: bytes between two tokens' i16 codes / scales;
 * writes rows 4g…4g+3 of each token at out + j·os. */
@inline function tile4xT_q8_0x(tt: i32, q: usize, lut: usize, x16: usize, xd: usize, nb: i32, s16: usize, sd: usize, out: usize, os: usize): void {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    let r00 = i32x4.splat(0), r10 = i32x4.splat(0), r20 = i32x4.splat(0), r30 = i32x4.splat(0);
    let r01 = i32x4.splat(0), r11 = i32x4.splat(0), r21 = i32x4.splat(0), r31 = i32x4.splat(0);
    let r02 = i32x4.splat(0), r12 = i32x4.splat(0), r22 = i32x4.splat(0), r32 = i32x4.splat(0);
    let r03 = i32x4.splat(0), r13 = i32x4.splat(0), r23 = i32x4.splat(0), r33 = i32x4.splat(0);
    for (let c: usize = 0; c < 32; c += 8) {
      const w0 = v128.load8x8_s(q + 2 + c), w1 = v128.load8x8_s(q + 36 + c), w2 = v128.load8x8_s(q + 70 + c), w3 = v128.load8x8_s(q + 104 + c);
      const xa = x16 + (c << 1);
      const x0 = v128.load(xa);
      r00 = madd(r00, w0, x0); r10 = madd(r10, w1, x0); r20 = madd(r20, w2, x0); r30 = madd(r30, w3, x0);
      const x1 = v128.load(xa + s16);
      r01 = madd(r01, w0, x1); r11 = madd(r11, w1, x1); r21 = madd(r21, w2, x1); r31 = madd(r31, w3, x1);
      if (tt == 4) {
        const x2 = v128.load(xa + 2 * s16);
        r02 = madd(r02, w0, x2); r12 = madd(r12, w1, x2); r22 = madd(r22, w2, x2); r32 = madd(r32, w3, x2);
        const x3 = v128.load(xa + 3 * s16);
        r03 = madd(r03, w0, x3); r13 = madd(r13, w1, x3); r23 = madd(r23, w2, x3); r33 = madd(r33, w3, x3);
      }
    }
    const dv = dRows4(q, 34, lut);
    acc0 = q8Step(acc0, r00, r10, r20, r30, dv, xd);
    acc1 = q8Step(acc1, r01, r11, r21, r31, dv, xd + sd);
    if (tt == 4) {
      acc2 = q8Step(acc2, r02, r12, r22, r32, dv, xd + 2 * sd);
      acc3 = q8Step(acc3, r03, r13, r23, r33, dv, xd + 3 * sd);
    }
    q += 136;
    x16 += 64;
    xd += 4;
  }
  storeTile(out, os, tt, acc0, acc1, acc2, acc3);
}

/** Permutes `groups` groups of 4 rows of `rowBytes` (nb blocks of bs bytes) at p from row order to the
 * interleaved X4 order, in place, through a scratch of 4·rowBytes at tmp. */
export function interleave_rows4(p: usize, groups: i32, nb: i32, bs: i32, tmp: usize): void {
  const rowBytes = <usize>nb * <usize>bs;
  const ubs = <usize>bs;
  for (let g = 0; g < groups; g++) {
    const base = p + <usize>g * 4 * rowBytes;
    memory.copy(tmp, base, 4 * rowBytes);
    for (let b: usize = 0; b < <usize>nb; b++) {
      for (let k: usize = 0; k < 4; k++) memory.copy(base + (b * 4 + k) * ubs, tmp + k * rowBytes + b * ubs, ubs);
    }
  }
}

/** 4 unsigned bytes of a little-endian word → f32x4 (byte i in lane i). */
@inline function u8x4_f32(w: u32): v128 {
  return f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(i32x4.splat(<i32>w))));
}

/** Σx per 32 of 4 consecutive 32-blocks from the code sums per 16 at xs (8 i32) → i32x4. */
@inline function sums32x4(xs: usize): v128 {
  const a = v128.load(xs), b = v128.load(xs, 16);
  return i32x4.add(i32x4.shuffle(a, b, 0, 2, 4, 6), i32x4.shuffle(a, b, 1, 3, 5, 7));
}

/** 64 Q4_K weights (32 bytes of nibbles: sub-block 2k low, 2k+1 high) × activations, each sub-block's
 * integer sum times its factor (d·sc·xd), as f32 lanes. */
@inline function q4kPair(qs: usize, x16: usize, x8: usize, fa: v128, fb: v128): v128 {
  const mk = i8x16.splat(0x0f);
  const v0 = v128.load(qs);
  const v1 = v128.load(qs, 16);
  const ia = udot32(v128.and(v0, mk), v128.and(v1, mk), x16, x8);
  const ib = udot32(hi4(v0), hi4(v1), x16 + 64, x8 + 32);
  return f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(ia), fa), f32x4.mul(f32x4.convert_i32x4_s(ib), fb));
}

/** K_Q4_KN: block_q4_K rows in place (ggml-common.h: d f16 @0, dmin f16 @2, scales[12] @4, qs[128] @16).
 * Sub-block 2k = low nibbles of qs[32k..32k+31], 2k+1 = their high nibbles; its 6-bit (sc, m) pair
 * comes from ggml's get_scale_min_k4. w = (d·sc)·q − (dmin·m), as dequantize_row_q4_K. nsb = cols/256.
 * Per super-block the 8 factors d·sc·xd and the mins term Σ dmin·m·xd·Σx are formed 4 lanes at a time. */
@inline function dot_q4_kn(q: usize, lut: usize, x16: usize, x8: usize, xd: usize, xs: usize, nsb: i32): f32 {
  let acc = f32x4.splat(0), acc1 = f32x4.splat(0); // two add chains
  let accMin = f32x4.splat(0);
  for (let s = 0; s < nsb; s++) {
    const d = f32x4.splat(f16s(q, lut));
    const dmin = f32x4.splat(f16s(q + 2, lut));
    // the 12 scale bytes as three little-endian words: bytes 0–3, 4–7, 8–11
    const s0 = load<u32>(q + 4), s1 = load<u32>(q + 8), s2 = load<u32>(q + 12);
    // j < 4: sc = b[j] & 63, m = b[j+4] & 63;  j ≥ 4: sc = (b[j+4] & 15) | (b[j−4] >> 6) << 4, m = (b[j+4] >> 4) | (b[j] >> 6) << 4
    const scLo = s0 & 0x3f3f3f3f;
    const mLo = s1 & 0x3f3f3f3f;
    const scHi = (s2 & 0x0f0f0f0f) | ((s0 >> 2) & 0x30303030);
    const mHi = ((s2 >> 4) & 0x0f0f0f0f) | ((s1 >> 2) & 0x30303030);
    const xdLo = v128.load(xd), xdHi = v128.load(xd, 16);
    // factors of sub-blocks 0–3 and 4–7
    const fLo = f32x4.mul(f32x4.mul(d, u8x4_f32(scLo)), xdLo);
    const fHi = f32x4.mul(f32x4.mul(d, u8x4_f32(scHi)), xdHi);
    accMin = f32x4.add(accMin, f32x4.mul(dmin, f32x4.add(
      f32x4.mul(f32x4.mul(u8x4_f32(mLo), xdLo), f32x4.convert_i32x4_s(sums32x4(xs))),
      f32x4.mul(f32x4.mul(u8x4_f32(mHi), xdHi), f32x4.convert_i32x4_s(sums32x4(xs + 32))),
    )));
    const qs = q + 16;
    // sub-blocks (2k, 2k+1) take lanes (0,1), (2,3) of fLo for k = 0, 1, then of fHi: unrolled by hand so
    // every shuffle has constant lanes and nothing is selected at run time
    acc = f32x4.add(acc, q4kPair(qs, x16, x8, i32x4.shuffle(fLo, fLo, 0, 0, 0, 0), i32x4.shuffle(fLo, fLo, 1, 1, 1, 1)));
    acc1 = f32x4.add(acc1, q4kPair(qs + 32, x16 + 128, x8 + 64, i32x4.shuffle(fLo, fLo, 2, 2, 2, 2), i32x4.shuffle(fLo, fLo, 3, 3, 3, 3)));
    acc = f32x4.add(acc, q4kPair(qs + 64, x16 + 256, x8 + 128, i32x4.shuffle(fHi, fHi, 0, 0, 0, 0), i32x4.shuffle(fHi, fHi, 1, 1, 1, 1)));
    acc1 = f32x4.add(acc1, q4kPair(qs + 96, x16 + 384, x8 + 192, i32x4.shuffle(fHi, fHi, 2, 2, 2, 2), i32x4.shuffle(fHi, fHi, 3, 3, 3, 3)));
    q += 144;
    x16 += 512;
    x8 += 256;
    xd += 32;
    xs += 64;
  }
  return hsum_f32(f32x4.sub(f32x4.add(acc, acc1), accMin));
}

/** 16 codes (0..63) × 16 activation codes → i16x8 partial sums (each lane ≤ 2·2·63·127 < 2^15 in
 * magnitude). Relaxed: pmaddubsw on int8 activations; SIMD128: zero-extend, multiply in i16, add halves. */
@inline function q6part(u: v128, x16: usize, x8: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x8), u);
  } else {
    return i16x8.add(i16x8.mul(i16x8.extend_low_i8x16_u(u), v128.load(x16)), i16x8.mul(i16x8.extend_high_i8x16_u(u), v128.load(x16, 16)));
  }
}

/** K_Q6_KN: block_q6_K rows in place (ql[128] @0, qh[64] @128, int8 scales[16] @192, d f16 @208).
 * Per 128-element half n, l < 32: element l ← ql[l] low | qh[l] bits 0–1, l+32 ← ql[l+32] low | bits 2–3,
 * l+64 ← ql[l] high | bits 4–5, l+96 ← ql[l+32] high | bits 6–7; minus 32; one int8 scale per 16
 * (dequantize_row_q6_K). The group scale is applied in the integer domain with i32x4.dot_i16x8_s (as
 * ggml's AVX2 kernel does with madd), and the −32 offset once per half: Σ_g sc_g·Σx_g per 32-block. */
@inline function dot_q6_kn(q: usize, lut: usize, x16: usize, x8: usize, xd: usize, xs: usize, nsb: i32): f32 {
  let acc = f32x4.splat(0), acc1 = f32x4.splat(0);
  let accOff = f32x4.splat(0);
  const lo = i8x16.splat(0x0f);
  const hb = i8x16.splat(0x30);
  for (let s = 0; s < nsb; s++) {
    const d = f32x4.splat(f16s(q + 208, lut));
    for (let n = 0; n < 2; n++) {
      const ql = q + (<usize>n << 6);
      const qh = q + 128 + (<usize>n << 5);
      const e = <usize>n << 7; // first element of this half
      const sc = v128.load8x8_s(q + 192 + (<usize>n << 3)); // the half's 8 group scales as i16
      const dxd = f32x4.mul(d, v128.load(xd + (e >> 3))); // d·xd of its 4 blocks of 32
      // −32·Σ_g sc_g·Σx_g per block: the sums per 16 fit i16 (|Σ| ≤ 16·127)
      const sx = i16x8.narrow_i32x4_s(v128.load(xs + (e >> 2)), v128.load(xs + (e >> 2), 16));
      accOff = f32x4.add(accOff, f32x4.mul(f32x4.convert_i32x4_s(i32x4.shl(i32x4.dot_i16x8_s(sc, sx), 5)), dxd));
      const L0 = v128.load(ql), L1 = v128.load(ql, 16), L2 = v128.load(ql, 32), L3 = v128.load(ql, 48);
      const H0 = v128.load(qh), H1 = v128.load(qh, 16);
      const xa = x16 + (e << 1), xb = x8 + e;
      // 16-bit lane shifts, then a per-byte mask: bits never cross into the kept field of a neighbour byte
      const p0 = q6part(v128.or(v128.and(L0, lo), v128.and(i16x8.shl(H0, 4), hb)), xa, xb);
      const p1 = q6part(v128.or(v128.and(L1, lo), v128.and(i16x8.shl(H1, 4), hb)), xa + 32, xb + 16);
      const p2 = q6part(v128.or(v128.and(L2, lo), v128.and(i16x8.shl(H0, 2), hb)), xa + 64, xb + 32);
      const p3 = q6part(v128.or(v128.and(L3, lo), v128.and(i16x8.shl(H1, 2), hb)), xa + 96, xb + 48);
      const p4 = q6part(v128.or(v128.and(i16x8.shr_u(L0, 4), lo), v128.and(H0, hb)), xa + 128, xb + 64);
      const p5 = q6part(v128.or(v128.and(i16x8.shr_u(L1, 4), lo), v128.and(H1, hb)), xa + 160, xb + 80);
      const p6 = q6part(v128.or(v128.and(i16x8.shr_u(L2, 4), lo), v128.and(i16x8.shr_u(H0, 2), hb)), xa + 192, xb + 96);
      const p7 = q6part(v128.or(v128.and(i16x8.shr_u(L3, 4), lo), v128.and(i16x8.shr_u(H1, 2), hb)), xa + 224, xb + 112);
      const b0 = i32x4.add(i32x4.dot_i16x8_s(p0, i16x8.shuffle(sc, sc, 0, 0, 0, 0, 0, 0, 0, 0)), i32x4.dot_i16x8_s(p1, i16x8.shuffle(sc, sc, 1, 1, 1, 1, 1, 1, 1, 1)));
      const b1 = i32x4.add(i32x4.dot_i16x8_s(p2, i16x8.shuffle(sc, sc, 2, 2, 2, 2, 2, 2, 2, 2)), i32x4.dot_i16x8_s(p3, i16x8.shuffle(sc, sc, 3, 3, 3, 3, 3, 3, 3, 3)));
      const b2 = i32x4.add(i32x4.dot_i16x8_s(p4, i16x8.shuffle(sc, sc, 4, 4, 4, 4, 4, 4, 4, 4)), i32x4.dot_i16x8_s(p5, i16x8.shuffle(sc, sc, 5, 5, 5, 5, 5, 5, 5, 5)));
      const b3 = i32x4.add(i32x4.dot_i16x8_s(p6, i16x8.shuffle(sc, sc, 6, 6, 6, 6, 6, 6, 6, 6)), i32x4.dot_i16x8_s(p7, i16x8.shuffle(sc, sc, 7, 7, 7, 7, 7, 7, 7, 7)));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(b0), i32x4.shuffle(dxd, dxd, 0, 0, 0, 0)));
      acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(b1), i32x4.shuffle(dxd, dxd, 1, 1, 1, 1)));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(b2), i32x4.shuffle(dxd, dxd, 2, 2, 2, 2)));
      acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(b3), i32x4.shuffle(dxd, dxd, 3, 3, 3, 3)));
    }
    q += 210;
    x16 += 512;
    x8 += 256;
    xd += 32;
    xs += 64;
  }
  return hsum_f32(f32x4.sub(f32x4.add(acc, acc1), accOff));
}

/** Number of binary16 values in [p, p + 2n) whose exponent is all ones (Inf or NaN). */
export function f16_count_special(p: usize, n: i32): i32 {
  const e = i16x8.splat(0x7c00);
  let cnt = i16x8.splat(0);
  let total = 0;
  let i = 0;
  while (i + 8 <= n) {
    // at most 4096 steps per inner run so the i16 lane counters cannot overflow
    const stop = min(n & ~7, i + 8 * 4096);
    for (; i < stop; i += 8) cnt = i16x8.sub(cnt, i16x8.eq(v128.and(v128.load(p + (<usize>i << 1)), e), e));
    total += hsum_i32(i32x4.extadd_pairwise_i16x8_u(cnt));
    cnt = i16x8.splat(0);
  }
  for (; i < n; i++) if ((load<u16>(p + (<usize>i << 1)) & 0x7c00) == 0x7c00) total++;
  return total;
}

/** Number of f32 values in [p, p + 4n) whose exponent is all ones (Inf or NaN): the encoders send such rows
 * to the TypeScript codecs, because the SIMD quantizers' saturating conversions differ from C's casts there. */
export function f32_count_special(p: usize, n: i32): i32 {
  const e = i32x4.splat(0x7f800000);
  let cnt = i32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) cnt = i32x4.sub(cnt, i32x4.eq(v128.and(v128.load(p + (<usize>i << 2)), e), e));
  let total = hsum_i32(cnt);
  for (; i < n; i++) if ((load<u32>(p + (<usize>i << 2)) & 0x7f800000) == 0x7f800000) total++;
  return total;
}

// ---------------------------------------------------------------- job runner

/** Runs rows [r0, r1) (row groups of 4 for the interleaved kinds) of the job described at `desc` (see
 * abi.ts) for all its activation rows, `kind` a compile-time constant at every call below, so each
 * run_k* entry holds one kernel's loop only. */
@inline function runRows(kind: i32, desc: usize, r0: i32, r1: i32): void {
  const rows = dint(desc, D_ROWS);
  const cols = dint(desc, D_COLS);
  const w0 = dptr(desc, D_W0);
  const w1 = dptr(desc, D_W1);
  const w2 = dptr(desc, D_W2);
  const xf = dptr(desc, D_XF);
  const x16 = dptr(desc, D_X16);
  const x8 = dptr(desc, D_X8);
  const xd = dptr(desc, D_XD);
  const xs = dptr(desc, D_XS);
  const out = dptr(desc, D_OUT);
  const n = dint(desc, D_N);
  const ucols = <usize>cols;
  const nb = cols >> 5;
  const unb = <usize>nb;
  if (kind == K_Q4_0X4 || kind == K_Q8_0X4) {
    // r0, r1 count groups of 4 interleaved rows; the tokens run in blocks whose activations stay in L2
    // (prefillTokenBlock), every token of a block on a group while the group is in L1
    const gb = unb * (kind == K_Q8_0X4 ? 136 : 72);
    // Q8_0 reads i16 codes; Q4_0 int8 codes on the relaxed build (udot32)
    const tb = prefillTokenBlock(cols, kind == K_Q4_0X4 && ASC_FEATURE_RELAXED_SIMD ? 1 : 2);
    for (let t0 = 0; t0 < n; t0 += tb) {
    const t1 = min(n, t0 + tb);
    for (let g = r0; g < r1; g++) {
      const q = w0 + <usize>g * gb;
      let t = t0;
      if (kind == K_Q8_0X4) {
        // prefill: Q8_0_TT tokens per pass over the group's blocks (then two, then one)
        for (; t + Q8_0_TT <= t1; t += Q8_0_TT) {
          const ut = <usize>t;
          tile4xT_q8_0x(Q8_0_TT, q, w1, x16 + ut * ucols * 2, xd + ut * unb * 4, nb, ucols * 2, unb * 4,
            out + (ut * <usize>rows + (<usize>g << 2)) * 4, <usize>rows << 2);
        }
        for (; t + 2 <= t1; t += 2) {
          const ut = <usize>t;
          tile4xT_q8_0x(2, q, w1, x16 + ut * ucols * 2, xd + ut * unb * 4, nb, ucols * 2, unb * 4,
            out + (ut * <usize>rows + (<usize>g << 2)) * 4, <usize>rows << 2);
        }
      }
      if (kind == K_Q4_0X4) {
        // prefill: four, then two tokens per pass over the group's blocks
        for (; t + 4 <= t1; t += 4) {
          const ut = <usize>t;
          tile4xT_q4_0x(4, q, w1, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb, ucols, unb,
            out + (ut * <usize>rows + (<usize>g << 2)) * 4, <usize>rows << 2);
        }
        for (; t + 2 <= t1; t += 2) {
          const ut = <usize>t;
          tile4xT_q4_0x(2, q, w1, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb, ucols, unb,
            out + (ut * <usize>rows + (<usize>g << 2)) * 4, <usize>rows << 2);
        }
      }
      if (kind == K_Q8_0X4 && n == 1 && cols >= Q8_0_PAIR_COLS && g + 1 < r1) {
        // decode on long rows: two groups per pass (dot8_q8_0x), the same bits as one at a time
        dot8_q8_0x(q, gb, w1, x16, xd, nb, out + (<usize>g << 4), 4);
        g++;
        continue;
      }
      for (; t < t1; t++) {
        const ut = <usize>t;
        const o = out + (ut * <usize>rows + (<usize>g << 2)) * 4;
        if (kind == K_Q4_0X4) dot4_q4_0x(q, 18, 72, w1, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb, o, 4);
        else dot4_q8_0x(q, w1, x16 + ut * ucols * 2, xd + ut * unb * 4, nb, o, 4);
      }
    }
    }
    return;
  }
  if (kind == K_F32 && n > 1) {
    gemmRows(false, F32_R, F32_T, w0, rows, cols, xf, out, n, r0, r1);
    return;
  }
  if (kind == K_F16 && n == 1 && x16 != 0) {
    // decode with the activations prescaled by 2^112 (D_X16: scale_act_f16's copy; 0 when it was not exact)
    let r = r0;
    if (cols >= 4096) for (; r + 2 <= r1; r += 2) dot2_f16(w0 + <usize>r * ucols * 2, ucols * 2, x16, cols, out + (<usize>r << 2));
    for (; r < r1; r++) store<f32>(out + (<usize>r << 2), dot_f16(true, w0 + <usize>r * ucols * 2, x16, cols));
    return;
  }
  if (kind == K_F16 && n > 1) {
    // D_W1: the F16 prefill panels (dispatch.ts), D_GROUP slots of F16_PANEL_SLOT_BYTES after their lock words.
    // n = 3 is one 2 × 3 tile per row pair, which converts each weight once anyway: the f16 tile is faster there
    // (measured 0.85–0.90× with the panel; n = 2, 4…9 1.1–1.5× faster with it). Either way the same bits.
    const nslots = dint(desc, D_GROUP);
    const slot = w1 != 0 && n != 3 ? claimPanelSlot(w1, nslots) : -1;
    if (slot >= 0) {
      gemmRowsF16Panel(w0, rows, cols, xf, out, n, r0, r1, w1 + (<usize>((nslots + 15) >> 4) << 6) + <usize>slot * F16_PANEL_SLOT_BYTES);
      atomic.store<i32>(w1 + (<usize>slot << 2), 0);
    } else gemmRows(true, F16_R, F16_T, w0, rows, cols, xf, out, n, r0, r1);
    return;
  }
  // Prefill (n > 1): tokens in blocks of TOKEN_BLOCK, rows inside, so one block's activations stay in L2
  // (8 × 8192 columns × 3 B of codes) while each weight row is reused from L1 for the whole block.
  for (let t0 = 0; t0 < n; t0 += TOKEN_BLOCK) {
  const t1 = min(n, t0 + TOKEN_BLOCK);
  for (let r = r0; r < r1; r++) {
    const ur = <usize>r;
    for (let t = t0; t < t1; t++) {
      const ut = <usize>t;
      let v: f32 = 0;
      switch (kind) {
        case K_F32: v = dot_f32(w0 + ur * ucols * 4, xf + ut * ucols * 4, cols); break;
        case K_F16: v = dot_f16(false, w0 + ur * ucols * 2, xf + ut * ucols * 4, cols); break;
        case K_I8S32: v = dot_i8s32(w0 + ur * ucols, w1 + ur * unb * 4, x16 + ut * ucols * 2, xd + ut * unb * 4, nb); break;
        case K_Q4_0: v = dot_q4_0(w0 + ur * unb * 16, w1 + ur * unb * 4, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb); break;
        case K_N4A32: v = dot_n4a32(w0 + ur * unb * 16, w1 + ur * unb * 4, w2 + ur * unb * 4, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb); break;
        case K_I8S16: v = dot_i8s16(w0 + ur * ucols, w1 + ur * unb * 8, x16 + ut * ucols * 2, xd + ut * unb * 4, nb); break;
        case K_I8A32: v = dot_i8a32(w0 + ur * ucols, w1 + ur * unb * 4, w2 + ur * unb * 4, x16 + ut * ucols * 2, xd + ut * unb * 4, xs + ut * unb * 8, nb); break;
        case K_I8A16: v = dot_i8a16(w0 + ur * ucols, w1 + ur * unb * 8, w2 + ur * unb * 8, x16 + ut * ucols * 2, xd + ut * unb * 4, xs + ut * unb * 8, nb); break;
        case K_Q8_0N: v = dot_q8_0n(w0 + ur * unb * 34, w1, x16 + ut * ucols * 2, xd + ut * unb * 4, nb); break;
        case K_Q4_0N: v = dot_q4_0n(w0 + ur * unb * 18, w1, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb); break;
        case K_Q4_KN: v = dot_q4_kn(w0 + ur * <usize>(nb >> 3) * 144, w1, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb >> 3); break;
        case K_Q6_KN: v = dot_q6_kn(w0 + ur * <usize>(nb >> 3) * 210, w1, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb >> 3); break;
        default: unreachable();
      }
      store<f32>(out + (ut * <usize>rows + ur) * 4, v);
    }
  }
  }
}

// One exported entry per kind: V8's optimizing tier compiled the former single run_rows (every kernel
// inlined into one switch) into code 1.7× slower than its baseline tier on Q4_0 (6.5 vs 11 GB/s), and
// which tier ran depended on when tier-up happened; small per-kind functions optimize well.
export function run_k1(desc: usize, r0: i32, r1: i32): void { runRows(K_F32, desc, r0, r1); }
export function run_k2(desc: usize, r0: i32, r1: i32): void { runRows(K_F16, desc, r0, r1); }
export function run_k3(desc: usize, r0: i32, r1: i32): void { runRows(K_I8S32, desc, r0, r1); }
export function run_k4(desc: usize, r0: i32, r1: i32): void { runRows(K_Q4_0, desc, r0, r1); }
export function run_k5(desc: usize, r0: i32, r1: i32): void { runRows(K_N4A32, desc, r0, r1); }
export function run_k6(desc: usize, r0: i32, r1: i32): void { runRows(K_I8S16, desc, r0, r1); }
export function run_k7(desc: usize, r0: i32, r1: i32): void { runRows(K_I8A32, desc, r0, r1); }
export function run_k8(desc: usize, r0: i32, r1: i32): void { runRows(K_I8A16, desc, r0, r1); }
export function run_k9(desc: usize, r0: i32, r1: i32): void { runRows(K_Q8_0N, desc, r0, r1); }
export function run_k10(desc: usize, r0: i32, r1: i32): void { runRows(K_Q4_0N, desc, r0, r1); }
export function run_k11(desc: usize, r0: i32, r1: i32): void { runRows(K_Q4_KN, desc, r0, r1); }
export function run_k12(desc: usize, r0: i32, r1: i32): void { runRows(K_Q6_KN, desc, r0, r1); }
export function run_k13(desc: usize, g0: i32, g1: i32): void { runRows(K_Q4_0X4, desc, g0, g1); }
export function run_k14(desc: usize, g0: i32, g1: i32): void { runRows(K_Q8_0X4, desc, g0, g1); }

const TOKEN_BLOCK = 8;
/** tokens per Q8_0 prefill tile (2 or 4) */
const Q8_0_TT = 4;
/** Q8_0X4 decode runs two row groups per pass (dot8_q8_0x) from this many columns */
const Q8_0_PAIR_COLS = 4096;

// ---------------------------------------------------------------- quantizers

const MAGIC: f32 = 12582912.0; // 1.5·2^23: adding it rounds |v| < 2^22 to an integer, ties to even
const MAGIC_BITS: i32 = 0x4b400000;

/** Q8 activations, ggml's block_q8_0 semantics (quantize_row_q8_0_ref, ggml-quants.c): per 32,
 * d = amax/127, id = 1/d (0 if d = 0), q = round(x·id); stored d is f16(d) as ggml stores it. Rounding
 * is to nearest even (magic number), as ggml's AVX2 activation quantizer does (_mm256_round_ps).
 * Writes the codes as i16 (SIMD128 kernels) and int8 (relaxed kernels), the scales, and code sums per 16.
 * x: (n) f32, n a multiple of 32. */
export function quantize_act(x: usize, n: i32, x16: usize, x8: usize, xd: usize, xs: usize): void {
  const nb = n >> 5;
  const magic = f32x4.splat(MAGIC);
  const magicBits = i32x4.splat(MAGIC_BITS);
  for (let b = 0; b < nb; b++) {
    const p = x + (<usize>b << 7);
    // pmax (one maxps) rather than max (NaN-propagating, several instructions on x64): the same for
    // the finite values that reach this encoder (tasks.ts), and |x| has no −0 for the ±0 rule to see
    let m = f32x4.pmax(f32x4.abs(v128.load(p)), f32x4.abs(v128.load(p, 16)));
    m = f32x4.pmax(m, f32x4.pmax(f32x4.abs(v128.load(p, 32)), f32x4.abs(v128.load(p, 48))));
    m = f32x4.pmax(m, f32x4.pmax(f32x4.abs(v128.load(p, 64)), f32x4.abs(v128.load(p, 80))));
    m = f32x4.pmax(m, f32x4.pmax(f32x4.abs(v128.load(p, 96)), f32x4.abs(v128.load(p, 112))));
    const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    const d: f32 = amax / 127.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : 0;
    store<f32>(xd + (<usize>b << 2), f16_to_f32(f32_to_f16(d)));
    const vid = f32x4.splat(id);
    const q16 = x16 + (<usize>b << 6);
    const q8 = x8 + (<usize>b << 5);
    for (let h = 0; h < 2; h++) {
      const ph = p + (<usize>h << 6);
      const i0 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(ph), vid), magic), magicBits);
      const i1 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(ph, 16), vid), magic), magicBits);
      const i2 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(ph, 32), vid), magic), magicBits);
      const i3 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(ph, 48), vid), magic), magicBits);
      const s0 = i16x8.narrow_i32x4_s(i0, i1);
      const s1 = i16x8.narrow_i32x4_s(i2, i3);
      v128.store(q16 + (<usize>h << 5), s0);
      v128.store(q16 + (<usize>h << 5), s1, 16);
      v128.store(q8 + (<usize>h << 4), i8x16.narrow_i16x8_s(s0, s1));
      store<i32>(xs + (<usize>(b * 2 + h) << 2), hsum_i32(i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3))));
    }
  }
}

/** C roundf (halves away from zero) of 4 lanes, |v| < 2^22, as i32: magic-number round-to-even, then
 * the ties that went toward zero are pushed one step away. v − r is exact here (Sterbenz). */
@inline function roundf_i32x4(v: v128): v128 {
  const t = f32x4.add(v, f32x4.splat(MAGIC));
  const r = f32x4.sub(t, f32x4.splat(MAGIC));
  const sign = v128.and(v, i32x4.splat(0x80000000));
  const tie = f32x4.eq(f32x4.sub(v, r), v128.or(f32x4.splat(0.5), sign));
  const step = v128.or(i32x4.shr_s(v, 31), i32x4.splat(1)); // ±1
  return i32x4.add(i32x4.sub(t, i32x4.splat(MAGIC_BITS)), v128.and(tie, step));
}

/** f32 row → ggml block_q8_0 bytes (d f16, qs[32]), bit-identical to quantize_row_q8_0_ref. */
export function quantize_row_q8_0(x: usize, n: i32, y: usize): void {
  const nb = n >> 5;
  for (let b = 0; b < nb; b++) {
    const p = x + (<usize>b << 7);
    // pmax (one maxps) rather than max (NaN-propagating, several instructions on x64): the same for
    // the finite values that reach this encoder (tasks.ts), and |x| has no −0 for the ±0 rule to see
    let m = f32x4.pmax(f32x4.abs(v128.load(p)), f32x4.abs(v128.load(p, 16)));
    m = f32x4.pmax(m, f32x4.pmax(f32x4.abs(v128.load(p, 32)), f32x4.abs(v128.load(p, 48))));
    m = f32x4.pmax(m, f32x4.pmax(f32x4.abs(v128.load(p, 64)), f32x4.abs(v128.load(p, 80))));
    m = f32x4.pmax(m, f32x4.pmax(f32x4.abs(v128.load(p, 96)), f32x4.abs(v128.load(p, 112))));
    const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    const d: f32 = amax / 127.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : 0;
    const o = y + <usize>b * 34;
    store<u16>(o, <u16>f32_to_f16(d));
    const vid = f32x4.splat(id);
    for (let h = 0; h < 2; h++) {
      const ph = p + (<usize>h << 6);
      const s0 = i16x8.narrow_i32x4_s(roundf_i32x4(f32x4.mul(v128.load(ph), vid)), roundf_i32x4(f32x4.mul(v128.load(ph, 16), vid)));
      const s1 = i16x8.narrow_i32x4_s(roundf_i32x4(f32x4.mul(v128.load(ph, 32), vid)), roundf_i32x4(f32x4.mul(v128.load(ph, 48), vid)));
      v128.store(o + 2 + (<usize>h << 4), i8x16.narrow_i16x8_s(s0, s1));
    }
  }
}

/** f32 row → ggml block_q4_0 bytes (d f16, qs[16]), bit-identical to quantize_row_q4_0_ref:
 * max = the first value of largest |x|, d = max/−8, q = min(15, (int)(x·id + 8.5)). */
export function quantize_row_q4_0(x: usize, n: i32, y: usize): void {
  const nb = n >> 5;
  for (let b = 0; b < nb; b++) {
    const p = x + (<usize>b << 7);
    // pmax/pmin (one instruction each on x64): the same as max/min on the finite values that reach this
    // encoder, up to the sign of a zero extreme, which never reaches d (a ±0 vmax or vmin only decides
    // comparisons, where ±0 are equal, or goes to the tie loop below)
    let hi = f32x4.pmax(v128.load(p), v128.load(p, 16));
    let lo = f32x4.pmin(v128.load(p), v128.load(p, 16));
    for (let k = 32; k < 128; k += 32) {
      hi = f32x4.pmax(hi, f32x4.pmax(v128.load(p + k), v128.load(p + k, 16)));
      lo = f32x4.pmin(lo, f32x4.pmin(v128.load(p + k), v128.load(p + k, 16)));
    }
    const vmax = max(max(f32x4.extract_lane(hi, 0), f32x4.extract_lane(hi, 1)), max(f32x4.extract_lane(hi, 2), f32x4.extract_lane(hi, 3)));
    const vmin = min(min(f32x4.extract_lane(lo, 0), f32x4.extract_lane(lo, 1)), min(f32x4.extract_lane(lo, 2), f32x4.extract_lane(lo, 3)));
    let mx: f32;
    if (vmax > -vmin) mx = vmax;
    else if (-vmin > vmax) mx = vmin;
    else {
      // |max| == |min|: ggml keeps the first index with the largest magnitude
      mx = 0;
      let amax: f32 = 0;
      for (let j = 0; j < 32; j++) {
        const v = load<f32>(p + (<usize>j << 2));
        if (amax < abs(v)) { amax = abs(v); mx = v; }
      }
    }
    const d: f32 = mx / -8.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : 0;
    const o = y + <usize>b * 18;
    store<u16>(o, <u16>f32_to_f16(d));
    const vid = f32x4.splat(id);
    const half = f32x4.splat(8.5);
    const fifteen = i32x4.splat(15);
    const a0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p), vid), half)), fifteen);
    const a1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 16), vid), half)), fifteen);
    const a2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 32), vid), half)), fifteen);
    const a3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 48), vid), half)), fifteen);
    const b0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 64), vid), half)), fifteen);
    const b1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 80), vid), half)), fifteen);
    const b2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 96), vid), half)), fifteen);
    const b3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 112), vid), half)), fifteen);
    const first = i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(a0, a1), i16x8.narrow_i32x4_s(a2, a3));
    const second = i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(b0, b1), i16x8.narrow_i32x4_s(b2, b3));
    v128.store(o + 2, v128.or(first, i16x8.shl(second, 4)));
  }
}

/** 8 binary16 lanes → their low / high 4 as f32x4 (f16x4_to_f32: finite values only) */
@inline function f16lo(v: v128): v128 {
  return f16x4_to_f32(i32x4.extend_low_i16x8_s(v));
}
@inline function f16hi(v: v128): v128 {
  return f16x4_to_f32(i32x4.extend_high_i16x8_s(v));
}

/** one 4-lane group of a Q4_0 block: min(15, trunc(x·id + 8.5)) as i32 lanes. x·id + 8.5 lies in
 * [0.5 − ε, 16.5 + ε] (|x| ≤ |max|, id = −8/max; 8.5 when id = 0), so truncation is f32x4.trunc (one
 * roundps), the clamp a pmin on integers in f32 (exact), and the integer comes out of the 1.5·2^23 sum's
 * low bits: the same value as C's (int8_t) cast and MIN, in 4 instructions instead of a saturating convert */
@inline function q4lanes(x: v128, vid: v128): v128 {
  const t = f32x4.pmin(f32x4.trunc(f32x4.add(f32x4.mul(x, vid), f32x4.splat(8.5))), f32x4.splat(15));
  return i32x4.sub(f32x4.add(t, f32x4.splat(MAGIC)), i32x4.splat(MAGIC_BITS));
}

/**
 * quantize_row_q4_0 straight from binary16 bits at h (n a multiple of 32): each block's 32 values are
 * converted in registers (exact: every binary16 is an f32), so the bytes are those of f16_to_f32_row +
 * quantize_row_q4_0, without the f32 round trip through memory and without a separate Inf/NaN pass.
 * Returns 0, or 1 when some value is Inf/NaN: then y holds no meaningful bytes and the caller takes the f32
 * path (whose reference codec decides what such values become). Differences from the f32 encoder that
 * cannot change a byte for binary16 input: the block's max / min reduce with pmax / pmin across lanes (the
 * sign of a zero extreme never reaches d, see quantize_row_q4_0), d = max·(−1/8) (exact, as max / −8), and
 * the levels take q4lanes (|max| ≥ 2^−24 or 0, so id = 1/d ≤ 2^27 is finite and x·id + 8.5 is in range).
 */
export function quantize_row_q4_0_f16(h: usize, n: i32, y: usize): i32 {
  const nb = n >> 5;
  const magMask = i16x8.splat(0x7fff);
  let top = i16x8.splat(0); // largest magnitude bits seen: ≥ 0x7c00 means Inf/NaN
  for (let b = 0; b < nb; b++) {
    const p = h + (<usize>b << 6);
    const h0 = v128.load(p);
    const h1 = v128.load(p, 16);
    const h2 = v128.load(p, 32);
    const h3 = v128.load(p, 48);
    top = i16x8.max_u(top, i16x8.max_u(i16x8.max_u(v128.and(h0, magMask), v128.and(h1, magMask)), i16x8.max_u(v128.and(h2, magMask), v128.and(h3, magMask))));
    const x0 = f16lo(h0), x1 = f16hi(h0), x2 = f16lo(h1), x3 = f16hi(h1);
    const x4 = f16lo(h2), x5 = f16hi(h2), x6 = f16lo(h3), x7 = f16hi(h3);
    let hi = f32x4.pmax(f32x4.pmax(f32x4.pmax(x0, x1), f32x4.pmax(x2, x3)), f32x4.pmax(f32x4.pmax(x4, x5), f32x4.pmax(x6, x7)));
    let lo = f32x4.pmin(f32x4.pmin(f32x4.pmin(x0, x1), f32x4.pmin(x2, x3)), f32x4.pmin(f32x4.pmin(x4, x5), f32x4.pmin(x6, x7)));
    hi = f32x4.pmax(hi, i32x4.shuffle(hi, hi, 2, 3, 0, 1));
    lo = f32x4.pmin(lo, i32x4.shuffle(lo, lo, 2, 3, 0, 1));
    hi = f32x4.pmax(hi, i32x4.shuffle(hi, hi, 1, 0, 3, 2));
    lo = f32x4.pmin(lo, i32x4.shuffle(lo, lo, 1, 0, 3, 2));
    // every lane now holds the block's max (hi) and min (lo); the signed extreme is picked in SIMD (a data-dependent
    // branch on the sign would be mispredicted half the time on real weights), the rare tie by the scalar loop
    const nlo = f32x4.neg(lo);
    let mxv = v128.bitselect(hi, lo, f32x4.gt(hi, nlo));
    if (v128.any_true(f32x4.eq(hi, nlo))) {
      // |max| == |min|: ggml keeps the first index with the largest magnitude
      let mx: f32 = 0;
      let amax: f32 = 0;
      for (let j = 0; j < 32; j++) {
        const v = f16_to_f32(load<u16>(p + (<usize>j << 1)));
        if (amax < abs(v)) { amax = abs(v); mx = v; }
      }
      mxv = f32x4.splat(mx);
    }
    const dv = f32x4.mul(mxv, f32x4.splat(-0.125));
    const zero = f32x4.splat(0);
    const vid = v128.bitselect(f32x4.div(f32x4.splat(1.0), dv), zero, f32x4.ne(dv, zero));
    const o = y + <usize>b * 18;
    store<u16>(o, <u16>f32_to_f16(f32x4.extract_lane(dv, 0)));
    const first = i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(q4lanes(x0, vid), q4lanes(x1, vid)), i16x8.narrow_i32x4_s(q4lanes(x2, vid), q4lanes(x3, vid)));
    const second = i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(q4lanes(x4, vid), q4lanes(x5, vid)), i16x8.narrow_i32x4_s(q4lanes(x6, vid), q4lanes(x7, vid)));
    v128.store(o + 2, v128.or(first, i16x8.shl(second, 4)));
  }
  return v128.any_true(i16x8.gt_u(top, i16x8.splat(0x7bff))) ? 1 : 0;
}

/** n binary16 values at h → f32 at x (n a multiple of 8), SIMD (f16x4_to_f32: finite values only). */
export function f16_to_f32_row(h: usize, n: i32, x: usize): void {
  for (let i = 0; i < n; i += 8) {
    const v = v128.load(h + (<usize>i << 1));
    v128.store(x + (<usize>i << 2), f16x4_to_f32(i32x4.extend_low_i16x8_s(v)));
    v128.store(x + (<usize>i << 2), f16x4_to_f32(i32x4.extend_high_i16x8_s(v)), 16);
  }
}

// ---------------------------------------------------------------- bandwidth probe

/** Σ of n f32 (n a multiple of 16): a pure streaming read, the memory-bandwidth yardstick of the bench. */
export function stream_sum(x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let i = 0; i < n; i += 16) {
    const p = x + (<usize>i << 2);
    a0 = f32x4.add(a0, v128.load(p));
    a1 = f32x4.add(a1, v128.load(p, 16));
    a2 = f32x4.add(a2, v128.load(p, 32));
    a3 = f32x4.add(a3, v128.load(p, 48));
  }
  return hsum_f32(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
}

// the forward pass's other kernels: attention over the f32 KV cache, the vector exp, SwiGLU
export * from "./forward";

// ---------------------------------------------------------------- packed quantlab uniform-int layouts

/** 16 4-bit codes (8 bytes, LSB-first: byte j = code 2j | code 2j+1 << 4) at p → u8x16 in code order. */
@inline function unpack_u4x16(p: usize): v128 {
  const b = v128.load64_zero(p);
  const lo = v128.and(b, i8x16.splat(0x0f));
  const hi = hi4(b);
  return i8x16.shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}

/** One row of a K_U4G / K_U8G weight · x: codes at c, per-group scales at s, groups of g along the row (the
 * last one ragged when g does not divide cols). The code offset k of group j: zc — L0 − z with z the group's
 * integer zero point, stored at the code width (nibbles for 4 bits, bytes for 8) at k, group index gz + j
 * (gz = the row's first group: a row's zeros may start inside a byte); else the constant L0 (no zeros). Whole
 * 16-code chunks of a group run in SIMD (4 f32x4 accumulators), a group's remaining codes in scalar f32 (a
 * separate accumulator added at the end), so the order of operations depends only on the shape: the same bits
 * on every thread and in both builds. The weight (q + k)·s is rounded once, as the fake-quant dequantization
 * does; no fused multiply-add. */
@inline function dot_ug(bits: i32, c: usize, s: usize, k: usize, gz: usize, l0: i32, x: usize, cols: i32, g: i32, s16: bool, zc: bool): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let st: f32 = 0;
  let j = 0;
  for (let j0 = 0; j0 < cols; j0 += g, j++) {
    const len = min(g, cols - j0);
    // s16: the stored f16 scale bits (exact in f32), else an f32 scale
    const sf = s16 ? f16_to_f32(<u32>load<u16>(s + (<usize>j << 1))) : load<f32>(s + (<usize>j << 2));
    let ki = l0;
    if (zc) {
      const gi = gz + <usize>j;
      ki -= bits == 4 ? (<i32>load<u8>(k + (gi >> 1)) >> (<i32>(gi & 1) << 2)) & 15 : <i32>load<u8>(k + gi);
    }
    const kf = <f32>ki;
    const sv = f32x4.splat(sf), kv = f32x4.splat(kf);
    let i = 0;
    for (; i + 16 <= len; i += 16) {
      const e = <usize>(j0 + i);
      const xi = x + (e << 2);
      const q = bits == 4 ? unpack_u4x16(c + (e >> 1)) : v128.load(c + e);
      const l = i16x8.extend_low_i8x16_u(q), h = i16x8.extend_high_i8x16_u(q);
      const w0 = f32x4.mul(f32x4.add(f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(l)), kv), sv);
      const w1 = f32x4.mul(f32x4.add(f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(l)), kv), sv);
      const w2 = f32x4.mul(f32x4.add(f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(h)), kv), sv);
      const w3 = f32x4.mul(f32x4.add(f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(h)), kv), sv);
      a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(xi)));
      a1 = f32x4.add(a1, f32x4.mul(w1, v128.load(xi, 16)));
      a2 = f32x4.add(a2, f32x4.mul(w2, v128.load(xi, 32)));
      a3 = f32x4.add(a3, f32x4.mul(w3, v128.load(xi, 48)));
    }
    for (; i < len; i++) {
      const e = <usize>(j0 + i);
      const q: u32 = bits == 4 ? (<u32>load<u8>(c + (e >> 1)) >> (<u32>(e & 1) << 2)) & 15 : <u32>load<u8>(c + e);
      st += ((<f32>q + kf) * sf) * load<f32>(x + (e << 2));
    }
  }
  return hsum_f32(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))) + st;
}

/** Rows [r0, r1) of a K_U4G / K_U8G job, for all its activation rows (tokens in blocks of TOKEN_BLOCK
 * so one block's f32 activations stay in cache while each packed row is reused from L1). */
@inline function runUniform(bits: i32, desc: usize, r0: i32, r1: i32): void {
  const rows = dint(desc, D_ROWS);
  const cols = dint(desc, D_COLS);
  const w0 = dptr(desc, D_W0);
  const w1 = dptr(desc, D_W1);
  const w2 = dptr(desc, D_W2);
  const xf = dptr(desc, D_XF);
  const out = dptr(desc, D_OUT);
  const n = dint(desc, D_N);
  const g = dint(desc, D_GROUP);
  const nG = (cols + g - 1) / g;
  // D_BITS (unused by these kinds otherwise): bit 0 = scales as f16 bits, bit 1 = zero codes at D_W2; D_LUT = L0 (i32)
  const flags = dint(desc, D_BITS);
  const l0 = dint(desc, D_LUT);
  const s16 = (flags & 1) != 0, zc = (flags & 2) != 0;
  const sb: usize = s16 ? 2 : 4;
  const ucols = <usize>cols;
  const rowBytes = (ucols * <usize>bits) >> 3;
  for (let t0 = 0; t0 < n; t0 += TOKEN_BLOCK) {
    const t1 = min(n, t0 + TOKEN_BLOCK);
    for (let r = r0; r < r1; r++) {
      const ur = <usize>r;
      const c = w0 + ur * rowBytes;
      const s = w1 + ur * <usize>nG * sb;
      const gz = ur * <usize>nG;
      for (let t = t0; t < t1; t++) {
        const ut = <usize>t;
        const xr = xf + ut * ucols * 4, o = out + (ut * <usize>rows + ur) * 4;
        store<f32>(o, dot_ug(bits, c, s, w2, gz, l0, xr, cols, g, s16, zc));
      }
    }
  }
}

export function run_k15(desc: usize, r0: i32, r1: i32): void { runUniform(4, desc, r0, r1); }
export function run_k16(desc: usize, r0: i32, r1: i32): void { runUniform(8, desc, r0, r1); }
export * from "./lut";
export * from "./nib4";
export * from "./intmm";
export * from "./igemm";
export * from "./linalg";
export { kquant_supported, quantize_blocks_k } from "./kquants";
export * from "./kdecode";

// arithmetic-throughput probes for the benches (bench/_peaks.ts; docs/kernels.md, "Compute ceilings")
export * from "./probe";
