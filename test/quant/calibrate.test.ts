/** Weight clipping calibration (quant/calibrate.ts): min-max, percentile, MSE and KL clipping on heavy-tailed data, and the primitives behind them. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { absHistogram, absPercentile, klThreshold, mseClipRatios, percentileRange, percentileSorted, searchClipRatio } from "../../src/quant/calibrate.js";
import { errorStats } from "../../src/quant/metrics.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { studentT } from "../helpers/random.js";

function sqnr(w: Float32Array, shape: number[], spec: string): number {
  return errorStats(w, quantizeTensor(w, shape, spec).dequantize()).sqnrDb;
}

describe("weight clipping calibration at 3 bits on heavy-tailed data", () => {
  // Student-t ν = 3, 256 × 256 (kurtosis is infinite in theory; the sample max is tens of σ)
  const w = studentT(256 * 256, 3, 7);
  const shape = [256, 256];
  const r = {
    tensor: { minmax: sqnr(w, shape, "int3:tensor"), mse: sqnr(w, shape, "int3:tensor:mse"), kl: sqnr(w, shape, "int3:tensor:kl"), p99: sqnr(w, shape, "int3:tensor:p99") },
    channel: { minmax: sqnr(w, shape, "int3:channel"), mse: sqnr(w, shape, "int3:channel:mse"), kl: sqnr(w, shape, "int3:channel:kl") },
    g32: { minmax: sqnr(w, shape, "int3:g32"), mse: sqnr(w, shape, "int3:g32:mse"), asym: sqnr(w, shape, "int3:g32:asym"), asymMse: sqnr(w, shape, "int3:g32:asym:mse") },
  };

  test("per tensor: MSE and KL clipping beat min-max by > 6 dB", () => {
    // measured: min-max 0.50 dB, mse 7.06, kl 6.89, p99 6.90
    assert.ok(r.tensor.minmax < 1, JSON.stringify(r.tensor));
    assert.ok(r.tensor.mse > r.tensor.minmax + 6, JSON.stringify(r.tensor));
    assert.ok(r.tensor.kl > r.tensor.minmax + 6, JSON.stringify(r.tensor));
    assert.ok(r.tensor.p99 > r.tensor.minmax + 6, JSON.stringify(r.tensor));
    assert.ok(r.tensor.mse >= r.tensor.kl, "MSE search optimizes the measured error directly");
  });
  test("per channel: MSE > KL > min-max", () => {
    // measured: min-max 5.88, kl 6.59, mse 8.26
    assert.ok(r.channel.mse > r.channel.minmax + 2, JSON.stringify(r.channel));
    assert.ok(r.channel.kl > r.channel.minmax + 0.4, JSON.stringify(r.channel));
    assert.ok(r.channel.mse > r.channel.kl, JSON.stringify(r.channel));
  });
  test("per group of 32: MSE still helps (symmetric and asymmetric)", () => {
    // measured: min-max 10.42, mse 11.32; asym 13.51, asym+mse 13.99
    assert.ok(r.g32.mse > r.g32.minmax + 0.6, JSON.stringify(r.g32));
    assert.ok(r.g32.asymMse > r.g32.asym + 0.3, JSON.stringify(r.g32));
  });
  test("finer groups beat coarser ones at the same bits", () => {
    assert.ok(r.g32.minmax > r.channel.minmax && r.channel.minmax > r.tensor.minmax, JSON.stringify(r));
  });
});

describe("each method picks its documented clip (brute-force references, int3 on Student-t rows)", () => {
  const rows = 8, cols = 96;
  const w = studentT(rows * cols, 3, 3);
  const rne = (v: number) => { const k = Math.round(v); return k - v === 0.5 && k % 2 !== 0 ? k - 1 : k; };
  /** the values of group g of the [rows, cols] tensor in groups of G along a row */
  const group = (g: number, G: number) => { const per = cols / G; const r = Math.floor(g / per); return Array.from(w.subarray(r * cols + (g % per) * G, r * cols + (g % per) * G + G)); };
  const symErr = (seg: number[], s: number) => seg.reduce((a, v) => a + (v - Math.max(-3, Math.min(3, rne(v / s))) * s) ** 2, 0);

  test("p<pct>: scale · 3 = the pct-th percentile of the group's |w| (linear between ranks), per channel and per group", () => {
    for (const [spec, G, pct] of [["int3:channel:p99", cols, 99], ["int3:channel:p90", cols, 90], ["int3:g32:p99", 32, 99]] as const) {
      const q = quantizeTensor(w, [rows, cols], spec);
      for (let g = 0; g < q.layout.nGroups; g++) {
        const abs = group(g, G).map(Math.abs).sort((a, b) => a - b);
        const pos = (pct / 100) * (abs.length - 1), lo = Math.floor(pos);
        const want = abs[lo]! + (abs[Math.min(lo + 1, abs.length - 1)]! - abs[lo]!) * (pos - lo);
        const clip = q.groupParams(g).scale * 3;
        assert.ok(Math.abs(clip / want - 1) < 1e-6, `${spec} group ${g}: clip ${clip}, percentile ${want}`);
        assert.ok(clip < abs[abs.length - 1]!, `${spec} group ${g}: clipped below max |w|`);
      }
    }
  });

  test("mse: the clip ratio of the grid (1 … 0.0085) with the least squared error of the group, found by trying every ratio", () => {
    for (const [spec, G] of [["int3:channel:mse", cols], ["int3:g32:mse", 32]] as const) {
      const q = quantizeTensor(w, [rows, cols], spec);
      for (let g = 0; g < q.layout.nGroups; g++) {
        const seg = group(g, G);
        const amax = Math.max(...seg.map(Math.abs));
        let best = Infinity;
        for (const ratio of mseClipRatios()) best = Math.min(best, symErr(seg, Math.fround((ratio * amax) / 3)));
        const got = symErr(seg, q.groupParams(g).scale);
        assert.ok(got <= best * (1 + 1e-9), `${spec} group ${g}: error ${got}, best on the grid ${best}`);
        assert.ok(got < symErr(seg, Math.fround(amax / 3)), `${spec} group ${g}: no better than min-max`);
      }
    }
    // affine: the clip scales both ends of [min, max] by the ratio; integer zero point = rne(−min·ratio / scale)
    const q = quantizeTensor(w, [rows, cols], "int3:g32:asym:mse");
    for (let g = 0; g < q.layout.nGroups; g++) {
      const seg = group(g, 32);
      const lo = Math.min(0, ...seg), hi = Math.max(0, ...seg);
      const affErr = (s: number, z: number) => seg.reduce((a, v) => a + (v - (Math.max(0, Math.min(7, rne(v / s) + z)) - z) * s) ** 2, 0);
      let best = Infinity;
      for (const ratio of mseClipRatios()) { const s = ((hi - lo) * ratio) / 7; best = Math.min(best, affErr(s, rne((-lo * ratio) / s))); }
      const { scale, zero } = q.groupParams(g);
      assert.ok(affErr(scale, zero) <= best * (1 + 1e-6), `asym group ${g}: error ${affErr(scale, zero)}, best on the grid ${best}`);
    }
  });
});

