import { test } from "node:test";
import assert from "node:assert/strict";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { GgmlType } from "../../src/ggml/types.js";
import { loadGolden } from "../ggml/golden-helpers.js";

test("{kind: 'ggml'} weights decode through ggml's codecs (no registration, no side-effect import) and run on the reference backend", async () => {
  const g = await loadGolden(GgmlType.Q6_K);
  const w = { kind: "ggml" as const, type: GgmlType.Q6_K, shape: [g.rows, g.cols], data: g.q };
  const { rows, cols, data } = dequantizeWeight(w, "golden.q");
  assert.equal(rows, g.rows);
  assert.equal(cols, g.cols);
  assert.deepEqual(data, g.dq);
  const be = new RefBackend();
  const pw = be.prepare(w, "golden.q");
  const x = new Float32Array(g.cols).fill(1);
  const out = new Float32Array(g.rows);
  be.matvec(pw, x, out);
  for (let r = 0; r < g.rows; r++) {
    let s = 0;
    for (let c = 0; c < g.cols; c++) s += g.dq[r * g.cols + c]!;
    assert.ok(Math.abs(out[r]! - s) <= Math.abs(s) * 2 ** -23, `row ${r}: ${out[r]} vs ${s}`); // out is f32
  }
});
