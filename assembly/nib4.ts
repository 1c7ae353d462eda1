// Uniform int4 specs × Q8 activations, 4 rows byte-interleaved (K_NIB4Q8X4B*, abi.ts; src/kernels/packed.ts
// uniformQ8Layout, the layout written by src/kernels/wasm/backend.ts prepNib4X4). The weight is w = s·(c − z): nibble
// c, f16 (or f32) scale s and zero code z per (row, group): 4-bit (K_NIB4Q8X4BZ*, z in 0…15, the int4 asym case) or
// int8 (K_NIB4Q8X4B / BF, any other integer zero point). Per 32-block the four rows' exact integer dots
// Σ (c − z)·x come out of the multiplies already one row per i32 lane (no per-block reduction across lanes), and the
// f32 work — gi += f32(dot)·d per block, acc += gi·s per group — runs once per 4 rows: the same integers and the same
// f32 operations per row as the scalar twin matvecLutQ8Ref (src/kernels/packed.ts), so the bits are its.
//
// Byte interleave (as llama.cpp's 4×4 repacks of Q4_0, block_q4_0x4 with 4-byte interleave): in a 32-block of 4 rows,
// 16 bytes of row k's ggml-order nibbles (byte j = code j | code j+16 << 4) are cut into four 4-byte pieces and piece i
// of row k sits at 16·i + 4·k. One 16-byte load then holds bytes 4i…4i+3 of all four rows; with the activation codes
// x[4i…4i+3] broadcast to every 4-byte lane, pmaddubsw gives i16 lane 2k, 2k+1 = row k's two pair sums, and the eight
// pmaddubsw of a block add in i16 (|lane| ≤ 8·2·15·127 = 30480 < 2^15) before one widening pmaddwd: lane k = row k.
//
// Row group g (rows 4g…4g+3) is one stream: per group of gb = group/32 blocks, the gb blocks of 64 bytes, then the 4 rows'
// scales (4 f16 bits or 4 f32) and, with zero codes, their 4 z: 2 bytes of nibbles (row k at bits 4k…4k+3 of the
// little-endian u16) or 4 int8. Q4_0X4's single stream per 4 rows; at g32 with f16 scales 74 bytes per 4 rows × 32
// (10 bytes of scale and zero: 0.578 B/weight, Q4_0 0.5625; int8 zeros 76). Symmetric specs store no zero codes:
// D_BITS holds the one offset z of every group.
//
// The zero term z·Σx of a block is one pmaddwd: the 4 zeros as i16 lanes 2k, 2k+1 = z_k against the block's two
// 16-element code sums (D_XS) as i16 lanes 2k = Σ x[0…15], 2k+1 = Σ x[16…31] (|Σ| ≤ 16·128, so exact in i16 and i32).
import { D_ROWS, D_COLS, D_W0, D_X16, D_X8, D_XD, D_XS, D_OUT, D_N, D_GROUP, D_BITS } from "./abi";
import { f16x4_to_f32 } from "./f16";
import { dptr, dint } from "./desc";

/** High nibbles of 16 bytes: a 16-bit shift and the constant mask (i8x16.shr_u costs V8 11.3 3 instructions). */
@inline function hi4(v: v128, m: v128): v128 {
  return v128.and(i16x8.shr_u(v, 4), m);
}

/** pmaddubsw: int8 activation codes x × unsigned 0..127 weights u (i16 pair sums, exact for nibbles). */
@inline function rdot(x: v128, u: v128): v128 {
  return i16x8.relaxed_dot_i8x16_i7x16_s(x, u);
}

/** One 32-block of 4 byte-interleaved rows at q (64 bytes) · the block's 32 activation codes (x8 int8, x16 i16):
 * Σ c·x per row, lane k = row k, exact. */
