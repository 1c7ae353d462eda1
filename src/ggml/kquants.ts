/**
 * k-quants: 256-element super-blocks Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the activation type Q8_K
 * (layouts in types.ts GGML_BLOCK_LAYOUT). Decoders follow ggml-quants.c `dequantize_row_*`; quantizers
 * `quantize_row_*_ref` (no importance matrix; byte-identical with llama.cpp) and `quantize_row_*_impl`
 * (importance weights `qw`, one per column of the row). All arithmetic is C float (cfloat.ts).
 */
import { fr, GROUP_MAX_EPS, nearestInt, readF16, readF32, readI16, toInt8, writeF16, writeF32, writeI16 } from "./cfloat.js";
import type { Scratch } from "./legacy.js";
import { makeQ3Quants, makeQkx2Quants, makeQkx3Quants, makeQpQuants, makeQxQuants } from "./search.js";
import { GGML_TYPES, GgmlType } from "./types.js";

/** bytes per block of the types in this file (the type-traits table, types.ts) */
const BPB = {
  Q2_K: GGML_TYPES[GgmlType.Q2_K].bytesPerBlock,
  Q3_K: GGML_TYPES[GgmlType.Q3_K].bytesPerBlock,
  Q4_K: GGML_TYPES[GgmlType.Q4_K].bytesPerBlock,
  Q5_K: GGML_TYPES[GgmlType.Q5_K].bytesPerBlock,
  Q6_K: GGML_TYPES[GgmlType.Q6_K].bytesPerBlock,
  Q8_K: GGML_TYPES[GgmlType.Q8_K].bytesPerBlock,
} as const;

export const QK_K = 256;

/** 6-bit scale of pair j of the 12-byte Q4_K/Q5_K scales field at q[o..] (ggml `get_scale_min_k4`). */
function scaleK4(j: number, q: Uint8Array, o: number): number {
  return j < 4 ? q[o + j]! & 63 : (q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >> 6) << 4);
}

/** 6-bit min of pair j (ggml `get_scale_min_k4`). */
function minK4(j: number, q: Uint8Array, o: number): number {
  return j < 4 ? q[o + j + 4]! & 63 : (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4);
}

/** Inverse of scaleK4/minK4 for all 8 pairs (as the quantizers pack them). */
function packScaleMinK4(ls: ArrayLike<number>, lm: ArrayLike<number>, q: Uint8Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const s = ls[j]!;
    const m = lm[j]!;
    if (j < 4) {
      q[o + j] = s;
      q[o + j + 4] = m;
    } else {
      q[o + j + 4] = (s & 0xf) | ((m & 0xf) << 4);
      q[o + j - 4] |= (s >> 4) << 6;
      q[o + j] |= (m >> 4) << 6;
    }
  }
}

/** signed 6-bit scale j (−32..31) of the 12-byte Q3_K scales field */
function q3Scale(q: Uint8Array, o: number, j: number): number {
  const low = j < 8 ? q[o + j]! & 0xf : q[o + j - 8]! >> 4;
  const high = (q[o + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

/** Packs 256 two-bit values L (0..3) into 64 bytes (Q2_K / Q3_K `qs` order). */
function pack2bit(L: ArrayLike<number>, dst: Uint8Array, o: number): void {
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      dst[o + j / 4 + l] = L[j + l]! | (L[j + l + 32]! << 2) | (L[j + l + 64]! << 4) | (L[j + l + 96]! << 6);
    }
  }
}

// ============================================================ Q2_K (84 bytes)
// scales[16] @0, qs[64] @16, d @80, dmin @82

export function dequantizeQ2_K(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q2_K) {
    const d = readF16(src, o + 80);
    const min = readF16(src, o + 82);
    let is = 0;
    for (let n = 0, q = o + 16; n < QK_K; n += 128, q += 32) {
      for (let shift = 0; shift < 8; shift += 2) {
        let sc = src[o + is++]!;
        let dl = fr(d * (sc & 0xf));
        let ml = fr(min * (sc >> 4));
        for (let l = 0; l < 16; l++) dst[y++] = fr(fr(dl * ((src[q + l]! >> shift) & 3)) - ml);
        sc = src[o + is++]!;
        dl = fr(d * (sc & 0xf));
        ml = fr(min * (sc >> 4));
        for (let l = 0; l < 16; l++) dst[y++] = fr(fr(dl * ((src[q + l + 16]! >> shift) & 3)) - ml);
      }
    }
  }
}

