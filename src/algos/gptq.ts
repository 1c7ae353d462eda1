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
import { addGram, upperCholeskyOfInverse } from "./linalg.js";
import { type GroupQuantizer, groupsPerRow, groupWidth } from "./quantizer.js";
import { checkMatrix, type WeightQuantResult } from "./rtn.js";

/** Streams calibration inputs of one linear layer into H = 2/N Σ x xᵀ without keeping them. */
export class HessianAccumulator {
  readonly n: number;
  private readonly sum: Float64Array; // (n, n) Σ x xᵀ
  private tokens = 0;

  constructor(n: number) {
    if (!Number.isInteger(n) || n <= 0) throw new QuantlabError("E_ARG", `HessianAccumulator: width must be a positive integer, got ${n}`);
    this.n = n;
    this.sum = new Float64Array(n * n);
  }

  /** Adds x (nTok, n) row-major: nTok input vectors of the layer. */
  add(x: ArrayLike<number>, nTok: number): void {
    if (x.length !== nTok * this.n) {
      throw new QuantlabError("E_ARG", `HessianAccumulator: got ${x.length} values for ${nTok} tokens of width ${this.n}`);
    }
    addGram(x, nTok, this.n, this.sum);
    this.tokens += nTok;
  }

  get nTokens(): number {
    return this.tokens;
  }

  /** H = 2/N Σ x xᵀ, (n, n); all zeros before any token. */
  hessian(): Float64Array {
    const h = new Float64Array(this.sum.length);
    if (this.tokens === 0) return h;
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
 * GroupQuantizer. Neither input is modified.
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

  const gw = groupWidth(cols, quantizer.groupSize);
  const nGroups = groupsPerRow(cols, quantizer.groupSize);

  const W0 = new Float64Array(rows * cols); // (rows, cols) original order
  for (let i = 0; i < W0.length; i++) {
    const v = w[i]!;
    if (!Number.isFinite(v)) throw new QuantlabError("E_VALUE", `gptq ${name}: NaN or Inf in weight at row ${Math.floor(i / cols)}, col ${i % cols}`);
    W0[i] = v;
  }
  const H0 = new Float64Array(h);
  // Dead inputs (never active in calibration): H_ii = 0. Their weights cannot matter to the
  // calibration output, so they are zeroed and H_ii set to 1 to keep H invertible (reference gptq.py).
  for (let i = 0; i < cols; i++) {
    if (H0[i * cols + i] === 0) {
      H0[i * cols + i] = 1;
      for (let r = 0; r < rows; r++) W0[r * cols + i] = 0;
    }
  }

  const params: P[] = new Array(rows * nGroups);
  const groupIndex = new Int32Array(cols);
  const seg = new Float64Array(gw);
  if (staticGroups) {
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < nGroups; g++) {
        const c0 = g * gw;
        const s = seg.subarray(0, Math.min(gw, cols - c0));
        for (let i = 0; i < s.length; i++) s[i] = W0[r * cols + c0 + i]!;
        params[r * nGroups + g] = quantizer.fit(s);
      }
    }
  }

  const perm = new Int32Array(cols);
  for (let i = 0; i < cols; i++) perm[i] = i;
  if (actOrder) {
    // descending diag H; ties keep the original order so results are deterministic
    const d = new Float64Array(cols);
    for (let i = 0; i < cols; i++) d[i] = H0[i * cols + i]!;
    const order = Array.from(perm).sort((a, b) => d[b]! - d[a]! || a - b);
    perm.set(order);
  }
  // Working copies in the quantization order.
  const W = new Float64Array(rows * cols); // (rows, cols) permuted columns
  const H = new Float64Array(cols * cols); // (cols, cols) permuted
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) W[r * cols + k] = W0[r * cols + perm[k]!]!;
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) H[i * cols + j] = H0[perm[i]! * cols + perm[j]!]!;

  let meanDiag = 0;
  for (let i = 0; i < cols; i++) meanDiag += H[i * cols + i]!;
  meanDiag /= cols;
  let damp = percDamp * meanDiag;
  let U: Float64Array | undefined;
  for (let attempt = 0; attempt < 6; attempt++) {
    const Hd = new Float64Array(H);
    for (let i = 0; i < cols; i++) Hd[i * cols + i]! += damp;
    U = upperCholeskyOfInverse(Hd, cols);
    if (U) break;
    // not positive definite (collinear or tiny calibration set): more dampening, as later GPTQ ports do
    damp = damp > 0 ? damp * 10 : Math.max(1e-8, 0.01 * meanDiag);
  }
  if (!U) {
    throw new QuantlabError("E_VALUE", `gptq ${name}: Hessian is not positive definite even with dampening ${damp.toExponential(2)}; use more calibration data or a larger percDamp`);
  }

  // group of each permuted position and the element index inside that group
  const groupOfPos = new Int32Array(cols);
  const indexInGroup = new Int32Array(cols);
  for (let k = 0; k < cols; k++) {
    const c = staticGroups ? perm[k]! : k;
    groupOfPos[k] = Math.floor(c / gw);
    indexInGroup[k] = c - groupOfPos[k]! * gw;
    groupIndex[perm[k]!] = groupOfPos[k]!;
  }

  const Q = new Float64Array(rows * cols); // (rows, cols) permuted
  let loss = 0;
  for (let i1 = 0; i1 < cols; ) {
    let i2 = Math.min(i1 + blockSize, cols);
    // Dynamic groups are fitted on fully updated weights: end blocks at group starts so the lazy
    // update of every earlier block has landed when a group begins (the reference fits on W before
    // in-block updates when a group starts mid-block; this is the exact version).
    if (!staticGroups) i2 = Math.min(i2, (Math.floor(i1 / gw) + 1) * gw);
    const count = i2 - i1;
    const err = new Float64Array(rows * count); // (rows, count)
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      if (!staticGroups && col % gw === 0) {
        const g = col / gw;
        const s = seg.subarray(0, Math.min(gw, cols - col));
        for (let r = 0; r < rows; r++) {
          for (let t = 0; t < s.length; t++) s[t] = W[r * cols + col + t]!;
          params[r * nGroups + g] = quantizer.fit(s);
        }
      }
      const g = groupOfPos[col]!;
      const ig = indexInGroup[col]!;
      const urow = col * cols;
      const d = U[urow + col]!;
      for (let r = 0; r < rows; r++) {
        const ro = r * cols;
        const x = W[ro + col]!;
        const qv = quantizer.fakeQuant(x, params[r * nGroups + g]!, ig);
        Q[ro + col] = qv;
        const e = (x - qv) / d;
        loss += (e * e) / 2;
        err[r * count + i] = e;
        if (e !== 0) for (let j = col + 1; j < i2; j++) W[ro + j]! -= e * U[urow + j]!;
      }
    }
    if (i2 < cols) {
      // lazy batch update of the columns after the block: W[:, i2:] −= Err · U[i1:i2, i2:]
      for (let r = 0; r < rows; r++) {
        const ro = r * cols;
        for (let k = 0; k < count; k++) {
          const e = err[r * count + k]!;
          if (e === 0) continue;
          const urow = (i1 + k) * cols;
          for (let j = i2; j < cols; j++) W[ro + j]! -= e * U[urow + j]!;
        }
      }
    }
    i1 = i2;
  }

  const q = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) q[r * cols + perm[k]!] = Q[r * cols + k]!;
  return { q, params, nGroups, groupIndex, loss, perm, damp };
}
