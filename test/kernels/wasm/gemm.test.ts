// Prefill of dense weights (f32, f16): the register-blocked GEMM of run_k1/run_k2 (n > 1) against the
// TypeScript reference backend, both builds, 1–3 threads, at shapes that hit every tail of the blocking:
// rows not a multiple of the row tile (and 1 row), tokens not a multiple of the token tile (and 1 token:
// the decode path), columns below 4 and not a multiple of 4, rows wider than one column block (4096: the
// later block adds to the earlier one's outputs), tokens past one token block (64). With 2 and 3 threads
// the pool cuts 50 rows into chunks of 7 and 5 rows (21 rows: 3 and 2), so chunk boundaries fall inside
// row tiles; the outputs must still have the bits of one thread (a row's sum does not depend on which
// tile it ran in).
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { RefBackend } from "../../../src/kernels/ref/backend.js";
import { VARIANTS, backend, readyBackend, disposeAll, randomF32, denseWeight, ggmlWeight, type TestWeight } from "../helpers.js";
import { GgmlType } from "../../../src/ggml/types.js";
import { matmulMany } from "../../../src/kernels/types.js";

after(disposeAll);

/** f32 sums of up to ~4000 terms in a few orders (fused or not): the error relative to Σ|w·x| stays far below this */
const TOL = 2e-6;

const COLS = [1, 2, 3, 4, 5, 7, 16, 17, 31, 33, 514, 4099];
const ROWS = [1, 3, 4, 5, 50];
const TOKENS = [1, 2, 3, 5, 9];

const ref = new RefBackend();

/** out[t·rows + r] of the reference backend, and Σ_c |w[r,c]·x[t,c]| for the tolerance */
function reference(w: TestWeight, x: Float32Array, n: number): { out: Float32Array; mag: Float64Array } {
  const out = new Float32Array(n * w.rows);
  ref.matmul(ref.prepare(w.weight), x, n, out);
  const mag = new Float64Array(n * w.rows);
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < w.rows; r++) {
      let m = 0;
      for (let c = 0; c < w.cols; c++) m += Math.abs(w.values[r * w.cols + c]! * x[t * w.cols + c]!);
      mag[t * w.rows + r] = m;
    }
  }
  return { out, mag };
}

function cases(): { w: TestWeight; n: number }[] {
  const out: { w: TestWeight; n: number }[] = [];
  let seed = 1;
  for (const dtype of ["f32", "f16"] as const) {
    for (const cols of COLS) {
      for (const rows of ROWS) {
        const w = denseWeight(dtype, rows, cols, randomF32(rows * cols, seed++));
        for (const n of TOKENS) out.push({ w, n });
      }
    }
    // past one token block, with a token tail; past one column block, with a column tail in the second
    out.push({ w: denseWeight(dtype, 9, 37, randomF32(9 * 37, seed++)), n: 67 });
    out.push({ w: denseWeight(dtype, 21, 4101, randomF32(21 * 4101, seed++)), n: 130 });
  }
  return out;
}

const CASES = cases();

for (const variant of VARIANTS) {
  describe(`wasm ${variant} prefill (dense GEMM)`, () => {
    for (const threads of [1, 2, 3]) {
      test(`threads=${threads}: f32 and f16, every tail of rows, tokens and columns`, async () => {
        const be = await readyBackend(variant, threads);
        for (const { w, n } of CASES) {
          const p = be.prepare(w.weight, w.label);
          const x = randomF32(n * w.cols, w.rows * 131 + w.cols * 7 + n);
          const got = new Float32Array(n * w.rows);
          be.matmul(p, x, n, got);
          const want = reference(w, x, n);
          let err = 0, at = -1;
          for (let i = 0; i < got.length; i++) {
            const e = Math.abs(got[i]! - want.out[i]!) / (want.mag[i]! + 1e-30);
            if (!(e <= err)) { err = e; at = i; }
          }
          assert.ok(err <= TOL, `${variant} t${threads} ${w.label} n=${n}: relative error ${err.toExponential(2)} at token ${Math.floor(at / w.rows)}, row ${at % w.rows}`);
          if (threads > 1) {
            const one = backend(variant, 1);
            const alone = new Float32Array(n * w.rows);
            one.matmul(one.prepare(w.weight, w.label), x, n, alone);
            const i = alone.findIndex((v, k) => !Object.is(v, got[k]));
            assert.equal(i, -1, `${variant} t${threads} ${w.label} n=${n}: token ${Math.floor(i / w.rows)}, row ${i % w.rows} differs from 1 thread`);
          }
        }
      });
    }
  });
}

