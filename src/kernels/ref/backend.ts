/**
 * The reference backend: plain TypeScript, f32 accumulation in float64 JS arithmetic rounded per row.
 * Dense f32/f16/bf16 weights are used as f32; quantized weights (ggml blocks, quantlab QuantizedTensors)
 * are dequantized once at prepare time through `dequantizeWeight`.
 */
import type { Backend, PreparedWeight } from "../types.js";
import { dequantizeWeight } from "../dequantize.js";
import type { Weight } from "../../core/weight.js";

class RefPrepared implements PreparedWeight {
  constructor(readonly rows: number, readonly cols: number, readonly w: Float32Array) {}
  get bytes(): number {
    return this.w.byteLength;
  }
}

export class RefBackend implements Backend {
  readonly name = "ref";

  prepare(w: Weight, name?: string): PreparedWeight {
    const { rows, cols, data } = dequantizeWeight(w, name);
    return new RefPrepared(rows, cols, data);
  }

  matvec(pw: PreparedWeight, x: Float32Array, out: Float32Array): void {
    const { rows, cols, w } = pw as RefPrepared;
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const o = r * cols;
      for (let c = 0; c < cols; c++) s += w[o + c]! * x[c]!;
      out[r] = s;
    }
  }

  /** Nothing to give back: the f32 copy goes with the PreparedWeight object. */
  release(_pw: PreparedWeight): void {}

  matmul(pw: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    const { rows, cols } = pw as RefPrepared;
    for (let i = 0; i < n; i++) this.matvec(pw, x.subarray(i * cols, (i + 1) * cols), out.subarray(i * rows, (i + 1) * rows));
  }
}