/** quantize_row_q2_K_ref: make_qkx2_quants(16, 3, weights |x|, rmin −0.5, rdelta 0.1, 15 steps, MAD) per 16. */
export function quantizeQ2_KRef(x: Float32Array, xo: number, dst: Uint8Array, o: number, s: Scratch): void {
  const { L, Laux, weight, scales, min: mins } = s;
  const q4scale = 15;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) weight[l] = Math.abs(x[xo + 16 * j + l]!);
    scales[j] = makeQkx2Quants(16, 3, x, xo + 16 * j, weight, 0, L, 16 * j, mins, j, Laux, fr(-0.5), fr(0.1), 15, true);
    if (scales[j]! > maxScale) maxScale = scales[j]!;
    if (mins[j]! > maxMin) maxMin = mins[j]!;
  }
  if (maxScale > 0) {
    const iscale = fr(q4scale / maxScale);
    for (let j = 0; j < 16; j++) dst[o + j] = nearestInt(fr(iscale * scales[j]!));
    writeF16(dst, o + 80, fr(maxScale / q4scale));
  } else {
    for (let j = 0; j < 16; j++) dst[o + j] = 0;
    writeF16(dst, o + 80, 0);
  }
  if (maxMin > 0) {
    const iscale = fr(q4scale / maxMin);
    for (let j = 0; j < 16; j++) dst[o + j] |= nearestInt(fr(iscale * mins[j]!)) << 4;
    writeF16(dst, o + 82, fr(maxMin / q4scale));
  } else {
    writeF16(dst, o + 82, 0);
  }
  requantQ2(x, xo, dst, o, L);
  pack2bit(L, dst, o + 16);
}

/** Re-derives every level from the stored f16 super-scales and 4-bit scales/mins (shared by ref and impl). */
function requantQ2(x: Float32Array, xo: number, dst: Uint8Array, o: number, L: Uint8Array): void {
  const dAll = readF16(dst, o + 80);
  const mAll = readF16(dst, o + 82);
  for (let j = 0; j < 16; j++) {
    const sc = dst[o + j]!;
    const d = fr(dAll * (sc & 0xf));
    if (!d) continue;
    const dm = fr(mAll * (sc >> 4));
    for (let ii = 0; ii < 16; ii++) {
      const l = nearestInt(fr(fr(x[xo + 16 * j + ii]! + dm) / d));
      L[16 * j + ii] = Math.max(0, Math.min(3, l));
    }
  }
}

/** quantize_row_q2_K_impl: weights qw·√(σ² + x²), make_qkx3_quants(16, 3, −0.9, 0.05, 36), scales by make_qp_quants. */
export function quantizeQ2_KImpl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, s: Scratch): void {
  const { L, Laux, weight, scales, min: mins, sw, Ls, Lm } = s;
  sw.fill(0);
  let sumx2 = 0;
  for (let j = 0; j < QK_K; j++) sumx2 = fr(sumx2 + fr(x[xo + j]! * x[xo + j]!));
  const sigma2 = fr(sumx2 / QK_K);
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) {
      const v = x[xo + 16 * j + l]!;
      weight[l] = fr(qw[qwo + 16 * j + l]! * fr(Math.sqrt(fr(sigma2 + fr(v * v)))));
    }
    for (let l = 0; l < 16; l++) sw[j] = fr(sw[j]! + weight[l]!);
    scales[j] = makeQkx3Quants(16, 3, x, xo + 16 * j, weight, L, mins, j, Laux, fr(-0.9), fr(0.05), 36, false, 16 * j);
  }
  const dm = makeQpQuants(16, 15, scales, Ls, sw);
  const mm = makeQpQuants(16, 15, mins, Lm, sw);
  writeF16(dst, o + 80, dm);
  writeF16(dst, o + 82, mm);
  for (let j = 0; j < 16; j++) dst[o + j] = Ls[j]! | (Lm[j]! << 4);
  requantQ2(x, xo, dst, o, L);
  pack2bit(L, dst, o + 16);
}

