/**
 * AWQ, activation-aware weight quantization (Lin et al. 2023, "AWQ: Activation-aware Weight
 * Quantization for LLM Compression and Acceleration", arXiv:2306.00978).
 *
 * Input channels that carry large activations matter more, so they are scaled up before quantizing
 * (their relative rounding error shrinks) and the inverse scale is folded into the operation that
 * produces the input (the RMSNorm weight, or the previous linear's rows): W·x = (W·diag(s))·(x/s).
 * The scale is s = mean|x|^α, normalized by √(max s · min s), with α found by grid search on the
 * layers' output error (the authors' llm-awq `auto_scale.py`); then a per-group clipping range is
 * searched on the same output error (`auto_clip.py`: max |w| shrunk by 1 − i/20, i < 10).
 *
 * The output error of a candidate Ŵ is computed from the Gram matrix G = XᵀX instead of the
 * activations: ‖X Wᵀ − X Ŵᵀ‖² = Σ_r (w_r − ŵ_r)ᵀ G (w_r − ŵ_r), identical and independent of the
 * number of calibration tokens.
 */
import { QuantlabError } from "../core/errors.js";
import { quadForm } from "./linalg.js";
import { type GroupQuantizer, groupsPerRow, groupWidth } from "./quantizer.js";
import { checkMatrix, rtnQuantize } from "./rtn.js";
import { scaleColumnsInPlace } from "./stats.js";

/** One linear layer reading the shared input (e.g. q, k, v after attn_norm; gate, up after ffn_norm). */
export interface AwqLinear {
  /** (rows, cols) */
  w: ArrayLike<number>;
  rows: number;
}

export interface AwqStats {
  /** mean |x_j| over calibration tokens, (cols) */
  meanAbs: ArrayLike<number>;
  /** XᵀX over the same tokens, (cols, cols) */
  gram: Float64Array;
  nTokens: number;
}

export interface AwqOptions {
  /** number of α grid points, α_i = i/(grid−1) covering [0, 1] (llm-awq uses i/grid, i < grid) */
  grid?: number;
  /** run the weight clipping search after scaling (default true) */
  clip?: boolean;
  /** clipping candidates: max|w| · (1 − i/clipGrid) for i < maxShrink·clipGrid (llm-awq: 20, 0.5) */
  clipGrid?: number;
  maxShrink?: number;
  /** name for error messages */
  name?: string;
}

export interface AwqScaleSearch {
  /** chosen per-input-channel scales s (cols): quantize W·diag(s), fold 1/s into the producer */
  scales: Float64Array;
  alpha: number;
  /** candidate α values and the output error (mean squared, per output element) of each */
  alphas: Float64Array;
  losses: Float64Array;
}

export interface AwqResult extends AwqScaleSearch {
  /** per linear: W·diag(s), clipped, (rows, cols) — quantize these (RTN, GPTQ …) with the same quantizer */
  weights: Float32Array[];
  /** per linear: clipping bound chosen for each (row, group), (rows · nGroups) */
  clipMax: Float32Array[];
}

/**
 * One quantizer for every linear of a site, or one per linear (a GGUF preset's mix may store q/k and v,
 * or gate and up, in different ggml types: each linear's error is measured in its own format).
 */
function quantizerOf(q: GroupQuantizer<unknown> | readonly GroupQuantizer<unknown>[], n: number, name?: string): (k: number) => GroupQuantizer<unknown> {
  if (!Array.isArray(q)) return () => q as GroupQuantizer<unknown>;
  const list = q as readonly GroupQuantizer<unknown>[];
  if (list.length !== n) throw new QuantlabError("E_ARG", `awq ${name ?? "layer"}: ${list.length} quantizers for ${n} linears`);
  return (k) => list[k]!;
}

