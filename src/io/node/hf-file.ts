// Owner: io engineer. Replace with the safetensors / Hugging Face directory loaders.
import { QuantlabError } from "../../core/errors.js";
import type { Model } from "../../model/weights.js";
export async function loadSafetensorsFile(path: string, _opts: { tokenizer?: string }): Promise<Model> {
  throw new QuantlabError("E_UNSUPPORTED", `${path}: safetensors loading is not available yet`);
}
export async function loadHfDir(path: string, _opts: { tokenizer?: string }): Promise<Model> {
  throw new QuantlabError("E_UNSUPPORTED", `${path}: Hugging Face directory loading is not available yet`);
}
