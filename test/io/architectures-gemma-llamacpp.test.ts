/**
 * Gemma 2, Gemma 3 (text) and OLMo 2 (model/config.ts ARCH_TRAITS: sandwich / post norms, (1 + w) norms,
 * GeGLU, soft-caps, alternating sliding windows, local RoPE base, whole-projection q/k norms) on tiny models,
 * llama.cpp as the independent oracle. As test/io/architectures-llamacpp.test.ts: a Hugging Face directory with
 * the config.json fields transformers writes for the model_type (Gemma2Config, Gemma3TextConfig, Olmo2Config)
 * and HF tensor names; quantlab loads it, writes a GGUF, and
 *  - the HF norm weights are w where quantlab (and the GGUF, as llama.cpp's converter writes it) holds 1 + w,
 *    read straight from the safetensors bytes;
 *  - the HF directory, its GGUF and the HF directory quantlab writes back give the same logits (1e-5);
 *  - llama.cpp (f32 KV cache, flash attention off) gives the same next-token probabilities on the GGUF (1e-3),
 *    on peaky distributions, over a sequence longer than the sliding window;
 *  - the window matters (logits change without it); wasm = ref; ONNX Runtime runs the exported graph with the same
 *    logits and transformers.js generates quantlab's greedy tokens; RTN / GPTQ / AWQ / Q4_K_M run, KLD measured.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadModel } from "../../src/io/node/load.js";
import { saveGgufFile } from "../../src/io/node/gguf-file.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { ARCH_TRAITS, TensorNames, type ModelConfig } from "../../src/model/config.js";
import { LlamaCppModel, maxAbsProbDiff, softmax } from "../helpers/llamacpp.js";
import { TINY_VOCAB as VOCAB, ggufCasesVsLlamaCpp, logitsOf, maxDiff, ortVsQuantlab, randomWeights, tinyTokenizer } from "../helpers/tiny-arch.js";
import { saveOnnxDir } from "../../src/io/node/onnx-file.js";
import { env, pipeline, Tensor as HfTensor } from "@huggingface/transformers";
import { generate } from "../../src/model/generate.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { quantize } from "../../src/algos/quantize.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import type { Backend } from "../../src/kernels/types.js";
import { buildOnnxGraph } from "../../src/io/onnx.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { QuantlabError } from "../../src/core/errors.js";
import { bf16BitsToF32, f32ToBf16Bits } from "../../src/core/f16.js";
import { BlockRunner, blockWeights, matmulXWt, rmsnorm } from "../../src/algos/calib.js";

interface Case {
  cfg: ModelConfig;
  /** config.json as transformers writes it for the model_type */
  hf: Record<string, unknown>;
}

const common = (c: ModelConfig) => ({
  hidden_size: c.dim, initializer_range: 0.02, intermediate_size: c.hiddenDim, max_position_embeddings: c.seqLen,
  num_attention_heads: c.nHeads, num_hidden_layers: c.nLayers, num_key_value_heads: c.nKvHeads, rms_norm_eps: c.normEps,
  rope_theta: c.ropeTheta, tie_word_embeddings: c.tiedEmbeddings, torch_dtype: "float32", transformers_version: "4.53.0",
  use_cache: true, vocab_size: c.vocabSize, bos_token_id: VOCAB - 2, eos_token_id: VOCAB - 2, attention_bias: false, attention_dropout: 0.0,
});

const EMBD_STD = 0.3;
const GEMMA_EMBD_STD = 0.1;
const HEAD_SCALE = 2.5;
const W = 6; // sliding window, well inside the ~30-token test sequence

