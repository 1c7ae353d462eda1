// Decode kernels for the k-quants on their GGUF blocks, 4 rows interleaved (K_Q4_KX4, K_Q6_KX4), against
// Q8_K activations (one f32 scale per 256, as ggml's CPU backend pairs the k-quants: vec_dot_type Q8_K).
//
// Why Q8_K and not the Q8_0 activations of the other kinds: with one activation scale per 256 the whole
// super-block's dot stays in integers (sub-block scales applied with i32x4.dot_i16x8_s, the mins term an
// i16 dot of the 6-bit mins with precomputed code sums per 32), so a row pays one float multiply-add per
// 256 weights instead of one per 32, and the 4 rows of a group share one reduction and one f32 step
// (ggml's AVX2 ggml_vec_dot_q4_K_q8_K does the same integer work with 256-bit vectors).
// Rows are interleaved as K_Q4_0X4 (interleave_rows4): one sequential stream per 4 rows, and each
// activation vector is loaded once per super-block for the 4 rows.
//
// Relaxed build only: i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw) on int8 activation codes × unsigned
// codes (nibbles 0..15, 6-bit 0..63: valid i7 operands). The SIMD128 build runs these types on their SoA
// repacks (layouts.ts NATIVE variants), so its entries trap.
//
// Bit-exact twin: src/kernels/ref/kdecode.ts (test/kernels/wasm/kdecode.test.ts).
import {
  D_ROWS, D_COLS, D_W0, D_W1, D_X8, D_XD, D_XS, D_OUT, D_N, Q8K_SUM_BYTES,
} from "./abi";

const MAGIC: f32 = 12582912.0; // 1.5·2^23

/** ggml nearest_int: add 1.5·2^23 in f32, read the low mantissa bits (|v| < 2^22). */
@inline function nearest_int4(v: v128): v128 {
  return i32x4.sub(v128.and(f32x4.add(v, f32x4.splat(MAGIC)), i32x4.splat(0x7fffff)), i32x4.splat(0x400000));
}

/** Q8_K activations, ggml quantize_row_q8_K_ref (ggml-quants.c; twin ggml/kquants.ts quantizeQ8_KRef) per
 * 256: max = the first value of largest |x|, iscale = −127/max, q = min(127, nearest_int(iscale·x)),
 * d = 1/iscale (0 and all-zero codes when max is 0). Writes int8 codes to x8 (n), f32 d to xd (n/256) and
 * per 256 a Q8K_SUM_BYTES record to xs: the code sums per 16 and per 32 as i16. x: (n) f32, n a multiple of 256. */
export function quantize_act_q8k(x: usize, n: i32, x8: usize, xd: usize, xs: usize): void {
  const nsb = n >> 8;
  for (let s = 0; s < nsb; s++) {
    const p = x + (<usize>s << 10);
    let amax: f32 = 0;
    let mx: f32 = 0;
    // the scalar scan of the C code: strictly greater, so the first of equal magnitudes wins
    for (let j = 0; j < 256; j++) {
      const v = load<f32>(p + (<usize>j << 2));
      const a = abs(v);
      if (a > amax) {
        amax = a;
        mx = v;
      }
    }
    const q = x8 + (<usize>s << 8);
    const r = xs + <usize>s * Q8K_SUM_BYTES;
    if (amax == 0) {
      store<f32>(xd + (<usize>s << 2), 0);
      memory.fill(q, 0, 256);
      memory.fill(r, 0, Q8K_SUM_BYTES);
      continue;
    }
    const iscale: f32 = <f32>-127.0 / mx;
    const vis = f32x4.splat(iscale);
    const top = i32x4.splat(127);
    for (let g = 0; g < 16; g++) {
      const pg = p + (<usize>g << 6);
      const i0 = i32x4.min_s(nearest_int4(f32x4.mul(vis, v128.load(pg))), top);
      const i1 = i32x4.min_s(nearest_int4(f32x4.mul(vis, v128.load(pg, 16))), top);
      const i2 = i32x4.min_s(nearest_int4(f32x4.mul(vis, v128.load(pg, 32))), top);
      const i3 = i32x4.min_s(nearest_int4(f32x4.mul(vis, v128.load(pg, 48))), top);
      v128.store(q + (<usize>g << 4), i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(i0, i1), i16x8.narrow_i32x4_s(i2, i3)));
      const t = i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3));
      const sum = (i32x4.extract_lane(t, 0) + i32x4.extract_lane(t, 1)) + (i32x4.extract_lane(t, 2) + i32x4.extract_lane(t, 3));
      store<i16>(r + (<usize>g << 1), <i16>sum);
    }
    for (let h = 0; h < 8; h++) store<i16>(r + 32 + (<usize>h << 1), load<i16>(r + (<usize>h << 2)) + load<i16>(r + (<usize>h << 2), 2));
    store<f32>(xd + (<usize>s << 2), <f32>1.0 / iscale);
  }
}