@inline function nib4x4dot(q: usize, x8: usize, x16: usize, m: v128): v128 {
  const v0 = v128.load(q), v1 = v128.load(q, 16), v2 = v128.load(q, 32), v3 = v128.load(q, 48);
  if (ASC_FEATURE_RELAXED_SIMD) {
    // piece i: low nibbles = elements 4i…4i+3, high nibbles = elements 16+4i…
    const xl = v128.load(x8), xh = v128.load(x8, 16);
    const s0 = i16x8.add(rdot(i32x4.shuffle(xl, xl, 0, 0, 0, 0), v128.and(v0, m)), rdot(i32x4.shuffle(xh, xh, 0, 0, 0, 0), hi4(v0, m)));
    const s1 = i16x8.add(rdot(i32x4.shuffle(xl, xl, 1, 1, 1, 1), v128.and(v1, m)), rdot(i32x4.shuffle(xh, xh, 1, 1, 1, 1), hi4(v1, m)));
    const s2 = i16x8.add(rdot(i32x4.shuffle(xl, xl, 2, 2, 2, 2), v128.and(v2, m)), rdot(i32x4.shuffle(xh, xh, 2, 2, 2, 2), hi4(v2, m)));
    const s3 = i16x8.add(rdot(i32x4.shuffle(xl, xl, 3, 3, 3, 3), v128.and(v3, m)), rdot(i32x4.shuffle(xh, xh, 3, 3, 3, 3), hi4(v3, m)));
    return i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.add(s0, s1), i16x8.add(s2, s3)));
  }
  // SIMD128: codes widened to i16 (rows 0, 1 from the low half, rows 2, 3 from the high half), activation codes as i16
  // splat over both 4-element halves; i32 lanes (2k', 2k'+1) = row k' of the half, paired at the end
  const l0 = v128.and(v0, m), h0 = hi4(v0, m), l1 = v128.and(v1, m), h1 = hi4(v1, m);
  const l2 = v128.and(v2, m), h2 = hi4(v2, m), l3 = v128.and(v3, m), h3 = hi4(v3, m);
  const xa = v128.load64_splat(x16), xb = v128.load64_splat(x16, 8), xc = v128.load64_splat(x16, 16), xd = v128.load64_splat(x16, 24);
  const ya = v128.load64_splat(x16, 32), yb = v128.load64_splat(x16, 40), yc = v128.load64_splat(x16, 48), yd = v128.load64_splat(x16, 56);
  const a = i32x4.add(
    i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(l0), xa), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(h0), ya)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(l1), xb), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(h1), yb))),
    i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(l2), xc), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(h2), yc)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(l3), xd), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(h3), yd))));
  const b = i32x4.add(
    i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(l0), xa), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(h0), ya)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(l1), xb), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(h1), yb))),
    i32x4.add(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(l2), xc), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(h2), yc)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(l3), xd), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(h3), yd))));
  return i32x4.add(i32x4.shuffle(a, b, 0, 2, 4, 6), i32x4.shuffle(a, b, 1, 3, 5, 7));
}

/** The 4 rows' scales at p as f32x4: f16 bits (exact for normals, subnormals and 0) or f32. */
@inline function scales4(f16: bool, p: usize): v128 {
  return f16 ? f16x4_to_f32(v128.load16x4_s(p)) : v128.load(p);
}

/** The 4 rows' int8 zero codes at p as i16 lanes 2k, 2k+1 = z_k (reads 8 bytes: the layout pads its end). */
@inline function zeros8(p: usize): v128 {
  const v = v128.load8x8_s(p);
  return i8x16.shuffle(v, v, 0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7);
}

/** The 4 rows' zero nibbles at p (u16, row k at bits 4k…4k+3) as i16 lanes 2k, 2k+1 = z_k: the u16 in every lane, × 2^(12−4k)
 * (mod 2^16: nibble k to the top, the nibbles above it out of the lane), >> 12. `c` = zeroMul(). */
@inline function zeros4(p: usize, c: v128): v128 {
  return i16x8.shr_u(i16x8.mul(v128.load16_splat(p), c), 12);
}

@inline function zeroMul(): v128 {
  return i16x8(4096, 4096, 256, 256, 16, 16, 1, 1);
}

/** A block's two 16-element code sums (i32 at p, p + 4, |Σ| ≤ 2048) as i16 lanes 2k = the first, 2k+1 = the second: the
 * pair splat and a saturating narrow (exact in range; packssdw, no shuffle mask to build). */
@inline function xsums(p: usize): v128 {
  const v = v128.load64_splat(p);
  return i16x8.narrow_i32x4_s(v, v);
}

/** Row groups [g0, g1) of a K_NIB4Q8X4B* job; f16: scale format; zc: zero codes per (row, group) (else the one offset
 * D_BITS), z4: as nibbles (else int8). Every token of the job on a row group while its bytes are in cache. */
