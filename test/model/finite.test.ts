/** findNonFinite on every weight kind, against positions and bit patterns set by hand. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Tensor } from "../../src/core/tensor.js";
import { GgmlType } from "../../src/ggml/types.js";
import { checkFiniteWeight, findNonFinite, firstNonFiniteF32 } from "../../src/model/finite.js";
import { QuantlabError } from "../../src/core/errors.js";
import type { Weight } from "../../src/core/weight.js";

const dense = (dtype: "f32" | "f16" | "bf16", shape: number[], data: Float32Array | Uint16Array): Weight => ({ kind: "dense", tensor: new Tensor(dtype, shape, data) });

describe("non-finite weights", () => {
  test("f32: the first NaN/±Inf anywhere, and none in finite data (incl. ±0, subnormals, ±FLT_MAX)", () => {
    fc.assert(fc.property(fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 300 }), fc.nat(), fc.constantFrom(NaN, Infinity, -Infinity), (xs, at, bad) => {
      const a = Float32Array.from(xs);
      assert.equal(firstNonFiniteF32(a), -1);
      const i = at % a.length;
      a[i] = bad;
      if (i + 1 < a.length) a[a.length - 1] = NaN; // a later one does not hide the first
      assert.equal(firstNonFiniteF32(a), i);
      const r = findNonFinite(dense("f32", [a.length], a))!;
      assert.equal(r.index, i);
      assert.ok(Object.is(r.value, bad));
    }));
  });

  test("f16 and bf16 bits: exponent all ones is NaN/Inf; 0x7bff (65504) and 0x7f7f (bf16 max) are finite", () => {
    const h = new Uint16Array([0x0000, 0x8000, 0x0001, 0x7bff, 0xfbff, 0x3c00, 0x7c00]);
    assert.deepEqual(findNonFinite(dense("f16", [7], h)), { index: 6, value: Infinity });
    h[6] = 0xfc00;
    assert.deepEqual(findNonFinite(dense("f16", [7], h)), { index: 6, value: -Infinity });
    h[2] = 0x7e00;
    assert.equal(findNonFinite(dense("f16", [7], h))!.index, 2);
    assert.ok(Number.isNaN(findNonFinite(dense("f16", [7], h))!.value));
    const b = new Uint16Array([0x7f7f, 0xff7f, 0x3f80, 0x0001, 0x7fc0]);
    assert.equal(findNonFinite(dense("bf16", [5], b))!.index, 4);
    b[4] = 0x7f80;
    assert.deepEqual(findNonFinite(dense("bf16", [5], b)), { index: 4, value: Infinity });
    b[4] = 0;
    assert.equal(findNonFinite(dense("bf16", [5], b)), undefined);
  });

  test("f16/bf16: the first special value at any position, aligned or not (the two-per-word scan and its tail)", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 64 }), fc.nat(), fc.nat(), fc.boolean(), fc.constantFrom("f16", "bf16"), (n, at, later, shifted, dtype) => {
      const special = dtype === "f16" ? 0x7c00 : 0x7f80;
      const all = new Uint16Array(n + 1).fill(dtype === "f16" ? 0x3c00 : 0x3f80); // 1.0
      const a = shifted ? all.subarray(1) : all.subarray(0, n); // byteOffset 2: not 4-aligned
      assert.equal(findNonFinite(dense(dtype, [a.length], a)), undefined);
      const i = at % a.length;
      a[i] = special | (later % 2 ? 0x8000 : 0) | (later % 3 === 0 ? 1 : 0); // ±Inf or NaN
      const j = Math.max(i, later % a.length);
      a[j] = special; // a second one at or after the first
      assert.equal(findNonFinite(dense(dtype, [a.length], a))!.index, i);
    }));
  });

  test("ggml Q8_0: a block whose f16 scale is NaN makes its 32 values NaN; row and column are named", () => {
    // Q8_0 block (ggml-common.h block_q8_0): f16 d, then 32 int8 codes; 2 rows × 64 columns = 4 blocks
    const data = new Uint8Array(4 * 34);
    const dv = new DataView(data.buffer);
    for (let b = 0; b < 4; b++) { dv.setUint16(b * 34, 0x3c00, true); for (let j = 0; j < 32; j++) data[b * 34 + 2 + j] = j; }
    const w: Weight = { kind: "ggml", type: GgmlType.Q8_0, shape: [2, 64], data };
    assert.equal(findNonFinite(w), undefined);
    dv.setUint16(3 * 34, 0x7e00, true); // block 3 = row 1, columns 32..63
    assert.equal(findNonFinite(w)!.index, 64 + 32);
    assert.throws(() => checkFiniteWeight(w, "blk.0.attn_q.weight", "m.gguf", "refusing to write x"), (e: unknown) =>
      e instanceof QuantlabError && e.code === "E_VALUE" && e.message === 'm.gguf: tensor "blk.0.attn_q.weight" element 96 (row 1, column 32) is NaN; refusing to write x (--allow-nonfinite / allowNonFinite: true to go ahead anyway)');
  });
});