// ============================================================ Q3_K (110 bytes)
// hmask[32] @0, qs[64] @32, scales[12] @96, d @108

export function dequantizeQ3_K(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q3_K) {
    const dAll = readF16(src, o + 108);
    let is = 0;
    let m = 1;
    for (let n = 0, q = o + 32; n < QK_K; n += 128, q += 32) {
      for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
        let dl = fr(dAll * q3Scale(src, o + 96, is++));
        for (let l = 0; l < 16; l++) dst[y++] = fr(dl * (((src[q + l]! >> shift) & 3) - (src[o + l]! & m ? 0 : 4)));
        dl = fr(dAll * q3Scale(src, o + 96, is++));
        for (let l = 0; l < 16; l++) dst[y++] = fr(dl * (((src[q + l + 16]! >> shift) & 3) - (src[o + l + 16]! & m ? 0 : 4)));
      }
    }
  }
}

function packQ3Scales(Lsc: ArrayLike<number>, dst: Uint8Array, so: number): void {
  for (let k = 0; k < 12; k++) dst[so + k] = 0;
  for (let j = 0; j < 16; j++) {
    let l = Lsc[j]!; // 0..63
    if (j < 8) dst[so + j] = l & 0xf;
    else dst[so + j - 8] |= (l & 0xf) << 4;
    l >>= 4;
    dst[so + 8 + (j % 4)] |= l << (2 * (j >> 2));
  }
}

/** Requantizes with the stored scales (levels −4..3 → 0..7), then packs hmask and qs (shared by ref and impl). */
function finishQ3(x: Float32Array, xo: number, dst: Uint8Array, o: number, L: Int8Array): void {
  const dAll = readF16(dst, o + 108);
  for (let j = 0; j < 16; j++) {
    const d = fr(dAll * q3Scale(dst, o + 96, j));
    if (!d) continue;
    for (let ii = 0; ii < 16; ii++) {
      const l = nearestInt(fr(x[xo + 16 * j + ii]! / d));
      L[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
    }
  }
  for (let k = 0; k < 32; k++) dst[o + k] = 0;
  let m = 0;
  let hm = 1;
  for (let j = 0; j < QK_K; j++) {
    if (L[j]! > 3) {
      dst[o + m] |= hm;
      L[j] = L[j]! - 4;
    }
    if (++m === 32) {
      m = 0;
      hm <<= 1;
    }
  }
  pack2bit(L, dst, o + 32);
}

/** quantize_row_q3_K_ref: make_q3_quants(16, 4, rmse) per 16; scales RTN to 6 bits against the largest |scale|. */
export function quantizeQ3_KRef(x: Float32Array, xo: number, dst: Uint8Array, o: number, s: Scratch): void {
  const { Li8: L, scales, Ls } = s;
  let maxScale = 0;
  let amax = 0;
  for (let j = 0; j < 16; j++) {
    scales[j] = makeQ3Quants(16, 4, x, xo + 16 * j, L, 16 * j, true);
    const sc = Math.abs(scales[j]!);
    if (sc > amax) {
      amax = sc;
      maxScale = scales[j]!;
    }
  }
  if (maxScale) {
    const iscale = fr(-32 / maxScale);
    for (let j = 0; j < 16; j++) {
      const l = toInt8(nearestInt(fr(iscale * scales[j]!)));
      Ls[j] = Math.max(-32, Math.min(31, l)) + 32;
    }
    packQ3Scales(Ls, dst, o + 96);
    writeF16(dst, o + 108, fr(1 / iscale));
  } else {
    for (let k = 0; k < 12; k++) dst[o + 96 + k] = 0;
    writeF16(dst, o + 108, 0);
  }
  finishQ3(x, xo, dst, o, L);
}

/** quantize_row_q3_K_impl: weights qw·√(2σ² + x²), make_qx_quants(16, 4, rmse 1) per 16 and for the scales. */
export function quantizeQ3_KImpl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, s: Scratch): void {
  const { Li8: L, L: Lu, weight, scales, sw, Ls } = s;
  let sumx2 = 0;
  for (let j = 0; j < QK_K; j++) sumx2 = fr(sumx2 + fr(x[xo + j]! * x[xo + j]!));
  const sigma2 = fr(fr(2 * sumx2) / QK_K);
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) {
      const v = x[xo + 16 * j + l]!;
      weight[l] = fr(qw[qwo + 16 * j + l]! * fr(Math.sqrt(fr(sigma2 + fr(v * v)))));
    }
    let sumw = 0;
    for (let l = 0; l < 16; l++) sumw = fr(sumw + weight[l]!);
    sw[j] = sumw;
    scales[j] = makeQxQuants(16, 4, x, xo + 16 * j, Lu, 16 * j, 1, weight, 0);
  }
  const dBlock = makeQxQuants(16, 32, scales, 0, Ls, 0, 1, sw, 0);
  packQ3Scales(Ls, dst, o + 96);
  writeF16(dst, o + 108, dBlock);
  for (let j = 0; j < QK_K; j++) L[j] = Lu[j]!;
  finishQ3(x, xo, dst, o, L);
}