// Gemma 2: head_dim from the config (48 × 4 ≠ 128), query_pre_attn_scalar = head_dim (llama.cpp's non-27B scale),
// soft-caps small enough to bite on this model, layer 0 sliding and layer 1 global (transformers' default pattern)
const gemma2: ModelConfig = {
  arch: "gemma2", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 48, vocabSize: VOCAB, seqLen: 256, ropeTheta: 10000, normEps: 1e-6,
  tiedEmbeddings: true, name: "tiny-gemma2", slidingWindow: W, slidingLayers: [true, false], attnSoftcap: 2, finalSoftcap: 30,
};
// Gemma 3: per-head q/k norms, rope_local_base_freq on sliding layers, linear rope_scaling on global ones, S G S G
const gemma3: ModelConfig = {
  arch: "gemma3", dim: 128, hiddenDim: 256, nLayers: 4, nHeads: 4, nKvHeads: 1, headDim: 32, vocabSize: VOCAB, seqLen: 256, ropeTheta: 1000000, normEps: 1e-6,
  tiedEmbeddings: true, name: "tiny-gemma3", slidingWindow: W, slidingLayers: [true, false, true, false], ropeThetaLocal: 10000, ropeLinearFactor: 4,
};
// OLMo 2: untied (Olmo2Config's default; llama.cpp's olmo2 requires output.weight), q/k norms over the projection
const olmo2: ModelConfig = {
  arch: "olmo2", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 32, vocabSize: VOCAB, seqLen: 256, ropeTheta: 500000, normEps: 1e-6,
  tiedEmbeddings: false, name: "tiny-olmo2",
};

const CASES: Case[] = [
  {
    cfg: gemma2,
    hf: {
      architectures: ["Gemma2ForCausalLM"], model_type: "gemma2", ...common(gemma2), head_dim: gemma2.headDim, hidden_act: "gelu_pytorch_tanh", hidden_activation: "gelu_pytorch_tanh",
      query_pre_attn_scalar: gemma2.headDim, attn_logit_softcapping: gemma2.attnSoftcap, final_logit_softcapping: gemma2.finalSoftcap, sliding_window: W, cache_implementation: "hybrid", pad_token_id: 0,
      layer_types: ["sliding_attention", "full_attention"],
    },
  },
  {
    cfg: gemma3,
    hf: {
      architectures: ["Gemma3ForCausalLM"], model_type: "gemma3_text", ...common(gemma3), head_dim: gemma3.headDim, hidden_activation: "gelu_pytorch_tanh",
      query_pre_attn_scalar: gemma3.headDim, attn_logit_softcapping: null, final_logit_softcapping: null, sliding_window: W, sliding_window_pattern: 2,
      rope_local_base_freq: 10000.0, rope_scaling: { rope_type: "linear", factor: 4.0 }, cache_implementation: "hybrid", pad_token_id: 0,
    },
  },
  {
    cfg: olmo2,
    hf: { architectures: ["Olmo2ForCausalLM"], model_type: "olmo2", ...common(olmo2), hidden_act: "silu", rope_scaling: null, pad_token_id: 1 },
  },
];

/** The test's weights for a case: Gemma's tied head reads a table that is also × √dim at the input, so a smaller table
 * keeps it from saturating; OLMo 2's untied head as large as the embedding, so its distributions are as peaky. */
function tinyWeights(cfg: ModelConfig): Model["weights"] {
  const weights = randomWeights(cfg, 7, cfg.arch === "olmo2" ? EMBD_STD : GEMMA_EMBD_STD);
  const head = weights.get(TensorNames.output);
  if (head?.kind === "dense") { const h = head.tensor.data as Float32Array; for (let i = 0; i < h.length; i++) h[i] = h[i]! * HEAD_SCALE; }
  return weights;
}

const TEXT = "The theater was in the west, then 12345 rooms";
const CALIB_TEXT = Array.from({ length: 30 }, (_, i) => `${TEXT} ${i} the west was in the theater`).join(" ");

