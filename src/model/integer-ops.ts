/**
 * Integer-only approximations of a transformer block's non-linear operations, for running the block with
 * integer arithmetic end to end (survey: integer-only quantization; I-BERT, Kim et al. 2021, "I-BERT:
 * Integer-only BERT Quantization", §3.3–3.5; I-LLM, Hu et al. 2024, for RMSNorm and SwiGLU in LLMs).
 *
 * Every value is an integer code q with a real scale S (x = q·S). The operations take integer codes and
 * return integer codes plus the output scale; inside them only integer +, −, ×, ⌊/⌋ and shifts run on JS
 * numbers, which hold every integer below 2^53 exactly — each function states and checks its bounds. The
 * scales only choose integer constants up front (as I-BERT's kernels do at compile time); they never meet
 * the codes in floating point.
 *
 * - iExp (I-BERT Alg. 2): for x ≤ 0, x = −z·ln2 + p with p ∈ (−ln2, 0]; exp(p) ≈ a(p + b)² + c (a = 0.3585,
 *   b = 1.353, c = 0.344, fitted on (−ln2, 0]), evaluated on integers as (q_p + ⌊b/S⌋)² + ⌊c/(a·S²)⌋ at scale
 *   a·S², then divided by 2^z with a shift.
 * - iSoftmax: subtract the row max, iExp, integer sum, and q_out = ⌊q_exp·2^outBits / Σ⌋ (probabilities at
 *   scale 2^−outBits).
 * - isqrt (I-BERT Alg. 4): ⌊√n⌋ by integer Newton iterations.
 * - iRmsnorm: r = isqrt(⌊Σ q² / dim⌋ + q_eps), q_out = ⌊q·2^outBits / r⌋ (x / rms at scale 2^−outBits); the
 *   norm weight is applied afterwards by the caller as an integer multiply.
 * - iSigmoid / iSilu: σ(x) = e^{−|x|}-based, σ = 1/(1 + e^{−x}) for x ≥ 0 and 1 − that for x < 0, from iExp and
 *   one integer division; silu = x·σ(x) as an integer product (scale S·2^−outBits).
 */
import { QuantlabError } from "../core/errors.js";

/** I-BERT's second-order fit of exp on (−ln2, 0] (§3.4, eq. 12) */
export const IEXP_A = 0.3585;
export const IEXP_B = 1.353;
export const IEXP_C = 0.344;
/** beyond this many halvings iExp is 0 (I-BERT clamps z the same way) */
const MAX_SHIFT = 30;

const SAFE = 2 ** 53;

function checkInt(v: number, what: string): void {
  if (!Number.isInteger(v) || Math.abs(v) >= SAFE) throw new QuantlabError("E_ARG", `${what}: ${v} is not an integer below 2^53`);
}

/** The integer constants of iExp for an input scale S (x = q·S), and its output scale. */
export interface IExpConstants {
  /** ⌊ln2 / S⌋ */
  qLn2: number;
  /** ⌊b / S⌋ */
  qB: number;
  /** ⌊c / (a·S²)⌋ */
  qC: number;
  /** scale of iExp's result: a·S² */
  outScale: number;
}

export function iExpConstants(S: number): IExpConstants {
  if (!(S > 0) || !Number.isFinite(S)) throw new QuantlabError("E_ARG", `iExp: input scale ${S} must be a positive number`);
  const qLn2 = Math.floor(Math.LN2 / S);
  if (qLn2 < 1) throw new QuantlabError("E_ARG", `iExp: input scale ${S} is coarser than ln 2 (no integer steps within one halving)`);
  return { qLn2, qB: Math.floor(IEXP_B / S), qC: Math.floor(IEXP_C / (IEXP_A * S * S)), outScale: IEXP_A * S * S };
}

/**
 * exp(q·S) for an integer q ≤ 0 as an integer at scale k.outScale (I-BERT Alg. 2). Integer ops only:
 * z = ⌊−q / qLn2⌋, p = q + z·qLn2 ∈ (−qLn2, 0], L = (p + qB)² + qC, result ⌊L / 2^z⌋.
 */
export function iExp(q: number, k: IExpConstants): number {
  if (q > 0) throw new QuantlabError("E_ARG", `iExp: input code ${q} is positive (subtract the maximum first)`);
  const z = Math.floor(-q / k.qLn2);
  if (z >= MAX_SHIFT) return 0;
  const p = q + z * k.qLn2;
  const t = p + k.qB;
  const L = t * t + k.qC;
  return Math.floor(L / 2 ** z); // a right shift: L ≥ 0 and 2^z a power of two
}

/**
 * Softmax of n integer scores (scale S) as integer probabilities at scale 2^−outBits (their sum is
 * 2^outBits up to the floors): row max subtracted, iExp, integer sum, ⌊q_exp·2^outBits / Σ⌋.
 */
