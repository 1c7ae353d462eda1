// The WASM int8 row dots of integer-only linears (assembly/intmm.ts via WasmBackend.int8Rows) against the
// TypeScript reference (int8RowsRef): exact int32 equality — integer arithmetic has no rounding to excuse —
// on extreme codes (−128·−128 products), ragged column counts around the 16-byte SIMD step, both builds,
// fast-check properties; and an integer-only model layer over the WASM backend gives the reference
// backend's outputs bit for bit.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { int8RowsRef } from "../../../src/kernels/types.js";
import { RefBackend } from "../../../src/kernels/ref/backend.js";
import { IntegerLinearBackend } from "../../../src/model/integer-linear.js";
import { quantizeTensor } from "../../../src/quant/tensor.js";
import { VARIANTS, backend, disposeAll, randomF32 } from "../helpers.js";
import { Rng } from "../../../src/core/rng.js";

after(disposeAll);

function randomI8(n: number, rng: Rng, extreme = false): Int8Array {
  const a = new Int8Array(n);
  for (let i = 0; i < n; i++) a[i] = extreme ? (rng.next() < 0.5 ? -128 : 127) : Math.floor(rng.next() * 256) - 128;
  return a;
}

function refDots(w: Int8Array, rows: number, cols: number, x: Int8Array): Int32Array {
  const acc = new Int32Array(rows);
  int8RowsRef(w, rows, cols).dots(x, acc);
  return acc;
}

describe("int8 row dots (integer-only linears): WASM SIMD = TypeScript reference, exactly", () => {
  for (const variant of VARIANTS) {
    test(`${variant}: ragged widths, extreme codes, reuse after other allocations`, () => {
      const be = backend(variant, 1);
      const rng = new Rng(7);
      for (const cols of [1, 3, 15, 16, 17, 31, 33, 64, 100, 1027]) {
        for (const extreme of [false, true]) {
          const rows = 1 + (cols % 7);
          const w = randomI8(rows * cols, rng, extreme), x = randomI8(cols, rng, extreme);
          const k = be.int8Rows(w, rows, cols, `w${cols}`);
          const acc = new Int32Array(rows);
          k.dots(x, acc);
          assert.deepEqual(acc, refDots(w, rows, cols, x), `${cols} cols${extreme ? ", extreme" : ""}`);
          // the independent check of the reference itself on one row
          let t = 0;
          for (let c = 0; c < cols; c++) t += w[c]! * x[c]!;
          assert.equal(acc[0], t);
          k.release();
        }
      }
      // all −128: the largest positive product, 16384 per column
      const n = 4096;
      const w = new Int8Array(n).fill(-128), x = new Int8Array(n).fill(-128);
      const k = be.int8Rows(w, 1, n, "extreme");
      const acc = new Int32Array(1);
      k.dots(x, acc);
      assert.equal(acc[0], 16384 * n);
      k.release();
      assert.throws(() => k.dots(x, acc), /used after release/);
    });

    test(`${variant}: fast-check property`, () => {
      const be = backend(variant, 1);
      fc.assert(fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 300 }), fc.integer(), (rows, cols, seed) => {
        const rng = new Rng(seed >>> 0);
        const w = randomI8(rows * cols, rng), x = randomI8(cols, rng);
        const k = be.int8Rows(w, rows, cols, "p");
        const acc = new Int32Array(rows);
        k.dots(x, acc);
        k.release();
        assert.deepEqual(acc, refDots(w, rows, cols, x));
      }), { numRuns: 200 });
    });

    test(`${variant}: an integer-only W8A8 linear over the WASM backend = over the reference backend, bit for bit`, () => {
      const rows = 48, cols = 200;
      const q = quantizeTensor(randomF32(rows * cols, 3), [rows, cols], "int8:channel:a8:intmm");
      const w = { kind: "quant" as const, q };
      const onWasm = new IntegerLinearBackend(backend(variant, 1));
      const onRef = new IntegerLinearBackend(new RefBackend());
      const pa = onWasm.prepare(w, "blk.0.ffn_up.weight"), pb = onRef.prepare(w, "blk.0.ffn_up.weight");
      const x = randomF32(cols, 11, 3);
      const a = new Float32Array(rows), b = new Float32Array(rows);
      onWasm.matvec(pa, x, a);
      onRef.matvec(pb, x, b);
      assert.deepEqual(a, b);
      assert.ok(a.some((v) => v !== 0));
      onWasm.release(pa);
    });
  }
});
