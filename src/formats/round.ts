/**
 * Rounding helpers shared by every format: round-half-to-even, stochastic rounding, exact binary
 * exponent, and `LevelSet`, the codec of any format given as a finite list of (code, value) pairs
 * (codebooks, NF4, ternary, binary, logarithmic). Pure float64 arithmetic, no Node APIs.
 */
import { QuantlabError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import type { EncodeOptions, Format, FormatFamily } from "./types.js";

/** Round half to even (IEEE roundTiesToEven). `x - floor(x)` is exact in float64, so ties are exact. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Stochastic rounding to an integer: ⌊x⌋ + 1 with probability x − ⌊x⌋, so E[result] = x. */
export function roundStochastic(x: number, rng: Rng): number {
  const f = Math.floor(x);
  const p = x - f;
  return p > 0 && rng.next() < p ? f + 1 : f;
}

/** Checks stochastic options once per encode; returns the rng or undefined for nearest. */
export function stochasticRng(opts: EncodeOptions | undefined, formatName: string): Rng | undefined {
  if (!opts || opts.rounding === undefined || opts.rounding === "nearest") return undefined;
  if (opts.rounding !== "stochastic") {
    throw new QuantlabError("E_ARG", `format ${formatName}: unknown rounding "${String(opts.rounding)}" (valid: nearest, stochastic)`);
  }
  if (!opts.rng) throw new QuantlabError("E_ARG", `format ${formatName}: stochastic rounding needs a seeded rng (EncodeOptions.rng)`);
  return opts.rng;
}

export function nanError(formatName: string): QuantlabError {
  return new QuantlabError("E_VALUE", `format ${formatName}: cannot encode NaN (the format has no NaN code)`);
}

// float64 bits through a typed-array view (host order; little-endian like every JS engine we target, as in core/f16.ts)
const scratchF64 = new Float64Array(1);
const scratchU32 = new Uint32Array(scratchF64.buffer);
/** floor(log2(a)) for finite a > 0, exact (read from the float64 exponent field, subnormals included). */
export function exponentOf(a: number): number {
  scratchF64[0] = a;
  const e = (scratchU32[1]! >>> 20) & 0x7ff;
  if (e !== 0) return e - 1023;
  return exponentOf(a * 2 ** 64) - 64; // float64 subnormal
}

const POW2 = new Float64Array(2100);
for (let i = 0; i < POW2.length; i++) POW2[i] = 2 ** (i - 1074);
/** 2^k for integer k in [−1074, 1025], from a table (exact) */
export function pow2(k: number): number {
  return POW2[k + 1074]!;
}

/**
 * Codec over a finite list of codes and their values. Encoding finds the nearest value; a value exactly
 * halfway between two neighbours goes to the neighbour with the even code (for integer-valued formats
 * whose code parity equals value parity this is ordinary round-half-to-even). Values outside the range
 * saturate (level formats have no Inf). ±0: a negative input that rounds to 0 gets the −0 code when the
 * format has one. Stochastic rounding picks one of the two neighbours with probability proportional to
 * closeness, so E[decode(encode(x))] = x inside the range.
 */
export class LevelSet {
  /** distinct finite values, ascending (0 once) */
  readonly sorted: Float64Array;
  /** code of each sorted value (+0's code for zero) */
  readonly codes: Int32Array;
  /** midpoints between neighbours; exact when (a+b)/2 is representable, true for float32-valued levels */
  readonly mids: Float64Array;
  /** code of −0, or −1 */
  readonly negZeroCode: number;

  constructor(
    readonly formatName: string,
    pairs: ReadonlyArray<readonly [code: number, value: number]>,
  ) {
    const finite = pairs.filter(([, v]) => Number.isFinite(v));
    let negZero = -1;
    const byValue = new Map<number, number>();
    for (const [c, v] of finite) {
      if (Object.is(v, -0)) {
        negZero = c;
        continue;
      }
      const prev = byValue.get(v);
      if (prev !== undefined) {
        throw new QuantlabError("E_INTERNAL", `format ${formatName}: value ${v} has two codes (${prev}, ${c})`);
      }
      byValue.set(v, c);
    }
    if (negZero >= 0 && !byValue.has(0)) {
      byValue.set(0, negZero); // a format whose only zero is −0
      negZero = -1;
    }
    const entries = [...byValue.entries()].sort((a, b) => a[0] - b[0]);
    if (entries.length === 0) throw new QuantlabError("E_INTERNAL", `format ${formatName}: no finite values`);
    this.sorted = Float64Array.from(entries, (e) => e[0]);
    this.codes = Int32Array.from(entries, (e) => e[1]);
    this.mids = new Float64Array(Math.max(0, entries.length - 1));
    for (let i = 0; i + 1 < entries.length; i++) this.mids[i] = this.sorted[i]! / 2 + this.sorted[i + 1]! / 2;
    this.negZeroCode = negZero;
  }

  /** index of the largest sorted value ≤ x, or −1 when x is below all */
  private floorIndex(x: number): number {
    const s = this.sorted;
    let lo = 0;
    let hi = s.length; // invariant: s[lo-1] ≤ x < s[hi]
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  private codeAt(i: number, x: number): number {
    if (this.sorted[i] === 0 && this.negZeroCode >= 0 && (x < 0 || Object.is(x, -0))) return this.negZeroCode;
    return this.codes[i]!;
  }

  /** nearest (ties to the even code) or stochastic; NaN input must be handled by the caller */
  encode(x: number, rng: Rng | undefined): number {
    const s = this.sorted;
    const n = s.length;
    const i = this.floorIndex(x);
    if (i < 0) return this.codeAt(0, x);
    if (i >= n - 1 || s[i] === x) return this.codeAt(i, x);
    if (rng) {
      const p = (x - s[i]!) / (s[i + 1]! - s[i]!);
      return this.codeAt(rng.next() < p ? i + 1 : i, x);
    }
    const m = this.mids[i]!;
    if (x < m) return this.codeAt(i, x);
    if (x > m) return this.codeAt(i + 1, x);
    return this.codeAt((this.codes[i]! & 1) === 0 ? i : i + 1, x);
  }
}

/**
 * A format defined by listing its codes: `pairs` holds (code, value) for every valid code (value may be
 * −0 for a negative-zero code); other codes of the `bits`-wide space decode to NaN. Used by ternary,
 * binary, logarithmic and zero formats.
 */
export class LevelFormat implements Format {
  readonly blockSize = 1;
  readonly maxValue: number;
  readonly minValue: number;
  readonly minPositive: number;
  readonly valueCount: number;
  readonly hasInf = false;
  readonly hasNaN = false;
  readonly overflow = "saturate" as const;
  private readonly table: Float64Array;
  private readonly set: LevelSet;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly family: FormatFamily,
    readonly bits: number,
    pairs: ReadonlyArray<readonly [code: number, value: number]>,
    readonly description: string,
  ) {
    const size = 2 ** bits;
    this.table = new Float64Array(size).fill(NaN);
    for (const [c, v] of pairs) {
      if (!(c >= 0 && c < size) || !Number.isNaN(this.table[c]!)) {
        throw new QuantlabError("E_INTERNAL", `format ${name}: code ${c} out of range or listed twice`);
      }
      this.table[c] = v;
    }
    this.set = new LevelSet(name, pairs);
    const s = this.set.sorted;
    this.maxValue = Math.max(Math.abs(s[0]!), Math.abs(s[s.length - 1]!));
    this.minValue = s[0]!;
    let mp = 0;
    for (const v of s) if (v > 0) { mp = v; break; }
    this.minPositive = mp;
    this.valueCount = s.length;
  }

  decode(code: number): number {
    return Number.isInteger(code) && code >= 0 && code < this.table.length ? this.table[code]! : NaN;
  }

  encode(x: number, opts?: EncodeOptions): number {
    if (Number.isNaN(x)) throw nanError(this.name);
    return this.set.encode(x, stochasticRng(opts, this.name));
  }

  values(): Float64Array {
    return this.set.sorted;
  }

  nearestTable(): LevelSet {
    return this.set;
  }
}
