// Owner: io engineer. Replace with the GGUF model loader.
import { QuantlabError } from "../../core/errors.js";
import type { Model } from "../../model/weights.js";
export async function loadGgufFile(path: string, _opts: { tokenizer?: string }): Promise<Model> {
  throw new QuantlabError("E_UNSUPPORTED", `${path}: GGUF loading is not available yet`);
}
