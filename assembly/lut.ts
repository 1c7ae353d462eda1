// Packed quantlab lookup-table layouts (src/kernels/packed.ts family "lut", kinds K_LUT* in abi.ts): codes of
// 1–8 bits as the QTensor stores them, an f64 level table, f32 scale (and zero) per (row, group); the weight
// is w = fround((table[c] − z)·s), computed in f64 exactly as quant/tensor.ts dequantize computes it in JS.
// Accumulation as assembly/index.ts dot_ug: whole 16-code chunks of a group in four f32x4 accumulators, the
// rest of a group in a scalar f32 accumulator added at the end, separate multiply and add (no FMA), so the
// order of operations depends only on the shape: the same bits on every thread count and in both builds.
import { D_ROWS, D_COLS, D_W0, D_W1, D_W2, D_XF, D_X16, D_X8, D_XD, D_XS, D_OUT, D_N, D_GROUP, D_LUT, D_BITS, Q8K_SUM_BYTES } from "./abi";
import { f16x4_to_f32 } from "./f16";
import { dptr, dint } from "./desc";

@inline function hsum4(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** 16 codes of b ≤ 4 bits starting at bit `sh` (0..7) of the byte at p → u8x16 in code order. The stream is
 * first shifted to start on bit 0 (a 64-bit shift; 9 bytes read, the host pads the codes). 4 bits: and/shift
 * + shuffle. 1–3 bits: code j spans bytes lo = ⌊jb/8⌋ and lo+1 at bit offset s = jb mod 8; a swizzle puts
 * the two bytes in an i16 lane, a multiply by 2^(16−b−s) moves the code's top bit to bit 15 (mod 2^16) and
 * a shift right by 16−b leaves the code. Codes 8..15 sit b bytes further. */
@inline function codes16(b: i32, p: usize, sh: u32): v128 {
  const B = sh == 0 ? v128.load64_zero(p) : i64x2.splat(<i64>((load<u64>(p) >> <u64>sh) | (<u64>load<u8>(p + 8) << <u64>(64 - sh))));
  if (b == 4) {
    const lo = v128.and(B, i8x16.splat(0x0f));
    const hi = i8x16.shr_u(B, 4);
    return i8x16.shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  }
  let l: v128, h: v128;
  if (b == 1) {
    const m = i16x8(-32768, 16384, 8192, 4096, 2048, 1024, 512, 256);
    l = i16x8.mul(i8x16.swizzle(B, i8x16(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1)), m);
    h = i16x8.mul(i8x16.swizzle(B, i8x16(1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2)), m);
  } else if (b == 2) {
    const m = i16x8(16384, 4096, 1024, 256, 16384, 4096, 1024, 256);
    l = i16x8.mul(i8x16.swizzle(B, i8x16(0, 1, 0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 1, 2)), m);
    h = i16x8.mul(i8x16.swizzle(B, i8x16(2, 3, 2, 3, 2, 3, 2, 3, 3, 4, 3, 4, 3, 4, 3, 4)), m);
  } else {
    const m = i16x8(8192, 1024, 128, 4096, 512, 64, 2048, 256);
    l = i16x8.mul(i8x16.swizzle(B, i8x16(0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 2, 3, 2, 3)), m);
    h = i16x8.mul(i8x16.swizzle(B, i8x16(3, 4, 3, 4, 3, 4, 4, 5, 4, 5, 4, 5, 5, 6, 5, 6)), m);
  }
  return i8x16.narrow_i16x8_u(i16x8.shr_u(l, 16 - b), i16x8.shr_u(h, 16 - b));
}

/** Code of element e (row-relative) of a b-bit LSB-first stream starting at bit o of the byte at c (reads 2 bytes). */
@inline function codeAt(b: i32, c: usize, o: u32, e: i32): u32 {
  const bit = <usize>o + <usize>e * <usize>b;
  return (<u32>load<u16>(c + (bit >> 3)) >> <u32>(bit & 7)) & ((<u32>1 << <u32>b) - 1);
}

/** Table entries 4i..4i+3 as f32x4: f32((lut[c] − z)·s) in f64 (f32x4.demote rounds to nearest, as fround). */
@inline function entries4(lut: usize, zv: v128, sv: v128): v128 {
  const d0 = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.sub(v128.load(lut), zv), sv));
  const d1 = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.sub(v128.load(lut, 16), zv), sv));
  return i8x16.shuffle(d0, d1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
}

