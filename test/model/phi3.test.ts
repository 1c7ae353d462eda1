/**
 * phi3 without llama.cpp (the oracle runs in test/io/phi3-llamacpp.test.ts): config.json in its transformers 4 and 5
 * forms, LongRoPE's attention factor and factor choice, sliding_window, what is refused by name, calibration's block
 * (BlockRunner) = the forward pass, and the GGUF writer's fused tensors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { hfConfigToModelConfig, type HfConfigJson } from "../../src/io/hf.js";
import { Llama, ropeFactorSet, ropeInvFreq } from "../../src/model/llama.js";
import { expectedShapes, TensorNames, type ModelConfig } from "../../src/model/config.js";
import { Tensor } from "../../src/core/tensor.js";
import { Rng } from "../../src/core/rng.js";
import type { Weight } from "../../src/core/weight.js";
import type { Model } from "../../src/model/weights.js";
import { BlockRunner, blockWeights, matmulXWt, rmsnorm } from "../../src/algos/index.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { quantize } from "../../src/algos/quantize.js";
import { writeGgufModel, llamaMetadata, readGgufModel } from "../../src/io/gguf-model.js";
import { GgufWriter, MemorySink, openGguf, type ByteSink } from "../../src/io/gguf.js";
import { BufferSource } from "../../src/io/source.js";
import { collectImatrix, imatrixFileNames } from "../../src/algos/imatrix.js";
import { quantizeModelToGgml } from "../../src/algos/ggml-quant.js";
import type { GgmlType } from "../../src/ggml/types.js";
import { GGML_CODEC_TYPES, quantize as ggmlQuantize } from "../../src/ggml/codecs.js";
import { ggmlRowBytes, ggmlTypeName } from "../../src/ggml/types.js";

const SHORT = Array.from({ length: 48 }, (_, j) => 1 + j / 100);
const LONG = Array.from({ length: 48 }, (_, j) => 1 + j);

/** Phi-4-mini-instruct's config.json (transformers 4.x form), sizes as published, factors made up */
const PHI4_MINI: HfConfigJson = {
  architectures: ["Phi3ForCausalLM"], attention_bias: false, attention_dropout: 0.0, bos_token_id: 199999, embd_pdrop: 0.0, eos_token_id: 199999, full_attn_mod: 1,
  hidden_act: "silu", hidden_size: 3072, initializer_range: 0.02, intermediate_size: 8192, interpolate_factor: 1, lm_head_bias: false, max_position_embeddings: 131072,
  mlp_bias: false, model_type: "phi3", num_attention_heads: 24, num_hidden_layers: 32, num_key_value_heads: 8, original_max_position_embeddings: 4096, pad_token_id: 199999,
  partial_rotary_factor: 0.75, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_scaling: { long_factor: LONG, short_factor: SHORT, type: "longrope" }, rope_theta: 10000.0,
  sliding_window: 262144, tie_word_embeddings: true, torch_dtype: "bfloat16", transformers_version: "4.45.0", use_cache: true, vocab_size: 200064,
};

test("phi3 config.json: Phi-4-mini (partial rotary 0.75, longrope, tied); transformers 5's rope_parameters gives the same config", () => {
  const c = hfConfigToModelConfig(PHI4_MINI, "phi4/config.json");
  assert.equal(c.arch, "phi3");
  assert.equal(c.headDim, 128);
  assert.equal(c.rotaryDim, 96);
  assert.equal(c.tiedEmbeddings, true);
  assert.equal(c.slidingWindow, undefined); // 262144 ≥ 131072: full attention
  // transformers _compute_longrope_parameters: factor 131072 / 4096 = 32, √(1 + ln 32 / ln 4096)
  assert.ok(Math.abs(c.longRope!.attentionFactor - Math.sqrt(1 + Math.log(32) / Math.log(4096))) < 1e-12);
  assert.equal(c.longRope!.originalMaxPositionEmbeddings, 4096);
  // transformers 5: rope_theta, partial_rotary_factor and the scaling inside rope_parameters
  const { rope_scaling: _rs, rope_theta: _rt, partial_rotary_factor: _p, ...rest } = PHI4_MINI;
  const v5 = hfConfigToModelConfig({ ...rest, rope_parameters: { rope_type: "longrope", rope_theta: 10000.0, partial_rotary_factor: 0.75, long_factor: LONG, short_factor: SHORT } }, "phi4-v5/config.json");
  assert.deepEqual(v5, c);
  // early Phi-3 configs say "su"; an explicit attention_factor wins over the default
  assert.deepEqual(hfConfigToModelConfig({ ...PHI4_MINI, rope_scaling: { long_factor: LONG, short_factor: SHORT, type: "su" } }, "x"), c);
  assert.equal(hfConfigToModelConfig({ ...PHI4_MINI, rope_scaling: { long_factor: LONG, short_factor: SHORT, type: "longrope", attention_factor: 1.25 } }, "x").longRope!.attentionFactor, 1.25);
  // max_position_embeddings = original: factor 1, attention factor 1
  assert.equal(hfConfigToModelConfig({ ...PHI4_MINI, max_position_embeddings: 4096 }, "x").longRope!.attentionFactor, 1);
});

