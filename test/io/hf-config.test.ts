// config.json → ModelConfig (io/hf.ts hfConfigToModelConfig): the transformers 4 form (`rope_theta`,
// `rope_scaling`) and the transformers 5 form (`rope_parameters`) of one Llama 3 config give one model;
// disagreeing or unsupported rope fields and mixture-of-experts fields are errors naming the field.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hfConfigToModelConfig, type HfConfigJson } from "../../src/io/hf.js";

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
  assert.equal(hfConfigToModelConfig({ ...m, sliding_window: 4096, use_sliding_window: false }, "m/config.json").slidingWindow, undefined);
  assert.equal(hfConfigToModelConfig({ ...m, sliding_window: 65536 }, "m/config.json").slidingWindow, undefined);
  assert.throws(() => hfConfigToModelConfig({ ...m, sliding_window: "big" as never }, "m/config.json"), /m\/config\.json: "sliding_window" must be a positive integer or null/);
  assert.throws(() => hfConfigToModelConfig({ ...m, sliding_window: 4096, use_sliding_window: true, max_window_layers: 1 }, "m/config.json"), /"max_window_layers" = 1: sliding windows in only some layers are not supported/);
});
