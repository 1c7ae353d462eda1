/**
 * Per-input-channel activation statistics of one linear layer, streamed from calibration batches:
 * Σ|x_j|, max|x_j| and optionally the Gram matrix XᵀX. AWQ uses mean|x| (and the Gram matrix to
 * score its grid search), SmoothQuant max|x|, GPTQ the Gram matrix (as H = 2XᵀX/N).
 */
import { QuantlabError } from "../core/errors.js";
import { addGram } from "./linalg.js";

export class ChannelStats {
  readonly n: number;
  readonly absSum: Float64Array; // (n)
  readonly absMax: Float64Array; // (n)
  /** (n, n) Σ x xᵀ, when constructed with gram: true */
  readonly gram: Float64Array | undefined;
  private tokens = 0;

  constructor(n: number, opts: { gram?: boolean } = {}) {
    if (!Number.isInteger(n) || n <= 0) throw new QuantlabError("E_ARG", `ChannelStats: width must be a positive integer, got ${n}`);
    this.n = n;
    this.absSum = new Float64Array(n);
    this.absMax = new Float64Array(n);
    this.gram = opts.gram ? new Float64Array(n * n) : undefined;
  }

  /** Adds x (nTok, n) row-major. */
  add(x: ArrayLike<number>, nTok: number): void {
    const n = this.n;
    if (x.length !== nTok * n) throw new QuantlabError("E_ARG", `ChannelStats: got ${x.length} values for ${nTok} tokens of width ${n}`);
    for (let t = 0; t < nTok; t++) {
      for (let j = 0; j < n; j++) {
        const a = Math.abs(x[t * n + j]!);
        if (!Number.isFinite(a)) throw new QuantlabError("E_VALUE", `ChannelStats: NaN or Inf in activations at token ${t}, channel ${j}`);
        this.absSum[j]! += a;
        if (a > this.absMax[j]!) this.absMax[j] = a;
      }
    }
    if (this.gram) addGram(x, nTok, n, this.gram);
    this.tokens += nTok;
  }

  get nTokens(): number {
    return this.tokens;
  }

  /** mean |x_j| over tokens, (n) */
  meanAbs(): Float64Array {
    const m = new Float64Array(this.n);
    if (this.tokens > 0) for (let j = 0; j < this.n; j++) m[j] = this.absSum[j]! / this.tokens;
    return m;
  }
}

/** Multiplies column j of w (rows, cols) by s[j], in place. */
export function scaleColumnsInPlace(w: Float32Array | Float64Array, rows: number, cols: number, s: ArrayLike<number>): void {
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c]! *= s[c]!;
}

/** Divides row j of w (rows, cols) by s[j], in place: folds 1/s into a linear whose outputs feed the scaled inputs. */
export function divideRowsInPlace(w: Float32Array | Float64Array, rows: number, cols: number, s: ArrayLike<number>): void {
  if (s.length !== rows) throw new QuantlabError("E_ARG", `divideRows: ${s.length} scales for ${rows} rows`);
  for (let r = 0; r < rows; r++) {
    const inv = 1 / s[r]!;
    for (let c = 0; c < cols; c++) w[r * cols + c]! *= inv;
  }
}

/** g[j] /= s[j], in place: folds 1/s into an RMSNorm (or LayerNorm scale) weight. */
export function divideNormInPlace(g: Float32Array | Float64Array, s: ArrayLike<number>): void {
  if (s.length !== g.length) throw new QuantlabError("E_ARG", `divideNorm: ${s.length} scales for a norm of width ${g.length}`);
  for (let j = 0; j < g.length; j++) g[j]! /= s[j]!;
}
