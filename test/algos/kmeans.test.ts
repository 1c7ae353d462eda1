import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { kmeans, KMeansGroupQuantizer, kmeansQuantize, vqQuantize } from "../../src/algos/kmeans.js";
import { IntAffineQuantizer } from "../../src/algos/quantizer.js";
import { rtnQuantize } from "../../src/algos/rtn.js";
import { gaussian, sqErr } from "./helpers.js";

/** Exact 1-D k-means optimum by dynamic programming over sorted values (clusters are intervals). */
function optimalSse1d(values: number[], k: number): number {
  const v = [...values].sort((a, b) => a - b);
  const n = v.length;
  const pre = [0], pre2 = [0];
  for (const x of v) { pre.push(pre.at(-1)! + x); pre2.push(pre2.at(-1)! + x * x); }
  const cost = (i: number, j: number) => { const m = j - i, s = pre[j]! - pre[i]!; return pre2[j]! - pre2[i]! - (s * s) / m; };
  let dp = Array.from({ length: n + 1 }, (_, j) => (j === 0 ? 0 : cost(0, j)));
  for (let c = 2; c <= k; c++) {
    const nd = [0];
    for (let j = 1; j <= n; j++) { let b = Infinity; for (let i = c - 1; i < j; i++) b = Math.min(b, dp[i]! + cost(i, j)); nd.push(j < c ? 0 : b); }
    dp = nd;
  }
  return dp[n]!;
}