/** s = m^α, clamped at 1e-4, divided by √(max s · min s) (llm-awq normalization). */
export function awqScales(meanAbs: ArrayLike<number>, alpha: number): Float64Array {
  const n = meanAbs.length;
  const s = new Float64Array(n);
  let mx = 0;
  let mn = Infinity;
  for (let j = 0; j < n; j++) {
    const v = Math.max(Math.pow(meanAbs[j]!, alpha), 1e-4);
    s[j] = v;
    if (v > mx) mx = v;
    if (v < mn) mn = v;
  }
  const norm = Math.sqrt(mx * mn);
  for (let j = 0; j < n; j++) s[j]! /= norm;
  return s;
}

function checkInputs(linears: readonly AwqLinear[], stats: AwqStats, cols: number, what: string): void {
  if (linears.length === 0) throw new QuantlabError("E_ARG", `${what}: no linear layers given`);
  for (const l of linears) checkMatrix(l.w, l.rows, cols, what);
  if (stats.meanAbs.length !== cols || stats.gram.length !== cols * cols) {
    throw new QuantlabError("E_ARG", `${what}: activation statistics are for width ${stats.meanAbs.length}, weights have ${cols} columns`);
  }
  if (!(stats.nTokens > 0)) throw new QuantlabError("E_ARG", `${what}: no calibration tokens`);
}

/** Mean squared output error of replacing each linear's W by Ŵ, from the Gram matrix. */
export function outputErrorFromGram(linears: readonly AwqLinear[], approx: readonly ArrayLike<number>[], cols: number, stats: AwqStats): number {
  let total = 0;
  let outputs = 0;
  const d = new Float64Array(cols);
  linears.forEach((l, k) => {
    const a = approx[k]!;
    for (let r = 0; r < l.rows; r++) {
      for (let c = 0; c < cols; c++) d[c] = l.w[r * cols + c]! - a[r * cols + c]!;
      total += quadForm(stats.gram, cols, d);
    }
    outputs += l.rows;
  });
  return total / (outputs * stats.nTokens);
}

/** Fake-quantizes W·diag(s) with the quantizer and maps back: fq(W·s)/s, (rows, cols). */
export function scaledFakeQuant<P>(w: ArrayLike<number>, rows: number, cols: number, s: ArrayLike<number>, quantizer: GroupQuantizer<P>): Float32Array {
  const ws = Float32Array.from(w as ArrayLike<number>);
  scaleColumnsInPlace(ws, rows, cols, s);
  const q = rtnQuantize(ws, rows, cols, quantizer).q;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) q[r * cols + c]! /= s[c]!;
  return q;
}

/** Grid search of α: the scales minimizing the output error of RTN(W·s)/s over all `linears`. */
export function awqSearchScales<P>(
  linears: readonly AwqLinear[],
  cols: number,
  stats: AwqStats,
  quantizer: GroupQuantizer<P> | readonly GroupQuantizer<unknown>[],
  opts: AwqOptions = {},
): AwqScaleSearch {
  const qOf = quantizerOf(quantizer, linears.length, opts.name);
  const what = `awq ${opts.name ?? "layer"}`;
  checkInputs(linears, stats, cols, what);
  const grid = opts.grid ?? 20;
  if (!Number.isInteger(grid) || grid < 1) throw new QuantlabError("E_ARG", `${what}: grid must be a positive integer, got ${grid}`);
  const alphas = new Float64Array(grid);
  const losses = new Float64Array(grid);
  let best = 0;
  for (let i = 0; i < grid; i++) {
    const alpha = grid === 1 ? 0 : i / (grid - 1);
    alphas[i] = alpha;
    const s = awqScales(stats.meanAbs, alpha);
    const approx = linears.map((l, k) => scaledFakeQuant(l.w, l.rows, cols, s, qOf(k)));
    losses[i] = outputErrorFromGram(linears, approx, cols, stats);
    if (losses[i]! < losses[best]!) best = i;
  }
  return { scales: awqScales(stats.meanAbs, alphas[best]!), alpha: alphas[best]!, alphas, losses };
}

