/**
 * Non-linear 4-bit types IQ4_NL (32-element blocks) and IQ4_XS (256-element super-blocks with 6-bit
 * sub-block scales). Values come from the 16-entry table `kvalues_iq4nl` (ggml-common.h). The quantizer is
 * ggml-quants.c `quantize_row_iq4_nl_impl` (llama.cpp uses it with and without an importance matrix:
 * without one the weights are x²). Scales search ±7 steps around max/−127; levels by `best_index_int8`.
 */
import { fr, GROUP_MAX_EPS, nearestInt, readF16, readU16, writeF16 } from "./cfloat.js";
import { bestIndexInt8 } from "./search.js";
import { GGML_TYPES, GgmlType } from "./types.js";

/** bytes per block of the types in this file (the type-traits table, types.ts) */
const BPB = {
  IQ4_NL: GGML_TYPES[GgmlType.IQ4_NL].bytesPerBlock,
  IQ4_XS: GGML_TYPES[GgmlType.IQ4_XS].bytesPerBlock,
} as const;

/** kvalues_iq4nl from ggml-common.h: the 16 levels of IQ4_NL/IQ4_XS, sorted. */
export const KVALUES_IQ4NL = Int8Array.of(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

export function dequantizeIQ4_NL(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.IQ4_NL, y += 32) {
    const d = readF16(src, o);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j]!;
      dst[y + j] = fr(d * KVALUES_IQ4NL[q & 0xf]!);
      dst[y + j + 16] = fr(d * KVALUES_IQ4NL[q >> 4]!);
    }
  }
}

// IQ4_XS: d @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8
export function dequantizeIQ4_XS(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.IQ4_XS) {
    const d = readF16(src, o);
    const sh = readU16(src, o + 2);
    for (let ib = 0, qs = o + 8; ib < 8; ib++, qs += 16, y += 32) {
      const ls = ((src[o + 4 + (ib >> 1)]! >> (4 * (ib % 2))) & 0xf) | (((sh >> (2 * ib)) & 3) << 4);
      const dl = fr(d * (ls - 32));
      for (let j = 0; j < 16; j++) {
        const q = src[qs + j]!;
        dst[y + j] = fr(dl * KVALUES_IQ4NL[q & 0xf]!);
        dst[y + j + 16] = fr(dl * KVALUES_IQ4NL[q >> 4]!);
      }
    }
  }
}

export interface Iq4Scratch {
  weight: Float32Array; // (32)
  L: Uint8Array; // (256)
  scales: Float32Array; // (8)
}

export function newIq4Scratch(): Iq4Scratch {
  return { weight: new Float32Array(32), L: new Uint8Array(256), scales: new Float32Array(8) };
}

/**
 * quantize_row_iq4_nl_impl for one super-block of `superBlockSize` (32 for IQ4_NL: one block, one f16
 * scale; 256 for IQ4_XS: 8 blocks with 6-bit scales under an f16 super-scale). qw: importance weights for
 * these elements (null → x²). ntry = 7 as llama.cpp's quantize_iq4_nl / quantize_iq4_xs use.
 * Writes d at dh, indices at q4, and for IQ4_XS scales_h/scales_l at sh/sl.
 */