export function iSoftmax(q: ArrayLike<number>, n: number, S: number, outBits: number, out: Int32Array | Float64Array): void {
  if (n < 1) throw new QuantlabError("E_ARG", "iSoftmax: no scores");
  if (!Number.isInteger(outBits) || outBits < 1 || outBits > 30) throw new QuantlabError("E_ARG", `iSoftmax: outBits ${outBits} outside 1…30`);
  const k = iExpConstants(S);
  let max = -Infinity;
  for (let i = 0; i < n; i++) { checkInt(q[i]!, "iSoftmax score"); if (q[i]! > max) max = q[i]!; }
  const e = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) { e[i] = iExp(q[i]! - max, k); sum += e[i]!; }
  // Σ ≥ L(0) > 0 (the max's own term); every product below stays under 2^53: e ≤ (qB)² + qC, checked
  const one = 2 ** outBits;
  if (sum * one >= SAFE) throw new QuantlabError("E_ARG", `iSoftmax: ${n} scores at scale ${S} overflow exact integers at ${outBits} output bits (use a coarser score scale)`);
  for (let i = 0; i < n; i++) out[i] = Math.floor((e[i]! * one) / sum);
}

/** ⌊√n⌋ of an integer 0 ≤ n < 2^53 by integer Newton iterations (I-BERT Alg. 4). */
export function isqrt(n: number): number {
  checkInt(n, "isqrt");
  if (n < 0) throw new QuantlabError("E_ARG", `isqrt: ${n} is negative`);
  if (n < 2) return n;
  // start above the root: 2^⌈bits/2⌉
  let x = 2 ** Math.ceil(Math.log2(n + 1) / 2);
  for (;;) {
    const y = Math.floor((x + Math.floor(n / x)) / 2);
    if (y >= x) return x;
    x = y;
  }
}

/**
 * RMS normalization of one row of integer codes (scale S): r = isqrt(⌊Σq² / dim⌋ + ⌊eps / S²⌋) and
 * q_out = ⌊q·2^outBits / r⌋ ≈ x / rms(x) at scale 2^−outBits (the weight is the caller's integer multiply).
 * Bounds: Σq² < 2^53 and |q|·2^outBits < 2^53, checked.
 */
export function iRmsnorm(q: ArrayLike<number>, dim: number, S: number, eps: number, outBits: number, out: Int32Array | Float64Array): void {
  let ss = 0;
  for (let i = 0; i < dim; i++) { checkInt(q[i]!, "iRmsnorm input"); ss += q[i]! * q[i]!; }
  if (ss >= SAFE) throw new QuantlabError("E_ARG", `iRmsnorm: Σq² of a row of ${dim} overflows exact integers (inputs too wide)`);
  const r = isqrt(Math.floor(ss / dim) + Math.floor(eps / (S * S)));
  const one = 2 ** outBits;
  if (r === 0) { for (let i = 0; i < dim; i++) out[i] = 0; return; }
  for (let i = 0; i < dim; i++) {
    const v = q[i]! * one;
    if (Math.abs(v) >= SAFE) throw new QuantlabError("E_ARG", `iRmsnorm: input ${q[i]} at ${outBits} output bits overflows exact integers`);
    out[i] = floorDiv(v, r);
  }
}

/** σ(q·S) as an integer at scale 2^−outBits: e = iExp(−|q|), σ = ⌊2^outBits·D / (D + e)⌋ for q ≥ 0 (D = iExp(0)), 2^outBits − that for q < 0. */
export function iSigmoid(q: number, k: IExpConstants, outBits: number): number {
  checkInt(q, "iSigmoid");
  const one = 2 ** outBits;
  const d = iExp(0, k); // exp(0) at the iExp scale
  const e = iExp(-Math.abs(q), k);
  const pos = Math.floor((one * d) / (d + e)); // 1 / (1 + e^{−|x|})
  return q >= 0 ? pos : one - pos;
}

/** silu(q·S) = x·σ(x) as an integer at scale S·2^−outBits: q·iSigmoid(q). */
export function iSilu(q: number, k: IExpConstants, outBits: number): number {
  const v = q * iSigmoid(q, k, outBits);
  if (Math.abs(v) >= SAFE) throw new QuantlabError("E_ARG", `iSilu: input ${q} at ${outBits} output bits overflows exact integers`);
  return v;
}

/**
 * ⌊a / b⌋ for integers |a| < 2^53, b ≥ 1: exact in doubles — the rounded quotient is off by less than
 * |a/b|·2^−53 < 1/b, which is less than the distance from a non-integer quotient to the next integer, and an
 * integer quotient is represented exactly.
 */
function floorDiv(a: number, b: number): number {
  return Math.floor(a / b);
}