/** One f32 tensor straight from a safetensors file's bytes (8-byte header length, JSON header, data). */
function rawSafetensor(path: string, name: string): Float32Array {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const t = h[name]!;
  assert.equal(t.dtype, "F32");
  const bytes = b.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

describe("Gemma 2 / Gemma 3 / OLMo 2 vs llama.cpp (tiny HF directories → GGUF)", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-gemma-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const { cfg, hf: hfJson } of CASES) {
    test(`${cfg.arch}: HF dir = its GGUF = HF written back; llama.cpp agrees; the window matters; wasm = ref; GPTQ/AWQ/Q4_K_M run`, async (t) => {
      const tok = tinyTokenizer();
      const weights = tinyWeights(cfg);
      const mem: Model = { config: cfg, weights, tokenizer: tok, source: { path: "memory", format: "memory" } };
      const hfDir = join(dir, `${cfg.arch}-hf`);
      await saveHfDir(mem, hfDir);
      writeFileSync(join(hfDir, "config.json"), JSON.stringify(hfJson, null, 2));
      const hf = await loadModel(hfDir);
      const c = hf.config;
      for (const k of ["arch", "headDim", "slidingWindow", "slidingLayers", "attnSoftcap", "finalSoftcap", "ropeThetaLocal", "ropeLinearFactor", "attnScale", "tiedEmbeddings"] as const) {
        assert.deepEqual(c[k], cfg[k], `config.${k} from config.json`);
      }

      // HF's norm weights: w of (1 + w) for Gemma, the weight itself for OLMo 2 — read from the file's bytes
      const normHf = ARCH_TRAITS[cfg.arch].norms === "post" ? "model.layers.1.post_feedforward_layernorm.weight" : "model.layers.1.pre_feedforward_layernorm.weight";
      const normCanon = ARCH_TRAITS[cfg.arch].norms === "post" ? TensorNames.postFfnNorm(1) : TensorNames.ffnNorm(1);
      const raw = rawSafetensor(join(hfDir, "model.safetensors"), normHf);
      const loaded = dequantizeWeight(hf.weights.get(normCanon)!, normCanon).data;
      const offset = ARCH_TRAITS[cfg.arch].normOffset ? 1 : 0;
      for (let i = 0; i < raw.length; i++) assert.equal(loaded[i], Math.fround(raw[i]! + offset), `${normHf}[${i}]`);
      const want = dequantizeWeight(mem.weights.get(normCanon)!, normCanon).data;
      for (let i = 0; i < raw.length; i++) assert.ok(Math.abs(raw[i]! + offset - want[i]!) <= 1e-7, `HF file holds ${raw[i]} for weight ${want[i]}`);

      const gguf = join(dir, `${cfg.arch}.gguf`);
      await saveGgufFile(hf, gguf);
      const back = await loadModel(gguf);
      for (const k of ["arch", "headDim", "slidingWindow", "slidingLayers", "attnSoftcap", "finalSoftcap", "ropeThetaLocal", "ropeLinearFactor", "attnScale"] as const) {
        assert.deepEqual(back.config[k], cfg[k], `config.${k} from the GGUF`);
      }
      const hfAgain = join(dir, `${cfg.arch}-hf2`);
      await saveHfDir(back, hfAgain);
      const hf2 = await loadModel(hfAgain);

      const text = TEXT;
      const ids = tok.encode(text);
      assert.ok(ids.length > 4 * W, `${ids.length} tokens`);
      const a = logitsOf(hf, ids), b = logitsOf(back, ids), a2 = logitsOf(hf2, ids);
      const hfVsGguf = maxDiff(a, b);
      assert.ok(hfVsGguf <= 1e-5, `HF vs GGUF max |Δlogit| ${hfVsGguf}`);
      assert.ok(maxDiff(a2, b) <= 1e-5, `HF written back vs GGUF max |Δlogit| ${maxDiff(a2, b)}`);

      if (cfg.slidingWindow !== undefined) {
        // the same layers (and RoPE bases), a window as long as the context
        const full = logitsOf({ ...back, config: { ...back.config, slidingWindow: back.config.seqLen } }, ids);
        let d = 0;
        for (let j = 0; j < VOCAB; j++) d = Math.max(d, Math.abs(full[ids.length - 1]![j]! - b[ids.length - 1]![j]!));
        assert.ok(d > 1e-3, `the window changes the last position's logits (${d})`);
        for (let p = 0; p < W; p++) assert.ok(full[p]!.every((v, j) => v === b[p]![j]), `position ${p} is inside the window`);
      }
      // prefill (batched) = decode
      const pre: Float32Array[] = [];
      new Llama(back).prefill(ids, 0, (lg, _row, n) => { for (let i = 0; i < n; i++) pre.push(lg.slice(i * VOCAB, (i + 1) * VOCAB)); });
      assert.ok(maxDiff(pre, b) <= 1e-5, `prefill vs decode ${maxDiff(pre, b)}`);

      const ours = b.map((l) => softmax(l));
      let peak = 0, meanTop = 0;
      for (const p of ours) { const m = Math.max(...p); peak = Math.max(peak, m); meanTop += m / ours.length; }
      t.diagnostic(`${cfg.arch}: top p ${peak.toFixed(3)} (mean ${meanTop.toFixed(3)})`);
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
        assert.ok(maxDiff(w, b) <= 1e-3, `wasm vs ref max |Δlogit| ${maxDiff(w, b)}`);
      } finally {
        be.dispose?.();
      }

      // ONNX export of the architecture: ONNX Runtime's logits = quantlab's (float and int4 MatMulNBits)
      for (const spec of [undefined, "int4:g32:asym"]) {
        const m = spec ? (await quantize(back, { target: { spec }, method: "rtn" })).model : back;
        const worst = await ortVsQuantlab(m, buildOnnxGraph(m, { dtype: spec ? "q4" : "fp32" }).model, ids);
        t.diagnostic(`${cfg.arch} ONNX ${spec ?? "fp32"}: max |Δlogit| ${worst.toExponential(2)}`);
        assert.ok(worst <= 1e-4, `${cfg.arch} ONNX ${spec ?? "fp32"}: ${worst}`);
      }
      // transformers.js loads the exported directory (its model_type) and generates quantlab's greedy tokens
      const models = join(dir, "onnx-models");
      mkdirSync(models, { recursive: true });
      await saveOnnxDir(back, join(models, cfg.arch), { dtype: "fp32" });
      env.allowRemoteModels = false;
      env.allowLocalModels = true;
      env.localModelPath = models + "/";
      const gen = await pipeline("text-generation", cfg.arch, { dtype: "fp32" });
      try {
        const ql = generate(new Llama(back), back.tokenizer!, { prompt: "The theater was", steps: 24, temperature: 0, topP: 1, topK: 0, seed: 1, stopAtEos: false });
        const prompt = ql.tokenIds.slice(0, ql.promptTokens);
        const input_ids = new HfTensor("int64", BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
        const attention_mask = new HfTensor("int64", BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
        const out = (await gen.model.generate({ input_ids, attention_mask, max_new_tokens: ql.tokenIds.length - prompt.length, do_sample: false })) as { data: ArrayLike<bigint> };
        assert.deepEqual(Array.from(out.data, Number), ql.tokenIds, `${cfg.arch}: transformers.js greedy`);
      } finally {
        await gen.dispose();
      }

      // methods on the architecture: GPTQ and AWQ (calibrated through its own block), a ggml preset
      const calibText = CALIB_TEXT;
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
        if ("preset" in recipe.target) {
          // the Q4_K_M GGUF in llama.cpp: its matmuls quantize activations to Q8_K (quantlab's do not), so ~1e-2, not 1e-3
          const q = join(dir, `${cfg.arch}-q4km.gguf`);
          await saveGgufFile(r.model, q);
          const lq = await LlamaCppModel.load(q, { contextSize: 128, kvCacheType: "F32", flashAttention: false });
          try {
            const dq = maxAbsProbDiff(logitsOf(r.model, ids).map((l) => softmax(l)), await lq.nextTokenProbs(ids, VOCAB));
            rows.push(`Q4_K_M GGUF llama.cpp max |Δp| ${dq.max.toExponential(2)}`);
            assert.ok(dq.max <= 3e-2, `${cfg.arch} Q4_K_M GGUF: llama.cpp max |Δp| ${dq.max}`);
          } finally {
            await lq.dispose();
          }
        }
        const k = await kld(new ModelLogits(new Llama(back, { contextLength: 128 })), new ModelLogits(new Llama(r.model, { contextLength: 128 })), evalIds, { ctx: 64, bosId: VOCAB - 2 });
        rows.push(`${recipe.method} ${"spec" in recipe.target ? recipe.target.spec : recipe.target.preset}: KLD ${k.meanKld.toFixed(5)}`);
        assert.ok(Number.isFinite(k.meanKld) && k.meanKld < 0.5, `${cfg.arch} ${recipe.method}: KLD ${k.meanKld}`);
      }
      t.diagnostic(`${cfg.arch}: ${rows.join("; ")}`);
    });
  }
});

