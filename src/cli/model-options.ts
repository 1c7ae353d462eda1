/** Shared plumbing of the commands that run a model (run, eval, kld): load through loadModel, check the tokenizer. */
import { basename } from "node:path";
import type { Command } from "commander";
import { QuantlabError } from "../core/errors.js";
import { loadModel, type LoadOptions } from "../io/node/load.js";
import type { Model } from "../model/weights.js";
import type { Tokenizer } from "../model/tokenizer.js";
import type { Backend } from "../kernels/types.js";
import { RefBackend } from "../kernels/ref/backend.js";
import { createNodeWasmBackend } from "../kernels/wasm/pool-node.js";
import type { KvCacheFactory } from "../model/kv-cache.js";
import { quantKvCacheFactory } from "../model/kv-quant.js";

export interface BackendOptions {
  backend: string;
  threads?: number;
}

/** `--backend ref|wasm [--threads n]` → a Backend (ref is the plain-TypeScript reference). */
export function backendFromOptions(o: BackendOptions): Backend {
  switch (o.backend) {
    case "ref": return new RefBackend();
    case "wasm": return createNodeWasmBackend({ threads: o.threads ?? 1 });
    default: throw new QuantlabError("E_ARG", `option --backend: unknown backend "${o.backend}" (expected ref or wasm)`);
  }
}

/** Adds --backend and --threads to a command. */
export function addBackendOptions(cmd: Command): Command {
  return cmd
    .option("--backend <name>", "kernels: ref (plain TypeScript) or wasm (SIMD)", "ref")
    .option("--threads <n>", "worker threads for the wasm backend", positiveInt("--threads"), 1);
}

export async function loadModelWithTokenizer(path: string, opts: LoadOptions): Promise<{ model: Model; tokenizer: Tokenizer }> {
  const model = await loadModel(path, opts);
  const tokenizer = model.tokenizer;
  if (!tokenizer) {
    throw new QuantlabError(
      "E_ARG",
      `${path}: no tokenizer found (for llama2.c models: tok${model.config.vocabSize}.bin or tokenizer.bin beside the model); pass --tokenizer <file>`,
    );
  }
  // HF checkpoints often pad the embedding beyond the tokenizer (e.g. to a multiple of 64): only a
  // tokenizer that can produce ids the model cannot embed is an error (llama2.c loading checks equality)
  if (tokenizer.vocabSize > model.config.vocabSize) {
    throw new QuantlabError("E_FORMAT", `${path}: tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary has only ${model.config.vocabSize}`);
  }
  return { model, tokenizer };
}

export function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new QuantlabError("E_ARG", `option ${name}: expected a positive integer, got "${v}"`);
    return n;
  };
}

export function displayName(path: string): string {
  return basename(path.replace(/\/+$/, ""));
}

/** Adds --kv <spec> (quantized KV cache, src/model/kv-quant.ts) to a command. */
export function addKvOption(cmd: Command, what = "the model"): Command {
  return cmd.option("--kv <spec>", `store ${what}'s KV cache quantized with a spec (e.g. int8, int4:g4:asym, fp8_e4m3, nf4:channel; docs/quant-compare.md)`);
}

/** `{ kvCache }` for LlamaOptions from a --kv value (nothing when absent); bad specs fail here, before any work. */
export function kvCacheOption(spec: string | undefined): { kvCache?: KvCacheFactory } {
  return spec === undefined ? {} : { kvCache: quantKvCacheFactory(spec) };
}
