// Owner: model engineer. Replace with the llama2.c checkpoint + tokenizer loader.
import { QuantlabError } from "../../core/errors.js";
import type { Model } from "../../model/weights.js";
export async function loadLlama2cFile(path: string, _opts: { tokenizer?: string }): Promise<Model> {
  throw new QuantlabError("E_UNSUPPORTED", `${path}: llama2.c loading is not available yet`);
}
