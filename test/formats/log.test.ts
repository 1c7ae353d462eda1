/** Logarithmic formats: powers of two, base √2, sums of two powers. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { getFormat } from "../../src/formats/registry.js";
import { logFormat, pow2SumFormat, pow2SumMagnitudes } from "../../src/formats/log.js";
import { QuantlabError } from "../../src/core/errors.js";

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
