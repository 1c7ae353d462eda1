/**
 * Bit-exactness against llama.cpp itself: shared/data/ggml/golden-<type>.gguf holds x, q = llama.cpp's
 * ggml_quantize_chunk(x) (no imatrix) and dq = llama.cpp's to_float(q).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { GOLDEN_FILES, bitDiffReport, loadGolden, rmse } from "./golden-helpers.js";
import { dequantize, quantize } from "../../src/ggml/codecs.js";
import { GgmlType, GGML_TYPES, ggmlTypeName } from "../../src/ggml/types.js";

const TYPES = Object.keys(GOLDEN_FILES).map(Number) as GgmlType[];

/** An f16 decoder written from IEEE 754 directly (independent of core/f16.ts tables). */
function f16Formula(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return s * m * Math.pow(2, -24);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * Math.pow(2, e - 15);
}

describe("ggml goldens written by llama.cpp", () => {
  for (const type of TYPES) {
    const name = ggmlTypeName(type);

    test(`${name}: dequantizeRow(q) equals llama.cpp's dq bit for bit`, async () => {
      const g = await loadGolden(type);
      const n = g.rows * g.cols;
      const got = dequantize(type, g.q, n);
      if (type === GgmlType.F16) {
        // this golden's dq was written as zeros by the generator (see test/io/gguf.test.ts); check every
        // f16 code of q against the IEEE formula instead, and all 65536 codes below
        assert.ok(g.dq.every((v) => v === 0));
        for (let i = 0; i < n; i++) assert.equal(got[i], f16Formula(g.q[2 * i]! | (g.q[2 * i + 1]! << 8)), `element ${i}`);
        return;
      }
      const report = bitDiffReport(type, g.q, g.dq, got);
      assert.equal(report, null, `${name}: ${report}`);
    });

    test(`${name}: quantizeRow(x) equals llama.cpp's q byte for byte`, async (t) => {
      const g = await loadGolden(type);
      const n = g.rows * g.cols;
      const ours = quantize(type, g.x, n);
      const { bytesPerBlock } = GGML_TYPES[type];
      let firstDiff = -1;
      for (let i = 0; i < ours.length && firstDiff < 0; i++) if (ours[i] !== g.q[i]) firstDiff = i;
      const rOurs = rmse(g.x, dequantize(type, ours, n));
      const rLlama = rmse(g.x, dequantize(type, g.q, n));
      t.diagnostic(`${name}: RMSE ours ${rOurs.toExponential(4)} llama.cpp ${rLlama.toExponential(4)} byte-identical ${firstDiff < 0}`);
      assert.equal(ours.length, g.q.length);
      assert.ok(rOurs <= rLlama, `${name}: our RMSE ${rOurs} is worse than llama.cpp's ${rLlama}`);
      assert.equal(firstDiff, -1, `${name}: first differing byte ${firstDiff} in block ${Math.floor(firstDiff / bytesPerBlock)}`);
    });
  }

  test("F16: all 65536 codes decode as the IEEE formula (NaN stays NaN)", () => {
    const bytes = new Uint8Array(2 * 65536);
    for (let h = 0; h < 65536; h++) {
      bytes[2 * h] = h & 0xff;
      bytes[2 * h + 1] = h >> 8;
    }
    const got = dequantize(GgmlType.F16, bytes, 65536);
    for (let h = 0; h < 65536; h++) {
      const want = f16Formula(h);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got[h]!), `code ${h}`);
      else assert.ok(Object.is(got[h], want), `code ${h}: ${got[h]} vs ${want}`);
    }
  });
});
