import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { awqClipSearch, awqQuantizePrep, awqSearchScales } from "../../src/algos/awq.js";
import { IntAffineQuantizer } from "../../src/algos/quantizer.js";
import { rtnQuantize } from "../../src/algos/rtn.js";
import { ChannelStats, divideNormInPlace, divideRowsInPlace, scaleColumnsInPlace } from "../../src/algos/stats.js";
import { correlatedInputs, gaussian, matmulXWt, sqErr } from "./helpers.js";

const outlierChannels = new Map([[3, 30], [17, 60], [40, 25]]);

function setup(seed: number, cols = 64, nTok = 256) {
  const rng = new Rng(seed);
  const x = correlatedInputs(rng, nTok, cols, { k: 16, noise: 0.2, outliers: outlierChannels });
  const linears = [
    { w: gaussian(rng, 24 * cols, 0.05), rows: 24 },
    { w: gaussian(rng, 8 * cols, 0.05), rows: 8 },
  ];
  const st = new ChannelStats(cols, { gram: true });
  st.add(x, nTok);
  const stats = { meanAbs: st.meanAbs(), gram: st.gram!, nTokens: st.nTokens };
  return { rng, x, cols, nTok, linears, stats };
}

describe("awq", () => {
  test("scale search returns the brute-force grid minimum of the output error", () => {
    const { x, cols, nTok, linears, stats } = setup(11);
    const quant = new IntAffineQuantizer({ bits: 3, groupSize: 16 });
    const res = awqSearchScales(linears, cols, stats, quant);
    assert.equal(res.alphas.length, 20);
    // brute force: outputs computed from the activations themselves
    const ma = new Float64Array(cols);
    for (let t = 0; t < nTok; t++) for (let j = 0; j < cols; j++) ma[j]! += Math.abs(x[t * cols + j]!) / nTok;
    const brute: number[] = [];
    for (let i = 0; i < 20; i++) {
      const alpha = i / 19;
      const s = Array.from(ma, (m) => Math.max(m ** alpha, 1e-4));
      const norm = Math.sqrt(Math.max(...s) * Math.min(...s));
      for (let j = 0; j < cols; j++) s[j]! /= norm;
      let err = 0, outs = 0;
      for (const l of linears) {
        const ws = Float32Array.from(l.w);
        for (let r = 0; r < l.rows; r++) for (let c = 0; c < cols; c++) ws[r * cols + c]! *= s[c]!;
        const q = rtnQuantize(ws, l.rows, cols, quant).q;
        for (let r = 0; r < l.rows; r++) for (let c = 0; c < cols; c++) q[r * cols + c]! /= s[c]!;
        err += sqErr(matmulXWt(x, nTok, l.w, l.rows, cols), matmulXWt(x, nTok, q, l.rows, cols));
        outs += l.rows * nTok;
      }
      brute.push(err / outs);
      assert.ok(Math.abs(res.losses[i]! - err / outs) <= 1e-6 * (err / outs), `loss at α=${alpha}: ${res.losses[i]} vs ${err / outs}`);
    }
    const argmin = brute.indexOf(Math.min(...brute));
    assert.equal(res.alpha, argmin / 19);
    const ratio = Math.min(...brute) / brute[0]!;
    console.log(`# awq int3:g16, 3 outlier channels: best α=${res.alpha.toFixed(3)}, output error AWQ/RTN = ${ratio.toFixed(3)}`);
    assert.ok(ratio < 0.8, `AWQ should beat RTN on outlier channels: ${ratio}`);
  });

  test("clip search picks, per group, the bound with the least partial-output error (brute force)", () => {
    const { x, cols, nTok, linears } = setup(12, 32, 128);
    const st = new ChannelStats(cols, { gram: true });
    st.add(x, nTok);
    const quant = new IntAffineQuantizer({ bits: 3, groupSize: 8 });
    const l = linears[1]!;
    const res = awqClipSearch(l.w, l.rows, cols, st.gram!, quant);
    let clippedGroups = 0;
    for (let r = 0; r < l.rows; r++) for (let g = 0; g < 4; g++) {
      const seg = Array.from(l.w.subarray(r * cols + g * 8, r * cols + g * 8 + 8));
      const amax = Math.max(...seg.map(Math.abs));
      const errs: number[] = [];
      for (let k = 0; k < 10; k++) {
        const m = amax * (1 - k / 20);
        const c = seg.map((v) => Math.min(m, Math.max(-m, v)));
        const p = quant.fit(c);
        const d = seg.map((v, i) => v - quant.fakeQuant(c[i]!, p));
        let e = 0;
        for (let t = 0; t < nTok; t++) { let s = 0; for (let i = 0; i < 8; i++) s += d[i]! * x[t * cols + g * 8 + i]!; e += s * s; }
        errs.push(e);
      }
      const k = errs.indexOf(Math.min(...errs));
      assert.ok(Math.abs(res.clipMax[r * 4 + g]! - Math.fround(amax * (1 - k / 20))) <= 1e-6 * amax, `row ${r} group ${g}`);
      if (k > 0) clippedGroups++;
    }
    assert.ok(clippedGroups > 0, "some group should prefer clipping at 3 bits");
  });

  test("folding 1/s into the RMSNorm weight or the previous linear leaves float outputs unchanged", () => {
    const rng = new Rng(13);
    const cols = 16, rows = 5, nTok = 7, hidden = 16;
    const h = gaussian(rng, nTok * cols);
    const gNorm = Float32Array.from(gaussian(rng, cols), (v) => 1 + 0.3 * v);
    const w = gaussian(rng, rows * cols);
    const s = Float64Array.from(gaussian(rng, cols), (v) => Math.exp(0.5 * v));
    const rmsnorm = (g: Float32Array) => {
      const out = new Float64Array(nTok * cols);
      for (let t = 0; t < nTok; t++) {
        let ss = 0;
        for (let j = 0; j < cols; j++) ss += h[t * cols + j]! ** 2;
        const inv = 1 / Math.sqrt(ss / cols + 1e-5);
        for (let j = 0; j < cols; j++) out[t * cols + j] = h[t * cols + j]! * inv * g[j]!;
      }
      return out;
    };
    const y0 = matmulXWt(rmsnorm(gNorm), nTok, w, rows, cols);
    const g2 = Float32Array.from(gNorm); divideNormInPlace(g2, s);
    const w2 = Float32Array.from(w); scaleColumnsInPlace(w2, rows, cols, s);
    const y1 = matmulXWt(rmsnorm(g2), nTok, w2, rows, cols);
    assert.ok(sqErr(y0, y1) < 1e-8, `norm fold changed outputs by ${sqErr(y0, y1)}`);
    // previous linear: W2 (W1 x) = (W2 diag s)(diag(1/s) W1 x)
    const w1 = gaussian(rng, hidden * cols);
    const w2b = gaussian(rng, rows * hidden);
    const z0 = matmulXWt(matmulXWt(h, nTok, w1, hidden, cols), nTok, w2b, rows, hidden);
    const w1s = Float32Array.from(w1); divideRowsInPlace(w1s, hidden, cols, s);
    const w2s = Float32Array.from(w2b); scaleColumnsInPlace(w2s, rows, hidden, s);
    const z1 = matmulXWt(matmulXWt(h, nTok, w1s, hidden, cols), nTok, w2s, rows, hidden);
    assert.ok(sqErr(z0, z1) < 1e-8, `linear fold changed outputs by ${sqErr(z0, z1)}`);
  });

  test("scales + clipping + RTN beat RTN end to end on planted outlier channels (int4 and int3, g32)", () => {
    const { x, cols, nTok, linears, stats } = setup(14);
    for (const bits of [4, 3]) {
      const quant = new IntAffineQuantizer({ bits, groupSize: 32 });
      const prep = awqQuantizePrep(linears, cols, stats, quant);
      let eAwq = 0, eRtn = 0, eNoClip = 0;
      const prepNoClip = awqQuantizePrep(linears, cols, stats, quant, { clip: false });
      linears.forEach((l, k) => {
        const y = matmulXWt(x, nTok, l.w, l.rows, cols);
        // quantize W·s and run it on x/s (what the folded model computes)
        const xs = Float32Array.from(x); scaleColumnsInPlace(xs, nTok, cols, prep.scales.map((v) => 1 / v));
        eAwq += sqErr(y, matmulXWt(xs, nTok, rtnQuantize(prep.weights[k]!, l.rows, cols, quant).q, l.rows, cols));
        eNoClip += sqErr(y, matmulXWt(xs, nTok, rtnQuantize(prepNoClip.weights[k]!, l.rows, cols, quant).q, l.rows, cols));
        eRtn += sqErr(y, matmulXWt(x, nTok, rtnQuantize(l.w, l.rows, cols, quant).q, l.rows, cols));
      });
      console.log(`# awq int${bits}:g32 end to end: AWQ(scale+clip)/RTN = ${(eAwq / eRtn).toFixed(3)}, scale only/RTN = ${(eNoClip / eRtn).toFixed(3)} (α=${prep.alpha.toFixed(3)})`);
      assert.ok(eAwq < 0.8 * eRtn, `int${bits}: ${eAwq / eRtn}`);
    }
  });

  test("bad inputs give named errors", () => {
    const quant = new IntAffineQuantizer({ bits: 4 });
    const stats = { meanAbs: new Float64Array(4), gram: new Float64Array(16), nTokens: 1 };
    assert.throws(() => awqSearchScales([{ w: new Float32Array(6), rows: 2 }], 4, stats, quant, { name: "blk.1.ffn_up.weight" }), /awq blk\.1\.ffn_up\.weight: weight has 6 values but shape is \(2, 4\)/);
    assert.throws(() => awqSearchScales([{ w: new Float32Array(10), rows: 2 }], 5, stats, quant), /statistics are for width 4, weights have 5 columns/);
  });
});