/**
 * Files where GgmlForward and llama.cpp differ by one flipped 8-bit activation rounding (~4e-3 in p), and why
 * (docs/gguf-methods.md "GgmlForward vs llama.cpp"). Gemma 2 Q4_0 (K·q through ggml_vec_dot_f32's compiled tail) and Gemma 3
 * SmoothQuant Q4_0 (n_kv padding) now agree to ~1e-6. Left: Gemma 3 Q4_K_M, 3.9e-3 from position 21, where llama.cpp
 * rounds layer 3's attn_norm output 77.49998·(127/amax) the other way; a 1-ulp change of layer 1's attn_output (or of
 * row 71 of layer 2's, Q5_0) reproduces it, so some attention-side op of this model (per-head q/k norms, linear RoPE
 * scaling) is still not bit-exact. Bounded by KNOWN_FLIP_CAP until it is; any other file must agree to 1e-3.
 */
const KNOWN_FLIPS: Partial<Record<string, Partial<Record<string, string>>>> = {
  gemma3: { "Q4_K_M": "an attention-side last bit, not isolated" },
};
const KNOWN_FLIP_CAP = 1e-2;

describe("GGUF files of Gemma 2 / Gemma 3 / OLMo 2 (plain presets, AWQ, SmoothQuant) run in llama.cpp as GgmlForward runs them", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-gemma-gguf-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const { cfg } of CASES) {
    test(`${cfg.arch}: Q8_0 / Q4_0 / Q4_K_M / AWQ Q4_0 / SmoothQuant Q4_0 within 1e-3 of GgmlForward in llama.cpp; KLD vs float; the rotation refused`, async (t) => {
      const tok = tinyTokenizer();
      const f0 = join(dir, `${cfg.arch}.gguf`);
      await saveGgufFile({ config: cfg, weights: tinyWeights(cfg), tokenizer: tok, source: { path: "memory", format: "memory" } }, f0);
      const back = await loadModel(f0);
      const ids = tok.encode(TEXT);
      const evalIds = tok.encode(CALIB_TEXT).slice(0, 200);
      const res = await ggufCasesVsLlamaCpp(back, ids, evalIds, CALIB_TEXT, dir, ["Q8_0", "Q4_0", "Q4_K_M", "awq Q4_0", "smoothquant Q4_0"]);
      t.diagnostic(`${cfg.arch}: ${[...res].map(([k, r]) => `${k}: llama.cpp max |Δp| ${r.llamaCpp.toExponential(2)}, KLD ${r.kld.toFixed(5)}`).join("; ")}`);
      for (const [k, r] of res) {
        const known = KNOWN_FLIPS[cfg.arch]?.[k];
        assert.ok(r.llamaCpp <= (known ? KNOWN_FLIP_CAP : 1e-3), `${cfg.arch} ${k}: llama.cpp max |Δp| ${r.llamaCpp}${known ? ` (known: ${known})` : ""}`);
      }
      const awq = res.get("awq Q4_0")!;
      if (cfg.arch === "olmo2") {
        // no norm before q/k/v or gate/up: those scales are skipped and listed, v → o (GQA) too; up → down folds
        const names = awq.notFolded.map((x) => x.name);
        for (const n of ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.1.ffn_gate.weight", "blk.1.ffn_up.weight", "blk.1.attn_output.weight"]) assert.ok(names.includes(n), `${n} not listed as skipped`);
        assert.ok(!names.includes("blk.0.ffn_down.weight"), "up → down folds");
        assert.match(awq.notFolded.find((x) => x.name === "blk.0.attn_q.weight")!.reason, /blk\.0\.attn_in: no norm before the branch \(olmo2: post-norms only\)/);
      } else assert.ok(awq.notFolded.every((x) => x.name.endsWith("attn_output.weight")), `only v → o (GQA) skipped: ${awq.notFolded.map((x) => x.name).join(", ")}`);
      assert.ok(awq.kld <= res.get("Q4_0")!.kld * 1.05 + 1e-5, `${cfg.arch}: AWQ Q4_0 KLD ${awq.kld} vs plain ${res.get("Q4_0")!.kld}`);
      await assert.rejects(() => quantize(back, { target: { preset: "Q4_K_M" }, rotate: { seed: 0, mode: "residual" } }), /do not commute with a residual rotation/);
    });
  }
});

