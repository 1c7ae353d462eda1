/**
 * llama2.c checkpoint + tokenizer from disk. The tokenizer is `--tokenizer` when given, else the first
 * of tok<vocab>.bin, tokenizer.bin found beside the model (llama2.c's naming); without one the model
 * loads with no tokenizer and commands that need text say so.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Model } from "../../model/weights.js";
import { llama2cModel, readLlama2cCheckpoint, readLlama2cTokenizer } from "../llama2c.js";
import { openFile } from "./file.js";
import type { Llama2cTokenizer } from "../../model/tokenizers/llama2c.js";

/** Candidate tokenizer files beside a llama2.c model, in the order they are tried. */
export function tokenizerCandidates(modelPath: string, vocabSize: number): string[] {
  const dir = dirname(modelPath);
  return [join(dir, `tok${vocabSize}.bin`), join(dir, "tokenizer.bin")];
}

export async function loadLlama2cTokenizerFile(path: string, expect?: { size: number; model: string }): Promise<Llama2cTokenizer> {
  const src = openFile(path);
  try {
    return await readLlama2cTokenizer(src, expect);
  } finally {
    await src.close();
  }
}

/** Loads a llama2.c checkpoint lazily: the file stays open for its weights until `model.close()`. */
export async function loadLlama2cFile(path: string, opts: { tokenizer?: string }): Promise<Model> {
  const src = openFile(path);
  let ck;
  try {
    ck = await readLlama2cCheckpoint(src);
  } catch (e) {
    await src.close();
    throw e;
  }
  let tokenizer: Llama2cTokenizer | undefined;
  let tokPath = opts.tokenizer;
  try {
    const expect = { size: ck.config.vocabSize, model: path };
    if (tokPath === undefined) tokPath = tokenizerCandidates(path, ck.config.vocabSize).find((p) => existsSync(p));
    tokenizer = tokPath !== undefined ? await loadLlama2cTokenizerFile(tokPath, expect) : undefined;
  } catch (e) {
    await ck.close();
    throw e;
  }
  ck.config.name = basename(path);
  return llama2cModel(ck, path, tokenizer, tokPath);
}
