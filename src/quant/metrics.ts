/**
 * Error metrics between a reference tensor and its quantized reconstruction. All sums in float64.
 * SQNR follows torchao's `compute_error`: 20·log10(‖x‖ / ‖x − x̂‖), i.e. 10·log10(Σx² / Σ(x−x̂)²).
 */
import { QuantlabError } from "../core/errors.js";

export interface ErrorStats {
  /** signal-to-quantization-noise ratio in dB (Infinity when exact, -Infinity when the signal is zero and the error is not) */
  sqnrDb: number;
  /** Σ(x−x̂)² / Σx² (0 when exact; Infinity when the signal is zero and the error is not) */
  nmse: number;
  /** mean of (x−x̂)² */
  mse: number;
  /** max |x − x̂| */
  maxAbsError: number;
  /** x·x̂ / (‖x‖‖x̂‖); 1 when both are zero, 0 when exactly one is */
  cosine: number;
}

function checkLengths(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new QuantlabError("E_ARG", `metrics: length mismatch ${a.length} vs ${b.length}`);
}

export function errorStats(ref: ArrayLike<number>, approx: ArrayLike<number>): ErrorStats {
  checkLengths(ref, approx);
  let sig = 0, noise = 0, dot = 0, aa = 0, maxAbs = 0;
  const n = ref.length;
  for (let i = 0; i < n; i++) {
    const x = ref[i]!, y = approx[i]!;
    const d = x - y;
    sig += x * x;
    noise += d * d;
    dot += x * y;
    aa += y * y;
    const ad = Math.abs(d);
    if (ad > maxAbs || Number.isNaN(ad)) maxAbs = ad;
  }
  const nmse = noise === 0 ? 0 : sig === 0 ? Infinity : noise / sig;
  const sqnrDb = noise === 0 ? Infinity : sig === 0 ? -Infinity : 10 * Math.log10(sig / noise);
  const cosine = sig === 0 && aa === 0 ? 1 : sig === 0 || aa === 0 ? 0 : dot / Math.sqrt(sig * aa);
  return { sqnrDb, nmse, mse: n === 0 ? 0 : noise / n, maxAbsError: maxAbs, cosine };
}

export function sqnrDb(ref: ArrayLike<number>, approx: ArrayLike<number>): number {
  return errorStats(ref, approx).sqnrDb;
}
export function nmse(ref: ArrayLike<number>, approx: ArrayLike<number>): number {
  return errorStats(ref, approx).nmse;
}
export function maxAbsError(ref: ArrayLike<number>, approx: ArrayLike<number>): number {
  return errorStats(ref, approx).maxAbsError;
}
export function cosineSimilarity(ref: ArrayLike<number>, approx: ArrayLike<number>): number {
  return errorStats(ref, approx).cosine;
}
