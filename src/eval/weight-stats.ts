/** Per-tensor weight statistics of a model (`quantlab inspect`), read one lazily loaded tensor at a time. */
import { isWeightLoaded, releaseWeight } from "../core/weight.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import type { Model } from "../model/weights.js";
import { tensorStats, type TensorStats } from "../quant/stats.js";

export type WeightStatsRow = { name: string; shape: number[] } & TensorStats;

/**
 * Statistics of the named weights, one at a time. A lazily loaded weight is read for its row and let go
 * again unless `keep` (or it was loaded before), so memory stays near one tensor and only these
 * tensors' bytes are read.
 */
export function weightStats(model: Model, names: readonly string[], keep = false): WeightStatsRow[] {
  return names.map((name) => {
    const w = model.weights.get(name)!;
    const wasLoaded = isWeightLoaded(w);
    const { rows, cols, data } = dequantizeWeight(w, name);
    const row = { name, shape: rows === 1 ? [cols] : [rows, cols], ...tensorStats(data, rows, cols) };
    if (!keep && !wasLoaded) releaseWeight(w);
    return row;
  });
}

