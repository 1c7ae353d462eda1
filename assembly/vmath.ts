// Vector math shared by the kernels (AssemblyScript, both builds): inline helpers, imported where used
// and never exported from the module itself (their v128 signatures have no JS form).

// e^x = 2^n · e^b with n = round(x·log2 e) and b = x − n·ln 2 in [−ln2/2, ln2/2] (Cody–Waite: ln 2 split
// in a high part with 17 significant bits, so n·LN2_HI is exact for |n| ≤ 128 and x − n·LN2_HI is exact,
// plus the low part's correction), e^b − 1 ≈ C1·b + C2·b² + … + C5·b⁵. The coefficients are the minimax
// fit of ARM's optimized-routines expf (max error 1.45 ulp with fused multiply-adds), the ones ggml's
// ggml_v_expf uses (src/ggml/simd-math.ts has them as hex floats); wasm SIMD128 has no fused multiply-add,
// so every product rounds once more: measured ≤ 2 ulp against Math.exp (test/kernels/wasm/attention.test.ts).
const LOG2E: u32 = 0x3fb8aa3b; // 0x1.715476p+0, log2 e rounded to f32
const SHIFT: u32 = 0x4b400000; // 1.5·2^23: adding it rounds to an integer, which lands in the low mantissa bits
const LN2_HI: u32 = 0x3f317200; // 0x1.62e4p-1
const LN2_LO: u32 = 0x35bfbe8e; // 0x1.7f7d1cp-20 = ln 2 − LN2_HI, rounded
const C1: u32 = 0x3f7ffff6; // 0x1.ffffecp-1
const C2: u32 = 0x3efffedb; // 0x1.fffdb6p-2
const C3: u32 = 0x3e2aaf33; // 0x1.555e66p-3
const C4: u32 = 0x3d2b9f17; // 0x1.573e2ep-5
const C5: u32 = 0x3c072010; // 0x1.0e4020p-7
const X_MAX: u32 = 0x42b17218; // 88.72284, ln(FLT_MAX) rounded down: larger x (and +Inf) give +Inf
const X_MIN: u32 = 0xc2aeac50; // −87.33655 ≈ ln(2^−126): smaller x (results below the normal range) give 0

@inline function cf(bits: u32): v128 {
  return f32x4.splat(reinterpret<f32>(bits));
}

/** e^x lane-wise, to ≤ 2 ulp over the whole f32 range: x > ln(FLT_MAX) (and +Inf) gives +Inf, results
 * that would be subnormal (x < ln 2^−126) are flushed to 0, NaN stays NaN. */
@inline export function v_exp(x: v128): v128 {
  const xc = f32x4.min(x, cf(X_MAX));
  const z = f32x4.add(f32x4.mul(xc, cf(LOG2E)), cf(SHIFT));
  const n = f32x4.sub(z, cf(SHIFT));
  const b = f32x4.sub(f32x4.sub(xc, f32x4.mul(n, cf(LN2_HI))), f32x4.mul(n, cf(LN2_LO)));
  const u = f32x4.mul(b, b);
  const p = f32x4.add(f32x4.mul(f32x4.add(f32x4.mul(cf(C5), b), cf(C4)), u), f32x4.add(f32x4.mul(cf(C3), b), cf(C2)));
  const j = f32x4.add(f32x4.mul(p, u), f32x4.mul(cf(C1), b)); // e^b − 1
  // 2^n: z's bits are SHIFT's plus n, so (z << 23) puts n in the exponent field and adding 1.0's bits
  // biases it. n = 128 (x within ½·ln 2 of the overflow) has no f32 power: 2^127 then one exact doubling
  const zc = i32x4.min_s(z, i32x4.splat(SHIFT + 127));
  const k = i32x4.add(i32x4.shl(zc, 23), i32x4.splat(0x3f800000));
  let r = f32x4.add(k, f32x4.mul(k, j));
  r = f32x4.mul(r, v128.bitselect(f32x4.splat(2), f32x4.splat(1), i32x4.gt_s(z, zc)));
  r = v128.bitselect(f32x4.splat(Infinity), r, f32x4.gt(x, cf(X_MAX)));
  return v128.andnot(r, f32x4.lt(x, cf(X_MIN)));
}

/** e^x for x ≤ 0 (or NaN) lane-wise, bit for bit v_exp there, without the overflow end: the softmax
 * weights e^(s − max) */
@inline export function v_exp_nonpos(x: v128): v128 {
  const z = f32x4.add(f32x4.mul(x, cf(LOG2E)), cf(SHIFT));
  const n = f32x4.sub(z, cf(SHIFT));
  const b = f32x4.sub(f32x4.sub(x, f32x4.mul(n, cf(LN2_HI))), f32x4.mul(n, cf(LN2_LO)));
  const u = f32x4.mul(b, b);
  const p = f32x4.add(f32x4.mul(f32x4.add(f32x4.mul(cf(C5), b), cf(C4)), u), f32x4.add(f32x4.mul(cf(C3), b), cf(C2)));
  const j = f32x4.add(f32x4.mul(p, u), f32x4.mul(cf(C1), b));
  const k = i32x4.add(i32x4.shl(z, 23), i32x4.splat(0x3f800000));
  return v128.andnot(f32x4.add(k, f32x4.mul(k, j)), f32x4.lt(x, cf(X_MIN)));
}

/** Lane k = (s_k[0] + s_k[2]) + (s_k[1] + s_k[3]): four rows' partial sums → the four rows' outputs, one vector. */
@inline export function reduce4f(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = f32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = f32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** (v0 + v2) + (v1 + v3): the lane order of reduce4f, so a row's output has the same bits whether it ran
 * in a 4-row tile or a tail tile (where a tile starts depends on how the pool cut the rows). */
@inline export function hsum_f32_02(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 2)) + (f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 3));
}
