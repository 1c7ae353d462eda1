import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { gptqQuantize, HessianAccumulator, IntAffineQuantizer, RegistryQuantizer, rtnQuantize } from "../../src/algos/index.js";
import { quantizeTensor, SpecQuantizer } from "../../src/quant/index.js";

/** rank-limited correlated inputs (nTok, cols) and a Gaussian weight (rows, cols) */
function problem(rows: number, cols: number, nTok: number, seed: number) {
  const rng = new Rng(seed);
  const w = new Float32Array(rows * cols).map(() => rng.normal() * 0.05);
  const basis = new Float64Array(16 * cols).map(() => rng.normal());
  const x = new Float32Array(nTok * cols);
  for (let t = 0; t < nTok; t++) {
    const z = Array.from({ length: 16 }, () => rng.normal());
    for (let c = 0; c < cols; c++) {
      let s = 0.05 * rng.normal();
      for (let k = 0; k < 16; k++) s += z[k]! * basis[k * cols + c]!;
      x[t * cols + c] = s;
    }
  }
  return { w, x };
}

function outputError(w: Float32Array, q: Float32Array, x: Float32Array, rows: number, cols: number, nTok: number): number {
  let e = 0;
  for (let t = 0; t < nTok; t++) {
    for (let r = 0; r < rows; r++) {
      let d = 0;
      for (let c = 0; c < cols; c++) d += (w[r * cols + c]! - q[r * cols + c]!) * x[t * cols + c]!;
      e += d * d;
    }
  }
  return e;
}

test("RegistryQuantizer for int asym equals the algos' own IntAffineQuantizer (same grid, same rounding)", () => {
  const rng = new Rng(3);
  const rows = 8, cols = 72; // 72 = 2·32 + 8: a ragged last group
  const w = new Float32Array(rows * cols).map(() => rng.normal());
  const a = rtnQuantize(w, rows, cols, new RegistryQuantizer("int3:g32:asym"));
  const b = rtnQuantize(w, rows, cols, new IntAffineQuantizer({ bits: 3, groupSize: 32 }));
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(a.q[i]! - b.q[i]!) <= 1e-6 * Math.abs(b.q[i]!) + 1e-7, `element ${i}: ${a.q[i]} vs ${b.q[i]}`);
});

for (const spec of ["int4:g32:asym", "int3:g16", "nf4:g32", "fp4_e2m1:g32", "ternary:channel", "int2:g32:asym", "int4:g32:asym:scale=f16"]) {
  test(`GPTQ targets ${spec}: packed QTensor decodes to GPTQ's values and beats RTN on output error`, () => {
    const rows = 24, cols = 80, nTok = 256;
    const { w, x } = problem(rows, cols, nTok, 11);
    const acc = new HessianAccumulator(cols);
    acc.add(x, nTok);
    const q = new RegistryQuantizer(spec);
    const r = gptqQuantize(w, rows, cols, acc.hessian(), q);
    const qt = q.toQTensor(r, rows, cols, "w");
    assert.deepEqual(Array.from(qt.dequantize()), Array.from(r.q), "codes re-encoded from GPTQ's grid values must decode to them exactly");
    // every GPTQ value is on the spec's grid for its group: re-quantizing with the group's own params changes nothing
    const sq = new SpecQuantizer(q.spec);
    const nG = r.nGroups;
    for (let row = 0; row < rows; row++) {
      for (let c = 0; c < cols; c++) {
        const p = r.params[row * nG + r.groupIndex[c]!]!;
        assert.equal(sq.fakeQuant(r.q[row * cols + c]!, p), r.q[row * cols + c]!);
      }
    }
    const rtn = quantizeTensor(w, [rows, cols], spec).dequantize();
    const eG = outputError(w, r.q, x, rows, cols, nTok);
    const eR = outputError(w, rtn, x, rows, cols, nTok);
    assert.ok(eG < 0.9 * eR, `${spec}: GPTQ output error ${eG} vs RTN ${eR}`);
  });
}

test("GPTQ with double-quantized scales (dq) still packs: values move at most by the super-scale rounding", () => {
  const rows = 16, cols = 64, nTok = 128;
  const { w, x } = problem(rows, cols, nTok, 5);
  const acc = new HessianAccumulator(cols);
  acc.add(x, nTok);
  const q = new RegistryQuantizer("nf4:g16:dq");
  const r = gptqQuantize(w, rows, cols, acc.hessian(), q);
  const deq = q.toQTensor(r, rows, cols).dequantize();
  let maxW = 0, maxD = 0;
  for (let i = 0; i < w.length; i++) { maxW = Math.max(maxW, Math.abs(w[i]!)); maxD = Math.max(maxD, Math.abs(deq[i]! - r.q[i]!)); }
  assert.ok(maxD < 0.05 * maxW, `dq re-rounding moved a value by ${maxD} (max |w| ${maxW})`);
});

test("HQQ through a registry spec: asymf keeps HQQ's float zero points, lowers weight error vs RTN, and packs exactly", () => {
  const rng = new Rng(9);
  const rows = 32, cols = 64;
  // heavy-tailed weights (Student-t-like), where HQQ's lp<1 objective helps
  const w = new Float32Array(rows * cols).map(() => rng.normal() / Math.sqrt(Math.max(0.05, -Math.log(rng.next() + 1e-12) / 3)) * 0.02);
  for (const spec of ["int3:g32:asymf", "int3:g32:asym"]) {
    const q = new RegistryQuantizer(spec, { hqq: {} });
    const r = rtnQuantize(w, rows, cols, q);
    const qt = q.toQTensor(r, rows, cols);
    assert.deepEqual(Array.from(qt.dequantize()), Array.from(r.q));
    if (spec.endsWith("asym")) for (const p of r.params) assert.ok(Number.isInteger(p.zero), "integer zero points for asym");
    const rtn = quantizeTensor(w, [rows, cols], spec).dequantize();
    // HQQ's objective is Σ|e|^0.7; with a float zero it also lowers the squared error here
    let lpH = 0, lpR = 0, eH = 0, eR = 0;
    for (let i = 0; i < w.length; i++) {
      lpH += Math.abs(w[i]! - r.q[i]!) ** 0.7; lpR += Math.abs(w[i]! - rtn[i]!) ** 0.7;
      eH += (w[i]! - r.q[i]!) ** 2; eR += (w[i]! - rtn[i]!) ** 2;
    }
    assert.ok(lpH < lpR, `${spec}: HQQ l0.7 error ${lpH} vs RTN ${lpR}`);
    if (spec.endsWith("asymf")) assert.ok(eH < eR, `${spec}: HQQ squared error ${eH} vs RTN ${eR}`);
  }
});

test("RegistryQuantizer rejects specs the column-walking methods cannot use, naming the spec", () => {
  assert.throws(() => new RegistryQuantizer("int4:tensor"), /int4:tensor.*channel or g<N>/);
  assert.throws(() => new RegistryQuantizer("int4:g32:outliers=1"), /outlier/);
  assert.throws(() => new RegistryQuantizer("int4:g32:sr"), /stochastic/);
  assert.throws(() => new RegistryQuantizer("nf4:g64", { hqq: {} }), /HQQ.*affine integer grid/);
});
