/**
 * Reference dot products of one weight row (ggml blocks) with one activation row quantized to the
 * weight type's `vec_dot_type`, as ggml's CPU backend pairs them (ggml-cpu type_traits_cpu):
 * Q4_0, Q5_0, Q8_0, IQ4_NL → Q8_0; Q4_1, Q5_1 → Q8_1; k-quants, IQ4_XS, TQ1_0, TQ2_0 → Q8_K; F32/F16/BF16
 * with themselves. Each follows ggml-cpu/quants.c `ggml_vec_dot_*_generic` (integer sums per block,
 * then C float accumulation in the same order), so it is the oracle for the WASM kernels.
 */
import { bf16BitsToF32 } from "../core/f16.js";
import { QuantlabError } from "../core/errors.js";
import { fr, readF16, readF32, readI16, readU16, readU32 } from "./cfloat.js";
import { hasGgmlCodec, quantizeRow } from "./codecs.js";
import { KVALUES_IQ4NL } from "./iq4.js";
import { GGML_TYPES, GgmlType, ggmlTypeName, ggmlTypeTraits } from "./types.js";

/** The activation type ggml quantizes a row to before a dot with weights of type `t`. */
export function vecDotType(t: GgmlType): GgmlType {
  const v = ggmlTypeTraits(t)?.vecDot;
  if (v === undefined) throw new QuantlabError("E_UNSUPPORTED", `vecDot: no dot product for ggml type ${ggmlTypeName(t)}`);
  return v;
}

/** Bytes of an activation row of n elements for weights of type t. */
export function activationRowBytes(t: GgmlType, n: number): number {
  const s = GGML_TYPES[vecDotType(t)];
  return (n / s.blockSize) * s.bytesPerBlock;
}

/**
 * Quantizes activations x (n floats) to the vec_dot_type of weight type `weightType` (Q8_0/Q8_1/Q8_K by
 * the `_ref` quantizers, or F32/F16/BF16 as is). Writes into dst when given.
 */
export function quantizeActivationsRow(weightType: GgmlType, x: Float32Array, n: number, dst?: Uint8Array): Uint8Array {
  const at = vecDotType(weightType);
  const out = dst ?? new Uint8Array(activationRowBytes(weightType, n));
  quantizeRow(at, x, out, n);
  return out;
}

const i8 = (b: Uint8Array, o: number): number => (b[o]! << 24) >> 24;

/**
 * Σ w·a for one weight row (n elements of `type`) and one activation row in vecDotType(type), with
 * ggml's generic C float arithmetic. n must be a multiple of the weight block size.
 */
