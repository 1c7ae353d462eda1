/**
 * Integer grids, fixed point and dyadic numbers.
 *
 * - `int{b}`: two's complement, full range −2^(b−1) … 2^(b−1)−1 (int1 = {−1, 0}).
 * - `int{b}_sym`: restricted symmetric range −(2^(b−1)−1) … 2^(b−1)−1, still stored two's complement; the
 *   code 2^(b−1) (the would-be −2^(b−1)) is unused and decodes to NaN. Symmetric scales map absmax to
 *   2^(b−1)−1 so that +x and −x quantize to opposite codes.
 * - `uint{b}`: 0 … 2^b−1 (affine schemes add a zero point in quant/).
 * - fixed point Qm.n (ARM notation: 1 sign bit, m integer bits, n fraction bits, 1+m+n bits two's
 *   complement): value = code / 2^n. `fixedDot` is the integer-only dot product with its right shift.
 * - `dyadic`: value m / 2^k; `toDyadic` turns a real scale into the nearest m / 2^k with bounded m, the
 *   requantization multiplier of integer-only inference (Jacob et al. 2018, "Quantization and Training
 *   of Neural Networks for Efficient Integer-Arithmetic-Only Inference"; HAWQ-V3 dyadic arithmetic).
 *
 * Codes are unsigned integers in [0, 2^bits): the two's complement bit pattern for signed grids.
 * Rounding: half to even (code parity = value parity, so this is also "ties to the even code").
 */
import { QuantlabError } from "../core/errors.js";
import { FORMAT_IDS, type FormatName } from "./ids.js";
import { exponentOf, nanError, roundHalfEven, roundStochastic, stochasticRng } from "./round.js";
import type { EncodeOptions, Format, FormatFamily } from "./types.js";

export interface IntGridParams {
  /** 1..32 */
  bits: number;
  signed: boolean;
  /** signed only: drop −2^(b−1) so the range is symmetric */
  restricted?: boolean;
  /** fixed point: value = integer / 2^fracBits (default 0) */
  fracBits?: number;
}

export class IntGrid implements Format {
  readonly family: FormatFamily = "int";
  readonly blockSize = 1;
  readonly bits: number;
  readonly signed: boolean;
  readonly restricted: boolean;
  readonly fracBits: number;
  /** integer range of the grid (before the 2^−fracBits factor) */
  readonly qmin: number;
  readonly qmax: number;
  readonly maxValue: number;
  readonly minValue: number;
  readonly minPositive: number;
  readonly valueCount: number;
  readonly hasInf = false;
  readonly hasNaN = false;
  readonly overflow = "saturate" as const;
  private readonly ulp: number;
  private valuesCache: Float64Array | undefined;

  constructor(
    readonly id: number,
    readonly name: string,
    p: IntGridParams,
    readonly description: string,
  ) {
    const b = p.bits;
    if (!Number.isInteger(b) || b < 1 || b > 32) throw new QuantlabError("E_SPEC", `integer format ${name}: bits must be 1..32, got ${b}`);
    this.bits = b;
    this.signed = p.signed;
    this.restricted = !!p.restricted && p.signed;
    if (this.restricted && b < 2) throw new QuantlabError("E_SPEC", `integer format ${name}: a restricted symmetric grid needs at least 2 bits`);
    this.fracBits = p.fracBits ?? 0;
    this.qmin = p.signed ? -(2 ** (b - 1)) + (this.restricted ? 1 : 0) : 0;
    this.qmax = p.signed ? 2 ** (b - 1) - 1 : 2 ** b - 1;
    this.ulp = 2 ** -this.fracBits;
    this.maxValue = this.qmax * this.ulp;
    this.minValue = this.qmin * this.ulp;
    this.minPositive = this.qmax >= 1 ? this.ulp : 0;
    this.valueCount = this.qmax - this.qmin + 1;
  }

  /** integer level of a code, or NaN for an unused code */
  level(code: number): number {
    if (!(code >= 0 && code < 2 ** this.bits) || !Number.isInteger(code)) return NaN;
    const q = this.signed && code >= 2 ** (this.bits - 1) ? code - 2 ** this.bits : code;
    return q < this.qmin ? NaN : q;
  }

