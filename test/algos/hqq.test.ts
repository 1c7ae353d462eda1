import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Rng } from "../../src/core/rng.js";
import { HqqQuantizer, shrinkLp } from "../../src/algos/hqq.js";
import { IntAffineQuantizer } from "../../src/algos/quantizer.js";
import { rtnQuantize } from "../../src/algos/rtn.js";
import { gptqQuantize, HessianAccumulator } from "../../src/algos/gptq.js";
import { correlatedInputs, gaussian, outputError, sqErr } from "./helpers.js";

function heavyTailed(rng: Rng, n: number): Float32Array {
  // Student-t-like: normal / sqrt(chi²_3 / 3), the kind of tails LLM weights show
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = (rng.normal() ** 2 + rng.normal() ** 2 + rng.normal() ** 2) / 3;
    out[i] = (0.02 * rng.normal()) / Math.sqrt(c);
  }
  return out;
}

const meanAbs = (a: Float32Array, b: Float32Array) => { let s = 0; for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!); return s / a.length; };

describe("hqq", () => {
  test("shrink operator: soft threshold for p = 1, |x|^(p−1)/β threshold for p < 1", () => {
    assert.equal(shrinkLp(0.5, 10, 1), 0.4);
    assert.equal(shrinkLp(-0.05, 10, 1), 0);
    const x = 0.3, beta = 10, p = 0.7;
    assert.ok(Math.abs(shrinkLp(x, beta, p) - (x - x ** (p - 1) / beta)) < 1e-15);
    assert.ok(Math.abs(shrinkLp(-x, beta, p) + (x - x ** (p - 1) / beta)) < 1e-15);
    assert.equal(shrinkLp(0.01, beta, p), 0); // below the threshold
    // the shrunk value lowers the half-quadratic objective β/2 (y − x)² + |y|^p vs leaving x as is
    const obj = (y: number, v: number) => (beta / 2) * (y - v) ** 2 + Math.abs(y) ** p;
    for (const v of [0.5, 1, 2]) assert.ok(obj(shrinkLp(v, beta, p), v) < obj(v, v));
  });

  test("lowers the weight error vs RTN at 3 and 4 bits (g64, Gaussian and heavy-tailed weights)", () => {
    const rng = new Rng(31);
    const rows = 64, cols = 256;
    for (const [label, w] of [["gaussian", gaussian(rng, rows * cols, 0.02)], ["heavy-tailed", heavyTailed(rng, rows * cols)]] as const) {
      for (const bits of [3, 4]) {
        const rtn = rtnQuantize(w, rows, cols, new IntAffineQuantizer({ bits, groupSize: 64 })).q;
        const hqq = rtnQuantize(w, rows, cols, new HqqQuantizer({ bits, groupSize: 64 })).q;
        const hqqS = rtnQuantize(w, rows, cols, new HqqQuantizer({ bits, groupSize: 64, optimizeScale: true })).q;
        const mse = [rtn, hqq, hqqS].map((q) => sqErr(w, q) / w.length);
        const mae = [rtn, hqq, hqqS].map((q) => meanAbs(w, q));
        console.log(`# hqq ${label} int${bits}:g64: MSE HQQ/RTN = ${(mse[1]! / mse[0]!).toFixed(3)}, +scale ${(mse[2]! / mse[0]!).toFixed(3)}; mean|err| HQQ/RTN = ${(mae[1]! / mae[0]!).toFixed(3)}, +scale ${(mae[2]! / mae[0]!).toFixed(3)}`);
        assert.ok(mae[1]! < 0.97 * mae[0]!, `${label} int${bits}: mean |err| ${mae[1]} vs RTN ${mae[0]}`);
        assert.ok(mse[1]! < mse[0]!, `${label} int${bits}: MSE ${mse[1]} vs RTN ${mse[0]}`);
        assert.ok(mae[2]! < mae[0]!, `${label} int${bits} +scale: mean |err| ${mae[2]} vs RTN ${mae[0]}`);
      }
    }
  });

  test("the solver's error sequence decreases until it stops; the kept parameters score the best", () => {
    const rng = new Rng(32);
    const h = new HqqQuantizer({ bits: 3 });
    for (let k = 0; k < 20; k++) {
      const seg = gaussian(rng, 64);
      const { params, errors } = h.optimize(seg);
      for (let i = 1; i < errors.length - 1; i++) assert.ok(errors[i]! < errors[i - 1]!);
      let e = 0;
      for (const v of seg) e += Math.abs(v - h.fakeQuant(v, params));
      assert.ok(Math.abs(e / 64 - Math.min(...errors)) < 1e-9);
    }
  });

  test("constant and zero groups give exact values, never NaN (property)", () => {
    const h = new HqqQuantizer({ bits: 4, groupSize: 8 });
    fc.assert(fc.property(fc.float({ min: -100, max: 100, noNaN: true }), fc.integer({ min: 1, max: 9 }), (v, n) => {
      const seg = new Float32Array(n).fill(v);
      const p = h.fit(seg);
      return Array.from(seg).every((x) => Math.abs(h.fakeQuant(x, p) - x) <= 1e-6 * Math.abs(x));
    }));
  });

  test("composes with GPTQ as its target quantizer", () => {
    const rng = new Rng(33);
    const rows = 16, cols = 64, nTok = 256;
    const x = correlatedInputs(rng, nTok, cols, { k: 12, noise: 0.1 });
    const w = gaussian(rng, rows * cols, 0.05);
    const acc = new HessianAccumulator(cols);
    acc.add(x, nTok);
    const q = new HqqQuantizer({ bits: 3, groupSize: 32 });
    const g = gptqQuantize(w, rows, cols, acc.hessian(), q);
    const r = rtnQuantize(w, rows, cols, q);
    assert.ok(outputError(x, nTok, w, g.q, rows, cols) < outputError(x, nTok, w, r.q, rows, cols));
  });
});
