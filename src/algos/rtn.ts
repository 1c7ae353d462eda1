/**
 * Round-to-nearest (RTN): fit each group on the float weights and quantize every element on its own.
 * The baseline every calibration method is measured against.
 */
import { QuantlabError } from "../core/errors.js";
import { type GroupQuantizer, groupsPerRow, groupWidth } from "./quantizer.js";

/** What a weight quantization algorithm hands back: fake-quantized weights plus the group parameters. */
export interface WeightQuantResult<P> {
  /** dequantized weights, (rows, cols) */
  q: Float32Array;
  /**
   * group parameters, params[r · nGroups + g]. Group g of row r covers the columns c with
   * groupIndex[c] === g (contiguous runs of groupSize unless GPTQ ran act-order without static groups).
   */
  params: P[];
  nGroups: number;
  /** (cols): group of each column, as GPTQ's g_idx */
  groupIndex: Int32Array;
}

export function checkMatrix(w: ArrayLike<number>, rows: number, cols: number, what: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0 || w.length !== rows * cols) {
    throw new QuantlabError("E_ARG", `${what}: weight has ${w.length} values but shape is (${rows}, ${cols})`);
  }
}

export function contiguousGroupIndex(cols: number, groupSize: number): Int32Array {
  const gi = new Int32Array(cols);
  const gw = groupWidth(cols, groupSize);
  for (let c = 0; c < cols; c++) gi[c] = Math.floor(c / gw);
  return gi;
}

/** RTN over a (rows, cols) weight; `importance` (cols), if given, is passed to `fit` per group. */
export function rtnQuantize<P>(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  quantizer: GroupQuantizer<P>,
  importance?: ArrayLike<number>,
): WeightQuantResult<P> {
  checkMatrix(w, rows, cols, "rtn");
  const gw = groupWidth(cols, quantizer.groupSize);
  const nGroups = groupsPerRow(cols, quantizer.groupSize);
  const q = new Float32Array(rows * cols);
  const params: P[] = new Array(rows * nGroups);
  const seg = new Float64Array(gw);
  const imp = importance ? new Float64Array(gw) : undefined;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < nGroups; g++) {
      const c0 = g * gw;
      const len = Math.min(gw, cols - c0);
      const s = seg.subarray(0, len);
      for (let i = 0; i < len; i++) s[i] = w[r * cols + c0 + i]!;
      let im: Float64Array | undefined;
      if (imp && importance) {
        im = imp.subarray(0, len);
        for (let i = 0; i < len; i++) im[i] = importance[c0 + i]!;
      }
      const p = quantizer.fit(s, im);
      params[r * nGroups + g] = p;
      for (let i = 0; i < len; i++) q[r * cols + c0 + i] = quantizer.fakeQuant(s[i]!, p, i);
    }
  }
  return { q, params, nGroups, groupIndex: contiguousGroupIndex(cols, quantizer.groupSize) };
}