/** binary16 at p → f32 through the host's table at lut (as index.ts f16s). */
@inline function f16l(p: usize, lut: usize): f32 {
  return load<f32>(lut + (<usize>load<u16>(p) << 2));
}

/** Lane k = the sum of s_k's four lanes. */
@inline function reduce4(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** int8 activation codes at x × 16 unsigned codes (0..127) → i16x8 pair sums (pmaddubsw). */
@inline function pdot(x: usize, u: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x), u);
  unreachable();
  return u;
}

/** i16 lane j of v in all 8 lanes (pshufb with a constant) */
@inline function bc16(v: v128, j: i32): v128 {
  switch (j) {
    case 0: return i16x8.shuffle(v, v, 0, 0, 0, 0, 0, 0, 0, 0);
    case 1: return i16x8.shuffle(v, v, 1, 1, 1, 1, 1, 1, 1, 1);
    case 2: return i16x8.shuffle(v, v, 2, 2, 2, 2, 2, 2, 2, 2);
    case 3: return i16x8.shuffle(v, v, 3, 3, 3, 3, 3, 3, 3, 3);
    case 4: return i16x8.shuffle(v, v, 4, 4, 4, 4, 4, 4, 4, 4);
    case 5: return i16x8.shuffle(v, v, 5, 5, 5, 5, 5, 5, 5, 5);
    case 6: return i16x8.shuffle(v, v, 6, 6, 6, 6, 6, 6, 6, 6);
    default: return i16x8.shuffle(v, v, 7, 7, 7, 7, 7, 7, 7, 7);
  }
}

/** Sub-blocks 2p (low nibbles) and 2p+1 (high) of one block_q4_K row: their integer dots with the
 * activation codes, each times its 6-bit scale (i32x4.dot_i16x8_s on the pmaddubsw pair sums: |pair
 * sum| ≤ 2·2·15·127 < 2^15), as 4 i32 lanes. */
@inline function q4kPairI(qs: usize, x: usize, sc: v128, p: i32): v128 {
  const mk = i8x16.splat(0x0f);
  const v0 = v128.load(qs);
  const v1 = v128.load(qs, 16);
  const a = i16x8.add(pdot(x, v128.and(v0, mk)), pdot(x + 16, v128.and(v1, mk)));
  const b = i16x8.add(pdot(x + 32, i8x16.shr_u(v0, 4)), pdot(x + 48, i8x16.shr_u(v1, 4)));
  return i32x4.add(i32x4.dot_i16x8_s(a, bc16(sc, 2 * p)), i32x4.dot_i16x8_s(b, bc16(sc, 2 * p + 1)));
}

/** The 8 (scale, min) 6-bit pairs of a block_q4_K (12 bytes at b + 4; ggml get_scale_min_k4) as bytes:
 * scales 0–7 in bytes 0–7, mins 0–7 in bytes 8–15. With s0, s1, s2 the little-endian words of the field:
 * sc[0..3] = s0 & 63, m[0..3] = s1 & 63, sc[4..7] = (s2 & 15) | (s0 >> 6) << 4, m[4..7] = (s2 >> 4) | (s1 >> 6) << 4
 * (per byte), as ggml's AVX2 kernel unpacks them (utmp, kmask1–3). Reads 16 bytes (4 of qs beyond). */
@inline function q4kScaleMins(b: usize): v128 {
  const v = v128.load(b + 4);
  const a = i32x4.shuffle(v, i32x4.shr_u(v, 4), 0, 2, 1, 6); // s0, s2, s1, s2 >> 4
  const h = i32x4.shr_u(i32x4.shuffle(v, v, 0, 0, 1, 1), 2); // _, s0 >> 2, _, s1 >> 2
  const keep = i32x4(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f);
  const top = i32x4(0, 0x30303030, 0, 0x30303030);
  return v128.or(v128.and(a, keep), v128.and(h, top));
}

/** One row's super-block of Q4_K (block at b, its scales/mins vector smv): Σ_j sc_j·(q_j·x_j) as 4 i32 lanes. */
@inline function q4kIsum(b: usize, x: usize, smv: v128): v128 {
  const sc = i16x8.extend_low_i8x16_u(smv);
  const qs = b + 16;
  const i0 = q4kPairI(qs, x, sc, 0);
  const i1 = q4kPairI(qs + 32, x + 64, sc, 1);
  const i2 = q4kPairI(qs + 64, x + 128, sc, 2);
  const i3 = q4kPairI(qs + 96, x + 192, sc, 3);
  return i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3));
}

