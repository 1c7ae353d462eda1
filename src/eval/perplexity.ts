/**
 * Perplexity over a token stream with the windowing of windows.ts. NLL per token is
 * logsumexp(logits) − logits[target] in float64 from the float32 logits (as reference.json); window
 * sums and the total are float64. Each window runs as batched prefills (matmul) from a fresh cache.
 */
import { QuantlabError } from "../core/errors.js";
import type { Progress } from "../core/progress.js";
import { noProgress } from "../core/progress.js";
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
  for (const w of plan) {
    const wsum = scoreWindow(llama, tokens, w, bosId, vocab, opts.onLogits);
    windowNll.push(wsum);
    sum += wsum;
    progress.tick(w.length);
    await Promise.resolve(); // let a host (worker, UI) breathe between windows
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
): number {
  const inputs = windowInputs(tokens, w, bosId);
  let sum = 0;
  llama.reset();
  llama.prefill(inputs, 0, (logits, row, n) => {
    const targets = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const target = tokens[w.start + row + i]!;
      targets[i] = target;
      sum += logSumExp(logits, i * vocab, vocab) - logits[i * vocab + target]!;
    }
    onLogits?.(logits, targets, n);
  });
  return sum;
}
