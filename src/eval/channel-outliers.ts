/**
 * Outlier input channels of weight matrices: for each tensor (rows, cols), the largest |w| of every input
 * column, divided by the median of those column maxima. A column far above 1 is an outlier channel — what
 * per-tensor and per-channel scales handle badly and LLM.int8() / AWQ / SmoothQuant exist for. Wide
 * matrices are summarized in at most `maxBins` bins of adjacent columns (the largest ratio of the bin), so
 * a heatmap of every block linear stays readable. Lazily loaded weights are read one at a time and let go.
 */
import { isWeightLoaded, releaseWeight } from "../core/weight.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import type { Model } from "../model/weights.js";

export interface ChannelOutlierRow {
  tensor: string;
  cols: number;
  /** columns per bin */
  binCols: number;
  /** per bin: max over its columns of (column max |w|) / (median column max |w|) */
  ratio: number[];
  /** the largest ratio and its column */
  maxRatio: number;
  maxColumn: number;
}

export function channelOutliers(model: Model, names: readonly string[], maxBins = 64): ChannelOutlierRow[] {
  return names.map((name) => {
    const w = model.weights.get(name)!;
    const wasLoaded = isWeightLoaded(w);
    const { rows, cols, data } = dequantizeWeight(w, name);
    if (!wasLoaded) releaseWeight(w);
    const colMax = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let c = 0; c < cols; c++) {
        const a = Math.abs(data[o + c]!);
        if (a > colMax[c]!) colMax[c] = a;
      }
    }
    const sorted = Float64Array.from(colMax).sort();
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    const binCols = Math.ceil(cols / Math.min(maxBins, cols));
    const ratio: number[] = [];
    let maxRatio = 0, maxColumn = 0;
    for (let c0 = 0; c0 < cols; c0 += binCols) {
      let m = 0;
      for (let c = c0; c < Math.min(cols, c0 + binCols); c++) {
        const v = median > 0 ? colMax[c]! / median : 0;
        if (v > m) m = v;
        if (v > maxRatio) { maxRatio = v; maxColumn = c; }
      }
      ratio.push(m);
    }
    return { tensor: name, cols, binCols, ratio, maxRatio, maxColumn };
  });
}
