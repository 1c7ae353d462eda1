/**
 * Phi-3 / Phi-3.5 / Phi-4-mini (`phi3`) on a tiny test model, llama.cpp as the independent oracle (the sibling of
 * architectures-llamacpp.test.ts). The model has what makes phi3 differ: fused `qkv_proj` / `gate_up_proj`
 * (GGUF `attn_qkv`, `ffn_up` of 2·ffn rows), partial rotary (partial_rotary_factor 0.75, as Phi-4-mini), LongRoPE
 * with short and long factors that are not 1 and an attention factor ≠ 1, GQA, tied embeddings (Phi-4-mini).
 *  - the fused HF tensors the writer produces are the test's own concatenation of the canonical parts ([q | k | v],
 *    [gate | up], transformers Phi3Attention / Phi3MLP), and the loader splits them back bit for bit,
 *  - HF directory = its GGUF in quantlab (1e-5); the GGUF holds attn_qkv / ffn_up / rope_factors_{long,short},
 *  - llama.cpp (node-llama-cpp 3.21.1, f32 KV cache, flash attention off) = quantlab on the GGUF (1e-3 in p), with
 *    the long factors (context 128 > original 64) and, on a copy whose original context is 4096, the short ones,
 *  - wasm = ref, ONNX Runtime = quantlab (fp32 and int4), Q4_K_M / GPTQ / AWQ run (KLD measured); the Q4_K_M
 *    GGUF (fused tensors joined from separately quantized parts) runs in llama.cpp as in quantlab.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadModel } from "../../src/io/node/load.js";
import { openGgufFile, saveGgufFile } from "../../src/io/node/gguf-file.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../../src/model/config.js";
import { LlamaCppModel, maxAbsProbDiff, softmax } from "../helpers/llamacpp.js";
import { TINY_VOCAB, ggufCasesVsLlamaCpp, logitsOf, maxDiff, ortVsQuantlab, randomWeights, tinyTokenizer } from "../helpers/tiny-arch.js";
import type { Tensor } from "../../src/core/tensor.js";
import type { HfTokenizer } from "../../src/model/tokenizers/hf.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { quantize } from "../../src/algos/quantize.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { buildOnnxGraph } from "../../src/io/onnx.js";
import { saveOnnxDir } from "../../src/io/node/onnx-file.js";
import { env, pipeline, Tensor as HfTensor } from "@huggingface/transformers";
import { generate } from "../../src/model/generate.js";
import { openSafetensors } from "../../src/io/safetensors.js";
import { openFile } from "../../src/io/node/file.js";
import { ggmlTypeName } from "../../src/ggml/types.js";

const VOCAB = TINY_VOCAB;
// the tiny vocabulary with Phi-3's end-of-turn token and a BOS id
const tokenizer = () => tinyTokenizer({ lastPiece: "<|end|>", bosId: VOCAB - 2 });

const ROT = 24; // partial_rotary_factor 0.75 of head_dim 32 (Phi-4-mini: 0.75 of 128)
const ORIG = 64;
const SEQ = 256;
// factors per rotary pair, increasing with wavelength as the published ones do (Phi-3.5-mini: short 1.0 … 1.6ish, long 1.0 … 60ish)
const SHORT = Array.from({ length: ROT / 2 }, (_, j) => 1 + 0.05 * j);
const LONG = Array.from({ length: ROT / 2 }, (_, j) => 1 + 0.6 * j * j / 8);
const ATTN = Math.sqrt(1 + Math.log(SEQ / ORIG) / Math.log(ORIG)); // transformers' default for factor = 256 / 64

const CFG: ModelConfig = {
  arch: "phi3", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 32, vocabSize: VOCAB, seqLen: SEQ, ropeTheta: 10000, normEps: 1e-5,
  tiedEmbeddings: true, rotaryDim: ROT, longRope: { shortFactor: SHORT, longFactor: LONG, originalMaxPositionEmbeddings: ORIG, attentionFactor: ATTN },
  // not "…phi3…" / "…phi-3…": llama.cpp's vocabulary loader then sets attributes on "</s>", "<s>", "<unk>" by text
  // (llama-vocab.cpp, by general.name), which this byte-level vocabulary does not have
  name: "tiny-phi",
};

/** config.json as transformers writes it for Phi-4-mini-instruct (its fields, this model's sizes). */
function transformersConfig(cfg: ModelConfig): Record<string, unknown> {
  return {
    architectures: ["Phi3ForCausalLM"], attention_bias: false, attention_dropout: 0.0, bos_token_id: VOCAB - 2, embd_pdrop: 0.0, eos_token_id: VOCAB - 2,
    hidden_act: "silu", hidden_size: cfg.dim, initializer_range: 0.02, intermediate_size: cfg.hiddenDim, max_position_embeddings: cfg.seqLen, model_type: "phi3",
    num_attention_heads: cfg.nHeads, num_hidden_layers: cfg.nLayers, num_key_value_heads: cfg.nKvHeads, original_max_position_embeddings: ORIG, pad_token_id: VOCAB - 2,
    partial_rotary_factor: 0.75, resid_pdrop: 0.0, rms_norm_eps: cfg.normEps, rope_scaling: { long_factor: LONG, short_factor: SHORT, type: "longrope" }, rope_theta: cfg.ropeTheta,
    sliding_window: 262144, tie_word_embeddings: true, torch_dtype: "float32", transformers_version: "4.45.0", use_cache: true, vocab_size: cfg.vocabSize,
  };
}

