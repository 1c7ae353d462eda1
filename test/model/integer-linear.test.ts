/**
 * Integer-only linears: every output equals an independent BigInt computation of the documented steps
 * (int8 codes, exact integer dot product, dyadic multiplier from the two scales, rounding shifts); it is
 * within the requantization error of the float fake-quant product; narrow accumulators wrap (= the exact
 * sum mod 2^bits) or saturate and are counted; on stories260K W8A8 integer-only matches fake-quant W8A8.
 */
import { describe, test } from "node:test";
import { shiftAway } from "../helpers/bigint.js";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Rng } from "../../src/core/rng.js";
import { Tensor } from "../../src/core/tensor.js";
import { toDyadic } from "../../src/formats/int.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { Llama } from "../../src/model/llama.js";
import { IntegerLinearBackend, MULT_BITS, OUT_FRAC, linearSiteKey, roundShift } from "../../src/model/integer-linear.js";
import { fakeQuantInputs } from "../../src/model/transforms.js";
import { quantizeTensor, type QTensor } from "../../src/quant/tensor.js";
import { perplexity } from "../../src/eval/perplexity.js";
import { dynamicActivations } from "../../src/algos/activations.js";
import { selectTensors } from "../../src/algos/select.js";
import { quantizeTensors } from "../../src/algos/methods/rtn.js";
import { noProgress } from "../../src/core/progress.js";
import type { Model } from "../../src/model/weights.js";

const quantizeModel = (m: Model, spec: string, names: string[]) => quantizeTensors(m, names, () => spec, { seed: 0, progress: noProgress });

/** The documented integer-only steps on BigInt: independent of the backend's JS-number arithmetic. */
function referenceOutputs(q: QTensor, x: Float32Array, actBits: number, accBits = 32, saturate = false): { y: number[]; overflows: number } {
  const [rows, cols] = [q.layout.rows, q.layout.cols];
  const codes = q.unpackCodes();
  const off = q.quantizer.codeOffset;
  const qmax = 2 ** (actBits - 1) - 1;
  let amax = 0;
  for (const v of x) amax = Math.max(amax, Math.abs(v));
  const sx = Math.fround(amax / qmax);
  const xq = Array.from(x, (v) => {
    const t = v / sx;
    let r = Math.round(t);
    if (r - t === 0.5 && r % 2 !== 0) r--;
    return BigInt(Math.max(-qmax, Math.min(qmax, r)));
  });
  const dx = toDyadic(sx, MULT_BITS);
  const lim = 1n << BigInt(accBits - 1);
  const y: number[] = [];
  let overflows = 0;
  for (let r = 0; r < rows; r++) {
    let acc = 0n, over = false;
    for (let c = 0; c < cols; c++) {
      acc += BigInt(codes[r * cols + c]! - off) * xq[c]!;
      if (acc >= lim || acc < -lim) { over = true; if (saturate) acc = acc >= lim ? lim - 1n : -lim; }
    }
    if (!saturate) acc = BigInt.asIntN(accBits, acc); // wrapping at every step = wrapping once at the end
    if (over) overflows++;
    const dw = toDyadic(q.scales!.values[q.specObject.granularity.kind === "channel" ? r : 0]!, MULT_BITS);
    const m = shiftAway(BigInt(dw.m) * BigInt(dx.m), MULT_BITS);
    const k = dw.k + dx.k - MULT_BITS;
    y.push(Number(shiftAway(acc * m, k - OUT_FRAC)) / 2 ** OUT_FRAC);
  }
  return { y, overflows };
}

function linear(rows: number, cols: number, spec: string, seed: number): { q: QTensor; w: Float32Array } {
  const w = new Rng(seed).fillNormal(new Float32Array(rows * cols), 0.05);
  return { q: quantizeTensor(w, [rows, cols], spec), w };
}

