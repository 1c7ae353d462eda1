/**
 * Range and clipping calibration: min-max, percentile, MSE-optimal clip search, and KL-divergence
 * (entropy) calibration from histograms (the TensorRT 8-bit inference calibration algorithm, Migacz,
 * GTC 2017, generalized from uniform bins to any element grid).
 * These work on plain arrays of values or on |x| histograms; `quantizer.ts` applies them per group and
 * `observer.ts` to accumulated activation statistics.
 */
import { QuantlabError } from "../core/errors.js";

/**
 * Clip ratios tried by the MSE search: 1.00, 0.99, …, 0.21 of the min-max range (GPTQ's grid, maxshrink
 * 0.8), then 0.2·0.9^k for k = 1..30 (down to ≈0.0085) so heavy-tailed tensors, whose best clip can be a
 * few percent of their max, are covered too.
 */
export const MSE_LINEAR_STEPS = 80;
export const MSE_GEOMETRIC_STEPS = 30;
export function mseClipRatios(): Float64Array {
  const r = new Float64Array(MSE_LINEAR_STEPS + MSE_GEOMETRIC_STEPS);
  for (let k = 0; k < MSE_LINEAR_STEPS; k++) r[k] = 1 - k * 0.01;
  for (let k = 1; k <= MSE_GEOMETRIC_STEPS; k++) r[MSE_LINEAR_STEPS + k - 1] = 0.2 * 0.9 ** k;
  return r;
}
const MSE_RATIOS = mseClipRatios();
/** Histogram bins for KL calibration (TensorRT uses 2048; small weight groups get fewer). */
export const KL_BINS = 2048;

export function minMax(values: ArrayLike<number>, n = values.length): { min: number; max: number } {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return n === 0 ? { min: 0, max: 0 } : { min: lo, max: hi };
}

export function absMax(values: ArrayLike<number>, n = values.length): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(values[i]!);
    if (a > m) m = a;
  }
  return m;
}

export function absMean(values: ArrayLike<number>, n = values.length): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.abs(values[i]!);
  return n === 0 ? 0 : s / n;
}

/** p-th percentile (0..100) of a sorted array, linear interpolation between closest ranks. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const pos = (p / 100) * (n - 1);
  const i = Math.floor(pos), f = pos - i;
  return i + 1 < n ? sorted[i]! + f * (sorted[i + 1]! - sorted[i]!) : sorted[n - 1]!;
}

/** p-th percentile of |x|. */
export function absPercentile(values: ArrayLike<number>, p: number, n = values.length): number {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.abs(values[i]!);
  a.sort();
  return percentileSorted(a, p);
}

/** [100−p, p] percentile range of x. */
export function percentileRange(values: ArrayLike<number>, p: number, n = values.length): { lo: number; hi: number } {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = values[i]!;
  a.sort();
  return { lo: percentileSorted(a, 100 - p), hi: percentileSorted(a, p) };
}

/**
 * Grid search of the clip ratio minimizing an error function err(r) over `ratios` (default: the MSE grid);
 * returns the best r (the largest among equals, so min-max wins ties).
 */
export function searchClipRatio(err: (ratio: number) => number, ratios: ArrayLike<number> = MSE_RATIOS): number {
  let best = 1, bestErr = Infinity;
  for (let k = 0; k < ratios.length; k++) {
    const r = ratios[k]!;
    const e = err(r);
    if (e < bestErr) { bestErr = e; best = r; }
  }
  return best;
}

/** Histogram of |x| over [0, maxAbs] with `bins` equal bins (the last bin closed). */
export function absHistogram(values: ArrayLike<number>, bins: number, maxAbs: number, n = values.length): Float64Array {
  const h = new Float64Array(bins);
  if (!(maxAbs > 0)) { h[0] = n; return h; }
  const k = bins / maxAbs;
  for (let i = 0; i < n; i++) {
    const b = Math.floor(Math.abs(values[i]!) * k);
    h[b < bins ? b : bins - 1]! += 1;
  }
  return h;
}

/** MXNet/TensorRT smoothing: move eps mass onto empty bins so KL stays finite. */
function smooth(p: Float64Array, eps = 1e-4): boolean {
  let nz = 0, zeros = 0;
  for (let i = 0; i < p.length; i++) (p[i]! === 0 ? zeros++ : nz++);
  if (nz === 0) return false;
  const take = (eps * zeros) / nz;
  for (let i = 0; i < p.length; i++) p[i] = p[i]! === 0 ? eps : p[i]! - take;
  return true;
}

function kl(p: Float64Array, q: Float64Array): number {
  let sp = 0, sq = 0;
  for (let i = 0; i < p.length; i++) { sp += p[i]!; sq += q[i]!; }
  let d = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i]! / sp;
    if (pi > 0) d += pi * Math.log(pi / (q[i]! / sq));
  }
  return d;
}

/**
 * KL-divergence calibration on an |x| histogram (bins of width binWidth starting at 0).
 * For each candidate threshold T = i·binWidth, P is the histogram clipped at T (outlier mass folded into
 * the last kept bin) and Q is P's first i bins re-expressed on the quantization grid: bins whose centers
 * quantize to the same level share that level's mass evenly over their non-empty bins. `level(v, T)`
 * returns a key for the level |v| lands on when the clip is T (e.g. round(v / (T/qmax)) for an int grid).
 * Returns the threshold with the smallest KL(P‖Q). `minBins` is the smallest candidate (the number of
 * levels, as TensorRT's 128 for int8).
 */
export function klThreshold(hist: Float64Array, binWidth: number, level: (v: number, threshold: number) => number, minBins: number, maxCandidates = 512): number {
  const B = hist.length;
  let total = 0, lastNonZero = 0;
  for (let i = 0; i < B; i++) if (hist[i]! > 0) { total += hist[i]!; lastNonZero = i; }
  if (total === 0 || !(binWidth > 0)) return 0;
  const start = Math.max(1, Math.min(B, minBins));
  const stride = Math.max(1, Math.ceil((B - start + 1) / maxCandidates));
  const suffix = new Float64Array(B + 1);
  for (let i = B - 1; i >= 0; i--) suffix[i] = suffix[i + 1]! + hist[i]!;
  let bestT = B * binWidth, best = Infinity;
  const p = new Float64Array(B), q = new Float64Array(B);
  const keys = new Float64Array(B);
  for (let i = start; i <= B; i += stride) {
    const T = i * binWidth;
    const pi = p.subarray(0, i), qi = q.subarray(0, i);
    for (let j = 0; j < i; j++) pi[j] = hist[j]!;
    pi[i - 1]! += suffix[i]!;
    for (let j = 0; j < i; j++) keys[j] = level((j + 0.5) * binWidth, T);
    // bins with equal keys are contiguous (quantization is monotone in |v|): walk runs
    let j = 0;
    while (j < i) {
      let k = j, mass = 0, nonEmpty = 0;
      while (k < i && keys[k] === keys[j]) { mass += hist[k]!; if (hist[k]! > 0) nonEmpty++; k++; }
      for (let t = j; t < k; t++) qi[t] = hist[t]! > 0 ? mass / nonEmpty : 0;
      j = k;
    }
    if (!smooth(pi) || !smooth(qi)) continue;
    const d = kl(pi, qi);
    if (d < best) { best = d; bestT = T; }
    if (i > lastNonZero + 1) break; // larger thresholds only add empty bins
  }
  return bestT;
}

/** Validates a percentile parameter. */
export function checkPercentile(p: number): void {
  if (!(p > 0 && p <= 100)) throw new QuantlabError("E_ARG", `percentile must be in (0, 100], got ${p}`);
}
