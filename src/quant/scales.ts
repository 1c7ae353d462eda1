/**
 * How group scales are stored, and double quantization (scales of scales).
 *
 * - f32 / f16 / bf16: each scale rounded to the dtype (nearest-even).
 * - e8m0: a power of two 2^X, X in [-127, 127], one byte X+127 (OCP MX v1.0 §5.4; 0xFF = NaN is never written).
 *   For integer grids the byte holds the MX exponent X, where the element carries an implicit 2^-(b-2)
 *   (MX INT8: 2^-6), so the per-integer scale is 2^(X-(b-2)).
 * - fp8 (E4M3), u8, u6, u4: double quantization. Scales are split into super-blocks of `superBlock`
 *   consecutive scales (or the whole tensor); each super-block has one f32 super-scale and the scales
 *   are stored as codes: E4M3 of scale/super (super = max|scale|/448, as NVFP4's tensor scale), or the
 *   unsigned integer round(|scale|/super) (super = max|scale|/(2^k−1), k-quants/QLoRA style).
 * Codes are always computed from the stored (dequantized) scale, so dequantization is exact.
 */
import { QuantlabError } from "../core/errors.js";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../core/f16.js";
import type { Format } from "../formats/types.js";
import { lookupRegistryFormat } from "./registry-link.js";
import type { ScaleDtype } from "./spec.js";

export const SCALE_DTYPE_BITS: Record<ScaleDtype, number> = { f32: 32, f16: 16, bf16: 16, e8m0: 8, fp8: 8, u8: 8, u6: 6, u4: 4 };
/** E4M3 largest finite value (OCP 8-bit FP spec): what the largest scale of a super-block maps to. */
export const E4M3_MAX = 448;
export const E8M0_MIN_EXP = -127;
export const E8M0_MAX_EXP = 127;

export interface StoredScales {
  dtype: ScaleDtype;
  /** the scale values codes were computed with (exactly what dequantization multiplies by), (nGroups) */
  values: Float32Array;
  /** per-scale storage codes: f16/bf16 bits, e8m0 bytes, fp8 / u codes; absent for f32, (nGroups) */
  codes?: Uint16Array;
  /** f32 super-scales for double-quantized dtypes, (nSuperBlocks) */
  superScales?: Float32Array;
  /** scales per super-block, resolved (the whole tensor → nGroups) */
  superBlock?: number;
  /** e8m0 only: exponent offset between the stored byte and log2(scale) (b-2 for int grids, 0 otherwise) */
  e8m0Offset?: number;
}

export function isUnsignedDtype(d: ScaleDtype): boolean {
  return d === "e8m0" || d === "u8" || d === "u6" || d === "u4";
}

let e4m3: Format | undefined;
function fp8Format(): Format {
  e4m3 ??= lookupRegistryFormat("fp8_e4m3");
  if (!e4m3) throw new QuantlabError("E_UNSUPPORTED", "scale dtype fp8 needs format fp8_e4m3 in the formats registry");
  return e4m3;
}

/** floor(log2(x)) for finite x > 0, exact (no Math.log2 rounding at binade edges). */
export function floorLog2(x: number): number {
  let e = Math.floor(Math.log2(x));
  if (2 ** e > x) e--;
  else if (2 ** (e + 1) <= x) e++;
  return e;
}

/** The MX shared-scale exponent rule: X = floor(log2(clip)) − emaxElem, clamped to the E8M0 range (clip 0 → the smallest). */
export function mxScaleExponent(clip: number, emaxElem: number): number {
  if (!(clip > 0)) return E8M0_MIN_EXP;
  const x = floorLog2(clip) - emaxElem;
  return Math.min(E8M0_MAX_EXP, Math.max(E8M0_MIN_EXP, x));
}

/**
 * Stores raw scales in `dtype`. `raw` for e8m0 must already be powers of two (from the MX rule).
 * `superBlock` is required for double-quantized dtypes ("tensor" = one super-block).
 * `towardZero` rounds f32/f16/bf16 scales toward zero instead of to nearest: integer-zero-point affine grids use it so that
 * span/scale ≥ 2^b − 1 and min and max land on codes 0 and 2^b − 1 (which makes re-quantization stable).
 */
