/** NF4 and learned codebooks; the 1-D Lloyd helper. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { getFormat } from "../../src/formats/registry.js";
import { NF4_LEVELS, codebookFormat, lloyd1d } from "../../src/formats/codebook.js";
import { Rng } from "../../src/core/rng.js";
import { QuantlabError } from "../../src/core/errors.js";

/** Φ(x) for |x| ≤ 4 by the Taylor series of erf (converges; float64-accurate to ~1e-15 there) */
function normalCdf(x: number): number {
  const z = x / Math.SQRT2;
  let term = z;
  let sum = z;
  for (let n = 1; n < 200; n++) {
    term *= (-z * z) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-18) break;
  }
  return 0.5 + sum / Math.sqrt(Math.PI);
}

/** Φ⁻¹ by bisection */
function normalPpf(p: number): number {
  let lo = -4;
  let hi = 4;
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (normalCdf(mid) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

function linspace(a: number, b: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => a + ((b - a) * i) / (n - 1));
}

describe("NF4", () => {
  test("the table constants are float32 values, 16 of them, −1 … 1 with an exact 0 at code 7", () => {
    assert.equal(NF4_LEVELS.length, 16);
    for (const v of NF4_LEVELS) assert.equal(Math.fround(v), v);
    assert.equal(NF4_LEVELS[0], -1);
    assert.equal(NF4_LEVELS[7], 0);
    assert.equal(NF4_LEVELS[15], 1);
    const f = getFormat("nf4");
    for (let c = 0; c < 16; c++) assert.equal(f.decode(c), NF4_LEVELS[c]);
  });

  test("recomputed from normal quantiles as QLoRA builds them (offset 0.9677083, 8 positive + 7 negative + 0)", () => {
    const offset = 0.9677083;
    const pos = linspace(offset, 0.5, 9).slice(0, -1).map(normalPpf);
    const neg = linspace(offset, 0.5, 8).slice(0, -1).map((p) => -normalPpf(p));
    const v = [...pos, 0, ...neg].sort((a, b) => a - b);
    const max = Math.max(...v);
    for (let i = 0; i < 16; i++) assert.ok(Math.abs(v[i]! / max - NF4_LEVELS[i]!) < 2e-7, `level ${i}: ${v[i]! / max} vs ${NF4_LEVELS[i]}`);
  });

  test("encode picks the nearest level; midpoints go to the even code", () => {
    const f = getFormat("nf4");
    const mid = (NF4_LEVELS[7]! + NF4_LEVELS[8]!) / 2;
    assert.equal(f.encode(mid), 8);
    const mid2 = (NF4_LEVELS[8]! + NF4_LEVELS[9]!) / 2;
    assert.equal(f.encode(mid2), 8);
    assert.equal(f.encode(5), 15);
    assert.equal(f.encode(-5), 0);
  });
});

describe("learned codebooks and lloyd1d", () => {
  test("codebookFormat sorts and dedupes levels; bits = ceil(log2 k)", () => {
    const f = codebookFormat([0.5, -1, 0.5, 2, 0]);
    assert.deepEqual(Array.from(f.values()), [-1, 0, 0.5, 2]);
    assert.equal(f.bits, 2);
    assert.equal(codebookFormat([1, 2, 3, 4, 5]).bits, 3);
    assert.equal(f.decode(f.encode(1.3)), 2); // 0.7 from 2, 0.8 from 0.5
    assert.equal(f.decode(f.encode(1.2)), 0.5);
    assert.equal(f.decode(f.encode(1.25)), 0.5); // tie → even code 2 (0.5)
    assert.throws(() => codebookFormat([1, NaN]), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE");
  });

  test("recovers well-separated cluster centres", () => {
    const rng = new Rng(11);
    const centres = [-3, -1, 0.5, 4];
    const data = new Float64Array(4000);
    for (let i = 0; i < data.length; i++) data[i] = centres[i % 4]! + 0.05 * rng.normal();
    const lv = lloyd1d(data, 4);
    for (let j = 0; j < 4; j++) assert.ok(Math.abs(lv[j]! - centres[j]!) < 0.01, `${lv[j]} vs ${centres[j]}`);
  });

  test("on U(−1, 1) with k = 4 converges to the optimal uniform quantizer ±0.25, ±0.75", () => {
    const n = 20001;
    const data = Float64Array.from({ length: n }, (_, i) => -1 + (2 * i) / (n - 1));
    const lv = lloyd1d(data, 4, { iters: 500, tol: 1e-12 });
    const want = [-0.75, -0.25, 0.25, 0.75];
    for (let j = 0; j < 4; j++) assert.ok(Math.abs(lv[j]! - want[j]!) < 2e-3, `${lv[j]}`);
  });

  test("each iteration does not increase the weighted error; zero weights are ignored", () => {
    const rng = new Rng(12);
    const data = Float64Array.from({ length: 3000 }, () => rng.normal() ** 3);
    const w = Float64Array.from({ length: 3000 }, () => rng.next());
    const err = (lv: Float64Array) => {
      const f = codebookFormat(lv);
      let e = 0;
      for (let i = 0; i < data.length; i++) e += w[i]! * (data[i]! - f.decode(f.encode(data[i]!))) ** 2;
      return e;
    };
    let prev = Infinity;
    for (const it of [1, 2, 4, 8, 16, 32]) {
      const e = err(lloyd1d(data, 8, { iters: it, weights: w }));
      assert.ok(e <= prev * (1 + 1e-12), `iters ${it}: ${e} > ${prev}`);
      prev = e;
    }
    // points with zero weight do not pull levels
    const d2 = Float64Array.of(0, 0, 1, 1, 100);
    const lv = lloyd1d(d2, 2, { weights: [1, 1, 1, 1, 0] });
    assert.deepEqual(Array.from(lv), [0, 1]);
  });
});
