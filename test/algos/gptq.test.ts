import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { HessianAccumulator, gptqQuantize } from "../../src/algos/gptq.js";
import { rtnQuantize } from "../../src/algos/rtn.js";
import { IntAffineQuantizer, type AffineParams } from "../../src/algos/quantizer.js";
import { correlatedInputs, gaussian, invertGJ, outputError } from "./helpers.js";

/**
 * Direct optimal-brain-quantizer reference: at every step, invert H restricted to the columns not
 * yet quantized (Gauss–Jordan, from scratch), quantize the next column q and apply
 * w_F ← w_F − (w_q − quant(w_q)) / [H_F⁻¹]_qq · [H_F⁻¹]_{F,q}. No Cholesky, no blocks.
 */
function obqReference(
  w: Float32Array, rows: number, cols: number, h: Float64Array, quant: IntAffineQuantizer,
  order: number[], staticGroups: boolean, percDamp: number,
): Float64Array {
  const W = Float64Array.from(w);
  const H = new Float64Array(h);
  for (let i = 0; i < cols; i++) if (H[i * cols + i] === 0) { H[i * cols + i] = 1; for (let r = 0; r < rows; r++) W[r * cols + i] = 0; }
  let md = 0;
  for (let i = 0; i < cols; i++) md += H[i * cols + i]!;
  for (let i = 0; i < cols; i++) H[i * cols + i]! += (percDamp * md) / cols;
  const gw = quant.groupSize || cols;
  const params = new Map<string, AffineParams>();
  const fitGroup = (r: number, cs: number[]) => quant.fit(cs.map((c) => W[r * cols + c]!));
  if (staticGroups) for (let r = 0; r < rows; r++) for (let g = 0; g * gw < cols; g++) {
    const cs: number[] = []; for (let c = g * gw; c < Math.min(cols, (g + 1) * gw); c++) cs.push(c);
    params.set(`${r}:${g}`, fitGroup(r, cs));
  }
  const Q = new Float64Array(rows * cols);
  for (let t = 0; t < cols; t++) {
    const F = order.slice(t);
    if (!staticGroups && t % gw === 0) for (let r = 0; r < rows; r++) params.set(`${r}:${t / gw}`, fitGroup(r, order.slice(t, t + gw)));
    const HF = new Float64Array(F.length * F.length);
    for (let i = 0; i < F.length; i++) for (let j = 0; j < F.length; j++) HF[i * F.length + j] = H[F[i]! * cols + F[j]!]!;
    const inv = invertGJ(HF, F.length);
    const qc = F[0]!;
    for (let r = 0; r < rows; r++) {
      const g = staticGroups ? Math.floor(qc / gw) : Math.floor(t / gw);
      const x = W[r * cols + qc]!;
      const qv = quant.fakeQuant(x, params.get(`${r}:${g}`)!);
      Q[r * cols + qc] = qv;
      const f = (x - qv) / inv[0]!;
      for (let j = 0; j < F.length; j++) W[r * cols + F[j]!]! -= f * inv[j * F.length]!;
    }
  }
  return Q;
}

function hessianOf(x: Float32Array, nTok: number, cols: number): Float64Array {
  const acc = new HessianAccumulator(cols);
  // stream in uneven chunks to exercise accumulation
  let t = 0;
  for (const n of [7, 64, 1, nTok]) {
    const m = Math.min(n, nTok - t);
    if (m <= 0) break;
    acc.add(x.subarray(t * cols, (t + m) * cols), m);
    t += m;
  }
  return acc.hessian();
}

