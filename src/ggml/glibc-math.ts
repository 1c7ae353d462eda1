/**
 * glibc's float `expf` and `tanhf` (the libm llama.cpp's CPU backend links on x86-64 Linux), emulated bit for bit.
 * ggml calls them in the scalar tails of its vector loops (ggml_silu_f32 = x / (1 + expf(−x)) past the last full
 * vector of a swiglu row) and for every value of ggml_tanh (Gemma 2's soft-caps). Neither is correctly rounded:
 * on random inputs in [−20, 20], glibc 2.36's expf differs from the correctly rounded exp in ~7 of 10⁴ values and
 * its tanhf in ~3 of 100. One such last-bit difference upstream of a Q8 or f16 rounding flips that rounding now
 * and then, and a flip is 1e-3 in p (docs/gguf-methods.md "GgmlForward vs llama.cpp").
 *
 * - expf: glibc ≥ 2.27's sysdeps/ieee754/flt-32/e_expf.c (from ARM's optimized-routines): x·N/ln2 = k + r in
 *   double (N = 32, k rounded with the 1.5·2^52 shift), 2^(k/N) from a 32-entry table of 2^(j/N) doubles,
 *   2^(r/N) by a degree-3 polynomial, one final rounding to float. On x86-64 CPUs with FMA and AVX2, glibc's ifunc
 *   picks the copy built with -mfma (e_expf-fma.c), whose polynomial steps are fused: emulated here with an exact
 *   double fma.
 * - tanhf: fdlibm's s_tanhf.c (glibc 2.36 still uses it): |x| ≥ 1: 1 − 2/(expm1f(2|x|) + 2); else
 *   −t/(t + 2) with t = expm1f(−2|x|); |x| ≥ 22: ±1; every step in float. expm1f is fdlibm's s_expm1f.c (argument
 *   reduction by ln2_hi/ln2_lo, a 5-term rational correction, the k-dependent reconstruction).
 *
 * The constants are those of the cited sources (facts, restated); test/ggml/glibc-math.test.ts checks this module
 * against values recorded from this machine's libm.
 */
import { fr } from "./cfloat.js";

// ---- exact double fma (for the FMA build of glibc's expf) ----

const dv = new DataView(new ArrayBuffer(8));

/** a finite double as m·2^e with m an integer (BigInt) */
function decompose(x: number): [bigint, number] {
  dv.setFloat64(0, x);
  const hi = dv.getUint32(0), lo = dv.getUint32(4);
  const exp = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (exp === 0) e = -1074;
  else { m |= 1n << 52n; e = exp - 1075; }
  return [hi >>> 31 ? -m : m, e];
}

/**
 * m·2^e (m an integer BigInt, any size) rounded to the nearest binary float of `precision` significant bits
 * whose lowest bit is at least 2^minExp (subnormals), ties to even: (53, −1074) is a double, (24, −149) an f32.
 * Overflow gives ±Infinity as Number does.
 */
export function nearestBinaryFloat(m: bigint, e: number, precision: number, minExp: number): number {
  if (m === 0n) return 0;
  const neg = m < 0n;
  let a = neg ? -m : m;
  const bits = a.toString(2).length;
  const drop = Math.max(bits - precision, minExp - e);
  if (drop > 0) {
    const d = BigInt(drop);
    const q = a >> d, rem = a - (q << d), half = 1n << (d - 1n);
    a = rem > half || (rem === half && (q & 1n) === 1n) ? q + 1n : q;
    e += drop;
  }
  const v = Number(a) * 2 ** e; // a ≤ 2^precision ≤ 2^53: exact; scaling by a power of two exact unless it over/underflows
  return neg ? -v : v;
}

const nearestDouble = (m: bigint, e: number): number => nearestBinaryFloat(m, e, 53, -1074);

/** fma(a, b, c) in double: a·b + c with one rounding (x86 vfmadd…sd) */
export function fma64(a: number, b: number, c: number): number {
  if (!Number.isFinite(a) || !Number.isFinite(b) || !Number.isFinite(c)) return a * b + c;
  if (a === 0 || b === 0) return a * b + c;
  const [ma, ea] = decompose(a), [mb, eb] = decompose(b);
  const ep = ea + eb;
  const mp = ma * mb;
  if (c === 0) return nearestDouble(mp, ep);
  const [mc, ec] = decompose(c);
  const e = Math.min(ep, ec);
  return nearestDouble((mp << BigInt(ep - e)) + (mc << BigInt(ec - e)), e);
}