// ============================================================ Q4_K (144 bytes)
// d @0, dmin @2, scales[12] @4, qs[128] @16

export function dequantizeQ4_K(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q4_K) {
    const d = readF16(src, o);
    const min = readF16(src, o + 2);
    for (let j = 0, is = 0, q = o + 16; j < QK_K; j += 64, is += 2, q += 32) {
      const d1 = fr(d * scaleK4(is, src, o + 4));
      const m1 = fr(min * minK4(is, src, o + 4));
      const d2 = fr(d * scaleK4(is + 1, src, o + 4));
      const m2 = fr(min * minK4(is + 1, src, o + 4));
      for (let l = 0; l < 32; l++) dst[y++] = fr(fr(d1 * (src[q + l]! & 0xf)) - m1);
      for (let l = 0; l < 32; l++) dst[y++] = fr(fr(d2 * (src[q + l]! >> 4)) - m2);
    }
  }
}

/**
 * Shared tail of the Q4_K/Q5_K quantizers: requantize every level from the stored (f16 super-scale,
 * 6-bit scale/min) with nearest_int((x + dm)/d), clamped to [0, nmax].
 */
function requantK4(x: Float32Array, xo: number, dst: Uint8Array, o: number, L: Uint8Array, nmax: number): void {
  const dAll = readF16(dst, o);
  const mAll = readF16(dst, o + 2);
  for (let j = 0; j < 8; j++) {
    const d = fr(dAll * scaleK4(j, dst, o + 4));
    if (!d) continue;
    const dm = fr(mAll * minK4(j, dst, o + 4));
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(fr(fr(x[xo + 32 * j + ii]! + dm) / d));
      L[32 * j + ii] = Math.max(0, Math.min(nmax, l));
    }
  }
}

/**
 * The no-imatrix search of quantize_row_q4_K_ref / q5_K_ref: per 32 elements make_qkx2_quants with weights
 * √(mean x²) + |x|; then 6-bit scales and mins by RTN against the largest of each.
 */
