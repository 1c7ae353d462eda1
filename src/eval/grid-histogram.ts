/**
 * A tensor's weights on its format's grid: each weight in grid units, u = w / s + z with its own group's
 * stored scale s and zero point z, so every group's values land on the same axis as the format's levels
 * (QuantizedTensor dequantizes x̂ = (level(code) − z)·s, quant/tensor.ts). A histogram of u with the levels
 * drawn on it shows how the weights use the grid: empty levels, crowding near zero, saturated tails.
 * The levels come from the spec's quantizer, which reads the number-format registry (src/formats).
 */
import { QuantlabError } from "../core/errors.js";
import { QTensor } from "../quant/tensor.js";

export interface GridHistogram {
  tensor: string;
  spec: string;
  /** equal-width bins over [lo, hi] in grid units */
  lo: number;
  hi: number;
  counts: number[];
  /** the format's levels inside [lo, hi] (grid units); empty when there are more than `maxLevels` */
  levels: number[];
  /** levels of the format in all (finite ones) */
  totalLevels: number;
  /** levels inside [lo, hi], drawn or not */
  levelsInView: number;
  /** weights beyond the lowest / highest level by more than half a step (clipped by the grid) */
  below: number;
  above: number;
  /** weights stored aside in f16 (outliers=<pct>), not on the grid and not counted */
  outliers: number;
  /** weights counted */
  n: number;
}

/**
 * The histogram of `w` (the float weights, row-major as the QTensor's shape) in `q`'s grid units, with
 * `nBins` bins. Vector-quantized tensors (one code per sub-vector) have no per-weight grid: an error.
 */
export function gridHistogram(name: string, w: Float32Array, q: QTensor, nBins = 80, maxLevels = 256): GridHistogram {
  if (w.length !== q.numel) throw new QuantlabError("E_ARG", `${name}: ${w.length} float weights for a ${q.spec} tensor of ${q.numel}`);
  const quantizer = q.quantizer;
  if (quantizer.dim > 1) throw new QuantlabError("E_UNSUPPORTED", `${name}: ${q.spec} codes sub-vectors of ${quantizer.dim} weights; there is no per-weight grid to draw`);
  const nCodes = 2 ** q.specObject.bits;
  const all: number[] = [];
  for (let c = 0; c < nCodes; c++) {
    const v = quantizer.levelOf(c);
    if (Number.isFinite(v)) all.push(v);
  }
  const grid = [...new Set(all.map((v) => (Object.is(v, -0) ? 0 : v)))].sort((a, b) => a - b);
  const gMin = grid[0] ?? 0, gMax = grid[grid.length - 1] ?? 0;
  // beyond an end level by more than half the step to its neighbour, rounding cannot explain the error: clipped
  const clipLo = gMin - (grid.length > 1 ? (grid[1]! - gMin) / 2 : 0.5);
  const clipHi = gMax + (grid.length > 1 ? (gMax - grid[grid.length - 2]!) / 2 : 0.5);

  const skip = new Uint8Array(w.length);
  const o = q.outliers;
  if (o) for (const i of o.indices) skip[i] = 1;
  const u = new Float32Array(w.length);
  const L = q.layout;
  const idx = new Uint32Array(L.maxGroupLength);
  for (let g = 0; g < L.nGroups; g++) {
    const { scale: s, zero: z } = q.groupParams(g);
    const inv = s === 0 || !Number.isFinite(s) ? 0 : 1 / s;
    const start = L.contiguousStart(g);
    if (start >= 0) {
      for (let i = start, e = start + L.length(g); i < e; i++) u[i] = w[i]! * inv + z;
    } else {
      const k = L.indices(g, idx);
      for (let j = 0; j < k; j++) { const i = idx[j]!; u[i] = w[i]! * inv + z; }
    }
  }
  let lo = Infinity, hi = -Infinity, n = 0, below = 0, above = 0;
  for (let i = 0; i < u.length; i++) {
    if (skip[i]) continue;
    const v = u[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    if (v < clipLo) below++;
    else if (v > clipHi) above++;
    n++;
  }
  if (n === 0) { lo = gMin; hi = gMax; }
  // the grid's ends belong in view when the weights reach near them (integer grids: always, by calibration)
  const span = hi - lo || 1;
  if (gMin < lo && lo - gMin < 0.25 * span) lo = gMin;
  if (gMax > hi && gMax - hi < 0.25 * span) hi = gMax;
  if (hi === lo) { lo -= 0.5; hi += 0.5; }
  const counts = new Array<number>(nBins).fill(0);
  const width = (hi - lo) / nBins;
  for (let i = 0; i < u.length; i++) {
    if (skip[i]) continue;
    const b = Math.min(nBins - 1, Math.max(0, Math.floor((u[i]! - lo) / width)));
    counts[b]!++;
  }
  const inView = grid.filter((v) => v >= lo && v <= hi);
  return {
    tensor: name, spec: q.spec, lo, hi, counts,
    levels: inView.length <= maxLevels ? inView : [],
    totalLevels: grid.length, levelsInView: inView.length,
    below, above, outliers: o ? o.indices.length : 0, n,
  };
}
