/** BigInt references for the integer-only paths' tests. */

/** round(v / 2^s), ties away from zero, on BigInt (gemmlowp's RoundingDivideByPOT); s < 0 shifts left */
export function shiftAway(v: bigint, s: number): bigint {
  if (s <= 0) return v << BigInt(-s);
  const p = 1n << BigInt(s);
  const a = v < 0n ? -v : v;
  const r = (a + p / 2n) / p;
  return v < 0n ? -r : r;
}
