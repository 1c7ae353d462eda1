/**
 * Logarithmic formats: power of two (sign + exponent), arbitrary base (e.g. √2), and sums of two powers
 * of two. The survey's "logarithmic bitshift quantization": multiplying by ±2^e is a shift, and by
 * ±(2^a + 2^b) two shifts and an add (Miyashita, Lee & Murmann 2016 "Convolutional Neural Networks using
 * Logarithmic Data Representation" for base 2 and √2; Li et al. 2020 APoT for sums of powers of two).
 *
 * Codes are sign-magnitude: the top bit is the sign (1 = negative), the rest an index into ascending
 * magnitudes where index 0 is zero (so sign|0 is −0). Rounding is to the nearest value in the linear
 * domain, ties to the even code (between 2^k and 2^(k+1) the midpoint is 1.5·2^k); values beyond the
 * largest magnitude saturate, and the top magnitude is 2^maxExp (1 by default) so a group scale maps
 * absmax to it.
 */
import { QuantlabError } from "../core/errors.js";
import { FORMAT_IDS, type FormatName } from "./ids.js";
import { LevelFormat } from "./round.js";
import type { Format } from "./types.js";

function signMagnitudePairs(mags: readonly number[], bits: number): Array<[number, number]> {
  const sign = 2 ** (bits - 1);
  const pairs: Array<[number, number]> = [];
  mags.forEach((m, i) => {
    pairs.push([i, m]);
    pairs.push([sign + i, -m]);
  });
  return pairs;
}

export interface LogParams {
  /** total bits including the sign, 2..16 */
  bits: number;
  /** log2 of the base: 1 for powers of two, 0.5 for √2 (default 1) */
  log2Base?: number;
  /** exponent (in base 2) of the largest magnitude, default 0 */
  maxExp?: number;
}

/** Magnitudes 0 and 2^(maxExp − j·log2Base) for j = 0 … 2^(bits−1) − 2. */
export function logFormat(p: LogParams, name?: string, id = -1): LevelFormat {
  const { bits } = p;
  const lb = p.log2Base ?? 1;
  const maxExp = p.maxExp ?? 0;
  if (!Number.isInteger(bits) || bits < 2 || bits > 16) throw new QuantlabError("E_SPEC", `log format: bits must be 2..16 (sign + exponent), got ${bits}`);
  if (!(lb > 0)) throw new QuantlabError("E_SPEC", `log format: log2(base) must be > 0, got ${lb}`);
  const nE = 2 ** (bits - 1) - 1;
  const mags = [0];
  for (let k = 1; k <= nE; k++) mags.push(2 ** (maxExp - (nE - k) * lb));
  const base = lb === 1 ? "2" : lb === 0.5 ? "√2" : `2^${lb}`;
  const nm = name ?? (lb === 1 ? `pow2_${bits}` : `log${lb}_${bits}`);
  const minExp = maxExp - (nE - 1) * lb;
  return new LevelFormat(id, nm, "log", bits, signMagnitudePairs(mags, bits),
    `${bits}-bit logarithmic: 0 and ±${base}^k, magnitudes 2^${minExp}..2^${maxExp}`);
}

export function pow2Format(bits: number, maxExp = 0): LevelFormat {
  return logFormat({ bits, log2Base: 1, maxExp });
}

export interface Pow2SumParams {
  /** exponent range of each term, inclusive */
  eMin: number;
  eMax: number;
}

/** Sorted distinct magnitudes {0} ∪ {2^a} ∪ {2^a + 2^b : a > b}, a, b ∈ [eMin, eMax]. */
export function pow2SumMagnitudes(p: Pow2SumParams): number[] {
  const set = new Set<number>([0]);
  for (let a = p.eMin; a <= p.eMax; a++) {
    set.add(2 ** a);
    for (let b = p.eMin; b < a; b++) set.add(2 ** a + 2 ** b);
  }
  return [...set].sort((x, y) => x - y);
}

/** ±(2^a + 2^b), ±2^a or 0 with exponents in [eMin, eMax]; bits = 1 + ⌈log2(#magnitudes)⌉. */
export function pow2SumFormat(p: Pow2SumParams, name?: string, id = -1): LevelFormat {
  if (!Number.isInteger(p.eMin) || !Number.isInteger(p.eMax) || p.eMax < p.eMin || p.eMax - p.eMin > 30) {
    throw new QuantlabError("E_SPEC", `sum-of-two-powers format: need integers eMin ≤ eMax within 31 exponents, got ${p.eMin}..${p.eMax}`);
  }
  const mags = pow2SumMagnitudes(p);
  const bits = 1 + Math.ceil(Math.log2(mags.length));
  if (bits > 16) throw new QuantlabError("E_SPEC", `sum-of-two-powers format: ${mags.length} magnitudes need ${bits} bits (max 16)`);
  return new LevelFormat(id, name ?? `pow2sum_e${p.eMin}_${p.eMax}`, "log", bits, signMagnitudePairs(mags, bits),
    `${bits}-bit sum of two powers of two: 0, ±2^a, ±(2^a + 2^b), a > b in [${p.eMin}, ${p.eMax}] (${mags.length} magnitudes)`);
}

/** The widest exponent range whose magnitudes fit `bits` (sign included), top exponent 0. */
export function pow2SumForBits(bits: number): Pow2SumParams {
  let n = 1;
  while (1 + (n + 1) + ((n + 1) * n) / 2 <= 2 ** (bits - 1)) n++;
  return { eMin: -(n - 1), eMax: 0 };
}

type LogName = `pow2_${2 | 3 | 4 | 5 | 6 | 7 | 8}` | `logsqrt2_${3 | 4 | 5 | 6 | 7 | 8}` | `pow2sum_${3 | 4 | 5 | 6 | 7 | 8}`;

function logRows(): Record<LogName, Format> {
  const rows: Partial<Record<LogName, Format>> = {};
  const id = (n: LogName) => FORMAT_IDS[n as FormatName];
  for (let b = 2; b <= 8; b++) {
    const n = `pow2_${b}` as LogName;
    rows[n] = logFormat({ bits: b }, n, id(n));
  }
  for (let b = 3; b <= 8; b++) {
    const n1 = `logsqrt2_${b}` as LogName;
    rows[n1] = logFormat({ bits: b, log2Base: 0.5 }, n1, id(n1));
    const n2 = `pow2sum_${b}` as LogName;
    rows[n2] = pow2SumFormat(pow2SumForBits(b), n2, id(n2));
  }
  return rows as Record<LogName, Format>;
}

export const logFormats: Record<LogName, Format> = logRows();