/** bytes of 4 f32 entries regrouped by byte position: i32 lane k = byte k of entries 0..3 */
@inline function bytesByPos(t: v128): v128 {
  return i8x16.shuffle(t, t, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
}

/** One row · x for codes of b ≤ 4 bits: per group, the 16 weights fround((lut[c] − z)·s) as 4 byte planes
 * (plane k, byte c = byte k of entry c), so 16 codes become 16 f32 weights with 4 swizzles and 8 shuffles. */
@inline function dot_lut(b: i32, c: usize, o: u32, s: usize, e8: bool, z: usize, lut: usize, x: usize, cols: i32, g: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let st: f32 = 0;
  let j = 0;
  for (let j0 = 0; j0 < cols; j0 += g, j++) {
    const len = min(g, cols - j0);
    // e8: the scale as its f32 exponent byte (every scale a power of two, or 0), shifted back into place: exact
    const sd = e8 ? <f64>reinterpret<f32>(<u32>load<u8>(s + <usize>j) << 23) : <f64>load<f32>(s + (<usize>j << 2));
    const zd = z != 0 ? <f64>load<f32>(z + (<usize>j << 2)) : 0.0;
    let i = 0;
    if (len >= 16) {
      const sv = f64x2.splat(sd), zv = f64x2.splat(zd);
      const u0 = bytesByPos(entries4(lut, zv, sv));
      const u1 = bytesByPos(entries4(lut + 32, zv, sv));
      const u2 = bytesByPos(entries4(lut + 64, zv, sv));
      const u3 = bytesByPos(entries4(lut + 96, zv, sv));
      // 4×4 transpose of i32 lanes: plane k = lane k of u0..u3
      const t0 = i8x16.shuffle(u0, u1, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
      const t1 = i8x16.shuffle(u0, u1, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
      const t2 = i8x16.shuffle(u2, u3, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
      const t3 = i8x16.shuffle(u2, u3, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
      const p0 = i8x16.shuffle(t0, t2, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      const p1 = i8x16.shuffle(t0, t2, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
      const p2 = i8x16.shuffle(t1, t3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      const p3 = i8x16.shuffle(t1, t3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
      for (; i + 16 <= len; i += 16) {
        const e = <usize>(j0 + i);
        const xi = x + (e << 2);
        const bit = <usize>o + e * <usize>b;
        const q = codes16(b, c + (bit >> 3), <u32>(bit & 7));
        const b0 = i8x16.swizzle(p0, q), b1 = i8x16.swizzle(p1, q), b2 = i8x16.swizzle(p2, q), b3 = i8x16.swizzle(p3, q);
        const l01 = i8x16.shuffle(b0, b1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const h01 = i8x16.shuffle(b0, b1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        const l23 = i8x16.shuffle(b2, b3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const h23 = i8x16.shuffle(b2, b3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        const w0 = i8x16.shuffle(l01, l23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
        const w1 = i8x16.shuffle(l01, l23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
        const w2 = i8x16.shuffle(h01, h23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
        const w3 = i8x16.shuffle(h01, h23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
        a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(xi)));
        a1 = f32x4.add(a1, f32x4.mul(w1, v128.load(xi, 16)));
        a2 = f32x4.add(a2, f32x4.mul(w2, v128.load(xi, 32)));
        a3 = f32x4.add(a3, f32x4.mul(w3, v128.load(xi, 48)));
      }
    }
    for (; i < len; i++) {
      const e = j0 + i;
      const w = <f32>((load<f64>(lut + (<usize>codeAt(b, c, o, e) << 3)) - zd) * sd);
      st += w * load<f32>(x + (<usize>e << 2));
    }
  }
  return hsum4(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))) + st;
}

/** Weight of element e for the gather kernel: f32((lut[c] − z)·s). */
@inline function gw(b: i32, c: usize, o: u32, lut: usize, e: i32, zd: f64, sd: f64): f32 {
  return <f32>((load<f64>(lut + (<usize>codeAt(b, c, o, e) << 3)) - zd) * sd);
}

@inline function gw4(b: i32, c: usize, o: u32, lut: usize, e: i32, zd: f64, sd: f64): v128 {
  let v = f32x4.splat(gw(b, c, o, lut, e, zd, sd));
  v = f32x4.replace_lane(v, 1, gw(b, c, o, lut, e + 1, zd, sd));
  v = f32x4.replace_lane(v, 2, gw(b, c, o, lut, e + 2, zd, sd));
  return f32x4.replace_lane(v, 3, gw(b, c, o, lut, e + 3, zd, sd));
}

/** One row · x for codes of 5–8 bits: each weight looked up in the f64 table (scalar gather), 4 lanes at a time. */
@inline function dot_lutw(b: i32, c: usize, o: u32, s: usize, e8: bool, z: usize, lut: usize, x: usize, cols: i32, g: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let st: f32 = 0;
  let j = 0;
  for (let j0 = 0; j0 < cols; j0 += g, j++) {
    const len = min(g, cols - j0);
    // e8: the scale as its f32 exponent byte (every scale a power of two, or 0), shifted back into place: exact
    const sd = e8 ? <f64>reinterpret<f32>(<u32>load<u8>(s + <usize>j) << 23) : <f64>load<f32>(s + (<usize>j << 2));
    const zd = z != 0 ? <f64>load<f32>(z + (<usize>j << 2)) : 0.0;
    let i = 0;
    for (; i + 16 <= len; i += 16) {
      const e = j0 + i;
      const xi = x + (<usize>e << 2);
      a0 = f32x4.add(a0, f32x4.mul(gw4(b, c, o, lut, e, zd, sd), v128.load(xi)));
      a1 = f32x4.add(a1, f32x4.mul(gw4(b, c, o, lut, e + 4, zd, sd), v128.load(xi, 16)));
      a2 = f32x4.add(a2, f32x4.mul(gw4(b, c, o, lut, e + 8, zd, sd), v128.load(xi, 32)));
      a3 = f32x4.add(a3, f32x4.mul(gw4(b, c, o, lut, e + 12, zd, sd), v128.load(xi, 48)));
    }
    for (; i < len; i++) {
      const e = j0 + i;
      st += gw(b, c, o, lut, e, zd, sd) * load<f32>(x + (<usize>e << 2));
    }
  }
  return hsum4(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))) + st;
}

/** Rows [r0, r1) of a K_LUT* job (bits `b` a compile-time constant, 0 = read D_BITS and gather), tokens in
 * blocks of 8 so a block's f32 activations stay in cache while each packed row is reused from L1. */
@inline function runLut(b: i32, desc: usize, r0: i32, r1: i32): void {
  const rows = dint(desc, D_ROWS);
  const cols = dint(desc, D_COLS);
  const w0 = dptr(desc, D_W0);
  const w1 = dptr(desc, D_W1);
  const w2 = dptr(desc, D_W2);
  const xf = dptr(desc, D_XF);
  const out = dptr(desc, D_OUT);
  const n = dint(desc, D_N);
  const g = dint(desc, D_GROUP);
  const lut = dptr(desc, D_LUT);
  // D_BITS: bits per code (read when b = 0), bit 8 = scales as f32 exponent bytes (1 byte per group)
  const flags = dint(desc, D_BITS);
  const bits = b != 0 ? b : flags & 255;
  const e8 = (flags & 256) != 0;
  const nG = (cols + g - 1) / g;
  const ucols = <usize>cols;
  for (let t0 = 0; t0 < n; t0 += 8) {
    const t1 = min(n, t0 + 8);
    for (let r = r0; r < r1; r++) {
      const ur = <usize>r;
      // rows start at bit r·cols·b (any bit: no alignment asked of the shape); in u64, as a big 8-bit
      // tensor's bit count passes 2^32
      const rowBit = <u64>r * <u64>cols * <u64>bits;
      const c = w0 + <usize>(rowBit >> 3);
      const o = <u32>(rowBit & 7);
      const s = w1 + ur * <usize>nG * (e8 ? 1 : 4);
      const z = w2 != 0 ? w2 + ur * <usize>nG * 4 : 0;
      for (let t = t0; t < t1; t++) {
        const ut = <usize>t;
        const xt = xf + ut * ucols * 4;
        const v = b != 0 ? dot_lut(b, c, o, s, e8, z, lut, xt, cols, g) : dot_lutw(bits, c, o, s, e8, z, lut, xt, cols, g);
        store<f32>(out + (ut * <usize>rows + ur) * 4, v);
      }
    }
  }
}

export function run_k17(desc: usize, r0: i32, r1: i32): void { runLut(4, desc, r0, r1); }
export function run_k18(desc: usize, r0: i32, r1: i32): void { runLut(1, desc, r0, r1); }
export function run_k19(desc: usize, r0: i32, r1: i32): void { runLut(2, desc, r0, r1); }
export function run_k20(desc: usize, r0: i32, r1: i32): void { runLut(3, desc, r0, r1); }
export function run_k21(desc: usize, r0: i32, r1: i32): void { runLut(0, desc, r0, r1); }

// ---------------------------------------------------------------- lookup tables × Q8 activations
// K_LUT4Q8 / K_TERN2Q8 (abi.ts): x as Q8 per 32 (codes, f16-rounded scale d_b, code sums per 16), weights
// as integers, one exact integer dot per 32-block. Float order, which the scalar twin matvecLutQ8Ref
// (src/kernels/packed.ts) repeats exactly — K_LUT4Q8 (scalar): per group gi += f32(dot_b)·d_b and gm +=
// d_b·f32(Σx_b), per row acc += gi·s_g and accm += m_g·gm, result acc − accm; K_TERN2Q8 (four lanes): per
// group gi (f32x4) += f32(dot lanes)·d_b, per row acc (f32x4) += gi·s_g, result (acc0 + acc1) + (acc2 + acc3).

/** Σ over 32 nibble codes (ggml order) of t[c]·x as one exact i32, |t| ≤ 8191 (|Σ| < 2^25).
 * SIMD128: the int16 table as two byte planes (4 swizzles), interleaved to i16 lanes, i32x4.dot_i16x8_s with
 * the i16 activation codes. Relaxed: t = 128·h + l with l = t & 127 and h + 64 = (t >> 7) + 64 both in
 * 0..127, the two planes looked up by swizzle and each dotted with the int8 activations by
 * i16x8.relaxed_dot_i8x16_i7x16_s (no i16 overflow: 2·127·127 < 2^15), so Σ t·x = 128·(Σ(h + 64)·x − 64·Σx)
 * + Σ l·x. Both give the same integer. */
/** relaxed-build split path of l4dot32 (off: both builds run the i16 path; see docs/kernels.md) */
const LUT4_RELAXED = false;

@inline function l4dot32(v: v128, tlo: v128, thi: v128, x16: usize, x8: usize, xsum: i32): i32 {
  const lo = v128.and(v, i8x16.splat(0x0f));
  const hi = i8x16.shr_u(v, 4);
  const a = i8x16.swizzle(tlo, lo), b = i8x16.swizzle(thi, lo);
  const c = i8x16.swizzle(tlo, hi), d = i8x16.swizzle(thi, hi);
  let p: v128;
  if (LUT4_RELAXED && ASC_FEATURE_RELAXED_SIMD) {
    const x0 = v128.load(x8), x1 = v128.load(x8, 16);
    const l = i32x4.add(i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x0, a)), i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x1, c)));
    const h = i32x4.add(i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x0, b)), i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x1, d)));
    p = i32x4.add(i32x4.shl(h, 7), l);
    return hsum_i32x4(p) - (xsum << 13);
  }
  const w0 = i8x16.shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const w1 = i8x16.shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const w2 = i8x16.shuffle(c, d, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const w3 = i8x16.shuffle(c, d, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const p0 = i32x4.dot_i16x8_s(w0, v128.load(x16));
  const p1 = i32x4.dot_i16x8_s(w1, v128.load(x16, 16));
  const p2 = i32x4.dot_i16x8_s(w2, v128.load(x16, 32));
  const p3 = i32x4.dot_i16x8_s(w3, v128.load(x16, 48));
  p = i32x4.add(i32x4.add(p0, p1), i32x4.add(p2, p3));
  return hsum_i32x4(p);
}

@inline function hsum_i32x4(v: v128): i32 {
  const s = i32x4.add(v, i8x16.shuffle(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
}

/** One row · Q8 x for K_LUT4Q8: per block an exact integer dot, scalar f32 from there on (see above). */
@inline function dot_lut4q8(c: usize, s: usize, m: usize, tlo: v128, thi: v128, x16: usize, x8: usize, xd: usize, xs: usize, nb: i32, gb: i32): f32 {
  let acc: f32 = 0, accm: f32 = 0;
  let b = 0;
  let j: usize = 0;
  while (b < nb) {
    const be = min(nb, b + gb);
    let gi: f32 = 0, gm: f32 = 0;
    for (; b < be; b++) {
      const ub = <usize>b;
      const xsum = load<i32>(xs + (ub << 3)) + load<i32>(xs + (ub << 3), 4);
      const d = load<f32>(xd + (ub << 2));
      gi += <f32>l4dot32(v128.load(c + (ub << 4)), tlo, thi, x16 + (ub << 6), x8 + (ub << 5), xsum) * d;
      if (m != 0) gm += d * <f32>xsum;
    }
    acc += gi * load<f32>(s + (j << 2));
    if (m != 0) accm += load<f32>(m + (j << 2)) * gm;
    j++;
  }
  return acc - accm;
}

/** 32 ternary codes (8 bytes, 2 bits each: bit 0 = nonzero, bit 1 = negative) · 32 int8 activation codes
 * with no multiply: the code bits become byte masks (swizzle, and, eq), x & nz keeps the nonzero terms,
 * (y ^ neg) − neg negates the −1 ones, and pairwise adds widen the sum (lane k holds elements e with
 * (e & 15) >> 2 = k). */
@inline function t2dot32(c: usize, x8: usize): v128 {
  const v = v128.load64_zero(c);
  const r0 = i8x16.swizzle(v, i8x16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
  const r1 = i8x16.swizzle(v, i8x16(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7));
  const m1 = i8x16(1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16, 64);
  const m2 = i8x16(2, 8, 32, -128, 2, 8, 32, -128, 2, 8, 32, -128, 2, 8, 32, -128);
  const nz0 = i8x16.eq(v128.and(r0, m1), m1), ng0 = i8x16.eq(v128.and(r0, m2), m2);
  const nz1 = i8x16.eq(v128.and(r1, m1), m1), ng1 = i8x16.eq(v128.and(r1, m2), m2);
  const y0 = i8x16.sub(v128.xor(v128.and(v128.load(x8), nz0), ng0), ng0);
  const y1 = i8x16.sub(v128.xor(v128.and(v128.load(x8, 16), nz1), ng1), ng1);
  return i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.extadd_pairwise_i8x16_s(y0), i16x8.extadd_pairwise_i8x16_s(y1)));
}

/** One row · Q8 x for K_TERN2Q8; nb 32-blocks, gb per group; f32x4 lanes as described above. */
@inline function dot_tern2q8(c: usize, s: usize, x8: usize, xd: usize, nb: i32, gb: i32): f32 {
  let acc = f32x4.splat(0);
  let b = 0;
  let j: usize = 0;
  while (b < nb) {
    const be = min(nb, b + gb);
    let gi = f32x4.splat(0);
    for (; b < be; b++) {
      const ub = <usize>b;
      const p = t2dot32(c + (ub << 3), x8 + (ub << 5));
      gi = f32x4.add(gi, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(load<f32>(xd + (ub << 2)))));
    }
    acc = f32x4.add(acc, f32x4.mul(gi, f32x4.splat(load<f32>(s + (j << 2)))));
    j++;
  }
  return hsum4(acc);
}

/** Rows [r0, r1) of a K_LUT4Q8 / K_TERN2Q8 job, tokens in blocks of 8 as runLut. */
@inline function runLutQ8(tern: bool, desc: usize, r0: i32, r1: i32): void {
  const rows = dint(desc, D_ROWS);
  const cols = dint(desc, D_COLS);
  const w0 = dptr(desc, D_W0);
  const w1 = dptr(desc, D_W1);
  const w2 = dptr(desc, D_W2);
  const x16 = dptr(desc, D_X16);
  const x8 = dptr(desc, D_X8);
  const xd = dptr(desc, D_XD);
  const xs = dptr(desc, D_XS);
  const out = dptr(desc, D_OUT);
  const n = dint(desc, D_N);
  const g = dint(desc, D_GROUP);
  const lut = dptr(desc, D_LUT);
  // planes: low and high bytes of t (SIMD128), then t & 127 and (t >> 7) + 64 (relaxed)
  const tlo = tern ? v128.splat<i32>(0) : v128.load(lut + (LUT4_RELAXED && ASC_FEATURE_RELAXED_SIMD ? 32 : 0));
  const thi = tern ? v128.splat<i32>(0) : v128.load(lut + (LUT4_RELAXED && ASC_FEATURE_RELAXED_SIMD ? 48 : 16));
  const nb = cols >> 5, unb = <usize>nb, ucols = <usize>cols;
  const nG = <usize>((cols + g - 1) / g);
  const rowBytes = unb * (tern ? 8 : 16);
  for (let t0 = 0; t0 < n; t0 += 8) {
    const t1 = min(n, t0 + 8);
    for (let r = r0; r < r1; r++) {
      const ur = <usize>r;
      const c = w0 + ur * rowBytes;
      const s = w1 + ur * nG * 4;
      const m = w2 != 0 ? w2 + ur * nG * 4 : 0;
      for (let t = t0; t < t1; t++) {
        const ut = <usize>t;
        const v = tern ? dot_tern2q8(c, s, x8 + ut * ucols, xd + ut * unb * 4, nb, g >> 5)
          : dot_lut4q8(c, s, m, tlo, thi, x16 + ut * ucols * 2, x8 + ut * ucols, xd + ut * unb * 4, xs + ut * unb * 8, nb, g >> 5);
        store<f32>(out + (ut * <usize>rows + ur) * 4, v);
      }
    }
  }
}

export function run_k22(desc: usize, r0: i32, r1: i32): void { runLutQ8(false, desc, r0, r1); }
export function run_k23(desc: usize, r0: i32, r1: i32): void { runLutQ8(true, desc, r0, r1); }

// ---------------------------------------------------------------- 4-bit tables × Q8 activations, 4 rows interleaved

/** relaxed i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw): int8 activation codes × unsigned 0..127 weights */
@inline function rdot(x: v128, u: v128): v128 {
  return i16x8.relaxed_dot_i8x16_i7x16_s(x, u);
}

/** Σ over 16 unsigned bytes u (0..255) × 16 i16 activation codes → 4 i32 lanes (SIMD128 path). */
@inline function u8dot16(u: v128, x16: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(u), v128.load(x16)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(u), v128.load(x16, 16)));
}

/** One row's 32-block (16 bytes of ggml-order nibbles at q) · 32 activation codes: Σ u[c]·x as 4 i32 lanes
 * (exact). mode 0: u = c; 1: u = p0[c] ≤ 63; 2: u ≤ 4095 from the planes p0, p1 (relaxed: u & 63 and u >> 6,
 * each pair of pmaddubsw products ≤ 2·2·63·127 < 2^15 so two add in i16; SIMD128: low and high bytes of u,
 * interleaved to i16 lanes and dotted with the i16 codes). Relaxed, modes 0 and 1: u ≤ 63, as Q4_0's nibbles.
 * The relaxed build looks up with i8x16.relaxed_swizzle (one pshufb: its indices, nibbles, are always < 16, where
 * it equals i8x16.swizzle, which V8 lowers to a saturating add + pshufb). */
@inline function x4dot(mode: i32, q: usize, p0: v128, p1: v128, x16: usize, x8: usize): v128 {
  const v = v128.load(q);
  const lo = v128.and(v, i8x16.splat(0x0f));
  const hi = i8x16.shr_u(v, 4);
  if (ASC_FEATURE_RELAXED_SIMD) {
    const x0 = v128.load(x8), x1 = v128.load(x8, 16);
    if (mode == 2) {
      const l = i16x8.add(rdot(x0, i8x16.relaxed_swizzle(p0, lo)), rdot(x1, i8x16.relaxed_swizzle(p0, hi)));
      const h = i16x8.add(rdot(x0, i8x16.relaxed_swizzle(p1, lo)), rdot(x1, i8x16.relaxed_swizzle(p1, hi)));
      return i32x4.add(i32x4.dot_i16x8_s(h, i16x8.splat(64)), i32x4.extadd_pairwise_i16x8_s(l));
    }
    if (mode == 3) {
      // u ≤ 127: a pair of products is < 2^15, two pairs may not be: widen each before adding
      return i32x4.add(i32x4.extadd_pairwise_i16x8_s(rdot(x0, i8x16.relaxed_swizzle(p0, lo))), i32x4.extadd_pairwise_i16x8_s(rdot(x1, i8x16.relaxed_swizzle(p0, hi))));
    }
    const a = mode == 1 ? i8x16.relaxed_swizzle(p0, lo) : lo;
    const b = mode == 1 ? i8x16.relaxed_swizzle(p0, hi) : hi;
    return i32x4.extadd_pairwise_i16x8_s(i16x8.add(rdot(x0, a), rdot(x1, b)));
  }
  if (mode == 2) {
    const a = i8x16.swizzle(p0, lo), b = i8x16.swizzle(p1, lo);
    const c = i8x16.swizzle(p0, hi), d = i8x16.swizzle(p1, hi);
    const w0 = i8x16.shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const w1 = i8x16.shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const w2 = i8x16.shuffle(c, d, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const w3 = i8x16.shuffle(c, d, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    return i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(w0, v128.load(x16)), i32x4.dot_i16x8_s(w1, v128.load(x16, 16))),
      i32x4.add(i32x4.dot_i16x8_s(w2, v128.load(x16, 32)), i32x4.dot_i16x8_s(w3, v128.load(x16, 48))),
    );
  }
  const a = mode == 1 || mode == 3 ? i8x16.swizzle(p0, lo) : lo;
  const b = mode == 1 || mode == 3 ? i8x16.swizzle(p0, hi) : hi;
  return i32x4.add(u8dot16(a, x16), u8dot16(b, x16 + 32));
}

/** One row's 32 int8 codes at q · 32 activation codes (i16) → 4 i32 lanes, exact (load8x8_s + i32x4.dot_i16x8_s, as
 * index.ts i8dot32: both builds; relaxed SIMD has no signed × signed byte dot). */
@inline function i8x4dot(q: usize, x16: usize): v128 {
  const p0 = i32x4.dot_i16x8_s(v128.load8x8_s(q), v128.load(x16));
  const p1 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 8), v128.load(x16, 16));
  const p2 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 16), v128.load(x16, 32));
  const p3 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 24), v128.load(x16, 48));
  return i32x4.add(i32x4.add(p0, p1), i32x4.add(p2, p3));
}

