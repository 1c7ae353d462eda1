/**
 * What a model's weight map holds, under canonical names: dense tensors, llama.cpp blocks or quantlab
 * QuantizedTensors behind one type. It sits in core so that every layer that runs or stores weights
 * (kernels, model, io, algos) can name it without depending on the layers that make them.
 */
import type { GgmlType } from "./ggml-type.js";
import { attachLazy, lazyOf, type LazyData } from "./lazy.js";
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

/** The object that owns a weight's bytes: where its lazy data (core/lazy.ts) is attached. */
function owner(w: Weight): object {
  switch (w.kind) {
    case "dense": return w.tensor;
    case "ggml": return w;
    case "quant": return w.q;
  }
}

/**
 * Are the weight's bytes in memory? Always true for weights built in memory; for weights a reader
 * loaded lazily, true once they were first read and until `releaseWeight`.
 */
export function isWeightLoaded(w: Weight): boolean {
  return lazyOf(owner(w))?.loaded ?? true;
}

/** Bytes a lazily loaded weight reads from its file when touched (undefined for in-memory weights). */
export function weightFileBytes(w: Weight): number | undefined {
  return lazyOf(owner(w))?.fileBytes;
}

/**
 * Reads part of a lazily loaded weight's bytes straight from its file into `dst` (byte offsets within the
 * tensor's bytes as stored), for a consumer that streams the tensor once in chunks: undefined when the
 * weight is in memory already (use its data), not lazy, or not a plain view of one byte range.
 */
export function weightByteReader(w: Weight): ((byteOffset: number, dst: Uint8Array) => void) | undefined {
  const lazy = lazyOf(owner(w));
  return lazy && !lazy.loaded ? lazy.readBytes : undefined;
}

/**
 * Drops the cached bytes of a lazily loaded weight (the next access reads them from the file again), so
 * a layer-by-layer pass keeps memory near one layer. Returns true when something was dropped; false for
 * in-memory weights, weights not loaded, and bytes pinned where they were placed (WebAssembly memory
 * given by a TensorPlacer belongs to the backend) or read from a source without synchronous reads.
 * Do not release a weight whose arrays were modified in place: it would come back as the file's bytes.
 */
export function releaseWeight(w: Weight): boolean {
  return lazyOf(owner(w))?.release() ?? false;
}

/**
 * A ggml weight whose block bytes are read on first access of `data`. `data` is an own enumerable
 * getter, so `{ ...w }` copies the bytes (reading them) rather than silently dropping them.
 */
export function lazyGgmlWeight(type: GgmlType, shape: readonly number[], lazy: LazyData<Uint8Array>): Weight {
  const w = { kind: "ggml", type, shape } as { kind: "ggml"; type: GgmlType; shape: readonly number[]; data: Uint8Array };
  Object.defineProperty(w, "data", { get: () => lazy.get(), enumerable: true });
  attachLazy(w, lazy);
  return w;
}
