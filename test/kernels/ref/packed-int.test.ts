// The reference backend's packed twin (kernels/packed.ts): prepared uniform-int QTensors stay packed,
// mat-vec equals the dequantized f32 path bit for bit, rows decode to the fake-quant values one at a
// time, specs outside the family run through their row decoders; packedRuntime (what `quantlab info` prints) predicts
// the WASM backend's listing (kernel and resident bytes) without reading the tensor.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Tensor } from "../../../src/core/tensor.js";
import { quantizeTensor } from "../../../src/quant/tensor.js";
import { RefBackend, RefPackedPrepared, RefRowDecPrepared } from "../../../src/kernels/ref/backend.js";
import { rowReader } from "../../../src/kernels/dequantize.js";
import { packedRuntime } from "../../../src/kernels/packed.js";
import { backend, disposeAll, randomF32, VARIANTS } from "../helpers.js";

after(disposeAll);

const SPECS = ["int4:g32:asym", "int8:channel", "int4:g64", "int4:g48:asym", "int8:g32:asym", "nf4:g64", "int3:g32", "int4:ichannel"];

test("ref backend: packed prepare, mat-vec = the dequantized f32 path bit for bit", () => {
  const be = new RefBackend();
  let seed = 50;
  for (const spec of SPECS) {
    for (const [rows, cols] of [[5, 96], [3, 172]] as const) {
      const q = quantizeTensor(randomF32(rows * cols, seed++, 3), [rows, cols], spec);
      const p = be.prepare({ kind: "quant", q });
      const dense = be.prepare({ kind: "dense", tensor: Tensor.fromF32([rows, cols], q.dequantize()) });
      const rt = packedRuntime(q);
      assert.equal(p instanceof RefPackedPrepared, rt.rowdec === undefined, `${spec}: ${rt.rowdec}`);
      if (rt.rowdec) assert.ok(p instanceof RefRowDecPrepared, spec);
      const x = randomF32(2 * cols, seed++);
      const a = new Float32Array(2 * rows), b = new Float32Array(2 * rows);
      be.matmul(p, x, 2, a);
      be.matmul(dense, x, 2, b);
      assert.deepEqual(a, b, spec);
      // rows one at a time equal the fake-quant rows
      const wq = q.dequantize();
      const read = be.rowReader(p) ?? rowReader({ kind: "quant", q });
      const row = new Float32Array(cols + 3);
      for (let r = 0; r < rows; r++) {
        read(r, row, 3);
        assert.deepEqual(row.subarray(3), wq.subarray(r * cols, (r + 1) * cols), `${spec} row ${r}`);
      }
    }
  }
});

test("packedRuntime predicts the WASM listing: kernel and resident bytes", () => {
  const b = backend(VARIANTS[0]!, 1);
  let seed = 90;
  for (const spec of SPECS) {
    const q = quantizeTensor(randomF32(6 * 128, seed++), [6, 128], spec);
    const rt = packedRuntime(q);
    const p = b.prepare({ kind: "quant", q }, spec);
    const row = b.listing().at(-1)!;
    assert.equal(row.kernel, rt.kernel, spec);
    assert.equal(row.bytes, rt.residentBytes, spec);
    assert.equal(row.rowdec, rt.rowdec, spec);
    assert.equal(row.fallback, undefined, spec);
    b.release(p);
  }
});
