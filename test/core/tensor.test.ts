/** Dense tensors (core/tensor.ts): typed views over bytes, shapes, row views, f16/bf16 to f32. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { DTYPES, Tensor, numel, viewAs } from "../../src/core/tensor.js";
import { QuantlabError } from "../../src/core/errors.js";

test("viewAs reads little-endian values at any offset (zero-copy when aligned, copied when not), as DataView does", () => {
  const bytes = new Uint8Array(64).map((_, i) => (i * 37 + 11) & 0xff);
  const dv = new DataView(bytes.buffer);
  const read: Record<string, (o: number) => number> = {
    f32: (o) => dv.getFloat32(o, true), f16: (o) => dv.getUint16(o, true), bf16: (o) => dv.getUint16(o, true),
    i8: (o) => dv.getInt8(o), u8: (o) => dv.getUint8(o), i16: (o) => dv.getInt16(o, true), i32: (o) => dv.getInt32(o, true),
  };
  for (const dtype of Object.keys(DTYPES) as (keyof typeof DTYPES)[]) {
    const w = DTYPES[dtype].bytes;
    for (const off of [0, 1, 2, 3, 4, 8]) {
      const n = Math.floor((64 - off) / w) - 1;
      const v = viewAs(dtype, bytes.buffer, off, n);
      assert.equal(v.length, n);
      for (let i = 0; i < n; i++) assert.ok(Object.is(v[i], read[dtype]!(off + i * w)), `${dtype} offset ${off} element ${i}`);
      assert.equal(v.buffer === bytes.buffer, off % w === 0, `${dtype} offset ${off}: zero-copy exactly when aligned`);
    }
  }
});

test("Tensor: numel, rows × cols, rowsView and reshape share the data, toF32 of f16/bf16 bits; bad sizes are errors", () => {
  assert.equal(numel([]), 1);
  assert.equal(numel([3, 0, 2]), 0);
  const t = Tensor.fromF32([2, 3, 4], Float32Array.from({ length: 24 }, (_, i) => i));
  assert.deepEqual([t.numel, t.rows, t.cols, t.byteLength], [24, 6, 4, 96]);
  const v = t.rowsView(2, 3);
  assert.deepEqual(v.shape, [3, 4]);
  assert.deepEqual([...v.toF32()], Array.from({ length: 12 }, (_, i) => 8 + i));
  (t.data as Float32Array)[8] = -1;
  assert.equal(v.toF32()[0], -1, "a view, not a copy");
  assert.equal(t.reshape([24]).data, t.data);
  assert.notEqual(t.toF32(true), t.data);
  // f16 1, −2, 65504, 2^-24 and bf16 1.5, −0 (bits: the top half of the f32)
  assert.deepEqual([...new Tensor("f16", [4], Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001])).toF32()], [1, -2, 65504, 2 ** -24]);
  const bf = new Tensor("bf16", [2], Uint16Array.from([0x3fc0, 0x8000])).toF32();
  assert.equal(bf[0], 1.5);
  assert.ok(Object.is(bf[1], -0));
  assert.throws(() => new Tensor("f32", [2, 2], new Float32Array(3)), (e: unknown) => e instanceof QuantlabError && e.code === "E_FORMAT" && /3 elements but shape \[2, 2\] needs 4/.test(e.message));
  assert.throws(() => t.reshape([5, 5]), /cannot reshape \[2, 3, 4\] to \[5, 5\]/);
});
