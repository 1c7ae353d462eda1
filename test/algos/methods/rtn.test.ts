/**
 * Method rtn's per-tensor quantization (algos/methods/rtn.ts) on stories260K: the quantized file loads back and runs exactly like the
 * in-memory quantized model, and the expected quality order holds on real text.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { saveQuantModelFile } from "../../../src/io/node/quant-file.js";
import { Llama } from "../../../src/model/llama.js";
import { perplexity } from "../../../src/eval/perplexity.js";
import { QTensor } from "../../../src/quant/tensor.js";
import { dynamicActivations } from "../../../src/algos/activations.js";
import { quantize } from "../../../src/algos/quantize.js";
import { globToRegExp, selectTensors } from "../../../src/algos/select.js";
import { quantizeTensors } from "../../../src/algos/methods/rtn.js";
import { noProgress } from "../../../src/core/progress.js";

const quantizeModel = (m: Model, spec: string, names: string[]) => quantizeTensors(m, names, () => spec, { seed: 0, progress: noProgress });
import type { Model } from "../../../src/model/weights.js";

const model = await loadModel(dataPath("stories260K", "stories260K.bin"));
const tokenizer = model.tokenizer!;
const evalText = readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 12000);
const tokens = tokenizer.encode(evalText, { bos: false });

function lastLogits(m: Model, ids: number[]): Float32Array {
  const llama = new Llama(m);
  llama.reset();
  let out = new Float32Array(0);
  llama.prefill(ids, 0, (lg, row, n) => { out = lg.slice((n - 1) * m.config.vocabSize, n * m.config.vocabSize); });
  return out;
}

describe("quantized model files", () => {
  test("quantize → save → loadModel gives QTensors with the same values, the same tokenizer and the same logits", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quantlab-q-"));
    try {
      const names = selectTensors(model);
      assert.equal(names.length, 35);
      const q = quantizeModel(model, "int4:g32:asym", names);
      const path = join(dir, "s4.safetensors");
      const bytes = await saveQuantModelFile(q.model, path);
      assert.equal(bytes, readFileSync(path).length);
      const back = await loadModel(path);
      for (const n of names) {
        const w = back.weights.get(n)!;
        assert.equal(w.kind, "quant", n);
        const wq = q.model.weights.get(n)!;
        const a = w.kind === "quant" ? w.q : undefined, b = wq.kind === "quant" ? wq.q : undefined;
        assert.ok(a instanceof QTensor && b instanceof QTensor);
        assert.equal(a.spec, "int4:g32:asym");
        assert.deepEqual(a.dequantize(), b.dequantize(), n);
      }
      const text = "Once upon a time, there was a little girl named Lily.";
      const ids = tokenizer.encode(text, { bos: true });
      assert.deepEqual(back.tokenizer!.encode(text, { bos: true }), ids);
      assert.deepEqual(lastLogits(back, ids), lastLogits(q.model, ids));
      // the file is smaller than the float model: 35 linears at ~5.2 bits instead of 32
      assert.ok(bytes < 0.35 * readFileSync(dataPath("stories260K", "stories260K.bin")).length, `${bytes} bytes`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("tensor selection globs", () => {
    assert.ok(globToRegExp("blk.*.ffn_{up,down}.weight").test("blk.3.ffn_down.weight"));
    assert.ok(!globToRegExp("blk.*.ffn_{up,down}.weight").test("blk.3.ffn_gate.weight"));
    assert.deepEqual(selectTensors(model, ["blk.0.attn_*"]), ["blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight"]);
    assert.equal(selectTensors(model, undefined, ["blk.*.ffn_down.weight"]).length, 30);
    assert.throws(() => selectTensors(model, ["nothing*"]), /--only: "nothing\*" matches no tensor/);
    assert.throws(() => selectTensors(model, undefined, ["blk.*.ffn_dwn.weight"]), /--skip: "blk\.\*\.ffn_dwn\.weight" matches no tensor/);
  });
});

describe("expected order on stories260K (perplexity on the first 2044 eval tokens, ctx 512)", async () => {
  const opts = { ctx: 512, bosId: tokenizer.bosId, maxTokens: 2044 };
  const ppl = async (m: Model) => (await perplexity(new Llama(m, { contextLength: 512 }), tokens, opts)).ppl;
  const names = selectTensors(model);
  const base = await ppl(model);
  const r: Record<string, number> = {};
  for (const spec of ["fp16", "int8:channel", "int4:g32", "int4:g128", "nf4:g32", "int3:g32", "int3:g32:mse", "int3:g32:kl", "int3:channel", "int3:channel:mse"]) {
    r[spec] = await ppl(quantizeModel(model, spec, names).model);
  }
  const rel = (s: string) => (r[s]! - base) / base;
  test("fp16 and int8 per channel are within 0.5% of the float perplexity", () => {
    assert.ok(Math.abs(rel("fp16")) < 0.005 && Math.abs(rel("int8:channel")) < 0.005, JSON.stringify({ base, ...r }));
  });
  test("finer groups beat coarser ones at the same bits", () => {
    assert.ok(r["int4:g32"]! < r["int4:g128"]!, JSON.stringify(r));
    assert.ok(r["int3:g32"]! < r["int3:channel"]!, JSON.stringify(r));
  });
  test("MSE clipping beats min-max at 3 bits", () => {
    assert.ok(r["int3:g32:mse"]! < r["int3:g32"]!, JSON.stringify(r));
    assert.ok(r["int3:channel:mse"]! < r["int3:channel"]!, JSON.stringify(r));
  });
  test("NF4 beats symmetric INT4 at the same group size", () => {
    assert.ok(r["nf4:g32"]! < r["int4:g32"]!, JSON.stringify(r));
  });
  test("activation parts: a8 is per-token dynamic, a8s needs calibration, fp8 activations are refused", async () => {
    await assert.rejects(quantize(model, { target: { spec: "int8:channel:a8s" } }), /method rtn needs calibration data/);
    assert.deepEqual(dynamicActivations("int8:channel:a8"), { bits: 8, mode: "dynamic" });
    assert.throws(() => dynamicActivations("int8:channel:afp8"), /symmetric integers only/);
  });
});