async function llamaCppVs(gguf: string, ours: Float32Array[], ids: number[], tok: HfTokenizer, text: string, contextSize: number): Promise<{ max: number; pos: number; id: number }> {
  const lc = await LlamaCppModel.load(gguf, { contextSize, kvCacheType: "F32", flashAttention: false });
  try {
    assert.deepEqual(lc.tokenize(text), ids, "llama.cpp tokenizes the GGUF's vocabulary as quantlab");
    return maxAbsProbDiff(ours.map((l) => softmax(l)), await lc.nextTokenProbs(ids, VOCAB));
  } finally {
    await lc.dispose();
  }
}

describe("phi3 vs llama.cpp (tiny HF directory → GGUF)", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-p3-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("fused qkv/gate_up, partial rotary, LongRoPE: HF = GGUF; llama.cpp agrees (long and short factors); wasm = ref; ONNX; Q4_K_M/GPTQ/AWQ", async (t) => {
    const tok = tokenizer();
    const mem: Model = { config: CFG, weights: randomWeights(CFG, 31, 0.3), tokenizer: tok, source: { path: "memory", format: "memory" } };
    const hfDir = join(dir, "tiny-hf");
    await saveHfDir(mem, hfDir);
    // the written config is the transformers form this test also writes by hand; the hand one is what is loaded
    const written = JSON.parse(readFileSync(join(hfDir, "config.json"), "utf8"));
    assert.equal(written.model_type, "phi3");
    assert.equal(written.partial_rotary_factor, 0.75);
    assert.deepEqual(written.rope_scaling, { type: "longrope", short_factor: SHORT, long_factor: LONG });
    assert.equal(written.original_max_position_embeddings, ORIG);
    writeFileSync(join(hfDir, "config.json"), JSON.stringify(transformersConfig(CFG), null, 2));

    // the fused HF tensors are [q | k | v] and [gate | up] rows of the canonical weights (the test's own concatenation)
    const st = await openSafetensors(openFile(join(hfDir, "model.safetensors")));
    const names = st.tensors.map((x) => x.name);
    assert.ok(names.includes("model.layers.1.self_attn.qkv_proj.weight") && names.includes("model.layers.1.mlp.gate_up_proj.weight"));
    assert.ok(!names.some((n) => /\.(q|k|v|gate|up)_proj\./.test(n)), names.join(", "));
    const f32 = (n: string) => (mem.weights.get(n) as { tensor: Tensor }).tensor.data as Float32Array;
    const cat = (...ns: string[]) => { const parts = ns.map(f32); const o = new Float32Array(parts.reduce((a, p) => a + p.length, 0)); let k = 0; for (const p of parts) { o.set(p, k); k += p.length; } return o; };
    for (let l = 0; l < CFG.nLayers; l++) {
      const qkv = (await st.readTensor(`model.layers.${l}.self_attn.qkv_proj.weight`));
      assert.deepEqual(qkv.shape, [128 + 2 * 64, 128]);
      assert.deepEqual(qkv.data, cat(TensorNames.attnQ(l), TensorNames.attnK(l), TensorNames.attnV(l)));
      const gu = await st.readTensor(`model.layers.${l}.mlp.gate_up_proj.weight`);
      assert.deepEqual(gu.shape, [512, 128]);
      assert.deepEqual(gu.data, cat(TensorNames.ffnGate(l), TensorNames.ffnUp(l)));
    }
    await st.source.close?.();

    const hf = await loadModel(hfDir);
    assert.equal(hf.config.arch, "phi3");
    assert.equal(hf.config.rotaryDim, ROT);
    assert.deepEqual(hf.config.longRope, CFG.longRope);
    assert.equal(hf.config.slidingWindow, undefined, "sliding_window 262144 ≥ the context: full attention");
    for (const n of expectedShapes(CFG).keys()) assert.deepEqual(dequantizeWeight(hf.weights.get(n)!, n).data, f32(n), n);

    const gguf = join(dir, "tiny.gguf");
    await saveGgufFile(hf, gguf);
    const gf = await openGgufFile(gguf);
    try {
      assert.deepEqual(gf.tensor("blk.0.attn_qkv.weight")?.shape, [256, 128]);
      assert.deepEqual(gf.tensor("blk.0.ffn_up.weight")?.shape, [512, 128]);
      assert.equal(gf.tensor("blk.0.attn_q.weight"), undefined);
      assert.equal(gf.tensor("blk.0.ffn_gate.weight"), undefined);
      assert.deepEqual(gf.tensor("rope_factors_long.weight")?.shape, [ROT / 2]);
      assert.equal(gf.metadata.get("phi3.rope.dimension_count")?.value, ROT);
      assert.equal(gf.metadata.get("phi3.rope.scaling.original_context_length")?.value, ORIG);
      assert.ok(Math.abs((gf.metadata.get("phi3.rope.scaling.attn_factor")?.value as number) - ATTN) < 1e-6);
    } finally {
      await gf.source.close?.();
    }
    const back = await loadModel(gguf);
    assert.equal(back.config.arch, "phi3");
    assert.equal(back.config.rotaryDim, ROT);
    assert.ok(back.config.longRope && back.config.longRope.longFactor.every((v, j) => Math.abs(v - LONG[j]!) < 1e-6));

    const text = "The theater was in the west, then 12345 rooms";
    const ids = tok.encode(text);
    assert.ok(ids.length > 20 && ids.length <= ORIG);
    const a = logitsOf(hf, ids), b = logitsOf(back, ids);
    const hfVsGguf = maxDiff(a, b);
    assert.ok(hfVsGguf <= 1e-5, `HF vs GGUF max |Δlogit| ${hfVsGguf}`);
    // the HF writer's own directory (fused again) loads to the same logits
    const hf2Dir = join(dir, "tiny-hf2");
    await saveHfDir(back, hf2Dir);
    assert.ok(maxDiff(logitsOf(await loadModel(hf2Dir), ids), b) <= 1e-5, "GGUF → HF → logits");

    const ours = b.map((l) => softmax(l));
    let peak = 0, meanTop = 0;
    for (const p of ours) { peak = Math.max(peak, Math.max(...p)); meanTop += Math.max(...p) / ours.length; }
    assert.ok(peak > 0.3 && meanTop < 0.95, `top p ${peak}, mean top p ${meanTop}`);

    // long factors: quantlab's default context (256) and llama.cpp's (128) are both beyond the original 64
    const long = new Llama(back, { contextLength: 128 });
    const oursLong = ids.map((x, pos) => Float32Array.from(long.forward(x, pos)));
    assert.ok(maxDiff(oursLong, b) === 0, "context 128 and 256 both take the long factors");
    const dLong = await llamaCppVs(gguf, oursLong, ids, tok, text, 128);
    // short factors: the same weights with original_context_length 4096 (beyond any context here)
    const shortCfg: ModelConfig = { ...back.config, longRope: { ...back.config.longRope!, originalMaxPositionEmbeddings: 4096 } };
    const shortGguf = join(dir, "tiny-short.gguf");
    await saveGgufFile({ ...back, config: shortCfg }, shortGguf);
    const oursShort = logitsOf(await loadModel(shortGguf), ids);
    const shortVsLong = maxDiff(oursShort, b);
    assert.ok(shortVsLong > 1e-2, `short and long factors must differ on this model (${shortVsLong})`);
    const dShort = await llamaCppVs(shortGguf, oursShort, ids, tok, text, 128);
    // without LongRoPE's attention factor (or without partial rotary) the model is measurably different
    const noAttn = maxDiff(logitsOf({ ...back, config: { ...back.config, longRope: { ...back.config.longRope!, attentionFactor: 1 } } }, ids), b);
    const fullRot = maxDiff(logitsOf({ ...back, config: { ...back.config, rotaryDim: undefined, longRope: undefined } }, ids), b);
    t.diagnostic(`phi3: top p ${peak.toFixed(3)} (mean ${meanTop.toFixed(3)}), llama.cpp max |Δp| long ${dLong.max.toExponential(2)} / short ${dShort.max.toExponential(2)}, HF vs GGUF max |Δlogit| ${hfVsGguf.toExponential(2)}; short vs long factors ${shortVsLong.toFixed(3)}, attention factor off ${noAttn.toFixed(3)}, full rotary ${fullRot.toFixed(3)} (max |Δlogit|)`);
    assert.ok(dLong.max <= 1e-3, `llama.cpp (long factors) max |Δp| ${dLong.max} at position ${dLong.pos}, id ${dLong.id}`);
    assert.ok(dShort.max <= 1e-3, `llama.cpp (short factors) max |Δp| ${dShort.max} at position ${dShort.pos}, id ${dShort.id}`);
    assert.ok(noAttn > 1e-2 && fullRot > 1e-2, `attention factor ${noAttn}, partial rotary ${fullRot}`);

    const be = createNodeWasmBackend({ threads: 1 });
    try {
      const w = logitsOf(back, ids, be);
      const m = maxDiff(w, b);
      assert.ok(m <= 1e-3, `wasm vs ref max |Δlogit| ${m}`);
      t.diagnostic(`phi3 wasm vs ref: ${m.toExponential(2)}`);
    } finally {
      be.dispose?.();
    }

    for (const spec of [undefined, "int4:g32:asym"]) {
      const m = spec ? (await quantize(back, { target: { spec }, method: "rtn" })).model : back;
      const worst = await ortVsQuantlab(m, buildOnnxGraph(m, { dtype: spec ? "q4" : "fp32" }).model, ids);
      t.diagnostic(`phi3 ONNX ${spec ?? "fp32"}: max |Δlogit| ${worst.toExponential(2)}`);
      assert.ok(worst <= 1e-4, `phi3 ONNX ${spec ?? "fp32"}: ${worst}`);
    }

    // transformers.js loads the exported directory (model_type phi3, no head_dim: hidden / heads) and generates quantlab's greedy tokens
    const models = join(dir, "onnx-models");
    mkdirSync(models, { recursive: true });
    await saveOnnxDir(back, join(models, "tiny-p3"), { dtype: "fp32" });
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = models + "/";
    const gen = await pipeline("text-generation", "tiny-p3", { dtype: "fp32" });
    try {
      const ql = generate(new Llama(back), back.tokenizer!, { prompt: "The theater was", steps: 24, temperature: 0, topP: 1, topK: 0, seed: 1, stopAtEos: false });
      const prompt = ql.tokenIds.slice(0, ql.promptTokens);
      const input_ids = new HfTensor("int64", BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
      const attention_mask = new HfTensor("int64", BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
      const out = (await gen.model.generate({ input_ids, attention_mask, max_new_tokens: ql.tokenIds.length - prompt.length, do_sample: false })) as { data: ArrayLike<bigint> };
      assert.deepEqual(Array.from(out.data, Number), ql.tokenIds, "phi3: transformers.js greedy");
    } finally {
      await gen.dispose();
    }

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
      assert.ok(Number.isFinite(k.meanKld) && k.meanKld < 0.5, `phi3 ${recipe.method}: KLD ${k.meanKld}`);
      if ("preset" in recipe.target) {
        // the Q4_K_M file: q/k/v (and gate/up) were quantized as parts of one type each and joined into attn_qkv / ffn_up
        const qf = join(dir, "tiny-q4km.gguf");
        await saveGgufFile(r.model, qf);
        const qg = await openGgufFile(qf);
        const types = [qg.tensor("blk.0.attn_qkv.weight")!.type, qg.tensor("blk.0.ffn_up.weight")!.type];
        await qg.source.close?.();
        const q = await loadModel(qf);
        const oursQ = logitsOf(q, ids);
        assert.ok(maxDiff(oursQ, logitsOf(r.model, ids)) === 0, "the Q4_K_M GGUF = the quantized model");
        const lc = await LlamaCppModel.load(qf, { contextSize: 128, kvCacheType: "F32", flashAttention: false });
        let theirs: ArrayLike<number>[];
        try { theirs = await lc.nextTokenProbs(ids, VOCAB); } finally { await lc.dispose(); }
        // llama.cpp rounds activations to Q8_K for these matmuls (quantlab's runtime forward does not): ≈1e-2 apart
        // (ggml-quant-llamacpp.test.ts); a wrong split of the fused rows would put it as far from the quantized
        // model as from the float one, or further
        const dq = maxAbsProbDiff(oursQ.map((l) => softmax(l)), theirs);
        const dFloat = maxAbsProbDiff(ours, theirs);
        rows.push(`Q4_K_M GGUF (attn_qkv / ffn_up ${types.map(ggmlTypeName).join(", ")}: rows of 128 take the Q5_0 fall-back) in llama.cpp: max |Δp| vs quantlab's Q4_K_M ${dq.max.toExponential(2)}, vs float ${dFloat.max.toExponential(2)}`);
        assert.ok(dq.max <= 0.1 && dq.max < dFloat.max / 2, `Q4_K_M GGUF in llama.cpp: max |Δp| ${dq.max} at ${dq.pos} (vs the float model ${dFloat.max})`);
      }
    }
    t.diagnostic(`phi3: ${rows.join("; ")}`);
  });
});

