/**
 * GPTQ on ggml blocks (algos/ggml-gptq.ts): code bits found by probing the decoder round-trip real blocks'
 * codes; gptqGgml keeps llama.cpp's scales and lowers the output error tr((W−Q) H (W−Q)ᵀ).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlTypeName } from "../../src/ggml/types.js";
import { dequantize, quantize } from "../../src/ggml/codecs.js";
import { blockCodes, codeLayout, gptqGgml, setBlockCodes } from "../../src/algos/ggml-gptq.js";
import { HessianAccumulator } from "../../src/algos/gptq.js";
import { Rng } from "../../src/core/rng.js";

describe("GPTQ on ggml blocks", () => {
  test("code bits found by probing the decoder: every supported type round-trips real blocks' codes", () => {
    for (const t of [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1]) {
      const L = codeLayout(t);
      const B = L.blockSize;
      const x = new Float32Array(4 * B).map((_, i) => Math.sin(i * 1.7) * (1 + (i % 13)));
      const q = quantize(t, x);
      const codes = new Int32Array(B);
      const dec = dequantize(t, q, 4 * B);
      for (let b = 0; b < 4; b++) {
        const blk = q.slice(b * L.bytesPerBlock, (b + 1) * L.bytesPerBlock);
        blockCodes(t, blk, 0, codes);
        const again = blk.slice();
        setBlockCodes(t, again, 0, codes);
        assert.deepEqual(again, blk, ggmlTypeName(t));
        // lowering one element's code by one moves only that element's value, by its step
        const e = codes.findIndex((c) => c > 0);
        const c2 = Int32Array.from(codes);
        c2[e]! -= 1;
        setBlockCodes(t, again, 0, c2);
        const d2 = dequantize(t, again, B);
        for (let i = 0; i < B; i++) if (i !== e) assert.equal(d2[i], dec[b * B + i], `${ggmlTypeName(t)} element ${i}`);
        assert.notEqual(d2[e], dec[b * B + e]);
      }
      assert.equal(L.nBits, { [GgmlType.Q2_K]: 2, [GgmlType.Q3_K]: 3, [GgmlType.Q6_K]: 6, [GgmlType.Q5_K]: 5, [GgmlType.Q5_0]: 5, [GgmlType.Q5_1]: 5 }[t as number] ?? 4);
    }
    assert.throws(() => codeLayout(GgmlType.IQ4_XS), /not supported/);
  });

  test("gptqGgml: same scales as llama.cpp's blocks, lower output error tr((W−Q) H (W−Q)ᵀ)", () => {
    const rows = 16;
    const cols = 256;
    const rng = new Rng(3);
    const w = new Float32Array(rows * cols);
    rng.fillNormal(w, 0.05);
    // correlated inputs: x = A z, H = 2/N Σ x xᵀ
    const n = 1024;
    const xs = new Float32Array(n * cols);
    const z = new Float64Array(cols);
    for (let t = 0; t < n; t++) {
      for (let j = 0; j < cols; j++) z[j] = rng.normal();
      for (let j = 0; j < cols; j++) xs[t * cols + j] = z[j]! + 0.8 * z[(j + 1) % cols]! + (j % 16 === 0 ? 3 * z[j]! : 0);
    }
    const acc = new HessianAccumulator(cols);
    acc.add(xs, n);
    const h = acc.hessian();
    const imatrix = new Float32Array(cols);
    for (let j = 0; j < cols; j++) imatrix[j] = h[j * cols + j]! / 2;
    const err = (q: Float32Array) => {
      let e = 0;
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < cols; i++) {
          const di = w[r * cols + i]! - q[r * cols + i]!;
          for (let j = 0; j < cols; j++) e += di * h[i * cols + j]! * (w[r * cols + j]! - q[r * cols + j]!);
        }
      }
      return e;
    };
    const plain = quantize(GgmlType.Q4_K, w, rows * cols, { imatrix });
    const g = gptqGgml(GgmlType.Q4_K, w, rows, cols, h, imatrix);
    assert.equal(g.length, plain.length);
    // super-block header and sub-block scales (bytes 0..15 of each 144-byte block) are llama.cpp's
    for (let b = 0; b < g.length / 144; b++) assert.deepEqual(g.subarray(b * 144, b * 144 + 16), plain.subarray(b * 144, b * 144 + 16));
    const e0 = err(dequantize(GgmlType.Q4_K, plain, rows * cols));
    const e1 = err(dequantize(GgmlType.Q4_K, g, rows * cols));
    assert.ok(e1 < 0.9 * e0, `GPTQ output error ${e1} vs ${e0}`);
  });
});
