/**
 * Perplexity over a token stream with the windowing of windows.ts. NLL per token is
 * logsumexp(logits) − logits[target] in float64 from the float32 logits (as reference.json); window
 * sums and the total are float64. Each window runs as batched prefills (matmul) from a fresh cache.
 */
import { QuantlabError } from "../core/errors.js";
import type { Progress } from "../core/progress.js";
import { noProgress, yieldToEventLoop } from "../core/progress.js";
import type { CausalLM } from "../model/llama.js";
import { logSumExp, planWindows, scoredTokens, windowInputs, type EvalWindow } from "./windows.js";

export interface PerplexityOptions {
  ctx: number;
  /** stop after at least this many scored tokens (whole windows) */
  maxTokens?: number;
  /** the model's BOS id (fed at position 0 of each window) */
  bosId: number;
  progress?: Progress;
  /** sees every scored position's logits (n, vocab) with their targets (n); e.g. to save them */
  onLogits?: (logits: Float32Array, targets: Int32Array, n: number) => void;
  /** the model's name in errors (its path) */
  name?: string;
}

export interface PerplexityResult {
  ppl: number;
  /** mean NLL, nats per token */
  nll: number;
  tokens: number;
  windows: number;
  ctx: number;
  /** NLL sum of each window */
  windowNll: number[];
  seconds: number;
  tokensPerSecond: number;
}

export async function perplexity(llama: CausalLM, tokens: ArrayLike<number>, opts: PerplexityOptions): Promise<PerplexityResult> {
  const { ctx, bosId } = opts;
  if (ctx > llama.capacity) throw new QuantlabError("E_ARG", `ctx ${ctx} is larger than the model's KV cache (${llama.capacity} positions)`);
  const plan = planWindows(tokens.length, ctx, opts.maxTokens);
  if (plan.length === 0) throw new QuantlabError("E_ARG", "perplexity: the text encodes to no tokens");
  const total = scoredTokens(plan);
  const progress = opts.progress ?? noProgress;
  const vocab = llama.config.vocabSize;
  const windowNll: number[] = [];
  let sum = 0;
  const t0 = Date.now();
  progress.start(total, "perplexity");
  for (const [wi, w] of plan.entries()) {
    const wsum = scoreWindow(llama, tokens, w, bosId, vocab, opts.onLogits, (pos, row, what) => nonFiniteLogits(opts.name ?? "model", wi, pos, w.start + row, what));
    windowNll.push(wsum);
    sum += wsum;
    progress.tick(w.length);
    await yieldToEventLoop(); // let a host (worker, UI, a signal handler) run between windows
  }
  progress.done();
  const seconds = (Date.now() - t0) / 1000;
  const nll = sum / total;
  return { ppl: Math.exp(nll), nll, tokens: total, windows: plan.length, ctx, windowNll, seconds, tokensPerSecond: total / Math.max(seconds, 1e-9) };
}

function scoreWindow(
  llama: CausalLM,
  tokens: ArrayLike<number>,
  w: EvalWindow,
  bosId: number,
  vocab: number,
  onLogits: PerplexityOptions["onLogits"],
  bad: (pos: number, row: number, what: string) => never,
): number {
  const inputs = windowInputs(tokens, w, bosId);
  let sum = 0;
  llama.reset();
  llama.prefill(inputs, 0, (logits, row, n) => {
    const targets = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const target = tokens[w.start + row + i]!;
      targets[i] = target;
      const nll = logSumExp(logits, i * vocab, vocab) - logits[i * vocab + target]!;
      // a NaN/Inf logit makes the whole perplexity NaN: stop at the first one instead of printing "ppl NaN"
      if (!Number.isFinite(nll)) bad(row + i, row + i, logitsProblem(logits, i * vocab, vocab));
      sum += nll;
    }
    onLogits?.(logits, targets, n);
  });
  return sum;
}

/** What is wrong with one position's logits (for the error message). */
export function logitsProblem(logits: Float32Array, off: number, vocab: number): string {
  for (let j = 0; j < vocab; j++) {
    const v = logits[off + j]!;
    if (v - v !== 0) return `logit of token ${j} is ${v}`;
  }
  return "the target token's probability is 0";
}

/** E_VALUE naming the model, the window and the position whose logits are not finite. */
export function nonFiniteLogits(name: string, window: number, pos: number, streamIndex: number, what: string): never {
  throw new QuantlabError(
    "E_VALUE",
    `${name}: non-finite output at window ${window}, position ${pos} (scored token ${streamIndex} of the text): ${what}; the model's weights or activations overflow or hold NaN`,
  );
}