/** Lane k = the lane sum of s_k (four rows' block dots side by side). */
@inline function reduce4i(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** Ternary, 4 rows interleaved (K_TERN2Q8X4): one 32-block of 4 rows, u = w + 1 ∈ {0, 1, 2} as 2-bit codes in 32
 * bytes (rows 0, 1, 2, 3, 8 bytes each; byte j of a row holds elements j, j+8, j+16, j+24 at bits 0, 2, 4, 6), ·
 * 32 activation codes → Σ u·x per row, lane k = row k (exact). Relaxed: one 16-byte load holds two rows'
 * 8-byte runs, each plane (and/shift) is pmaddubsw'd with the matching 8 activation codes splatted to both
 * halves (v128.load64_splat; the planes shift as i16 lanes, one op fewer than i8x16.shr_u, as the mask
 * drops the bits that crossed a byte), four planes added in i16 (|lane| ≤ 4·2·2·127 < 2^15), then lanes 0–3 / 4–7
 * = the two rows. SIMD128: the planes widened to i16 per row and dotted with the i16 codes. */
@inline function tdot4(q: usize, x16: usize, x8: usize): v128 {
  const A = v128.load(q), B = v128.load(q, 16);
  const m = i8x16.splat(3);
  if (ASC_FEATURE_RELAXED_SIMD) {
    const x0 = v128.load64_splat(x8), x1 = v128.load64_splat(x8, 8), x2 = v128.load64_splat(x8, 16), x3 = v128.load64_splat(x8, 24);
    const a = i16x8.add(i16x8.add(rdot(x0, v128.and(A, m)), rdot(x1, v128.and(i16x8.shr_u(A, 2), m))),
      i16x8.add(rdot(x2, v128.and(i16x8.shr_u(A, 4), m)), rdot(x3, v128.and(i16x8.shr_u(A, 6), m))));
    const b = i16x8.add(i16x8.add(rdot(x0, v128.and(B, m)), rdot(x1, v128.and(i16x8.shr_u(B, 2), m))),
      i16x8.add(rdot(x2, v128.and(i16x8.shr_u(B, 4), m)), rdot(x3, v128.and(i16x8.shr_u(B, 6), m))));
    const pa = i32x4.extadd_pairwise_i16x8_s(a), pb = i32x4.extadd_pairwise_i16x8_s(b);
    return i32x4.add(i32x4.shuffle(pa, pb, 0, 2, 4, 6), i32x4.shuffle(pa, pb, 1, 3, 5, 7));
  }
  return tdot4w(A, B, v128.load(x16), v128.load(x16, 16), v128.load(x16, 32), v128.load(x16, 48));
}

/** tdot4's SIMD128 path: the two 16-byte runs A (rows 0, 1) and B (rows 2, 3) of a 32-block, its 2-bit planes widened to
 * i16 per row and dotted with the activation codes x0…x3 (elements 0–7, 8–15, 16–23, 24–31 as i16) → Σ u·x, lane k = row k. */
@inline function tdot4w(A: v128, B: v128, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const m = i8x16.splat(3);
  const a0 = v128.and(A, m), a1 = v128.and(i16x8.shr_u(A, 2), m), a2 = v128.and(i16x8.shr_u(A, 4), m), a3 = v128.and(i16x8.shr_u(A, 6), m);
  const b0 = v128.and(B, m), b1 = v128.and(i16x8.shr_u(B, 2), m), b2 = v128.and(i16x8.shr_u(B, 4), m), b3 = v128.and(i16x8.shr_u(B, 6), m);
  const r0 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(a0), x0), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(a1), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(a2), x2), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(a3), x3)));
  const r1 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(a0), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(a1), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(a2), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(a3), x3)));
  const r2 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(b0), x0), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(b1), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(b2), x2), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(b3), x3)));
  const r3 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(b0), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(b1), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(b2), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(b3), x3)));
  return reduce4i(r0, r1, r2, r3);
}

