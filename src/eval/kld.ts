/**
 * KL divergence between a base and another model on the same windows (windows.ts), position by
 * position: KLD(P_base ‖ P_other) = Σ_v p_b(v)·(log p_b(v) − log p_o(v)), log-softmax in float64;
 * top-1 agreement (same argmax); |Δp| of the correct token; and both perplexities. The base can be a
 * live model or saved logits (logits-file.ts). Both sides run chunk by chunk in step, so memory
 * stays at one chunk of logits per side.
 */
import { QuantlabError } from "../core/errors.js";
import type { Progress } from "../core/progress.js";
import { noProgress, yieldToEventLoop } from "../core/progress.js";
import type { CausalLM } from "../model/llama.js";
import { argmax } from "../model/sampler.js";
import { logSumExp, planWindows, scoredTokens, windowInputs } from "./windows.js";
import { logitsProblem, nonFiniteLogits } from "./perplexity.js";

/** Something that yields logits for the positions of a window, in order. */
export interface LogitsSource {
  readonly vocabSize: number;
  /** most rows per call */
  readonly maxRows: number;
  /** logits (n, vocab) of positions [pos, pos+n) of the window whose inputs are `inputs`; pos 0 starts a window */
  rows(inputs: Int32Array, pos: number, n: number): Promise<Float32Array>;
}

/** A live model as a LogitsSource. */
export class ModelLogits implements LogitsSource {
  private buf: Float32Array | undefined;
  constructor(readonly llama: CausalLM) {}
  get vocabSize(): number {
    return this.llama.config.vocabSize;
  }
  get maxRows(): number {
    return this.llama.maxBatch;
  }
  async rows(inputs: Int32Array, pos: number, n: number): Promise<Float32Array> {
    if (pos === 0) this.llama.reset();
    const v = this.vocabSize;
    const buf = (this.buf ??= new Float32Array(this.maxRows * v));
    let filled = 0;
    this.llama.prefill(inputs.subarray(pos, pos + n), pos, (logits, row, m) => {
      buf.set(logits.subarray(0, m * v), row * v);
      filled += m;
    });
    if (filled !== n) throw new QuantlabError("E_INTERNAL", `ModelLogits: ${filled} rows for ${n}`);
    return buf.subarray(0, n * v);
  }
}

export interface KldOptions {
  ctx: number;
  maxTokens?: number;
  bosId: number;
  progress?: Progress;
  /** names of the base and the other model in errors (their paths) */
  names?: [string, string];
}

export interface KldResult {
  /** mean KLD(P_base ‖ P_other), nats */
  meanKld: number;
  medianKld: number;
  p99Kld: number;
  maxKld: number;
  /** fraction of positions where both argmaxes agree */
  top1: number;
  /** mean |p_base(target) − p_other(target)| */
  meanAbsDeltaP: number;
  /** root mean square of the same */
  rmsDeltaP: number;
  pplBase: number;
  pplOther: number;
  tokens: number;
  windows: number;
  ctx: number;
  seconds: number;
}

export async function kld(base: LogitsSource, other: LogitsSource, tokens: ArrayLike<number>, opts: KldOptions): Promise<KldResult> {
  const v = base.vocabSize;
  if (other.vocabSize !== v) throw new QuantlabError("E_ARG", `kld: the models have different vocabularies (${v} vs ${other.vocabSize} tokens)`);
  const plan = planWindows(tokens.length, opts.ctx, opts.maxTokens);
  if (plan.length === 0) throw new QuantlabError("E_ARG", "kld: the text encodes to no tokens");
  const total = scoredTokens(plan);
  const klds = new Float64Array(total);
  const progress = opts.progress ?? noProgress;
  const chunk = Math.max(1, Math.min(base.maxRows, other.maxRows));
  let k = 0;
  let agree = 0;
  let sumDp = 0;
  let sumDp2 = 0;
  let nllB = 0;
  let nllO = 0;
  const t0 = Date.now();
  progress.start(total, "kld");
  for (const [wi, w] of plan.entries()) {
    const inputs = windowInputs(tokens, w, opts.bosId);
    for (let pos = 0; pos < w.length; pos += chunk) {
      const n = Math.min(chunk, w.length - pos);
      const lb = await base.rows(inputs, pos, n);
      const lo = await other.rows(inputs, pos, n);
      for (let i = 0; i < n; i++) {
        const o = i * v;
        const target = tokens[w.start + pos + i]!;
        const lseB = logSumExp(lb, o, v);
        const lseO = logSumExp(lo, o, v);
        // NaN/Inf logits make every mean NaN: stop at the first position that has them, naming the model
        for (const [side, l, lse] of [[0, lb, lseB], [1, lo, lseO]] as const) {
          if (!Number.isFinite(lse - l[o + target]!)) nonFiniteLogits(opts.names?.[side] ?? (side === 0 ? "base" : "other"), wi, pos + i, w.start + pos + i, logitsProblem(l, o, v));
        }
        let d = 0;
        for (let j = 0; j < v; j++) {
          const lpb = lb[o + j]! - lseB;
          d += Math.exp(lpb) * (lpb - (lo[o + j]! - lseO));
        }
        klds[k++] = Math.max(0, d); // tiny negative values are rounding
        if (argmax(lb.subarray(o, o + v)) === argmax(lo.subarray(o, o + v))) agree++;
        const dp = Math.abs(Math.exp(lb[o + target]! - lseB) - Math.exp(lo[o + target]! - lseO));
        sumDp += dp;
        sumDp2 += dp * dp;
        nllB += lseB - lb[o + target]!;
        nllO += lseO - lo[o + target]!;
      }
      progress.tick(n);
    }
    await yieldToEventLoop(); // a signal handler or a UI gets its turn between windows
  }
  progress.done();
  let sum = 0;
  for (let i = 0; i < total; i++) sum += klds[i]!;
  const sorted = Float64Array.from(klds).sort();
  const q = (p: number) => sorted[Math.min(total - 1, Math.floor(p * (total - 1) + 0.5))]!;
  return {
    meanKld: sum / total,
    medianKld: q(0.5),
    p99Kld: q(0.99),
    maxKld: sorted[total - 1]!,
    top1: agree / total,
    meanAbsDeltaP: sumDp / total,
    rmsDeltaP: Math.sqrt(sumDp2 / total),
    pplBase: Math.exp(nllB / total),
    pplOther: Math.exp(nllO / total),
    tokens: total,
    windows: plan.length,
    ctx: opts.ctx,
    seconds: (Date.now() - t0) / 1000,
  };
}
