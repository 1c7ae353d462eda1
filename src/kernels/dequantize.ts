/**
 * Any Weight → f32 (rows, cols). ggml block types are decoded through a hook the ggml module installs
 * (`registerGgmlDequantizer`), so kernels do not depend on every ggml type being present.
 */
import { QuantlabError } from "../core/errors.js";
import type { Weight } from "../model/weights.js";
import type { GgmlType } from "../ggml/types.js";
import { ggmlTypeName } from "../ggml/types.js";

export type GgmlDequantizer = (type: GgmlType, data: Uint8Array, n: number) => Float32Array;
let ggmlDequantizer: GgmlDequantizer | undefined;

export function registerGgmlDequantizer(fn: GgmlDequantizer): void {
  ggmlDequantizer = fn;
}

export function dequantizeWeight(w: Weight, name = "tensor"): { rows: number; cols: number; data: Float32Array } {
  const shape = w.kind === "dense" ? w.tensor.shape : w.kind === "ggml" ? w.shape : w.q.shape;
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  let n = 1;
  for (const d of shape) n *= d;
  const rows = n / cols;
  switch (w.kind) {
    case "dense":
      return { rows, cols, data: w.tensor.toF32() };
    case "quant":
      return { rows, cols, data: w.q.dequantize() };
    case "ggml":
      if (!ggmlDequantizer) throw new QuantlabError("E_UNSUPPORTED", `${name}: no decoder registered for ggml type ${ggmlTypeName(w.type)}`);
      return { rows, cols, data: ggmlDequantizer(w.type, w.data, n) };
  }
}
