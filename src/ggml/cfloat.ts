/**
 * C `float` arithmetic and rounding, emulated in JS so our codecs round exactly as ggml's C code does.
 *
 * - Every C float operation is `fr(a op b)`: JS computes in double and `Math.fround` rounds to f32. For
 *   + − × ÷ and sqrt of two f32 operands this double rounding is innocuous (53 ≥ 2·24 + 2 bits), so the
 *   result is the correctly rounded f32 value, as x86-64 SSE computes it.
 * - ggml-quants.c lives in ggml-base, which llama.cpp builds without -march flags: no FMA contraction, so
 *   `a*b + c` is two roundings. The goldens (shared/data/ggml) confirm this bit for bit.
 * - Three different roundings appear in ggml-quants.c; each function names the one it uses:
 *   `nearestInt` (round half to even, the 1.5·2^23 magic-number trick), `roundf`/`lroundf` (half away
 *   from zero) and `(int8_t)(x + 8.5f)` (truncation toward zero after adding an offset).
 */
import { f16Table32, f32ToF16Bits } from "../core/f16.js";

export const fr = Math.fround;

/** f32 bits of the magic 1.5·2^23 = 12582912.f (ggml-quants.c `nearest_int`). */
const MAGIC = 12582912;
const scratchF = new Float32Array(1);
const scratchI = new Int32Array(scratchF.buffer);

/**
 * ggml `nearest_int(float)`: adds 12582912.f in f32 and reads the low mantissa bits. For |x| ≤ 4194303 this
 * is round-half-to-even; outside that range (and for NaN) we reproduce the same bit trick.
 */
export function nearestInt(x: number): number {
  const v = fr(x + MAGIC);
  if (v >= 8388608 && v < 16777216) return v - MAGIC;
  scratchF[0] = v;
  return (scratchI[0]! & 0x007fffff) - 0x00400000;
}

/** C `roundf` / `lroundf`: round half away from zero (x is an f32 value, so |x| + 0.5 is exact in double). */
export function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Conversion of a float to `int8_t` as gcc does on x86-64: truncate to int32, keep the low byte (signed). */
export function toInt8(x: number): number {
  return ((Math.trunc(x) | 0) << 24) >> 24;
}

/** Conversion of a float to `uint8_t`: truncate to int32, keep the low byte. */
export function toUint8(x: number): number {
  return (Math.trunc(x) | 0) & 0xff;
}

/** ggml `GROUP_MAX_EPS` = 1e-15f: groups whose max |x| is below it count as all zero. */
export const GROUP_MAX_EPS = fr(1e-15);

const F16 = f16Table32();

/** little-endian f16 at byte offset o, as f32 (ggml `GGML_FP16_TO_FP32`, exact) */
export function readF16(b: Uint8Array, o: number): number {
  return F16[b[o]! | (b[o + 1]! << 8)]!;
}

/** writes x as f16 (ggml `GGML_FP32_TO_FP16`: round to nearest even) at byte offset o; returns the f16 value */
export function writeF16(b: Uint8Array, o: number, x: number): number {
  const h = f32ToF16Bits(x);
  b[o] = h & 0xff;
  b[o + 1] = h >>> 8;
  return F16[h]!;
}

/** x rounded to the nearest f16 value (ties to even), as f32 */
export function roundF16(x: number): number {
  return F16[f32ToF16Bits(x)]!;
}

export function readU16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function readI16(b: Uint8Array, o: number): number {
  return ((b[o]! | (b[o + 1]! << 8)) << 16) >> 16;
}

export function writeI16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

export function readU32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

export function readF32(b: Uint8Array, o: number): number {
  scratchI[0] = b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);
  return scratchF[0]!;
}

export function writeF32(b: Uint8Array, o: number, x: number): void {
  scratchF[0] = x;
  const v = scratchI[0]!;
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
