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