function refScalesK(x: Float32Array, xo: number, dst: Uint8Array, o: number, s: Scratch, nmax: number, rmin: number, rdelta: number, nstep: number): void {
  const { L, Laux, weight, scales, min: mins, Ls, Lm } = s;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[xo + 32 * j + l]! * x[xo + 32 * j + l]!));
    const avX = fr(Math.sqrt(fr(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weight[l] = fr(avX + Math.abs(x[xo + 32 * j + l]!));
    scales[j] = makeQkx2Quants(32, nmax, x, xo + 32 * j, weight, 0, L, 32 * j, mins, j, Laux, rmin, rdelta, nstep, false);
    if (scales[j]! > maxScale) maxScale = scales[j]!;
    if (mins[j]! > maxMin) maxMin = mins[j]!;
  }
  const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
  for (let j = 0; j < 8; j++) {
    Ls[j] = Math.min(63, nearestInt(fr(invScale * scales[j]!)) & 0xff);
    Lm[j] = Math.min(63, nearestInt(fr(invMin * mins[j]!)) & 0xff);
  }
  packScaleMinK4(Ls, Lm, dst, o + 4);
  writeF16(dst, o, fr(maxScale / 63));
  writeF16(dst, o + 2, fr(maxMin / 63));
}

/**
 * The imatrix search of quantize_row_q4_K_impl / q5_K_impl: weights qw·√(2σ² + x²) (or √(2σ²) + |x|
 * without qw), make_qkx3_quants(32, nmax, −0.9, 0.05, 36), 6-bit scales and mins by make_qp_quants.
 */
function implScalesK(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, s: Scratch, nmax: number): void {
  const { L, Laux, weight, scales, min: mins, sw, Ls, Lm } = s;
  let sumX2 = 0;
  for (let l = 0; l < QK_K; l++) sumX2 = fr(sumX2 + fr(x[xo + l]! * x[xo + l]!));
  const sigma2 = fr(fr(2 * sumX2) / QK_K);
  for (let j = 0; j < 8; j++) {
    for (let l = 0; l < 32; l++) {
      const v = x[xo + 32 * j + l]!;
      weight[l] = fr(qw[qwo + 32 * j + l]! * fr(Math.sqrt(fr(sigma2 + fr(v * v)))));
    }
    let sumw = 0;
    for (let l = 0; l < 32; l++) sumw = fr(sumw + weight[l]!);
    sw[j] = sumw;
    scales[j] = makeQkx3Quants(32, nmax, x, xo + 32 * j, weight, L, mins, j, Laux, fr(-0.9), fr(0.05), 36, false, 32 * j);
  }
  const dBlock = makeQpQuants(8, 63, scales, Ls, sw);
  const mBlock = makeQpQuants(8, 63, mins, Lm, sw);
  for (let j = 0; j < 8; j++) {
    Ls[j] = Math.min(63, Ls[j]!);
    Lm[j] = Math.min(63, Lm[j]!);
  }
  packScaleMinK4(Ls, Lm, dst, o + 4);
  writeF16(dst, o, dBlock);
  writeF16(dst, o + 2, mBlock);
}

function packQ4K(L: Uint8Array, dst: Uint8Array, o: number): void {
  for (let j = 0, q = o + 16; j < QK_K; j += 64, q += 32) {
    for (let l = 0; l < 32; l++) dst[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
  }
}

export function quantizeQ4_KRef(x: Float32Array, xo: number, dst: Uint8Array, o: number, s: Scratch): void {
  refScalesK(x, xo, dst, o, s, 15, -1, fr(0.1), 20);
  requantK4(x, xo, dst, o, s.L, 15);
  packQ4K(s.L, dst, o);
}

export function quantizeQ4_KImpl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, s: Scratch): void {
  implScalesK(x, xo, dst, o, qw, qwo, s, 15);
  requantK4(x, xo, dst, o, s.L, 15);
  packQ4K(s.L, dst, o);
}

// ============================================================ Q5_K (176 bytes)
// d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48

export function dequantizeQ5_K(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q5_K) {
    const d = readF16(src, o);
    const min = readF16(src, o + 2);
    const qh = o + 16;
    let u1 = 1;
    let u2 = 2;
    for (let j = 0, is = 0, ql = o + 48; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      const d1 = fr(d * scaleK4(is, src, o + 4));
      const m1 = fr(min * minK4(is, src, o + 4));
      const d2 = fr(d * scaleK4(is + 1, src, o + 4));
      const m2 = fr(min * minK4(is + 1, src, o + 4));
      for (let l = 0; l < 32; l++) dst[y++] = fr(fr(d1 * ((src[ql + l]! & 0xf) + (src[qh + l]! & u1 ? 16 : 0))) - m1);
      for (let l = 0; l < 32; l++) dst[y++] = fr(fr(d2 * ((src[ql + l]! >> 4) + (src[qh + l]! & u2 ? 16 : 0))) - m2);
    }
  }
}

function packQ5K(L: Uint8Array, dst: Uint8Array, o: number): void {
  const qh = o + 16;
  for (let k = 0; k < 32; k++) dst[qh + k] = 0;
  let m1 = 1;
  let m2 = 2;
  for (let n = 0, ql = o + 48; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
    for (let j = 0; j < 32; j++) {
      let l1 = L[n + j]!;
      if (l1 > 15) {
        l1 -= 16;
        dst[qh + j] |= m1;
      }
      let l2 = L[n + j + 32]!;
      if (l2 > 15) {
        l2 -= 16;
        dst[qh + j] |= m2;
      }
      dst[ql + j] = l1 | (l2 << 4);
    }
  }
}

