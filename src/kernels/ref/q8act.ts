/**
 * Scalar reference for the activation side of the quantized kernels: x → Q8 blocks of 32, ggml's
 * block_q8_0 semantics (ggml-quants.c quantize_row_q8_0_ref: d = amax/127, id = 1/d, q = round(x·id),
 * d stored as f16), with ties rounded to even as ggml's AVX2 activation path does (_mm256_round_ps
 * nearest) and as the WASM kernel's magic-number rounding does. All arithmetic in f32 (Math.fround).
 */
import { f16BitsToF32, f32ToF16Bits } from "../../core/f16.js";

export interface Q8Activations {
  /** (n) codes in −127..127 */
  q: Int8Array;
  /** (n/32) f16-rounded scales */
  d: Float32Array;
  /** (n/16) sums of codes */
  sums16: Int32Array;
}

/** Round half to even (|v| well below 2^52). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v); // half up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function quantizeActivationsQ8Ref(x: Float32Array, n = x.length): Q8Activations {
  const nb = n >> 5;
  const q = new Int8Array(n);
  const d = new Float32Array(nb);
  const sums16 = new Int32Array(n >> 4);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const db = Math.fround(amax / 127);
    const id = db !== 0 ? Math.fround(1 / db) : 0;
    d[b] = f16BitsToF32(f32ToF16Bits(db));
    for (let j = 0; j < 32; j++) {
      const v = roundHalfEven(Math.fround(x[b * 32 + j]! * id));
      q[b * 32 + j] = v;
      sums16[(b * 32 + j) >> 4]! += v;
    }
  }
  return { q, d, sums16 };
}

/** The values the codes stand for: q·d, as f32. */
export function dequantizeActivationsQ8(a: Q8Activations): Float32Array {
  const out = new Float32Array(a.q.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(a.q[i]! * a.d[i >> 5]!);
  return out;
}
