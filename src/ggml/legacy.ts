/**
 * 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 (layouts in types.ts GGML_BLOCK_LAYOUT).
 * Decoders follow ggml-quants.c `dequantize_row_*`; quantizers follow `quantize_row_*_ref` (no importance
 * matrix: byte-identical with llama.cpp) and `quantize_row_*_impl` (with one). All arithmetic is C float.
 */
import { fr, readF16, roundf, toInt8, toUint8, writeF16, writeU32, readU32 } from "./cfloat.js";
import { makeQkx3Quants, makeQxQuants, rowSigma2 } from "./search.js";
import { GGML_TYPES, GgmlType } from "./types.js";

/** bytes per block of the types in this file (the type-traits table, types.ts) */
const BPB = {
  Q4_0: GGML_TYPES[GgmlType.Q4_0].bytesPerBlock,
  Q4_1: GGML_TYPES[GgmlType.Q4_1].bytesPerBlock,
  Q5_0: GGML_TYPES[GgmlType.Q5_0].bytesPerBlock,
  Q5_1: GGML_TYPES[GgmlType.Q5_1].bytesPerBlock,
  Q8_0: GGML_TYPES[GgmlType.Q8_0].bytesPerBlock,
  Q8_1: GGML_TYPES[GgmlType.Q8_1].bytesPerBlock,
} as const;

/** C FLT_MAX, the start value of the min/max scans in quantize_row_q4_1_ref / q5_1_ref */
const FLT_MAX = 3.4028234663852886e38;

const QK = 32;

// ---------------------------------------------------------------- Q4_0 (18 bytes)

export function dequantizeQ4_0(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q4_0, y += QK) {
    const d = readF16(src, o);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j]!;
      dst[y + j] = fr(((q & 0x0f) - 8) * d);
      dst[y + j + 16] = fr(((q >> 4) - 8) * d);
    }
  }
}

/** quantize_row_q4_0_ref: d = max/−8 where max is the signed value of largest |x|; q = (int8)(x/d + 8.5) (truncation), capped at 15. */
export function quantizeQ4_0Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  const d = fr(max / -8);
  const id = d ? fr(1 / d) : 0;
  writeF16(dst, o, d);
  for (let j = 0; j < 16; j++) {
    const x0 = fr(x[xo + j]! * id);
    const x1 = fr(x[xo + 16 + j]! * id);
    const q0 = Math.min(15, toInt8(fr(x0 + 8.5)));
    const q1 = Math.min(15, toInt8(fr(x1 + 8.5)));
    dst[o + 2 + j] = (q0 & 0xff) | ((q1 << 4) & 0xff);
  }
}

/** quantize_row_q4_0_impl with quant_weights: weighted make_qx_quants(32, 8, …, rmse_type 1). */
export function quantizeQ4_0Impl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, sigma2: number, s: Scratch): void {
  blockWeights(x, xo, qw, qwo, sigma2, s.weight);
  const d = makeQxQuants(QK, 8, x, xo, s.L, 0, 1, s.weight, 0);
  writeF16(dst, o, d);
  for (let j = 0; j < 16; j++) dst[o + 2 + j] = s.L[j]! | (s.L[j + 16]! << 4);
}

// ---------------------------------------------------------------- Q4_1 (20 bytes)

export function dequantizeQ4_1(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q4_1, y += QK) {
    const d = readF16(src, o);
    const m = readF16(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j]!;
      dst[y + j] = fr(fr((q & 0x0f) * d) + m);
      dst[y + j + 16] = fr(fr((q >> 4) * d) + m);
    }
  }
}

/** quantize_row_q4_1_ref: d = (max − min)/15, m = min; q = (int8)((x − min)/d + 0.5) (truncation), capped at 15. */
export function quantizeQ4_1Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  let min = FLT_MAX;
  let max = -FLT_MAX;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const d = fr(fr(max - min) / 15);
  const id = d ? fr(1 / d) : 0;
  writeF16(dst, o, d);
  writeF16(dst, o + 2, min);
  for (let j = 0; j < 16; j++) {
    const x0 = fr(fr(x[xo + j]! - min) * id);
    const x1 = fr(fr(x[xo + 16 + j]! - min) * id);
    const q0 = Math.min(15, toInt8(fr(x0 + 0.5)));
    const q1 = Math.min(15, toInt8(fr(x1 + 0.5)));
    dst[o + 4 + j] = (q0 & 0xff) | ((q1 << 4) & 0xff);
  }
}