export function quantizeQ5_KRef(x: Float32Array, xo: number, dst: Uint8Array, o: number, s: Scratch): void {
  refScalesK(x, xo, dst, o, s, 31, fr(-0.5), fr(0.1), 15);
  requantK4(x, xo, dst, o, s.L, 31);
  packQ5K(s.L, dst, o);
}

export function quantizeQ5_KImpl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, s: Scratch): void {
  implScalesK(x, xo, dst, o, qw, qwo, s, 31);
  requantK4(x, xo, dst, o, s.L, 31);
  packQ5K(s.L, dst, o);
}

// ============================================================ Q6_K (210 bytes)
// ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208

export function dequantizeQ6_K(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q6_K) {
    const d = readF16(src, o + 208);
    for (let n = 0, ql = o, qh = o + 128, sc = o + 192; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l]!;
        const q1 = ((src[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        dst[y + l] = fr(fr(d * ((src[sc + is]! << 24) >> 24)) * q1);
        dst[y + l + 32] = fr(fr(d * ((src[sc + is + 2]! << 24) >> 24)) * q2);
        dst[y + l + 64] = fr(fr(d * ((src[sc + is + 4]! << 24) >> 24)) * q3);
        dst[y + l + 96] = fr(fr(d * ((src[sc + is + 6]! << 24) >> 24)) * q4);
      }
    }
  }
}

/** Shared tail of Q6_K: 8-bit scales by RTN against the largest |scale| (−128 maps to it), requantize, pack. */
function finishQ6(x: Float32Array, xo: number, dst: Uint8Array, o: number, s: Scratch, maxScale: number, maxAbsScale: number): void {
  const { scales, L } = s;
  if (maxAbsScale < GROUP_MAX_EPS) {
    dst.fill(0, o, o + BPB.Q6_K);
    return;
  }
  const iscale = fr(-128 / maxScale);
  writeF16(dst, o + 208, fr(1 / iscale));
  for (let ib = 0; ib < 16; ib++) dst[o + 192 + ib] = Math.min(127, nearestInt(fr(iscale * scales[ib]!))) & 0xff;
  requantQ6(x, xo, dst, o, L);
}