  /** code of an integer level in [qmin, qmax] */
  codeOf(q: number): number {
    return q < 0 ? q + 2 ** this.bits : q;
  }

  decode(code: number): number {
    const q = this.level(code);
    return q * this.ulp;
  }

  /** integer level for x (already divided by the scale), rounded and clamped */
  quantizeLevel(x: number, opts?: EncodeOptions): number {
    if (Number.isNaN(x)) throw nanError(this.name);
    const rng = stochasticRng(opts, this.name);
    const y = x / this.ulp;
    if (y >= this.qmax) return this.qmax; // also +Inf
    if (y <= this.qmin) return this.qmin;
    const r = rng ? roundStochastic(y, rng) : roundHalfEven(y);
    return r === 0 ? 0 : r; // no −0
  }

  encode(x: number, opts?: EncodeOptions): number {
    return this.codeOf(this.quantizeLevel(x, opts));
  }

  values(): Float64Array | undefined {
    if (this.bits > 16) return undefined;
    if (!this.valuesCache) {
      const v = new Float64Array(this.valueCount);
      for (let i = 0; i < v.length; i++) v[i] = (this.qmin + i) * this.ulp;
      this.valuesCache = v;
    }
    return this.valuesCache;
  }
}

/** Build an integer grid outside the registry, e.g. `intGrid({ bits: 13, signed: true })`. */
export function intGrid(p: IntGridParams, name?: string): IntGrid {
  const nm = name ?? `${p.signed ? "int" : "uint"}${p.bits}${p.restricted ? "_sym" : ""}${p.fracBits ? `_f${p.fracBits}` : ""}`;
  return new IntGrid(-1, nm, p, `${p.bits}-bit ${p.signed ? "signed" : "unsigned"} integer grid`);
}

// ---------------------------------------------------------------------------------------------------
// Fixed point: integer-only dot product

export type ShiftRounding = "nearest-even" | "half-up" | "floor";

export interface FixedDotOptions {
  /** fraction bits of a, b and of the result */
  aFrac: number;
  bFrac: number;
  outFrac: number;
  /** result width in bits (two's complement), default 32 */
  outBits?: number;
  /** accumulator width in bits, default 64 (products of two int32 need 62) */
  accBits?: number;
  /** how the right shift by aFrac + bFrac − outFrac rounds; default nearest-even */
  rounding?: ShiftRounding;
}

export interface FixedDotResult {
  /** the result as an integer in Q(outFrac), saturated to outBits when it overflowed */
  value: number;
  /** the accumulator overflowed accBits, or the shifted result did not fit outBits */
  overflow: boolean;
}

/** Arithmetic right shift of a BigInt by s ≥ 0 with the chosen rounding. */
export function shiftRightRound(v: bigint, s: number, rounding: ShiftRounding = "nearest-even"): bigint {
  if (s <= 0) return v << BigInt(-s);
  const sh = BigInt(s);
  const floor = v >> sh; // BigInt >> is floor division by 2^s
  if (rounding === "floor") return floor;
  const rem = v - (floor << sh); // 0 ≤ rem < 2^s
  const half = 1n << (sh - 1n);
  if (rem > half) return floor + 1n;
  if (rem < half) return floor;
  if (rounding === "half-up") return floor + 1n;
  return (floor & 1n) === 0n ? floor : floor + 1n;
}

/**
 * Integer-only dot product of two fixed-point vectors (Int32Array, or any integer-valued array):
 * Σ a[i]·b[i] accumulated exactly in an `accBits` two's complement accumulator (overflow detected at every
 * step, as wrapping hardware would lose it), then shifted right by aFrac + bFrac − outFrac with rounding,
 * then checked against `outBits`. The reference for integer-only inference (survey: "integer-only
 * arithmetic quantization"); BigInt keeps it exact for any width.
 */
