// Decode kernels for the k-quants on their GGUF blocks, 4 rows interleaved (K_Q4_KX4, K_Q5_KX4, K_Q6_KX4), against
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
// codes (nibbles 0..15, Q5_K 0..31, Q6_K 0..63: valid i7 operands). The SIMD128 build runs these types on their SoA
// repacks (layouts.ts NATIVE variants), so its entries trap.
//
// Bit-exact twin: src/kernels/ref/kdecode.ts (test/kernels/wasm/kdecode.test.ts).
import {
  D_ROWS, D_COLS, D_W0, D_W1, D_W2, D_X8, D_XD, D_XS, D_OUT, D_N, D_GROUP, Q8K_SUM_BYTES,
  Q6_PANEL_SB_BYTES, Q6_PANEL_MAX_SB, Q6_PANEL_SLOT_BYTES,
} from "./abi";
import { prefillTokenBlock, storeRows4, storeTile, claimPanelSlot } from "./desc";

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
    // the C code's scan keeps the first x whose |x| is strictly greater than all before it: the first x of the
    // largest |x|. In SIMD: the largest |x| by pmax (b < a ? a : b: a NaN never wins, as `a > amax` never holds
    // for it, and the accumulators, always the first operand, never hold one), then the first x of that
    // magnitude by equality (at most one 4-lane step past it)
    let v0 = f32x4.splat(0), v1 = v0, v2 = v0, v3 = v0;
    for (let j = 0; j < 1024; j += 64) {
      v0 = f32x4.pmax(v0, f32x4.abs(v128.load(p + <usize>j)));
      v1 = f32x4.pmax(v1, f32x4.abs(v128.load(p + <usize>j, 16)));
      v2 = f32x4.pmax(v2, f32x4.abs(v128.load(p + <usize>j, 32)));
      v3 = f32x4.pmax(v3, f32x4.abs(v128.load(p + <usize>j, 48)));
    }
    let va = f32x4.pmax(f32x4.pmax(v0, v1), f32x4.pmax(v2, v3));
    va = f32x4.pmax(va, i32x4.shuffle(va, va, 2, 3, 0, 1));
    va = f32x4.pmax(va, i32x4.shuffle(va, va, 1, 0, 3, 2));
    const amax = f32x4.extract_lane(va, 0);
    let mx: f32 = 0;
    if (amax != 0) {
      for (let j = 0; j < 1024; j += 16) {
        const v = v128.load(p + <usize>j);
        const e = i32x4.bitmask(f32x4.eq(f32x4.abs(v), va));
        if (e != 0) {
          mx = load<f32>(p + <usize>j + (<usize>ctz(e) << 2));
          break;
        }
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

/** int8 activation codes at x × 16 unsigned codes (0..127) → i16x8 pair sums (pmaddubsw). */
@inline function pdot(x: usize, u: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(x), u);
  unreachable();
  return u;
}

/** i32 lane j of v in all 4 lanes (pshufd) */
@inline function bc32(v: v128, j: i32): v128 {
  switch (j) {
    case 0: return i32x4.shuffle(v, v, 0, 0, 0, 0);
    case 1: return i32x4.shuffle(v, v, 1, 1, 1, 1);
    case 2: return i32x4.shuffle(v, v, 2, 2, 2, 2);
    default: return i32x4.shuffle(v, v, 3, 3, 3, 3);
  }
}

/** The f16 at p of 4 interleaved rows (row k's at p + k·stride) as an f32 vector, lane k = row k. */
@inline function f16Rows4(p: usize, stride: usize, lut: usize): v128 {
  let v = f32x4.splat(f16l(p, lut));
  v = f32x4.replace_lane(v, 1, f16l(p + stride, lut));
  v = f32x4.replace_lane(v, 2, f16l(p + 2 * stride, lut));
  return f32x4.replace_lane(v, 3, f16l(p + 3 * stride, lut));
}

/** [Σacc, Σacc, Σm, Σm] (lane sums of two vectors from one pair of shuffles); a row's sums are shifted
 * into lane 3 of the group's vectors (i32x4.shuffle(v, h, 1, 2, 3, 4 / 6)), so after 4 rows lane k = row k. */
@inline function hsumPair(acc: v128, m: v128): v128 {
  const h = i32x4.add(i32x4.shuffle(acc, m, 0, 1, 4, 5), i32x4.shuffle(acc, m, 2, 3, 6, 7));
  return i32x4.add(h, i32x4.shuffle(h, h, 1, 0, 3, 2)); // [Σacc, Σacc, Σm, Σm]
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

/** v itself, through one instruction neither binaryen nor TurboFan folds: a loop-carried mask stays a
 * register value (a loop phi) instead of being rebuilt from its splat at every use. */
@inline function keep(v: v128): v128 {
  return i8x16.min_u(v, v);
}

// Loop structure: TurboFan (V8 11.3) issues every load of a loop body before its arithmetic and has no
// loop-invariant code motion, and binaryen merges equal loads; fully unrolled over 4 rows the 16
// activation vectors and 32 weight vectors of a super-block spilled to the stack (≈ 600 spill moves, 1.7×
// slower than Q4_0). So the bodies are one row × one 64-element slice (6 loads), the rows and slices
// real loops. The masks are splats binaryen cannot fold into a v128.const (a constant there was fine, but
// i8x16.shr_u's own mask was rebuilt from an immediate at every use, so shifts are 16-bit + mask), carried
// through the loops by `keep`: TurboFan recomputed a loop-invariant splat at every use (3 instructions).

/** K_Q4_KX4: 4 interleaved block_q4_K rows (super-block s of row k at s·576 + k·144), one Q8_K activation
 * row; out[k·os] = Σ_s fr(fr(fr(d_k·xd_s)·isum) − fr(fr(dmin_k·xd_s)·imin)) accumulated in s order (f32),
 * isum = Σ_j sc_j·(q_j·x_j), imin = Σ_j m_j·Σx_j (exact integers; |isum| ≤ 256·63·15·127 < 2^31). Sub-block
 * 2p / 2p+1 = the low / high nibbles of qs[32p…32p+31]; each sub-block's pmaddubsw pair sums (|·| ≤ 2·2·15·127
 * < 2^15) are scaled in the integer domain by i32x4.dot_i16x8_s with its 6-bit scale. */
/** pshufb indices: the 6-bit scales 0–3 (SC_PAIRS) and 4–7 (SC_PAIRS + 16) of q4kScaleMins' bytes, each as
 * an i16 pair (sc, sc) in one i32 lane (0x80: a zero byte), so a sub-block's broadcast is one pshufd. */
const SC_PAIRS = memory.data<u8>([
  0, 0x80, 0, 0x80, 1, 0x80, 1, 0x80, 2, 0x80, 2, 0x80, 3, 0x80, 3, 0x80,
  4, 0x80, 4, 0x80, 5, 0x80, 5, 0x80, 6, 0x80, 6, 0x80, 7, 0x80, 7, 0x80,
], 16);

/** pshufb indices: scale j (byte j of q4kScaleMins' bytes) in all 8 i16 lanes, j = 0…7 (16 bytes each; 0x80: a
 * zero byte). The decode kernel picks each sub-block's broadcast with one pshufb from here: 2 shuffles a slice
 * instead of the broadcast pshufd and the rotation of SC_PAIRS' pairs (4), issue 15. */
const SC_SPLAT = memory.data<u8>([
  0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80,
  1, 0x80, 1, 0x80, 1, 0x80, 1, 0x80, 1, 0x80, 1, 0x80, 1, 0x80, 1, 0x80,
  2, 0x80, 2, 0x80, 2, 0x80, 2, 0x80, 2, 0x80, 2, 0x80, 2, 0x80, 2, 0x80,
  3, 0x80, 3, 0x80, 3, 0x80, 3, 0x80, 3, 0x80, 3, 0x80, 3, 0x80, 3, 0x80,
  4, 0x80, 4, 0x80, 4, 0x80, 4, 0x80, 4, 0x80, 4, 0x80, 4, 0x80, 4, 0x80,
  5, 0x80, 5, 0x80, 5, 0x80, 5, 0x80, 5, 0x80, 5, 0x80, 5, 0x80, 5, 0x80,
  6, 0x80, 6, 0x80, 6, 0x80, 6, 0x80, 6, 0x80, 6, 0x80, 6, 0x80, 6, 0x80,
  7, 0x80, 7, 0x80, 7, 0x80, 7, 0x80, 7, 0x80, 7, 0x80, 7, 0x80, 7, 0x80,
], 16);

/** bytes of v at the pshufb indices loaded from idx (indices < 16 or with the top bit set: pshufb semantics) */
@inline function pick(v: v128, idx: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i8x16.relaxed_swizzle(v, v128.load(idx));
  return i8x16.swizzle(v, v128.load(idx));
}

/** One 64-element slice of a Q4_K / Q5_K row: sa·Σ(low pair sums) + sb·Σ(high pair sums), l0/l1 the low
 * 32 codes, u0/u1 the high 32, xp the slice's 64 activation codes. */
@inline function slice45(xp: usize, l0: v128, l1: v128, u0: v128, u1: v128, sa: v128, sb: v128): v128 {
  const lo = i16x8.add(pdot(xp, l0), pdot(xp + 16, l1));
  const hi = i16x8.add(pdot(xp + 32, u0), pdot(xp + 48, u1));
  return i32x4.add(i32x4.dot_i16x8_s(lo, sa), i32x4.dot_i16x8_s(hi, sb));
}

/** The end of pair_q4_kx / pair_q5_kx: the mins terms of rows b and c (their 8 mins, the high bytes of smb /
 * smc, against the code sums per 32, bs32), then the lane sums of the four vectors — [ia0+ia2, ia1+ia3,
 * ic0+ic2, ic1+ic3], the same for the mins, then pairs — as [Σia, Σic, Σmins_b, Σmins_c]. */
@inline function pairSums(ia: v128, ic: v128, smb: v128, smc: v128, bs32: v128): v128 {
  const mb = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(smb), bs32);
  const mc = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(smc), bs32);
  const t0 = i32x4.add(i32x4.shuffle(ia, ic, 0, 1, 4, 5), i32x4.shuffle(ia, ic, 2, 3, 6, 7));
  const t1 = i32x4.add(i32x4.shuffle(mb, mc, 0, 1, 4, 5), i32x4.shuffle(mb, mc, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(t0, t1, 0, 2, 4, 6), i32x4.shuffle(t0, t1, 1, 3, 5, 7));
}

/** Two rows of a K_Q4_KX4 super-block (block_q4_K at b and b + 144), one slice loop for both: each activation
 * vector and scale mask is loaded once for the two rows, each sub-block's scale broadcast by one pshufb
 * (SC_SPLAT). Returns [Σacc_b, Σacc_c, Σm_b, Σm_c]: the i32 dot sums and the mins terms (mins · code sums per 32,
 * bs32) of the two rows. mk: the 0x0f byte mask (carried through the loop by `keep`). */
@inline function pair_q4_kx(b: usize, x8: usize, bs32: v128, mk: v128): v128 {
  const smb = q4kScaleMins(b), smc = q4kScaleMins(b + 144);
  let ia = i32x4.splat(0), ic = i32x4.splat(0);
  let w = b + 16, xp = x8, sm = SC_SPLAT;
  let m = keep(mk);
  for (let p = 0; p < 4; p++) {
    const v0 = v128.load(w), v1 = v128.load(w, 16);
    const u0 = v128.load(w, 144), u1 = v128.load(w, 160);
    ia = i32x4.add(ia, slice45(xp, v128.and(v0, m), v128.and(v1, m),
      v128.and(i16x8.shr_u(v0, 4), m), v128.and(i16x8.shr_u(v1, 4), m), pick(smb, sm), pick(smb, sm + 16)));
    ic = i32x4.add(ic, slice45(xp, v128.and(u0, m), v128.and(u1, m),
      v128.and(i16x8.shr_u(u0, 4), m), v128.and(i16x8.shr_u(u1, 4), m), pick(smc, sm), pick(smc, sm + 16)));
    w += 32;
    xp += 64;
    sm += 32;
    m = keep(m);
  }
  return pairSums(ia, ic, smb, smc, bs32);
}

/** K_Q4_KX4: 4 interleaved block_q4_K rows (super-block s of row k at s·576 + k·144), one Q8_K activation
 * row; out[k·os] = Σ_s fr(fr(fr(d_k·xd_s)·isum) − fr(fr(dmin_k·xd_s)·imin)) accumulated in s order (f32),
 * isum = Σ_j sc_j·(q_j·x_j), imin = Σ_j m_j·Σx_j (exact integers; |isum| ≤ 256·63·15·127 < 2^31). Sub-block
 * 2p / 2p+1 = the low / high nibbles of qs[32p…32p+31]; each sub-block's pmaddubsw pair sums (|·| ≤ 2·2·15·127
 * < 2^15) are scaled in the integer domain by i32x4.dot_i16x8_s with its 6-bit scale. The slice loop bumps
 * pointers (no index arithmetic); the scale pairs of sub-blocks 0–3 / 4–7 are one pshufb each per row (SC_PAIRS),
 * a broadcast one pshufd, and two shuffles per slice rotate the next pairs into lanes 0, 1 (the i16x8 shuffle of
 * the previous body was a pshufb whose mask V8 rebuilt from an immediate each slice: 4 instructions). Two slices
 * per iteration spilled (TurboFan issues a body's 12 loads first). */
@inline function dot4_q4_kx(q: usize, lut: usize, x8: usize, xd: usize, xs: usize, nsb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0);
  const mk = i8x16.splat(<i8>(0x0f | (nsb >> 31))); // 0x0f (nsb ≥ 0), opaque to binaryen
  for (let s = 0; s < nsb; s++) {
    const bs32 = v128.load(xs, 32);
    // rows 0, 1 and rows 2, 3: [Σacc, Σacc, Σm, Σm] of each pair
    const h01 = pair_q4_kx(q, x8, bs32, mk);
    const h23 = pair_q4_kx(q + 288, x8, bs32, mk);
    const isum = i32x4.shuffle(h01, h23, 0, 1, 4, 5);
    const imin = i32x4.shuffle(h01, h23, 2, 3, 6, 7);
    const dx = f32x4.splat(load<f32>(xd));
    const dv = f16Rows4(q, 144, lut);
    const mv = f16Rows4(q + 2, 144, lut);
    const t = f32x4.sub(f32x4.mul(f32x4.mul(dv, dx), f32x4.convert_i32x4_s(isum)), f32x4.mul(f32x4.mul(mv, dx), f32x4.convert_i32x4_s(imin)));
    acc = f32x4.add(acc, t);
    q += 576;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  storeRows4(out, os, acc);
}

/** One Q5_K row's 64-element slice: codes = nibbles of v0, v1 | bits of h0, h1 (as dot4_q5_kx), sa, sb the scales. */
@inline function slice5(xp: usize, v0: v128, v1: v128, h0: v128, h1: v128, mk: v128, m10: v128, sa: v128, sb: v128): v128 {
  const l0 = v128.or(v128.and(v0, mk), v128.and(i16x8.shl(h0, 4), m10));
  const l1 = v128.or(v128.and(v1, mk), v128.and(i16x8.shl(h1, 4), m10));
  const u0 = v128.or(v128.and(i16x8.shr_u(v0, 4), mk), v128.and(i16x8.shl(h0, 3), m10));
  const u1 = v128.or(v128.and(i16x8.shr_u(v1, 4), mk), v128.and(i16x8.shl(h1, 3), m10));
  return slice45(xp, l0, l1, u0, u1, sa, sb);
}

/** Two rows of a K_Q5_KX4 super-block (block_q5_K at b and b + 176), one slice loop for both (as pair_q4_kx);
 * returns [Σacc_b, Σacc_c, Σm_b, Σm_c]. */
@inline function pair_q5_kx(b: usize, x8: usize, bs32: v128, mk0: v128, m100: v128): v128 {
  const c = b + 176;
  const smb = q4kScaleMins(b), smc = q4kScaleMins(c);
  let hb0 = v128.load(b + 16), hb1 = v128.load(b + 32), hc0 = v128.load(c + 16), hc1 = v128.load(c + 32);
  let ia = i32x4.splat(0), ic = i32x4.splat(0);
  let q4m = keep(mk0), q5m = keep(m100);
  let w = b + 48, xp = x8, sm = SC_SPLAT;
  for (let p = 0; p < 4; p++) {
    ia = i32x4.add(ia, slice5(xp, v128.load(w), v128.load(w, 16), hb0, hb1, q4m, q5m, pick(smb, sm), pick(smb, sm + 16)));
    ic = i32x4.add(ic, slice5(xp, v128.load(w, 176), v128.load(w, 192), hc0, hc1, q4m, q5m, pick(smc, sm), pick(smc, sm + 16)));
    hb0 = i16x8.shr_u(hb0, 2);
    hb1 = i16x8.shr_u(hb1, 2);
    hc0 = i16x8.shr_u(hc0, 2);
    hc1 = i16x8.shr_u(hc1, 2);
    w += 32;
    xp += 64;
    sm += 32;
    q4m = keep(q4m);
    q5m = keep(q5m);
  }
  return pairSums(ia, ic, smb, smc, bs32);
}

/** K_Q5_KX4: 4 interleaved block_q5_K rows (super-block s of row k at s·704 + k·176; d, dmin f16 @0, @2,
 * scales[12] @4 as Q4_K, qh[32] @16, qs[128] @48), one Q8_K activation row; as K_Q4_KX4 with 5-bit codes:
 * element 64p + l (l < 32) = low nibble of qs[32p + l] | bit 2p of qh[l] << 4, element 64p + 32 + l = its
 * high nibble | bit 2p+1 of qh[l] << 4 (dequantize_row_q5_K). qh is shifted right by 2 per slice in 16-bit
 * lanes (the bits that cross from the upper byte land in bits 6–7, which are never read). |pmaddubsw pair
 * sum| ≤ 2·2·31·127 < 2^15; |isum| ≤ 256·63·31·127 < 2^31. */
@inline function dot4_q5_kx(q: usize, lut: usize, x8: usize, xd: usize, xs: usize, nsb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0);
  const mk = i8x16.splat(<i8>(0x0f | (nsb >> 31))); // 0x0f, opaque to binaryen (see above)
  const m10 = i8x16.splat(<i8>(0x10 | (nsb >> 31))); // 0x10
  for (let s = 0; s < nsb; s++) {
    const bs32 = v128.load(xs, 32);
    // rows 0, 1 and rows 2, 3 (pair_q5_kx): [Σacc, Σacc, Σm, Σm] of each pair
    const h01 = pair_q5_kx(q, x8, bs32, mk, m10);
    const h23 = pair_q5_kx(q + 352, x8, bs32, mk, m10);
    const isum = i32x4.shuffle(h01, h23, 0, 1, 4, 5);
    const imin = i32x4.shuffle(h01, h23, 2, 3, 6, 7);
    const dx = f32x4.splat(load<f32>(xd));
    const dv = f16Rows4(q, 176, lut);
    const mv = f16Rows4(q + 2, 176, lut);
    const t = f32x4.sub(f32x4.mul(f32x4.mul(dv, dx), f32x4.convert_i32x4_s(isum)), f32x4.mul(f32x4.mul(mv, dx), f32x4.convert_i32x4_s(imin)));
    acc = f32x4.add(acc, t);
    q += 704;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  storeRows4(out, os, acc);
}

/** One Q6_K row's slice (n, j) (see dot4_q6_kx): the 4 groups' pmaddubsw pair sums scaled by their int8 scales. */
@inline function slice6(xa: usize, La: v128, Lb: v128, H: v128, sc: v128, lo: v128, hb: v128): v128 {
  const p0 = pdot(xa, v128.or(v128.and(La, lo), v128.and(i16x8.shl(H, 4), hb)));
  const p1 = pdot(xa + 32, v128.or(v128.and(Lb, lo), v128.and(i16x8.shl(H, 2), hb)));
  const p2 = pdot(xa + 64, v128.or(v128.and(i16x8.shr_u(La, 4), lo), v128.and(H, hb)));
  const p3 = pdot(xa + 96, v128.or(v128.and(i16x8.shr_u(Lb, 4), lo), v128.and(i16x8.shr_u(H, 2), hb)));
  const sd = i16x8.shuffle(sc, sc, 0, 0, 2, 2, 4, 4, 6, 6);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(p0, bc32(sd, 0)), i32x4.dot_i16x8_s(p1, bc32(sd, 1))),
    i32x4.add(i32x4.dot_i16x8_s(p2, bc32(sd, 2)), i32x4.dot_i16x8_s(p3, bc32(sd, 3))));
}