/** Requantizes every level from the stored f16 d and int8 scales (sub-blocks with scale 0 keep L), then packs. */
function requantQ6(x: Float32Array, xo: number, dst: Uint8Array, o: number, L: Uint8Array): void {
  const dAll = readF16(dst, o + 208);
  for (let j = 0; j < 16; j++) {
    const d = fr(dAll * ((dst[o + 192 + j]! << 24) >> 24));
    if (!d) continue;
    for (let ii = 0; ii < 16; ii++) {
      const l = nearestInt(fr(x[xo + 16 * j + ii]! / d));
      L[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
    }
  }
  for (let j = 0, ql = o, qh = o + 128; j < QK_K; j += 128, ql += 64, qh += 32) {
    for (let l = 0; l < 32; l++) {
      const a = L[j + l]!;
      const b = L[j + l + 32]!;
      const c = L[j + l + 64]!;
      const e = L[j + l + 96]!;
      dst[ql + l] = (a & 0xf) | ((c & 0xf) << 4);
      dst[ql + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
      dst[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
    }
  }
}

/** quantize_row_q6_K_ref (qw null) and quantize_row_q6_K_impl (qw given): make_qx_quants(16, 32, rmse 1) per 16. */
export function quantizeQ6_K(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array | null, qwo: number, s: Scratch): void {
  let maxScale = 0;
  let maxAbsScale = 0;
  for (let ib = 0; ib < 16; ib++) {
    const scale = makeQxQuants(16, 32, x, xo + 16 * ib, s.L, 16 * ib, 1, qw, qwo + 16 * ib);
    s.scales[ib] = scale;
    const abs = Math.abs(scale);
    if (abs > maxAbsScale) {
      maxAbsScale = abs;
      maxScale = scale;
    }
  }
  finishQ6(x, xo, dst, o, s, maxScale, maxAbsScale);
}

// ============================================================ Q8_K (292 bytes; activations only)
// d f32 @0, qs[256] @4, bsums int16[16] @260

/** dequantize_row_q8_K: x = d·q. */
export function dequantizeQ8_K(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q8_K) {
    const d = readF32(src, o);
    for (let j = 0; j < QK_K; j++) dst[y++] = fr(d * ((src[o + 4 + j]! << 24) >> 24));
  }
}

/** quantize_row_q8_K_ref: iscale = −127/max (max = signed value of largest |x|), q = min(127, nearest_int(iscale·x)). */
export function quantizeQ8_KRef(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  let max = 0;
  let amax = 0;
  for (let j = 0; j < QK_K; j++) {
    const ax = Math.abs(x[xo + j]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + j]!;
    }
  }
  if (!amax) {
    dst.fill(0, o, o + BPB.Q8_K);
    return;
  }
  const iscale = fr(-127 / max);
  for (let j = 0; j < QK_K; j++) dst[o + 4 + j] = Math.min(127, nearestInt(fr(iscale * x[xo + j]!))) & 0xff;
  for (let j = 0; j < 16; j++) {
    let sum = 0;
    for (let ii = 0; ii < 16; ii++) sum += (dst[o + 4 + 16 * j + ii]! << 24) >> 24;
    writeI16(dst, o + 260 + 2 * j, sum);
  }
  writeF32(dst, o, fr(1 / iscale));
}

export function readQ8KBsum(src: Uint8Array, o: number, j: number): number {
  return readI16(src, o + 260 + 2 * j);
}

// ============================================================ refine (quantlab's, not llama.cpp's)
//
// An optional pass after llama.cpp's search: with the super-block scales fixed, each sub-block's stored
// scale (and min) is moved by up to ±2 steps and the choice with the smallest weighted squared error is
// kept, the levels requantized with nearest_int exactly as the decoder will see them. It starts from
// llama.cpp's bytes and only accepts improvements, so under weights w it is never worse than llama.cpp.
// The bytes differ from llama.cpp's but are ordinary blocks that llama.cpp decodes.

const RADIUS = 2;

/** Σ w·(decode − x)² for one affine sub-block: x ≈ D·l − M, l = clamp(nearest_int((x + M)/D), 0, nmax). */
function affineErr(x: Float32Array, xo: number, w: Float64Array, wo: number, n: number, D: number, M: number, nmax: number): number {
  let e = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const l = Math.max(0, Math.min(nmax, nearestInt(fr(fr(v + M) / D))));
    const r = fr(fr(D * l) - M) - v;
    e += w[wo + i]! * r * r;
  }
  return e;
}

/** Σ w·(decode − x)² for one symmetric sub-block: x ≈ D·l, l = clamp(nearest_int(x/D), lo, hi). */
function symErr(x: Float32Array, xo: number, w: Float64Array, wo: number, n: number, D: number, lo: number, hi: number): number {
  let e = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const l = Math.max(lo, Math.min(hi, nearestInt(fr(v / D))));
    const r = fr(D * l) - v;
    e += w[wo + i]! * r * r;
  }
  return e;
}

/** Best (scale, min) codes near (sc, m) for an affine sub-block; scale codes stay ≥ 1. */
function bestAffine(x: Float32Array, xo: number, w: Float64Array, wo: number, n: number, d: number, dmin: number, sc: number, m: number, maxCode: number, nmax: number): [number, number] {
  if (sc === 0) return [sc, m];
  let best = affineErr(x, xo, w, wo, n, fr(d * sc), fr(dmin * m), nmax);
  let bs = sc;
  let bm = m;
  for (let s2 = Math.max(1, sc - RADIUS); s2 <= Math.min(maxCode, sc + RADIUS); s2++) {
    for (let m2 = Math.max(0, m - RADIUS); m2 <= Math.min(maxCode, m + RADIUS); m2++) {
      const D = fr(d * s2);
      if (!D) continue;
      const e = affineErr(x, xo, w, wo, n, D, fr(dmin * m2), nmax);
      if (e < best) {
        best = e;
        bs = s2;
        bm = m2;
      }
    }
  }
  return [bs, bm];
}

