/**
 * The float arithmetic of ggml's x86 CPU kernels, emulated exactly in JS: fused multiply-add with one
 * rounding, the vectorized `ggml_v_expf` (ggml-cpu vec.h, AVX-512 and AVX2 forms, polynomial from ARM's
 * optimized-routines), and the horizontal sums the compiler emits for `_mm512_reduce_add_ps` and ggml's
 * `hsum_float_8`. With these, a forward pass can reproduce llama.cpp's CPU results bit for bit where the
 * order of operations is known (src/model/ggml-forward.ts).
 *
 * Which form applies depends on the CPU variant ggml loaded: AVX-512 (F+DQ) machines run 16-lane code,
 * AVX2 machines 8-lane code; the two differ in the last bit of exp for about a quarter of inputs.
 */
import { f32ToF16Bits } from "../core/f16.js";
import { fr } from "./cfloat.js";
import { glibcExpf } from "./glibc-math.js";
import { GGML_TYPES, GgmlType } from "./types.js";

export type GgmlSimd = "avx512" | "avx2";

/** lanes of one f32 vector register */
export function simdLanes(s: GgmlSimd): number {
  return s === "avx512" ? 16 : 8;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** the f32 neighbour of the f32 value x toward +∞ (x finite) */
function nextUp(x: number): number {
  if (x === 0) {
    u32[0] = 1;
    return f32[0]!;
  }
  f32[0] = x;
  if (x > 0) u32[0] = u32[0]! + 1;
  else u32[0] = u32[0]! - 1;
  return f32[0]!;
}

/**
 * fmaf(a, b, c) on f32 values: a·b + c rounded once to f32 (x86 `vfmadd`). a·b is exact in double; the
 * sum's rounding error is recovered exactly (TwoSum), so the only case where rounding the double sum
 * to f32 differs from rounding the exact value — the double sum sitting on an f32 midpoint — is decided
 * by the error's sign.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const e = (p - (s - bb)) + (c - bb);
  const r = fr(s);
  if (e === 0 || r === s || !Number.isFinite(s)) return r;
  const other = s > r ? nextUp(r) : -nextUp(-r);
  if ((r + other) / 2 !== s) return r;
  return (e > 0) === (other > r) ? other : r;
}

/** a C hex float literal such as "0x1.715476p+0" */
function hexFloat(t: string): number {
  const m = /^0x([0-9a-f]+)\.([0-9a-f]*)p([+-]?\d+)$/i.exec(t);
  if (!m) throw new Error(`bad hex float ${t}`);
  return (parseInt(m[1]! + m[2]!, 16) / 16 ** m[2]!.length) * 2 ** Number(m[3]);
}

// ggml-cpu vec.h ggml_v_expf constants ("adapted from arm limited optimized routine", max error 1.45 + 0.5 ulp)
const SHIFT = hexFloat("0x1.8p23");
const LOG2E = fr(hexFloat("0x1.715476p+0"));
const LN2_HI = fr(hexFloat("0x1.62e4p-1"));
const LN2_LO = fr(hexFloat("0x1.7f7d1cp-20"));
const C5 = fr(hexFloat("0x1.0e4020p-7"));
const C4 = fr(hexFloat("0x1.573e2ep-5"));
const C3 = fr(hexFloat("0x1.555e66p-3"));
const C2 = fr(hexFloat("0x1.fffdb6p-2"));
const C1 = fr(hexFloat("0x1.ffffecp-1"));

/** One lane of ggml_v_expf (f32 in, f32 out) in the AVX-512 or AVX2 form. */
export function ggmlVExpf(x: number, simd: GgmlSimd): number {
  const z = fma32(x, LOG2E, SHIFT);
  const n = fr(z - SHIFT);
  const b = fma32(-n, LN2_LO, fma32(-n, LN2_HI, x));
  const u = fr(b * b);
  const poly = fma32(fma32(C5, b, C4), u, fma32(C3, b, C2));
  if (Number.isNaN(x)) return NaN;
  if (simd === "avx512") {
    // j = poly·u + (C1·b + 1); result = scalef(j, n)
    const j = fma32(poly, u, fma32(C1, b, 1));
    if (Math.abs(n) > 192) return n <= 0 ? 0 : Infinity;
    return fr(j * 2 ** n);
  }
  // AVX2: j = poly·u + C1·b; result = k + k·j with k = 2^n, special-cased scaling beyond |n| > 126
  const j = fma32(poly, u, fr(C1 * b));
  if (Math.abs(n) <= 126) {
    const k = 2 ** n;
    return fma32(k, j, k);
  }
  if (Math.abs(n) > 192) return n <= 0 ? 0 : Infinity;
  const s1 = n <= 0 ? 2 ** -125 : 2 ** 127;
  const s2 = 2 ** n / s1;
  return fr(fma32(s2, j, s2) * s1);
}

/**
 * expf from libm, for the scalar tails of ggml's loops: glibc's (ggml/glibc-math.ts), which is not correctly
 * rounded (~7 in 10⁴ values differ from fr(Math.exp(x)) by one ulp)
 */
export function expf(x: number): number {
  return glibcExpf(x);
}

/**
 * Sum of one vector register's lanes in the order x86 code computes it. 16 lanes: `_mm512_reduce_add_ps`
 * as gcc expands it (upper + lower 256, then 128, then lanes 0+2 and 1+3, then the two). 8 lanes,
 * "movehl" form (ggml `hsum_float_8`, llamafile `hsum`): (x0+x4)+(x2+x6) + (x1+x5)+(x3+x7); "hadd" form
 * (ggml `GGML_F32x8_REDUCE`, two `_mm_hadd_ps`): ((x0+x4)+(x1+x5)) + ((x2+x6)+(x3+x7)).
 */
export function reduceLanes(v: ArrayLike<number>, lanes: number, form: "movehl" | "hadd" = "movehl"): number {
  if (lanes === 16) {
    const t: number[] = [];
    for (let i = 0; i < 8; i++) t.push(fr(v[i + 8]! + v[i]!));
    const q0 = fr(t[4]! + t[0]!), q1 = fr(t[5]! + t[1]!), q2 = fr(t[6]! + t[2]!), q3 = fr(t[7]! + t[3]!);
    return fr(fr(q0 + q2) + fr(q1 + q3));
  }
  const r0 = fr(v[0]! + v[4]!), r1 = fr(v[1]! + v[5]!), r2 = fr(v[2]! + v[6]!), r3 = fr(v[3]! + v[7]!);
  return form === "hadd" ? fr(fr(r0 + r1) + fr(r2 + r3)) : fr(fr(r0 + r2) + fr(r1 + r3));
}

/** ggml_v_silu(x) = x / (1 + v_expf(−x)), one lane */
export function ggmlVSilu(x: number, simd: GgmlSimd): number {
  return fr(x / fr(1 + ggmlVExpf(-x, simd)));
}

/** ggml_silu_f32: the scalar tail of ggml's silu loops */
export function ggmlSiluScalar(x: number): number {
  return fr(x / fr(1 + expf(-x)));
}

/** round half to even (`_mm256_round_ps(v, _MM_ROUND_NEAREST)`) */
function rne(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * ggml-cpu's x86 `quantize_row_q8_0` / `quantize_row_q8_1` (the AVX2/AVX form that quantizes matmul inputs
 * on x86, including the repacked Q4_0/IQ4_NL paths): d = amax/127, but the multiplier is 127/amax (not
 * 1/d as in the `_ref` form) and rounding is half to even (not roundf). Q8_1 also stores s = d·Σq.
 * Writes n/32 Q8_0 or Q8_1 blocks into dst.
 */
export function quantizeRowQ8X86(x: Float32Array, n: number, dst: Uint8Array, q81: boolean): Uint8Array {
  const bs = GGML_TYPES[q81 ? GgmlType.Q8_1 : GgmlType.Q8_0].bytesPerBlock;
  const qo = q81 ? 4 : 2;
  for (let b = 0; b < n / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = fr(amax / 127);
    const id = amax !== 0 ? fr(127 / amax) : 0;
    const o = b * bs;
    const hd = f32ToF16Bits(d);
    dst[o] = hd & 0xff;
    dst[o + 1] = hd >> 8;
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      const q = rne(fr(x[b * 32 + j]! * id));
      dst[o + qo + j] = q & 0xff;
      sum += q;
    }
    if (q81) {
      const hs = f32ToF16Bits(fr(d * sum));
      dst[o + 2] = hs & 0xff;
      dst[o + 3] = hs >> 8;
    }
  }
  return dst;
}