@inline function runNib4X4(f16: bool, zc: bool, z4: bool, desc: usize, g0: i32, g1: i32): void {
  const rows = dint(desc, D_ROWS);
  const cols = dint(desc, D_COLS);
  const w0 = dptr(desc, D_W0);
  const x16 = dptr(desc, D_X16);
  const x8 = dptr(desc, D_X8);
  const xd = dptr(desc, D_XD);
  const xs = dptr(desc, D_XS);
  const out = dptr(desc, D_OUT);
  const n = dint(desc, D_N);
  const g = dint(desc, D_GROUP);
  const off = dint(desc, D_BITS);
  const m = i8x16.splat(0x0f);
  const zm = zeroMul();
  const nb = cols >> 5, gb = g >> 5, unb = <usize>nb, ucols = <usize>cols;
  const nG = <usize>((nb + gb - 1) / gb);
  // bytes of the 4 rows' scales (+ zero codes) per group, of a group of whole blocks, of a row group
  const sb: usize = (f16 ? 8 : 16) + (zc ? (z4 ? 2 : 4) : 0);
  const zo: usize = f16 ? 8 : 16;
  const gstep = <usize>gb * 64 + sb;
  const rgBytes = unb * 64 + nG * sb;
  const zoff = i16x8.splat(<i16>off);
  for (let gr = g0; gr < g1; gr++) {
    const base = w0 + <usize>gr * rgBytes;
    for (let t = 0; t < n; t++) {
      const ut = <usize>t;
      const a16 = x16 + ut * ucols * 2, a8 = x8 + ut * ucols, ad = xd + ut * unb * 4, as = xs + ut * unb * 8;
      let acc = f32x4.splat(0);
      let p = base;
      if (gb == 1) {
        // one block per group: gi = 0 + f32(dot)·d is f32(dot)·d exactly (d ≥ 0, so never −0), as in the twin
        // running pointers (weights, codes, sums, scales of x) instead of block-index arithmetic: fewer scalar ops
        let q8 = a8, q16 = a16, qs = as, qd = ad;
        const pe = p + unb * gstep;
        while (p < pe) {
          const r = nib4x4dot(p, q8, q16, m);
          const z = zc ? (z4 ? zeros4(p + 64 + zo, zm) : zeros8(p + 64 + zo)) : zoff;
          const dot = i32x4.sub(r, i32x4.dot_i16x8_s(z, xsums(qs)));
          const gi = f32x4.mul(f32x4.convert_i32x4_s(dot), v128.load32_splat(qd));
          acc = f32x4.add(acc, f32x4.mul(gi, scales4(f16, p + 64)));
          p += gstep; q8 += 32; q16 += 64; qs += 8; qd += 4;
        }
      } else {
        let b = 0;
        while (b < nb) {
          const be = min(nb, b + gb);
          const zp = p + <usize>(be - b) * 64 + zo;
          const z = zc ? (z4 ? zeros4(zp, zm) : zeros8(zp)) : zoff;
          let gi = f32x4.splat(0);
          for (; b < be; b++) {
            const ub = <usize>b;
            const r = nib4x4dot(p, a8 + (ub << 5), a16 + (ub << 6), m);
            const dot = i32x4.sub(r, i32x4.dot_i16x8_s(z, xsums(as + (ub << 3))));
            gi = f32x4.add(gi, f32x4.mul(f32x4.convert_i32x4_s(dot), v128.load32_splat(ad + (ub << 2))));
            p += 64;
          }
          acc = f32x4.add(acc, f32x4.mul(gi, scales4(f16, p)));
          p += sb;
        }
      }
      v128.store(out + (ut * <usize>rows + (<usize>gr << 2)) * 4, acc);
    }
  }
}

export function run_k52(desc: usize, g0: i32, g1: i32): void { runNib4X4(true, true, false, desc, g0, g1); }
export function run_k53(desc: usize, g0: i32, g1: i32): void { runNib4X4(false, true, false, desc, g0, g1); }
export function run_k54(desc: usize, g0: i32, g1: i32): void { runNib4X4(true, false, false, desc, g0, g1); }
export function run_k55(desc: usize, g0: i32, g1: i32): void { runNib4X4(false, false, false, desc, g0, g1); }
export function run_k60(desc: usize, g0: i32, g1: i32): void { runNib4X4(true, true, true, desc, g0, g1); }
export function run_k61(desc: usize, g0: i32, g1: i32): void { runNib4X4(false, true, true, desc, g0, g1); }