/** Best signed scale code near sc (never 0) for a symmetric sub-block. */
function bestSym(x: Float32Array, xo: number, w: Float64Array, wo: number, n: number, d: number, sc: number, minCode: number, maxCode: number, lo: number, hi: number): number {
  if (sc === 0 || !fr(d * sc)) return sc;
  let best = symErr(x, xo, w, wo, n, fr(d * sc), lo, hi);
  let bs = sc;
  for (let s2 = Math.max(minCode, sc - RADIUS); s2 <= Math.min(maxCode, sc + RADIUS); s2++) {
    if (s2 === 0 || !fr(d * s2)) continue;
    const e = symErr(x, xo, w, wo, n, fr(d * s2), lo, hi);
    if (e < best) {
      best = e;
      bs = s2;
    }
  }
  return bs;
}

/** Refines a Q2_K block in place (see above). w: (256) error weights. */
export function refineQ2_K(x: Float32Array, xo: number, dst: Uint8Array, o: number, w: Float64Array, s: Scratch): void {
  const d = readF16(dst, o + 80);
  const dmin = readF16(dst, o + 82);
  if (!d) return;
  for (let j = 0; j < 16; j++) {
    const b = dst[o + j]!;
    const [sc, m] = bestAffine(x, xo + 16 * j, w, 16 * j, 16, d, dmin, b & 0xf, b >> 4, 15, 3);
    dst[o + j] = sc | (m << 4);
  }
  requantQ2(x, xo, dst, o, s.L);
  pack2bit(s.L, dst, o + 16);
}

/** Refines a Q3_K block in place. */
export function refineQ3_K(x: Float32Array, xo: number, dst: Uint8Array, o: number, w: Float64Array, s: Scratch): void {
  const d = readF16(dst, o + 108);
  if (!d) return;
  const { Ls, Li8: L } = s;
  // levels as stored (0..7), so sub-blocks that keep a zero scale keep their bytes
  for (let j = 0, k = 0, q = o + 32, m = 1; j < QK_K; j += 128, q += 32) {
    for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
      for (let l = 0; l < 32; l++) L[k++] = ((dst[q + l]! >> shift) & 3) | (dst[o + l]! & m ? 4 : 0);
    }
  }
  for (let j = 0; j < 16; j++) Ls[j] = bestSym(x, xo + 16 * j, w, 16 * j, 16, d, q3Scale(dst, o + 96, j), -32, 31, -4, 3) + 32;
  packQ3Scales(Ls, dst, o + 96);
  finishQ3(x, xo, dst, o, L);
}

/** Refines a Q4_K (nmax 15) or Q5_K (nmax 31) block in place. */
export function refineQ45_K(x: Float32Array, xo: number, dst: Uint8Array, o: number, w: Float64Array, s: Scratch, nmax: number): void {
  const d = readF16(dst, o);
  const dmin = readF16(dst, o + 2);
  if (!d) return;
  const { Ls, Lm } = s;
  for (let j = 0; j < 8; j++) {
    [Ls[j], Lm[j]] = bestAffine(x, xo + 32 * j, w, 32 * j, 32, d, dmin, scaleK4(j, dst, o + 4), minK4(j, dst, o + 4), 63, nmax);
  }
  packScaleMinK4(Ls, Lm, dst, o + 4);
  requantK4(x, xo, dst, o, s.L, nmax);
  if (nmax === 15) packQ4K(s.L, dst, o);
  else packQ5K(s.L, dst, o);
}

/** Refines a Q6_K block in place. */
export function refineQ6_K(x: Float32Array, xo: number, dst: Uint8Array, o: number, w: Float64Array, s: Scratch): void {
  const d = readF16(dst, o + 208);
  if (!d) return;
  for (let j = 0; j < 16; j++) {
    const sc = (dst[o + 192 + j]! << 24) >> 24;
    dst[o + 192 + j] = bestSym(x, xo + 16 * j, w, 16 * j, 16, d, sc, -128, 127, -32, 31) & 0xff;
  }
  requantQ6(x, xo, dst, o, s.L);
}