/** Two rows of a K_Q6_KX4 super-block (block_q6_K at b and b + 210), one slice loop for both (each activation
 * vector loaded once for the two rows). Returns [Σ_b, Σ_c, Σ_b, Σ_c] (the −32 offset included). */
@inline function pair_q6_kx(b: usize, x8: usize, bs0: v128, bs1: v128): v128 {
  const c = b + 210;
  const ob = i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(b + 192), bs0), i32x4.dot_i16x8_s(v128.load8x8_s(b + 200), bs1));
  const oc = i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(c + 192), bs0), i32x4.dot_i16x8_s(v128.load8x8_s(c + 200), bs1));
  let ia = i32x4.add(ob, ob), ic = i32x4.add(oc, oc);
  let ql = b, qh = b + 128, sp = b + 192, xa = x8;
  for (let it = 0; it < 4; it++) {
    const lo = v128.load(Q6_MASKS), hb = v128.load(Q6_MASKS, 16);
    ia = i32x4.add(ia, slice6(xa, v128.load(ql), v128.load(ql, 32), v128.load(qh), v128.load8x8_s(sp), lo, hb));
    ic = i32x4.add(ic, slice6(xa, v128.load(ql, 210), v128.load(ql, 242), v128.load(qh, 210), v128.load8x8_s(sp + 210), lo, hb));
    const odd = <usize>(it & 1);
    ql += 16 + (odd << 5);
    qh += 16;
    sp += 1 + odd * 6;
    xa += 16 + odd * 96;
  }
  const t = i32x4.add(i32x4.shuffle(ia, ic, 0, 1, 4, 5), i32x4.shuffle(ia, ic, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(t, t, 0, 2, 0, 2), i32x4.shuffle(t, t, 1, 3, 1, 3));
}

