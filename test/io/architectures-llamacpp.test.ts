/**
 * The architectures beyond Llama (model/config.ts ARCH_TRAITS) on tiny test models, with llama.cpp as the
 * independent oracle. For each family: a Hugging Face directory whose config.json has the fields transformers
 * writes for that model_type (Qwen2Config / Qwen3Config: attention biases implied or `attention_bias`,
 * `head_dim`, `use_sliding_window`, `max_window_layers` …) and HF tensor names (q/k/v_proj.bias,
 * q_norm/k_norm), weights in HF's row order (NeoX RoPE: no Q/K permutation); quantlab loads it, writes a
 * GGUF (`qwen2.*` / `qwen3.*` keys, llama.cpp tensor names), and
 *  - the HF directory and its GGUF give the same logits in quantlab (1e-5),
 *  - llama.cpp (node-llama-cpp 3.21.1, f32 KV cache) gives the same next-token probabilities on the GGUF as
 *    quantlab (1e-3), on distributions peaky enough (top p > 0.3) that a wrong norm, bias or RoPE shows,
 *  - the WASM backend agrees with the reference backend,
 *  - calibration-based quantization (GPTQ, AWQ) and a ggml preset run and stay close to float.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadModel } from "../../src/io/node/load.js";
import { saveGgufFile } from "../../src/io/node/gguf-file.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { ARCH_TRAITS, type ModelConfig } from "../../src/model/config.js";
import { LlamaCppModel, ggmlSimdOfThisMachine, maxAbsProbDiff, softmax } from "../helpers/llamacpp.js";
import { TINY_VOCAB, logitsOf, ortVsQuantlab, randomWeights, tinyTokenizer as tokenizer } from "../helpers/tiny-arch.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { quantize } from "../../src/algos/quantize.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import type { Backend } from "../../src/kernels/types.js";
import { buildOnnxGraph } from "../../src/io/onnx.js";
import { saveOnnxDir } from "../../src/io/node/onnx-file.js";
import { env, pipeline, Tensor as HfTensor } from "@huggingface/transformers";
import { generate } from "../../src/model/generate.js";
import { GgmlForward } from "../../src/model/ggml-forward.js";

const VOCAB = TINY_VOCAB;

/** config.json as transformers writes it for each model_type (checked against hub configs of Qwen2.5-0.5B / Qwen3-0.6B). */
function transformersConfig(cfg: ModelConfig): Record<string, unknown> {
  const common = {
    hidden_act: "silu", hidden_size: cfg.dim, initializer_range: 0.02, intermediate_size: cfg.hiddenDim, max_position_embeddings: cfg.seqLen,
    num_attention_heads: cfg.nHeads, num_hidden_layers: cfg.nLayers, num_key_value_heads: cfg.nKvHeads, rms_norm_eps: cfg.normEps,
    rope_scaling: null, rope_theta: cfg.ropeTheta, tie_word_embeddings: cfg.tiedEmbeddings, torch_dtype: "float32", transformers_version: "4.51.0",
    use_cache: true, vocab_size: cfg.vocabSize, bos_token_id: VOCAB - 2, eos_token_id: VOCAB - 2,
  };
  if (cfg.arch === "qwen2") return { architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", attention_dropout: 0.0, max_window_layers: 21, sliding_window: 32768, use_sliding_window: false, ...common };
  if (cfg.arch === "qwen3") return { architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", attention_bias: false, attention_dropout: 0.0, head_dim: cfg.headDim, max_window_layers: 28, sliding_window: null, use_sliding_window: false, ...common };
  if (cfg.arch === "granite") {
    const m = cfg.multipliers!;
    return { architectures: ["GraniteForCausalLM"], model_type: "granite", attention_bias: false, attention_dropout: 0.0, mlp_bias: false,
      embedding_multiplier: m.embedding, residual_multiplier: m.residual, attention_multiplier: m.attention, logits_scaling: m.logits, ...common };
  }
  throw new Error(cfg.arch);
}

const CASES: ModelConfig[] = [
  { arch: "qwen2", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 32, vocabSize: VOCAB, seqLen: 256, ropeTheta: 1000000, normEps: 1e-6, tiedEmbeddings: true, name: "tiny-qwen2" },
  // head_dim × heads ≠ hidden (as Qwen3-0.6B: 16 × 128 over 1024): key_length in the GGUF
  { arch: "qwen3", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 64, vocabSize: VOCAB, seqLen: 256, ropeTheta: 1000000, normEps: 1e-6, tiedEmbeddings: true, name: "tiny-qwen3" },
  // Granite 3.x's four multipliers (granite-3.1-2b-instruct: embedding 12, residual 0.22, attention 0.015625, logits 8),
  // at this model's scale; MQA (one KV head)
  { arch: "granite", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 1, headDim: 32, vocabSize: VOCAB, seqLen: 256, ropeTheta: 10000000, normEps: 1e-5, tiedEmbeddings: true, name: "tiny-granite",
    multipliers: { embedding: 12, residual: 0.22, attention: 0.03125, logits: 5 } },
];

describe("architectures vs llama.cpp (tiny HF directories → GGUF)", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-arch-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const cfg of CASES) {
    test(`${cfg.arch}: HF dir = its GGUF in quantlab; llama.cpp agrees on the GGUF; wasm = ref; GPTQ/AWQ/Q4_K_M run`, async (t) => {
      const tok = tokenizer();
      const mem: Model = { config: cfg, weights: randomWeights(cfg, 31, 0.3), tokenizer: tok, source: { path: "memory", format: "memory" } };
      const hfDir = join(dir, `${cfg.arch}-hf`);
      await saveHfDir(mem, hfDir);
      writeFileSync(join(hfDir, "config.json"), JSON.stringify(transformersConfig(cfg), null, 2));
      const hf = await loadModel(hfDir);
      assert.equal(hf.config.arch, cfg.arch);
      assert.equal(hf.config.headDim, cfg.headDim);
      for (const n of ["blk.0.attn_q.bias", "blk.0.attn_q_norm.weight"]) assert.equal(hf.weights.has(n), n.includes("bias") ? ARCH_TRAITS[cfg.arch].qkvBias : ARCH_TRAITS[cfg.arch].qkNorm !== false, n);
      const gguf = join(dir, `${cfg.arch}.gguf`);
      await saveGgufFile(hf, gguf);
      const back = await loadModel(gguf);
      assert.equal(back.config.arch, cfg.arch);

      const text = "The theater was in the west, then 12345 rooms";
      const ids = tok.encode(text);
      assert.ok(ids.length > 20);
      const a = logitsOf(hf, ids), b = logitsOf(back, ids);
      let hfVsGguf = 0;
      for (let i = 0; i < ids.length; i++) for (let j = 0; j < VOCAB; j++) hfVsGguf = Math.max(hfVsGguf, Math.abs(a[i]![j]! - b[i]![j]!));
      assert.ok(hfVsGguf <= 1e-5, `HF vs GGUF max |Δlogit| ${hfVsGguf}`);

      const ours = b.map((l) => softmax(l));
      let peak = 0;
      for (const p of ours) peak = Math.max(peak, Math.max(...p));
      // peaky, but not one-hot (a saturated softmax would agree with anything)
      let meanTop = 0;
      for (const p of ours) meanTop += Math.max(...p) / ours.length;
      assert.ok(peak > 0.3 && meanTop < 0.95, `top p ${peak}, mean top p ${meanTop}`);
      const lc = await LlamaCppModel.load(gguf, { contextSize: 128, kvCacheType: "F32", flashAttention: false });
      let d;
      try {
        assert.deepEqual(lc.tokenize(text), ids, "llama.cpp tokenizes the GGUF's vocabulary as quantlab");
        d = maxAbsProbDiff(ours, await lc.nextTokenProbs(ids, VOCAB));
      } finally {
        await lc.dispose();
      }
      t.diagnostic(`${cfg.arch}: top p ${peak.toFixed(3)} (mean ${meanTop.toFixed(3)}), llama.cpp max |Δp| ${d.max.toExponential(2)} (position ${d.pos}), HF vs GGUF max |Δlogit| ${hfVsGguf.toExponential(2)}`);
      assert.ok(d.max <= 1e-3, `${cfg.arch}: llama.cpp max |Δp| ${d.max} at position ${d.pos}, id ${d.id}`);

      const be = createNodeWasmBackend({ threads: 1 });
      try {
        const w = logitsOf(back, ids, be);
        let m = 0;
        for (let i = 0; i < ids.length; i++) for (let j = 0; j < VOCAB; j++) m = Math.max(m, Math.abs(w[i]![j]! - b[i]![j]!));
        assert.ok(m <= 1e-3, `wasm vs ref max |Δlogit| ${m}`);
      } finally {
        be.dispose?.();
      }

      // ONNX export of the architecture: ONNX Runtime's logits = quantlab's (float and int4 MatMulNBits)
      for (const spec of [undefined, "int4:g32:asym"]) {
        const m = spec ? (await quantize(back, { target: { spec }, method: "rtn" })).model : back;
        const g = buildOnnxGraph(m, { dtype: spec ? "q4" : "fp32" });
        const worst = await ortVsQuantlab(m, g.model, ids);
        t.diagnostic(`${cfg.arch} ONNX ${spec ?? "fp32"}: max |Δlogit| ${worst.toExponential(2)}`);
        assert.ok(worst <= 1e-4, `${cfg.arch} ONNX ${spec ?? "fp32"}: ${worst}`);
      }

      // transformers.js loads the exported directory (model_type qwen2 / qwen3) and generates quantlab's greedy tokens
      const models = join(dir, "onnx-models");
      mkdirSync(models, { recursive: true });
      await saveOnnxDir(back, join(models, cfg.arch), { dtype: "fp32" });
      env.allowRemoteModels = false;
      env.allowLocalModels = true;
      env.localModelPath = models + "/";
      const gen = await pipeline("text-generation", cfg.arch, { dtype: "fp32" });
      try {
        const ql = generate(new Llama(back), back.tokenizer!, { prompt: "The theater was", steps: 24, temperature: 0, topP: 1, topK: 0, seed: 1, stopAtEos: false });
        // the same prompt ids (quantlab's tokenization, its BOS included) into transformers.js's generate
        const prompt = ql.tokenIds.slice(0, ql.promptTokens);
        const input_ids = new HfTensor("int64", BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
        const attention_mask = new HfTensor("int64", BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
        const out = (await gen.model.generate({ input_ids, attention_mask, max_new_tokens: ql.tokenIds.length - prompt.length, do_sample: false })) as { data: ArrayLike<bigint> };
        assert.deepEqual(Array.from(out.data, Number), ql.tokenIds, `${cfg.arch}: transformers.js greedy`);
      } finally {
        await gen.dispose();
      }

      // methods on the architecture: GPTQ and AWQ (calibrated through its own block), a ggml preset
      const calibText = Array.from({ length: 30 }, (_, i) => `${text} ${i} the west was in the theater`).join(" ");
      const { sha256Hex } = await import("../../src/algos/recipe.js");
      const calib = { source: { text: { name: "calib.txt", sha256: await sha256Hex(new TextEncoder().encode(calibText)) } }, windows: { kind: "random" as const, samples: 4, seq: 64 } };
      const evalIds = tok.encode(calibText).slice(0, 200);
      const rows: string[] = [];
      for (const recipe of [
        { target: { spec: "int4:g32:asym" }, method: "rtn" as const },
        { target: { spec: "int4:g32:asym" }, method: "gptq" as const, calibration: calib },
        { target: { spec: "int4:g32:asym" }, method: "awq" as const, calibration: calib },
        { target: { preset: "Q4_K_M" as const }, method: "rtn" as const },
      ]) {
        const r = await quantize(back, recipe, { calibText });
        const k = await kld(new ModelLogits(new Llama(back, { contextLength: 128 })), new ModelLogits(new Llama(r.model, { contextLength: 128 })), evalIds, { ctx: 64, bosId: VOCAB - 2 });
        rows.push(`${recipe.method} ${"spec" in recipe.target ? recipe.target.spec : recipe.target.preset}: KLD ${k.meanKld.toFixed(5)}`);
        assert.ok(Number.isFinite(k.meanKld) && k.meanKld < 0.5, `${cfg.arch} ${recipe.method}: KLD ${k.meanKld}`);
      }
      t.diagnostic(`${cfg.arch}: ${rows.join("; ")}`);

      // every method into GGUF on the architecture (algos/ggml-transform.ts folds AWQ's scales into the norms and
      // v's bias, the residual rotation into the linears): llama.cpp runs each file as quantlab does, and the
      // transformed file is no worse than its plain preset
      const chunks = { source: calib.source, windows: { kind: "chunks" as const, ctx: 64, maxChunks: 8 } };
      const gg: Record<string, number> = {};
      for (const [label, recipe] of [
        ["Q4_0", { target: { preset: "Q4_0" as const }, method: "rtn" as const }],
        ["awq Q4_0", { target: { preset: "Q4_0" as const }, method: "awq" as const, calibration: chunks }],
        ["smoothquant Q4_0", { target: { preset: "Q4_0" as const }, method: "smoothquant" as const, calibration: chunks }],
        ["Q4_K_M", { target: { preset: "Q4_K_M" as const }, method: "rtn" as const }],
        ["rotate+gptq Q4_K_M", { target: { preset: "Q4_K_M" as const }, method: "gptq" as const, rotate: { seed: 0, mode: "residual" as const }, calibration: chunks, imatrix: { source: "calibration" as const } }],
      ] as const) {
        const r = await quantize(back, recipe, { calibText });
        const f = join(dir, `${cfg.arch}-${label.replace(/\W+/g, "-")}.gguf`);
        await saveGgufFile(r.model, f);
        const qm = await loadModel(f);
        // GgmlForward computes as ggml's CPU backend (activations to Q8_0 / Q8_K per the weight type, its rope,
        // norm and softmax roundings): the reference backend's f32 activations differ from llama.cpp by ~1e-2 on
        // these peaky models, the WASM backend's Q8-per-32 activations on the k-quants too
        const gf = new GgmlForward(qm, { simd: ggmlSimdOfThisMachine(), kvType: "f32", contextLength: 128 });
        const qp = ids.map((tk, p) => softmax(gf.forward(tk, p)));
        const qlc = await LlamaCppModel.load(f, { contextSize: 128, kvCacheType: "F32", flashAttention: false });
        let qd;
        try {
          qd = maxAbsProbDiff(qp, await qlc.nextTokenProbs(ids, VOCAB));
        } finally {
          await qlc.dispose();
        }
        assert.ok(qd.max <= 1e-3, `${cfg.arch} ${label}: llama.cpp max |Δp| ${qd.max} at position ${qd.pos}`);
        gg[label] = (await kld(new ModelLogits(new Llama(back, { contextLength: 128 })), new ModelLogits(new Llama(qm, { contextLength: 128 })), evalIds, { ctx: 64, bosId: VOCAB - 2 })).meanKld;
        t.diagnostic(`${cfg.arch} GGUF ${label}: llama.cpp max |Δp| ${qd.max.toExponential(2)}, KLD vs float ${gg[label]!.toFixed(5)}`);
      }
      assert.ok(gg["awq Q4_0"]! <= gg["Q4_0"]! * 1.05 + 1e-5, `${cfg.arch}: AWQ Q4_0 KLD ${gg["awq Q4_0"]} vs plain ${gg["Q4_0"]}`);
      // tiny-granite's blocks barely move its logits (embedding × 12 against residual × 0.22: KLD ≈ 1e-5 for every
      // type), so there the rotation's one cost shows alone: the rotated table is written untied and takes the
      // token-embedding type instead of the output head's; the relative claim is checked where the blocks matter
      if (cfg.arch === "granite") assert.ok(gg["rotate+gptq Q4_K_M"]! < 1e-3, `${cfg.arch}: rotated+GPTQ Q4_K_M KLD ${gg["rotate+gptq Q4_K_M"]}`);
      else assert.ok(gg["rotate+gptq Q4_K_M"]! <= gg["Q4_K_M"]! * 1.05 + 1e-5, `${cfg.arch}: rotated+GPTQ Q4_K_M KLD ${gg["rotate+gptq Q4_K_M"]} vs plain ${gg["Q4_K_M"]}`);
    });
  }
});

describe("sliding-window attention (Mistral's sliding_window)", () => {
  test("a window W in 2 layers: logits at p never depend on tokens before p − 2(W−1) (bit for bit), do within it; prefill = decode; wasm = ref; ONNX Runtime agrees", async () => {
    const W = 6;
    const cfg: ModelConfig = { arch: "llama", dim: 64, hiddenDim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: VOCAB, seqLen: 64, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, slidingWindow: W, name: "tiny-swa" };
    const m: Model = { config: cfg, weights: randomWeights(cfg, 5, 0.3), source: { path: "memory", format: "memory" } };
    const seq = Array.from({ length: 24 }, (_, i) => 3 + ((i * 37 + 11) % 250));
    const other = [200, ...seq.slice(1)];
    const prefill = (mm: Model, ids: number[], backend?: Backend) => {
      const out: Float32Array[] = [];
      new Llama(mm, backend ? { backend } : {}).prefill(ids, 0, (lg, row, n) => { for (let i = 0; i < n; i++) out.push(lg.slice(i * VOCAB, (i + 1) * VOCAB)); });
      return out;
    };
    const a = prefill(m, seq), b = prefill(m, other), dec = logitsOf(m, seq);
    const reach = cfg.nLayers * (W - 1);
    for (let p = 0; p < seq.length; p++) {
      const same = a[p]!.every((v, j) => v === b[p]![j]);
      if (p > reach) assert.ok(same, `position ${p} depends on token 0 (beyond ${cfg.nLayers} windows of ${W})`);
      else assert.ok(!same, `position ${p} should see token 0`);
      let d = 0;
      for (let j = 0; j < VOCAB; j++) d = Math.max(d, Math.abs(a[p]![j]! - dec[p]![j]!));
      assert.ok(d <= 1e-5, `prefill vs decode at ${p}: ${d}`);
    }
    // without the window every position depends on token 0
    const full = prefill({ ...m, config: { ...cfg, slidingWindow: undefined } }, seq);
    assert.ok(!full[seq.length - 1]!.every((v, j) => v === a[seq.length - 1]![j]), "the window changes the last position's logits");
    const be = createNodeWasmBackend({ threads: 1 });
    try {
      const w = prefill(m, seq, be);
      let d = 0;
      for (let p = 0; p < seq.length; p++) for (let j = 0; j < VOCAB; j++) d = Math.max(d, Math.abs(w[p]![j]! - a[p]![j]!));
      assert.ok(d <= 1e-4, `wasm vs ref: ${d}`);
    } finally {
      be.dispose?.();
    }
    const worst = await ortVsQuantlab(m, buildOnnxGraph(m, { dtype: "fp32" }).model, seq);
    assert.ok(worst <= 1e-4, `ONNX with the window: ${worst}`);
  });
});