/** Row groups [g0, g1) of a K_*Q8X4 job (abi.ts; dm: the dot's table form, 4 = ternary, 5 = int8 codes; sf: the scale format; zc: int8
 * zero codes at D_W2 instead of f32 mins), every token on a group while
 * its 4 rows are in cache. Per block the four rows' exact dots become one i32x4 (lane = row), so the f32 work
 * of dot_lut4q8 — gi += f32(dot)·d, per group acc += gi·s and accm += m·(Σ d·f32(Σx)), result acc − accm —
 * runs once per 4 rows, the same operations per lane as K_LUT4Q8 per row (the same bits). */
/** scale formats of the interleaved kernels: 4 f32, 4 f16 bits, or 4 f32 exponent bytes per (row group, group) */
const SF_F32 = 0;
const SF_F16 = 1;
const SF_E8 = 2;

@inline function runLutQ8X4(dm: i32, sf: i32, zc: bool, desc: usize, g0: i32, g1: i32): void {
  const rows = dint(desc, D_ROWS);
  const cols = dint(desc, D_COLS);
  const w0 = dptr(desc, D_W0);
  const w1 = dptr(desc, D_W1);
  const w2 = dptr(desc, D_W2);
  const x16 = dptr(desc, D_X16);
  const x8 = dptr(desc, D_X8);
  const xd = dptr(desc, D_XD);
  const xs = dptr(desc, D_XS);
  const out = dptr(desc, D_OUT);
  const n = dint(desc, D_N);
  const g = dint(desc, D_GROUP);
  const lut = dptr(desc, D_LUT);
  const off = dint(desc, D_BITS);
  const pl = lut + (dm == 2 && !ASC_FEATURE_RELAXED_SIMD ? 32 : 0);
  const p0 = dm == 0 || dm == 4 ? v128.splat<i32>(0) : v128.load(pl);
  const p1 = dm == 2 ? v128.load(pl, 16) : v128.splat<i32>(0);
  const nb = cols >> 5, unb = <usize>nb, ucols = <usize>cols, gb = g >> 5;
  const nG = <usize>((cols + g - 1) / g);
  for (let gr = g0; gr < g1; gr++) {
    const ug = <usize>gr;
    // bytes per block step of 4 rows: ternary 32, nibbles 64, int8 128
    const bstep: usize = dm == 4 ? 32 : dm == 5 ? 128 : 64;
    const q = w0 + ug * unb * bstep;
    const s = w1 + ug * nG * (sf == SF_F32 ? 16 : sf == SF_F16 ? 8 : 4);
    const m = w2 != 0 ? w2 + ug * nG * (zc ? 4 : 16) : 0;
    for (let t = 0; t < n; t++) {
      const ut = <usize>t;
      const a16 = x16 + ut * ucols * 2, a8 = x8 + ut * ucols, ad = xd + ut * unb * 4, as = xs + ut * unb * 8;
      let acc = f32x4.splat(0), accm = f32x4.splat(0);
      let b = 0;
      let j: usize = 0;
      while (b < nb) {
        const be = min(nb, b + gb);
        let gi = f32x4.splat(0);
        let gm: f32 = 0;
        // zc: the group's integer zero points (4 rows' i8), subtracted in the integer dot: Σ (c − z)·x = Σ c·x − z·Σx
        const zv = zc && m != 0 ? i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(m + (j << 2)))) : i32x4.splat(0);
        for (; b < be; b++) {
          const ub = <usize>b;
          const qb = q + ub * bstep, b16 = a16 + (ub << 6), b8 = a8 + (ub << 5);
          const xsum = load<i32>(as + (ub << 3)) + load<i32>(as + (ub << 3), 4);
          const d = load<f32>(ad + (ub << 2));
          const r = dm == 4 ? tdot4(qb, b16, b8)
            : dm == 5 ? reduce4i(i8x4dot(qb, b16), i8x4dot(qb + 32, b16), i8x4dot(qb + 64, b16), i8x4dot(qb + 96, b16))
            : reduce4i(x4dot(dm, qb, p0, p1, b16, b8), x4dot(dm, qb + 16, p0, p1, b16, b8),
            x4dot(dm, qb + 32, p0, p1, b16, b8), x4dot(dm, qb + 48, p0, p1, b16, b8));
          let dot = off != 0 ? i32x4.sub(r, i32x4.splat(off * xsum)) : r;
          if (zc && m != 0) dot = i32x4.sub(dot, i32x4.mul(zv, i32x4.splat(xsum)));
          gi = f32x4.add(gi, f32x4.mul(f32x4.convert_i32x4_s(dot), f32x4.splat(d)));
          if (!zc && m != 0) gm += d * <f32>xsum;
        }
        // the scales as f32, their f16 bits, or their f32 exponent bytes (powers of two: mxfp4's e8m0 / A), all exact
        const sv = sf == SF_F32 ? v128.load(s + (j << 4)) : sf == SF_F16 ? f16x4_to_f32(v128.load16x4_s(s + (j << 3)))
          : i32x4.shl(i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(s + (j << 2)))), 23);
        acc = f32x4.add(acc, f32x4.mul(gi, sv));
        if (!zc && m != 0) accm = f32x4.add(accm, f32x4.mul(v128.load(m + (j << 4)), f32x4.splat(gm)));
        j++;
      }
      v128.store(out + (ut * <usize>rows + (ug << 2)) * 4, !zc && m != 0 ? f32x4.sub(acc, accm) : acc);
    }
  }
}

