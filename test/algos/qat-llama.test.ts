/** QAT of stories260K (algos/qat-llama.ts): 0 steps is exactly RTN; a bounded run at int2:g32:asym lowers eval NLL well below RTN's. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dataPath } from "../../src/io/node/data.js";
import { loadLlama2cFile } from "../../src/io/node/llama2c-file.js";
import { Llama } from "../../src/model/llama.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { TensorNames, type Architecture, type ModelConfig } from "../../src/model/config.js";
import { blockLinearNames, qatLlama } from "../../src/algos/qat-llama.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { perplexity } from "../../src/eval/perplexity.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { Rng } from "../../src/core/rng.js";
import { config, randomModel } from "../model/synthetic.js";

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

describe("QAT on the other architectures (model/train.ts traits)", () => {
  // emb: the token embedding × this (neither flat nor saturated: 2-bit weights move the outputs); Gemma's √dim makes
  // the stream 8× larger, so its embedding is smaller and an untied head × `head` keeps the distributions peaky
  const GEMMA = { tiedEmbeddings: false, attnScale: 0.25, slidingWindow: 8, slidingLayers: [true, false] };
  const CASES: { arch: Architecture; over: Partial<ModelConfig>; emb?: number; head?: number }[] = [
    { arch: "qwen2", over: {} },
    { arch: "qwen3", over: { headDim: 24 } },
    { arch: "granite", over: { multipliers: { embedding: 0.5, residual: 1.5, attention: 0.06, logits: 2 } } },
    { arch: "llama", over: { slidingWindow: 8 } },
    // Phi-3: partial rotary (8 of 16 per head), LongRoPE's long factors (seqLen 64 > 32) and attention factor
    { arch: "phi3", over: { rotaryDim: 8, longRope: { shortFactor: [1, 1.2, 1.6, 2.5], longFactor: [1.1, 2, 4, 9], originalMaxPositionEmbeddings: 32, attentionFactor: 1.1 } } },
    // Gemma 2: query_pre_attn_scalar 16, soft-caps 50 / 30, a window of 8 on alternate layers
    { arch: "gemma2", over: { ...GEMMA, attnSoftcap: 50, finalSoftcap: 30 }, emb: 0.1, head: 3 },
    // Gemma 3: local base 10000 on the sliding layer, base 1e6 with linear scaling 2 on the global one
    { arch: "gemma3", over: { ...GEMMA, ropeTheta: 1e6, ropeThetaLocal: 10000, ropeLinearFactor: 2 }, emb: 0.1, head: 3 },
    { arch: "olmo2", over: {} },
  ];
  for (const { arch, over, emb: embMul = 0.6, head } of CASES) {
    test(`${arch}${arch === "llama" ? " (sliding window)" : ""}: QAT (distillation) at int2:g32:asym ends closer to the float model than RTN`, async (t) => {
      const c = config({ arch, dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 64, seqLen: 64, tiedEmbeddings: true, ...over });
      const m = randomModel(c, 9);
      const scale = (name: string, f: number) => {
        const w = m.weights.get(name)!;
        if (w.kind === "dense") for (let i = 0; i < w.tensor.data.length; i++) (w.tensor.data as Float32Array)[i]! *= f;
      };
      scale(TensorNames.tokenEmbd, embMul);
      if (head !== undefined) scale(TensorNames.output, head);
      const rng = new Rng(4);
      const stream = Array.from({ length: 4000 }, () => rng.int(c.vocabSize));
      const held = Array.from({ length: 400 }, () => rng.int(c.vocabSize));
      const kldTo = async (q: typeof m) => (await kld(new ModelLogits(new Llama(m, { contextLength: 64 })), new ModelLogits(new Llama(q, { contextLength: 64 })), held, { ctx: 32, bosId: 1 })).meanKld;
      const opts = { spec: "int2:g32:asym", lr: 3e-3, batch: 4, seq: 32, seed: 1, bosId: 1, loss: "kd" as const };
      const rtn = qatLlama(m, stream, { ...opts, steps: 0 });
      const qat = qatLlama(m, stream, { ...opts, steps: 20 });
      const kr = await kldTo(rtn.model), kq = await kldTo(qat.model);
      t.diagnostic(`${arch}: KLD vs float: RTN ${kr.toFixed(5)}, QAT 20 steps ${kq.toFixed(5)}`);
      assert.ok(kq < 0.9 * kr, `${arch}: QAT KLD ${kq} should be below 0.9 × RTN's ${kr}`);
      assert.ok(qat.losses.every(Number.isFinite));
    });
  }
});