/** K_Q6_KX4: 4 interleaved block_q6_K rows (super-block s of row k at s·840 + k·210; ql[128] @0, qh[64]
 * @128, int8 scales[16] @192, d f16 @208), one Q8_K activation row; out[k·os] = Σ_s fr(fr(d_k·xd_s)·isum)
 * accumulated in s order (f32), isum = Σ_g sc_g·(q_g·x_g) − 32·Σ_g sc_g·Σx_g with q the unsigned 6-bit codes
 * (exact: |pmaddubsw pair sum| ≤ 2·63·127 < 2^15, |isum| < 2^29). Slice (n, j), n the 128-element half and
 * j < 2, holds the elements 128n + 16j + {0, 32, 64, 96} + 0…15 (dequantize_row_q6_K order: ql[16j…] and
 * ql[32+16j…] low, then high nibbles, with bit pairs 0–1, 2–3, 4–5, 6–7 of qh[16j…]); their groups'
 * scales are lanes 0, 2, 4, 6 of the 8 scales loaded from 192 + 8n + j. */
/** 0x0f and 0x30 in every byte: K_Q6_KX4's masks, loaded at each use (a load, not a register TurboFan spills) */
const Q6_MASKS = memory.data<u8>([
  0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,
  0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30,
], 16);

@inline function dot4_q6_kx(q: usize, lut: usize, x8: usize, xd: usize, xs: usize, nsb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0);
  for (let s = 0; s < nsb; s++) {
    // −16·Σx per 16, shared by the 4 rows (the code sums are i16; |Σx| ≤ 16·127, so |16·Σx| ≤ 32512 fits i16)
    const bs0 = i16x8.mul(v128.load(xs), i16x8.splat(-16)), bs1 = i16x8.mul(v128.load(xs, 16), i16x8.splat(-16));
    // rows 0, 1 and rows 2, 3 (pair_q6_kx): [Σ row 0, Σ row 1, Σ row 0, Σ row 1]
    const h01 = pair_q6_kx(q, x8, bs0, bs1);
    const h23 = pair_q6_kx(q + 420, x8, bs0, bs1);
    const isum = i32x4.shuffle(h01, h23, 0, 1, 4, 5);
    const dv = f16Rows4(q + 208, 210, lut);
    acc = f32x4.add(acc, f32x4.mul(f32x4.mul(dv, f32x4.splat(load<f32>(xd))), f32x4.convert_i32x4_s(isum)));
    q += 840;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  storeRows4(out, os, acc);
}

