/**
 * GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for
 * Generative Pre-trained Transformers", arXiv:2210.17323). Quantizes a linear layer's weight column
 * by column (input features), and after each column spreads its rounding error over the columns not yet
 * quantized with the optimal-brain-quantizer update
 *     δW[:, F] = −(w_q − quant(w_q)) / [H_F⁻¹]_qq · [H_F⁻¹]_{q, F}
 * where H = 2XXᵀ/N is the Hessian of the layer's squared output error and F the columns left.
 * The paper's three tricks are all here: rows of the upper Cholesky factor of H⁻¹ give every
 * [H_F⁻¹]_{q,:}/√[H_F⁻¹]_qq at once (Algorithm 1), updates are applied lazily per block of 128
 * columns, and dampening (percdamp · mean diag H) keeps H⁻¹ well conditioned. Act-order (columns by
 * descending diag H) and static groups follow the authors' reference implementation (gptq.py,
 * `--act-order --static-groups`).
 */
import { QuantlabError } from "../core/errors.js";
import { addGram, lazyUpdateRef, upperCholeskyOfInverseInPlace } from "./linalg.js";
import type { LinalgKernels } from "../kernels/types.js";

import { type GroupQuantizer, groupsPerRow, groupWidth } from "./quantizer.js";
import { checkMatrix, type WeightQuantResult } from "./rtn.js";

/** Streams calibration inputs of one linear layer into H = 2/N Σ x xᵀ without keeping them. */
export class HessianAccumulator {
  readonly n: number;
  private readonly sum: Float64Array; // (n, n) Σ x xᵀ (with kernels: the lower triangle until taken)
  private tokens = 0;

  /** with `kernels` (a backend's LinalgKernels) the sum lives in the kernels' memory and is accumulated
   * there; the taken Hessian is then one of their buffers (free it with `kernels.free`) */
  /** `products` (with kernels only): "f64" sums exact f64 products (the reference's Hessian within float64
   * rounding); "f32" takes the kernels' gramAddLowerF32 (f32 products and 256-token f32 panel sums added into
   * f64: twice the SIMD lanes, relative error per panel ≤ γ₆₆ ≈ 3.9·10⁻⁶ of Σ|x_i x_j|) */
  constructor(n: number, private readonly kernels?: LinalgKernels, private readonly products: "f64" | "f32" = "f64") {
    if (products !== "f64" && products !== "f32") throw new QuantlabError("E_ARG", `HessianAccumulator: products must be "f64" or "f32", got ${String(products)}`);
    if (products === "f32" && !kernels) throw new QuantlabError("E_ARG", `HessianAccumulator: products "f32" needs a backend's linalg kernels (the TypeScript path sums f64 products)`);
    if (!Number.isInteger(n) || n <= 0) throw new QuantlabError("E_ARG", `HessianAccumulator: width must be a positive integer, got ${n}`);
    this.n = n;
    this.sum = kernels ? kernels.alloc(n * n) : new Float64Array(n * n);
  }

  /** Adds x (nTok, n) row-major: nTok input vectors of the layer. */
  add(x: ArrayLike<number>, nTok: number): void {
    if (this.tokens < 0) throw new QuantlabError("E_INTERNAL", "HessianAccumulator: add after takeHessian");
    if (x.length !== nTok * this.n) {
      throw new QuantlabError("E_ARG", `HessianAccumulator: got ${x.length} values for ${nTok} tokens of width ${this.n}`);
    }
    if (this.kernels) {
      const xf = x instanceof Float32Array ? x : Float32Array.from(x);
      if (this.products === "f32") this.kernels.gramAddLowerF32(xf, nTok, this.n, this.sum);
      else this.kernels.gramAddLower(xf, nTok, this.n, this.sum);
    } else addGram(x, nTok, this.n, this.sum);
    this.tokens += nTok;
  }

  get nTokens(): number {
    return this.tokens;
  }

  /** H = 2/N Σ x xᵀ computed in the accumulator's own buffer (no copy); the accumulator is spent afterwards. */
  takeHessian(): Float64Array {
    const h = this.sum;
    this.kernels?.mirrorLower(h, this.n);
    const f = this.tokens === 0 ? 0 : 2 / this.tokens;
    for (let i = 0; i < h.length; i++) h[i]! *= f;
    this.tokens = -1;
    return h;
  }

  /** Gives back the kernels' buffer (with kernels; nothing to do without): the accumulator, and a Hessian
   * `takeHessian` returned, must not be used afterwards. */
  dispose(): void {
    if (this.kernels && this.tokens !== -2) this.kernels.free(this.sum);
    this.tokens = -2;
  }