// ---- expf (sysdeps/ieee754/flt-32/e_expf.c, e_exp2f_data.c; EXP2F_TABLE_BITS 5, EXP2F_POLY_ORDER 3) ----

const EXP2F_N = 32;

/** 2^(j/32) rounded to the nearest double (the table e_exp2f_data.c stores as bits minus j << 47) */
function exp2TableEntry(j: number): number {
  // floor(2^(j/32) · 2^P) by an integer 32nd root of 2^(j + 32P), then rounded to 53 bits
  const P = 120n;
  const target = 1n << (BigInt(j) + 32n * P);
  let lo = 1n << P, hi = 2n << P;
  while (hi - lo > 1n) {
    const mid = (lo + hi) >> 1n;
    if (mid ** 32n <= target) lo = mid;
    else hi = mid;
  }
  return nearestDouble(lo, -Number(P));
}
const EXP2F_TAB = Float64Array.from({ length: EXP2F_N }, (_, j) => exp2TableEntry(j));

function hexDouble(t: string): number {
  const m = /^(-?)0x([0-9a-f])\.([0-9a-f]*)p([+-]?\d+)$/i.exec(t);
  if (!m) throw new Error(`bad hex float ${t}`);
  const v = (parseInt(m[2]! + m[3]!, 16) / 16 ** m[3]!.length) * 2 ** Number(m[4]);
  return m[1] ? -v : v;
}
// e_exp2f_data.c: invln2_scaled = 0x1.71547652b82fep+0 * N, shift = 0x1.8p+52, poly_scaled = C/N^3, C/N^2, C/N
const INVLN2N = hexDouble("0x1.71547652b82fep+0") * EXP2F_N;
const SHIFT52 = hexDouble("0x1.8p+52");
const EC0 = hexDouble("0x1.c6af84b912394p-5") / EXP2F_N / EXP2F_N / EXP2F_N;
const EC1 = hexDouble("0x1.ebfce50fac4f3p-3") / EXP2F_N / EXP2F_N;
const EC2 = hexDouble("0x1.62e42ff0c52d6p-1") / EXP2F_N;
// e_expf.c: above 0x1.62e42ep6 the result overflows, below −0x1.9fe368p6 it underflows to 0
const EXPF_OVER = hexDouble("0x1.62e42ep6");
const EXPF_UNDER = -hexDouble("0x1.9fe368p6");

/** glibc expf(x) for an f32 value x, as the x86-64 FMA build computes it */
export function glibcExpf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x > EXPF_OVER) return Infinity;
  if (x < EXPF_UNDER) return 0;
  const z = INVLN2N * x;
  const kd0 = z + SHIFT52; // rounds z to an integer (ties to even) in the low mantissa bits
  const k = kd0 - SHIFT52;
  const r = z - k;
  const j = ((k % EXP2F_N) + EXP2F_N) % EXP2F_N;
  const s = EXP2F_TAB[j]! * 2 ** ((k - j) / EXP2F_N);
  const p = fma64(EC0, r, EC1);
  const r2 = r * r;
  let y = fma64(EC2, r, 1);
  y = fma64(p, r2, y);
  return fr(y * s);
}

// ---- expm1f and tanhf (fdlibm s_expm1f.c, s_tanhf.c; float arithmetic, no contraction) ----

const f32b = new Float32Array(1);
const u32b = new Uint32Array(f32b.buffer);
const bitsOf = (x: number): number => { f32b[0] = x; return u32b[0]!; };
const ofBits = (b: number): number => { u32b[0] = b >>> 0; return f32b[0]!; };

const LN2_HI = ofBits(0x3f317180);
const LN2_LO = ofBits(0x3717f7d1);
const INVLN2 = ofBits(0x3fb8aa3b);
const Q1 = ofBits(0xbd088889);
const Q2 = ofBits(0x3ad00d01);
const Q3 = ofBits(0xb8a670cd);
const Q4 = ofBits(0x36867e54);
const Q5 = ofBits(0xb457edbb);

