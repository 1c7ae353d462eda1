import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { addGram, choleskyLowerInPlace, inverseFromCholesky, invertLower, quadForm, upperCholeskyOfInverse } from "../../src/algos/linalg.js";
import { invertGJ } from "./helpers.js";

function spd(rng: Rng, n: number): Float64Array {
  const b = new Float64Array(n * (n + 3));
  for (let i = 0; i < b.length; i++) b[i] = rng.normal();
  const a = new Float64Array(n * n);
  addGram(b, n + 3, n, a); // (n+3) samples of width n → full rank almost surely
  return a;
}

describe("linalg", () => {
  test("Cholesky, triangular inverse, inverse from Cholesky, upper Cholesky of the inverse", () => {
    const rng = new Rng(71);
    for (const n of [1, 2, 7, 33]) {
      const a = spd(rng, n);
      const l = new Float64Array(a);
      assert.ok(choleskyLowerInPlace(l, n));
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += l[i * n + k]! * l[j * n + k]!;
        assert.ok(Math.abs(s - a[i * n + j]!) < 1e-9 * (1 + Math.abs(a[i * n + j]!)), `LLᵀ n=${n}`);
        if (j > i) assert.equal(l[i * n + j], 0);
      }
      const li = invertLower(l, n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += l[i * n + k]! * li[k * n + j]!;
        assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-9, `L·L⁻¹ n=${n}`);
      }
      const ref = invertGJ(a, n);
      const inv = inverseFromCholesky(l, n);
      const u = upperCholeskyOfInverse(a, n)!;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        const tol = 1e-8 * (1 + Math.abs(ref[i * n + j]!));
        assert.ok(Math.abs(inv[i * n + j]! - ref[i * n + j]!) < tol, `A⁻¹ n=${n}`);
        let s = 0;
        for (let k = 0; k < n; k++) s += u[k * n + i]! * u[k * n + j]!;
        assert.ok(Math.abs(s - ref[i * n + j]!) < tol, `UᵀU n=${n}`);
        if (i > j) assert.equal(u[i * n + j], 0);
        if (i === j) assert.ok(u[i * n + i]! > 0);
      }
    }
  });

  test("non-positive-definite input is reported, not factored", () => {
    const a = Float64Array.of(1, 2, 2, 1); // eigenvalues 3, −1
    assert.equal(choleskyLowerInPlace(new Float64Array(a), 2), false);
    assert.equal(upperCholeskyOfInverse(a, 2), undefined);
  });

  test("Gram accumulation and quadratic form match direct sums", () => {
    const rng = new Rng(72);
    const nTok = 130, n = 5;
    const x = rng.fillNormal(new Float32Array(nTok * n));
    const g = new Float64Array(n * n);
    addGram(x, nTok, n, g);
    const d = [0.5, -1, 0, 2, 0.25];
    let direct = 0;
    for (let t = 0; t < nTok; t++) { let s = 0; for (let j = 0; j < n; j++) s += d[j]! * x[t * n + j]!; direct += s * s; }
    assert.ok(Math.abs(quadForm(g, n, d) - direct) < 1e-9 * direct);
    // offset window: only columns 1..3
    let sub = 0;
    for (let t = 0; t < nTok; t++) { let s = 0; for (let j = 1; j < 4; j++) s += d[j]! * x[t * n + j]!; sub += s * s; }
    assert.ok(Math.abs(quadForm(g, n, d.slice(1, 4), 1, 3) - sub) < 1e-9 * sub);
  });
});

test("upperCholeskyOfInverseInPlace equals upperCholeskyOfInverse, and restores the input when not positive definite", async () => {
  const { upperCholeskyOfInverseInPlace } = await import("../../src/algos/linalg.js");
  const { Rng } = await import("../../src/core/rng.js");
  for (const n of [1, 5, 17, 64]) {
    const rng = new Rng(n);
    const x = new Float64Array((n + 4) * n).map(() => rng.normal());
    const a = new Float64Array(n * n);
    addGram(x, n + 4, n, a);
    const ref = upperCholeskyOfInverse(a, n)!;
    const b = new Float64Array(a);
    assert.equal(upperCholeskyOfInverseInPlace(b, n), true);
    for (let i = 0; i < n * n; i++) assert.ok(Math.abs(b[i]! - ref[i]!) <= 1e-9 * (1 + Math.abs(ref[i]!)), `n ${n}, element ${i}: ${b[i]} vs ${ref[i]}`);
  }
  const bad = new Float64Array([2, 3, 1, 3, 1, 0, 1, 0, 4]); // indefinite (a 2×2 minor is negative)
  const copy = new Float64Array(bad);
  assert.equal(upperCholeskyOfInverseInPlace(bad, 3), false);
  assert.deepEqual(bad, copy, "input restored");
});

test("addGram handles widths that are not multiples of 4 and many chunks (vs a direct float64 sum)", async () => {
  const { Rng } = await import("../../src/core/rng.js");
  for (const [n, nTok] of [[7, 300], [13, 129], [4, 1], [261, 70]] as const) {
    const rng = new Rng(n * 31 + nTok);
    const x = new Float32Array(nTok * n).map(() => rng.normal());
    const g = new Float64Array(n * n).fill(0);
    addGram(x, nTok, n, g);
    addGram(x, nTok, n, g); // accumulates
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < nTok; t++) s += x[t * n + i]! * x[t * n + j]!;
      assert.ok(Math.abs(g[i * n + j]! - 2 * s) <= 1e-9 * (1 + Math.abs(s)), `n ${n} (${i}, ${j})`);
    }
  }
});