  /** H = 2/N Σ x xᵀ, (n, n), a new plain Float64Array; all zeros before any token. */
  hessian(): Float64Array {
    const h = new Float64Array(this.sum.length);
    if (this.tokens === 0) return h;
    this.kernels?.mirrorLower(this.sum, this.n);
    const f = 2 / this.tokens;
    for (let i = 0; i < h.length; i++) h[i] = this.sum[i]! * f;
    return h;
  }
}

export interface GptqOptions {
  /** columns per lazy-update block (paper: 128) */
  blockSize?: number;
  /** dampening λ = percDamp · mean(diag H) added to the diagonal (reference default 0.01) */
  percDamp?: number;
  /** quantize columns in order of descending diag H ("act-order" / desc_act) */
  actOrder?: boolean;
  /**
   * fit every group's parameters on the original weights before any update, in the original column
   * order (the reference's --static-groups). Default: true with actOrder (so groups stay contiguous
   * runs of columns and the usual storage works), false without (groups are fitted when GPTQ reaches
   * them, on the updated weights, as in the reference).
   */
  staticGroups?: boolean;
  /**
   * use `h` as the working Hessian and overwrite it (with its Cholesky factor): saves the n×n copy,
   * which is what keeps an 8192-wide layer under memory budgets. Default false (h untouched).
   */
  overwriteHessian?: boolean;
  /** phase timings (ms) are added here when given: factor (dampening + Cholesky + inverse), columns */
  timings?: { factorMs: number; columnsMs: number };
  /** float64 kernels for the factorization and the lazy updates (a backend's `linalg()`); default: the
   * TypeScript reference loops. The working copies then live in the kernels' memory. */
  kernels?: LinalgKernels;
  /**
   * arithmetic of the lazy batch updates (with kernels only): "f64" (default; the reference loop's values within
   * float64 rounding, so its codes), or "f32": f32 products and lane sums per 128-column block, subtracted from
   * the f64 W (LinalgKernels.lazyUpdateF32: twice the SIMD lanes; each update within γ₃₆ ≈ 2.1·10⁻⁶ of Σ|e·u|,
   * which moves codes where the rounding of a weight is that close to a tie, and GPTQ carries every moved code
   * into the row's later columns)
   */
  updates?: "f64" | "f32";
  /** tensor name for error messages */
  name?: string;
}

export interface GptqResult<P> extends WeightQuantResult<P> {
  /** Σ over rows and columns of (w − q)² / [H⁻¹]_qq / 2: the layer's proxy loss as the reference reports it */
  loss: number;
  /** column order used: perm[k] = original column quantized k-th */
  perm: Int32Array;
  /** dampening λ actually added (raised ×10 per failed Cholesky) */
  damp: number;
}

/**
 * GPTQ on w (rows, cols) with Hessian h (cols, cols) (from `HessianAccumulator`), targeting any
 * GroupQuantizer. w is not modified; h only with `overwriteHessian`. Memory: the working W (rows·cols
 * f64), the output q (f32) and, unless overwriteHessian (or with act-order), one cols×cols f64.
 */
