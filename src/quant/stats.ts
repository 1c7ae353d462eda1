/**
 * Distribution statistics of a weight matrix (rows = output channels, cols = input channels), the numbers
 * that predict how hard it is to quantize: spread, heavy tails (max/std, excess kurtosis) and outlier
 * input channels (a column whose absmax is > 6× the median column absmax, cf. LLM.int8's outlier features).
 */
export interface TensorStats {
  numel: number;
  mean: number;
  std: number;
  absMax: number;
  /** absMax / std */
  maxOverStd: number;
  /** excess kurtosis (0 for a Gaussian) */
  kurtosis: number;
  /** input channels (columns) with absmax > 6 × the median column absmax */
  outlierInputChannels: number[];
  /** output channels (rows) with absmax > 6 × the median row absmax */
  outlierOutputChannels: number[];
}

export const OUTLIER_CHANNEL_RATIO = 6;

function outliers(absMax: Float64Array): number[] {
  const sorted = Float64Array.from(absMax).sort();
  const median = sorted.length ? sorted[sorted.length >> 1]! : 0;
  const out: number[] = [];
  if (median > 0) for (let i = 0; i < absMax.length; i++) if (absMax[i]! > OUTLIER_CHANNEL_RATIO * median) out.push(i);
  return out;
}

export function tensorStats(w: ArrayLike<number>, rows: number, cols: number): TensorStats {
  const n = rows * cols;
  let s1 = 0;
  for (let i = 0; i < n; i++) s1 += w[i]!;
  const mean = n ? s1 / n : 0;
  let m2 = 0, m4 = 0, amax = 0;
  const colMax = new Float64Array(cols), rowMax = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = w[r * cols + c]!;
      const d = v - mean, d2 = d * d;
      m2 += d2; m4 += d2 * d2;
      const a = Math.abs(v);
      if (a > amax) amax = a;
      if (a > colMax[c]!) colMax[c] = a;
      if (a > rowMax[r]!) rowMax[r] = a;
    }
  }
  m2 = n ? m2 / n : 0;
  m4 = n ? m4 / n : 0;
  const std = Math.sqrt(m2);
  return {
    numel: n, mean, std, absMax: amax,
    maxOverStd: std > 0 ? amax / std : 0,
    kurtosis: m2 > 0 ? m4 / (m2 * m2) - 3 : 0,
    outlierInputChannels: outliers(colMax),
    outlierOutputChannels: outliers(rowMax),
  };
}
