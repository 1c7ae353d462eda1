/**
 * quantlab's optional refine pass (not llama.cpp's): starting from llama.cpp's bytes, it may only lower the
 * squared error it targets (imatrix-weighted when an imatrix is given), and its blocks stay ordinary.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { openGguf } from "../../src/io/gguf.js";
import { FileSource } from "../../src/io/node/file.js";
import { dequantize, quantize, quantizeRow } from "../../src/ggml/codecs.js";
import { GgmlType, ggmlTypeName } from "../../src/ggml/types.js";

const fixture = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "test", "ggml", "fixtures", "imatrix-golden.gguf");
const REFINED = [GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.IQ4_NL, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_XS];

test("refine lowers (never raises) the error against llama.cpp's own choice, with and without an imatrix", async (t) => {
  const f = await openGguf(new FileSource(fixture));
  const x = new Float32Array((await f.readTensorBytes("x")).slice().buffer);
  const imatrix = new Float32Array((await f.readTensorBytes("imatrix")).slice().buffer);
  await f.close();
  const n = x.length;
  const cols = imatrix.length;
  const err = (type: GgmlType, q: Uint8Array, w?: Float32Array): number => {
    const y = dequantize(type, q, n);
    let s = 0;
    for (let i = 0; i < n; i++) {
      assert.ok(Number.isFinite(y[i]!));
      s += (w ? w[i % cols]! : 1) * (y[i]! - x[i]!) ** 2;
    }
    return Math.sqrt(s / n);
  };
  for (const type of REFINED) {
    const name = ggmlTypeName(type);
    const plain = quantize(type, x, n);
    const refined = quantize(type, x, n, { refine: true });
    const a = err(type, plain);
    const b = err(type, refined);
    const qa = new Uint8Array(plain.length);
    const qb = new Uint8Array(plain.length);
    quantizeRow(type, x, qa, n, { imatrix });
    quantizeRow(type, x, qb, n, { imatrix, refine: true });
    const wa = err(type, qa, imatrix);
    const wb = err(type, qb, imatrix);
    t.diagnostic(`${name}: RMSE llama.cpp ${a.toExponential(4)} refined ${b.toExponential(4)}; imatrix-weighted llama.cpp ${wa.toExponential(4)} refined ${wb.toExponential(4)}`);
    assert.ok(b < a, `${name}: refined RMSE ${b} vs ${a}`);
    assert.ok(wb < wa, `${name}: refined weighted RMSE ${wb} vs ${wa}`);
    assert.notDeepEqual(refined, plain);
  }
});

test("refine is ignored by types without a refine pass (bytes stay llama.cpp's)", () => {
  const x = new Float32Array(256).map((_, i) => Math.sin(i) * 0.1);
  for (const type of [GgmlType.Q4_1, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.TQ2_0]) {
    assert.deepEqual(quantize(type, x, 256, { refine: true }), quantize(type, x, 256), ggmlTypeName(type));
  }
});
