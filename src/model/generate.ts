/**
 * Text generation as llama2.c run.c `generate`: the prompt is encoded with BOS; `steps` counts
 * positions, prompt included (run.c's -n); while pos < steps the prompt is forced, then tokens are
 * sampled; BOS (id 1 in run.c, the tokenizer's BOS here) stops generation (and EOS with stopAtEos);
 * each token is printed as decode(prev, next) through safe_printf, and a final "\n" is printed. The
 * returned `text` is exactly what run.c would print.
 *
 * The forced prompt positions (their logits are never used) go through one batched prefill.
 */
import { QuantlabError } from "../core/errors.js";
import type { Progress } from "../core/progress.js";
import { noProgress } from "../core/progress.js";
import type { Llama } from "./llama.js";
import { Sampler, type SamplerOptions } from "./sampler.js";
import type { Tokenizer } from "./tokenizer.js";

export interface GenerateOptions extends SamplerOptions {
  prompt: string;
  /** positions to run, prompt included; ≤ 0 or beyond the context means the whole context (run.c) */
  steps: number;
  /** also stop at the tokenizer's EOS (run.c stops at BOS only; chat/instruct models end turns with EOS) */
  stopAtEos?: boolean;
  /** called with each printed piece as it is produced */
  onText?: (piece: string) => void;
  progress?: Progress;
  /** the model's name in errors (its path) */
  name?: string;
}

export interface GenerateResult {
  text: string;
  /** [BOS, prompt…, generated…]: every token fed or printed */
  tokenIds: number[];
  promptTokens: number;
  /** wall time of the sampled (decode) part, for tok/s */
  decodeMs: number;
  decodedTokens: number;
}

export function generate(llama: Llama, tokenizer: Tokenizer, opts: GenerateOptions): GenerateResult {
  const sampler = new Sampler(opts);
  const progress = opts.progress ?? noProgress;
  let steps = opts.steps;
  if (!Number.isInteger(steps)) throw new QuantlabError("E_ARG", `steps ${steps}: expected an integer`);
  if (steps <= 0 || steps > llama.capacity) steps = llama.capacity; // run.c main(): clamp to seq_len
  const prompt = tokenizer.encode(opts.prompt, { bos: true });
  if (prompt.length < 1) throw new QuantlabError("E_ARG", "the prompt encodes to no tokens");
  const bos = tokenizer.bosId;
  const eos = opts.stopAtEos ? tokenizer.eosId : bos;
  const tokenIds = [prompt[0]!];
  let text = "";
  const emit = (prev: number, next: number): void => {
    const piece = tokenizer.decodeToken(prev, next);
    text += piece;
    if (piece) opts.onText?.(piece);
  };
  llama.reset();
  progress.start(steps, "generate");
  // forced positions: pos < prompt.length - 1 feeds prompt[pos] and prints prompt[pos + 1]
  const forced = Math.min(prompt.length - 1, steps);
  let pos = 0;
  let token = prompt[0]!;
  let stopped = false;
  if (forced > 0) {
    llama.prefill(prompt.slice(0, forced), 0);
    for (; pos < forced; pos++) {
      const next = prompt[pos + 1]!;
      if (next === bos) {
        stopped = true;
        break;
      }
      emit(token, next);
      tokenIds.push(next);
      token = next;
    }
    progress.tick(forced);
  }
  const t0 = Date.now();
  let decoded = 0;
  if (!stopped) {
    for (; pos < steps; pos++) {
      const logits = llama.forward(token, pos);
      // sampling from NaN logits picks an arbitrary token and goes on printing text: stop instead
      for (let j = 0; j < logits.length; j++) {
        const v = logits[j]!;
        if (v - v !== 0) throw new QuantlabError("E_VALUE", `${opts.name ?? "model"}: non-finite output at position ${pos}: logit of token ${j} is ${v}; the model's weights or activations overflow or hold NaN`);
      }
      const next = sampler.sample(logits);
      decoded++;
      progress.tick();
      if (next === bos || next === eos) break;
      emit(token, next);
      tokenIds.push(next);
      token = next;
    }
  }
  progress.done();
  text += "\n";
  opts.onText?.("\n");
  return { text, tokenIds, promptTokens: prompt.length, decodeMs: Date.now() - t0, decodedTokens: decoded };
}
