/** `quantlab run [model]`: generate text as llama2.c run.c does (prompt positions count toward --tokens). */
import type { Command } from "commander";
import { defaultModelPath } from "../../io/node/data.js";
import { Llama } from "../../model/llama.js";
import { generate } from "../../model/generate.js";
import { parseFloatOpt, parseIntOpt, printJson, stderrProgress } from "../util.js";
import { addBackendOptions, addKvOption, backendFromOptions, backendReady, placerOf, kvCacheOption, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";

interface RunOptions extends BackendOptions {
  prompt: string;
  tokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  tokenizer?: string;
  ctx?: number;
  kv?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command("run")
    .description("generate text from a prompt (default model: stories260K)")
    .argument("[model]", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory (default: shared stories260K)")
    .option("-p, --prompt <text>", "prompt text", "")
    .option("-n, --tokens <n>", "positions to run, prompt included (llama2.c run.c -n); clamped to the context", parseIntOpt("--tokens"), 256)
    .option("-t, --temperature <t>", "sampling temperature; 0 = greedy", parseFloatOpt("--temperature"), 0)
    .option("--top-p <p>", "nucleus sampling mass (used when temperature > 0; 1 disables)", parseFloatOpt("--top-p"), 0.9)
    .option("--top-k <k>", "sample among the k most likely tokens (0 disables)", parseIntOpt("--top-k"), 0)
    .option("-s, --seed <n>", "random seed for sampling", parseIntOpt("--seed"), 1)
    .option("--tokenizer <file>", "tokenizer file (llama2.c tok.bin) when it is not beside the model")
    .option("--ctx <n>", "KV cache positions (default: the model's context length)", positiveInt("--ctx"))
    .option("--json", "print one JSON object {text, tokenIds, ...} instead of streaming text");
  addKvOption(cmd);
  addBackendOptions(cmd).action(async (modelArg: string | undefined, o: RunOptions) => {
      const kvOpt = kvCacheOption(o.kv);
      const path = modelArg ?? defaultModelPath();
      const backend = backendFromOptions(o);
      const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer, place: placerOf(backend) });
      await backendReady(backend);
      // the KV cache holds what the run can reach (run.c clamps --tokens to seq_len): a file declaring a
      // context of millions of positions costs nothing unless asked for
      const contextLength = o.ctx ?? (o.tokens > 0 ? Math.min(model.config.seqLen, o.tokens) : undefined);
      const llama = new Llama(model, { contextLength, backend, ...kvOpt });
      const streaming = !o.json;
      // `quantlab run | head`: a closed pipe ends the run quietly, as a C program killed by SIGPIPE (main.ts)
      let r;
      try {
        r = generate(llama, tokenizer, {
          prompt: o.prompt,
          steps: o.tokens,
          temperature: o.temperature,
          topP: o.topP,
          topK: o.topK,
          seed: o.seed,
          stopAtEos: model.source.format !== "llama2c", // llama2.c models follow run.c: stop at BOS only
          name: path,
          onText: streaming ? (piece) => process.stdout.write(piece) : undefined,
          progress: streaming ? undefined : stderrProgress(),
        });
      } finally {
        backend.dispose?.();
      }
      const tokPerSec = r.decodedTokens / Math.max(r.decodeMs / 1000, 1e-9);
      if (o.json) {
        printJson({
          text: r.text,
          tokenIds: r.tokenIds,
          promptTokens: r.promptTokens,
          model: path,
          backend: llama.backend.name,
          temperature: o.temperature,
          topP: o.topP,
          topK: o.topK,
          seed: o.seed,
          decodeTokensPerSecond: tokPerSec,
        });
      } else if (r.decodedTokens > 0) {
        process.stderr.write(`achieved tok/s: ${tokPerSec.toFixed(1)}\n`); // as run.c, on stderr
      }
    });
}
