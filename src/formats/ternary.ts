/**
 * Ternary {−1, 0, +1} and binary {−1, +1} / {0, 1} formats, with the group scaling rules of the papers
 * that made them useful (the scale is stored by the Spec; these functions return it and fill codes).
 *
 * Codes:
 * - `ternary` (2 bits): two's complement like int2_sym: 0 → 0, 1 → +1, 3 → −1, 2 unused (NaN). Code parity
 *   equals value parity, so ±0.5 rounds to 0 (half to even, as BitNet's RoundClip does). Pack at 2 bits
 *   with quant/pack.ts `pack(codes, 2)`, or at 1.6 bits with `packTernary5` (5 trits per byte).
 * - `binary` (1 bit): the sign bit: 0 → +1, 1 → −1; 0 is a tie and goes to the even code, +1 (sign(0) = +1).
 * - `binary01` (1 bit): code = value.
 */
import { QuantlabError } from "../core/errors.js";
import { FORMAT_IDS } from "./ids.js";
import { LevelFormat, roundHalfEven } from "./round.js";
import type { Format } from "./types.js";

export const TERNARY_CODE = { zero: 0, plus: 1, minus: 3 } as const;

/** ternary code → value (−1, 0, +1), NaN for the unused code 2 */
export function ternaryValue(code: number): number {
  return code === 0 ? 0 : code === 1 ? 1 : code === 3 ? -1 : NaN;
}

function ternaryCode(q: number): number {
  return q > 0 ? 1 : q < 0 ? 3 : 0;
}

function checkGroup(src: Float32Array, dst: Uint8Array, what: string): void {
  if (dst.length < src.length) throw new QuantlabError("E_ARG", `${what}: code buffer has ${dst.length} slots for ${src.length} values`);
  for (let i = 0; i < src.length; i++) {
    if (!Number.isFinite(src[i]!)) throw new QuantlabError("E_VALUE", `${what}: value ${i} of the group is ${src[i]}`);
  }
}

/**
 * TWN threshold ternarization (Li, Zhang & Liu 2016, "Ternary Weight Networks"): Δ = 0.7·mean|w|,
 * codes = sign(w) where |w| > Δ else 0, scale α = mean of |w| over the non-zero codes (the least-squares α
 * for that support). Returns α (0 for an all-zero group). dst gets ternary codes.
 */
export function ternaryTwn(src: Float32Array, dst: Uint8Array): number {
  checkGroup(src, dst, "ternaryTwn");
  const n = src.length;
  if (n === 0) return 0;
  let sumAbs = 0;
  for (let i = 0; i < n; i++) sumAbs += Math.abs(src[i]!);
  const delta = (0.7 * sumAbs) / n;
  let s = 0;
  let cnt = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(src[i]!);
    if (a > delta) {
      s += a;
      cnt++;
      dst[i] = ternaryCode(src[i]!);
    } else dst[i] = 0;
  }
  return cnt === 0 ? 0 : s / cnt;
}

/**
 * BitNet b1.58 absmean ternarization (Ma et al. 2024, "The Era of 1-bit LLMs", eq. 1–3): γ = mean|w|,
 * q = RoundClip(w / (γ + ε), −1, 1) with round half to even, ε = 1e-8 (guards an all-zero group).
 * Returns the scale γ; value ≈ γ·q.
 */
export function ternaryAbsmean(src: Float32Array, dst: Uint8Array, eps = 1e-8): number {
  checkGroup(src, dst, "ternaryAbsmean");
  const n = src.length;
  if (n === 0) return 0;
  let sumAbs = 0;
  for (let i = 0; i < n; i++) sumAbs += Math.abs(src[i]!);
  const gamma = sumAbs / n;
  for (let i = 0; i < n; i++) {
    const q = Math.max(-1, Math.min(1, roundHalfEven(src[i]! / (gamma + eps))));
    dst[i] = ternaryCode(q);
  }
  return gamma;
}

/**
 * Binary sign quantization with the XNOR-Net scale (Rastegari et al. 2016): α = mean|w| minimizes
 * ‖w − α·sign(w)‖² over α. dst gets `binary` codes (0 → +1, 1 → −1). Returns α.
 */
export function binaryAbsmean(src: Float32Array, dst: Uint8Array): number {
  checkGroup(src, dst, "binaryAbsmean");
  const n = src.length;
  if (n === 0) return 0;
  let sumAbs = 0;
  for (let i = 0; i < n; i++) {
    sumAbs += Math.abs(src[i]!);
    dst[i] = src[i]! < 0 ? 1 : 0;
  }
  return sumAbs / n;
}

export const ternaryFormats = {
  ternary: new LevelFormat(FORMAT_IDS.ternary, "ternary", "ternary", 2, [[0, 0], [1, 1], [3, -1]],
    "ternary {−1, 0, +1}: 2-bit codes (two's complement), 1.6 bits/weight packed 5 per byte; scale by TWN or BitNet absmean"),
  binary: new LevelFormat(FORMAT_IDS.binary, "binary", "binary", 1, [[0, 1], [1, -1]], "binary {−1, +1}: sign bit (0 → +1); scale α = mean|w| (XNOR-Net)"),
  binary01: new LevelFormat(FORMAT_IDS.binary01, "binary01", "binary", 1, [[0, 0], [1, 1]], "binary {0, 1}"),
} satisfies Record<string, Format>;
