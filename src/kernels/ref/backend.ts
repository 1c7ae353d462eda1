/**
 * The reference backend: plain TypeScript, f32 accumulation in float64 JS arithmetic rounded per row.
 * Dense f32/f16/bf16 weights are used as f32; ggml blocks and QuantizedTensors outside the packed
 * families stay in their stored form and run through their row decoders (kernels/rowdec.ts): each mat-vec
 * decodes a chunk of rows into a reused f32 scratch and sums it, so no whole-tensor f32 copy is made and
 * the sums are those of the dequantized f32 weights, bit for bit. QuantizedTensors of the
 * packed uniform-int family (kernels/packed.ts) stay packed and run on `matvecUniformIntRef`, the scalar
 * twin of the WASM K_U4G / K_U8G kernels, which gives the same bits as the dequantized f32 path.
 */
import type { Backend, PreparedWeight } from "../types.js";
import { dequantizeWeight, type RowReader } from "../dequantize.js";
import { dequantizeRowLut, dequantizeRowUniformInt, lutBytes, lutLayout, matvecLutRef, matvecUniformIntRef, uniformIntBytes, uniformIntLayout, type LutLayout, type UniformIntLayout } from "../packed.js";
import type { Weight } from "../../core/weight.js";
import { GgmlType } from "../../ggml/types.js";
import { chunkRows, ggmlRowDecoder, quantRowDecoder, type RowDecoded } from "../rowdec.js";

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

/** A weight in its stored form with a row decoder; `scratch` holds one decoded chunk (rows·cols f32). */
export class RefRowDecPrepared implements PreparedWeight {
  readonly rows: number;
  readonly cols: number;
  readonly bytes: number;
  readonly step: number;
  private scratchRows: Float32Array | undefined;
  constructor(readonly decoded: RowDecoded) {
    this.rows = decoded.rows;
    this.cols = decoded.cols;
    this.bytes = decoded.storedBytes;
    this.step = Math.max(1, Math.min(this.rows, chunkRows(this.cols)));
  }
  /** the chunk scratch, made on first use (step × cols) */
  get scratch(): Float32Array {
    return (this.scratchRows ??= new Float32Array(this.step * this.cols));
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
      return new RefRowDecPrepared(quantRowDecoder(w.q, name));
    }
    if (w.kind === "ggml" && w.type !== GgmlType.F32 && w.type !== GgmlType.F16 && w.type !== GgmlType.BF16) {
      const data = w.data;
      return new RefRowDecPrepared(ggmlRowDecoder(w.type, w.shape, () => data, name));
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
    if (pw instanceof RefRowDecPrepared) {
      this.matmul(pw, x, 1, out);
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
    if (pw instanceof RefRowDecPrepared) return (r, dst, off) => pw.decoded.decode(r, r + 1, dst, off);
    if (!(pw instanceof RefPackedPrepared)) return undefined;
    const L = pw.layout;
    if (L.family === "lut") return (r, dst, off) => dequantizeRowLut(L, r, dst, off);
    return (r, dst, off) => dequantizeRowUniformInt(L, r, dst, off);
  }

  /** Nothing to give back: the arrays go with the PreparedWeight object. */
  release(_pw: PreparedWeight): void {}

  matmul(pw: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    const { rows, cols } = pw;
    if (pw instanceof RefRowDecPrepared) {
      // each chunk of rows decoded once for all n tokens, summed as the f32 path sums (f64, rounded per row)
      const w = pw.scratch;
      for (let r0 = 0; r0 < rows; r0 += pw.step) {
        const r1 = Math.min(rows, r0 + pw.step);
        pw.decoded.decode(r0, r1, w, 0);
        for (let t = 0; t < n; t++) {
          const xo = t * cols;
          for (let r = r0; r < r1; r++) {
            let s = 0;
            const o = (r - r0) * cols;
            for (let c = 0; c < cols; c++) s += w[o + c]! * x[xo + c]!;
            out[t * rows + r] = s;
          }
        }
      }
      return;
    }
    for (let i = 0; i < n; i++) this.matvec(pw, x.subarray(i * cols, (i + 1) * cols), out.subarray(i * rows, (i + 1) * rows));
  }
}
