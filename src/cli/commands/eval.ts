/** `quantlab eval <model> --text f`: perplexity with reference.json's windowing (see src/eval/windows.ts). */
import type { Command } from "commander";
import { readFileSync, existsSync, statSync } from "node:fs";
import { QuantlabError } from "../../core/errors.js";
import { Llama } from "../../model/llama.js";
import { perplexity } from "../../eval/perplexity.js";
import { planWindows, scoredTokens } from "../../eval/windows.js";
import { encodeLogitsHeader } from "../../eval/logits-file.js";
import { atomicWriteFile } from "../../io/node/atomic.js";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, addKvOption, addPackedActivationsOption, checkPackedActivations, backendFromOptions, backendReady, placerOf, displayName, kvCacheOption, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";

interface EvalOptions extends BackendOptions {
  text: string;
  ctx: number;
  maxTokens?: number;
  tokenizer?: string;
  saveLogits?: string;
  kv?: string;
  json?: boolean;
}

/** Reads a UTF-8 text file, with one-line errors. */
export function readTextFile(path: string): string {
  if (!existsSync(path)) throw new QuantlabError("E_IO", `${path}: no such file`);
  if (statSync(path).isDirectory()) throw new QuantlabError("E_IO", `${path}: is a directory, expected a text file`);
  return readFileSync(path, "utf8");
}

export function warnContext(path: string, ctx: number, seqLen: number): void {
  if (ctx > seqLen) process.stderr.write(`quantlab: warning: --ctx ${ctx} is longer than ${displayName(path)}'s context length ${seqLen}\n`);
}

export function register(program: Command): void {
  const cmd = program
    .command("eval")
    .description("perplexity of a model on a text (non-overlapping windows of BOS + ctx-1 tokens)")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory")
    .requiredOption("--text <file>", "UTF-8 text to score")
    .option("--ctx <n>", "window length in positions, BOS included", positiveInt("--ctx"), 256)
    .option("--max-tokens <n>", "stop after this many scored tokens (whole windows)", positiveInt("--max-tokens"))
    .option("--tokenizer <file>", "tokenizer file (llama2.c tok.bin) when it is not beside the model")
    .option("--save-logits <file>", "also save every scored position's logits (QLGT file, for `quantlab kld <file> <model>`)")
    .option("--json", "print one JSON object {ppl, nll, tokens, ...}");
  addKvOption(cmd);
  addPackedActivationsOption(cmd);
  addBackendOptions(cmd).action(async (path: string, o: EvalOptions) => {
      const kvOpt = kvCacheOption(o);
      const text = readTextFile(o.text);
      const backend = backendFromOptions(o);
      const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer, place: placerOf(backend) });
      checkPackedActivations(model, o, path);
      await backendReady(backend);
      warnContext(path, o.ctx, model.config.seqLen);
      const tokens = tokenizer.encode(text, { bos: false });
      const llama = new Llama(model, { contextLength: o.ctx, backend, ...kvOpt });
      const opts = { ctx: o.ctx, maxTokens: o.maxTokens, bosId: tokenizer.bosId, progress: stderrProgress(), name: path };
      let r;
      try {
        if (o.saveLogits) {
          const plan = planWindows(tokens.length, o.ctx, o.maxTokens);
          const n = scoredTokens(plan);
          const targets = Int32Array.from(tokens.slice(0, n));
          const header = { vocabSize: model.config.vocabSize, ctx: o.ctx, nTokens: n, bosId: tokenizer.bosId };
          r = await atomicWriteFile(o.saveLogits, async (sink) => {
            await sink.write(encodeLogitsHeader(header, targets));
            const pending: Promise<void>[] = [];
            const res = await perplexity(llama, tokens, {
              ...opts,
              onLogits: (logits) => {
                // writes are in flight while the model reuses its logits buffer: copy
                pending.push(sink.write(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength).slice()));
              },
            });
            await Promise.all(pending);
            return res;
          });
        } else {
          r = await perplexity(llama, tokens, opts);
        }
      } finally {
        backend.dispose?.();
      }
      if (o.json) {
        printJson({
          ppl: r.ppl, nll: r.nll, tokens: r.tokens, windows: r.windows, ctx: r.ctx,
          model: path, text: o.text, backend: llama.backend.name, ...(o.kv ? { kv: o.kv } : {}), seconds: r.seconds, tokensPerSecond: r.tokensPerSecond,
          windowNll: r.windowNll, ...(o.saveLogits ? { logitsFile: o.saveLogits } : {}),
        });
      } else {
        process.stdout.write(
          `${displayName(path)} on ${displayName(o.text)}: ppl ${r.ppl.toFixed(4)}  nll ${r.nll.toFixed(6)} nats/token  ` +
            `${r.tokens} tokens in ${r.windows} windows of ctx ${r.ctx}  (${r.tokensPerSecond.toFixed(0)} tok/s)\n`,
        );
        if (o.saveLogits) process.stdout.write(`logits saved to ${o.saveLogits}\n`);
      }
    });
}