/** K_Q4_KX4: 4 interleaved block_q4_K rows (super-block s of row k at s·576 + k·144), one Q8_K activation
 * row; out[k·os] = Σ_s fr(fr(fr(d_k·xd_s)·isum) − fr(fr(dmin_k·xd_s)·imin)) accumulated in s order (f32),
 * isum = Σ_j sc_j·(q_j·x_j), imin = Σ_j m_j·Σx_j (exact integers). */
@inline function dot4_q4_kx(q: usize, lut: usize, x8: usize, xd: usize, xs: usize, nsb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0);
  for (let s = 0; s < nsb; s++) {
    const bs32 = v128.load(xs, 32);
    const m0 = q4kScaleMins(q), m1 = q4kScaleMins(q + 144), m2 = q4kScaleMins(q + 288), m3 = q4kScaleMins(q + 432);
    const imin = reduce4(
      i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(m0), bs32), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(m1), bs32),
      i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(m2), bs32), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(m3), bs32));
    const isum = reduce4(q4kIsum(q, x8, m0), q4kIsum(q + 144, x8, m1), q4kIsum(q + 288, x8, m2), q4kIsum(q + 432, x8, m3));
    const dx = f32x4.splat(load<f32>(xd));
    let dv = f32x4.splat(f16l(q, lut));
    dv = f32x4.replace_lane(dv, 1, f16l(q + 144, lut));
    dv = f32x4.replace_lane(dv, 2, f16l(q + 288, lut));
    dv = f32x4.replace_lane(dv, 3, f16l(q + 432, lut));
    let mv = f32x4.splat(f16l(q + 2, lut));
    mv = f32x4.replace_lane(mv, 1, f16l(q + 146, lut));
    mv = f32x4.replace_lane(mv, 2, f16l(q + 290, lut));
    mv = f32x4.replace_lane(mv, 3, f16l(q + 434, lut));
    const t = f32x4.sub(f32x4.mul(f32x4.mul(dv, dx), f32x4.convert_i32x4_s(isum)), f32x4.mul(f32x4.mul(mv, dx), f32x4.convert_i32x4_s(imin)));
    acc = f32x4.add(acc, t);
    q += 576;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  store<f32>(out, f32x4.extract_lane(acc, 0));
  store<f32>(out + os, f32x4.extract_lane(acc, 1));
  store<f32>(out + 2 * os, f32x4.extract_lane(acc, 2));
  store<f32>(out + 3 * os, f32x4.extract_lane(acc, 3));
}

/** One row's super-block of Q6_K (ql[128] @0, qh[64] @128, int8 scales[16] @192; dequantize_row_q6_K
 * element order, as index.ts dot_q6_kn): Σ_g sc_g·(q_g·x_g) − 32·Σ_g sc_g·Σx_g as 4 i32 lanes, q the
 * unsigned 6-bit codes (|pmaddubsw pair sum| ≤ 2·63·127 < 2^15; |total| < 2^29). */
@inline function q6kRow(b: usize, x: usize, bs: usize): v128 {
  const lo = i8x16.splat(0x0f);
  const hb = i8x16.splat(0x30);
  const sc0 = v128.load8x8_s(b + 192);
  const sc1 = v128.load8x8_s(b + 200);
  // −32·Σ_g sc_g·Σx_g: the code sums per 16 are i16
  const off = i32x4.add(i32x4.dot_i16x8_s(sc0, v128.load(bs)), i32x4.dot_i16x8_s(sc1, v128.load(bs, 16)));
  let acc = i32x4.neg(i32x4.shl(off, 5));
  for (let n = 0; n < 2; n++) {
    const ql = b + (<usize>n << 6);
    const qh = b + 128 + (<usize>n << 5);
    const sc = n == 0 ? sc0 : sc1;
    const xa = x + (<usize>n << 7);
    const L0 = v128.load(ql), L1 = v128.load(ql, 16), L2 = v128.load(ql, 32), L3 = v128.load(ql, 48);
    const H0 = v128.load(qh), H1 = v128.load(qh, 16);
    // 16-bit lane shifts, then a per-byte mask: bits never cross into the kept field of a neighbour byte
    const p0 = pdot(xa, v128.or(v128.and(L0, lo), v128.and(i16x8.shl(H0, 4), hb)));
    const p1 = pdot(xa + 16, v128.or(v128.and(L1, lo), v128.and(i16x8.shl(H1, 4), hb)));
    const p2 = pdot(xa + 32, v128.or(v128.and(L2, lo), v128.and(i16x8.shl(H0, 2), hb)));
    const p3 = pdot(xa + 48, v128.or(v128.and(L3, lo), v128.and(i16x8.shl(H1, 2), hb)));
    const p4 = pdot(xa + 64, v128.or(v128.and(i16x8.shr_u(L0, 4), lo), v128.and(H0, hb)));
    const p5 = pdot(xa + 80, v128.or(v128.and(i16x8.shr_u(L1, 4), lo), v128.and(H1, hb)));
    const p6 = pdot(xa + 96, v128.or(v128.and(i16x8.shr_u(L2, 4), lo), v128.and(i16x8.shr_u(H0, 2), hb)));
    const p7 = pdot(xa + 112, v128.or(v128.and(i16x8.shr_u(L3, 4), lo), v128.and(i16x8.shr_u(H1, 2), hb)));
    const s01 = i32x4.add(i32x4.dot_i16x8_s(p0, bc16(sc, 0)), i32x4.dot_i16x8_s(p1, bc16(sc, 1)));
    const s23 = i32x4.add(i32x4.dot_i16x8_s(p2, bc16(sc, 2)), i32x4.dot_i16x8_s(p3, bc16(sc, 3)));
    const s45 = i32x4.add(i32x4.dot_i16x8_s(p4, bc16(sc, 4)), i32x4.dot_i16x8_s(p5, bc16(sc, 5)));
    const s67 = i32x4.add(i32x4.dot_i16x8_s(p6, bc16(sc, 6)), i32x4.dot_i16x8_s(p7, bc16(sc, 7)));
    acc = i32x4.add(acc, i32x4.add(i32x4.add(s01, s23), i32x4.add(s45, s67)));
  }
  return acc;
}