export function storeScales(raw: ArrayLike<number>, dtype: ScaleDtype, superBlock?: number | "tensor", e8m0Offset = 0, towardZero = false): StoredScales {
  const n = raw.length;
  const values = new Float32Array(n);
  switch (dtype) {
    case "f32":
      for (let i = 0; i < n; i++) {
        const r = raw[i]!;
        let v = Math.fround(r);
        if (towardZero && Math.abs(v) > Math.abs(r)) v = nextTowardZeroF32(v);
        values[i] = v;
      }
      return { dtype, values };
    case "f16": {
      const codes = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const r = raw[i]!;
        let h = f32ToF16Bits(r);
        if ((h & 0x7c00) === 0x7c00) h = (h & 0x8000) | 0x7bff; // saturate to ±65504 rather than store Inf
        if (towardZero && (h & 0x7fff) !== 0 && Math.abs(f16BitsToF32(h)) > Math.abs(r)) h--; // sign-magnitude: one code toward zero
        codes[i] = h;
        values[i] = f16BitsToF32(h);
      }
      return { dtype, values, codes };
    }
    case "bf16": {
      const codes = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const r = raw[i]!;
        let h = f32ToBf16Bits(r);
        if (towardZero && (h & 0x7fff) !== 0 && Math.abs(bf16BitsToF32(h)) > Math.abs(r)) h--;
        codes[i] = h;
        values[i] = bf16BitsToF32(codes[i]!);
      }
      return { dtype, values, codes };
    }
    case "e8m0": {
      const codes = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const s = raw[i]!;
        const x = s > 0 ? floorLog2(s) + e8m0Offset : E8M0_MIN_EXP;
        const X = Math.min(E8M0_MAX_EXP, Math.max(E8M0_MIN_EXP, x));
        codes[i] = X + 127;
        values[i] = 2 ** (X - e8m0Offset);
      }
      return { dtype, values, codes, e8m0Offset };
    }
    case "fp8": case "u8": case "u6": case "u4": {
      if (superBlock === undefined) throw new QuantlabError("E_INTERNAL", `scale dtype ${dtype} needs a super-block size`);
      const sb = superBlock === "tensor" ? Math.max(1, n) : superBlock;
      const nSuper = Math.ceil(n / sb);
      const superScales = new Float32Array(nSuper);
      const codes = new Uint16Array(n);
      const fmt = dtype === "fp8" ? fp8Format() : undefined;
      const qmax = dtype === "fp8" ? E4M3_MAX : 2 ** SCALE_DTYPE_BITS[dtype] - 1;
      for (let b = 0; b < nSuper; b++) {
        const lo = b * sb, hi = Math.min(n, lo + sb);
        let m = 0;
        for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(raw[i]!));
        const sup = Math.fround(m / qmax);
        superScales[b] = sup;
        for (let i = lo; i < hi; i++) {
          const s = raw[i]!;
          if (fmt) {
            const c = sup > 0 ? fmt.encode(s / sup) : fmt.encode(0);
            codes[i] = c;
            values[i] = fmt.decode(c) * sup;
          } else {
            const c = sup > 0 ? Math.min(qmax, roundHalfEven(Math.abs(s) / sup)) : 0;
            codes[i] = c;
            values[i] = c * sup;
          }
        }
      }
      return { dtype, values, codes, superScales, superBlock: sb };
    }
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
/** The f32 next to v in the direction of zero (v a nonzero f32). */
function nextTowardZeroF32(v: number): number {
  f32Scratch[0] = v;
  u32Scratch[0] = u32Scratch[0]! - 1; // sign-magnitude: one step down in magnitude
  return f32Scratch[0]!;
}

/** Rebuilds scale values from stored codes (used when reading a file). */
export function loadScales(s: Omit<StoredScales, "values">, n: number): StoredScales {
  const values = new Float32Array(n);
  const codes = s.codes;
  if (s.dtype !== "f32" && (!codes || codes.length !== n)) throw new QuantlabError("E_FORMAT", `scales: expected ${n} ${s.dtype} codes, got ${codes?.length ?? 0}`);
  switch (s.dtype) {
    case "f32": throw new QuantlabError("E_INTERNAL", "f32 scales are stored as values");
    case "f16": for (let i = 0; i < n; i++) values[i] = f16BitsToF32(codes![i]!); break;
    case "bf16": for (let i = 0; i < n; i++) values[i] = bf16BitsToF32(codes![i]!); break;
    case "e8m0": {
      const off = s.e8m0Offset ?? 0;
      for (let i = 0; i < n; i++) {
        const c = codes![i]!;
        if (c === 0xff) throw new QuantlabError("E_FORMAT", "scales: e8m0 NaN (0xFF) scale");
        values[i] = 2 ** (c - 127 - off);
      }
      break;
    }
    default: {
      const sb = s.superBlock, sup = s.superScales;
      if (!sb || !sup || sup.length !== Math.ceil(n / sb)) throw new QuantlabError("E_FORMAT", `scales: ${s.dtype} needs ${sb ? Math.ceil(n / sb) : "?"} super-scales, got ${sup?.length ?? 0}`);
      const fmt = s.dtype === "fp8" ? fp8Format() : undefined;
      for (let i = 0; i < n; i++) {
        const c = codes![i]!;
        values[i] = (fmt ? fmt.decode(c) : c) * sup[Math.floor(i / sb)]!;
      }
    }
  }
  return { ...s, values };
}

/** Storage bits of a stored scale array: codes (or f32 values; u6/u4 bit-packed, whole bytes) plus f32 super-scales. */
export function scaleStorageBits(s: StoredScales): number {
  return 8 * Math.ceil((s.values.length * SCALE_DTYPE_BITS[s.dtype]) / 8) + (s.superScales ? s.superScales.length * 32 : 0);
}

/** Round half to even (IEEE roundTiesToEven) for any finite number. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v); // ties toward +∞
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
