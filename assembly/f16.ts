// binary16 ⇄ f32 conversions shared by the kernels (exported from index.ts).

/** f32 → binary16 bits, round to nearest even (same algorithm as src/core/f16.ts). */
export function f32_to_f16(x: f32): u32 {
  const b = reinterpret<u32>(x);
  const sign = (b >> 16) & 0x8000;
  const exp = <i32>((b >> 23) & 0xff);
  let mant = b & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (mant != 0 ? 0x200 | (mant >> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = <u32>(14 - e);
    const half: u32 = 1 << (shift - 1);
    const rest = mant & ((<u32>1 << shift) - 1);
    let m = mant >> shift;
    if (rest > half || (rest == half && (m & 1) != 0)) m++;
    return sign | m;
  }
  const rest = mant & 0x1fff;
  let h = sign | (<u32>e << 10) | (mant >> 13);
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1) != 0)) h++;
  return h;
}

/** binary16 bits → f32. Magnitude bits moved to the f32 mantissa position and scaled by 2^112 (exact,
 * subnormals included); exponent 31 (Inf/NaN) is patched. */
export function f16_to_f32(h: u32): f32 {
  const mag = (h & 0x7fff) << 13;
  let f = reinterpret<f32>(mag) * reinterpret<f32>(0x77800000); // 2^112
  if ((h & 0x7c00) == 0x7c00) f = reinterpret<f32>(mag | 0x7f800000);
  return (h & 0x8000) != 0 ? -f : f;
}

/** 4 binary16 values (sign-extended to i32 lanes) → f32x4. (v << 13) puts exponent+mantissa in f32
 * position and the sign (copied to bits 28–31 by the sign extension) in bit 31; the mask drops bit 28;
 * ×2^112 rebias is exact for normals and subnormals. Inf/NaN are not handled: the host converts
 * matrices that contain them to f32 instead. */
@inline export function f16x4_to_f32(v: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shl(v, 13), i32x4.splat(0x8fffe000)), f32x4.splat(reinterpret<f32>(0x77800000)));
}