export function fixedDot(a: ArrayLike<number>, b: ArrayLike<number>, o: FixedDotOptions): FixedDotResult {
  if (a.length !== b.length) throw new QuantlabError("E_ARG", `fixedDot: vectors have different lengths (${a.length} vs ${b.length})`);
  const accBits = o.accBits ?? 64;
  const outBits = o.outBits ?? 32;
  const accMax = (1n << BigInt(accBits - 1)) - 1n;
  const accMin = -(1n << BigInt(accBits - 1));
  let acc = 0n;
  let overflow = false;
  for (let i = 0; i < a.length; i++) {
    acc += BigInt(a[i]!) * BigInt(b[i]!);
    if (acc > accMax || acc < accMin) overflow = true;
  }
  let r = shiftRightRound(acc, o.aFrac + o.bFrac - o.outFrac, o.rounding ?? "nearest-even");
  const outMax = (1n << BigInt(outBits - 1)) - 1n;
  const outMin = -(1n << BigInt(outBits - 1));
  if (r > outMax) (r = outMax), (overflow = true);
  else if (r < outMin) (r = outMin), (overflow = true);
  return { value: Number(r), overflow };
}

// ---------------------------------------------------------------------------------------------------
// Dyadic numbers m / 2^k

export interface Dyadic {
  /** integer numerator, |m| ≤ 2^mBits − 1 */
  m: number;
  /** shift, 0 ≤ k ≤ maxShift */
  k: number;
}

/**
 * Nearest dyadic m / 2^k to x with |m| ≤ 2^mBits − 1 and 0 ≤ k ≤ maxShift, using the largest k that fits
 * (the most precise representation; m is then in [2^(mBits−1), 2^mBits) unless k hit maxShift or 0).
 * Ties between two dyadics round m to even. |x| beyond (2^mBits − 1) saturates to m = ±(2^mBits − 1), k = 0.
 * Used for requantization: acc · scale ≈ (acc · m) >> k with integers only.
 */
export function toDyadic(x: number, mBits = 31, maxShift = 62): Dyadic {
  if (!Number.isFinite(x)) throw new QuantlabError("E_VALUE", `toDyadic: cannot represent ${x} as m/2^k`);
  if (!Number.isInteger(mBits) || mBits < 1 || mBits > 52) throw new QuantlabError("E_ARG", `toDyadic: mBits must be 1..52, got ${mBits}`);
  const mMax = 2 ** mBits - 1;
  const a = Math.abs(x);
  if (a === 0) return { m: 0, k: 0 };
  // largest k with a·2^k < 2^mBits: a·2^k ∈ [2^(mBits−1), 2^mBits)
  let k = Math.min(maxShift, mBits - 1 - exponentOf(a));
  if (k < 0) return { m: Math.sign(x) * mMax, k: 0 };
  let m = roundHalfEven(a * 2 ** k); // exact scaling, then one rounding
  if (m > mMax) {
    // rounded up to 2^mBits: the same value with one less shift
    m /= 2;
    k -= 1;
    if (k < 0) return { m: Math.sign(x) * mMax, k: 0 };
  }
  return { m: x < 0 ? -m : m, k };
}

/** round(acc · m / 2^k) with integers only (exact BigInt reference), the requantization step */
export function dyadicMulShift(acc: number, d: Dyadic, rounding: ShiftRounding = "nearest-even"): number {
  return Number(shiftRightRound(BigInt(acc) * BigInt(d.m), d.k, rounding));
}

/**
 * The `dyadic` registry row: 16-bit code = signed 10-bit numerator m (bits 15..6, two's complement) and
 * 6-bit shift k (bits 5..0); value m / 2^k, so |value| ≤ 511 and the smallest positive value is 2^−63.
 * Encode returns the canonical code (m odd, or k = 0); every (m, k) pair decodes.
 */
export class DyadicFormat implements Format {
  readonly family: FormatFamily = "int";
  readonly bits = 16;
  readonly blockSize = 1;
  readonly mBits = 10;
  readonly kBits = 6;
  readonly maxValue = 511;
  readonly minValue = -511;
  readonly minPositive = 2 ** -63;
  readonly hasInf = false;
  readonly hasNaN = false;
  readonly overflow = "saturate" as const;
  readonly valueCount: number;
  private valuesCache: Float64Array | undefined;
  constructor(
    readonly id: number,
    readonly name: string,
    readonly description: string,
  ) {
    this.valueCount = this.values().length;
  }

