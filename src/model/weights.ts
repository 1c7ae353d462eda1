/**
 * A model's weight map holds, under canonical names, dense tensors, llama.cpp blocks or quantlab
 * QuantizedTensors behind one type. The forward pass asks kernels to run whichever it finds.
 */
import type { Tensor } from "../core/tensor.js";
import type { GgmlType } from "../ggml/types.js";
import type { QuantizedTensor } from "../quant/types.js";
import type { ModelConfig } from "./config.js";
import type { Tokenizer } from "./tokenizer.js";
import type { InputTransforms } from "./transforms.js";

export type Weight =
  | { kind: "dense"; tensor: Tensor }
  /** raw ggml blocks; shape is (rows, cols), each row `cols` elements, rows contiguous */
  | { kind: "ggml"; type: GgmlType; shape: readonly number[]; data: Uint8Array }
  | { kind: "quant"; q: QuantizedTensor };

export interface Model {
  config: ModelConfig;
  weights: Map<string, Weight>;
  tokenizer?: Tokenizer;
  /** where it came from and anything the source file said that we keep (e.g. GGUF metadata) */
  source: { path: string; format: "llama2c" | "gguf" | "safetensors" | "hf" | "memory"; metadata?: Record<string, unknown> };
  /** run-time operations on linear inputs a quantized model needs (online rotation, W8A8 activations) */
  inputTransforms?: InputTransforms;
}

export function weightShape(w: Weight): readonly number[] {
  switch (w.kind) {
    case "dense": return w.tensor.shape;
    case "ggml": return w.shape;
    case "quant": return w.q.shape;
  }
}
