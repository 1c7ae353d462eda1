/**
 * What a model's weight map holds, under canonical names: dense tensors, llama.cpp blocks or quantlab
 * QuantizedTensors behind one type. It sits in core so that every layer that runs or stores weights
 * (kernels, model, io, algos) can name it without depending on the layers that make them.
 */
import type { GgmlType } from "./ggml-type.js";
import type { Tensor } from "./tensor.js";

/**
 * QuantizedTensor: packed codes + scales (+ zero points, codebooks, outliers) + the spec that made them.
 * The concrete layouts live in quant/; this is the contract the model, kernels and writers rely on.
 */
export interface QuantizedTensor {
  /** canonical spec string, e.g. "int4:g128:asym" */
  readonly spec: string;
  /** logical shape, (rows, cols) for a linear weight */
  readonly shape: readonly number[];
  /** exact storage cost in bits, including scales, zero points and side tables */
  readonly storageBits: number;
  /** the f32 values this tensor stands for */
  dequantize(): Float32Array;
}

export type Weight =
  | { kind: "dense"; tensor: Tensor }
  /** raw ggml blocks; shape is (rows, cols), each row `cols` elements, rows contiguous */
  | { kind: "ggml"; type: GgmlType; shape: readonly number[]; data: Uint8Array }
  | { kind: "quant"; q: QuantizedTensor };

export function weightShape(w: Weight): readonly number[] {
  switch (w.kind) {
    case "dense": return w.tensor.shape;
    case "ggml": return w.shape;
    case "quant": return w.q.shape;
  }
}
