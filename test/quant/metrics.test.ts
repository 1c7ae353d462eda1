/** Error metrics (quant/metrics.ts): known values, and SQNR of uniform quantization ≈ 6.02·b + 1.76 dB. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { cosineSimilarity, errorStats, maxAbsError, nmse, sqnrDb } from "../../src/quant/metrics.js";

describe("metrics", () => {
  test("known values", () => {
    const x = [1, 2, 3, 4], y = [1, 2, 3, 5];
    assert.equal(nmse(x, y), 1 / 30);
    assert.ok(Math.abs(sqnrDb(x, y) - 10 * Math.log10(30)) < 1e-12);
    assert.equal(maxAbsError(x, y), 1);
    assert.ok(Math.abs(cosineSimilarity(x, y) - 34 / Math.sqrt(30 * 39)) < 1e-15);
    assert.deepEqual(errorStats([0, 0], [0, 0]), { sqnrDb: Infinity, nmse: 0, mse: 0, maxAbsError: 0, cosine: 1 });
    const z = errorStats([0, 0], [1, 0]);
    assert.equal(z.sqnrDb, -Infinity);
    assert.equal(z.nmse, Infinity);
    assert.equal(z.cosine, 0);
    assert.equal(sqnrDb(x, x), Infinity);
    assert.throws(() => errorStats([1], [1, 2]), /length mismatch 1 vs 2/);
  });
  test("SQNR of uniform b-bit quantization ≈ 6.02·b + 1.76 dB for a full-scale sine (sanity)", () => {
    const n = 1 << 14;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = Math.sin((2 * Math.PI * i * 1001) / n);
    const d = quantizeTensor(x, [1, n], "int8:tensor:symfull").dequantize();
    const s = sqnrDb(x, d);
    assert.ok(Math.abs(s - (6.02 * 8 + 1.76)) < 1, `int8 sine SQNR ${s}`);
  });
});