export function quantizeIq4Impl(
  superBlockSize: number, x: Float32Array, xo: number, dst: Uint8Array, dh: number, q4: number,
  sh: number, sl: number, qw: Float32Array | null, qwo: number, ntry: number, s: Iq4Scratch,
): void {
  const blockSize = 32;
  const values = KVALUES_IQ4NL;
  const { weight, L, scales } = s;
  let sigma2 = 0;
  for (let j = 0; j < superBlockSize; j++) sigma2 = fr(sigma2 + fr(x[xo + j]! * x[xo + j]!));
  sigma2 = fr(sigma2 * fr(2 / superBlockSize));
  dst.fill(0, q4, q4 + superBlockSize / 2);
  writeF16(dst, dh, 0);

  let maxScale = 0;
  let amaxScale = 0;
  const nblocks = superBlockSize / blockSize;
  for (let ib = 0; ib < nblocks; ib++) {
    const xb = xo + ib * blockSize;
    const Lb = ib * blockSize;
    for (let j = 0; j < blockSize; j++) {
      const v = x[xb + j]!;
      weight[j] = qw ? fr(qw[qwo + ib * blockSize + j]! * fr(Math.sqrt(fr(sigma2 + fr(v * v))))) : fr(v * v);
    }
    let amax = 0;
    let max = 0;
    for (let j = 0; j < blockSize; j++) {
      const ax = Math.abs(x[xb + j]!);
      if (ax > amax) {
        amax = ax;
        max = x[xb + j]!;
      }
    }
    if (amax < GROUP_MAX_EPS) {
      scales[ib] = 0;
      continue;
    }
    let d = ntry > 0 ? fr(-max / values[0]!) : fr(max / values[0]!);
    let id = fr(1 / d);
    let sumqx = 0;
    let sumq2 = 0;
    for (let j = 0; j < blockSize; j++) {
      const al = fr(id * x[xb + j]!);
      const l = bestIndexInt8(16, values, al);
      L[Lb + j] = l;
      const q = values[l]!;
      const w = weight[j]!;
      sumqx = fr(sumqx + fr(fr(w * q) * x[xb + j]!));
      sumq2 = fr(sumq2 + fr(fr(w * q) * q));
    }
    d = sumq2 > 0 ? fr(sumqx / sumq2) : 0;
    let best = fr(d * sumqx);
    for (let itry = -ntry; itry <= ntry; itry++) {
      id = fr((itry + values[0]!) / max);
      sumqx = 0;
      sumq2 = 0;
      for (let j = 0; j < blockSize; j++) {
        const al = fr(id * x[xb + j]!);
        const l = bestIndexInt8(16, values, al);
        const q = values[l]!;
        const w = weight[j]!;
        sumqx = fr(sumqx + fr(fr(w * q) * x[xb + j]!));
        sumq2 = fr(sumq2 + fr(fr(w * q) * q));
      }
      if (sumq2 > 0 && fr(sumqx * sumqx) > fr(best * sumq2)) {
        d = fr(sumqx / sumq2);
        best = fr(d * sumqx);
      }
    }
    scales[ib] = d;
    const absD = Math.abs(d);
    if (absD > amaxScale) {
      amaxScale = absD;
      maxScale = d;
    }
  }

  if (nblocks > 1) {
    dst[sh] = 0;
    dst[sh + 1] = 0;
    let scalesH = 0;
    const d = fr(-maxScale / 32);
    writeF16(dst, dh, d);
    const id = d ? fr(1 / d) : 0;
    for (let ib = 0; ib < nblocks; ib++) {
      let l = nearestInt(fr(id * scales[ib]!));
      l = Math.max(-32, Math.min(31, l));
      const dl = fr(d * l);
      const idl = dl ? fr(1 / dl) : 0;
      const xb = xo + ib * blockSize;
      for (let j = 0; j < blockSize; j++) L[ib * blockSize + j] = bestIndexInt8(16, values, fr(idl * x[xb + j]!));
      l += 32;
      const lLow = l & 0xf;
      const lHigh = l >> 4;
      if (ib % 2 === 0) dst[sl + (ib >> 1)] = lLow;
      else dst[sl + (ib >> 1)] |= lLow << 4;
      scalesH |= lHigh << (2 * (ib % 8));
    }
    dst[sh] = scalesH & 0xff;
    dst[sh + 1] = (scalesH >> 8) & 0xff;
  } else {
    writeF16(dst, dh, scales[0]!);
    if (ntry > 0) {
      const id = scales[0] ? fr(1 / scales[0]) : 0;
      for (let j = 0; j < superBlockSize; j++) L[j] = bestIndexInt8(16, values, fr(id * x[xo + j]!));
    }
  }
  for (let i = 0; i < superBlockSize / 32; i++) {
    for (let j = 0; j < 16; j++) dst[q4 + 16 * i + j] = L[32 * i + j]! | (L[32 * i + 16 + j]! << 4);
  }
}

/**
 * quantlab's optional refine pass for IQ4_XS (not llama.cpp's; see kquants.ts "refine"): per 32-element
 * sub-block, tries the 6-bit scale code ±2 (never 0) with nearest-value indices under the stored f16 d,
 * and rewrites the sub-block only when its weighted squared error beats the bytes as they are.
 */
export function refineIQ4_XS(x: Float32Array, xo: number, dst: Uint8Array, o: number, w: Float64Array): void {
  const d = readF16(dst, o);
  if (!d) return;
  let sh = readU16(dst, o + 2);
  const kv = KVALUES_IQ4NL;
  for (let ib = 0; ib < 8; ib++) {
    const slo = o + 4 + (ib >> 1);
    const shift = 4 * (ib % 2);
    const code = (((dst[slo]! >> shift) & 0xf) | (((sh >> (2 * ib)) & 3) << 4)) - 32;
    const qs = o + 8 + 16 * ib;
    const xb = xo + 32 * ib;
    // error of the stored bytes
    const D0 = fr(d * code);
    let best = 0;
    for (let j = 0; j < 16; j++) {
      const q = dst[qs + j]!;
      const r0 = fr(D0 * kv[q & 0xf]!) - x[xb + j]!;
      const r1 = fr(D0 * kv[q >> 4]!) - x[xb + j + 16]!;
      best += w[32 * ib + j]! * r0 * r0 + w[32 * ib + j + 16]! * r1 * r1;
    }
    let bestCode = code;
    for (let c = Math.max(-32, code - 2); c <= Math.min(31, code + 2); c++) {
      const D = fr(d * c);
      if (c === code || !D) continue;
      let e = 0;
      for (let j = 0; j < 32; j++) {
        const v = x[xb + j]!;
        const r = fr(D * kv[bestIndexInt8(16, kv, fr(v / D))]!) - v;
        e += w[32 * ib + j]! * r * r;
      }
      if (e < best) {
        best = e;
        bestCode = c;
      }
    }
    if (bestCode === code) continue;
    const D = fr(d * bestCode);
    for (let j = 0; j < 16; j++) {
      const i0 = bestIndexInt8(16, kv, fr(x[xb + j]! / D));
      const i1 = bestIndexInt8(16, kv, fr(x[xb + j + 16]! / D));
      dst[qs + j] = i0 | (i1 << 4);
    }
    const ls = bestCode + 32;
    dst[slo] = (dst[slo]! & ~(0xf << shift)) | ((ls & 0xf) << shift);
    sh = (sh & ~(3 << (2 * ib))) | ((ls >> 4) << (2 * ib));
  }
  dst[o + 2] = sh & 0xff;
  dst[o + 3] = (sh >> 8) & 0xff;
}