  decode(code: number): number {
    if (!(code >= 0 && code < 65536) || !Number.isInteger(code)) return NaN;
    const k = code & 63;
    const mu = code >>> 6;
    const m = mu >= 512 ? mu - 1024 : mu;
    if (m === -512) return NaN; // restricted numerator, symmetric range
    return m * 2 ** -k;
  }

  /** canonical code of m / 2^k: strip common factors of two */
  canonical(m: number, k: number): number {
    while (m !== 0 && m % 2 === 0 && k > 0) (m /= 2), (k -= 1);
    if (m === 0) k = 0;
    return ((m < 0 ? m + 1024 : m) << 6) | k;
  }

  encode(x: number, opts?: EncodeOptions): number {
    if (Number.isNaN(x)) throw nanError(this.name);
    const rng = stochasticRng(opts, this.name);
    const a = Math.min(Math.abs(x), this.maxValue);
    if (a === 0) return 0;
    let k = Math.min(63, this.mBits - 2 - exponentOf(a)); // a·2^k ∈ [256, 512)
    if (k < 0) k = 0;
    const y = a * 2 ** k;
    // m ∈ [256, 512]; 512·2^−k (k ≥ 1 then) is 256·2^−(k−1), which canonical() reduces to
    const m = rng ? roundStochastic(y, rng) : roundHalfEven(y);
    return this.canonical(x < 0 ? -m : m, k);
  }

  values(): Float64Array {
    if (!this.valuesCache) {
      const set = new Set<number>();
      for (let c = 0; c < 65536; c++) {
        const v = this.decode(c);
        if (!Number.isNaN(v)) set.add(v);
      }
      this.valuesCache = Float64Array.from([...set].sort((a, b) => a - b));
    }
    return this.valuesCache;
  }
}

// ---------------------------------------------------------------------------------------------------
// Registry rows

type IntBits = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13 | 14 | 15 | 16;
type IntName = `int${IntBits}` | `int${Exclude<IntBits, 1>}_sym` | `uint${IntBits}` | "q0_7" | "q0_15" | "q0_31" | "q15_16" | "q7_8" | "dyadic";

function intRows(): Record<IntName, Format> {
  const rows: Partial<Record<IntName, Format>> = {};
  const id = (n: IntName): number => FORMAT_IDS[n as FormatName];
  for (let b = 1 as IntBits; b <= 16; b++) {
    const lo = -(2 ** (b - 1));
    const hi = 2 ** (b - 1) - 1;
    const n1 = `int${b}` as IntName;
    rows[n1] = new IntGrid(id(n1), n1, { bits: b, signed: true }, `signed ${b}-bit integer, full range ${lo}..${hi} (two's complement)`);
    if (b >= 2) {
      const n2 = `int${b}_sym` as IntName;
      rows[n2] = new IntGrid(id(n2), n2, { bits: b, signed: true, restricted: true }, `signed ${b}-bit integer, restricted symmetric ${lo + 1}..${hi}`);
    }
    const n3 = `uint${b}` as IntName;
    rows[n3] = new IntGrid(id(n3), n3, { bits: b, signed: false }, `unsigned ${b}-bit integer 0..${2 ** b - 1}`);
  }
  const q = (n: IntName, m: number, f: number, what: string) =>
    (rows[n] = new IntGrid(id(n), n, { bits: 1 + m + f, signed: true, fracBits: f }, `fixed point Q${m}.${f}: ${1 + m + f}-bit two's complement / 2^${f} (${what})`));
  q("q0_7", 0, 7, "Q7");
  q("q0_15", 0, 15, "Q15");
  q("q0_31", 0, 31, "Q31");
  q("q7_8", 7, 8, "16-bit");
  q("q15_16", 15, 16, "INT32 fixed point");
  rows.dyadic = new DyadicFormat(FORMAT_IDS.dyadic, "dyadic", "dyadic m/2^k: signed 10-bit m, 6-bit k (integer-only requant scales)");
  return rows as Record<IntName, Format>;
}

export const intFormats: Record<IntName, Format> = intRows();
