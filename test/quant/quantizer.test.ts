/** SpecQuantizer as the algorithms' GroupQuantizer: GPTQ on a spec, its output stored as a QTensor. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import type { GroupQuantizer } from "../../src/algos/quantizer.js";
import { gptqQuantize } from "../../src/algos/gptq.js";
import { rtnQuantize } from "../../src/algos/rtn.js";
import { SpecQuantizer, type GroupParams } from "../../src/quant/quantizer.js";
import { parseSpec } from "../../src/quant/spec.js";
import { quantizeTensor } from "../../src/quant/tensor.js";

test("GPTQ with a spec quantizer (int4:g16:asym, nf4:g16) gives values a QTensor stores exactly, with less output error than RTN", () => {
  const rng = new Rng(31);
  const rows = 24, cols = 48, nTok = 256;
  const w = rng.fillNormal(new Float32Array(rows * cols), 0.1);
  const x = rng.fillNormal(new Float32Array(nTok * cols));
  for (let t = 0; t < nTok; t++) for (let c = 0; c < cols; c += 7) x[t * cols + c] = x[t * cols + c]! * 4; // uneven input scales
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < nTok; t++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j]! += (2 * x[t * cols + i]! * x[t * cols + j]!) / nTok;
  const outErr = (q: ArrayLike<number>) => {
    let e = 0;
    for (let t = 0; t < nTok; t++) for (let r = 0; r < rows; r++) {
      let d = 0;
      for (let c = 0; c < cols; c++) d += x[t * cols + c]! * (w[r * cols + c]! - q[r * cols + c]!);
      e += d * d;
    }
    return e;
  };
  for (const spec of ["int4:g16:asym", "nf4:g16", "int3:channel"]) {
    const sq = new SpecQuantizer(parseSpec(spec));
    const gq: GroupQuantizer<GroupParams> = sq; // the type contract, checked by tsc
    const g = gptqQuantize(w, rows, cols, h, gq, { name: spec });
    const r = rtnQuantize(w, rows, cols, gq);
    const qt = quantizeTensor(Float32Array.from(g.q), [rows, cols], spec, { params: g.params });
    assert.deepEqual(qt.dequantize(), Float32Array.from(g.q), `${spec}: stored GPTQ result`);
    assert.deepEqual(Float32Array.from(r.q), quantizeTensor(w, [rows, cols], spec).dequantize(), `${spec}: algos RTN = quantizeTensor`);
    assert.ok(outErr(g.q) < outErr(r.q), `${spec}: GPTQ ${outErr(g.q)} vs RTN ${outErr(r.q)}`);
  }
});