describe("Gemma traits the llama.cpp file cannot carry, and the query scale", () => {
  const tiny: ModelConfig = { ...gemma2, dim: 64, hiddenDim: 128, nHeads: 2, nKvHeads: 1, headDim: 32, nLayers: 2, seqLen: 64 };
  const model = (c: ModelConfig, seed = 3): Model => ({ config: c, weights: randomWeights(c, seed, 0.1), source: { path: "memory", format: "memory" } });

  test("query_pre_attn_scalar^-0.5 scales the scores: the same logits as q's weights × that scale · √head_dim", () => {
    const s = 1 / Math.sqrt(144);
    const scaled = model({ ...tiny, attnScale: s });
    const plain = model(tiny);
    const wq = plain.weights.get(TensorNames.attnQ(0))!;
    const wq1 = plain.weights.get(TensorNames.attnQ(1))!;
    for (const w of [wq, wq1]) if (w.kind === "dense") { const d = w.tensor.data as Float32Array; for (let i = 0; i < d.length; i++) d[i] = d[i]! * s * Math.sqrt(tiny.headDim); }
    const ids = Array.from({ length: 16 }, (_, i) => 3 + ((i * 29) % 200));
    const a = logitsOf(scaled, ids), b = logitsOf(plain, ids);
    assert.ok(maxDiff(a, b) <= 1e-4, `attnScale vs pre-scaled wq: ${maxDiff(a, b)}`);
    assert.ok(maxDiff(a, logitsOf(model(tiny), ids)) > 1e-3, "the scale changes the logits");
  });

  test("calibration's BlockRunner stacked over every block reproduces the forward pass (Gemma 2, Gemma 3, OLMo 2; ≤ 1e-4)", () => {
    for (const { cfg } of CASES) {
      const m = model({ ...cfg, seqLen: 64 }, 11);
      const c = m.config;
      const seq = 24; // > the window (6): the sliding layers' mask cuts in
      const windows = [0, 1].map((w) => Int32Array.from({ length: seq }, (_, i) => 3 + ((i * 37 + w * 101) % 250)));
      const runner = new BlockRunner(m, seq);
      const emb = dequantizeWeight(m.weights.get(TensorNames.tokenEmbd)!, TensorNames.tokenEmbd).data;
      const x = runner.embed(emb, windows);
      for (let l = 0; l < c.nLayers; l++) runner.run(l, blockWeights(m, l), x);
      const T = 2 * seq;
      const xn = new Float32Array(T * c.dim);
      rmsnorm(xn, x, dequantizeWeight(m.weights.get(TensorNames.outputNorm)!, TensorNames.outputNorm).data, T, c.dim, c.normEps);
      const headName = m.weights.has(TensorNames.output) ? TensorNames.output : TensorNames.tokenEmbd;
      const logits = new Float32Array(T * c.vocabSize);
      matmulXWt(xn, T, dequantizeWeight(m.weights.get(headName)!, headName).data, c.vocabSize, c.dim, logits);
      if (c.finalSoftcap !== undefined) for (let i = 0; i < logits.length; i++) logits[i] = c.finalSoftcap * Math.tanh(logits[i]! / c.finalSoftcap);
      let mx = 0;
      windows.forEach((w, wi) => {
        const ref = logitsOf(m, Array.from(w));
        for (let p = 0; p < seq; p++) for (let v = 0; v < c.vocabSize; v++) mx = Math.max(mx, Math.abs(ref[p]![v]! - logits[(wi * seq + p) * c.vocabSize + v]!));
      });
      assert.ok(mx <= 1e-4, `${c.arch}: max |Δlogit| ${mx}`);
    }
  });

  test("bf16 Gemma checkpoints: the norm's 1 is added in f32, not in bf16 (which would round w away)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-gemma-bf16-"));
    try {
      const m = model(tiny);
      await saveHfDir(m, dir, { dtype: "bf16" });
      const back = await loadModel(dir);
      const n = TensorNames.ffnNorm(0);
      const e = dequantizeWeight(m.weights.get(n)!, n).data;
      const got = dequantizeWeight(back.weights.get(n)!, n).data;
      assert.equal(back.weights.get(n)!.kind === "dense" && (back.weights.get(n) as { tensor: { dtype: string } }).tensor.dtype, "f32");
      let differs = 0;
      for (let i = 0; i < e.length; i++) {
        const w = bf16BitsToF32(f32ToBf16Bits(e[i]! - 1)); // what the bf16 file holds
        assert.equal(got[i], Math.fround(1 + w), `${n}[${i}]`);
        if (Math.fround(1 + w) !== bf16BitsToF32(f32ToBf16Bits(1 + w))) differs++;
      }
      assert.ok(differs > 0, "some 1 + w are not bf16 values: the sum was not rounded to bf16");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("GGUF refuses, by name, what llama.cpp's gemma2 / gemma3 would run differently", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-gemma-refuse-"));
    try {
      const cases: [ModelConfig, RegExp][] = [
        [{ ...tiny, attnScale: 1 / 12 }, /GGUF gemma2: query scale 0\.0833\d* \(query_pre_attn_scalar\^-0\.5\) is not what llama\.cpp uses for this model \(0\.176\d*/],
        [{ ...tiny, attnSoftcap: undefined }, /GGUF gemma2: llama\.cpp always soft-caps attention and final logits; this model has no attention soft-cap/],
        [{ ...tiny, arch: "gemma3", attnSoftcap: 2, finalSoftcap: undefined }, /GGUF gemma3: llama\.cpp's gemma3 has no attention logit soft-cap/],
        [{ ...tiny, nLayers: 3, slidingLayers: [false, true, true] }, /GGUF gemma2: sliding layers \[GSS\] are not a period of llama\.cpp's pattern/],
        [{ ...tiny, tiedEmbeddings: false }, /llama\.cpp's gemma2 always ties the output to token_embd\.weight/],
        [{ ...olmo2, dim: 64, hiddenDim: 128, nLayers: 2, headDim: 32, nHeads: 4, nKvHeads: 2 }, /GGUF olmo2: llama\.cpp's olmo2 takes the head size from embedding_length \/ head_count \(16\), not 32/],
      ];
      for (const [c, re] of cases) {
        const m = model(c);
        await assert.rejects(() => saveGgufFile(m, join(dir, "x.gguf")), (e: unknown) => e instanceof QuantlabError && e.code === "E_UNSUPPORTED" && re.test(e.message), String(re));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
