/** Helpers for format tests: float64 neighbours, brute-force nearest references. */
import type { Format } from "../../src/formats/types.js";

const dv = new DataView(new ArrayBuffer(8));

/** the next float64 above x (x finite) */
export function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  dv.setFloat64(0, x);
  const b = dv.getBigUint64(0);
  dv.setBigUint64(0, x > 0 ? b + 1n : b - 1n);
  return dv.getFloat64(0);
}

export function nextDown(x: number): number {
  return -nextUp(-x);
}

/** value → code for every finite value of a format, by decoding all codes (canonical code: the smallest that round-trips) */
export function codeTable(f: Format): { values: number[]; codes: number[] } {
  const n = 2 ** f.bits;
  const byVal = new Map<number, number>();
  let negZero = -1;
  for (let c = 0; c < n; c++) {
    const v = f.decode(c);
    if (!Number.isFinite(v)) continue;
    if (Object.is(v, -0)) {
      if (negZero < 0) negZero = c;
      continue;
    }
    if (!byVal.has(v)) byVal.set(v, c);
  }
  const entries = [...byVal.entries()].sort((a, b) => a[0] - b[0]);
  return { values: entries.map((e) => e[0]), codes: entries.map((e) => e[1]) };
}

/**
 * Brute-force nearest: linear scan of |x − v| (exact near ties: neighbours of equal sign are within a
 * factor of two of x there, so the subtractions are exact); a tie picks the even code. Saturates outside.
 * Returns the index into `values`.
 */
export function nearestRef(x: number, values: number[], codes: number[]): number {
  let best = 0;
  let bestD = Infinity;
  for (let i = 0; i < values.length; i++) {
    const d = Math.abs(x - values[i]!);
    if (d < bestD || (d === bestD && (codes[i]! & 1) === 0 && (codes[best]! & 1) === 1)) {
      best = i;
      bestD = d;
    }
  }
  return best;
}

/** index of the largest value ≤ x (−1 below all) */
export function floorIndex(x: number, values: ArrayLike<number>): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (values[m]! <= x) lo = m + 1;
    else hi = m;
  }
  return lo - 1;
}

export function sameValue(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}
