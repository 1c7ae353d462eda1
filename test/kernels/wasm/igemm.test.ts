// The integer calibration GEMM (WASM kind K_I16GEMM, assembly/igemm.ts; backend.prepareCalibration) against its
// TypeScript twin (kernels/ref/igemm.ts) bit for bit, both builds, 1–3 threads: rows not a multiple of the 4-row
// tile (and 1 row), tokens not a multiple of the 2-token tile (1 token: the mat-vec), past one 64-token block;
// a zero row, ties in the code rounding, codes at ±qmax over the widest exact sum. Then the error against the exact
// f32 product stays inside the bound of the codes' rounding, and bad input is an error.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Tensor } from "../../../src/core/tensor.js";
import { calibrationQmax, igemmRef, quantizeRowsI16Ref } from "../../../src/kernels/ref/igemm.js";
import { checkCalibrationQmax } from "../../../src/kernels/wasm/backend.js";
import { VARIANTS, backend, readyBackend, disposeAll, randomF32 } from "../helpers.js";

after(disposeAll);

const dense = (rows: number, cols: number, v: Float32Array) => ({ kind: "dense" as const, tensor: Tensor.fromF32([rows, cols], v) });

function reference(w: Float32Array, rows: number, x: Float32Array, n: number, cols: number, qmax: number): Float32Array {
  const W = quantizeRowsI16Ref(w, rows, cols, qmax), X = quantizeRowsI16Ref(x, n, cols, qmax);
  const out = new Float32Array(n * rows);
  igemmRef(W.codes, W.scales, rows, X.codes, X.scales, n, cols, out);
  return out;
}

const SHAPES: [number, number, number][] = [[1, 32, 1], [3, 32, 2], [4, 64, 3], [5, 256, 5], [50, 256, 9], [9, 768, 67], [21, 96, 130], [4, 2048, 2]];

for (const variant of VARIANTS) {
  for (const threads of [1, 2, 3]) {
    test(`wasm ${variant} t${threads}: K_I16GEMM = its TypeScript twin, bit for bit`, async () => {
      const be = await readyBackend(variant, threads);
      let seed = 7;
      for (const [rows, cols, n] of SHAPES) {
        for (const bits of [undefined, 8]) {
          const qmax = calibrationQmax(cols, bits);
          const w = randomF32(rows * cols, seed++);
          const x = randomF32(n * cols, seed++, 3);
          if (rows > 2) w.fill(0, cols, 2 * cols); // row 1 all zero: scale 0, codes 0
          if (n > 1) for (let c = 0; c < cols; c++) x[cols + c] = c === 0 ? qmax : ((c % 7) - 3) + 0.5; // token 1: scale 1, ties
          const p = be.prepareCalibration(dense(rows, cols, w), "w", qmax);
          const got = new Float32Array(n * rows);
          be.matmul(p, x, n, got);
          const want = reference(w, rows, x, n, cols, qmax);
          const i = got.findIndex((v, k) => !Object.is(v, want[k]));
          assert.equal(i, -1, `${rows}×${cols} n=${n} qmax ${qmax}: token ${Math.floor(i / rows)}, row ${i % rows}: ${got[i]} vs ${want[i]}`);
          be.release(p);
        }
      }
    });
  }
}

test("K_I16GEMM: codes at ±qmax over every column sum exactly (no int32 overflow); the relaxed build gives the SIMD128 bits", async () => {
  const cols = 768, qmax = calibrationQmax(cols);
  assert.ok(cols * qmax * qmax < 2 ** 31 && cols * (qmax + 1) ** 2 >= 2 ** 31, `qmax ${qmax} is the widest exact bound`);
  const w = new Float32Array(4 * cols).fill(1), x = new Float32Array(2 * cols).fill(-2);
  for (const variant of VARIANTS) {
    const be = backend(variant, 1);
    const out = new Float32Array(2 * 4);
    be.matmul(be.prepareCalibration(dense(4, cols, w), "w", qmax), x, 2, out);
    for (const v of out) assert.equal(v, -2 * cols);
  }
  if (VARIANTS.length === 2) {
    const a = backend("simd", 1), b = backend("relaxed", 1);
    const wv = randomF32(50 * 256, 3), xv = randomF32(9 * 256, 4);
    const ga = new Float32Array(9 * 50), gb = new Float32Array(9 * 50);
    a.matmul(a.prepareCalibration(dense(50, 256, wv), "w", calibrationQmax(256)), xv, 9, ga);
    b.matmul(b.prepareCalibration(dense(50, 256, wv), "w", calibrationQmax(256)), xv, 9, gb);
    assert.deepEqual(ga, gb);
  }
});

test("K_I16GEMM: within the codes' rounding of the exact product (|err| ≤ cols·max|w|·max|x| / qmax per output)", () => {
  const be = backend(VARIANTS[0]!, 1);
  for (const [rows, cols, n] of [[50, 256, 9], [9, 768, 67]] as const) {
    for (const bits of [undefined, 8]) {
      const qmax = calibrationQmax(cols, bits);
      const w = randomF32(rows * cols, 11), x = randomF32(n * cols, 12, 5);
      const got = new Float32Array(n * rows);
      be.matmul(be.prepareCalibration(dense(rows, cols, w), "w", qmax), x, n, got);
      let worst = 0;
      for (let t = 0; t < n; t++) {
        let ax = 0;
        for (let c = 0; c < cols; c++) ax = Math.max(ax, Math.abs(x[t * cols + c]!));
        for (let r = 0; r < rows; r++) {
          let aw = 0, e = 0;
          for (let c = 0; c < cols; c++) { aw = Math.max(aw, Math.abs(w[r * cols + c]!)); e += w[r * cols + c]! * x[t * cols + c]!; }
          const bound = (cols * aw * ax) / qmax;
          worst = Math.max(worst, Math.abs(got[t * rows + r]! - e) / bound);
        }
      }
      assert.ok(worst <= 1, `${rows}×${cols} qmax ${qmax}: error ${worst.toFixed(3)} of the bound`);
      assert.ok(worst > 1e-4, "the codes do round (the check can fail)");
    }
  }
});

test("K_I16GEMM: Inf/NaN, column counts off 32 and overflowing code bounds are errors", () => {
  const be = backend(VARIANTS[0]!, 1);
  const p = be.prepareCalibration(dense(4, 32, randomF32(128, 1)), "w", 100);
  const x = randomF32(64, 2);
  x[40] = NaN;
  assert.throws(() => be.matmul(p, x, 2, new Float32Array(8)), /Inf\/NaN/);
  const w = randomF32(128, 3);
  w[5] = Infinity;
  assert.throws(() => be.prepareCalibration(dense(4, 32, w), "blk.0.x", 100), /blk\.0\.x: 1 rows hold Inf\/NaN/);
  assert.throws(() => be.prepareCalibration(dense(2, 40, randomF32(80, 4)), "blk.0.y", 100), /blk\.0\.y.*multiple of 32/);
  assert.throws(() => checkCalibrationQmax(768, 1673, "w"), /overflow/);
  assert.throws(() => calibrationQmax(256, 17), /bits/);
  assert.equal(calibrationQmax(256, 8), 127);
});
