/**
 * Clustering quantization: weights replaced by the nearest of k learned levels (a codebook), as in
 * Deep Compression (Han et al. 2016) and the non-uniform codebooks of SqueezeLLM (Kim et al. 2023,
 * which weights the k-means objective by a sensitivity — pass `weights`).
 * - 1-D Lloyd's algorithm with k-means++ seeding (Arthur & Vassilvitskii 2007), seeded, weighted.
 * - Vector quantization: k-means on d-dimensional sub-vectors of each row, one shared codebook.
 * Both are deterministic for a given seed. Empty clusters are re-seeded at the point currently worst
 * served, so k clusters stay in use while there are at least k distinct points.
 */
import { QuantlabError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import type { GroupQuantizer } from "./quantizer.js";
import { checkMatrix } from "./rtn.js";

export interface KMeansOptions {
  k: number;
  seed?: number;
  /** Lloyd iterations at most (stops early when no assignment changes) */
  iters?: number;
  /** per-point weights ≥ 0 (importance); default 1 */
  weights?: ArrayLike<number>;
  /** k-means++ runs (default 1 in d > 1, 0 in 1-D where the DP start is used) */
  nInit?: number;
}

export interface KMeansResult {
  /** (k) for 1-D, (k, d) for vectors; 1-D centroids are sorted ascending */
  centroids: Float64Array;
  /** cluster of each point */
  assign: Int32Array;
  /** Σ weight · squared distance to the assigned centroid */
  sse: number;
  iters: number;
}

/**
 * k-means on n points of dimension d (data (n, d) row-major). With d = 1 the centroids come back
 * sorted. Fewer distinct points than k → the distinct points themselves (remaining centroids repeat).
 */
export function kmeans(data: ArrayLike<number>, n: number, d: number, opts: KMeansOptions): KMeansResult {
  const { k } = opts;
  if (!Number.isInteger(k) || k < 1) throw new QuantlabError("E_ARG", `kmeans: k must be a positive integer, got ${k}`);
  if (!Number.isInteger(n) || n < 1 || data.length !== n * d) throw new QuantlabError("E_ARG", `kmeans: ${data.length} values are not ${n} points of dimension ${d}`);
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) throw new QuantlabError("E_VALUE", `kmeans: NaN or Inf at point ${Math.floor(i / d)}`);
  if (opts.weights && opts.weights.length !== n) throw new QuantlabError("E_ARG", `kmeans: ${opts.weights.length} weights for ${n} points`);
  // Lloyd stops in local minima (15–25% above the optimum is common at k = 8 in 1-D, even from
  // k-means++ or quantile seeds), so in 1-D it starts from the optimal clustering of the values
  // (or of a 4096-bin histogram of them, for more points): exact dynamic programming over sorted
  // values, since optimal 1-D clusters are intervals (Wang & Song 2011, Ckmeans.1d.dp). In d > 1,
  // nInit k-means++ runs (seeds seed, seed+1, …) and the best is kept.
  const seed = opts.seed ?? 0;
  let best: KMeansResult | undefined;
  const runs: { init: "kmeans++" | "dp"; seed: number }[] = [];
  if (d === 1) runs.push({ init: "dp", seed });
  for (let r = 0; r < (opts.nInit ?? (d === 1 ? 0 : 1)); r++) runs.push({ init: "kmeans++", seed: seed + r });
  for (const run of runs) {
    const res = lloyd(data, n, d, opts, run.init, run.seed);
    if (!best || res.sse < best.sse) best = res;
  }
  return best!;
}

