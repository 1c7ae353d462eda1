// config.json → ModelConfig (io/hf.ts hfConfigToModelConfig): the transformers 4 form (`rope_theta`,
// `rope_scaling`) and the transformers 5 form (`rope_parameters`) of one Llama 3 config give one model;
// disagreeing or unsupported rope fields and mixture-of-experts fields are errors naming the field.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hfConfigToModelConfig, modelConfigToHf, type HfConfigJson } from "../../src/io/hf.js";
import type { ModelConfig } from "../../src/model/config.js";

const base: HfConfigJson = {
  model_type: "llama", architectures: ["LlamaForCausalLM"], hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 256, max_position_embeddings: 131072, rms_norm_eps: 1e-5,
  tie_word_embeddings: true, hidden_act: "silu",
};
const scaling = { factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192, rope_type: "llama3" };
// as transformers 4.x saves Llama-3.2-1B's config.json
const v4: HfConfigJson = { ...base, rope_theta: 500000, rope_scaling: scaling };
// as transformers 5.x saves the same model: everything RoPE inside rope_parameters
const v5: HfConfigJson = { ...base, rope_parameters: { rope_theta: 500000, ...scaling } };

test("transformers 5 rope_parameters = transformers 4 rope_theta + rope_scaling (Llama 3, θ 500000, llama3 scaling)", () => {
  const a = hfConfigToModelConfig(v4, "v4/config.json");
  const b = hfConfigToModelConfig(v5, "v5/config.json");
  assert.deepEqual(b, a);
  assert.equal(b.ropeTheta, 500000);
  assert.deepEqual(b.ropeScaling, { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  // a default rope in the 5.x form: θ only
  const d = hfConfigToModelConfig({ ...base, rope_parameters: { rope_theta: 1e6, rope_type: "default" } }, "d/config.json");
  assert.equal(d.ropeTheta, 1e6);
  assert.equal(d.ropeScaling, undefined);
  // both forms written, agreeing (type spelled the old way): accepted
  const { rope_type: _t, ...oldSpelling } = scaling;
  assert.deepEqual(hfConfigToModelConfig({ ...v5, rope_theta: 500000, rope_scaling: { ...oldSpelling, type: "llama3" } }, "both/config.json").ropeScaling, a.ropeScaling);
});

test("rope fields that disagree or that quantlab cannot run, and MoE fields, are errors naming the field", () => {
  assert.throws(() => hfConfigToModelConfig({ ...v5, rope_theta: 10000 }, "x/config.json"), /x\/config\.json: "rope_theta" = 10000 but "rope_parameters\.rope_theta" = 500000/);
  assert.throws(() => hfConfigToModelConfig({ ...v5, rope_scaling: { ...scaling, factor: 8 } }, "x/config.json"), /"rope_scaling\.factor" = 8 but "rope_parameters\.factor" = 32/);
  assert.throws(() => hfConfigToModelConfig({ ...base, rope_parameters: { rope_theta: 1e4, rope_type: "yarn", factor: 4 } }, "x/config.json"), /x\/config\.json: rope_scaling type "yarn" is not supported/);
  assert.throws(() => hfConfigToModelConfig({ ...base, rope_parameters: { full_attention: { rope_theta: 1e6, rope_type: "default" }, sliding_attention: { rope_theta: 1e4, rope_type: "default" } } }, "g/config.json"), /g\/config\.json: "rope_parameters\.full_attention": rope parameters per layer type are not supported/);
  assert.throws(() => hfConfigToModelConfig({ ...base, rope_parameters: [1] }, "x/config.json"), /"rope_parameters" must be an object/);
  assert.throws(() => hfConfigToModelConfig({ ...base, rope_theta: -1 }, "x/config.json"), /"rope_theta" must be a positive number/);
  assert.throws(() => hfConfigToModelConfig({ ...base, model_type: "mistral", num_local_experts: 8, num_experts_per_tok: 2 }, "m/config.json"), /m\/config\.json: "num_local_experts" = 8: mixture-of-experts models are not supported/);
});

test("sliding_window: a window shorter than the context is the model's slidingWindow (context kept); null, off or ≥ context is full attention", () => {
  const m = { ...base, model_type: "mistral", max_position_embeddings: 32768 };
  const c = hfConfigToModelConfig({ ...m, sliding_window: 4096 }, "m/config.json");
  assert.equal(c.seqLen, 32768);
  assert.equal(c.slidingWindow, 4096);
  assert.equal(hfConfigToModelConfig({ ...m, sliding_window: null }, "m/config.json").slidingWindow, undefined);
  assert.equal(hfConfigToModelConfig({ ...m, sliding_window: 65536 }, "m/config.json").slidingWindow, undefined);
  assert.equal(hfConfigToModelConfig({ ...m }, "m/config.json").slidingWindow, 4096, "MistralConfig's default window when the field is absent");
  assert.throws(() => hfConfigToModelConfig({ ...m, sliding_window: "big" as never }, "m/config.json"), /m\/config\.json: "sliding_window" must be a positive integer or null/);
  assert.throws(() => hfConfigToModelConfig({ ...m, sliding_window: 4096, use_sliding_window: false }, "m/config.json"), /"use_sliding_window" = false is not read for model_type "mistral"/);
  // LlamaConfig / GraniteConfig have no window: transformers would attend to everything
  assert.throws(() => hfConfigToModelConfig({ ...base, sliding_window: 4096 }, "l/config.json"), /l\/config\.json: "sliding_window" = 4096 is not read for model_type "llama" .*model_type "mistral"/);
  assert.equal(hfConfigToModelConfig({ ...base, sliding_window: null }, "l/config.json").slidingWindow, undefined);
});

test("Qwen2 / Qwen3: the window applies only with use_sliding_window, to layers ≥ max_window_layers (default 28), as transformers' Qwen2Config", () => {
  const q = { ...base, model_type: "qwen2", attention_bias: true, num_hidden_layers: 4, max_position_embeddings: 32768, sliding_window: 4096 };
  assert.equal(hfConfigToModelConfig(q, "q/config.json").slidingWindow, undefined, "use_sliding_window absent = false");
  assert.equal(hfConfigToModelConfig({ ...q, use_sliding_window: false, max_window_layers: 0 }, "q/config.json").slidingWindow, undefined);
  assert.equal(hfConfigToModelConfig({ ...q, use_sliding_window: true }, "q/config.json").slidingWindow, undefined, "4 layers, none at or past 28");
  assert.equal(hfConfigToModelConfig({ ...q, use_sliding_window: true, max_window_layers: 4 }, "q/config.json").slidingWindow, undefined);
  assert.equal(hfConfigToModelConfig({ ...q, use_sliding_window: true, max_window_layers: 0 }, "q/config.json").slidingWindow, 4096, "every layer");
  assert.throws(() => hfConfigToModelConfig({ ...q, use_sliding_window: true, max_window_layers: 1 }, "q/config.json"), /q\/config\.json: "max_window_layers" = 1: a sliding window in layers 1\.\.3 only is not supported/);
  assert.throws(() => hfConfigToModelConfig({ ...q, use_sliding_window: true, max_window_layers: -1 }, "q/config.json"), /"max_window_layers" must be a non-negative integer/);
});

test("the writer names what transformers reads: a windowed Llama block is Mistral, a windowed Qwen sets use_sliding_window; round trips", () => {
  const cfg: ModelConfig = { arch: "llama", dim: 64, hiddenDim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: 512, seqLen: 128, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, slidingWindow: 8 };
  const hfm = modelConfigToHf(cfg);
  assert.equal(hfm.model_type, "mistral");
  assert.deepEqual(hfm.architectures, ["MistralForCausalLM"]);
  assert.equal(hfConfigToModelConfig(hfm, "w/config.json").slidingWindow, 8);
  const hfq = modelConfigToHf({ ...cfg, arch: "qwen2" });
  assert.equal(hfq.use_sliding_window, true);
  assert.equal(hfq.max_window_layers, 0);
  assert.equal(hfConfigToModelConfig(hfq, "w/config.json").slidingWindow, 8);
  assert.equal(modelConfigToHf({ ...cfg, slidingWindow: undefined }).model_type, "llama");
  assert.throws(() => modelConfigToHf({ ...cfg, ropeScaling: { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } }), /a sliding window with llama3 rope scaling has no model_type/);
  assert.throws(() => modelConfigToHf({ ...cfg, arch: "granite", multipliers: { embedding: 1, residual: 1, attention: 1, logits: 1 } }), /GraniteConfig has no sliding window/);
});

// Gemma-3-1B's config.json as published (google/gemma-3-1b-it, transformers 4.50): rope_scaling null, window 512, pattern 6
const gemma3_1b: HfConfigJson = {
  architectures: ["Gemma3ForCausalLM"], attention_bias: false, attention_dropout: 0.0, attn_logit_softcapping: null, cache_implementation: "hybrid",
  final_logit_softcapping: null, head_dim: 256, hidden_activation: "gelu_pytorch_tanh", hidden_size: 1152, initializer_range: 0.02,
  intermediate_size: 6912, max_position_embeddings: 32768, model_type: "gemma3_text", num_attention_heads: 4, num_hidden_layers: 26,
  num_key_value_heads: 1, pad_token_id: 0, query_pre_attn_scalar: 256, rms_norm_eps: 1e-6, rope_local_base_freq: 10000, rope_scaling: null,
  rope_theta: 1000000, sliding_window: 512, sliding_window_pattern: 6, torch_dtype: "bfloat16", use_cache: true, vocab_size: 262144,
};

test("Gemma 3 1B: every 6th layer global, local RoPE base on the others, no soft-caps, query scale 1/√head_dim; Gemma 2's defaults", () => {
  const c = hfConfigToModelConfig(gemma3_1b, "g3/config.json");
  assert.equal(c.arch, "gemma3");
  assert.equal(c.slidingWindow, 512);
  assert.deepEqual(c.slidingLayers, Array.from({ length: 26 }, (_, i) => i % 6 !== 5));
  assert.equal(c.ropeTheta, 1e6);
  assert.equal(c.ropeThetaLocal, 10000);
  assert.equal(c.attnSoftcap, undefined);
  assert.equal(c.finalSoftcap, undefined);
  assert.equal(c.attnScale, undefined);
  assert.equal(c.ropeLinearFactor, undefined);
  assert.equal(c.tiedEmbeddings, true); // Gemma3TextConfig's default
  // layer_types (transformers ≥ 4.53) says the same
  const types = Array.from({ length: 26 }, (_, i) => (i % 6 !== 5 ? "sliding_attention" : "full_attention"));
  assert.deepEqual(hfConfigToModelConfig({ ...gemma3_1b, sliding_window_pattern: undefined, layer_types: types }, "g3/config.json"), c);
  // Gemma 3 4B+: linear rope scaling (global layers)
  assert.equal(hfConfigToModelConfig({ ...gemma3_1b, rope_scaling: { rope_type: "linear", factor: 8 } }, "g3/config.json").ropeLinearFactor, 8);
  // Gemma 2 with the fields left to Gemma2Config's defaults: soft-caps 50 / 30, window 4096 on even layers, query_pre_attn_scalar 256
  const g2 = hfConfigToModelConfig({ model_type: "gemma2", hidden_size: 256, intermediate_size: 512, num_hidden_layers: 4, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 128, vocab_size: 256, max_position_embeddings: 8192 }, "g2/config.json");
  assert.deepEqual([g2.attnSoftcap, g2.finalSoftcap, g2.slidingWindow, g2.slidingLayers, g2.tiedEmbeddings], [50, 30, 4096, [true, false, true, false], true]);
  assert.equal(g2.attnScale, 1 / 16); // 256^-0.5 ≠ 1/√128
  // Gemma 2 27B: query_pre_attn_scalar 144 = hidden / heads
  assert.equal(hfConfigToModelConfig({ ...gemma3_1b, model_type: "gemma2", query_pre_attn_scalar: 144, rope_local_base_freq: undefined, sliding_window_pattern: undefined }, "g/config.json").attnScale, 1 / 12);
});

test("Gemma / OLMo 2 fields that quantlab cannot run, or that do not belong to the model_type, are errors naming them", () => {
  const bad: [HfConfigJson, RegExp][] = [
    [{ ...gemma3_1b, layer_types: ["sliding_attention"] }, /"layer_types" must list one type per layer \(26\)/],
    [{ ...gemma3_1b, layer_types: Array(26).fill("chunked_attention") }, /"layer_types\[0\]" = "chunked_attention" is not supported/],
    [{ ...gemma3_1b, hidden_activation: "silu" }, /hidden_activation "silu" is not supported for model_type "gemma3_text" \(gelu_pytorch_tanh\)/],
    [{ ...gemma3_1b, rope_scaling: { rope_type: "yarn", factor: 8 } }, /rope_scaling type "yarn" is not supported for model_type "gemma3_text"/],
    [{ ...gemma3_1b, model_type: "gemma2", sliding_window_pattern: undefined, rope_local_base_freq: 10000 }, /"rope_local_base_freq" is not read for model_type "gemma2"/],
    [{ ...base, query_pre_attn_scalar: 256 }, /"query_pre_attn_scalar" = 256 is not read for model_type "llama"/],
    [{ ...base, final_logit_softcapping: 30 }, /"final_logit_softcapping" = 30 is not read for model_type "llama"/],
    [{ ...base, model_type: "olmo2", tie_word_embeddings: false, sliding_window: 4096 }, /"sliding_window" = 4096: OLMo 2 has no sliding-window attention/],
    [{ ...base, model_type: "olmo2", hidden_act: "gelu" }, /hidden_act "gelu" is not supported for model_type "olmo2" \(silu\)/],
  ];
  for (const [cfg, re] of bad) assert.throws(() => hfConfigToModelConfig(cfg, "x/config.json"), re);
});
