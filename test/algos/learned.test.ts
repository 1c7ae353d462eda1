/**
 * Learned-codebook specs (kmeans<b>, vq<b>d<d>): the spec grammar, the stored layout (codes per weight or
 * per sub-vector, one codebook per tensor), encoding = nearest level / codeword (brute force reference),
 * a file round trip, and on stories260K's weights clustering beats the uniform grid of the same width.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { QuantlabError } from "../../src/core/errors.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { parseSpec, printSpec } from "../../src/quant/spec.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { packedBytes } from "../../src/quant/pack.js";
import { sqnrDb } from "../../src/quant/metrics.js";
import { fromEntries, toEntries } from "../../src/quant/serialize.js";
import { isLearnedSpec, quantizeLearned } from "../../src/algos/learned.js";

function gaussian(n: number, seed: number): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(n), 0.05);
}

describe("learned codebook specs", () => {
  test("parse and print", () => {
    for (const s of ["kmeans3:channel", "kmeans4:g32", "kmeans2:tensor", "vq8d4:channel", "vq6d2:g32", "kmeans3:channel:mse", "kmeans4:g64:scale=f16"]) {
      assert.equal(printSpec(parseSpec(s)), s);
      assert.ok(isLearnedSpec(s));
    }
    assert.equal(printSpec(parseSpec("kmeans3")), "kmeans3:channel");
    assert.equal(parseSpec("vq8d4:channel").bits, 8);
    assert.ok(!isLearnedSpec("nf4:g64"));
  });

  test("bad learned specs name the part", () => {
    const bad: [string, RegExp][] = [
      ["vq8d4:g30", /multiple of 4/],
      ["vq8d4:ichannel", /tensor, channel or g<N>/],
      ["vq8d4:channel:sr", /stochastic/],
      ["kmeans3:none", /needs a scale/],
      ["kmeans3:channel:asym", /schemes sym\/symfull\/asym\/asymf apply to integer grids/],
      ["kmeans13:channel", /unknown format "kmeans13"/],
      ["kmeans3:channel:kl", /k-means/],
    ];
    for (const [s, re] of bad) assert.throws(() => parseSpec(s), (e: unknown) => e instanceof QuantlabError && re.test(e.message), s);
    assert.throws(() => quantizeTensor(gaussian(64, 1), [2, 32], "kmeans3:channel"), /fitted to the tensor first/);
    assert.throws(() => quantizeLearned(gaussian(60, 1), [2, 30], "vq8d4:tensor"), /rows of 30 do not split into 4-weight sub-vectors/);
  });

  test("kmeans: every weight decodes to scale × its nearest level; storage counts codes, scales and the codebook", () => {
    const w = gaussian(16 * 40, 2);
    const q = quantizeLearned(w, [16, 40], "kmeans3:channel", { seed: 1 });
    const cb = q.codebook!;
    assert.equal(cb.length, 8);
    const x = q.dequantize();
    for (let r = 0; r < 16; r++) {
      const s = q.scales!.values[r]!;
      for (let c = 0; c < 40; c++) {
        const v = w[r * 40 + c]! / s;
        let best = Infinity;
        for (const l of cb) best = Math.min(best, Math.abs(v - l));
        assert.ok(Math.abs(Math.abs(x[r * 40 + c]! / s - v) - best) < 1e-6, `row ${r} col ${c}`);
      }
    }
    assert.equal(q.storageBits, 8 * packedBytes(640, 3) + 16 * 32 + 8 * 32);
  });

  test("vq: each d-weight sub-vector decodes to scale × its nearest codeword (brute force); file round trip", () => {
    const w = gaussian(8 * 24, 3);
    const q = quantizeLearned(w, [8, 24], "vq4d2:g12", { seed: 2 });
    const cb = q.codebook!;
    assert.equal(cb.length, 16 * 2);
    assert.equal(q.codeCount, 8 * 12);
    assert.equal(q.codes.length, packedBytes(96, 4));
    const x = q.dequantize();
    for (let v = 0; v < 96; v++) {
      const g = Math.floor(v / 6); // 6 sub-vectors per group of 12
      const s = q.scales!.values[g]!;
      let bj = -1, bd = Infinity;
      for (let j = 0; j < 16; j++) {
        const d = (w[2 * v]! / s - cb[2 * j]!) ** 2 + (w[2 * v + 1]! / s - cb[2 * j + 1]!) ** 2;
        if (d < bd) { bd = d; bj = j; }
      }
      assert.equal(x[2 * v], Math.fround(cb[2 * bj]! * s));
      assert.equal(x[2 * v + 1], Math.fround(cb[2 * bj + 1]! * s));
    }
    const { tensors, metadata } = toEntries("w", q);
    const back = fromEntries("w", (n) => tensors[n], metadata);
    assert.deepEqual(back.dequantize(), x);
    assert.equal(back.storageBits, q.storageBits);
  });

  test("an all-zero tensor stays zero; deterministic for a seed", () => {
    const z = quantizeLearned(new Float32Array(64), [2, 32], "vq4d2:channel");
    assert.ok(z.dequantize().every((v) => v === 0));
    const w = gaussian(256, 4);
    assert.deepEqual(quantizeLearned(w, [4, 64], "kmeans3:channel", { seed: 9 }).dequantize(), quantizeLearned(w, [4, 64], "kmeans3:channel", { seed: 9 }).dequantize());
  });

  test("stories260K: kmeans3 per channel beats int3 (min-max and MSE clip) per channel on every FFN weight", async () => {
    const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
    // every FFN weight of every layer, found by name (gate, up, down × nLayers), not a hand-written list
    const names = [...m.weights.keys()].filter((n) => /^blk\.\d+\.ffn_(gate|up|down)\.weight$/.test(n));
    assert.equal(names.length, 3 * m.config.nLayers);
    for (const name of names) {
      const { rows, cols, data } = dequantizeWeight(m.weights.get(name)!, name);
      const kq = quantizeLearned(data, [rows, cols], "kmeans3:channel").dequantize();
      // a 3-bit code per weight: at most 8 distinct values in a row (scale × one shared codebook)
      for (let r = 0; r < rows; r++) assert.ok(new Set(kq.subarray(r * cols, (r + 1) * cols)).size <= 8, `${name} row ${r}: more than 8 values`);
      const km = sqnrDb(data, kq);
      const mse = sqnrDb(data, quantizeTensor(data, [rows, cols], "int3:channel:mse").dequantize());
      const minmax = sqnrDb(data, quantizeTensor(data, [rows, cols], "int3:channel").dequantize());
      // measured: kmeans3 14.4–15.2 dB, int3:mse 13.1–13.9, int3 min-max 10.5–12.2 (every tensor)
      assert.ok(km > mse + 0.5, `${name}: kmeans3 ${km.toFixed(2)} dB vs int3:mse ${mse.toFixed(2)} dB`);
      assert.ok(km > minmax + 2, `${name}: kmeans3 ${km.toFixed(2)} dB vs int3 min-max ${minmax.toFixed(2)} dB`);
    }
  });
});