function lloyd(data: ArrayLike<number>, n: number, d: number, opts: KMeansOptions, init: "kmeans++" | "dp", seed: number): KMeansResult {
  const { k } = opts;
  const wt = opts.weights;
  const weight = (i: number) => (wt ? wt[i]! : 1);
  const rng = new Rng(seed);
  const iters = opts.iters ?? 100;

  const dist2 = (i: number, c: Float64Array, j: number) => {
    let s = 0;
    for (let t = 0; t < d; t++) {
      const e = data[i * d + t]! - c[j * d + t]!;
      s += e * e;
    }
    return s;
  };

  // k-means++ seeding: first centre drawn ∝ weight, then ∝ weight · D²
  const cent = new Float64Array(k * d);
  const best = new Float64Array(n).fill(Infinity);
  const setCentre = (j: number, i: number) => {
    for (let t = 0; t < d; t++) cent[j * d + t] = data[i * d + t]!;
    for (let p = 0; p < n; p++) best[p] = Math.min(best[p]!, dist2(p, cent, j));
  };
  const draw = (mass: (p: number) => number): number => {
    let total = 0;
    for (let p = 0; p < n; p++) total += mass(p);
    if (!(total > 0)) return -1;
    let u = rng.next() * total;
    for (let p = 0; p < n; p++) {
      u -= mass(p);
      if (u < 0) return p;
    }
    for (let p = n - 1; p >= 0; p--) if (mass(p) > 0) return p;
    return -1;
  };
  if (init === "dp") {
    const c = optimalLevels1d(data, n, k, wt);
    for (let j = 0; j < k; j++) cent[j] = c[j]!;
  } else {
    let first = draw((p) => weight(p));
    if (first < 0) first = 0;
    setCentre(0, first);
    for (let j = 1; j < k; j++) {
      const p = draw((q) => weight(q) * best[q]!);
      // no mass left: every point already coincides with a centre; repeat the first centre
      setCentre(j, p < 0 ? first : p);
    }
  }

  // nearest centre: binary search over sorted centres in 1-D (ties to the lower one), scan otherwise
  const nearest = (p: number): number => {
    if (d === 1) {
      const v = data[p]!;
      let lo = 0;
      let hi = k - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (cent[mid]! <= v) lo = mid;
        else hi = mid;
      }
      return Math.abs(v - cent[lo]!) <= Math.abs(cent[hi]! - v) ? lo : hi;
    }
    let bj = 0;
    let bd = Infinity;
    for (let j = 0; j < k; j++) {
      const dd = dist2(p, cent, j);
      if (dd < bd) {
        bd = dd;
        bj = j;
      }
    }
    return bj;
  };
  const assign = new Int32Array(n).fill(-1);
  const sums = new Float64Array(k * d);
  const mass = new Float64Array(k);
  let it = 0;
  for (; it < iters; it++) {
    let changed = 0;
    if (d === 1) cent.sort();
    for (let p = 0; p < n; p++) {
      const bj = nearest(p);
      const bd = dist2(p, cent, bj);
      if (assign[p] !== bj) {
        assign[p] = bj;
        changed++;
      }
      best[p] = bd;
    }
    if (changed === 0 && it > 0) break;
    sums.fill(0);
    mass.fill(0);
    for (let p = 0; p < n; p++) {
      const j = assign[p]!;
      const w = weight(p);
      mass[j]! += w;
      for (let t = 0; t < d; t++) sums[j * d + t]! += w * data[p * d + t]!;
    }
    for (let j = 0; j < k; j++) {
      if (mass[j]! > 0) {
        for (let t = 0; t < d; t++) cent[j * d + t] = sums[j * d + t]! / mass[j]!;
      } else {
        // empty cluster: move it to the worst-served point (if that point is not already a centre)
        let worst = -1;
        let wd = 0;
        for (let p = 0; p < n; p++) if (weight(p) * best[p]! > wd) { wd = weight(p) * best[p]!; worst = p; }
        if (worst >= 0) {
          for (let t = 0; t < d; t++) cent[j * d + t] = data[worst * d + t]!;
          best[worst] = 0;
        }
      }
    }
  }
  // final assignment against the final centroids
  if (d === 1) cent.sort();
  let sse = 0;
  for (let p = 0; p < n; p++) {
    const bj = nearest(p);
    assign[p] = bj;
    sse += weight(p) * dist2(p, cent, bj);
  }
  return { centroids: cent, assign, sse, iters: it };
}

export interface CodebookQuantResult {
  /** dequantized weights (rows, cols) */
  q: Float32Array;
  /** (nBooks, k · dim): one codebook per tensor, or per row with perChannel */
  codebooks: Float32Array;
  /** codeword index of each element (scalar) or each sub-vector (VQ), row-major */
  indices: Uint16Array;
  k: number;
  /** storage in bits: indices at log2(k) bits each + codebooks in f16 */
  storageBits: number;
}