/** fdlibm expm1f for an f32 value x (the branches tanhf reaches and the rest of the finite range) */
export function glibcExpm1f(x: number): number {
  let hx = bitsOf(x);
  const neg = (hx & 0x80000000) !== 0;
  hx &= 0x7fffffff;
  if (hx >= 0x7f800000) return Number.isNaN(x) ? NaN : neg ? -1 : Infinity;
  if (hx >= 0x4195b844) { // |x| ≥ 27·ln2
    if (!neg && hx >= 0x42b17218) return Infinity; // past o_threshold (88.72…): overflow
    if (neg) return -1;
  }
  let k: number, c = 0;
  if (hx > 0x3eb17218) { // |x| > 0.5·ln2
    let hi: number, lo: number;
    if (hx < 0x3f851592) { // and < 1.5·ln2
      if (!neg) { hi = fr(x - LN2_HI); lo = LN2_LO; k = 1; } else { hi = fr(x + LN2_HI); lo = -LN2_LO; k = -1; }
    } else {
      k = Math.trunc(fr(fr(INVLN2 * x) + (neg ? -0.5 : 0.5))); // (int32_t) of a float: truncation
      const t = k;
      hi = fr(x - fr(t * LN2_HI));
      lo = fr(t * LN2_LO);
    }
    x = fr(hi - lo);
    c = fr(fr(hi - x) - lo);
  } else if (hx < 0x33000000) { // |x| < 2^-25
    return x;
  } else k = 0;
  const hfx = fr(0.5 * x);
  const hxs = fr(x * hfx);
  const r1 = fr(1 + fr(hxs * fr(Q1 + fr(hxs * fr(Q2 + fr(hxs * fr(Q3 + fr(hxs * fr(Q4 + fr(hxs * Q5))))))))));
  const t = fr(3 - fr(r1 * hfx));
  let e = fr(hxs * fr(fr(r1 - t) / fr(6 - fr(x * t))));
  if (k === 0) return fr(x - fr(fr(x * e) - hxs));
  e = fr(fr(x * fr(e - c)) - c);
  e = fr(e - hxs);
  if (k === -1) return fr(fr(0.5 * fr(x - e)) - 0.5);
  if (k === 1) return x < -0.25 ? fr(-2 * fr(e - fr(x + 0.5))) : fr(1 + fr(2 * fr(x - e)));
  if (k <= -2 || k > 56) {
    const y = fr(1 - fr(e - x));
    return fr(ofBits(bitsOf(y) + (k << 23)) - 1);
  }
  if (k < 23) {
    const t1 = ofBits(0x3f800000 - (0x1000000 >> k)); // 1 − 2^-k
    const y = fr(t1 - fr(e - x));
    return ofBits(bitsOf(y) + (k << 23));
  }
  const t2 = ofBits((0x7f - k) << 23); // 2^-k
  const y = fr(fr(x - fr(e + t2)) + 1);
  return ofBits(bitsOf(y) + (k << 23));
}

/** glibc 2.36 tanhf (fdlibm) for an f32 value x */
export function glibcTanhf(x: number): number {
  const jx = bitsOf(x);
  const ix = jx & 0x7fffffff;
  if (ix >= 0x7f800000) return Number.isNaN(x) ? NaN : x > 0 ? 1 : -1;
  let z: number;
  if (ix < 0x41b00000) { // |x| < 22
    if (ix === 0) return x;
    if (ix < 0x24000000) return fr(x * fr(1 + x)); // |x| < 2^-55
    const ax = Math.abs(x);
    if (ix >= 0x3f800000) { // |x| ≥ 1
      const t = glibcExpm1f(fr(2 * ax));
      z = fr(1 - fr(2 / fr(t + 2)));
    } else {
      const t = glibcExpm1f(fr(-2 * ax));
      z = fr(-t / fr(t + 2));
    }
  } else z = 1; // 1 − tiny rounds to 1
  return jx >>> 31 ? -z : z;
}