export function gptqQuantize<P>(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  h: Float64Array,
  quantizer: GroupQuantizer<P>,
  opts: GptqOptions = {},
): GptqResult<P> {
  const name = opts.name ?? "weight";
  checkMatrix(w, rows, cols, `gptq ${name}`);
  if (h.length !== cols * cols) {
    throw new QuantlabError("E_ARG", `gptq ${name}: Hessian has ${h.length} values, expected ${cols}×${cols}`);
  }
  const blockSize = opts.blockSize ?? 128;
  const percDamp = opts.percDamp ?? 0.01;
  const actOrder = opts.actOrder ?? false;
  const staticGroups = opts.staticGroups ?? actOrder;
  if (!(blockSize >= 1)) throw new QuantlabError("E_ARG", `gptq ${name}: blockSize must be ≥ 1, got ${blockSize}`);
  if (!(percDamp >= 0)) throw new QuantlabError("E_ARG", `gptq ${name}: percDamp must be ≥ 0, got ${percDamp}`);

  const updates = opts.updates ?? "f64";
  if (updates !== "f64" && updates !== "f32") throw new QuantlabError("E_ARG", `gptq ${name}: updates must be "f64" or "f32", got ${String(updates)}`);
  if (updates === "f32" && !opts.kernels) throw new QuantlabError("E_ARG", `gptq ${name}: updates "f32" needs a backend's linalg kernels (the TypeScript loop updates in f64)`);
  const gw = groupWidth(cols, quantizer.groupSize);
  const nGroups = groupsPerRow(cols, quantizer.groupSize);
  const tFactor = Date.now();

  // Dead inputs (never active in calibration): H_ii = 0. Their weights cannot matter to the
  // calibration output, so they are zeroed and H_ii set to 1 to keep H invertible (reference gptq.py).
  const dead = new Uint8Array(cols);
  for (let i = 0; i < cols; i++) if (h[i * cols + i] === 0) dead[i] = 1;
  const weightAt = (r: number, c: number): number => {
    const v = w[r * cols + c]!;
    if (!Number.isFinite(v)) throw new QuantlabError("E_VALUE", `gptq ${name}: NaN or Inf in weight at row ${r}, col ${c}`);
    return dead[c] ? 0 : v;
  };

  const params: P[] = new Array(rows * nGroups);
  const groupIndex = new Int32Array(cols);
  const seg = new Float64Array(gw);
  if (staticGroups) {
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < nGroups; g++) {
        const c0 = g * gw;
        const s = seg.subarray(0, Math.min(gw, cols - c0));
        for (let i = 0; i < s.length; i++) s[i] = weightAt(r, c0 + i);
        params[r * nGroups + g] = quantizer.fit(s);
      }
    }
  }

  const perm = new Int32Array(cols);
  for (let i = 0; i < cols; i++) perm[i] = i;
  if (actOrder) {
    // descending diag H; ties keep the original order so results are deterministic
    const d = new Float64Array(cols);
    for (let i = 0; i < cols; i++) d[i] = h[i * cols + i]!;
    const order = Array.from(perm).sort((a, b) => d[b]! - d[a]! || a - b);
    perm.set(order);
  }
  // Working copies in the quantization order: W (rows, cols) and H (cols, cols), which becomes U.
  const K = opts.kernels;
  const allocated: Float64Array[] = [];
  const alloc = (n: number): Float64Array => {
    if (!K) return new Float64Array(n);
    const a = K.alloc(n);
    allocated.push(a);
    return a;
  };
  try {
  const W = alloc(rows * cols);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) W[r * cols + k] = weightAt(r, perm[k]!);
  let H: Float64Array;
  if (actOrder) {
    H = alloc(cols * cols);
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) H[i * cols + j] = h[perm[i]! * cols + perm[j]!]!;
  } else if (opts.overwriteHessian && (!K || K.owns(h))) {
    H = h;
  } else {
    H = alloc(cols * cols);
    H.set(h);
  }
  for (let k = 0; k < cols; k++) if (dead[perm[k]!]) H[k * cols + k] = 1;

  let meanDiag = 0;
  for (let i = 0; i < cols; i++) meanDiag += H[i * cols + i]!;
  meanDiag /= cols;
  let damp = percDamp * meanDiag;
  let added = 0;
  let ok = false;
  for (let attempt = 0; attempt < 6 && !ok; attempt++) {
    for (let i = 0; i < cols; i++) H[i * cols + i]! += damp - added;
    added = damp;
    ok = K ? K.upperCholeskyOfInverseInPlace(H, cols) : upperCholeskyOfInverseInPlace(H, cols); // H restored on failure
    // not positive definite (collinear or tiny calibration set): more dampening, as later GPTQ ports do
    if (!ok) damp = damp > 0 ? damp * 10 : Math.max(1e-8, 0.01 * meanDiag);
  }
  if (!ok) {
    throw new QuantlabError("E_VALUE", `gptq ${name}: Hessian is not positive definite even with dampening ${damp.toExponential(2)}; use more calibration data or a larger percDamp`);
  }
  const U = H; // (cols, cols) upper Cholesky factor of H⁻¹
  const tColumns = Date.now();

  // group of each permuted position and the element index inside that group
  const groupOfPos = new Int32Array(cols);
  const indexInGroup = new Int32Array(cols);
  for (let k = 0; k < cols; k++) {
    const c = staticGroups ? perm[k]! : k;
    groupOfPos[k] = Math.floor(c / gw);
    indexInGroup[k] = c - groupOfPos[k]! * gw;
    groupIndex[perm[k]!] = groupOfPos[k]!;
  }

  /** fits every row's parameters of the dynamic group starting at column col, on the updated W */
  const fitGroups = (col: number): void => {
    const g = col / gw;
    const s = seg.subarray(0, Math.min(gw, cols - col));
    for (let r = 0; r < rows; r++) {
      for (let t = 0; t < s.length; t++) s[t] = W[r * cols + col + t]!;
      params[r * nGroups + g] = quantizer.fit(s);
    }
  };
  const q = new Float32Array(rows * cols); // (rows, cols) original column order
  let loss = 0;
  const bsMax = Math.min(blockSize, cols);
  const err = alloc(rows * bsMax); // (rows, count)
  // with kernels the block is worked on transposed, W1T (count, rows) and E1T (count, rows), so a column
  // is one contiguous run over the rows (the strided column of W costs a TLB miss per row on wide layers)
  const W1T = K ? alloc(rows * bsMax) : undefined;
  const E1T = K ? alloc(rows * bsMax) : undefined;
  const Q1T = K ? new Float32Array(rows * bsMax) : undefined;
  for (let i1 = 0; i1 < cols; ) {
    let i2 = Math.min(i1 + blockSize, cols);
    // Dynamic groups are fitted on fully updated weights: end blocks at group starts so the lazy
    // update of every earlier block has landed when a group begins (the reference fits on W before
    // in-block updates when a group starts mid-block; this is the exact version).
    if (!staticGroups) i2 = Math.min(i2, (Math.floor(i1 / gw) + 1) * gw);
    const count = i2 - i1;
    if (K) {
      // a group can start only at a block's first column (blocks end at group starts), fitted on W
      if (!staticGroups && i1 % gw === 0) fitGroups(i1);
      K.transposeBlock(W, cols, 0, i1, rows, count, W1T!, rows);
      for (let i = 0; i < count; i++) {
        const col = i1 + i;
        const g = groupOfPos[col]!;
        const ig = indexInGroup[col]!;
        const d = U[col * cols + col]!;
        const o = i * rows;
        for (let r = 0; r < rows; r++) {
          const x = W1T![o + r]!;
          const qv = quantizer.fakeQuant(x, params[r * nGroups + g]!, ig);
          Q1T![o + r] = qv;
          const e = (x - qv) / d;
          loss += (e * e) / 2;
          E1T![o + r] = e;
        }
        K.rank1UpdateT(W1T!, rows, rows, i + 1, count, E1T!, o, U, col * cols + i1);
      }
      // the block's codes to q (original column order), in 16 × 16 tiles
      for (let r0 = 0; r0 < rows; r0 += 16) {
        const r1 = Math.min(rows, r0 + 16);
        for (let c0 = 0; c0 < count; c0 += 16) {
          const c1 = Math.min(count, c0 + 16);
          for (let r = r0; r < r1; r++) {
            const ro = r * cols;
            for (let i = c0; i < c1; i++) q[ro + perm[i1 + i]!] = Q1T![i * rows + r]!;
          }
        }
      }
      if (i2 < cols) {
        if (updates === "f32") K.lazyUpdateF32(W, rows, cols, E1T!, count, U, i1, i2);
        else {
          K.transposeBlock(E1T!, rows, 0, 0, count, rows, err, count);
          K.lazyUpdate(W, rows, cols, err, count, U, i1, i2);
        }
      }
      i1 = i2;
      continue;
    }
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      if (!staticGroups && col % gw === 0) fitGroups(col);
      const g = groupOfPos[col]!;
      const ig = indexInGroup[col]!;
      const urow = col * cols;
      const d = U[urow + col]!;
      const orig = perm[col]!;
      for (let r = 0; r < rows; r++) {
        const ro = r * cols;
        const x = W[ro + col]!;
        const qv = quantizer.fakeQuant(x, params[r * nGroups + g]!, ig);
        q[ro + orig] = qv;
        const e = (x - qv) / d;
        loss += (e * e) / 2;
        err[r * count + i] = e;
        if (e !== 0) for (let j = col + 1; j < i2; j++) W[ro + j]! -= e * U[urow + j]!;
      }
    }
    if (i2 < cols) {
      // lazy batch update of the columns after the block: W[:, i2:] −= Err · U[i1:i2, i2:] (one GEMM)
      lazyUpdateRef(W, rows, cols, err, count, U, i1, i2);
    }
    i1 = i2;
  }
  if (opts.timings) {
    opts.timings.factorMs += tColumns - tFactor;
    opts.timings.columnsMs += Date.now() - tColumns;
  }
  return { q, params, nGroups, groupIndex, loss, perm, damp };
  } finally {
    for (const a of allocated) K!.free(a);
  }
}