/** quantize_row_q4_1_impl: weighted make_qkx3_quants(32, 15, rmin −0.9, rdelta 0.05, 36 steps). */
export function quantizeQ4_1Impl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, sigma2: number, s: Scratch): void {
  blockWeights(x, xo, qw, qwo, sigma2, s.weight);
  const d = makeQkx3Quants(QK, 15, x, xo, s.weight, s.L, s.min, 0, s.Laux, fr(-0.9), fr(0.05), 36, false);
  writeF16(dst, o, d);
  writeF16(dst, o + 2, -s.min[0]!);
  for (let j = 0; j < 16; j++) dst[o + 4 + j] = s.L[j]! | (s.L[j + 16]! << 4);
}

// ---------------------------------------------------------------- Q5_0 (22 bytes)

export function dequantizeQ5_0(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q5_0, y += QK) {
    const d = readF16(src, o);
    const qh = readU32(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[y + j] = fr((((q & 0x0f) | h0) - 16) * d);
      dst[y + j + 16] = fr((((q >> 4) | h1) - 16) * d);
    }
  }
}

/** quantize_row_q5_0_ref: d = max/−16; q = (int8)(x/d + 16.5) (truncation), capped at 31. */
export function quantizeQ5_0Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  const d = fr(max / -16);
  const id = d ? fr(1 / d) : 0;
  writeF16(dst, o, d);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = Math.min(31, toInt8(fr(fr(x[xo + j]! * id) + 16.5))) & 0xff;
    const q1 = Math.min(31, toInt8(fr(fr(x[xo + 16 + j]! * id) + 16.5))) & 0xff;
    dst[o + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + 16);
  }
  writeU32(dst, o + 2, qh >>> 0);
}

/** quantize_row_q5_0_impl: weighted make_qx_quants(32, 16, …, rmse_type 1). */
export function quantizeQ5_0Impl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, sigma2: number, s: Scratch): void {
  blockWeights(x, xo, qw, qwo, sigma2, s.weight);
  const d = makeQxQuants(QK, 16, x, xo, s.L, 0, 1, s.weight, 0);
  writeF16(dst, o, d);
  packQ5(s.L, dst, o + 2, o + 6);
}

// ---------------------------------------------------------------- Q5_1 (24 bytes)

export function dequantizeQ5_1(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.Q5_1, y += QK) {
    const d = readF16(src, o);
    const m = readF16(src, o + 2);
    const qh = readU32(src, o + 4);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[y + j] = fr(fr(((q & 0x0f) | h0) * d) + m);
      dst[y + j + 16] = fr(fr(((q >> 4) | h1) * d) + m);
    }
  }
}

/** quantize_row_q5_1_ref: d = (max − min)/31, m = min; q = (uint8)((x − min)/d + 0.5) (truncation, no cap). */
export function quantizeQ5_1Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  let min = FLT_MAX;
  let max = -FLT_MAX;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const d = fr(fr(max - min) / 31);
  const id = d ? fr(1 / d) : 0;
  writeF16(dst, o, d);
  writeF16(dst, o + 2, min);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = toUint8(fr(fr(fr(x[xo + j]! - min) * id) + 0.5));
    const q1 = toUint8(fr(fr(fr(x[xo + 16 + j]! - min) * id) + 0.5));
    dst[o + 8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + 16);
  }
  writeU32(dst, o + 4, qh >>> 0);
}

/** quantize_row_q5_1_impl: weighted make_qkx3_quants(32, 31, rmin −0.9, rdelta 0.05, 36 steps). */
export function quantizeQ5_1Impl(x: Float32Array, xo: number, dst: Uint8Array, o: number, qw: Float32Array, qwo: number, sigma2: number, s: Scratch): void {
  blockWeights(x, xo, qw, qwo, sigma2, s.weight);
  const d = makeQkx3Quants(QK, 31, x, xo, s.weight, s.L, s.min, 0, s.Laux, fr(-0.9), fr(0.05), 36, false);
  writeF16(dst, o, d);
  writeF16(dst, o + 2, -s.min[0]!);
  packQ5(s.L, dst, o + 4, o + 8);
}

