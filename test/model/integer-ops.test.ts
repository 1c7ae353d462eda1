/**
 * Integer-only non-linear operations (model/integer-ops.ts): each equals an independent BigInt evaluation of
 * the same documented integer steps (exact: no rounding to excuse), over exhaustive small ranges and random
 * inputs; and each approximates its float function within the error the papers report (I-BERT: exp within
 * ~1.5e-3 of exp on the unit interval scale, softmax, sqrt exact floors; RMSNorm and SiLU within their
 * quantization steps).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { IEXP_A, IEXP_B, IEXP_C, iExp, iExpConstants, iRmsnorm, iSigmoid, iSilu, iSoftmax, isqrt } from "../../src/model/integer-ops.js";

/** BigInt reference of iExp's integer steps, from the constants the scale gives */
function iExpBig(q: bigint, qLn2: bigint, qB: bigint, qC: bigint): bigint {
  const z = -q / qLn2; // q ≤ 0: BigInt division truncates toward zero = floor of a non-negative quotient
  if (z >= 30n) return 0n;
  const p = q + z * qLn2;
  const t = p + qB;
  return (t * t + qC) >> z;
}

function isqrtBig(n: bigint): bigint {
  if (n < 2n) return n;
  let lo = 0n, hi = n;
  while (lo < hi) { const mid = (lo + hi + 1n) / 2n; if (mid * mid <= n) lo = mid; else hi = mid - 1n; }
  return lo;
}

describe("integer-only operations (I-BERT / I-LLM): exact integer steps, float accuracy", () => {
  test("iExp: equals the BigInt steps for every q in [−4000, 0] at several scales; within 0.5 % of exp where it matters", () => {
    for (const S of [1 / 64, 1 / 256, 0.01, 1 / 1024]) {
      const k = iExpConstants(S);
      assert.equal(k.qLn2, Math.floor(Math.LN2 / S));
      assert.equal(k.qB, Math.floor(IEXP_B / S));
      assert.equal(k.qC, Math.floor(IEXP_C / (IEXP_A * S * S)));
      for (let q = 0; q >= -4000; q--) {
        const got = iExp(q, k);
        assert.equal(BigInt(got), iExpBig(BigInt(q), BigInt(k.qLn2), BigInt(k.qB), BigInt(k.qC)), `S ${S} q ${q}`);
        const x = q * S, want = Math.exp(x), approx = got * k.outScale;
        // the polynomial's own error (≈ 1.4e-3 relative on (−ln2, 0]) plus the integer floors, absolute near 0
        if (x > -8) assert.ok(Math.abs(approx - want) <= 5e-3 * want + 4 * S, `S ${S} x ${x}: ${approx} vs ${want}`);
      }
    }
    assert.throws(() => iExp(1, iExpConstants(0.01)), /positive/);
    assert.throws(() => iExpConstants(1), /coarser than ln 2/);
  });

  test("isqrt: the exact floor of √n (BigInt search), small n exhaustively and random n below 2^53", () => {
    for (let n = 0; n < 20000; n++) assert.equal(BigInt(isqrt(n)), isqrtBig(BigInt(n)), String(n));
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }), (n) => BigInt(isqrt(Number(n))) === isqrtBig(n)), { numRuns: 2000 });
    assert.throws(() => isqrt(-1), /negative/);
    assert.throws(() => isqrt(1.5), /not an integer/);
  });

  // scores as attention's int8·int8 sums give them: fine scales (S_q·S_k), so ln 2 spans hundreds of steps —
  // at coarse scales ⌊ln2/S⌋·S under-counts ln 2 and the error grows with each halving (I-BERT §3.4)
  test("iSoftmax: BigInt steps exactly; within 0.01 of softmax for attention-score scales", () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: -3000, max: 3000 }), { minLength: 1, maxLength: 64 }), fc.constantFrom(1 / 256, 1 / 512, 1 / 1000), (q, S) => {
      const out = new Int32Array(q.length);
      iSoftmax(q, q.length, S, 16, out);
      const k = iExpConstants(S);
      const max = Math.max(...q);
      const e = q.map((v) => iExpBig(BigInt(v - max), BigInt(k.qLn2), BigInt(k.qB), BigInt(k.qC)));
      const sum = e.reduce((a, b) => a + b, 0n);
      for (let i = 0; i < q.length; i++) assert.equal(BigInt(out[i]!), (e[i]! << 16n) / sum);
      const fm = Math.max(...q.map((v) => v * S));
      const fe = q.map((v) => Math.exp(v * S - fm));
      const fs = fe.reduce((a, b) => a + b, 0);
      for (let i = 0; i < q.length; i++) assert.ok(Math.abs(out[i]! / 65536 - fe[i]! / fs) < 0.01, `p ${out[i]! / 65536} vs ${fe[i]! / fs}`);
    }), { numRuns: 300 });
  });

  test("iRmsnorm: BigInt steps exactly; x/rms within 2^−outBits·(1 + |x|/rms·…) of float", () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: -30000, max: 30000 }), { minLength: 2, maxLength: 96 }), (q) => {
      const dim = q.length, S = 1 / 512, eps = 1e-5, bits = 14;
      const out = new Float64Array(dim);
      iRmsnorm(q, dim, S, eps, bits, out);
      const ss = q.reduce((a, v) => a + BigInt(v) * BigInt(v), 0n);
      const r = isqrtBig(ss / BigInt(dim) + BigInt(Math.floor(eps / (S * S))));
      for (let i = 0; i < dim; i++) {
        const want = r === 0n ? 0n : (() => { const a = BigInt(q[i]!) << BigInt(bits); const d = a / r; return a < 0n && d * r !== a ? d - 1n : d; })();
        assert.equal(BigInt(out[i]!), want, `element ${i}`);
      }
      const rms = Math.sqrt(q.reduce((a, v) => a + (v * S) ** 2, 0) / dim + eps);
      if (rms > 0.05) for (let i = 0; i < dim; i++) assert.ok(Math.abs(out[i]! / 2 ** bits - (q[i]! * S) / rms) < 0.02 * Math.max(1, Math.abs(q[i]! * S) / rms), `${out[i]! / 2 ** bits} vs ${(q[i]! * S) / rms}`);
    }), { numRuns: 300 });
  });

  test("iSigmoid / iSilu: integer steps; within 1 % of σ and silu over int8-scale inputs", () => {
    const S = 1 / 16, bits = 15;
    const k = iExpConstants(S);
    const d = iExp(0, k);
    for (let q = -127; q <= 127; q++) {
      const e = iExp(-Math.abs(q), k);
      const pos = Math.floor((2 ** bits * d) / (d + e));
      assert.equal(iSigmoid(q, k, bits), q >= 0 ? pos : 2 ** bits - pos);
      assert.equal(iSilu(q, k, bits), q * iSigmoid(q, k, bits));
      const x = q * S, s = 1 / (1 + Math.exp(-x));
      assert.ok(Math.abs(iSigmoid(q, k, bits) / 2 ** bits - s) < 0.01, `σ(${x})`);
      assert.ok(Math.abs((iSilu(q, k, bits) * S) / 2 ** bits - x * s) < 0.01 * Math.max(1, Math.abs(x)), `silu(${x})`);
    }
  });
});
