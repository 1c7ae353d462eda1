/** Integer grids, fixed point with the integer-only dot product, dyadic numbers. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { getFormat } from "../../src/formats/registry.js";
import { dyadicMulShift, fixedDot, intGrid, shiftRightRound, toDyadic } from "../../src/formats/int.js";
import { QuantlabError } from "../../src/core/errors.js";

describe("integer grids", () => {
  test("codes are two's complement bit patterns; ranges per variant", () => {
    for (let b = 1; b <= 16; b++) {
      const full = getFormat(`int${b}`);
      const u = getFormat(`uint${b}`);
      for (let c = 0; c < 2 ** b; c++) {
        // independent: sign-extend by shifting the pattern to the top of an int32 and back
        const q = (c << (32 - b)) >> (32 - b);
        assert.equal(full.decode(c), q);
        assert.equal(u.decode(c), c);
      }
      assert.equal(full.decode(2 ** b), NaN);
      if (b >= 2) {
        const sym = getFormat(`int${b}_sym`);
        assert.ok(Number.isNaN(sym.decode(2 ** (b - 1))), `int${b}_sym: the −2^(b−1) code is unused`);
        assert.equal(sym.maxValue, 2 ** (b - 1) - 1);
        assert.equal(sym.minValue, -(2 ** (b - 1) - 1));
        assert.equal(sym.encode(-1e9), 2 ** (b - 1) + 1); // saturates to −(2^(b−1)−1)
      }
    }
  });

  test("int4: half to even, saturation, −0 → code 0", () => {
    const f = getFormat("int4");
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 6.5, 7.49, 7.5, 100, -8.5, -100].map((x) => f.decode(f.encode(x))), [0, 2, 2, 0, -2, -2, 6, 7, 7, 7, -8, -8]);
    assert.equal(f.encode(-0), 0);
    assert.equal(f.encode(-0.2), 0);
  });

  test("fixed point Qm.n: value = code / 2^n; 32-bit rows encode and decode", () => {
    const q = getFormat("q15_16");
    assert.equal(q.bits, 32);
    assert.equal(q.decode(q.encode(1.5)), 1.5);
    assert.equal(q.encode(-1), 2 ** 32 - 65536);
    assert.equal(q.decode(2 ** 32 - 1), -(2 ** -16));
    assert.equal(q.decode(q.encode(1e9)), 32768 - 2 ** -16);
    assert.equal(q.decode(q.encode(2 ** -17)), 0); // tie → even
    assert.equal(q.decode(q.encode(3 * 2 ** -17)), 2 ** -15);
    const q31 = getFormat("q0_31");
    assert.equal(q31.decode(q31.encode(-1)), -1);
    assert.equal(q31.decode(q31.encode(0.999999999999)), 1 - 2 ** -31);
    assert.equal(intGrid({ bits: 13, signed: true }).maxValue, 4095);
    assert.throws(() => intGrid({ bits: 33, signed: true }), (e: unknown) => e instanceof QuantlabError && e.code === "E_SPEC");
  });
});

describe("integer-only arithmetic", () => {
  test("shiftRightRound: nearest-even, half-up and floor against exact division", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }), fc.integer({ min: 1, max: 40 }), (v, s) => {
        const d = 1n << BigInt(s);
        // exact floor division for negatives
        const fl = v >= 0n ? v / d : -((-v + d - 1n) / d);
        const rem = v - fl * d;
        const twice = 2n * rem;
        const ne = twice > d ? fl + 1n : twice < d ? fl : fl % 2n === 0n ? fl : fl + 1n;
        const hu = twice >= d ? fl + 1n : fl;
        return shiftRightRound(v, s, "floor") === fl && shiftRightRound(v, s) === ne && shiftRightRound(v, s, "half-up") === hu;
      }),
      { seed: 1, numRuns: 2000 },
    );
  });

  test("fixedDot equals the float64 dot of the decoded values (exact when small) and detects overflow", () => {
    const q = getFormat("q15_16");
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: -2000, max: 2000 }), fc.integer({ min: -2000, max: 2000 })), { maxLength: 64 }), (pairs) => {
        // Q15.16 values with 8 fraction bits used: products and sums stay exact in float64
        const a = Int32Array.from(pairs, (p) => p[0] * 256);
        const b = Int32Array.from(pairs, (p) => p[1] * 256);
        let ref = 0;
        for (let i = 0; i < a.length; i++) ref += q.decode(a[i]! >>> 0) * q.decode(b[i]! >>> 0);
        const r = fixedDot(a, b, { aFrac: 16, bFrac: 16, outFrac: 16 });
        return !r.overflow && r.value === ref * 65536;
      }),
      { seed: 2, numRuns: 500 },
    );
    // 0.5 · 2^-16 (one product below the output's resolution) rounds to even
    assert.deepEqual(fixedDot([1], [32768], { aFrac: 16, bFrac: 16, outFrac: 16 }), { value: 0, overflow: false });
    assert.deepEqual(fixedDot([3], [32768], { aFrac: 16, bFrac: 16, outFrac: 16 }), { value: 2, overflow: false });
    // 200 · 200 in Q15.16 = 40000 does not fit Q15.16 (max 32768)
    const big = 200 * 65536;
    assert.deepEqual(fixedDot([big], [big], { aFrac: 16, bFrac: 16, outFrac: 16 }), { value: 2 ** 31 - 1, overflow: true });
    // int8 × int8 into an int16 accumulator overflows at 3 · 127 · 127 > 32767
    assert.equal(fixedDot([127, 127, 127], [127, 127, 127], { aFrac: 0, bFrac: 0, outFrac: 0, accBits: 16 }).overflow, true);
    assert.equal(fixedDot([127, 127], [127, 127], { aFrac: 0, bFrac: 0, outFrac: 0, accBits: 16 }).overflow, false);
    assert.throws(() => fixedDot([1], [1, 2], { aFrac: 0, bFrac: 0, outFrac: 0 }), (e: unknown) => e instanceof QuantlabError && e.code === "E_ARG");
  });

  test("toDyadic: nearest m/2^k with bounded m and the largest shift", () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-12, max: 1e6, noNaN: true }), fc.integer({ min: 2, max: 31 }), fc.boolean(), (x0, mBits, neg) => {
        const x = neg ? -x0 : x0;
        const { m, k } = toDyadic(x, mBits);
        const mMax = 2 ** mBits - 1;
        if (!(Number.isInteger(m) && Math.abs(m) <= mMax && k >= 0 && k <= 62)) return false;
        if (x0 > mMax) return k === 0 && Math.abs(m) === mMax;
        const err = Math.abs(x - m / 2 ** k);
        // within half a step, and k maximal: m·2 would not fit (unless k hit the cap)
        return err <= 2 ** -(k + 1) && (k === 62 || Math.abs(m) * 2 > mMax || Math.abs(m) >= 2 ** (mBits - 1));
      }),
      { seed: 3, numRuns: 3000 },
    );
    assert.deepEqual(toDyadic(0.1, 8), { m: 205, k: 11 }); // 0.1·2^11 = 204.8 → 205
    assert.deepEqual(toDyadic(255.75, 8), { m: 255, k: 0 }); // 255.75 rounds to 256 = 128·2^1 → saturates at 255
    assert.deepEqual(toDyadic(-0.75, 2), { m: -3, k: 2 });
  });

  test("dyadicMulShift is round(acc · m / 2^k) exactly", () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.double({ min: 1e-6, max: 4, noNaN: true }), (acc, s) => {
        const d = toDyadic(s, 31);
        const r = dyadicMulShift(acc, d);
        const exact = (BigInt(acc) * BigInt(d.m)) ;
        // |r·2^k − exact| ≤ 2^(k−1)
        const diff = BigInt(r) * (1n << BigInt(d.k)) - exact;
        return (diff < 0n ? -diff : diff) <= 1n << BigInt(Math.max(0, d.k - 1));
      }),
      { seed: 4, numRuns: 1000 },
    );
    assert.equal(dyadicMulShift(1000, toDyadic(0.5)), 500);
    assert.equal(dyadicMulShift(3, { m: 1, k: 1 }), 2); // 1.5 → 2 (even)
    assert.equal(dyadicMulShift(5, { m: 1, k: 1 }), 2); // 2.5 → 2 (even)
  });

  test("dyadic row: m/2^k codes, canonical encode", () => {
    const f = getFormat("dyadic");
    assert.equal(f.decode((5 << 6) | 3), 5 / 8);
    assert.equal(f.decode((10 << 6) | 4), 5 / 8); // non-canonical pair, same value
    assert.equal(f.encode(5 / 8), (5 << 6) | 3);
    assert.equal(f.encode(-3), ((1024 - 3) << 6) | 0);
    assert.equal(f.decode(f.encode(0.1)), 410 / 4096); // 0.1·2^12 = 409.6 → 410
    assert.equal(f.decode(f.encode(1000)), 511);
  });
});

describe("32-bit rows (not enumerable): stochastic rounding lands on neighbours and is unbiased", () => {
  test("fp32 and q15_16", async () => {
    const { Rng } = await import("../../src/core/rng.js");
    const rng = new Rng(8);
    const fp32 = getFormat("fp32");
    const x = 1 + 2 ** -30; // between 1 and 1 + 2^-23, p(up) = 2^-7
    const lo = 1;
    const hi = 1 + 2 ** -23;
    let ups = 0;
    const N = 20000;
    for (let i = 0; i < N; i++) {
      const v = fp32.decode(fp32.encode(x, { rounding: "stochastic", rng }));
      assert.ok(v === lo || v === hi);
      if (v === hi) ups++;
    }
    const p = 2 ** -7;
    assert.ok(Math.abs(ups / N - p) < 5 * Math.sqrt((p * (1 - p)) / N), `fp32: ${ups / N} vs ${p}`);
    assert.equal(fp32.encode(x), 0x3f800000);
    const q = getFormat("q15_16");
    let sum = 0;
    const y = 3.3 * 2 ** -16;
    for (let i = 0; i < N; i++) {
      const v = q.decode(q.encode(y, { rounding: "stochastic", rng }));
      assert.ok(v === 3 * 2 ** -16 || v === 4 * 2 ** -16);
      sum += v;
    }
    assert.ok(Math.abs(sum / N - y) < 5 * (2 ** -16 * Math.sqrt(0.3 * 0.7)) / Math.sqrt(N));
  });
});
