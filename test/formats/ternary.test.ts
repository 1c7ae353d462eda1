/** Ternary and binary formats and their group scaling rules (BitNet absmean, TWN, XNOR-Net). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { getFormat } from "../../src/formats/registry.js";
import { binaryAbsmean, ternaryAbsmean, ternaryTwn, ternaryValue } from "../../src/formats/ternary.js";
import { QuantlabError } from "../../src/core/errors.js";

describe("ternary and binary", () => {
  test("ternary codes: 0 → 0, 1 → +1, 3 → −1, 2 unused; ±0.5 ties go to 0", () => {
    const f = getFormat("ternary");
    assert.deepEqual([0, 1, 2, 3].map((c) => f.decode(c)), [0, 1, NaN, -1]);
    assert.deepEqual([0, 1, 2, 3].map(ternaryValue), [0, 1, NaN, -1]);
    assert.equal(f.encode(0.5), 0);
    assert.equal(f.encode(-0.5), 0);
    assert.equal(f.encode(0.51), 1);
    assert.equal(f.encode(-7), 3);
  });

  test("binary: sign bit, 0 → +1 (tie to the even code); binary01 ties to 0", () => {
    const b = getFormat("binary");
    assert.deepEqual([b.decode(0), b.decode(1)], [1, -1]);
    assert.equal(b.encode(0), 0);
    assert.equal(b.encode(-0.001), 1);
    const b01 = getFormat("binary01");
    assert.equal(b01.encode(0.5), 0);
    assert.equal(b01.encode(0.5000001), 1);
  });

  test("TWN: Δ = 0.7·mean|w|, α = mean |w| above Δ (hand-computed group)", () => {
    const w = Float32Array.of(1, -0.2, 0.05, -2, 0.4, 0.6);
    // mean|w| = 4.25/6 = 0.708333…, Δ = 0.4958333…: kept 1, −2, 0.6 → α = 3.6/3 = 1.2
    const codes = new Uint8Array(6);
    const alpha = ternaryTwn(w, codes);
    assert.ok(Math.abs(alpha - 1.2) < 1e-7);
    assert.deepEqual(Array.from(codes, ternaryValue), [1, 0, 0, -1, 0, 1]);
    assert.equal(ternaryTwn(new Float32Array(4), codes), 0);
  });

  test("BitNet b1.58 absmean: γ = mean|w|, q = RoundClip(w/γ) (reference loop)", () => {
    fc.assert(
      fc.property(fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: 1, maxLength: 64 }), (arr) => {
        const w = Float32Array.from(arr);
        const codes = new Uint8Array(w.length);
        const g = ternaryAbsmean(w, codes);
        let s = 0;
        for (const v of w) s += Math.abs(v);
        const gamma = s / w.length;
        if (Math.abs(g - gamma) > 1e-12 * (1 + gamma)) return false;
        for (let i = 0; i < w.length; i++) {
          const r = w[i]! / (gamma + 1e-8);
          const want = r > 0.5 ? 1 : r < -0.5 ? -1 : 0; // RoundClip: |r| ≤ 0.5 → 0 (half to even)
          if (ternaryValue(codes[i]!) !== want) return false;
        }
        return true;
      }),
      { seed: 5, numRuns: 500 },
    );
  });

  test("XNOR-Net binary: α = mean|w| minimizes ‖w − α·sign(w)‖²", () => {
    const w = Float32Array.of(0.3, -1.2, 2.0, -0.1, 0);
    const codes = new Uint8Array(5);
    const a = binaryAbsmean(w, codes);
    assert.ok(Math.abs(a - 3.6 / 5) < 1e-7);
    assert.deepEqual(Array.from(codes), [0, 1, 0, 1, 0]);
    const err = (al: number) => w.reduce((s, v, i) => s + (v - al * (codes[i] ? -1 : 1)) ** 2, 0);
    assert.ok(err(a) <= err(a * 1.01) && err(a) <= err(a * 0.99));
  });

  test("NaN in a group is an E_VALUE error naming the position", () => {
    assert.throws(() => ternaryAbsmean(Float32Array.of(1, NaN), new Uint8Array(2)), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE" && /value 1/.test(e.message));
  });
});
