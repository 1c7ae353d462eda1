/** SmoothQuant (algos/smoothquant.ts) and the int8 matmul it runs on (algos/int8.ts). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Rng } from "../../src/core/rng.js";
import { int8Matmul, quantizeRowsInt8, quantizeTensorInt8 } from "../../src/algos/int8.js";
import { applySmoothing, fakeQuantActivations, smoothQuantScales } from "../../src/algos/smoothquant.js";
import { gaussian, matmulXWt, sqErr, sqNorm } from "./helpers.js";

function rmsnormRows(h: Float32Array, nTok: number, g: Float32Array): Float64Array {
  const n = g.length;
  const out = new Float64Array(nTok * n);
  for (let t = 0; t < nTok; t++) {
    let ss = 0;
    for (let j = 0; j < n; j++) ss += h[t * n + j]! ** 2;
    const inv = 1 / Math.sqrt(ss / n + 1e-6);
    for (let j = 0; j < n; j++) out[t * n + j] = h[t * n + j]! * inv * g[j]!;
  }
  return out;
}

describe("smoothquant", () => {
  test("scales follow s_j = max|X_j|^α / max|W_j|^(1−α) over all linears sharing the input", () => {
    const a = { w: Float32Array.of(1, -2, 0.5, 4), rows: 2 }; // (2, 2)
    const b = { w: Float32Array.of(-3, 0.25), rows: 1 }; // (1, 2)
    const s = smoothQuantScales([9, 16], [a, b], 0.5);
    assert.ok(Math.abs(s[0]! - 3 / Math.sqrt(3)) < 1e-12); // max|W_0| = 3
    assert.ok(Math.abs(s[1]! - 4 / Math.sqrt(4)) < 1e-12); // max|W_1| = 4
    const s8 = smoothQuantScales([9, 16], [a, b], 0.8);
    assert.ok(Math.abs(s8[1]! - 16 ** 0.8 / 4 ** 0.2) < 1e-12);
    assert.throws(() => smoothQuantScales([1], [], 1.5), /alpha must be in \[0, 1\]/);
  });

  test("smoothing folded into the preceding RMSNorm leaves float outputs unchanged", () => {
    const rng = new Rng(21);
    const nTok = 9, cols = 24;
    const h = gaussian(rng, nTok * cols);
    for (let t = 0; t < nTok; t++) h[t * cols + 4]! *= 40;
    const g = Float32Array.from(gaussian(rng, cols, 0.2), (v) => 1 + v);
    const lin = [{ w: gaussian(rng, 10 * cols), rows: 10 }, { w: gaussian(rng, 6 * cols), rows: 6 }];
    const before = lin.map((l) => matmulXWt(rmsnormRows(h, nTok, g), nTok, l.w, l.rows, cols));
    const u = rmsnormRows(h, nTok, g);
    const absMax = new Float64Array(cols);
    for (let t = 0; t < nTok; t++) for (let j = 0; j < cols; j++) absMax[j] = Math.max(absMax[j]!, Math.abs(u[t * cols + j]!));
    const wMax = new Float64Array(cols);
    for (const l of lin) for (let i = 0; i < l.w.length; i++) wMax[i % cols] = Math.max(wMax[i % cols]!, Math.abs(l.w[i]!));
    const s = smoothQuantScales(absMax, lin, 0.5);
    const gS = Float32Array.from(g);
    const after = applySmoothing(s, lin, gS, absMax)!;
    lin.forEach((l, k) => {
      const y = matmulXWt(rmsnormRows(h, nTok, gS), nTok, l.w, l.rows, cols);
      assert.ok(sqErr(before[k]!, y) / sqNorm(before[k]!) < 1e-12, `linear ${k}`);
    });
    // at α = 0.5 the smoothed activation max equals the smoothed weight max: both (max|X_j|·max|W_j|)^(1/2)
    for (let j = 0; j < cols; j++) {
      const both = Math.sqrt(absMax[j]! * wMax[j]!);
      assert.ok(Math.abs(after[j]! - both) < 1e-9 * both, `channel ${j}`);
      let wm = 0;
      for (const l of lin) for (let r = 0; r < l.rows; r++) wm = Math.max(wm, Math.abs(l.w[r * cols + j]!));
      assert.ok(Math.abs(wm - both) < 1e-5 * both, `weight channel ${j}`);
    }
  });

  test("int8 matmul equals the float product of the dequantized codes; per-row rounding error ≤ scale/2", () => {
    const rng = new Rng(22);
    const nTok = 5, rows = 7, cols = 33;
    const x = gaussian(rng, nTok * cols), w = gaussian(rng, rows * cols);
    const qx = quantizeRowsInt8(x, nTok, cols), qw = quantizeRowsInt8(w, rows, cols);
    const dx = Float64Array.from(qx.q, (v, i) => v * qx.scale[Math.floor(i / cols)]!);
    const dw = Float64Array.from(qw.q, (v, i) => v * qw.scale[Math.floor(i / cols)]!);
    const y = int8Matmul(qx, nTok, qw, rows, cols);
    const ref = matmulXWt(dx, nTok, dw, rows, cols);
    for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i]! - ref[i]!) <= 1e-5 * (1 + Math.abs(ref[i]!)));
    fc.assert(fc.property(fc.array(fc.float({ min: -1e4, max: 1e4, noNaN: true }), { minLength: 1, maxLength: 40 }), (vals) => {
      const a = Float32Array.from(vals);
      const q = quantizeRowsInt8(a, 1, a.length);
      for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - q.q[i]! * q.scale[0]!) > q.scale[0]! / 2 + 1e-6 * Math.abs(a[i]!)) return false;
      return true;
    }));
    // a static range smaller than the data saturates at ±127
    const t = quantizeTensorInt8(Float32Array.of(1, -3, 10), 2);
    assert.deepEqual(Array.from(t.q), [64, -127, 127]);
  });

  test("activation fake-quant: per-token uses each row's absmax, per-tensor the global one", () => {
    const x = Float32Array.of(1, -0.5, 0.25, 8, 4, -2); // (2, 3)
    const pt = fakeQuantActivations(x, 2, 3, 4, "per-token"); // qMax 7
    assert.deepEqual(Array.from(pt), [1, -4 / 7, 2 / 7, 8, 32 / 7, -16 / 7].map(Math.fround));
    const tensor = fakeQuantActivations(x, 2, 3, 4, "per-tensor"); // scale 8/7
    assert.deepEqual(Array.from(tensor), [8 / 7, -0, 0, 8, 32 / 7, -16 / 7].map(Math.fround));
  });
});