export function vecDot(type: GgmlType, w: Uint8Array, a: Uint8Array, n: number): number {
  const at = vecDotType(type);
  const ws = GGML_TYPES[type];
  const as = GGML_TYPES[at];
  if (!hasGgmlCodec(type) || n % ws.blockSize !== 0 || n % as.blockSize !== 0) {
    throw new QuantlabError("E_ARG", `vecDot: ${n} elements is not a multiple of the ${ws.name} block size ${ws.blockSize}`);
  }
  if (w.length < (n / ws.blockSize) * ws.bytesPerBlock || a.length < (n / as.blockSize) * as.bytesPerBlock) {
    throw new QuantlabError("E_ARG", `vecDot: ${ws.name} × ${as.name} rows of ${n} elements need ${(n / ws.blockSize) * ws.bytesPerBlock} and ${(n / as.blockSize) * as.bytesPerBlock} bytes`);
  }
  const nb = n / ws.blockSize;
  // block strides of the weight and activation rows
  const wb = ws.bytesPerBlock, ab = as.bytesPerBlock;
  switch (type) {
    case GgmlType.F32: {
      // ggml_vec_dot_f32 (scalar path): float products summed in double (ggml_float), result rounded to float
      let s = 0;
      for (let i = 0; i < n; i++) s += fr(readF32(w, 4 * i) * readF32(a, 4 * i));
      return fr(s);
    }
    case GgmlType.F16: {
      let s = 0;
      for (let i = 0; i < n; i++) s += fr(readF16(w, 2 * i) * readF16(a, 2 * i));
      return fr(s);
    }
    case GgmlType.BF16: {
      let s = 0;
      for (let i = 0; i < n; i++) s += fr(bf16BitsToF32(readU16(w, 2 * i)) * bf16BitsToF32(readU16(a, 2 * i)));
      return fr(s);
    }
    case GgmlType.Q4_0: {
      let sumf = 0;
      for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
        let sumi = 0;
        for (let j = 0; j < 16; j++) {
          const q = w[x + 2 + j]!;
          sumi += ((q & 0x0f) - 8) * i8(a, y + 2 + j) + ((q >> 4) - 8) * i8(a, y + 2 + j + 16);
        }
        sumf = fr(sumf + fr(fr(sumi * readF16(w, x)) * readF16(a, y)));
      }
      return sumf;
    }
    case GgmlType.Q4_1: {
      let sumf = 0;
      for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
        let sumi = 0;
        for (let j = 0; j < 16; j++) {
          const q = w[x + 4 + j]!;
          sumi += (q & 0x0f) * i8(a, y + 4 + j) + (q >> 4) * i8(a, y + 4 + j + 16);
        }
        const dd = fr(readF16(w, x) * readF16(a, y));
        sumf = fr(sumf + fr(fr(dd * sumi) + fr(readF16(w, x + 2) * readF16(a, y + 2))));
      }
      return sumf;
    }
    case GgmlType.Q5_0: {
      let sumf = 0;
      for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
        const qh = readU32(w, x + 2);
        let sumi = 0;
        for (let j = 0; j < 16; j++) {
          const q = w[x + 6 + j]!;
          const v0 = ((q & 0x0f) | (((qh >>> j) << 4) & 0x10)) - 16;
          const v1 = ((q >> 4) | ((qh >>> (j + 12)) & 0x10)) - 16;
          sumi += v0 * i8(a, y + 2 + j) + v1 * i8(a, y + 2 + j + 16);
        }
        sumf = fr(sumf + fr(fr(readF16(w, x) * readF16(a, y)) * sumi));
      }
      return sumf;
    }
    case GgmlType.Q5_1: {
      let sumf = 0;
      for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
        const qh = readU32(w, x + 4);
        let sumi = 0;
        for (let j = 0; j < 16; j++) {
          const q = w[x + 8 + j]!;
          const v0 = (q & 0x0f) | (((qh >>> j) << 4) & 0x10);
          const v1 = (q >> 4) | ((qh >>> (j + 12)) & 0x10);
          sumi += v0 * i8(a, y + 4 + j) + v1 * i8(a, y + 4 + j + 16);
        }
        const dd = fr(readF16(w, x) * readF16(a, y));
        sumf = fr(sumf + fr(fr(dd * sumi) + fr(readF16(w, x + 2) * readF16(a, y + 2))));
      }
      return sumf;
    }
    case GgmlType.Q8_0: {
      let sumf = 0;
      for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
        let sumi = 0;
        for (let j = 0; j < 32; j++) sumi += i8(w, x + 2 + j) * i8(a, y + 2 + j);
        sumf = fr(sumf + fr(sumi * fr(readF16(w, x) * readF16(a, y))));
      }
      return sumf;
    }
    case GgmlType.IQ4_NL: {
      let sumf = 0;
      for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
        const d = fr(readF16(a, y) * readF16(w, x));
        let sumi = 0;
        for (let j = 0; j < 16; j++) {
          const q = w[x + 2 + j]!;
          sumi += i8(a, y + 2 + j) * KVALUES_IQ4NL[q & 0xf]! + i8(a, y + 2 + j + 16) * KVALUES_IQ4NL[q >> 4]!;
        }
        sumf = fr(sumf + fr(d * sumi));
      }
      return sumf;
    }
    case GgmlType.Q2_K: {
      let sumf = 0;
      for (let i = 0, x = 0, y = 0; i < nb; i++, x += wb, y += ab) {
        let summs = 0;
        for (let j = 0; j < 16; j++) summs += readI16(a, y + 260 + 2 * j) * (w[x + j]! >> 4);
        const yd = readF32(a, y);
        const dall = fr(yd * readF16(w, x + 80));
        const dmin = fr(yd * readF16(w, x + 82));
        let isum = 0;
        let is = 0;
        for (let k = 0, q2 = x + 16, q8 = y + 4; k < 2; k++, q2 += 32) {
          for (let shift = 0; shift < 8; shift += 2, q8 += 32) {
            let d = w[x + is++]! & 0xf;
            let isuml = 0;
            for (let l = 0; l < 16; l++) isuml += i8(a, q8 + l) * ((w[q2 + l]! >> shift) & 3);
            isum += d * isuml;
            d = w[x + is++]! & 0xf;
            isuml = 0;
            for (let l = 16; l < 32; l++) isuml += i8(a, q8 + l) * ((w[q2 + l]! >> shift) & 3);
            isum += d * isuml;
          }
        }
        sumf = fr(sumf + fr(fr(dall * isum) - fr(dmin * summs)));
      }
      return sumf;
    }
    case GgmlType.Q3_K:
    case GgmlType.Q4_K:
    case GgmlType.Q5_K:
    case GgmlType.Q6_K:
      return dotK8Lanes(type, w, a, nb, wb, ab);
    case GgmlType.IQ4_XS: {
      let sumf = 0;
      for (let ibl = 0, x = 0, y = 0; ibl < nb; ibl++, x += wb, y += ab) {
        const d4d8 = fr(readF16(w, x) * readF32(a, y));
        let h = readU16(w, x + 2);
        for (let ib = 0, qs = x + 8, q8 = y + 4; ib < 8; ib += 2) {
          const sl = w[x + 4 + (ib >> 1)]!;
          const ls1 = (sl & 0xf) | ((h << 4) & 0x30);
          const ls2 = (sl >> 4) | ((h << 2) & 0x30);
          h >>= 4;
          for (const ls of [ls1, ls2]) {
            const dl = fr(d4d8 * (ls - 32));
            let sumi = 0;
            for (let j = 0; j < 16; j++) {
              const q = w[qs + j]!;
              sumi += i8(a, q8 + j) * KVALUES_IQ4NL[q & 0xf]! + i8(a, q8 + j + 16) * KVALUES_IQ4NL[q >> 4]!;
            }
            sumf = fr(sumf + fr(dl * sumi));
            qs += 16;
            q8 += 32;
          }
        }
      }
      return sumf;
    }
    case GgmlType.TQ1_0: {
      const pow3 = [1, 3, 9, 27, 81, 243];
      const trit = (b: number, k: number): number => ((((b * pow3[k]!) & 0xff) * 3) >> 8) - 1;
      let sumf = 0;
      for (let i = 0, x = 0, y = 0; i < nb; i++, x += wb, y += ab) {
        let sum = 0;
        for (let l = 0; l < 5; l++) for (let m = 0; m < 32; m++) sum += trit(w[x + m]!, l) * i8(a, y + 4 + l * 32 + m);
        for (let l = 0; l < 5; l++) for (let m = 0; m < 16; m++) sum += trit(w[x + 32 + m]!, l) * i8(a, y + 4 + 160 + l * 16 + m);
        for (let l = 0; l < 4; l++) for (let j = 0; j < 4; j++) sum += trit(w[x + 48 + j]!, l) * i8(a, y + 4 + 240 + l * 4 + j);
        sumf = fr(sumf + fr(sum * fr(readF16(w, x + 52) * readF32(a, y))));
      }
      return sumf;
    }
    case GgmlType.TQ2_0: {
      let sumf = 0;
      for (let i = 0, x = 0, y = 0; i < nb; i++, x += wb, y += ab) {
        let sumi = 0;
        for (let j = 0; j < 64; j += 32) {
          for (let l = 0; l < 4; l++) {
            for (let k = 0; k < 32; k++) sumi += i8(a, y + 4 + j * 4 + l * 32 + k) * (((w[x + j + k]! >> (2 * l)) & 3) - 1);
          }
        }
        const d = fr(readF32(a, y) * readF16(w, x + 64));
        sumf = fr(sumf + fr(sumi * d));
      }
      return sumf;
    }
    default:
      throw new QuantlabError("E_UNSUPPORTED", `vecDot: no dot product for ggml type ${ggmlTypeName(type)}`);
  }
}

