/**
 * Format: how one number becomes bits. Each format registers once in formats/registry.ts with a stable
 * numeric id (an id that has reached a file is retired, never renumbered), a name, a bit width and an
 * exact codec. Scales, zero points, granularity and block structure are the Spec's business (quant/),
 * except for formats that are blocks by definition (MX, NVFP4, block floating point), which describe
 * themselves with `blockSize`.
 */
import type { Rng } from "../core/rng.js";

export type Rounding = "nearest" | "stochastic";

export type FormatFamily =
  | "float" // IEEE-like minifloats: fp16, bf16, fp8, fp6, fp4, ExMy
  | "int" // uniform integer grids (signed/unsigned), fixed point, dyadic
  | "codebook" // non-uniform level sets: nf4, learned codebooks
  | "ternary"
  | "binary"
  | "log" // power-of-two, sum of two powers, arbitrary-base log
  | "block" // MX, NVFP4, BFP: shared scale per block is part of the format
  | "zero"; // "0-bit": one value per group

/**
 * What encode does with a finite value beyond the largest finite magnitude (after rounding):
 * "saturate" clamps to ±maxValue (also ±Inf inputs, as OCP OFP8 saturation mode and PTX `satfinite` do);
 * "nonfinite" returns ±Inf where the format has infinities (fp16, bf16, fp8_e5m2), else NaN where it has
 * a NaN (fp8_e4m3: "NaN on overflow"), else saturates (fp6, fp4, integers, codebooks have neither).
 */
export type Overflow = "saturate" | "nonfinite";

export interface EncodeOptions {
  rounding?: Rounding;
  /** required for stochastic rounding */
  rng?: Rng;
  /** default: the row's `overflow` (saturating for quantization formats, IEEE for fp16/bf16/fp32) */
  overflow?: Overflow;
}

export interface Format {
  /** stable id, never renumbered */
  readonly id: number;
  /** registry name as typed in specs, e.g. "fp8_e4m3", "int4", "nf4" */
  readonly name: string;
  readonly family: FormatFamily;
  /** bits per element code (not counting any shared scale) */
  readonly bits: number;
  /** elements per block with a shared scale baked into the format (1 for element formats) */
  readonly blockSize: number;
  /** largest finite magnitude representable (what absmax maps to when computing a scale) */
  readonly maxValue: number;
  /** one-line human description for `quantlab formats` */
  readonly description: string;
  /** exact decode of a code to its value (NaN/±Inf where the spec says so) */
  decode(code: number): number;
  /** exact encode of a value to a code: round-to-nearest-even by default, saturating unless the format says otherwise */
  encode(x: number, opts?: EncodeOptions): number;
  /** sorted finite values of all codes, when the code space is small enough to list (≤ 16 bits) */
  values(): Float64Array | undefined;

  // Optional facts, filled by every row of formats/ (block formats may leave them out).
  /** most negative finite value (−maxValue for sign-symmetric formats, 0 for unsigned) */
  readonly minValue?: number;
  /** smallest positive value (subnormal for floats, 1 ulp for integers) */
  readonly minPositive?: number;
  /** number of distinct finite values (±0 count once) */
  readonly valueCount?: number;
  readonly hasInf?: boolean;
  readonly hasNaN?: boolean;
  /** default overflow behaviour of encode */
  readonly overflow?: Overflow;
  /**
   * The table behind round-to-nearest encode, when encode(x) (default options) is exactly "nearest entry
   * of `sorted`, ties to the even code, −0's code for negative inputs that land on 0" for every non-NaN x:
   * hot loops (quant/tensor.ts) search it inline instead of calling encode per element.
   */
  nearestTable?(): NearestTable | undefined;
}

/** See Format.nearestTable and formats/round.ts LevelSet, which implements it. */
export interface NearestTable {
  /** distinct finite values, ascending (0 once) */
  readonly sorted: Float64Array;
  /** code of each sorted value (+0's code for zero) */
  readonly codes: Int32Array;
  /** (sorted[i] + sorted[i+1]) / 2, exact */
  readonly mids: Float64Array;
  /** code of −0, or −1 when the format has none */
  readonly negZeroCode: number;
}
