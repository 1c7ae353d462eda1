/**
 * The inline encode loops of quantizeTensor (level formats: table search; int grids: arithmetic) give the
 * same codes as the scalar reference SpecQuantizer.encode, element by element — on Gaussian weights, on
 * every exact midpoint between two levels (ties), ±0, tiny values and values far beyond the range.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { listFormats } from "../../src/formats/registry.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { SpecQuantizer } from "../../src/quant/quantizer.js";
import { parseSpec } from "../../src/quant/spec.js";

/** values in scale units covering every level, every midpoint and the ends, then ×scale by the tensor. */
function hostile(values: Float64Array, rng: Rng): number[] {
  const out: number[] = [0, -0, 1e-30, -1e-30, 1e30, -1e30];
  for (let i = 0; i < values.length; i++) {
    out.push(values[i]!);
    if (i + 1 < values.length) {
      const m = values[i]! / 2 + values[i + 1]! / 2;
      out.push(m, m + 1e-12 * Math.abs(m || 1), m - 1e-12 * Math.abs(m || 1));
    }
  }
  for (let i = 0; i < 2000; i++) out.push(rng.normal() * values[values.length - 1]! * 0.6);
  return out;
}

describe("inline encode = SpecQuantizer.encode", () => {
  const levelFormats = listFormats().filter((f) => f.bits <= 8 && f.family !== "int" && f.family !== "zero" && f.nearestTable?.() !== undefined);
  test("formats with a nearest table", () => {
    const names = levelFormats.map((f) => f.name);
    for (const n of ["fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp4_e2m1", "nf4", "ternary", "binary", "pow2_4", "logsqrt2_4", "pow2sum_5"]) assert.ok(names.includes(n), n);
  });
  for (const f of levelFormats) {
    test(`${f.name}:tensor with scale 1 hits every level and midpoint; ${f.name}:g7 on Gaussian weights`, () => {
      const rng = new Rng(f.id);
      // tensor granularity with a fixed scale: force it through the params option (scale 1)
      const xs = Float32Array.from(hostile(f.values()!, rng));
      const spec = parseSpec(`${f.name}:tensor`);
      const q = new SpecQuantizer(spec);
      const qt = quantizeTensor(xs, [1, xs.length], spec, { params: [{ scale: 1, zero: 0 }] });
      const got = qt.unpackCodes();
      for (let i = 0; i < xs.length; i++) assert.equal(got[i], q.encode(xs[i]!, 1, 0), `${f.name}: x = ${xs[i]}`);
      const w = rng.fillNormal(new Float32Array(9 * 40), 0.03);
      const spec2 = parseSpec(`${f.name}:g7`);
      const q2 = quantizeTensor(w, [9, 40], spec2);
      const c2 = q2.unpackCodes();
      for (let i = 0; i < w.length; i++) {
        const g = Math.floor(i / 40) * 6 + Math.floor((i % 40) / 7);
        assert.equal(c2[i], q2.quantizer.encode(w[i]!, q2.scales!.values[g]!, 0), `${f.name}:g7 element ${i}`);
      }
    });
  }
  for (const spec of ["int8:channel", "int4:g32:asym", "int3:g7:asymf", "int4:g32:symfull", "int2:channel:asym"]) {
    test(`${spec}: packed codes equal the scalar encode`, () => {
      const w = new Rng(3).fillNormal(new Float32Array(5 * 70), 0.05);
      const qt = quantizeTensor(w, [5, 70], spec);
      const c = qt.unpackCodes();
      const nPer = qt.layout.nGroups / 5;
      for (let i = 0; i < w.length; i++) {
        const g = Math.floor(i / 70) * nPer + (nPer === 1 ? 0 : Math.floor((i % 70) / Number(spec.match(/g(\d+)/)![1])));
        const p = qt.groupParams(g);
        assert.equal(c[i], qt.quantizer.encode(w[i]!, p.scale, p.zero), `${spec} element ${i}`);
      }
    });
  }
});
