// Arithmetic-throughput probes: the most multiply-adds per second one thread of this engine can issue with a
// given SIMD instruction, registers only (no loads, no stores). They bound every kernel built on that
// instruction from above: a mat-mat tile also loads, unpacks codes and applies scales, so it runs below
// them. bench/_peaks.ts times them; docs/kernels.md ("Compute ceilings") sets prefill against them.
//
// Each probe runs 12 independent accumulator chains, enough to cover the instruction's latency on the
// machines we run on (3–4 cycles, two issue ports); the operand feeding each chain is the chain itself, so
// nothing is loop-invariant and nothing can be hoisted. Returns a lane sum so the work is not dead.

/** 16 i8×i7 multiply-adds per step per chain: `i16x8.relaxed_dot_i8x16_i7x16_s` (x64: pmaddubsw) plus the
 * i16 add a kernel needs to keep its sum. Relaxed build only (the SIMD128 build returns −1). */
export function probe_dot_i8(iters: i32, b: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return -1;
  const bv = i8x16.splat(<i8>(b & 0x7f));
  let c0 = i8x16.splat(1), c1 = i8x16.splat(2), c2 = i8x16.splat(3), c3 = i8x16.splat(4);
  let c4 = i8x16.splat(5), c5 = i8x16.splat(6), c6 = i8x16.splat(7), c7 = i8x16.splat(8);
  let c8 = i8x16.splat(9), c9 = i8x16.splat(10), ca = i8x16.splat(11), cb = i8x16.splat(12);
  for (let i = 0; i < iters; i++) {
    c0 = i16x8.add(c0, i16x8.relaxed_dot_i8x16_i7x16_s(c0, bv));
    c1 = i16x8.add(c1, i16x8.relaxed_dot_i8x16_i7x16_s(c1, bv));
    c2 = i16x8.add(c2, i16x8.relaxed_dot_i8x16_i7x16_s(c2, bv));
    c3 = i16x8.add(c3, i16x8.relaxed_dot_i8x16_i7x16_s(c3, bv));
    c4 = i16x8.add(c4, i16x8.relaxed_dot_i8x16_i7x16_s(c4, bv));
    c5 = i16x8.add(c5, i16x8.relaxed_dot_i8x16_i7x16_s(c5, bv));
    c6 = i16x8.add(c6, i16x8.relaxed_dot_i8x16_i7x16_s(c6, bv));
    c7 = i16x8.add(c7, i16x8.relaxed_dot_i8x16_i7x16_s(c7, bv));
    c8 = i16x8.add(c8, i16x8.relaxed_dot_i8x16_i7x16_s(c8, bv));
    c9 = i16x8.add(c9, i16x8.relaxed_dot_i8x16_i7x16_s(c9, bv));
    ca = i16x8.add(ca, i16x8.relaxed_dot_i8x16_i7x16_s(ca, bv));
    cb = i16x8.add(cb, i16x8.relaxed_dot_i8x16_i7x16_s(cb, bv));
  }
  return sumLanes(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ca, cb);
}

/** 8 i16×i16 multiply-adds per step per chain: `i32x4.dot_i16x8_s` (x64: pmaddwd) plus its i32 add. */
export function probe_dot_i16(iters: i32, b: i32): i32 {
  const bv = i16x8.splat(<i16>b);
  let c0 = i32x4.splat(1), c1 = i32x4.splat(2), c2 = i32x4.splat(3), c3 = i32x4.splat(4);
  let c4 = i32x4.splat(5), c5 = i32x4.splat(6), c6 = i32x4.splat(7), c7 = i32x4.splat(8);
  let c8 = i32x4.splat(9), c9 = i32x4.splat(10), ca = i32x4.splat(11), cb = i32x4.splat(12);
  for (let i = 0; i < iters; i++) {
    c0 = i32x4.add(c0, i32x4.dot_i16x8_s(c0, bv));
    c1 = i32x4.add(c1, i32x4.dot_i16x8_s(c1, bv));
    c2 = i32x4.add(c2, i32x4.dot_i16x8_s(c2, bv));
    c3 = i32x4.add(c3, i32x4.dot_i16x8_s(c3, bv));
    c4 = i32x4.add(c4, i32x4.dot_i16x8_s(c4, bv));
    c5 = i32x4.add(c5, i32x4.dot_i16x8_s(c5, bv));
    c6 = i32x4.add(c6, i32x4.dot_i16x8_s(c6, bv));
    c7 = i32x4.add(c7, i32x4.dot_i16x8_s(c7, bv));
    c8 = i32x4.add(c8, i32x4.dot_i16x8_s(c8, bv));
    c9 = i32x4.add(c9, i32x4.dot_i16x8_s(c9, bv));
    ca = i32x4.add(ca, i32x4.dot_i16x8_s(ca, bv));
    cb = i32x4.add(cb, i32x4.dot_i16x8_s(cb, bv));
  }
  return sumLanes(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ca, cb);
}

/** 4 f32 multiply-adds per step per chain: `f32x4.relaxed_madd` in the relaxed build (x64: vfmadd), a
 * multiply and an add in the SIMD128 build. b = 1 keeps the values fixed (no overflow, no subnormals). */
export function probe_madd_f32(iters: i32, b: f32): f32 {
  const bv = f32x4.splat(b);
  let c0 = f32x4.splat(1), c1 = f32x4.splat(2), c2 = f32x4.splat(3), c3 = f32x4.splat(4);
  let c4 = f32x4.splat(5), c5 = f32x4.splat(6), c6 = f32x4.splat(7), c7 = f32x4.splat(8);
  let c8 = f32x4.splat(9), c9 = f32x4.splat(10), ca = f32x4.splat(11), cb = f32x4.splat(12);
  const z = f32x4.splat(0);
  for (let i = 0; i < iters; i++) {
    c0 = madd(c0, bv, z);
    c1 = madd(c1, bv, z);
    c2 = madd(c2, bv, z);
    c3 = madd(c3, bv, z);
    c4 = madd(c4, bv, z);
    c5 = madd(c5, bv, z);
    c6 = madd(c6, bv, z);
    c7 = madd(c7, bv, z);
    c8 = madd(c8, bv, z);
    c9 = madd(c9, bv, z);
    ca = madd(ca, bv, z);
    cb = madd(cb, bv, z);
  }
  const s = f32x4.add(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), f32x4.add(f32x4.add(c4, c5), f32x4.add(c6, c7)));
  const t = f32x4.add(f32x4.add(c8, c9), f32x4.add(ca, cb));
  const u = f32x4.add(s, t);
  return f32x4.extract_lane(u, 0) + f32x4.extract_lane(u, 1) + f32x4.extract_lane(u, 2) + f32x4.extract_lane(u, 3);
}

@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

@inline function sumLanes(c0: v128, c1: v128, c2: v128, c3: v128, c4: v128, c5: v128, c6: v128, c7: v128, c8: v128, c9: v128, ca: v128, cb: v128): i32 {
  const s = i32x4.add(i32x4.add(i32x4.add(c0, c1), i32x4.add(c2, c3)), i32x4.add(i32x4.add(c4, c5), i32x4.add(c6, c7)));
  const u = i32x4.add(s, i32x4.add(i32x4.add(c8, c9), i32x4.add(ca, cb)));
  return i32x4.extract_lane(u, 0) + i32x4.extract_lane(u, 1) + i32x4.extract_lane(u, 2) + i32x4.extract_lane(u, 3);
}