export function run_k40(desc: usize, g0: i32, g1: i32): void { runLutQ8X4(0, SF_F32, false, desc, g0, g1); }
export function run_k41(desc: usize, g0: i32, g1: i32): void { runLutQ8X4(1, SF_F32, false, desc, g0, g1); }
export function run_k42(desc: usize, g0: i32, g1: i32): void { runLutQ8X4(2, SF_F32, false, desc, g0, g1); }
export function run_k43(desc: usize, g0: i32, g1: i32): void { runLutQ8X4(3, SF_F32, false, desc, g0, g1); }
export function run_k44(desc: usize, g0: i32, g1: i32): void { runLutQ8X4(4, SF_F32, false, desc, g0, g1); }
// 45, 46 (uniform int4 on this 16-byte interleave, f16 / f32 scales): retired, replaced by assembly/nib4.ts run_k52…55
export function run_k47(desc: usize, g0: i32, g1: i32): void { runLutQ8X4(1, SF_E8, false, desc, g0, g1); }
export function run_k50(desc: usize, g0: i32, g1: i32): void { runLutQ8X4(5, SF_F32, true, desc, g0, g1); }

// ---------------------------------------------------------------- ternary × Q8_K activations, 4 rows interleaved

/**
 * Row groups [g0, g1) of a K_TERN2Q8KX4 job (abi.ts): ternary codes u = w + 1 element-major over 4 rows (byte e of a row
 * group holds element e of rows 0…3 at bits 0, 2, 4, 6) against the Q8_K copy of x (one f32 scale d per 256,
 * dispatch.ts quantizeActivationsQ8K), as llama.cpp's ggml_vec_dot_tq2_0_q8_K does for TQ2_0 (ggml-cpu/arch/x86/quants.c:
 * the 2-bit codes u × int8 activations by maddubs, the block sums subtracted, one float step per 256). Per super-block
 * and row one exact integer dot = Σ u·x − Σx (Σx from the record's 8 i16 sums per 32). Relaxed build: per 16 bytes one
 * load of the codes and one of x (shared by the 4 rows), one shift (W >> 4 as i16 lanes: the masks drop the bits that
 * crossed a byte) and four masks, W & 3 and W & 12 (4·u, unshifted) for rows 0 and 1, the same of W >> 4 for rows 2
 * and 3, each pmaddubsw'd with x into its row's i16 accumulator (per lane and super-block ≤ 16·2·8·127 = 32512 < 2^15),
 * widened once per super-block (rows 1 and 3 then shifted right by 2: every pair sum is a multiple of 4, exact). SIMD128:
 * the planes widened to i16 and dotted with the widened codes. Float order (the scalar twin matvecTernQ8KRef,
 * src/kernels/packed.ts): per group gi += f32(dot)·d per super-block, acc += gi·s per group, lane k = row 4g+k.
 */
