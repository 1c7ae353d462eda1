/** findNonFinite on every weight kind, against positions and bit patterns set by hand. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Tensor } from "../../src/core/tensor.js";
import { GgmlType } from "../../src/ggml/types.js";
import { blockF16Offsets, checkFiniteWeight, findNonFinite, firstNonFiniteF32 } from "../../src/model/finite.js";
import { GGML_TYPES, GGML_TYPE_IDS } from "../../src/ggml/types.js";
import { dequantizeRow, hasGgmlCodec } from "../../src/ggml/codecs.js";
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

  test("ggml blocks: the f16-field scan agrees with decoding every element, on random bytes of every type it covers", () => {
    const covered = GGML_TYPE_IDS.filter((t) => hasGgmlCodec(t) && blockF16Offsets(t) !== undefined);
    assert.ok(covered.includes(GgmlType.Q4_K) && covered.includes(GgmlType.Q8_0) && covered.includes(GgmlType.F16) && !covered.includes(GgmlType.BF16));
    let seed = 12345;
    const rnd = () => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed; };
    for (const t of covered) {
      const { blockSize, bytesPerBlock } = GGML_TYPES[t];
      const cols = blockSize === 1 ? 64 : blockSize * 2;
      const rows = 3;
      const bytes = (cols / blockSize) * bytesPerBlock * rows;
      let sawBad = 0, sawGood = 0;
      for (let trial = 0; trial < 60; trial++) {
        const data = new Uint8Array(bytes);
        for (let i = 0; i < bytes; i++) data[i] = rnd() & 0xff;
        // keep most f16 fields finite (exponent ≠ 31) so both verdicts occur; sometimes none special at all
        for (let b = 0; b < bytes / bytesPerBlock; b++) for (const o of blockF16Offsets(t)!) {
          const hi = b * bytesPerBlock + o + 1;
          if ((data[hi]! & 0x7c) === 0x7c && trial % 3 !== 0) data[hi]! &= 0xbf;
        }
        // every third trial: one field of a random block set to Inf or NaN (exponent all ones)
        if (trial % 3 === 0) {
          const offs = blockF16Offsets(t)!;
          const hi = (rnd() % (bytes / bytesPerBlock)) * bytesPerBlock + offs[rnd() % offs.length]! + 1;
          data[hi] = (data[hi]! & 0x83) | 0x7c;
        }
        const decoded = new Float32Array(cols);
        let want = -1;
        const rowBytes = bytes / rows;
        for (let r = 0; r < rows && want < 0; r++) {
          dequantizeRow(t, data.subarray(r * rowBytes, (r + 1) * rowBytes), decoded, cols);
          const i = firstNonFiniteF32(decoded);
          if (i >= 0) want = r * cols + i;
        }
        const got = findNonFinite({ kind: "ggml", type: t, shape: [rows, cols], data }, "w");
        assert.equal(got?.index ?? -1, want, `${GGML_TYPES[t].name} trial ${trial}`);
        if (want >= 0) sawBad++; else sawGood++;
      }
      assert.ok(sawBad > 0 && sawGood > 0, `${GGML_TYPES[t].name}: ${sawBad} bad, ${sawGood} finite`);
    }
  });
});
