/** Shared plumbing of the commands that run a model (run, eval, kld): load through loadModel, check the tokenizer. */
import { basename } from "node:path";
import { QuantlabError } from "../core/errors.js";
import { loadModel, type LoadOptions } from "../io/node/load.js";
import type { Model } from "../model/weights.js";
import type { Tokenizer } from "../model/tokenizer.js";

export async function loadModelWithTokenizer(path: string, opts: LoadOptions): Promise<{ model: Model; tokenizer: Tokenizer }> {
  const model = await loadModel(path, opts);
  const tokenizer = model.tokenizer;
  if (!tokenizer) {
    throw new QuantlabError(
      "E_ARG",
      `${path}: no tokenizer found (for llama2.c models: tok${model.config.vocabSize}.bin or tokenizer.bin beside the model); pass --tokenizer <file>`,
    );
  }
  if (tokenizer.vocabSize !== model.config.vocabSize) {
    throw new QuantlabError("E_FORMAT", `${path}: tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary has ${model.config.vocabSize}`);
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