describe("integer-only linear", () => {
  test("roundShift rounds halves away from zero and is exact", () => {
    assert.equal(roundShift(5, 1), 3);
    assert.equal(roundShift(-5, 1), -3);
    assert.equal(roundShift(4, 1), 2);
    assert.equal(roundShift(7, 2), 2);
    assert.equal(roundShift(3, -2), 12);
    assert.equal(roundShift(2 ** 52 + 2, 1), 2 ** 51 + 1);
  });

  for (const [spec, actBits] of [["int8:channel:a8:intmm", 8], ["int4:channel:a8:intmm", 8], ["int8:tensor:a6:intmm", 6], ["int8:channel:symfull:a8:intmm", 8]] as const) {
    test(`${spec}: outputs equal the BigInt reference, and the fake-quant float product within the requantization error`, () => {
      const rows = 24, cols = 172;
      const { q } = linear(rows, cols, spec, 11);
      const be = new IntegerLinearBackend(new RefBackend());
      const pw = be.prepare({ kind: "quant", q }, "blk.0.ffn_down.weight");
      const rng = new Rng(5);
      for (let t = 0; t < 8; t++) {
        const x = rng.fillNormal(new Float32Array(cols), 2);
        x[t] = 40; // an outlier sets the token's scale
        const out = new Float32Array(rows);
        be.matvec(pw, x, out);
        const ref = referenceOutputs(q, x, actBits);
        assert.deepEqual(Array.from(out), ref.y);
        // fake quant: fround(q·s) inputs times dequantized weights in float
        const xf = Float32Array.from(x);
        fakeQuantInputs(xf, 1, cols, actBits);
        const wf = q.dequantize();
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let c = 0; c < cols; c++) s += wf[r * cols + c]! * xf[c]!;
          assert.ok(Math.abs(out[r]! - s) <= 2 ** -14 * Math.abs(s) + 2 ** -OUT_FRAC + 1e-6, `row ${r}: integer ${out[r]} vs float ${s}`);
        }
      }
      assert.equal(be.stats.accOverflows, 0);
    });
  }

  test("narrow accumulators: acc=16 wraps (exact sum mod 2^16), acc=16s saturates; overflows are counted", () => {
    const rows = 16, cols = 172;
    const x = new Rng(8).fillNormal(new Float32Array(cols), 1);
    for (const [spec, sat] of [["int8:channel:a8:intmm:acc=16", false], ["int8:channel:a8:intmm:acc=16s", true]] as const) {
      const { q } = linear(rows, cols, spec, 12);
      const be = new IntegerLinearBackend(new RefBackend());
      const pw = be.prepare({ kind: "quant", q }, "w");
      const out = new Float32Array(rows);
      be.matvec(pw, x, out);
      const ref = referenceOutputs(q, x, 8, 16, sat);
      assert.deepEqual(Array.from(out), ref.y, spec);
      assert.ok(ref.overflows > 0, "the test input must overflow 16 bits");
      assert.equal(be.stats.accOverflows, ref.overflows);
    }
  });

  test("weights without intmm go to the wrapped backend; site keys of block linears", () => {
    const { q } = linear(4, 8, "int8:channel", 1);
    const inner = new RefBackend();
    const be = new IntegerLinearBackend(inner);
    const x = new Rng(2).fillNormal(new Float32Array(8));
    const a = new Float32Array(4), b = new Float32Array(4);
    be.matvec(be.prepare({ kind: "quant", q }), x, a);
    inner.matvec(inner.prepare({ kind: "quant", q }), x, b);
    assert.deepEqual(a, b);
    assert.equal(linearSiteKey("blk.3.ffn_up.weight"), "3.ffn_in");
    assert.equal(linearSiteKey("blk.0.attn_output.weight"), "0.attn_out_in");
    assert.equal(linearSiteKey("token_embd.weight"), undefined);
  });

  test("stories260K: integer-only W8A8 perplexity within 0.3 % of fake-quant W8A8; acc=16 overflows and breaks it", async () => {
    const model = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const tok = model.tokenizer!;
    const tokens = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 4000), { bos: false });
    const names = selectTensors(model);
    const opts = { ctx: 256, maxTokens: 510, bosId: tok.bosId };
    const fake = quantizeModel(model, "int8:channel:a8", names).model;
    const acts = dynamicActivations("int8:channel:a8")!;
    const pFake = await perplexity(new Llama({ ...fake, inputTransforms: { activations: acts } }, { contextLength: 256 }), tokens, opts);
    const run = async (spec: string) => {
      const be = new IntegerLinearBackend(new RefBackend());
      const p = await perplexity(new Llama(quantizeModel(model, spec, names).model, { contextLength: 256, backend: be }), tokens, opts);
      return { ppl: p.ppl, stats: be.stats };
    };
    const int = await run("int8:channel:a8:intmm");
    assert.ok(Math.abs(int.ppl / pFake.ppl - 1) < 0.003, `integer-only ${int.ppl} vs fake-quant ${pFake.ppl}`);
    assert.equal(int.stats.accOverflows, 0);
    assert.equal(int.stats.dots, 2 * 255 * (5 * (64 + 32 + 32 + 64 + 172 + 172 + 64)));
    const narrow = await run("int8:channel:a8:intmm:acc=16");
    assert.ok(narrow.stats.accOverflows > 0 && narrow.ppl > 10 * int.ppl, `acc=16: ${narrow.stats.accOverflows} overflows, ppl ${narrow.ppl}`);
  });

  test("a saved intmm file runs as integers wherever a Llama is built (run, eval, kld, bench), not as float fake quantization", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const { quantize } = await import("../../src/algos/quantize.js");
    const { saveQuantizeResult } = await import("../../src/io/node/quantize-output.js");
    const base = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const dir = mkdtempSync(join(tmpdir(), "ql-intmm-"));
    try {
      const r = await quantize(base, { target: { spec: "int8:channel:a8:intmm" }, method: "rtn" });
      const file = join(dir, "q.safetensors");
      await saveQuantizeResult(r, file);
      const m = await loadModel(file);
      const ids = [1, 403, 407, 261, 378, 432, 383, 286];
      const logits = (l: Llama) => { const out: number[] = []; l.prefill(ids, 0, (lg) => out.push(...lg)); return Float32Array.from(out); };
      assert.equal(m.inputTransforms?.activations?.bits, 8, "the file carries its a8 activation rounding");
      const auto = new Llama(m, { backend: new RefBackend() });
      assert.equal(auto.backend.name, "intmm+ref");
      const explicit = new Llama(m, { backend: new IntegerLinearBackend(new RefBackend(), m.inputTransforms?.activations) });
      assert.deepEqual(logits(auto), logits(explicit));
      assert.ok((auto.backend as IntegerLinearBackend).stats.dots > 0, "the integer kernel ran");
      // the fake-quant path of the same weights and activation rounding gives different (close) logits
      const dense = new Map([...m.weights].map(([n, w]) => [n, w.kind === "quant" ? { kind: "dense" as const, tensor: Tensor.fromF32(w.q.shape, w.q.dequantize()) } : w]));
      const fake = new Llama({ ...m, weights: dense }, { backend: new RefBackend() });
      assert.equal(fake.backend.name, "ref");
      const a = logits(auto), b = logits(fake);
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      // (requantization error compounding over 5 layers, on logits of magnitude ~10; the perplexity test above bounds its effect)
      assert.ok(worst > 0 && worst < 1, `integer vs fake-quant max |Δlogit| ${worst}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