describe("calibration primitives", () => {
  test("percentiles interpolate between ranks", () => {
    assert.equal(percentileSorted([1, 2, 3, 4, 5], 50), 3);
    assert.equal(percentileSorted([1, 2, 3, 4, 5], 100), 5);
    assert.equal(percentileSorted([0, 10], 25), 2.5);
    assert.equal(absPercentile(Float32Array.from([-4, 1, 2, -3]), 100), 4);
    assert.deepEqual(percentileRange(Float32Array.from([-10, 0, 1, 2, 3, 4, 5, 6, 7, 100]), 100), { lo: -10, hi: 100 });
  });
  test("MSE grid: GPTQ's linear 1 … 0.21, then geometric to ~0.0085; ties keep the largest ratio", () => {
    const r = mseClipRatios();
    assert.equal(r.length, 110);
    assert.equal(r[0], 1);
    assert.ok(Math.abs(r[79]! - 0.21) < 1e-12);
    assert.ok(Math.abs(r[109]! - 0.2 * 0.9 ** 30) < 1e-15);
    assert.equal(searchClipRatio(() => 1), 1);
    assert.equal(searchClipRatio((x) => (x - 0.5) ** 2), r[50]);
  });
  test("KL threshold: uniform data keeps the whole range; a far outlier gets clipped", () => {
    const uniform = new Float64Array(2048).fill(10);
    const uniformT = klThreshold(uniform, 1 / 2048, (v, T) => Math.round(v / (T / 127)), 128);
    assert.ok(uniformT > 0.95, `uniform threshold ${uniformT}`);
    const rng = new Rng(3);
    const x = rng.fillNormal(new Float32Array(100000));
    x[0] = 60; // one outlier at 60σ
    const h = absHistogram(x, 2048, 60);
    const T = klThreshold(h, 60 / 2048, (v, T) => Math.round(v / (T / 127)), 128);
    assert.ok(T > 3 && T < 10, `normal+outlier threshold ${T}`);
  });
});
