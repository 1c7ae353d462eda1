// The decode probes' weights (bench/_decode-probe.ts, bench/_q4k-scale.ts): a 64-row random tile quantized once
// (f32, f16 or any ggml type) and repeated down the matrix, so large shapes are quick to make.
import { Tensor } from "../src/core/tensor.js";
import { f32ToF16Bits } from "../src/core/f16.js";
import { GGML_TYPES, GgmlType } from "../src/ggml/types.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import type { Weight } from "../src/core/weight.js";
import { randomF32 } from "./_synthetic.js";

export function makeWeight(type: GgmlType, rows: number, cols: number): Weight {
  const src = randomF32(64 * cols, 7 + rows);
  if (type === GgmlType.F16 || type === GgmlType.F32) {
    const n = rows * cols;
    if (type === GgmlType.F32) {
      const f = new Float32Array(n);
      for (let r = 0; r < rows; r += 64) f.set(src, r * cols);
      return { kind: "dense", tensor: Tensor.fromF32([rows, cols], f) };
    }
    const tile = new Uint16Array(src.length);
    for (let i = 0; i < tile.length; i++) tile[i] = f32ToF16Bits(src[i]! * 0.05);
    const h = new Uint16Array(n);
    for (let r = 0; r < rows; r += 64) h.set(tile, r * cols);
    return { kind: "dense", tensor: new Tensor("f16", [rows, cols], h) };
  }
  const size = GGML_TYPES[type];
  const rowBytes = (cols / size.blockSize) * size.bytesPerBlock;
  const tile = new Uint8Array(64 * rowBytes);
  quantizeRow(type, src, tile, 64 * cols);
  const data = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r += 64) data.set(tile, r * rowBytes);
  return { kind: "ggml", type, shape: [rows, cols], data };
}
