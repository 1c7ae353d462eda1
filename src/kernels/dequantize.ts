/**
 * Any Weight → f32 (rows, cols), and row-at-a-time readers. ggml block types decode through ggml's codecs
 * (bit-exact with llama.cpp's to_float).
 */
import { QuantlabError } from "../core/errors.js";
import { dequantize, dequantizeRow, hasGgmlCodec } from "../ggml/codecs.js";
import { ggmlTypeName, ggmlTypeTraits } from "../ggml/types.js";
import { bf16ArrayToF32, f16ArrayToF32 } from "../core/f16.js";
import type { Weight } from "../core/weight.js";
import { quantRowDecoder, type RowDecoded } from "./rowdec.js";
import { dequantizeRowLut, dequantizeRowUniformInt, lutLayout, lutReason, uniformIntLayout, uniformIntReason, type LutLayout, type UniformIntLayout } from "./packed.js";

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
      if (!hasGgmlCodec(w.type)) throw new QuantlabError("E_UNSUPPORTED", `${name}: ggml type ${ggmlTypeName(w.type)} has no decoder in quantlab`);
      return { rows, cols, data: dequantize(w.type, w.data, n) };
  }
}

/** Copies row `r` (cols values, as f32) of a (rows, cols) weight into dst[off .. off + cols). */
export type RowReader = (r: number, dst: Float32Array, off: number) => void;

/**
 * Row-at-a-time access to a weight (an embedding table): f32 rows are copied, f16/bf16 and ggml block rows
 * are decoded on demand, so a large table is never expanded to f32 whole (a 128256×2048 vocabulary is
 * 1 GiB in f32). quantlab QuantizedTensors of the packed uniform-int and lut families (kernels/packed.ts)
 * decode row by row too, and every other spec through its row decoder (kernels/rowdec.ts).
 */
export function rowReader(w: Weight, name = "tensor"): RowReader {
  const shape = w.kind === "dense" ? w.tensor.shape : w.kind === "ggml" ? w.shape : w.q.shape;
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  if (w.kind === "dense") {
    const t = w.tensor;
    if (t.dtype === "f32") {
      const d = t.data as Float32Array;
      return (r, dst, off) => dst.set(d.subarray(r * cols, (r + 1) * cols), off);
    }
    if (t.dtype === "f16" || t.dtype === "bf16") {
      const d = t.data as Uint16Array;
      const conv = t.dtype === "f16" ? f16ArrayToF32 : bf16ArrayToF32;
      return (r, dst, off) => { conv(d.subarray(r * cols, (r + 1) * cols), dst.subarray(off, off + cols)); };
    }
  }
  if (w.kind === "ggml") {
    const size = ggmlTypeTraits(w.type);
    if (size && cols % size.blockSize === 0 && hasGgmlCodec(w.type)) {
      const rowBytes = (cols / size.blockSize) * size.bytesPerBlock;
      const data = w.data;
      const type = w.type;
      return (r, dst, off) => dequantizeRow(type, data.subarray(r * rowBytes, (r + 1) * rowBytes), dst.subarray(off, off + cols), cols);
    }
  }
  if (w.kind === "quant" && uniformIntReason(w.q) === undefined) {
    // packed uniform-int codes decode one row at a time (kernels/packed.ts), read on the first row
    let L: UniformIntLayout | undefined;
    return (r, dst, off) => {
      if (!L) {
        const l = uniformIntLayout(w.q);
        if ("reason" in l) throw new QuantlabError("E_INTERNAL", `${name}: ${l.reason}`);
        L = l;
      }
      dequantizeRowUniformInt(L, r, dst, off);
    };
  }
  if (w.kind === "quant" && lutReason(w.q) === undefined) {
    // packed lookup-table codes decode one row at a time too (kernels/packed.ts family "lut")
    let L: LutLayout | undefined;
    return (r, dst, off) => {
      if (!L) {
        const l = lutLayout(w.q);
        if ("reason" in l) throw new QuantlabError("E_INTERNAL", `${name}: ${l.reason}`);
        L = l;
      }
      dequantizeRowLut(L, r, dst, off);
    };
  }
  if (w.kind === "quant") {
    // every other spec (vector codebooks, outliers, ichannel, trits, wide codes) through its row decoder,
    // made on the first read: the one row is decoded, never the whole table
    let D: RowDecoded | undefined;
    return (r, dst, off) => {
      D ??= quantRowDecoder(w.q, name);
      D.decode(r, r + 1, dst, off);
    };
  }
  let all: Float32Array | undefined;
  return (r, dst, off) => {
    all ??= dequantizeWeight(w, name).data;
    dst.set(all.subarray(r * cols, (r + 1) * cols), off);
  };
}
