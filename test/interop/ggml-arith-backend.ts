/**
 * A test backend that multiplies as ggml's CPU backend does (ggml-cpu `mul_mat`): the activation row is
 * quantized once to the weight type's vec_dot_type (Q8_0, Q8_1, Q8_K; F16 for F16 weights) and every
 * output is `vecDot` of a weight row with it (src/ggml/dot.ts, ggml's generic dots). F32/F16/BF16 weights
 * multiply f32 activations unrounded (what llama.cpp's CPU build measurably does: llamafile sgemm takes
 * F16 weights with F32 activations). Comparing llama.cpp
 * with a forward pass on this backend isolates format and mix differences from the (legitimate)
 * rounding of quantized activations that the f32 reference backend does not do.
 */
import { quantizeActivationsRow, vecDot } from "../../src/ggml/dot.js";
import { activationRowBytes } from "../../src/ggml/dot.js";
import { GgmlType, ggmlRowBytes } from "../../src/ggml/types.js";
import type { Backend, PreparedWeight } from "../../src/kernels/types.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import type { Weight } from "../../src/model/weights.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/core/f16.js";
import { F32KvCache, type KvCacheFactory } from "../../src/model/kv-cache.js";

interface Prep extends PreparedWeight {
  type: GgmlType;
  data: Uint8Array; // (rows, rowBytes)
  rowBytes: number;
  act: Uint8Array; // scratch: one quantized activation row
}

/** llama.cpp's default KV cache holds f16: keys and values rounded to f16 as they are stored. */
class F16RoundedKvCache extends F32KvCache {
  override store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
    super.store(layer, pos, f16ArrayToF32(f32ArrayToF16(k)), f16ArrayToF32(f32ArrayToF16(v)));
  }
}
export const f16RoundedKvCache: KvCacheFactory = (l, c, h, d) => new F16RoundedKvCache(l, c, h, d);

export class GgmlArithBackend implements Backend {
  readonly name = "ggml-arith";

  prepare(w: Weight, name?: string): PreparedWeight {
    let type: GgmlType;
    let data: Uint8Array;
    let rows: number;
    let cols: number;
    if (w.kind === "ggml") {
      type = w.type;
      data = w.data;
      cols = w.shape[w.shape.length - 1]!;
      rows = w.shape.reduce((a, b) => a * b, 1) / cols;
    } else {
      const d = dequantizeWeight(w, name);
      type = GgmlType.F32;
      data = new Uint8Array(d.data.buffer, d.data.byteOffset, d.data.byteLength);
      rows = d.rows;
      cols = d.cols;
    }
    const rowBytes = ggmlRowBytes(type, cols)!;
    const p: Prep = { rows, cols, bytes: data.length, type, data, rowBytes, act: new Uint8Array(activationRowBytes(type, cols)) };
    return p;
  }

  matvec(w: PreparedWeight, x: Float32Array, out: Float32Array): void {
    const p = w as Prep;
    let a: Uint8Array;
    if (p.type === GgmlType.F32) a = new Uint8Array(x.buffer, x.byteOffset, p.cols * 4);
    else a = quantizeActivationsRow(p.type, x, p.cols, p.act);
    for (let r = 0; r < p.rows; r++) out[r] = vecDot(p.type, p.data.subarray(r * p.rowBytes, (r + 1) * p.rowBytes), a, p.cols);
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    for (let i = 0; i < n; i++) this.matvec(w, x.subarray(i * w.cols, (i + 1) * w.cols), out.subarray(i * w.rows, (i + 1) * w.rows));
  }
}