// The f16 prefill converts each row tile's weights to an f32 panel and runs the f32 tile on it (assembly/index.ts
// gemmRowsF16Panel), summing in the f32 GEMM's order: on weights that are f16 values it must give the f32
// prefill's bits, at every tail, both builds, 1–3 threads (the panels are per-thread scratch slots).
for (const variant of VARIANTS) {
  test(`wasm ${variant}: f16 prefill gives the f32 prefill's bits on the same values, 1–3 threads`, async () => {
    for (const threads of [1, 2, 3]) {
      const be = await readyBackend(variant, threads);
      let checked = 0;
      for (const { w, n } of CASES) {
        if (n === 1 || !w.label.startsWith("f16")) continue;
        const w32 = denseWeight("f32", w.rows, w.cols, w.values);
        const x = randomF32(n * w.cols, w.rows * 29 + w.cols * 3 + n);
        const g16 = new Float32Array(n * w.rows), g32 = new Float32Array(n * w.rows);
        be.matmul(be.prepare(w.weight, w.label), x, n, g16);
        be.matmul(be.prepare(w32.weight, w32.label), x, n, g32);
        const i = g16.findIndex((v, k) => !Object.is(v, g32[k]));
        assert.equal(i, -1, `${variant} t${threads} ${w.label} n=${n}: token ${Math.floor(i / w.rows)}, row ${i % w.rows}: f16 ${g16[i]} vs f32 ${g32[i]}`);
        checked++;
      }
      assert.ok(checked > 40, `${checked} cases`);
    }
  });
}

// Calibration results (importance matrices, hence file bytes) must not depend on which build the engine
// runs: the relaxed build must give the SIMD128 build's bits for the dense kernels (no relaxed_madd,
// whose fusing is up to the engine and CPU).
test("dense mat-vec and GEMM: the relaxed build gives the SIMD128 build's bits", { skip: VARIANTS.length < 2 ? "relaxed SIMD not available here" : false }, () => {
  const a = backend("simd", 1), b = backend("relaxed", 1);
  for (const { w, n } of CASES) {
    const x = randomF32(n * w.cols, w.rows * 17 + n);
    const ga = new Float32Array(n * w.rows), gb = new Float32Array(n * w.rows);
    a.matmul(a.prepare(w.weight, w.label), x, n, ga);
    b.matmul(b.prepare(w.weight, w.label), x, n, gb);
    const i = ga.findIndex((v, k) => !Object.is(v, gb[k]));
    assert.equal(i, -1, `${w.label} n=${n}: token ${Math.floor(i / w.rows)}, row ${i % w.rows}: simd ${ga[i]} vs relaxed ${gb[i]}`);
  }
});

describe("matmulMany: shared-input matmuls in one dispatch", () => {
  test("every job gets the bits of its own matmul (f32, f16, i16 calibration, a Q8 kind; shared and separate x), 1–3 threads", async () => {
    const n = 9, cols = 64;
    const xa = randomF32(n * cols, 11), xb = randomF32(n * cols, 12);
    for (const variant of VARIANTS) {
      for (const threads of [1, 2, 3]) {
        const be = await readyBackend(variant, threads);
        // q/k/v-like (f32, rows 50/20/20 on one x), gate/up-like (f16 and int on another x), a Q8_0 weight on x
        const make = (rows: number, seed: number) => randomF32(rows * cols, seed, 0.5);
        const ws = [
          be.prepare(denseWeight("f32", 50, cols, make(50, 1)).weight),
          be.prepare(denseWeight("f32", 20, cols, make(20, 2)).weight),
          be.prepare(denseWeight("f16", 21, cols, make(21, 3)).weight),
          be.prepareCalibration(denseWeight("f32", 33, cols, make(33, 4)).weight, "w", 1023),
          be.prepareCalibration(denseWeight("f32", 40, cols, make(40, 5)).weight, "w", 1023),
          be.prepare(ggmlWeight(GgmlType.Q8_0, 8, cols, make(8, 6)).weight),
        ];
        const xs = [xa, xa, xa, xb, xb, xa];
        const single = ws.map((w, i) => { const o = new Float32Array(n * w.rows); be.matmul(w, xs[i]!, n, o); return o; });
        const jobs = ws.map((w, i) => ({ w, x: xs[i]!, out: new Float32Array(n * w.rows) }));
        be.matmulMany(jobs, n);
        for (let i = 0; i < jobs.length; i++) {
          assert.deepEqual(jobs[i]!.out, single[i], `${variant}/${threads} job ${i}`);
          assert.ok(jobs[i]!.out.some((v) => v !== 0), `${variant}/${threads} job ${i} computed nothing`);
        }
        // the Backend helper falls back to one matmul per job on a backend without it (the reference)
        const r = new RefBackend();
        const rj = [{ w: r.prepare(denseWeight("f32", 5, cols, make(5, 7)).weight), x: xa, out: new Float32Array(n * 5) }];
        const ro = new Float32Array(n * 5);
        r.matmul(rj[0]!.w, xa, n, ro);
        matmulMany(r, rj, n);
        assert.deepEqual(rj[0]!.out, ro);
        for (const w of ws) be.release(w);
      }
    }
  });
});
