// The shared reference-vs-fast suite: every WASM kernel (both builds, 1–3 threads) against the scalar
// oracle (ggml dequantizeRow weights × Q8 reference activations, float64), at lengths that hit every
// SIMD tail and the 2-block unroll, odd row counts, random and real (stories260K) rows, mat-vec, mat-mat
// and batched mat-vec, cold and after warm-up (so both Liftoff and TurboFan code are checked).
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlTypeName } from "../../../src/ggml/types.js";
import type { WasmVariant } from "../../../src/kernels/wasm/module.js";
import {
  VARIANTS, QUANT_TYPES, backend, readyBackend, disposeAll, randomF32, storiesWeights, denseWeight, ggmlWeight, oracle, worstRelError,
  type TestWeight,
} from "../helpers.js";
import { REPACK } from "../../../src/kernels/wasm/layouts.js";

after(disposeAll);

/** f32 sums of up to a few thousand terms: relative to Σ|terms| the error stays far below this */
const TOL = 2e-6;

const DENSE_COLS = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 172, 257];
const ROWS = [1, 7, 37];

function denseCases(): TestWeight[] {
  const out: TestWeight[] = [];
  let seed = 1;
  for (const cols of DENSE_COLS) {
    for (const rows of ROWS) {
      out.push(denseWeight("f32", rows, cols, randomF32(rows * cols, seed++)));
      out.push(denseWeight("f16", rows, cols, randomF32(rows * cols, seed++)));
    }
  }
  return out;
}

function quantCases(): TestWeight[] {
  const out: TestWeight[] = [];
  let seed = 1000;
  for (const type of QUANT_TYPES) {
    const bs = REPACK[type]!.blockSize;
    // 1, 2, 3, 5 blocks of 32 (odd and even counts for the 2-block unroll); k-quants 1–3 super-blocks
    const colsList = bs === 32 ? [32, 64, 96, 160] : [256, 512, 768];
    for (const cols of colsList) {
      // 8 rows: Q4_0/Q8_0 run interleaved 4 rows at a time (K_Q4_0X4/K_Q8_0X4) when rows % 4 = 0
      for (const rows of [1, 7, 8]) out.push(ggmlWeight(type, rows, cols, randomF32(rows * cols, seed++, 3)));
    }
  }
  return out;
}

/** real rows: stories260K weights, read as (rows, 256) and (rows, 64) */
function realCases(): TestWeight[] {
  const w = storiesWeights();
  const out: TestWeight[] = [denseWeight("f32", 33, 64, w.subarray(0, 33 * 64)), denseWeight("f16", 33, 172, w.subarray(5000, 5000 + 33 * 172))];
  for (const type of QUANT_TYPES) {
    const cols = REPACK[type]!.blockSize === 32 ? 64 : 256;
    out.push(ggmlWeight(type, 19, cols, w.subarray(40000, 40000 + 19 * cols)));
    out.push(ggmlWeight(type, 20, cols, w.subarray(50000, 50000 + 20 * cols)));
  }
  return out;
}

const DENSE = denseCases();
const QUANT = quantCases();
const REAL = realCases();

function check(variant: WasmVariant, threads: number, w: TestWeight, x: Float32Array, what: string): void {
  const be = backend(variant, threads);
  const p = be.prepare(w.weight, w.label);
  const got = new Float32Array(w.rows);
  be.matvec(p, x, got);
  const { err, at } = worstRelError(got, oracle(w, x, 1, p));
  assert.ok(err <= TOL, `${variant} t${threads} ${what} ${w.label}: relative error ${err.toExponential(2)} at row ${at}`);
}

for (const variant of VARIANTS) {
  describe(`wasm ${variant}`, () => {
    for (const threads of [1, 2, 3]) {
      test(`threads=${threads}: f32 and f16 at every tail length`, async () => {
        const be = await readyBackend(variant, threads);
        const before = be.poolStats();
        for (const w of DENSE) check(variant, threads, w, randomF32(w.cols, w.rows * 31 + w.cols), "dense");
        if (threads > 1) {
          const s = be.poolStats();
          assert.equal(s.alive, threads - 1);
          assert.ok(s.dispatches > before.dispatches);
        }
      });
      test(`threads=${threads}: every ggml type with a kernel, random rows`, () => {
        for (const w of QUANT) check(variant, threads, w, randomF32(w.cols, w.cols + 7, 2), "random");
      });
      test(`threads=${threads}: real rows (stories260K weights)`, () => {
        const x = storiesWeights().subarray(100000, 100000 + 256).map((v) => v * 10);
        for (const w of REAL) check(variant, threads, w, x.subarray(0, w.cols), "real");
      });
      test(`threads=${threads}: matmul (n=3) and matvecMany with a shared x`, () => {
        const be = backend(variant, threads);
        for (const w of [REAL[0]!, ...REAL.slice(2)]) {
          const p = be.prepare(w.weight, w.label);
          const x = randomF32(3 * w.cols, w.cols * 3);
          const got = new Float32Array(3 * w.rows);
          be.matmul(p, x, 3, got);
          const { err, at } = worstRelError(got, oracle(w, x, 3, p));
          assert.ok(err <= TOL, `matmul ${w.label}: ${err} at ${at}`);
        }
        // Q, K, V style: three weights, one x; plus an f32 weight sharing x with quantized ones
        const cols = 256;
        const ws = [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K].map((t, i) => ggmlWeight(t, 9 + i, cols, randomF32(cols * (9 + i), 77 + i)));
        ws.unshift(denseWeight("f32", 5, cols, randomF32(5 * cols, 70)));
        const x = randomF32(cols, 99);
        const jobs = ws.map((w) => ({ w: be.prepare(w.weight, w.label), x, out: new Float32Array(w.rows) }));
        be.matvecMany(jobs);
        ws.forEach((w, i) => {
          const { err } = worstRelError(jobs[i]!.out, oracle(w, x, 1, jobs[i]!.w));
          assert.ok(err <= TOL, `matvecMany ${w.label}: ${err}`);
        });
      });
    }
    test("after warm-up (TurboFan tier) every kernel still agrees", () => {
      const be = backend(variant, 1);
      const cases = [denseWeight("f32", 64, 515, randomF32(64 * 515, 5)), denseWeight("f16", 64, 515, randomF32(64 * 515, 6))];
      for (const t of QUANT_TYPES) cases.push(ggmlWeight(t, 64, 512, randomF32(64 * 512, 7 + t)));
      const prepared = cases.map((w) => be.prepare(w.weight, w.label));
      const x = randomF32(515, 8);
      const out = new Float32Array(64);
      // enough calls that V8 tiers run_rows up from Liftoff (its budget is counted in executed code)
      for (let i = 0; i < 60; i++) prepared.forEach((p, k) => be.matvec(p, x, out));
      prepared.forEach((p, k) => {
        const w = cases[k]!;
        be.matvec(p, x.subarray(0, w.cols), out);
        const { err, at } = worstRelError(out, oracle(w, x.subarray(0, w.cols), 1, p));
        assert.ok(err <= TOL, `warm ${w.label}: ${err} at ${at}`);
      });
    });
  });
}

test("the suite covers every type with a WASM kernel and both nibble orders when relaxed SIMD is available", () => {
  const names = QUANT_TYPES.map(ggmlTypeName).sort();
  assert.deepEqual(names, ["IQ4_NL", "IQ4_XS", "Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0", "TQ1_0", "TQ2_0"]);
  assert.ok(VARIANTS.includes("simd"));
});
