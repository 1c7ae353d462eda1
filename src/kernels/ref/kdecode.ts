/**
 * Scalar twins of the WASM decode kernels for Q4_K, Q5_K and Q6_K on their GGUF blocks against Q8_K
 * activations (assembly/kdecode.ts, kinds K_Q4_KX4 / K_Q5_KX4 / K_Q6_KX4): the same exact integer sums per super-block and the
 * same f32 operations in the same order, so the WASM results equal these bit for bit. The activations are
 * ggml block_q8_K bytes (d f32 @0, qs int8[256] @4, bsums int16[16] @260) as ggml/kquants.ts
 * quantizeQ8_KRef writes them (which the WASM quantize_act_q8k reproduces).
 *
 * Q4_K (Q5_K) row · x = Σ_s (d_s·xd_s)·isum_s − (dmin_s·xd_s)·imin_s with isum = Σ_j sc_j·Σ q·x and imin = Σ_j m_j·Σx
 * (j the 8 sub-blocks of 32; get_scale_min_k4 pairs); Q6_K: Σ_s (d_s·xd_s)·Σ_g sc_g·Σ (q − 32)·x (g the 16
 * groups of 16). The float order differs from ggml's generic vec_dot (ggml/dot.ts), so the two agree to
 * rounding only; both use the same quantized activations.
 */
import { fr, readF16, readF32, readI16 } from "../../ggml/cfloat.js";

const Q4K_BYTES = 144;
const Q5K_BYTES = 176;
const Q6K_BYTES = 210;
const Q8K_BYTES = 292;

const i8 = (b: Uint8Array, o: number): number => (b[o]! << 24) >> 24;

/** One Q4_K row (nsb super-blocks at w[wo…]) · one Q8_K row (a[ao…]), in the WASM kernel's f32 order. */
export function dotQ4_KQ8KRef(w: Uint8Array, wo: number, a: Uint8Array, ao: number, nsb: number): number {
  return dotQ45(false, w, wo, a, ao, nsb);
}

/** One Q5_K row · one Q8_K row: as Q4_K, each code with its high bit from qh (dequantize_row_q5_K). */
export function dotQ5_KQ8KRef(w: Uint8Array, wo: number, a: Uint8Array, ao: number, nsb: number): number {
  return dotQ45(true, w, wo, a, ao, nsb);
}

// block_q4_K: d, dmin @0, @2, scales[12] @4, qs[128] @16; block_q5_K: the same with qh[32] @16, qs @48
function dotQ45(q5: boolean, w: Uint8Array, wo: number, a: Uint8Array, ao: number, nsb: number): number {
  let acc = 0;
  for (let s = 0; s < nsb; s++) {
    const b = wo + s * (q5 ? Q5K_BYTES : Q4K_BYTES);
    const y = ao + s * Q8K_BYTES;
    let isum = 0;
    let imin = 0;
    for (let j = 0; j < 8; j++) {
      let sc: number, m: number;
      if (j < 4) {
        sc = w[b + 4 + j]! & 63;
        m = w[b + 8 + j]! & 63;
      } else {
        sc = (w[b + 8 + j]! & 0xf) | ((w[b + j]! >> 6) << 4);
        m = (w[b + 8 + j]! >> 4) | ((w[b + 4 + j]! >> 6) << 4);
      }
      // sub-block j: low (j even) or high (j odd) nibbles of qs[32·⌊j/2⌋ …]
      const q = b + (q5 ? 48 : 16) + 32 * (j >> 1);
      const shift = (j & 1) * 4;
      let dot = 0;
      for (let l = 0; l < 32; l++) {
        const code = ((w[q + l]! >> shift) & 15) | (q5 ? ((w[b + 16 + l]! >> j) & 1) << 4 : 0);
        dot += code * i8(a, y + 4 + 32 * j + l);
      }
      isum += sc * dot;
      imin += m * (readI16(a, y + 260 + 4 * j) + readI16(a, y + 262 + 4 * j));
    }
    const xd = readF32(a, y);
    const t = fr(fr(fr(readF16(w, b) * xd) * fr(isum)) - fr(fr(readF16(w, b + 2) * xd) * fr(imin)));
    acc = fr(acc + t);
  }
  return acc;
}

/** One Q6_K row · one Q8_K row, in the WASM kernel's f32 order. */
export function dotQ6_KQ8KRef(w: Uint8Array, wo: number, a: Uint8Array, ao: number, nsb: number): number {
  let acc = 0;
  for (let s = 0; s < nsb; s++) {
    const b = wo + s * Q6K_BYTES;
    const y = ao + s * Q8K_BYTES;
    let isum = 0;
    for (let n = 0; n < 2; n++) {
      const ql = b + 64 * n, qh = b + 128 + 32 * n;
      for (let l = 0; l < 32; l++) {
        const h = w[qh + l]!;
        // dequantize_row_q6_K: elements l, l+32, l+64, l+96 of this half
        const qv = [
          (w[ql + l]! & 15) | ((h & 3) << 4),
          (w[ql + l + 32]! & 15) | (((h >> 2) & 3) << 4),
          (w[ql + l]! >> 4) | (((h >> 4) & 3) << 4),
          (w[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4),
        ];
        for (let k = 0; k < 4; k++) {
          const e = 128 * n + 32 * k + l;
          isum += i8(w, b + 192 + (e >> 4)) * (qv[k]! - 32) * i8(a, y + 4 + e);
        }
      }
    }
    acc = fr(acc + fr(fr(readF16(w, b + 208) * readF32(a, y)) * fr(isum)));
  }
  return acc;
}
