/** LLM.int8() (algos/llmint8.ts): without outliers it is the vector-wise int8 product; outlier columns are found by threshold. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { int8MatmulVectorwise, llmInt8Matmul } from "../../src/algos/llmint8.js";
import { gaussian, matmulXWt, sqErr } from "./helpers.js";

describe("llm.int8", () => {
  test("without outliers it is exactly the vector-wise int8 product; outlier columns are found by threshold", () => {
    const rng = new Rng(23);
    const nTok = 6, rows = 5, cols = 20;
    const x = gaussian(rng, nTok * cols, 0.5), w = gaussian(rng, rows * cols);
    const r = llmInt8Matmul(x, nTok, w, rows, cols);
    assert.deepEqual(r.outlierCols, []);
    assert.deepEqual(r.y, int8MatmulVectorwise(x, nTok, w, rows, cols));
    x[2 * cols + 7] = 9; x[4 * cols + 13] = -6.5; x[1 * cols + 3] = 6; // 6 itself is not above the threshold
    const r2 = llmInt8Matmul(x, nTok, w, rows, cols);
    assert.deepEqual(r2.outlierCols, [7, 13]);
    assert.deepEqual(llmInt8Matmul(x, nTok, w, rows, cols, { threshold: 5.9 }).outlierCols, [3, 7, 13]);
    // the outlier part is computed in f16: error vs float64 well below the int8 part's
    const ref = matmulXWt(x, nTok, w, rows, cols);
    assert.ok(sqErr(ref, r2.y) < sqErr(ref, int8MatmulVectorwise(x, nTok, w, rows, cols)));
  });
});