/** Scalar k-means quantization with 2^bits levels, per tensor or per output channel. */
export function kmeansQuantize(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  opts: { bits: number; perChannel?: boolean; seed?: number; iters?: number; importance?: ArrayLike<number> },
): CodebookQuantResult {
  checkMatrix(w, rows, cols, "kmeans");
  if (!Number.isInteger(opts.bits) || opts.bits < 1 || opts.bits > 12) throw new QuantlabError("E_SPEC", `kmeans: bits must be in 1..12, got ${opts.bits}`);
  const k = 2 ** opts.bits;
  const perChannel = opts.perChannel ?? false;
  const nBooks = perChannel ? rows : 1;
  const span = perChannel ? cols : rows * cols;
  const q = new Float32Array(rows * cols);
  const codebooks = new Float32Array(nBooks * k);
  const indices = new Uint16Array(rows * cols);
  for (let b = 0; b < nBooks; b++) {
    const seg = Float64Array.from({ length: span }, (_, i) => w[b * span + i]!);
    const imp = opts.importance ? Float64Array.from({ length: span }, (_, i) => opts.importance![(b * span + i) % cols]!) : undefined;
    const r = kmeans(seg, span, 1, { k, seed: (opts.seed ?? 0) + b, iters: opts.iters, weights: imp });
    codebooks.set(r.centroids, b * k);
    for (let i = 0; i < span; i++) {
      indices[b * span + i] = r.assign[i]!;
      q[b * span + i] = r.centroids[r.assign[i]!]!;
    }
  }
  return { q, codebooks, indices, k, storageBits: rows * cols * opts.bits + nBooks * k * 16 };
}

/** Vector quantization: rows cut into sub-vectors of `dim`, one codebook of k codewords for the tensor. */
export function vqQuantize(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  opts: { dim: number; k: number; seed?: number; iters?: number },
): CodebookQuantResult {
  checkMatrix(w, rows, cols, "vq");
  const { dim, k } = opts;
  if (!Number.isInteger(dim) || dim < 1 || cols % dim !== 0) throw new QuantlabError("E_SPEC", `vq: sub-vector size ${dim} must divide the row length ${cols}`);
  if (!Number.isInteger(k) || k < 1 || k > 65536) throw new QuantlabError("E_SPEC", `vq: codebook size must be in 1..65536, got ${k}`);
  const n = (rows * cols) / dim;
  const r = kmeans(w, n, dim, { k, seed: opts.seed, iters: opts.iters });
  const q = new Float32Array(rows * cols);
  const indices = new Uint16Array(n);
  for (let p = 0; p < n; p++) {
    const j = r.assign[p]!;
    indices[p] = j;
    for (let t = 0; t < dim; t++) q[p * dim + t] = r.centroids[j * dim + t]!;
  }
  return { q, codebooks: Float32Array.from(r.centroids), indices, k, storageBits: n * Math.ceil(Math.log2(k)) + k * dim * 16 };
}

/**
 * A codebook per group (k-means on the group's values, weighted by `importance` when given) as a
 * GroupQuantizer, so GPTQ can target learned non-uniform levels.
 */
export class KMeansGroupQuantizer implements GroupQuantizer<Float64Array> {
  readonly name: string;
  readonly groupSize: number;
  readonly k: number;
  private readonly seed: number;

  constructor(opts: { bits: number; groupSize?: number; seed?: number }) {
    if (!Number.isInteger(opts.bits) || opts.bits < 1 || opts.bits > 8) throw new QuantlabError("E_SPEC", `kmeans: bits must be in 1..8, got ${opts.bits}`);
    this.k = 2 ** opts.bits;
    this.groupSize = opts.groupSize ?? 0;
    this.seed = opts.seed ?? 0;
    this.name = `kmeans${opts.bits}:${this.groupSize === 0 ? "channel" : `g${this.groupSize}`}`;
  }

  fit(segment: ArrayLike<number>, importance?: ArrayLike<number>): Float64Array {
    return kmeans(segment, segment.length, 1, { k: this.k, seed: this.seed, weights: importance }).centroids;
  }

  fakeQuant(x: number, levels: Float64Array): number {
    // levels sorted: binary search for the nearest
    let lo = 0;
    let hi = levels.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (levels[mid]! <= x) lo = mid;
      else hi = mid;
    }
    return Math.abs(x - levels[lo]!) <= Math.abs(levels[hi]! - x) ? levels[lo]! : levels[hi]!;
  }
}

/** Histogram resolution for the 1-D DP start on large inputs. */
const DP_MAX_POINTS = 4096;

