/**
 * The reference backend: plain TypeScript, f32 accumulation in float64 JS arithmetic rounded per row.
 * Dense f32/f16/bf16 weights are used as f32; ggml blocks and QuantizedTensors outside the packed
 * families are dequantized once at prepare time through `dequantizeWeight`. QuantizedTensors of the
 * packed uniform-int family (kernels/packed.ts) stay packed and run on `matvecUniformIntRef`, the scalar
 * twin of the WASM K_U4G / K_U8G kernels, which gives the same bits as the dequantized f32 path.
 */
import type { Backend, PreparedWeight } from "../types.js";
import { dequantizeWeight, type RowReader } from "../dequantize.js";
import { dequantizeRowLut, dequantizeRowUniformInt, lutBytes, lutLayout, matvecLutRef, matvecUniformIntRef, uniformIntBytes, uniformIntLayout, type LutLayout, type UniformIntLayout } from "../packed.js";
import type { Weight } from "../../core/weight.js";

class RefPrepared implements PreparedWeight {
  constructor(readonly rows: number, readonly cols: number, readonly w: Float32Array) {}
  get bytes(): number {
    return this.w.byteLength;
  }
}

/** A packed spec weight: the QTensor's own codes plus f32 scales and offsets (uniform int) or scales,
 * zeros and the level table (lut) per group. */
export class RefPackedPrepared implements PreparedWeight {
  readonly rows: number;
  readonly cols: number;
  constructor(readonly layout: UniformIntLayout | LutLayout) {
    this.rows = layout.rows;
    this.cols = layout.cols;
  }
  get bytes(): number {
    return this.layout.family === "lut" ? lutBytes(this.layout) : uniformIntBytes(this.layout);
  }
}

export class RefBackend implements Backend {
  readonly name = "ref";

  prepare(w: Weight, name?: string): PreparedWeight {
    if (w.kind === "quant") {
      const L = uniformIntLayout(w.q);
      if (!("reason" in L)) return new RefPackedPrepared(L);
      const T = lutLayout(w.q);
      if (!("reason" in T)) return new RefPackedPrepared(T);
    }
    const { rows, cols, data } = dequantizeWeight(w, name);
    return new RefPrepared(rows, cols, data);
  }

  matvec(pw: PreparedWeight, x: Float32Array, out: Float32Array): void {
    if (pw instanceof RefPackedPrepared) {
      const L = pw.layout;
      if (L.family === "lut") matvecLutRef(L, x, out);
      else matvecUniformIntRef(L, x, out);
      return;
    }
    const { rows, cols, w } = pw as RefPrepared;
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const o = r * cols;
      for (let c = 0; c < cols; c++) s += w[o + c]! * x[c]!;
      out[r] = s;
    }
  }

  /** Rows of a packed weight, decoded on demand (a tied embedding table read through the backend). */
  rowReader(pw: PreparedWeight): RowReader | undefined {
    if (!(pw instanceof RefPackedPrepared)) return undefined;
    const L = pw.layout;
    if (L.family === "lut") return (r, dst, off) => dequantizeRowLut(L, r, dst, off);
    return (r, dst, off) => dequantizeRowUniformInt(L, r, dst, off);
  }

  /** Nothing to give back: the f32 copy goes with the PreparedWeight object. */
  release(_pw: PreparedWeight): void {}

  matmul(pw: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    const { rows, cols } = pw;
    for (let i = 0; i < n; i++) this.matvec(pw, x.subarray(i * cols, (i + 1) * cols), out.subarray(i * rows, (i + 1) * rows));
  }
}