describe("gptq", () => {
  test("HessianAccumulator equals 2/N XᵀX computed directly", () => {
    const rng = new Rng(1);
    const nTok = 100, cols = 13;
    const x = gaussian(rng, nTok * cols);
    const h = hessianOf(x, nTok, cols);
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let t = 0; t < nTok; t++) s += x[t * cols + i]! * x[t * cols + j]!;
      assert.ok(Math.abs(h[i * cols + j]! - (2 * s) / nTok) < 1e-9, `H[${i},${j}]`);
    }
  });

  const cases = [
    { label: "in order, dynamic groups g8 (ragged last group), block 5", actOrder: false, staticGroups: false, groupSize: 8, blockSize: 5 },
    { label: "in order, per-channel, block 128", actOrder: false, staticGroups: false, groupSize: 0, blockSize: 128 },
    { label: "act-order + static groups g8, block 3", actOrder: true, staticGroups: true, groupSize: 8, blockSize: 3 },
    { label: "act-order + dynamic groups g6, block 4", actOrder: true, staticGroups: false, groupSize: 6, blockSize: 4 },
  ];
  for (const c of cases) {
    test(`column updates equal the closed-form OBQ update: ${c.label}`, () => {
      const rng = new Rng(42);
      const rows = 6, cols = 20, nTok = 200;
      const x = correlatedInputs(rng, nTok, cols, { k: 6, noise: 0.2 });
      for (let t = 0; t < nTok; t++) x[t * cols + 11] = 0; // a dead input column
      // spread the scale of inputs so act-order actually permutes
      for (let t = 0; t < nTok; t++) for (let j = 0; j < cols; j++) x[t * cols + j]! *= 0.5 + j / 10;
      const w = gaussian(rng, rows * cols);
      const h = hessianOf(x, nTok, cols);
      const quant = new IntAffineQuantizer({ bits: 3, groupSize: c.groupSize });
      const res = gptqQuantize(w, rows, cols, h, quant, { actOrder: c.actOrder, staticGroups: c.staticGroups, blockSize: c.blockSize, percDamp: 0.01 });
      const order = Array.from(res.perm);
      if (c.actOrder) assert.notDeepEqual(order, [...Array(cols).keys()], "act-order should permute");
      const ref = obqReference(w, rows, cols, h, quant, order, c.staticGroups, 0.01);
      let maxDiff = 0;
      for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ref[i]! - res.q[i]!));
      assert.ok(maxDiff < 1e-5, `max |GPTQ − OBQ| = ${maxDiff}`);
      for (let r = 0; r < rows; r++) assert.equal(res.q[r * cols + 11], 0, "dead column quantizes to 0");
      // act-order with static groups keeps contiguous groups
      if (c.staticGroups && c.groupSize > 0) for (let j = 0; j < cols; j++) assert.equal(res.groupIndex[j], Math.floor(j / c.groupSize));
    });
  }

  test("single step: first column's update equals (w − q)/[H⁻¹]_qq · H⁻¹_{:,q}", () => {
    // With blockSize = cols and the quantizer made exact on every column but the first, GPTQ's
    // output on column j > 0 is w_j − δ_j with δ from column 0 only: check against H⁻¹ directly.
    const rng = new Rng(7);
    const rows = 3, cols = 9, nTok = 60;
    const x = correlatedInputs(rng, nTok, cols, { k: 3, noise: 0.3 });
    const w = gaussian(rng, rows * cols);
    const h = hessianOf(x, nTok, cols);
    const exactExceptFirst = {
      name: "round col 0 to integers", groupSize: 0,
      fit: () => null,
      fakeQuant: (v: number, _p: null, index: number) => (index === 0 ? Math.round(v) : v),
    };
    const res = gptqQuantize(w, rows, cols, h, exactExceptFirst, { percDamp: 0 });
    const inv = invertGJ(h, cols);
    for (let r = 0; r < rows; r++) {
      const e = w[r * cols]! - Math.round(w[r * cols]!);
      for (let j = 1; j < cols; j++) {
        const expected = w[r * cols + j]! - (e / inv[0]!) * inv[j * cols]!;
        assert.ok(Math.abs(res.q[r * cols + j]! - expected) < 1e-5, `row ${r} col ${j}: ${res.q[r * cols + j]} vs ${expected}`);
      }
    }
  });

  test("layer output error ‖WX − QX‖² is below RTN's on correlated data (int3/int4, g32)", () => {
    const rng = new Rng(3);
    const rows = 48, cols = 128, nTok = 512;
    const x = correlatedInputs(rng, nTok, cols, { k: 16, noise: 0.05 });
    const w = gaussian(rng, rows * cols, 0.05);
    const h = hessianOf(x, nTok, cols);
    for (const bits of [3, 4]) {
      const quant = new IntAffineQuantizer({ bits, groupSize: 32 });
      const rtn = rtnQuantize(w, rows, cols, quant);
      const eRtn = outputError(x, nTok, w, rtn.q, rows, cols);
      for (const actOrder of [false, true]) {
        const g = gptqQuantize(w, rows, cols, h, quant, { actOrder });
        const eG = outputError(x, nTok, w, g.q, rows, cols);
        const ratio = eG / eRtn;
        console.log(`# gptq int${bits}:g32 actOrder=${actOrder}: output error GPTQ/RTN = ${ratio.toFixed(3)}`);
        assert.ok(ratio < 0.8, `int${bits} actOrder=${actOrder}: GPTQ/RTN = ${ratio}`);
      }
    }
  });

  test("rejects a non-finite weight and a wrong Hessian size with named errors", () => {
    const quant = new IntAffineQuantizer({ bits: 4 });
    const w = new Float32Array([1, 2, NaN, 4]);
    assert.throws(() => gptqQuantize(w, 2, 2, new Float64Array(4).fill(1), quant, { name: "blk.0.attn_q.weight" }), /blk\.0\.attn_q\.weight: NaN or Inf in weight at row 1, col 0/);
    assert.throws(() => gptqQuantize(new Float32Array(4), 2, 2, new Float64Array(9), quant), /Hessian has 9 values, expected 2×2/);
  });

  test("an all-zero Hessian (every input dead) zeroes the weights, as the reference does", () => {
    const rng = new Rng(5);
    const w = gaussian(rng, 4 * 16);
    const quant = new IntAffineQuantizer({ bits: 4, groupSize: 8 });
    const g = gptqQuantize(w, 4, 16, new Float64Array(256), quant);
    // all columns dead → weights zeroed, as in the reference (no input ever reaches them)
    assert.ok(g.q.every((v) => v === 0));
  });
});