// ---- prefill tiles: 4 interleaved rows × TT tokens (4 or 2) per pass over a row group's super-blocks. Each
// 64-element slice of a row is unpacked once (nibbles masked and shifted, the sub-block scales broadcast) and
// dotted with the TT tokens' activations; per token the integer sums are the mat-vec's (exact, so any
// association gives the same integers) and the float step per super-block is the mat-vec's expression, so every
// output equals the mat-vec's (dot4_*) bit for bit. xst / dst / sst: bytes between two tokens' codes, scales,
// sum records; os: bytes between two tokens' outputs.

/** One token's Q4_K / Q5_K slice: ia + sc0·Σ(lo pair sums) + sc1·Σ(hi pair sums) (as dot4_q4_kx's body) */
@inline function kTok45(ia: v128, xp: usize, l0: v128, l1: v128, u0: v128, u1: v128, s0: v128, s1: v128): v128 {
  const lo = i16x8.add(pdot(xp, l0), pdot(xp + 16, l1));
  const hi = i16x8.add(pdot(xp + 32, u0), pdot(xp + 48, u1));
  return i32x4.add(ia, i32x4.add(i32x4.dot_i16x8_s(lo, s0), i32x4.dot_i16x8_s(hi, s1)));
}

/** One token's super-block step: acc + (fr(dv·dx)·isum − fr(mv·dx)·imin), dot4_q4_kx's expression */
@inline function kStep45(acc: v128, dv: v128, mv: v128, xd: usize, isum: v128, imin: v128): v128 {
  const dx = f32x4.splat(load<f32>(xd));
  return f32x4.add(acc, f32x4.sub(f32x4.mul(f32x4.mul(dv, dx), f32x4.convert_i32x4_s(isum)), f32x4.mul(f32x4.mul(mv, dx), f32x4.convert_i32x4_s(imin))));
}

