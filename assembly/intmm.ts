// Integer-only linears' inner loop (src/model/integer-linear.ts): acc[r] = Σ_c w[r,c]·x[c] over int8 weight
// codes and int8 activation codes, exact in int32 (the host proves no overflow before it calls this).
// i16x8.extmul_{low,high}_i8x16_s forms the 16 exact products (|·| ≤ 2^14) of one 16-byte step,
// i32x4.extadd_pairwise_i16x8_s sums neighbours into 4 int32 lanes; a scalar loop takes the tail.

/** acc (rows int32) = w (rows × cols int8, row-major) · x (cols int8), rows [r0, r1). */
export function i8_rows_dot(w: usize, x: usize, cols: i32, acc: usize, r0: i32, r1: i32): void {
  const body = cols & ~15;
  for (let r = r0; r < r1; r++) {
    const row = w + <usize>r * <usize>cols;
    let s0 = i32x4.splat(0);
    let s1 = i32x4.splat(0);
    for (let c = 0; c < body; c += 16) {
      const wv = v128.load(row + <usize>c);
      const xv = v128.load(x + <usize>c);
      s0 = i32x4.add(s0, i32x4.extadd_pairwise_i16x8_s(i16x8.extmul_low_i8x16_s(wv, xv)));
      s1 = i32x4.add(s1, i32x4.extadd_pairwise_i16x8_s(i16x8.extmul_high_i8x16_s(wv, xv)));
    }
    const s = i32x4.add(s0, s1);
    let t = (i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1)) + (i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3));
    for (let c = body; c < cols; c++) t += <i32>load<i8>(row + <usize>c) * <i32>load<i8>(x + <usize>c);
    store<i32>(acc + (<usize>r << 2), t);
  }
}