@inline function runTernQ8KX4(desc: usize, g0: i32, g1: i32): void {
  const rows = dint(desc, D_ROWS);
  const cols = dint(desc, D_COLS);
  const w0 = dptr(desc, D_W0);
  const w1 = dptr(desc, D_W1);
  const x8 = dptr(desc, D_X8);
  const xd = dptr(desc, D_XD);
  const xs = dptr(desc, D_XS);
  const out = dptr(desc, D_OUT);
  const n = dint(desc, D_N);
  const g = dint(desc, D_GROUP);
  const nsb = cols >> 8, ucols = <usize>cols, gs = g >> 8;
  const nG = <usize>((cols + g - 1) / g);
  const m = i8x16.splat(3), m12 = i8x16.splat(12);
  // the scale pointer steps by a row group's record (no w1 + g·nG·16: binaryen sank nG's division into the group loop)
  const sStride = nG << 4;
  let s = w1 + <usize>g0 * sStride;
  for (let gr = g0; gr < g1; gr++, s += sStride) {
    const ug = <usize>gr;
    const q = w0 + ug * ucols;
    for (let t = 0; t < n; t++) {
      const ut = <usize>t;
      const a8 = x8 + ut * ucols, ad = xd + ut * <usize>nsb * 4, as = xs + ut * <usize>nsb * Q8K_SUM_BYTES;
      let acc = f32x4.splat(0);
      let sb = 0;
      let j: usize = 0;
      // pointers stepped per super-block (codes, sums record, d); x at a fixed distance dx from the codes
      let qs = q, sp = as, dp = ad;
      const dx = a8 - q;
      while (sb < nsb) {
        const se = min(nsb, sb + gs);
        let gi = f32x4.splat(0);
        for (; sb < se; sb++, qs += 256, sp += Q8K_SUM_BYTES, dp += 4) {
          const xb = qs + dx;
          // the record's 8 i16 code sums per 32 (abi.ts Q8K_SUM_BYTES: @32), Σ over them = Σx of the super-block
          const s16 = v128.load(sp, 32);
          let dot: v128;
          if (ASC_FEATURE_RELAXED_SIMD) {
            // Σx folded in: rows 0 and 2 start from −(sums per 32) (|lane| ≤ 8128 + 32·128 < 2^15), rows 1 and 3 (4·u)
            // subtract the sums widened to i32 after their shift; the same integers as Σ u·x − Σx, without a hsum
            const ns = i16x8.sub(i16x8.splat(0), s16);
            let a0 = ns, a1 = i16x8.splat(0), a2 = ns, a3 = i16x8.splat(0);
            // one pointer stepped by the loop, x at a fixed distance from it (one address add per step fewer)
            const qe = qs + 256;
            for (let k = qs; k < qe; k += 32) {
              const W = v128.load(k), X = v128.load(k + dx), W4 = i16x8.shr_u(W, 4);
              a0 = i16x8.add(a0, rdot(X, v128.and(W, m)));
              a1 = i16x8.add(a1, rdot(X, v128.and(W, m12)));
              a2 = i16x8.add(a2, rdot(X, v128.and(W4, m)));
              a3 = i16x8.add(a3, rdot(X, v128.and(W4, m12)));
              const V = v128.load(k, 16), Y = v128.load(k + dx, 16), V4 = i16x8.shr_u(V, 4);
              a0 = i16x8.add(a0, rdot(Y, v128.and(V, m)));
              a1 = i16x8.add(a1, rdot(Y, v128.and(V, m12)));
              a2 = i16x8.add(a2, rdot(Y, v128.and(V4, m)));
              a3 = i16x8.add(a3, rdot(Y, v128.and(V4, m12)));
            }
            const sx = i32x4.extadd_pairwise_i16x8_s(s16);
            dot = reduce4i(i32x4.extadd_pairwise_i16x8_s(a0), i32x4.sub(i32x4.shr_s(i32x4.extadd_pairwise_i16x8_s(a1), 2), sx),
              i32x4.extadd_pairwise_i16x8_s(a2), i32x4.sub(i32x4.shr_s(i32x4.extadd_pairwise_i16x8_s(a3), 2), sx));
          } else {
            let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
            for (let k: usize = 0; k < 256; k += 16) {
              const W = v128.load(qs + k), X = v128.load(xb + k);
              const xl = i16x8.extend_low_i8x16_s(X), xh = i16x8.extend_high_i8x16_s(X);
              const p0 = v128.and(W, m), p1 = v128.and(i16x8.shr_u(W, 2), m), p2 = v128.and(i16x8.shr_u(W, 4), m), p3 = v128.and(i16x8.shr_u(W, 6), m);
              a0 = i32x4.add(a0, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(p0), xl), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(p0), xh)));
              a1 = i32x4.add(a1, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(p1), xl), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(p1), xh)));
              a2 = i32x4.add(a2, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(p2), xl), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(p2), xh)));
              a3 = i32x4.add(a3, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(p3), xl), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(p3), xh)));
            }
            dot = i32x4.sub(reduce4i(a0, a1, a2, a3), i32x4.splat(hsum_i32x4(i32x4.extadd_pairwise_i16x8_s(s16))));
          }
          gi = f32x4.add(gi, f32x4.mul(f32x4.convert_i32x4_s(dot), f32x4.splat(load<f32>(dp))));
        }
        acc = f32x4.add(acc, f32x4.mul(gi, v128.load(s + (j << 4))));
        j++;
      }
      v128.store(out + (ut * <usize>rows + (ug << 2)) * 4, acc);
    }
  }
}

export function run_k51(desc: usize, g0: i32, g1: i32): void { runTernQ8KX4(desc, g0, g1); }