describe("phi3 GGUF files (plain presets, AWQ, SmoothQuant, rotation + GPTQ) run in llama.cpp as GgmlForward runs them", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-p3-gguf-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("Q8_0 / Q4_0 / Q4_K_M / AWQ Q4_0 / SmoothQuant Q4_0 / rotate+GPTQ Q4_K_M within 1e-3 of GgmlForward (partial rotary, LongRoPE long factors, fused attn_qkv / ffn_up); KLD vs float", async (t) => {
    const tok = tokenizer();
    const f0 = join(dir, "tiny.gguf");
    await saveGgufFile({ config: CFG, weights: randomWeights(CFG, 31, 0.3), tokenizer: tok, source: { path: "memory", format: "memory" } }, f0);
    const back = await loadModel(f0);
    const text = "The theater was in the west, then 12345 rooms";
    const calibText = Array.from({ length: 30 }, (_, i) => `${text} ${i} the west was in the theater`).join(" ");
    const res = await ggufCasesVsLlamaCpp(back, tok.encode(text), tok.encode(calibText).slice(0, 200), calibText, dir, ["Q8_0", "Q4_0", "Q4_K_M", "awq Q4_0", "smoothquant Q4_0", "rotate+gptq Q4_K_M"]);
    t.diagnostic(`phi3: ${[...res].map(([k, r]) => `${k}: llama.cpp max |Δp| ${r.llamaCpp.toExponential(2)}, KLD ${r.kld.toFixed(5)}`).join("; ")}`);
    for (const [k, r] of res) assert.ok(r.llamaCpp <= 1e-3, `phi3 ${k}: llama.cpp max |Δp| ${r.llamaCpp}`);
    // GQA: v → o is the one site that cannot fold (listed under the fused attn_output's name); the rest fold
    assert.deepEqual([...new Set(res.get("awq Q4_0")!.notFolded.map((x) => x.name))], ["blk.0.attn_output.weight", "blk.1.attn_output.weight"]);
    assert.ok(res.get("awq Q4_0")!.kld <= res.get("Q4_0")!.kld * 1.05 + 1e-5, `AWQ Q4_0 KLD ${res.get("awq Q4_0")!.kld} vs plain ${res.get("Q4_0")!.kld}`);
    assert.ok(res.get("rotate+gptq Q4_K_M")!.kld <= res.get("Q4_K_M")!.kld * 1.05 + 1e-5, `rotated + GPTQ Q4_K_M KLD ${res.get("rotate+gptq Q4_K_M")!.kld} vs plain ${res.get("Q4_K_M")!.kld}`);
  });
});
