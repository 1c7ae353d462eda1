/**
 * Evaluation windows (shared/data/stories260K/reference.json `eval.method`): the text is encoded once
 * without BOS; window w scores tokens [w·(ctx−1), (w+1)·(ctx−1)) and is fed as BOS followed by all but
 * the last of them, at positions 0..ctx−1, with a fresh KV cache; position i predicts target i.
 * The last window may be shorter. With maxTokens, windows are taken whole until at least that many
 * tokens are scored.
 */
import { QuantlabError } from "../core/errors.js";

export interface EvalWindow {
  index: number;
  /** first scored token in the stream */
  start: number;
  /** scored tokens = positions fed */
  length: number;
}

export function planWindows(nTokens: number, ctx: number, maxTokens?: number): EvalWindow[] {
  if (!Number.isInteger(ctx) || ctx < 2) throw new QuantlabError("E_ARG", `ctx ${ctx}: expected an integer ≥ 2 (BOS + at least one token)`);
  if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || maxTokens < 1)) {
    throw new QuantlabError("E_ARG", `max-tokens ${maxTokens}: expected a positive integer`);
  }
  const per = ctx - 1;
  const out: EvalWindow[] = [];
  let scored = 0;
  for (let start = 0; start < nTokens; start += per) {
    if (maxTokens !== undefined && scored >= maxTokens) break;
    const length = Math.min(per, nTokens - start);
    out.push({ index: out.length, start, length });
    scored += length;
  }
  return out;
}

/** Inputs of a window: BOS, then the window's tokens but its last. (length) */
export function windowInputs(tokens: ArrayLike<number>, w: EvalWindow, bosId: number): Int32Array {
  checkBos(bosId, "evaluation windows");
  const x = new Int32Array(w.length);
  x[0] = bosId;
  for (let i = 1; i < w.length; i++) x[i] = tokens[w.start + i - 1]!;
  return x;
}

/** Windows open with BOS: a tokenizer without one (no bos_token, no bos_token_id, no known spelling) is named, not fed id −1. */
export function checkBos(bosId: number, what: string): void {
  if (!Number.isInteger(bosId) || bosId < 0) throw new QuantlabError("E_ARG", `${what} start with the BOS token, and the model's tokenizer has none (set "bos_token" in tokenizer_config.json or "bos_token_id" in config.json)`);
}

export function scoredTokens(windows: EvalWindow[]): number {
  let n = 0;
  for (const w of windows) n += w.length;
  return n;
}

/** log Σ exp(x) of one row, float64 (max-shifted). */
export function logSumExp(x: Float32Array, off: number, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[off + i]! > max) max = x[off + i]!;
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[off + i]! - max);
  return max + Math.log(s);
}