function packQ5(L: Uint8Array, dst: Uint8Array, qhOff: number, qsOff: number): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = L[j]!;
    const q1 = L[j + 16]!;
    dst[qsOff + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + 16);
  }
  writeU32(dst, qhOff, qh >>> 0);
}

// ---------------------------------------------------------------- Q8_0 (34 bytes), Q8_1 (36 bytes)
// Same codes; Q8_1 (activations only) also stores s = f16(Σq·d) after d, so its codes start at byte 4.

/** d·q for blocks of `bs` bytes whose int8 codes start at byte `qo` (Q8_0: 34, 2; Q8_1: 36, 4). */
function dequantizeQ8(src: Uint8Array, dst: Float32Array, nb: number, bs: number, qo: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += bs, y += QK) {
    const d = readF16(src, o);
    for (let j = 0; j < QK; j++) dst[y + j] = fr(((src[o + qo + j]! << 24) >> 24) * d);
  }
}

/** quantize_row_q8_0_ref / _q8_1_ref: d = amax/127; q = roundf(x/d) (half away from zero); Q8_1 adds s. */
function quantizeQ8Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number, withSum: boolean): void {
  let amax = 0;
  for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[xo + j]!));
  const d = fr(amax / 127);
  const id = d ? fr(1 / d) : 0;
  writeF16(dst, o, d);
  const qo = withSum ? 4 : 2;
  let sum = 0;
  for (let j = 0; j < QK; j++) {
    const q = toInt8(roundf(fr(x[xo + j]! * id)));
    dst[o + qo + j] = q & 0xff;
    sum += q;
  }
  if (withSum) writeF16(dst, o + 2, fr(sum * d));
}

export function dequantizeQ8_0(src: Uint8Array, dst: Float32Array, nb: number): void {
  dequantizeQ8(src, dst, nb, BPB.Q8_0, 2);
}

export function quantizeQ8_0Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  quantizeQ8Ref(x, xo, dst, o, false);
}

/** Not a storage type in llama.cpp (it has no to_float); decoded as d·q for tests and tools. */
export function dequantizeQ8_1(src: Uint8Array, dst: Float32Array, nb: number): void {
  dequantizeQ8(src, dst, nb, BPB.Q8_1, 4);
}

export function quantizeQ8_1Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  quantizeQ8Ref(x, xo, dst, o, true);
}

// ---------------------------------------------------------------- shared

/** Scratch buffers one quantizer call reuses across blocks (caller-owned; no module globals). */
export interface Scratch {
  weight: Float32Array; // (256)
  L: Uint8Array; // (256)
  Laux: Uint8Array; // (32)
  min: Float32Array; // (16) mins per sub-block
  scales: Float32Array; // (16)
  sw: Float32Array; // (16)
  Ls: Uint8Array; // (16)
  Lm: Uint8Array; // (16)
  Li8: Int8Array; // (256)
}

export function newScratch(): Scratch {
  return {
    weight: new Float32Array(256),
    L: new Uint8Array(256),
    Laux: new Uint8Array(32),
    min: new Float32Array(16),
    scales: new Float32Array(16),
    sw: new Float32Array(16),
    Ls: new Uint8Array(16),
    Lm: new Uint8Array(16),
    Li8: new Int8Array(256),
  };
}

/** weight[j] = qw[j]·sqrtf(sigma2 + x[j]²), the importance weighting of every `_impl` quantizer. */
export function blockWeights(x: Float32Array, xo: number, qw: Float32Array, qwo: number, sigma2: number, out: Float32Array, n = QK): void {
  for (let j = 0; j < n; j++) {
    const v = x[xo + j]!;
    out[j] = fr(qw[qwo + j]! * fr(Math.sqrt(fr(sigma2 + fr(v * v)))));
  }
}

export { rowSigma2 };