/** K_Q6_KX4: 4 interleaved block_q6_K rows (super-block s of row k at s·840 + k·210), one Q8_K activation
 * row; out[k·os] = Σ_s fr(fr(d_k·xd_s)·isum) accumulated in s order (f32). */
@inline function dot4_q6_kx(q: usize, lut: usize, x8: usize, xd: usize, xs: usize, nsb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0);
  for (let s = 0; s < nsb; s++) {
    const r0 = q6kRow(q, x8, xs);
    const r1 = q6kRow(q + 210, x8, xs);
    const r2 = q6kRow(q + 420, x8, xs);
    const r3 = q6kRow(q + 630, x8, xs);
    const isum = reduce4(r0, r1, r2, r3);
    let dv = f32x4.splat(f16l(q + 208, lut));
    dv = f32x4.replace_lane(dv, 1, f16l(q + 418, lut));
    dv = f32x4.replace_lane(dv, 2, f16l(q + 628, lut));
    dv = f32x4.replace_lane(dv, 3, f16l(q + 838, lut));
    acc = f32x4.add(acc, f32x4.mul(f32x4.mul(dv, f32x4.splat(load<f32>(xd))), f32x4.convert_i32x4_s(isum)));
    q += 840;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  store<f32>(out, f32x4.extract_lane(acc, 0));
  store<f32>(out + os, f32x4.extract_lane(acc, 1));
  store<f32>(out + 2 * os, f32x4.extract_lane(acc, 2));
  store<f32>(out + 3 * os, f32x4.extract_lane(acc, 3));
}

/** Row groups [g0, g1) of a K_Q4_KX4 (bs = 144) or K_Q6_KX4 (bs = 210) job, every activation row of the job
 * on a group while it is in cache. D_X8 / D_XD / D_XS name the Q8_K codes, scales and sum records. */
@inline function runKX4(bs: i32, desc: usize, g0: i32, g1: i32): void {
  const rows = load<i32>(desc + (D_ROWS << 2));
  const cols = load<i32>(desc + (D_COLS << 2));
  const w0 = load<u32>(desc + (D_W0 << 2)) as usize;
  const lut = load<u32>(desc + (D_W1 << 2)) as usize;
  const x8 = load<u32>(desc + (D_X8 << 2)) as usize;
  const xd = load<u32>(desc + (D_XD << 2)) as usize;
  const xs = load<u32>(desc + (D_XS << 2)) as usize;
  const out = load<u32>(desc + (D_OUT << 2)) as usize;
  const n = load<i32>(desc + (D_N << 2));
  const nsb = cols >> 8;
  const unsb = <usize>nsb;
  const gb = unsb * 4 * <usize>bs;
  for (let g = g0; g < g1; g++) {
    const q = w0 + <usize>g * gb;
    for (let t = 0; t < n; t++) {
      const ut = <usize>t;
      const o = out + (ut * <usize>rows + (<usize>g << 2)) * 4;
      if (bs == 144) dot4_q4_kx(q, lut, x8 + ut * <usize>cols, xd + ut * unsb * 4, xs + ut * unsb * Q8K_SUM_BYTES, nsb, o, 4);
      else dot4_q6_kx(q, lut, x8 + ut * <usize>cols, xd + ut * unsb * 4, xs + ut * unsb * Q8K_SUM_BYTES, nsb, o, 4);
    }
  }
}

export function run_k24(desc: usize, g0: i32, g1: i32): void { runKX4(144, desc, g0, g1); }
export function run_k25(desc: usize, g0: i32, g1: i32): void { runKX4(210, desc, g0, g1); }