/**
 * Optimal k levels (sorted, length k) for 1-D weighted points by dynamic programming over sorted
 * values: D_c[j] = min_{i<j} D_{c−1}[i] + SSE(i, j), with the monotone split points found by
 * divide and conquer, O(k · m log m). More than DP_MAX_POINTS points are first binned into that many
 * equal-width bins (weight-summed, placed at their weighted mean), so the levels are optimal for the
 * histogram and Lloyd refines them on the exact values.
 */
export function optimalLevels1d(data: ArrayLike<number>, n: number, k: number, weights?: ArrayLike<number>): Float64Array {
  let xs: Float64Array;
  let ws: Float64Array;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    lo = Math.min(lo, data[i]!);
    hi = Math.max(hi, data[i]!);
  }
  if (n <= DP_MAX_POINTS || hi === lo) {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => data[a]! - data[b]!);
    xs = Float64Array.from(order, (i) => data[i]!);
    ws = Float64Array.from(order, (i) => (weights ? weights[i]! : 1));
  } else {
    const m = DP_MAX_POINTS;
    const sw = new Float64Array(m);
    const swx = new Float64Array(m);
    const f = m / (hi - lo);
    for (let i = 0; i < n; i++) {
      const b = Math.min(m - 1, Math.floor((data[i]! - lo) * f));
      const w = weights ? weights[i]! : 1;
      sw[b]! += w;
      swx[b]! += w * data[i]!;
    }
    const keep: number[] = [];
    for (let b = 0; b < m; b++) if (sw[b]! > 0) keep.push(b);
    xs = Float64Array.from(keep, (b) => swx[b]! / sw[b]!);
    ws = Float64Array.from(keep, (b) => sw[b]!);
  }
  const m = xs.length;
  // prefix sums of w, w·x, w·x² over sorted points
  const P = new Float64Array(m + 1);
  const Px = new Float64Array(m + 1);
  const Pxx = new Float64Array(m + 1);
  for (let i = 0; i < m; i++) {
    P[i + 1] = P[i]! + ws[i]!;
    Px[i + 1] = Px[i]! + ws[i]! * xs[i]!;
    Pxx[i + 1] = Pxx[i]! + ws[i]! * xs[i]! * xs[i]!;
  }
  const cost = (i: number, j: number): number => {
    // weighted SSE of points [i, j) around their weighted mean
    const w = P[j]! - P[i]!;
    if (!(w > 0)) return 0;
    const sx = Px[j]! - Px[i]!;
    return Math.max(0, Pxx[j]! - Pxx[i]! - (sx * sx) / w);
  };
  const kk = Math.min(k, m);
  let prev = new Float64Array(m + 1);
  for (let j = 0; j <= m; j++) prev[j] = cost(0, j);
  const splits: Int32Array[] = [];
  for (let c = 2; c <= kk; c++) {
    const cur = new Float64Array(m + 1).fill(Infinity);
    const arg = new Int32Array(m + 1);
    const p = prev;
    // cur[j] for j in [jl, jr], optimal split known to lie in [il, ir]
    const solve = (jl: number, jr: number, il: number, ir: number): void => {
      if (jl > jr) return;
      const j = (jl + jr) >> 1;
      let bv = Infinity;
      let bi = il;
      for (let i = il; i <= Math.min(ir, j - 1); i++) {
        const v = p[i]! + cost(i, j);
        if (v < bv) {
          bv = v;
          bi = i;
        }
      }
      cur[j] = bv;
      arg[j] = bi;
      solve(jl, j - 1, il, bi);
      solve(j + 1, jr, bi, ir);
    };
    solve(c, m, c - 1, m - 1);
    splits.push(arg);
    prev = cur;
  }
  // walk the splits back from the end
  const bounds: number[] = [m];
  let j = m;
  for (let c = kk; c >= 2; c--) {
    j = splits[c - 2]![j]!;
    bounds.push(j);
  }
  bounds.push(0);
  bounds.reverse();
  const levels = new Float64Array(k);
  for (let c = 0; c < kk; c++) {
    const a = bounds[c]!;
    const b = bounds[c + 1]!;
    const w = P[b]! - P[a]!;
    levels[c] = w > 0 ? (Px[b]! - Px[a]!) / w : xs[a]!;
  }
  // fewer distinct points than k: repeat the last level
  for (let c = kk; c < k; c++) levels[c] = levels[kk - 1]!;
  return levels;
}
