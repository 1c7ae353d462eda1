/** Ternary, binary, logarithmic, sum-of-two-powers and 0-bit formats, and their group scaling rules. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { getFormat } from "../../src/formats/registry.js";
import { binaryAbsmean, ternaryAbsmean, ternaryTwn, ternaryValue } from "../../src/formats/ternary.js";
import { logFormat, pow2SumFormat, pow2SumMagnitudes } from "../../src/formats/log.js";
import { zeroBitValue } from "../../src/formats/zero.js";
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

describe("logarithmic formats", () => {
  test("pow2_4: 0 and ±2^-6 … ±1, sign-magnitude codes; ties at 1.5·2^k go to the even code", () => {
    const f = getFormat("pow2_4");
    const pos = [0, 2 ** -6, 2 ** -5, 2 ** -4, 2 ** -3, 2 ** -2, 2 ** -1, 1];
    for (let c = 0; c < 8; c++) {
      assert.equal(f.decode(c), pos[c]);
      assert.ok(Object.is(f.decode(8 | c), -pos[c]!));
    }
    assert.equal(f.encode(0.75), 6); // between 0.5 (code 6) and 1 (code 7)
    assert.equal(f.encode(0.375), 6); // between 0.25 (5) and 0.5 (6)
    assert.equal(f.encode(2 ** -7), 0); // between 0 and 2^-6 → 0
    assert.equal(f.encode(-0.75), 14);
  });

  test("base √2: each value squared is a power of two (to 1 ulp) and consecutive ratios are √2", () => {
    for (let b = 3; b <= 8; b++) {
      const f = getFormat(`logsqrt2_${b}`);
      const pos = Array.from(f.values()!).filter((v) => v > 0);
      assert.equal(pos.length, 2 ** (b - 1) - 1);
      for (let i = 0; i < pos.length; i++) {
        const sq = pos[i]! * pos[i]!;
        const p = Math.round(Math.log2(sq));
        assert.ok(Math.abs(sq / 2 ** p - 1) < 4e-16, `${f.name}: ${pos[i]}² = ${sq}`);
        if (i > 0) assert.ok(Math.abs(pos[i]! / pos[i - 1]! - Math.SQRT2) < 1e-15);
      }
      assert.equal(pos[pos.length - 1], 1);
    }
    assert.equal(logFormat({ bits: 4, log2Base: 0.5, maxExp: 3 }).maxValue, 8);
  });

  test("sum of two powers: every magnitude is 2^a, 2^a + 2^b (a > b in range) or 0, and all of them are there", () => {
    for (let b = 3; b <= 8; b++) {
      const f = getFormat(`pow2sum_${b}`);
      const mags = Array.from(f.values()!).filter((v) => v >= 0);
      // independent enumeration: bit patterns of a 31-bit fixed point mantissa with at most two set bits
      const minExp = Math.log2(Math.min(...mags.filter((v) => v > 0)));
      const nExp = -minExp + 1;
      const want = new Set<number>([0]);
      for (let i = 0; i < nExp; i++) for (let j = i; j < nExp; j++) want.add(2 ** (minExp + i) + (i === j ? 0 : 2 ** (minExp + j)));
      assert.deepEqual(mags, [...want].sort((x, y) => x - y), f.name);
      assert.ok(mags.length <= 2 ** (b - 1));
      assert.equal(f.maxValue, 1.5);
    }
    assert.equal(pow2SumMagnitudes({ eMin: -2, eMax: 0 }).length, 1 + 3 + 3);
    assert.equal(pow2SumFormat({ eMin: -3, eMax: 1 }).bits, 5); // 1 + 5 + 10 = 16 magnitudes
    assert.throws(() => pow2SumFormat({ eMin: 0, eMax: -1 }), (e: unknown) => e instanceof QuantlabError && e.code === "E_SPEC");
  });
});

describe("0-bit", () => {
  test("every element decodes to 1; the group value is its mean", () => {
    const f = getFormat("zero");
    assert.equal(f.bits, 0);
    assert.equal(f.encode(123), 0);
    assert.equal(f.decode(0), 1);
    assert.equal(zeroBitValue(Float32Array.of(1, 2, 3, 6)), 3);
  });
});