describe("kmeans", () => {
  test("Lloyd fixed point: every point at its nearest centroid, every centroid the mean of its points", () => {
    const rng = new Rng(41);
    const x = gaussian(rng, 500);
    const r = kmeans(x, 500, 1, { k: 8, seed: 3 });
    for (let j = 1; j < 8; j++) assert.ok(r.centroids[j]! > r.centroids[j - 1]!, "sorted, distinct");
    const sums = new Float64Array(8), counts = new Float64Array(8);
    let sse = 0;
    for (let p = 0; p < 500; p++) {
      const c = r.assign[p]!;
      for (let j = 0; j < 8; j++) assert.ok(Math.abs(x[p]! - r.centroids[c]!) <= Math.abs(x[p]! - r.centroids[j]!) + 1e-12);
      sums[c]! += x[p]!; counts[c]!++;
      sse += (x[p]! - r.centroids[c]!) ** 2;
    }
    for (let j = 0; j < 8; j++) assert.ok(Math.abs(sums[j]! / counts[j]! - r.centroids[j]!) < 1e-9, `centroid ${j}`);
    assert.ok(Math.abs(sse - r.sse) < 1e-9);
  });

  test("1-D k-means reaches the exact optimum (O(k n²) DP reference), and stays within 1% of it through the histogram path", () => {
    const rng = new Rng(42);
    for (const k of [2, 4, 8, 16]) {
      const x = Array.from(gaussian(rng, 150));
      const opt = optimalSse1d(x, k);
      const r = kmeans(x, 150, 1, { k, seed: 1 });
      assert.ok(Math.abs(r.sse - opt) <= 1e-9 * opt, `k=${k}: ${r.sse} vs optimum ${opt}`);
    }
    // more points than the DP's exact limit: histogram start + Lloyd
    const big = gaussian(rng, 20000);
    const r = kmeans(big, 20000, 1, { k: 8, seed: 1 });
    // Lloyd-Max optimum for a unit Gaussian at 8 levels: MSE 0.03455 (Max 1960, Table I)
    const mse = r.sse / 20000;
    console.log(`# kmeans 8 levels on 20000 N(0,1) samples: MSE ${mse.toFixed(5)} (Lloyd–Max 0.03455)`);
    assert.ok(Math.abs(mse - 0.03455) < 0.002, `${mse}`);
  });

  test("2-D Lloyd fixed point after k-means++ seeding", () => {
    const rng = new Rng(46);
    const x = gaussian(rng, 2 * 300);
    const r = kmeans(x, 300, 2, { k: 6, seed: 2, nInit: 3 });
    const sums = new Float64Array(12), counts = new Float64Array(6);
    for (let p = 0; p < 300; p++) {
      const c = r.assign[p]!;
      const d2 = (j: number) => (x[2 * p]! - r.centroids[2 * j]!) ** 2 + (x[2 * p + 1]! - r.centroids[2 * j + 1]!) ** 2;
      for (let j = 0; j < 6; j++) assert.ok(d2(c) <= d2(j) + 1e-12);
      sums[2 * c]! += x[2 * p]!; sums[2 * c + 1]! += x[2 * p + 1]!; counts[c]!++;
    }
    for (let j = 0; j < 6; j++) {
      assert.ok(counts[j]! > 0);
      assert.ok(Math.abs(sums[2 * j]! / counts[j]! - r.centroids[2 * j]!) < 1e-9);
      assert.ok(Math.abs(sums[2 * j + 1]! / counts[j]! - r.centroids[2 * j + 1]!) < 1e-9);
    }
    // more restarts never do worse than the first
    assert.ok(r.sse <= kmeans(x, 300, 2, { k: 6, seed: 2, nInit: 1 }).sse);
  });

  test("deterministic per seed; few distinct values are reproduced exactly", () => {
    const rng = new Rng(43);
    const x = gaussian(rng, 300);
    assert.deepEqual(kmeans(x, 300, 1, { k: 4, seed: 9 }), kmeans(x, 300, 1, { k: 4, seed: 9 }));
    const few = Float32Array.from({ length: 40 }, (_, i) => [-1.5, 0.25, 3][i % 3]!);
    const r = kmeans(few, 40, 1, { k: 4, seed: 0 });
    assert.equal(r.sse, 0);
    assert.ok(Array.from(few).every((v, p) => r.centroids[r.assign[p]!] === v));
  });

  test("weighted objective: heavy points pull their centroid", () => {
    const x = [0, 1, 10, 11];
    const r = kmeans(x, 4, 1, { k: 2, seed: 0, weights: [1, 9, 1, 1] });
    assert.ok(Math.abs(r.centroids[0]! - 0.9) < 1e-12);
  });

  test("per-channel 3-bit codebooks beat uniform int3 RTN per channel on Gaussian weights", () => {
    const rng = new Rng(44);
    const rows = 16, cols = 256;
    const w = gaussian(rng, rows * cols);
    const km = kmeansQuantize(w, rows, cols, { bits: 3, perChannel: true, seed: 0 });
    const rtn = rtnQuantize(w, rows, cols, new IntAffineQuantizer({ bits: 3 })).q;
    const ratio = sqErr(w, km.q) / sqErr(w, rtn);
    console.log(`# kmeans int3 per-channel: MSE k-means/RTN = ${ratio.toFixed(3)}`);
    assert.ok(ratio < 0.6, `${ratio}`);
    for (let i = 0; i < w.length; i++) assert.equal(km.q[i], km.codebooks[Math.floor(i / cols) * 8 + km.indices[i]!]);
    const tensor = kmeansQuantize(w, rows, cols, { bits: 3, seed: 0 });
    assert.equal(tensor.codebooks.length, 8);
    assert.equal(tensor.storageBits, rows * cols * 3 + 8 * 16);
  });

  test("KMeansGroupQuantizer snaps to the nearest learned level", () => {
    const q = new KMeansGroupQuantizer({ bits: 2, groupSize: 8 });
    const levels = q.fit([0, 0.1, 1, 1.1, 5, 5.2, -3, -3.1]);
    assert.equal(levels.length, 4);
    assert.ok(Math.abs(q.fakeQuant(0.9, levels) - 1.05) < 1e-12);
    assert.ok(Math.abs(q.fakeQuant(-10, levels) - -3.05) < 1e-12);
  });
});

describe("vector quantization", () => {
  test("on correlated pairs, VQ (d=2, k=16) beats scalar k-means (k=4) at the same 2 bits/weight", () => {
    const rng = new Rng(45);
    const rows = 32, cols = 128;
    const w = new Float32Array(rows * cols);
    for (let i = 0; i < w.length; i += 2) { const a = rng.normal(), b = rng.normal(); w[i] = a; w[i + 1] = 0.9 * a + 0.3 * b; }
    const vq = vqQuantize(w, rows, cols, { dim: 2, k: 16, seed: 1 });
    const sc = kmeansQuantize(w, rows, cols, { bits: 2, seed: 1 });
    const ratio = sqErr(w, vq.q) / sqErr(w, sc.q);
    console.log(`# vq d=2 k=16 vs scalar k=4 (2 bits/weight each): MSE ratio ${ratio.toFixed(3)}`);
    assert.ok(ratio < 0.7, `${ratio}`);
    // each sub-vector decodes to its codeword
    for (let p = 0; p < vq.indices.length; p++) for (let t = 0; t < 2; t++) assert.equal(vq.q[p * 2 + t], vq.codebooks[vq.indices[p]! * 2 + t]);
    assert.throws(() => vqQuantize(w, rows, cols, { dim: 3, k: 4 }), /sub-vector size 3 must divide the row length 128/);
  });
});
