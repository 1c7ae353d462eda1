/**
 * A model: its configuration, its weight map (core/weight.ts: dense tensors, llama.cpp blocks or quantlab
 * QuantizedTensors under canonical names), its tokenizer and where it came from. The forward pass asks
 * kernels to run whichever weight kind it finds.
 */
import type { Weight } from "../core/weight.js";
import type { ModelConfig } from "./config.js";
import type { Tokenizer } from "./tokenizer.js";
import type { InputTransforms } from "./transforms.js";

export interface Model {
  config: ModelConfig;
  weights: Map<string, Weight>;
  tokenizer?: Tokenizer;
  /** where it came from and anything the source file said that we keep (e.g. GGUF metadata) */
  source: { path: string; format: "llama2c" | "gguf" | "safetensors" | "hf" | "memory"; metadata?: Record<string, unknown> };
  /** run-time operations on linear inputs a quantized model needs (online rotation, W8A8 activations) */
  inputTransforms?: InputTransforms;
  /** the canonical JSON of the recipe that made this model (algos/recipe.ts), carried in file metadata as "quantlab.recipe" */
  recipe?: string;
  /**
   * Closes the files a loaded model reads its lazy weights from (io/lazy.ts); idempotent. Weights read
   * before stay usable, any other read fails naming the file and tensor. Models derived by spreading
   * (`{ ...model, weights }`) share the files, and so this function.
   */
  close?(): Promise<void>;
}

/** Closes a model's files, if it has any (see Model.close). */
export async function closeModel(m: Model): Promise<void> {
  await m.close?.();
}
