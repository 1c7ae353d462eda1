/**
 * Importance-weighted quantization against llama.cpp itself: fixtures/imatrix-golden.gguf holds x, an
 * imatrix, and q.<TYPE> = llama.cpp's ggml_quantize_chunk(x, imatrix) (generator: gen-imatrix-golden.mjs).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { openGguf } from "../../src/io/gguf.js";
import { FileSource } from "../../src/io/node/file.js";
import { dequantize, quantizeRow } from "../../src/ggml/codecs.js";
import { GGML_TYPES, ggmlTypeName } from "../../src/ggml/types.js";
import { rmse } from "./golden-helpers.js";

// dist/test/ggml → test/ggml/fixtures
const fixture = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "test", "ggml", "fixtures", "imatrix-golden.gguf");

test("with an imatrix, quantizeRow equals llama.cpp's ggml_quantize_chunk byte for byte", async (t) => {
  const f = await openGguf(new FileSource(fixture));
  try {
    const x = new Float32Array((await f.readTensorBytes("x")).slice().buffer);
    const imatrix = new Float32Array((await f.readTensorBytes("imatrix")).slice().buffer);
    const [rows, cols] = f.tensor("x")!.shape as [number, number];
    const n = rows * cols;
    const qs = f.tensors.filter((ti) => ti.name.startsWith("q."));
    assert.equal(qs.length, 11);
    for (const ti of qs) {
      const type = ti.type;
      const want = await f.readTensorBytes(ti);
      const got = new Uint8Array(want.length);
      quantizeRow(type, x, got, n, { imatrix });
      let nd = 0;
      let first = -1;
      for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) { nd++; if (first < 0) first = i; }
      const werr = (q: Uint8Array): number => {
        const y = dequantize(type, q, n);
        let s = 0;
        for (let i = 0; i < n; i++) s += imatrix[i % cols]! * (y[i]! - x[i]!) ** 2;
        return Math.sqrt(s / n);
      };
      t.diagnostic(`${ggmlTypeName(type)}: ${nd} of ${got.length} bytes differ; weighted RMSE ours ${werr(got).toExponential(4)} llama.cpp ${werr(want).toExponential(4)}; RMSE ours ${rmse(x, dequantize(type, got, n)).toExponential(4)} llama.cpp ${rmse(x, dequantize(type, want, n)).toExponential(4)}`);
      assert.equal(nd, 0, `${ggmlTypeName(type)}: first differing byte ${first} (block ${Math.floor(first / GGML_TYPES[type].bytesPerBlock)})`);
    }
  } finally {
    await f.close();
  }
});
