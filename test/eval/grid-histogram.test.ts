// Weights on their format's grid (eval/grid-histogram.ts) and outlier input channels (eval/channel-outliers.ts):
// every weight is counted once in grid units w/s + z, where dequantization puts it back on a level
// (level − z)·s; the levels are the format's (int4 asym: 0..15; nf4: its 16 values in [−1, 1]); minmax
// groups span the integer grid exactly; outliers kept in f16 are left out; an input column scaled ×10 is
// found at its index with ratio ≈ 10, in bins of adjacent columns for wide tensors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { Tensor } from "../../src/core/tensor.js";
import { channelOutliers } from "../../src/eval/channel-outliers.js";
import { gridHistogram } from "../../src/eval/grid-histogram.js";
import type { Model } from "../../src/model/weights.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { NF4_LEVELS } from "../../src/formats/codebook.js";

const rows = 16, cols = 128;
const rng = new Rng(3);
const w = Float32Array.from({ length: rows * cols }, () => rng.normal());

test("int4:g32:asym: 16 levels 0..15, minmax groups fill the grid exactly, nothing clipped, every weight counted", () => {
  const q = quantizeTensor(w, [rows, cols], "int4:g32:asym");
  const h = gridHistogram("w", w, q, 60);
  assert.deepEqual(h.levels, Array.from({ length: 16 }, (_, i) => i));
  assert.equal(h.totalLevels, 16);
  assert.equal(h.counts.reduce((a, b) => a + b, 0), rows * cols);
  assert.equal(h.n, rows * cols);
  assert.equal(h.below + h.above, 0);
  // each group's min and max land on the end levels (up to the rounding of the stored scale)
  assert.ok(Math.abs(h.lo - 0) < 0.51 && Math.abs(h.hi - 15) < 0.51, `${h.lo}..${h.hi}`);
  // dequantized weights sit on the levels: (level − z)·s, so w/s + z of a dequantized tensor is a level
  const dq = q.dequantize();
  const hq = gridHistogram("ŵ", dq, q, 15 * 8);
  const width = (hq.hi - hq.lo) / hq.counts.length;
  for (let b = 0; b < hq.counts.length; b++) {
    if (hq.counts[b] === 0) continue;
    const x0 = hq.lo + b * width, x1 = x0 + width;
    assert.ok(hq.levels.some((v) => v >= x0 - 1e-3 && v <= x1 + 1e-3), `bin [${x0}, ${x1}) holds dequantized weights but no level`);
  }
});

test("nf4 levels are the NF4 table's; outliers kept in f16 are not counted; a clipped grid is counted as clipped", () => {
  const q = quantizeTensor(w, [rows, cols], "nf4:g64");
  const h = gridHistogram("w", w, q);
  assert.deepEqual(h.levels, [...NF4_LEVELS].map((v) => Math.fround(v)).sort((a, b) => a - b));
  const qo = quantizeTensor(w, [rows, cols], "int4:g64:outliers=1");
  const ho = gridHistogram("w", w, qo);
  assert.equal(ho.outliers, Math.ceil(0.01 * rows * cols));
  assert.equal(ho.n, rows * cols - ho.outliers);
  // percentile calibration clips the tails: they show up as clipped, beyond the end levels
  const hp = gridHistogram("w", w, quantizeTensor(w, [rows, cols], "int4:channel:p90"));
  assert.ok(hp.below > 0 && hp.above > 0, `${hp.below} / ${hp.above}`);
  assert.ok(hp.lo < -7.5 && hp.hi > 7.5);
  assert.throws(() => gridHistogram("w", w.subarray(1), q), /w: 2047 float weights for a nf4:g64 tensor of 2048/);
});

test("channel outliers: a column ×10 is found, ratio ≈ 10, wide tensors in bins", () => {
  const a = Float32Array.from(w);
  for (let r = 0; r < rows; r++) a[r * cols + 77] *= 10;
  const m = { weights: new Map([["t", { kind: "dense", tensor: new Tensor("f32", [rows, cols], a) }]]) } as unknown as Model;
  const [full] = channelOutliers(m, ["t"], 256);
  assert.equal(full!.maxColumn, 77);
  assert.equal(full!.binCols, 1);
  assert.equal(full!.ratio.length, cols);
  const median = full!.ratio.slice().sort((x, y) => x - y)[cols / 2]!;
  assert.ok(full!.maxRatio > 6 * median && full!.maxRatio < 30, String(full!.maxRatio));
  const [binned] = channelOutliers(m, ["t"], 16);
  assert.equal(binned!.binCols, 8);
  assert.equal(binned!.ratio.length, 16);
  assert.equal(binned!.ratio[Math.floor(77 / 8)], full!.maxRatio, "the bin holding column 77 has its ratio");
});