/** Prefill on K_Q4_KX4 (q5 = false, 144 B blocks) or K_Q5_KX4 (q5, 176 B): 4 rows × tt tokens. */
@inline function tile4xT_q45_kx(q5: bool, tt: i32, q: usize, lut: usize, x8: usize, xd: usize, xs: usize, nsb: i32, xst: usize, dst: usize, sst: usize, out: usize, os: usize): void {
  const bs: usize = q5 ? 176 : 144;
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  let mk = i8x16.splat(<i8>(0x0f | (nsb >> 31))); // 0x0f, opaque to binaryen (see above)
  let m10 = i8x16.splat(<i8>(0x10 | (nsb >> 31))); // 0x10
  for (let s = 0; s < nsb; s++) {
    let is0 = i32x4.splat(0), is1 = i32x4.splat(0), is2 = i32x4.splat(0), is3 = i32x4.splat(0);
    let im0 = i32x4.splat(0), im1 = i32x4.splat(0), im2 = i32x4.splat(0), im3 = i32x4.splat(0);
    for (let k: usize = 0; k < 4; k++) {
      const b = q + k * bs;
      const smv = q4kScaleMins(b);
      let sc = i16x8.extend_low_i8x16_u(smv);
      let h0 = i32x4.splat(0), h1 = i32x4.splat(0);
      if (q5) {
        h0 = v128.load(b + 16);
        h1 = v128.load(b + 32);
      }
      let ia0 = i32x4.splat(0), ia1 = i32x4.splat(0), ia2 = i32x4.splat(0), ia3 = i32x4.splat(0);
      for (let p: usize = 0; p < 4; p++) {
        const v0 = v128.load(b + (q5 ? 48 : 16) + (p << 5));
        const v1 = v128.load(b + (q5 ? 64 : 32) + (p << 5));
        let l0 = v128.and(v0, mk), l1 = v128.and(v1, mk);
        let u0 = v128.and(i16x8.shr_u(v0, 4), mk), u1 = v128.and(i16x8.shr_u(v1, 4), mk);
        if (q5) {
          l0 = v128.or(l0, v128.and(i16x8.shl(h0, 4), m10));
          l1 = v128.or(l1, v128.and(i16x8.shl(h1, 4), m10));
          u0 = v128.or(u0, v128.and(i16x8.shl(h0, 3), m10));
          u1 = v128.or(u1, v128.and(i16x8.shl(h1, 3), m10));
          h0 = i16x8.shr_u(h0, 2);
          h1 = i16x8.shr_u(h1, 2);
        }
        const sd = i16x8.shuffle(sc, sc, 0, 0, 1, 1, 0, 0, 1, 1);
        const s0 = bc32(sd, 0), s1 = bc32(sd, 1);
        const xp = x8 + (p << 6);
        ia0 = kTok45(ia0, xp, l0, l1, u0, u1, s0, s1);
        ia1 = kTok45(ia1, xp + xst, l0, l1, u0, u1, s0, s1);
        if (tt == 4) {
          ia2 = kTok45(ia2, xp + 2 * xst, l0, l1, u0, u1, s0, s1);
          ia3 = kTok45(ia3, xp + 3 * xst, l0, l1, u0, u1, s0, s1);
        }
        sc = i8x16.shuffle(sc, sc, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3);
        mk = keep(mk);
        if (q5) m10 = keep(m10);
      }
      const mins = i16x8.extend_high_i8x16_u(smv);
      const g0 = hsumPair(ia0, i32x4.dot_i16x8_s(mins, v128.load(xs, 32)));
      is0 = i32x4.shuffle(is0, g0, 1, 2, 3, 4);
      im0 = i32x4.shuffle(im0, g0, 1, 2, 3, 6);
      const g1 = hsumPair(ia1, i32x4.dot_i16x8_s(mins, v128.load(xs + sst, 32)));
      is1 = i32x4.shuffle(is1, g1, 1, 2, 3, 4);
      im1 = i32x4.shuffle(im1, g1, 1, 2, 3, 6);
      if (tt == 4) {
        const g2 = hsumPair(ia2, i32x4.dot_i16x8_s(mins, v128.load(xs + 2 * sst, 32)));
        is2 = i32x4.shuffle(is2, g2, 1, 2, 3, 4);
        im2 = i32x4.shuffle(im2, g2, 1, 2, 3, 6);
        const g3 = hsumPair(ia3, i32x4.dot_i16x8_s(mins, v128.load(xs + 3 * sst, 32)));
        is3 = i32x4.shuffle(is3, g3, 1, 2, 3, 4);
        im3 = i32x4.shuffle(im3, g3, 1, 2, 3, 6);
      }
    }
    const dv = f16Rows4(q, bs, lut);
    const mv = f16Rows4(q + 2, bs, lut);
    acc0 = kStep45(acc0, dv, mv, xd, is0, im0);
    acc1 = kStep45(acc1, dv, mv, xd + dst, is1, im1);
    if (tt == 4) {
      acc2 = kStep45(acc2, dv, mv, xd + 2 * dst, is2, im2);
      acc3 = kStep45(acc3, dv, mv, xd + 3 * dst, is3, im3);
    }
    q += 4 * bs;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  storeTile(out, os, tt, acc0, acc1, acc2, acc3);
}

/** One token's Q6_K slice: ia + Σ_i sc_i·Σ(pair sums of u_i) (as dot4_q6_kx's body) */
@inline function kTok6(ia: v128, xa: usize, u0: v128, u1: v128, u2: v128, u3: v128, s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  return i32x4.add(ia, i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(pdot(xa, u0), s0), i32x4.dot_i16x8_s(pdot(xa + 32, u1), s1)),
    i32x4.add(i32x4.dot_i16x8_s(pdot(xa + 64, u2), s2), i32x4.dot_i16x8_s(pdot(xa + 96, u3), s3))));
}