/**
 * Clipping search on a (rows, cols) weight feeding inputs with Gram matrix `gram`: for each (row,
 * group), the bound m = max|w| · (1 − i/clipGrid) minimizing (w − fq(clamp(w, ±m)))ᵀ G_gg (…), where
 * G_gg is the group's diagonal block (llm-awq scores each group's partial output, as here).
 * Returns the clamped weights and the bounds.
 */
export function awqClipSearch<P>(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  gram: Float64Array,
  quantizer: GroupQuantizer<P>,
  opts: { clipGrid?: number; maxShrink?: number } = {},
): { w: Float32Array; clipMax: Float32Array } {
  const clipGrid = opts.clipGrid ?? 20;
  const maxShrink = opts.maxShrink ?? 0.5;
  const nCand = Math.max(1, Math.floor(maxShrink * clipGrid));
  const gw = groupWidth(cols, quantizer.groupSize);
  const nGroups = groupsPerRow(cols, quantizer.groupSize);
  const out = Float32Array.from(w as ArrayLike<number>);
  const clipMax = new Float32Array(rows * nGroups);
  const seg = new Float64Array(gw);
  const clamped = new Float64Array(gw);
  const d = new Float64Array(gw);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < nGroups; g++) {
      const c0 = g * gw;
      const len = Math.min(gw, cols - c0);
      let amax = 0;
      for (let i = 0; i < len; i++) {
        seg[i] = w[r * cols + c0 + i]!;
        amax = Math.max(amax, Math.abs(seg[i]!));
      }
      let bestErr = Infinity;
      let bestM = amax;
      for (let k = 0; k < nCand; k++) {
        const m = amax * (1 - k / clipGrid);
        for (let i = 0; i < len; i++) clamped[i] = Math.min(m, Math.max(-m, seg[i]!));
        const cs = clamped.subarray(0, len);
        const p = quantizer.fit(cs);
        for (let i = 0; i < len; i++) d[i] = seg[i]! - quantizer.fakeQuant(cs[i]!, p, i);
        const err = quadForm(gram, cols, d, c0, len);
        if (err < bestErr) {
          bestErr = err;
          bestM = m;
        }
      }
      clipMax[r * nGroups + g] = bestM;
      for (let i = 0; i < len; i++) out[r * cols + c0 + i] = Math.min(bestM, Math.max(-bestM, seg[i]!));
    }
  }
  return { w: out, clipMax };
}

/**
 * Full AWQ for a set of linears sharing one input: scale search, then clipping on the scaled weights
 * (whose inputs are x/s, so the Gram matrix becomes S⁻¹GS⁻¹). The float function is unchanged once
 * the caller folds 1/s into the producer of x (`divideNormInPlace` / `divideRowsInPlace` in stats.ts).
 */
export function awqQuantizePrep<P>(
  linears: readonly AwqLinear[],
  cols: number,
  stats: AwqStats,
  quantizer: GroupQuantizer<P> | readonly GroupQuantizer<unknown>[],
  opts: AwqOptions = {},
): AwqResult {
  const qOf = quantizerOf(quantizer, linears.length, opts.name);
  const search = awqSearchScales(linears, cols, stats, quantizer, opts);
  const s = search.scales;
  const weights: Float32Array[] = [];
  const clipMax: Float32Array[] = [];
  let gramScaled: Float64Array | undefined;
  if (opts.clip ?? true) {
    gramScaled = new Float64Array(stats.gram.length);
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) gramScaled[i * cols + j] = stats.gram[i * cols + j]! / (s[i]! * s[j]!);
  }
  for (const [k, l] of linears.entries()) {
    const ws = Float32Array.from(l.w as ArrayLike<number>);
    scaleColumnsInPlace(ws, l.rows, cols, s);
    if (gramScaled) {
      const c = awqClipSearch(ws, l.rows, cols, gramScaled, qOf(k), opts);
      weights.push(c.w);
      clipMax.push(c.clipMax);
    } else {
      weights.push(ws);
      clipMax.push(new Float32Array(0));
    }
  }
  return { ...search, weights, clipMax };
}