/**
 * Q3_K/Q4_K/Q5_K/Q6_K × Q8_K as the generic C code: unpack the 256 weights to int8 levels, accumulate
 * scale·q8·level into 8 int32 lanes (element index mod 8), then per block sums[l] += d·lane[l] in float,
 * the min terms (Q4_K/Q5_K) subtracted from sumf per block, and the 8 lanes added at the end.
 */
function dotK8Lanes(type: GgmlType, w: Uint8Array, a: Uint8Array, nb: number, bpb: number, ab: number): number {
  const lv = new Int8Array(256); // levels of one super-block
  const sc = new Int32Array(16); // scale per 16 elements
  const lanes = new Int32Array(8);
  const sums = new Float32Array(8);
  let sumf = 0;
  for (let i = 0, x = 0, y = 0; i < nb; i++, x += bpb, y += ab) {
    let d: number;
    let dmin = 0;
    let sumiMin = 0;
    if (type === GgmlType.Q3_K) {
      for (let j = 0, q = x + 32, m = 1, k = 0; j < 256; j += 128, q += 32) {
        for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
          for (let l = 0; l < 32; l++) lv[k++] = ((w[q + l]! >> shift) & 3) - (w[x + l]! & m ? 0 : 4);
        }
      }
      for (let j = 0; j < 16; j++) {
        const low = j < 8 ? w[x + 96 + j]! & 0xf : w[x + 96 + j - 8]! >> 4;
        const high = (w[x + 96 + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3;
        sc[j] = (low | (high << 4)) - 32;
      }
      d = fr(readF16(w, x + 108) * readF32(a, y));
    } else if (type === GgmlType.Q6_K) {
      for (let n = 0, ql = x, qh = x + 128, k = 0; n < 256; n += 128, ql += 64, qh += 32, k += 128) {
        for (let l = 0; l < 32; l++) {
          const h = w[qh + l]!;
          lv[k + l] = ((w[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
          lv[k + l + 32] = ((w[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
          lv[k + l + 64] = ((w[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
          lv[k + l + 96] = ((w[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        }
      }
      for (let j = 0; j < 16; j++) sc[j] = i8(w, x + 192 + j);
      d = fr(readF16(w, x + 208) * readF32(a, y));
    } else {
      // Q4_K / Q5_K: 6-bit (scale, min) pairs per 32 elements (get_scale_min_k4)
      const q5 = type === GgmlType.Q5_K;
      const qs = x + (q5 ? 48 : 16);
      for (let j = 0, k = 0, q = qs, m = 1; j < 4; j++, q += 32) {
        for (let l = 0; l < 32; l++) lv[k++] = (w[q + l]! & 0xf) + (q5 && w[x + 16 + l]! & m ? 16 : 0);
        m <<= 1;
        for (let l = 0; l < 32; l++) lv[k++] = (w[q + l]! >> 4) + (q5 && w[x + 16 + l]! & m ? 16 : 0);
        m <<= 1;
      }
      const s = x + 4;
      for (let j = 0; j < 8; j++) {
        let scale: number;
        let min: number;
        if (j < 4) {
          scale = w[s + j]! & 63;
          min = w[s + j + 4]! & 63;
        } else {
          scale = (w[s + j + 4]! & 0xf) | ((w[s + j - 4]! >> 6) << 4);
          min = (w[s + j + 4]! >> 4) | ((w[s + j]! >> 6) << 4);
        }
        sc[2 * j] = scale;
        sc[2 * j + 1] = scale;
        sumiMin += (readI16(a, y + 260 + 4 * j) + readI16(a, y + 262 + 4 * j)) * min;
      }
      d = fr(readF16(w, x) * readF32(a, y));
      dmin = fr(readF16(w, x + 2) * readF32(a, y));
    }
    lanes.fill(0);
    for (let g = 0; g < 32; g++) {
      const s = sc[g >> 1]!;
      for (let l = 0; l < 8; l++) lanes[l]! += s * (i8(a, y + 4 + 8 * g + l) * lv[8 * g + l]!);
    }
    for (let l = 0; l < 8; l++) sums[l] = fr(sums[l]! + fr(d * lanes[l]!));
    if (type === GgmlType.Q4_K || type === GgmlType.Q5_K) sumf = fr(sumf - fr(dmin * sumiMin));
  }
  for (let l = 0; l < 8; l++) sumf = fr(sumf + sums[l]!);
  return sumf;
}
