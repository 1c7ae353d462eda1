/**
 * Non-uniform level sets: NF4 and codebooks with arbitrary (learned) levels, plus a 1-D Lloyd/k-means
 * helper that fits levels to data (weighted, deterministic).
 *
 * Codes are indices into the ascending level list, so neighbours alternate code parity and a tie between
 * two levels goes to the even index (LevelSet). Scaling (absmax per group for NF4) is the Spec's job.
 */
import { QuantlabError } from "../core/errors.js";
import { FORMAT_IDS } from "./ids.js";
import { LevelFormat } from "./round.js";
import type { Format, FormatFamily } from "./types.js";

/**
 * NF4 (4-bit NormalFloat) levels, QLoRA: Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized
 * LLMs", Appendix E; the float32 constants of bitsandbytes (`csrc/kernels.cu` dDequantizeNF4, and
 * `functional.py` create_normal_map(offset=0.9677083)). Index = 4-bit code: bitsandbytes' code order.
 * They are normal quantiles Φ⁻¹ normalized to [−1, 1] with an exact zero (8 positive, 7 negative levels);
 * test/formats/codebook.test.ts recomputes them from Φ⁻¹.
 */
export const NF4_LEVELS: readonly number[] = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
];

/** Format over a sorted list of distinct finite levels; code i ↔ levels[i] (a LevelFormat over codes 0..n−1). */
export class CodebookFormat extends LevelFormat {
  readonly levels: Float64Array;

  constructor(id: number, name: string, levels: ArrayLike<number>, description: string, family: FormatFamily = "codebook") {
    const lv = checkedLevels(name, levels);
    super(id, name, family, lv.length <= 1 ? 0 : Math.ceil(Math.log2(lv.length)), Array.from(lv, (v, i) => [i, v] as const), description);
    this.levels = lv;
  }

  override values(): Float64Array {
    return this.levels;
  }
}

function checkedLevels(name: string, levels: ArrayLike<number>): Float64Array {
  const lv = Float64Array.from(levels);
  if (lv.length < 1 || lv.length > 65536) throw new QuantlabError("E_SPEC", `codebook ${name}: needs 1..65536 levels, got ${lv.length}`);
  for (let i = 0; i < lv.length; i++) {
    if (!Number.isFinite(lv[i]!)) throw new QuantlabError("E_VALUE", `codebook ${name}: level ${i} is ${lv[i]}`);
    if (i > 0 && !(lv[i]! > lv[i - 1]!)) throw new QuantlabError("E_SPEC", `codebook ${name}: levels must be strictly increasing (level ${i} = ${lv[i]} after ${lv[i - 1]})`);
  }
  return lv;
}

/**
 * A codebook format from learned levels (sorted and deduplicated here). `bits` = ⌈log2(#levels)⌉.
 * Example: `codebookFormat(lloyd1d(weights, 16))` is a 4-bit k-means codebook.
 */
export function codebookFormat(levels: ArrayLike<number>, name = "codebook", id = -1): CodebookFormat {
  const sorted = [...new Set(Array.from(levels, (v) => (v === 0 ? 0 : v)))].sort((a, b) => a - b);
  return new CodebookFormat(id, name, sorted, `learned codebook with ${sorted.length} levels`);
}

export interface LloydOptions {
  /** maximum iterations (default 100) */
  iters?: number;
  /** per-sample importance weights (e.g. Hessian diagonal), default 1 */
  weights?: ArrayLike<number>;
  /** initial levels; default: k quantiles of the data (deterministic) */
  init?: ArrayLike<number>;
  /** stop when no level moves more than tol·range (default 1e-9) */
  tol?: number;
}

/**
 * 1-D weighted Lloyd / k-means: levels minimizing Σ wᵢ (xᵢ − level(xᵢ))². Sorts the data once, then each
 * iteration assigns by midpoints (1-D Voronoi cells are intervals) and moves each level to its cell's
 * weighted mean, using prefix sums, so an iteration costs O(k log n). Returns ascending levels; an empty
 * cell's level is moved to split the cell with the largest error. NaN/Inf in data is an E_VALUE error.
 */