test("phi3 config.json: Phi-3-mini-4k's sliding_window 2047 is kept (transformers applies it; llama.cpp disables Phi SWA) and written to GGUF", () => {
  const c = hfConfigToModelConfig({ ...PHI4_MINI, hidden_size: 3072, num_attention_heads: 32, num_key_value_heads: 32, partial_rotary_factor: undefined, rope_scaling: null, max_position_embeddings: 4096, sliding_window: 2047, tie_word_embeddings: false }, "phi3-mini-4k/config.json");
  assert.equal(c.slidingWindow, 2047);
  assert.equal(c.rotaryDim, undefined);
  assert.equal(c.longRope, undefined);
  assert.equal(llamaMetadata(c).get("phi3.attention.sliding_window")?.value, 2047);
  assert.equal(llamaMetadata(c).get("phi3.rope.dimension_count")?.value, 96);
});

test("phi3 config.json: what the block cannot run is refused by name", () => {
  assert.throws(() => hfConfigToModelConfig({ ...PHI4_MINI, rope_scaling: { long_factor: LONG.slice(1), short_factor: SHORT, type: "longrope" } }, "x/config.json"), /rope_scaling\.long_factor has 47 values, expected rotary dimension \/ 2 = 48/);
  assert.throws(() => hfConfigToModelConfig({ ...PHI4_MINI, rope_scaling: { short_factor: SHORT, type: "longrope" } }, "x/config.json"), /"rope_scaling\.long_factor" must be an array/);
  assert.throws(() => hfConfigToModelConfig({ ...PHI4_MINI, rope_scaling: { factor: 4, type: "yarn" } }, "x/config.json"), /rope_scaling type "yarn" is not supported for model_type "phi3" \(llama3, longrope\)/);
  assert.throws(() => hfConfigToModelConfig({ ...PHI4_MINI, head_dim: 64 }, "x/config.json"), /head_dim 64 ≠ hidden_size \/ num_attention_heads/);
  assert.throws(() => hfConfigToModelConfig({ ...PHI4_MINI, partial_rotary_factor: 1.5 }, "x/config.json"), /partial_rotary_factor" must be in \(0, 1\]/);
  // the keys are phi3's: a llama config that has them is not silently run without them
  assert.throws(() => hfConfigToModelConfig({ model_type: "llama", hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 32, partial_rotary_factor: 0.5 }, "l/config.json"), /"partial_rotary_factor" = 0\.5 is not read for model_type "llama"/);
  assert.throws(() => hfConfigToModelConfig({ model_type: "llama", hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 32, rope_scaling: { type: "longrope", short_factor: [1], long_factor: [1] } }, "l/config.json"), /rope_scaling type "longrope" is not supported for model_type "llama" \(llama3\)/);
});

const TINY: ModelConfig = {
  arch: "phi3", dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: 64, seqLen: 64, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false,
  rotaryDim: 12, longRope: { shortFactor: [1, 1.1, 1.2, 1.3, 1.4, 1.5], longFactor: [1, 2, 3, 5, 8, 13], originalMaxPositionEmbeddings: 16, attentionFactor: 1.2 },
};

function tinyModel(cfg: ModelConfig = TINY): Model {
  const rng = new Rng(7);
  const weights = new Map<string, Weight>();
  for (const [n, shape] of expectedShapes(cfg)) {
    const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (shape.length === 1) for (let i = 0; i < d.length; i++) d[i] = 1 + 0.2 * rng.normal();
    else rng.fillNormal(d, n.startsWith("token_embd") || n === "output.weight" ? 0.5 : 0.15);
    weights.set(n, { kind: "dense", tensor: new Tensor("f32", shape, d) });
  }
  return { config: cfg, weights, source: { path: "tiny-phi3", format: "memory" } };
}

test("LongRoPE factor set: llama.cpp's choice by the context (long iff n_ctx > original); θ / factor[j] on rotaryDim/2 pairs", () => {
  assert.equal(ropeFactorSet(TINY, 16), "short");
  assert.equal(ropeFactorSet(TINY, 17), "long");
  assert.equal(ropeFactorSet({ ...TINY, longRope: undefined }, 1 << 20), "short");
  const base = ropeInvFreq({ ...TINY, longRope: undefined });
  assert.equal(base.length, 6);
  for (let j = 0; j < 6; j++) {
    assert.ok(Math.abs(base[j]! - Math.pow(10000, -(2 * j) / 12)) < 1e-6 * base[j]!, `θ^(−2j/rotaryDim) at ${j}`);
    assert.equal(ropeInvFreq(TINY, undefined, "long")[j], base[j]! / TINY.longRope!.longFactor[j]!);
    assert.equal(ropeInvFreq(TINY, undefined, "short")[j], base[j]! / TINY.longRope!.shortFactor[j]!);
  }
  // a Llama instance follows its context length unless told
  const m = tinyModel();
  const ids = [1, 5, 9, 13, 2, 40, 33, 7];
  const run = (opts: ConstructorParameters<typeof Llama>[1]) => { const l = new Llama(m, opts); return ids.map((t, p) => Float32Array.from(l.forward(t, p))); };
  const a = run({ contextLength: 16 }), b = run({ contextLength: 32, ropeFactors: "short" }), c = run({ contextLength: 32 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test("phi3 BlockRunner (calibration) = the forward pass: partial rotary, LongRoPE, fused-at-load weights (≤ 1e-4)", () => {
  const m = tinyModel();
  const c = m.config;
  const seq = 12;
  const windows = [Int32Array.from({ length: seq }, (_, i) => (i * 7 + 3) % 64), Int32Array.from({ length: seq }, (_, i) => (i * 11 + 1) % 64)];
  const runner = new BlockRunner(m, seq);
  const emb = dequantizeWeight(m.weights.get(TensorNames.tokenEmbd)!).data;
  const x = runner.embed(emb, windows);
  for (let l = 0; l < c.nLayers; l++) runner.run(l, blockWeights(m, l), x);
  const T = 2 * seq;
  const xn = new Float32Array(T * c.dim);
  rmsnorm(xn, x, dequantizeWeight(m.weights.get(TensorNames.outputNorm)!).data, T, c.dim, c.normEps);
  const logits = new Float32Array(T * c.vocabSize);
  matmulXWt(xn, T, dequantizeWeight(m.weights.get(TensorNames.output)!).data, c.vocabSize, c.dim, logits);
  let mx = 0;
  windows.forEach((w, wi) => {
    const l = new Llama(m);
    for (let p = 0; p < seq; p++) {
      const ref = l.forward(w[p]!, p);
      for (let v = 0; v < c.vocabSize; v++) mx = Math.max(mx, Math.abs(ref[v]! - logits[(wi * seq + p) * c.vocabSize + v]!));
    }
  });
  assert.ok(mx <= 1e-4, `max |Δlogit| ${mx}`);
});

class Sink implements ByteSink {
  chunks: Uint8Array[] = [];
  async write(b: Uint8Array): Promise<void> { this.chunks.push(b.slice()); }
}

test("GGUF writer: a fused tensor whose parts are stored in different types is refused by name; one type joins", async () => {
  const m = tinyModel({ ...TINY, dim: 256, hiddenDim: 256 });
  const q = (await quantize(m, { target: { preset: "Q8_0" }, method: "rtn" })).model;
  await writeGgufModel(q, new Sink()); // all Q8_0: joins
  const w = new Map(q.weights);
  w.set(TensorNames.attnK(1), { kind: "dense", tensor: new Tensor("f32", [32, 256], dequantizeWeight(q.weights.get(TensorNames.attnK(1))!).data) });
  await assert.rejects(writeGgufModel({ ...q, weights: w }, new Sink(), {}, "out.gguf"), /out\.gguf: blk\.1\.attn_qkv\.weight is one tensor in GGUF but its parts are stored as blk\.1\.attn_q\.weight Q8_0, blk\.1\.attn_k\.weight F32, blk\.1\.attn_v\.weight Q8_0/);
});

test("fused tensors in GGUF: every ggml type quantizes [q | k | v] at once to the bytes of q, k, v quantized apart (with and without an imatrix)", () => {
  const rng = new Rng(11);
  const cols = 256;
  const parts = [64, 32, 32].map((rows) => { const d = new Float32Array(rows * cols); rng.fillNormal(d, 0.1); return d; });
  const fused = new Float32Array(128 * cols);
  fused.set(parts[0]!, 0); fused.set(parts[1]!, 64 * cols); fused.set(parts[2]!, 96 * cols);
  const imatrix = Float32Array.from({ length: cols }, () => 0.1 + Math.abs(rng.normal()));
  let checked = 0;
  for (const type of GGML_CODEC_TYPES) {
    if (ggmlRowBytes(type, cols) === undefined) continue;
    for (const opts of [{}, { imatrix }]) {
      const whole = ggmlQuantize(type, fused, fused.length, opts);
      const apart = parts.map((p) => ggmlQuantize(type, p, p.length, opts));
      const joined = new Uint8Array(apart.reduce((a, b) => a + b.length, 0));
      let o = 0;
      for (const b of apart) { joined.set(b, o); o += b.length; }
      assert.deepEqual(joined, whole, `${ggmlTypeName(type)}${"imatrix" in opts ? " with imatrix" : ""}`);
      checked++;
    }
  }
  assert.ok(checked >= 30, `${checked} type × imatrix cases`);
});

test("phi3 GGUF: attn_qkv splits into the canonical q/k/v rows; a file with separate attn_q/k/v (llama.cpp create_tensor_qkv) reads the same", async () => {
  const m = tinyModel();
  const sink = new MemorySink();
  await writeGgufModel(m, sink, {}, "fused.gguf");
  const f = await openGguf(new BufferSource("fused.gguf", sink.bytes()));
  const fused = await readGgufModel(f);
  for (const n of expectedShapes(m.config).keys()) assert.deepEqual(dequantizeWeight(fused.weights.get(n)!, n).data, dequantizeWeight(m.weights.get(n)!, n).data, n);
  // the same file with attn_qkv written as three tensors
  const out = new MemorySink();
  const w = new GgufWriter(out, "split.gguf");
  for (const [k, v] of f.metadata) w.setKV(k, v);
  const tensors: { name: string; shape: number[]; type: GgmlType; bytes: Uint8Array }[] = [];
  for (const t of f.tensors) {
    const bytes = await f.readTensorBytes(t);
    const l = /^blk\.(\d+)\.attn_qkv\.weight$/.exec(t.name);
    if (!l) { tensors.push({ name: t.name, shape: t.shape, type: t.type, bytes }); continue; }
    const rowBytes = bytes.length / t.shape[0]!;
    let r = 0;
    for (const [n, rows] of [[TensorNames.attnQ(+l[1]!), 64], [TensorNames.attnK(+l[1]!), 32], [TensorNames.attnV(+l[1]!), 32]] as const) {
      tensors.push({ name: n, shape: [rows, t.shape[1]!], type: t.type, bytes: bytes.slice(r * rowBytes, (r + rows) * rowBytes) });
      r += rows;
    }
  }
  for (const t of tensors) w.addTensor({ name: t.name, shape: t.shape, type: t.type });
  await w.writeHeader();
  for (const t of tensors) await w.writeTensorData(t.name, t.bytes);
  w.finish();
  const split = await readGgufModel(await openGguf(new BufferSource("split.gguf", out.bytes())));
  for (const n of expectedShapes(m.config).keys()) assert.deepEqual(dequantizeWeight(split.weights.get(n)!, n).data, dequantizeWeight(m.weights.get(n)!, n).data, n);
  assert.deepEqual(split.config, fused.config);
});

test("phi3 imatrix: written under the GGUF's names (attn_qkv, ffn_up = gate + up), read back from them to the same blocks", () => {
  const m = tinyModel({ ...TINY, dim: 256, hiddenDim: 256 });
  const tokens = Array.from({ length: 400 }, (_, i) => (i * 13 + 5) % 64);
  const { imatrix } = collectImatrix(m, tokens, { ctx: 32, bosId: 1 });
  const named = imatrixFileNames(m.config, imatrix);
  const keys = [...named.keys()].filter((k) => k.startsWith("blk.0.")).sort();
  assert.deepEqual(keys, ["blk.0.attn_output.weight", "blk.0.attn_qkv.weight", "blk.0.ffn_down.weight", "blk.0.ffn_up.weight"]);
  // q, k, v read one input (as gate and up): their collected entries are the same numbers
  assert.deepEqual(imatrix.get(TensorNames.attnK(0)), imatrix.get(TensorNames.attnQ(0)));
  assert.deepEqual(imatrix.get(TensorNames.ffnUp(0)), imatrix.get(TensorNames.ffnGate(0)));
  const a = quantizeModelToGgml(m, { type: "Q4_K_M", imatrix }).model, b = quantizeModelToGgml(m, { type: "Q4_K_M", imatrix: named }).model;
  const none = quantizeModelToGgml(m, { type: "Q4_K_M" }).model;
  let differs = 0;
  for (const n of expectedShapes(m.config).keys()) {
    const wa = a.weights.get(n)!, wb = b.weights.get(n)!;
    assert.equal(wa.kind, wb.kind);
    if (wa.kind === "ggml" && wb.kind === "ggml") {
      assert.deepEqual(wb.data, wa.data, n);
      const wn = none.weights.get(n)!;
      if (wn.kind === "ggml" && !wn.data.every((x, i) => x === wa.data[i])) differs++;
    }
  }
  assert.ok(differs >= 4, `the imatrix changes ${differs} tensors`);
});