/** A Q6_K row's −32·Σ_g sc_g·Σx_g for the token whose sum record is at r (dot4_q6_kx's start value) */
@inline function kOff6(b: usize, r: usize): v128 {
  const off = i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(b + 192), v128.load(r)), i32x4.dot_i16x8_s(v128.load8x8_s(b + 200), v128.load(r, 16)));
  return i32x4.neg(i32x4.shl(off, 5));
}

/** One token's Q6_K super-block step: acc + fr(dv·dx)·isum, dot4_q6_kx's expression */
@inline function kStep6(acc: v128, dv: v128, xd: usize, isum: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.mul(dv, f32x4.splat(load<f32>(xd))), f32x4.convert_i32x4_s(isum)));
}

/** Prefill on K_Q6_KX4: 4 rows × tt tokens. */
@inline function tile4xT_q6_kx(tt: i32, q: usize, lut: usize, x8: usize, xd: usize, xs: usize, nsb: i32, xst: usize, dst: usize, sst: usize, out: usize, os: usize): void {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
  let lo = i8x16.splat(<i8>(0x0f | (nsb >> 31))); // 0x0f, opaque to binaryen (see above)
  let hb = i8x16.splat(<i8>(0x30 | (nsb >> 31))); // 0x30
  for (let s = 0; s < nsb; s++) {
    let is0 = i32x4.splat(0), is1 = i32x4.splat(0), is2 = i32x4.splat(0), is3 = i32x4.splat(0);
    for (let k: usize = 0; k < 4; k++) {
      const b = q + k * 210;
      let ia0 = kOff6(b, xs), ia1 = kOff6(b, xs + sst);
      let ia2 = i32x4.splat(0), ia3 = i32x4.splat(0);
      if (tt == 4) {
        ia2 = kOff6(b, xs + 2 * sst);
        ia3 = kOff6(b, xs + 3 * sst);
      }
      for (let it: usize = 0; it < 4; it++) {
        const n = it >> 1, j = it & 1;
        const ql = b + (n << 6) + (j << 4);
        const La = v128.load(ql), Lb = v128.load(ql, 32);
        const H = v128.load(b + 128 + (n << 5) + (j << 4));
        const sc = v128.load8x8_s(b + 192 + (n << 3) + j);
        const u0 = v128.or(v128.and(La, lo), v128.and(i16x8.shl(H, 4), hb));
        const u1 = v128.or(v128.and(Lb, lo), v128.and(i16x8.shl(H, 2), hb));
        const u2 = v128.or(v128.and(i16x8.shr_u(La, 4), lo), v128.and(H, hb));
        const u3 = v128.or(v128.and(i16x8.shr_u(Lb, 4), lo), v128.and(i16x8.shr_u(H, 2), hb));
        const sd = i16x8.shuffle(sc, sc, 0, 0, 2, 2, 4, 4, 6, 6);
        const s0 = bc32(sd, 0), s1 = bc32(sd, 1), s2 = bc32(sd, 2), s3 = bc32(sd, 3);
        const xa = x8 + (n << 7) + (j << 4);
        ia0 = kTok6(ia0, xa, u0, u1, u2, u3, s0, s1, s2, s3);
        ia1 = kTok6(ia1, xa + xst, u0, u1, u2, u3, s0, s1, s2, s3);
        if (tt == 4) {
          ia2 = kTok6(ia2, xa + 2 * xst, u0, u1, u2, u3, s0, s1, s2, s3);
          ia3 = kTok6(ia3, xa + 3 * xst, u0, u1, u2, u3, s0, s1, s2, s3);
        }
        lo = keep(lo);
        hb = keep(hb);
      }
      is0 = i32x4.shuffle(is0, hsumPair(ia0, ia0), 1, 2, 3, 4);
      is1 = i32x4.shuffle(is1, hsumPair(ia1, ia1), 1, 2, 3, 4);
      if (tt == 4) {
        is2 = i32x4.shuffle(is2, hsumPair(ia2, ia2), 1, 2, 3, 4);
        is3 = i32x4.shuffle(is3, hsumPair(ia3, ia3), 1, 2, 3, 4);
      }
    }
    const dv = f16Rows4(q + 208, 210, lut);
    acc0 = kStep6(acc0, dv, xd, is0);
    acc1 = kStep6(acc1, dv, xd + dst, is1);
    if (tt == 4) {
      acc2 = kStep6(acc2, dv, xd + 2 * dst, is2);
      acc3 = kStep6(acc3, dv, xd + 3 * dst, is3);
    }
    q += 840;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  storeTile(out, os, tt, acc0, acc1, acc2, acc3);
}

// ---- Q6_K prefill on a panel (abi.ts Q6_PANEL_*): per row group and token block the codes are unpacked once
// into bytes in element order with every sub-block's scale as an (sc, sc) i16 pair, so each token's pass is
// the mat-vec's integer work on plain loads (4 pmaddubsw, 4 pmaddwd, 4 pshufd broadcasts, adds per 64 weights
// and row), with no unpacking and no weight vector live across the body. Layout per super-block: the 4 rows'
// f32 d (16 B), then per row k at 16 + k·Q6P_ROW: slice m (elements 64m…64m+63) at m·Q6P_SLICE — 64 code bytes,
// then the 4 pairs of groups 4m…4m+3 (16 B) — and the 16 scales as i16 at 4·Q6P_SLICE. A pair per group as a
// whole 16-byte vector (128 B a slice, 70 KB at 8192 columns: beyond L1) was slower (1.07× instead of 1.17× of
// the tile there); two tokens per pass over the panel were no faster (1.00×).

/** bytes of a panel slice (64 codes, the 4 (sc, sc) pairs) and of a row's part of a super-block (+ 16 i16 scales) */
const Q6P_SLICE: usize = 80;
const Q6P_ROW: usize = 4 * Q6P_SLICE + 32;

/** One row group's panel at pp from its K_Q6_KX4 super-blocks at q (nsb of them). */
@inline function q6Panel(q: usize, lut: usize, nsb: i32, pp: usize): void {
  let lo = i8x16.splat(<i8>(0x0f | (nsb >> 31))); // 0x0f, opaque to binaryen (see above)
  let hb = i8x16.splat(<i8>(0x30 | (nsb >> 31))); // 0x30
  for (let s = 0; s < nsb; s++) {
    v128.store(pp, f16Rows4(q + 208, 210, lut));
    for (let k: usize = 0; k < 4; k++) {
      const b = q + k * 210, r = pp + 16 + k * Q6P_ROW;
      for (let it: usize = 0; it < 4; it++) {
        // slice (n, j) of dot4_q6_kx: u_i = elements 128n + 16j + 32i … + 15 → slice 2n + (i >> 1), byte 16j + 32(i & 1)
        const n = it >> 1, j = it & 1;
        const ql = b + (n << 6) + (j << 4);
        const La = v128.load(ql), Lb = v128.load(ql, 32);
        const H = v128.load(b + 128 + (n << 5) + (j << 4));
        const d = r + n * 2 * Q6P_SLICE + (j << 4);
        v128.store(d, v128.or(v128.and(La, lo), v128.and(i16x8.shl(H, 4), hb)));
        v128.store(d, v128.or(v128.and(Lb, lo), v128.and(i16x8.shl(H, 2), hb)), 32);
        v128.store(d, v128.or(v128.and(i16x8.shr_u(La, 4), lo), v128.and(H, hb)), Q6P_SLICE);
        v128.store(d, v128.or(v128.and(i16x8.shr_u(Lb, 4), lo), v128.and(i16x8.shr_u(H, 2), hb)), Q6P_SLICE + 32);
        lo = keep(lo);
        hb = keep(hb);
      }
      for (let g: usize = 0; g < 16; g++) {
        const sc = <i32>load<i8>(b + 192 + g);
        store<i32>(r + ((g >> 2) * Q6P_SLICE) + 64 + ((g & 3) << 2), (sc & 0xffff) | (sc << 16));
      }
      v128.store(r + 4 * Q6P_SLICE, v128.load8x8_s(b + 192));
      v128.store(r + 4 * Q6P_SLICE, v128.load8x8_s(b + 200), 16);
    }
    q += 840;
    pp += Q6_PANEL_SB_BYTES;
  }
}

/** One token on a row group's panel: dot4_q6_kx's integer sums and float steps (so its bits), out[k·os] = row k. */
@inline function dot4_q6_panel(pp: usize, x8: usize, xd: usize, xs: usize, nsb: i32, out: usize, os: usize): void {
  let acc = f32x4.splat(0);
  for (let s = 0; s < nsb; s++) {
    let isum = i32x4.splat(0);
    const bs0 = i16x8.mul(v128.load(xs), i16x8.splat(-16)), bs1 = i16x8.mul(v128.load(xs, 16), i16x8.splat(-16));
    let r = pp + 16;
    for (let k = 0; k < 4; k++) {
      // −32·Σ_g sc_g·Σx_g = 2·Σ_g sc_g·(−16·Σx_g), as dot4_q6_kx
      const off = i32x4.add(i32x4.dot_i16x8_s(v128.load(r, 4 * Q6P_SLICE), bs0), i32x4.dot_i16x8_s(v128.load(r, 4 * Q6P_SLICE + 16), bs1));
      let ia = i32x4.add(off, off);
      let w = r, xa = x8;
      for (let m = 0; m < 4; m++) {
        const sd = v128.load(w, 64);
        ia = i32x4.add(ia, i32x4.add(
          i32x4.add(i32x4.dot_i16x8_s(pdot(xa, v128.load(w)), bc32(sd, 0)), i32x4.dot_i16x8_s(pdot(xa + 16, v128.load(w, 16)), bc32(sd, 1))),
          i32x4.add(i32x4.dot_i16x8_s(pdot(xa + 32, v128.load(w, 32)), bc32(sd, 2)), i32x4.dot_i16x8_s(pdot(xa + 48, v128.load(w, 48)), bc32(sd, 3)))));
        w += Q6P_SLICE;
        xa += 64;
      }
      isum = i32x4.shuffle(isum, hsumPair(ia, ia), 1, 2, 3, 4);
      r += Q6P_ROW;
    }
    acc = f32x4.add(acc, f32x4.mul(f32x4.mul(v128.load(pp), f32x4.splat(load<f32>(xd))), f32x4.convert_i32x4_s(isum)));
    pp += Q6_PANEL_SB_BYTES;
    x8 += 256;
    xd += 4;
    xs += Q8K_SUM_BYTES;
  }
  storeRows4(out, os, acc);
}

/** Row groups [g0, g1) of a K_Q4_KX4 (bs = 144), K_Q5_KX4 (176) or K_Q6_KX4 (210) job, every activation row of the job
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
  // tokens in blocks whose Q8_K codes stay in L2, every token of a block on a row group while it is in L1
  const tb = prefillTokenBlock(cols, 1);
  // Q6_K: a panel slot (D_W2, D_GROUP slots), when the row fits one and some block has ≥ 4 tokens
  const pan = bs == 210 ? load<u32>(desc + (D_W2 << 2)) as usize : 0;
  const nslots = load<i32>(desc + (D_GROUP << 2));
  const slot = pan != 0 && n >= 4 && nsb <= Q6_PANEL_MAX_SB ? claimPanelSlot(pan, nslots) : -1;
  const pp = slot >= 0 ? pan + (<usize>((nslots + 15) >> 4) << 6) + <usize>slot * Q6_PANEL_SLOT_BYTES : 0;
  for (let t0 = 0; t0 < n; t0 += tb) {
  const t1 = min(n, t0 + tb);
  for (let g = g0; g < g1; g++) {
    const q = w0 + <usize>g * gb;
    const o0 = out + (<usize>g << 4);
    const os = <usize>rows << 2;
    const xst = <usize>cols, dst = unsb * 4, sst = unsb * Q8K_SUM_BYTES;
    let t = t0;
    if (bs == 210 && pp != 0 && t1 - t0 >= 4) {
      q6Panel(q, lut, nsb, pp);
      for (; t < t1; t++) {
        const ut = <usize>t;
        dot4_q6_panel(pp, x8 + ut * xst, xd + ut * dst, xs + ut * sst, nsb, o0 + ut * os, 4);
      }
      continue;
    }
    // prefill: four, then two tokens per pass over the group's super-blocks (tile4xT_*), the rest one by one
    for (; t + 4 <= t1; t += 4) {
      const ut = <usize>t;
      if (bs == 210) tile4xT_q6_kx(4, q, lut, x8 + ut * xst, xd + ut * dst, xs + ut * sst, nsb, xst, dst, sst, o0 + ut * os, os);
      else tile4xT_q45_kx(bs == 176, 4, q, lut, x8 + ut * xst, xd + ut * dst, xs + ut * sst, nsb, xst, dst, sst, o0 + ut * os, os);
    }
    for (; t + 2 <= t1; t += 2) {
      const ut = <usize>t;
      if (bs == 210) tile4xT_q6_kx(2, q, lut, x8 + ut * xst, xd + ut * dst, xs + ut * sst, nsb, xst, dst, sst, o0 + ut * os, os);
      else tile4xT_q45_kx(bs == 176, 2, q, lut, x8 + ut * xst, xd + ut * dst, xs + ut * sst, nsb, xst, dst, sst, o0 + ut * os, os);
    }
    for (; t < t1; t++) {
      const ut = <usize>t;
      const o = out + (ut * <usize>rows + (<usize>g << 2)) * 4;
      if (bs == 144) dot4_q4_kx(q, lut, x8 + ut * <usize>cols, xd + ut * unsb * 4, xs + ut * unsb * Q8K_SUM_BYTES, nsb, o, 4);
      else if (bs == 176) dot4_q5_kx(q, lut, x8 + ut * <usize>cols, xd + ut * unsb * 4, xs + ut * unsb * Q8K_SUM_BYTES, nsb, o, 4);
      else dot4_q6_kx(q, lut, x8 + ut * <usize>cols, xd + ut * unsb * 4, xs + ut * unsb * Q8K_SUM_BYTES, nsb, o, 4);
    }
  }
  }
  if (slot >= 0) atomic.store<i32>(pan + (<usize>slot << 2), 0);
}

export function run_k24(desc: usize, g0: i32, g1: i32): void { runKX4(144, desc, g0, g1); }
export function run_k25(desc: usize, g0: i32, g1: i32): void { runKX4(210, desc, g0, g1); }
export function run_k26(desc: usize, g0: i32, g1: i32): void { runKX4(176, desc, g0, g1); }