export function lloyd1d(data: ArrayLike<number>, k: number, o: LloydOptions = {}): Float64Array {
  const n = data.length;
  if (!Number.isInteger(k) || k < 1) throw new QuantlabError("E_ARG", `lloyd1d: k must be a positive integer, got ${k}`);
  if (n === 0) throw new QuantlabError("E_ARG", "lloyd1d: no data");
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(data[i]!)) throw new QuantlabError("E_VALUE", `lloyd1d: data[${i}] is ${data[i]}`);
    idx[i] = i;
  }
  idx.sort((a, b) => data[a]! - data[b]!);
  const xs = new Float64Array(n);
  const ws = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    xs[i] = data[idx[i]!]!;
    ws[i] = o.weights ? o.weights[idx[i]!]! : 1;
    if (!(ws[i]! >= 0)) throw new QuantlabError("E_VALUE", `lloyd1d: weight ${idx[i]} is ${ws[i]} (must be ≥ 0)`);
  }
  // prefix sums of w, w·x, w·x² (index i = sum of the first i elements)
  const W = new Float64Array(n + 1);
  const WX = new Float64Array(n + 1);
  const WXX = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    W[i + 1] = W[i]! + ws[i]!;
    WX[i + 1] = WX[i]! + ws[i]! * xs[i]!;
    WXX[i + 1] = WXX[i]! + ws[i]! * xs[i]! * xs[i]!;
  }
  const lo = xs[0]!;
  const hi = xs[n - 1]!;
  const range = hi - lo;
  let levels = new Float64Array(k);
  if (o.init) {
    if (o.init.length !== k) throw new QuantlabError("E_ARG", `lloyd1d: init has ${o.init.length} levels, k = ${k}`);
    levels = Float64Array.from(o.init).sort();
  } else {
    for (let j = 0; j < k; j++) levels[j] = xs[Math.min(n - 1, Math.floor(((j + 0.5) / k) * n))]!;
  }
  // first index with xs[i] > t (upper bound)
  const upper = (t: number): number => {
    let a = 0;
    let b = n;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (xs[m]! <= t) a = m + 1;
      else b = m;
    }
    return a;
  };
  const bounds = new Uint32Array(k + 1);
  const iters = o.iters ?? 100;
  const tol = (o.tol ?? 1e-9) * (range || 1);
  for (let it = 0; it < iters; it++) {
    levels.sort();
    bounds[0] = 0;
    bounds[k] = n;
    for (let j = 1; j < k; j++) bounds[j] = Math.max(bounds[j - 1]!, upper((levels[j - 1]! + levels[j]!) / 2));
    let moved = 0;
    let worst = -1;
    let worstErr = -1;
    const empty: number[] = [];
    for (let j = 0; j < k; j++) {
      const a = bounds[j]!;
      const b = bounds[j + 1]!;
      const w = W[b]! - W[a]!;
      if (b === a || w === 0) {
        empty.push(j);
        continue;
      }
      const mean = (WX[b]! - WX[a]!) / w;
      const err = WXX[b]! - WXX[a]! - mean * (WX[b]! - WX[a]!);
      if (err > worstErr && b - a > 1) (worstErr = err), (worst = j);
      moved = Math.max(moved, Math.abs(mean - levels[j]!));
      levels[j] = mean;
    }
    for (const j of empty) {
      if (worst < 0) break;
      // split the worst cell: put the empty level at its upper half's mean
      const a = bounds[worst]!;
      const b = bounds[worst + 1]!;
      const mid = (a + b) >>> 1;
      const w = W[b]! - W[mid]!;
      levels[j] = w > 0 ? (WX[b]! - WX[mid]!) / w : xs[b - 1]!;
      moved = Infinity;
      worstErr = -1;
      worst = -1;
    }
    if (moved <= tol) break;
  }
  levels.sort();
  return levels;
}

export const codebookFormats = {
  nf4: new CodebookFormat(FORMAT_IDS.nf4, "nf4", NF4_LEVELS, "NF4 (QLoRA NormalFloat): 16 normal-quantile levels in [−1, 1] with exact 0, for absmax-scaled groups"),
} satisfies Record<string, Format>;
