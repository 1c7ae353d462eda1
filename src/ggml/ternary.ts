/**
 * Ternary types for BitNet b1.58 / TriLM weights: TQ1_0 (1.6875 bpw, 5 trits per byte) and TQ2_0
 * (2.0625 bpw, 2 bits per element). ggml-quants.c `quantize_row_tq{1,2}_0_ref` / `dequantize_row_tq{1,2}_0`:
 * d = amax of the 256-block, trit = lroundf(x/d) ∈ {−1, 0, 1} (half away from zero).
 */
import { fr, readF16, roundf, writeF16 } from "./cfloat.js";
import { GGML_TYPES, GgmlType } from "./types.js";

/** bytes per block of the types in this file (the type-traits table, types.ts) */
const BPB = {
  TQ1_0: GGML_TYPES[GgmlType.TQ1_0].bytesPerBlock,
  TQ2_0: GGML_TYPES[GgmlType.TQ2_0].bytesPerBlock,
} as const;

const POW3 = [1, 3, 9, 27, 81, 243];

function blockAmax(x: Float32Array, xo: number): number {
  let amax = 0;
  for (let j = 0; j < 256; j++) amax = Math.max(amax, Math.abs(x[xo + j]!));
  return amax;
}

// TQ1_0: qs[48] @0, qh[4] @48, d @52

/** A byte holding trits packed as ⌈t·256/243⌉ yields trit n (most significant first) as ((b·3ⁿ mod 256)·3) >> 8. */
function trit(b: number, n: number): number {
  const q = (b * POW3[n]!) & 0xff;
  return (q * 3) >> 8;
}

export function dequantizeTQ1_0(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.TQ1_0) {
    const d = readF16(src, o + 52);
    for (let n = 0; n < 5; n++) for (let m = 0; m < 32; m++) dst[y++] = fr((trit(src[o + m]!, n) - 1) * d);
    for (let n = 0; n < 5; n++) for (let m = 0; m < 16; m++) dst[y++] = fr((trit(src[o + 32 + m]!, n) - 1) * d);
    for (let n = 0; n < 4; n++) for (let j = 0; j < 4; j++) dst[y++] = fr((trit(src[o + 48 + j]!, n) - 1) * d);
  }
}

export function quantizeTQ1_0Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  const d = blockAmax(x, xo);
  const id = d ? fr(1 / d) : 0;
  writeF16(dst, o + 52, d);
  const t = (k: number): number => roundf(fr(x[xo + k]! * id)) + 1; // −1, 0, 1 → 0, 1, 2
  // bytes 0..31: elements m + 32n; bytes 32..47: elements 160 + m + 16n (n = 0..4, first most significant)
  for (let m = 0; m < 32; m++) {
    let q = 0;
    for (let n = 0; n < 5; n++) q = q * 3 + t(m + 32 * n);
    dst[o + m] = Math.floor((q * 256 + 242) / 243); // ceiling division by 3⁵
  }
  for (let m = 0; m < 16; m++) {
    let q = 0;
    for (let n = 0; n < 5; n++) q = q * 3 + t(160 + m + 16 * n);
    dst[o + 32 + m] = Math.floor((q * 256 + 242) / 243);
  }
  // qh: elements 240 + j + 4n, 4 trits then ×3 so the first lands in the most significant trit
  for (let j = 0; j < 4; j++) {
    let q = 0;
    for (let n = 0; n < 4; n++) q = q * 3 + t(240 + j + 4 * n);
    q *= 3;
    dst[o + 48 + j] = Math.floor((q * 256 + 242) / 243);
  }
}

// TQ2_0: qs[64] @0, d @64

export function dequantizeTQ2_0(src: Uint8Array, dst: Float32Array, nb: number): void {
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BPB.TQ2_0) {
    const d = readF16(src, o + 64);
    for (let j = 0; j < 64; j += 32) {
      for (let l = 0; l < 4; l++) {
        for (let m = 0; m < 32; m++) dst[y++] = fr((((src[o + j + m]! >> (2 * l)) & 3) - 1) * d);
      }
    }
  }
}

export function quantizeTQ2_0Ref(x: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  const d = blockAmax(x, xo);
  const id = d ? fr(1 / d) : 0;
  writeF16(dst, o + 64, d);
  for (let j = 0; j < 64; j += 32) {
    for (let m = 0; m < 32; m++) {
      let q = 0;
      for (let n = 0; n < 4; n++) {
        const xi = roundf(fr(x[xo + 4 * j + m + 32 * n]! * id)) + 1;
        q += (xi & 3) << (2 * n);
      }
      dst[o + j + m] = q;
    }
  }
}
