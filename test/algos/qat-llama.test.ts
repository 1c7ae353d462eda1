/** QAT of stories260K (algos/qat-llama.ts): 0 steps is exactly RTN; a bounded run at int2:g32:asym lowers eval NLL well below RTN's. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dataPath } from "../../src/io/node/data.js";
import { loadLlama2cFile } from "../../src/io/node/llama2c-file.js";
import { Llama } from "../../src/model/llama.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { TensorNames } from "../../src/model/config.js";
import { blockLinearNames, qatLlama } from "../../src/algos/qat-llama.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { perplexity } from "../../src/eval/perplexity.js";

const m260K = await loadLlama2cFile(dataPath("stories260K", "stories260K.bin"), {});

describe("QAT of stories260K (algos/qat-llama.ts)", () => {
  const tok = m260K.tokenizer!;
  const calib = tok.encode(readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 60000), { bos: false });
  const evalTokens = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 20000), { bos: false });
  const evalNll = async (m: typeof m260K) =>
    (await perplexity(new Llama(m, { contextLength: 64, backend: new RefBackend() }), evalTokens, { ctx: 64, bosId: tok.bosId, maxTokens: 600 })).nll;

  test("steps 0 gives exactly the RTN model (same codes as quantizeTensor)", () => {
    const r = qatLlama(m260K, calib, { spec: "int3:g32:asym", steps: 0, lr: 1e-3, batch: 1, seq: 8, bosId: tok.bosId });
    for (const name of blockLinearNames(m260K)) {
      const w = r.model.weights.get(name)!;
      assert.equal(w.kind, "quant");
      const orig = m260K.weights.get(name)!;
      assert.equal(orig.kind, "dense");
      const rtn = quantizeTensor(orig.kind === "dense" ? (orig.tensor.data as Float32Array) : new Float32Array(), orig.kind === "dense" ? orig.tensor.shape : [], "int3:g32:asym");
      assert.deepEqual(w.kind === "quant" ? w.q.dequantize() : undefined, rtn.dequantize());
    }
  });

  test("QAT at int2:g32:asym lowers eval NLL below RTN's (bounded run)", async () => {
    const spec = "int2:g32:asym";
    const rtn = qatLlama(m260K, calib, { spec, steps: 0, lr: 1e-3, batch: 1, seq: 8, bosId: tok.bosId });
    const qat = qatLlama(m260K, calib, { spec, steps: 16, lr: 5e-3, batch: 4, seq: 32, seed: 1, bosId: tok.bosId });
    const nllRtn = await evalNll(rtn.model);
    const nllQat = await evalNll(qat.model);
    const nllFloat = await evalNll(m260K);
    // the quantized model the run returns is what it trained: its linears decode to a 2-bit grid
    const q = qat.model.weights.get(TensorNames.ffnDown(0))!;
    assert.equal(q.kind === "quant" ? q.q.spec : q.kind, spec);
    assert.ok(nllFloat < nllRtn, `float ${nllFloat} vs RTN ${nllRtn}`);
    assert.ok(nllQat < nllRtn - 0.5, `QAT eval NLL ${nllQat.toFixed(4)} should be well below RTN's ${nllRtn.toFixed(4)} (float ${nllFloat.toFixed(4)})`);
    assert.ok(qat.losses.every(Number.isFinite));
  });
});
