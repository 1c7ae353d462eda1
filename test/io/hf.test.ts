import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveHfDir, saveSafetensorsFile } from "../../src/io/node/hf-file.js";
import { saveGgufFile } from "../../src/io/node/gguf-file.js";
import { permuteQK } from "../../src/io/hf.js";
import { writeSafetensors } from "../../src/io/safetensors.js";
import { atomicWriteFile } from "../../src/io/node/atomic.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { Rng } from "../../src/core/rng.js";
import { Tensor } from "../../src/core/tensor.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../../src/model/config.js";
import { vocabToTokenizerJson } from "../../src/model/tokenizers/hf.js";
import { byteLevelAlphabet } from "../helpers/byte-level.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8")) as { logits: { prompt: string; token_ids: number[] } };

function logitsOf(m: Model, ids: number[]): Float32Array[] {
  const llama = new Llama(m);
  return ids.map((t, pos) => new Float32Array(llama.forward(t, pos)));
}

/** RoPE on one head vector, HF style: pairs (i, i + hd/2). */
function ropeHalves(v: Float64Array, pos: number, theta: number): Float64Array {
  const hd = v.length, half = hd / 2, out = new Float64Array(hd);
  for (let j = 0; j < half; j++) {
    const a = pos * Math.pow(theta, (-2 * j) / hd);
    out[j] = v[j]! * Math.cos(a) - v[j + half]! * Math.sin(a);
    out[j + half] = v[j + half]! * Math.cos(a) + v[j]! * Math.sin(a);
  }
  return out;
}
/** RoPE on one head vector, llama2.c/GGUF style: pairs (2j, 2j+1). */
function ropeInterleaved(v: Float64Array, pos: number, theta: number): Float64Array {
  const hd = v.length, out = new Float64Array(hd);
  for (let j = 0; j < hd / 2; j++) {
    const a = pos * Math.pow(theta, (-2 * j) / hd);
    out[2 * j] = v[2 * j]! * Math.cos(a) - v[2 * j + 1]! * Math.sin(a);
    out[2 * j + 1] = v[2 * j + 1]! * Math.cos(a) + v[2 * j]! * Math.sin(a);
  }
  return out;
}

describe("HF layout", () => {
  test("permuteQK turns HF's half-split RoPE into interleaved RoPE: attention scores are unchanged, and it inverts", () => {
    const rng = new Rng(7);
    const nHeads = 3, hd = 8, dim = 5;
    const wq = rng.fillNormal(new Float32Array(nHeads * hd * dim));
    const wk = rng.fillNormal(new Float32Array(nHeads * hd * dim));
    const x = rng.fillNormal(new Float32Array(dim));
    const bytes = (a: Float32Array) => new Uint8Array(a.buffer);
    const pq = new Float32Array(permuteQK(bytes(wq), nHeads, hd, dim * 4, true).buffer);
    const pk = new Float32Array(permuteQK(bytes(wk), nHeads, hd, dim * 4, true).buffer);
    assert.deepEqual(new Float32Array(permuteQK(bytes(pq), nHeads, hd, dim * 4, false).buffer), wq);
    const proj = (w: Float32Array, h: number) => {
      const v = new Float64Array(hd);
      for (let r = 0; r < hd; r++) for (let c = 0; c < dim; c++) v[r] += w[(h * hd + r) * dim + c]! * x[c]!;
      return v;
    };
    for (let h = 0; h < nHeads; h++) {
      for (const [pq_, pk_] of [[3, 1], [17, 5]] as const) {
        const hfScore = dot(ropeHalves(proj(wq, h), pq_, 10000), ropeHalves(proj(wk, h), pk_, 10000));
        const ilScore = dot(ropeInterleaved(proj(pq, h), pq_, 10000), ropeInterleaved(proj(pk, h), pk_, 10000));
        assert.ok(Math.abs(hfScore - ilScore) < 1e-9, `head ${h}: ${hfScore} vs ${ilScore}`);
      }
    }
  });

  test("llama2.c → HF directory (2 shards + index) → load: identical logits and tokenization", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-hf-"));
    try {
      const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
      const out = join(dir, "hf");
      const r = await saveHfDir(src, out, { maxShardBytes: 600_000 });
      assert.deepEqual(readdirSync(dir), ["hf"]);
      assert.deepEqual(readdirSync(out).sort(), ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]);
      assert.equal(r.files.length, 6);
      const back = await loadModel(out);
      assert.equal(back.source.format, "hf");
      assert.deepEqual({ ...back.config, name: undefined }, { ...src.config, name: undefined });
      for (const [name, w] of src.weights) assert.deepEqual((back.weights.get(name) as { tensor: Tensor }).tensor.data, (w as { tensor: Tensor }).tensor.data, name);
      const ids = ref.logits.token_ids;
      assert.deepEqual(back.tokenizer!.encode(ref.logits.prompt, { bos: true }), ids);
      const a = logitsOf(src, ids), b = logitsOf(back, ids);
      for (let i = 0; i < ids.length; i++) assert.deepEqual(b[i], a[i], `position ${i}`);
      // the tokenizer.json we write tokenizes real text like llama2.c's tokenizer
      const text = readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 20000);
      assert.deepEqual(back.tokenizer!.encode(text), src.tokenizer!.encode(text));
      assert.equal(back.tokenizer!.decode(back.tokenizer!.encode(text)), text);
      // HF (SentencePiece-style BPE tokenizer.json) → GGUF: the "llama" vocabulary scored by merge rank tokenizes the same
      const g = join(dir, "from-hf.gguf");
      await saveGgufFile(back, g);
      const fromHf = await loadModel(g);
      assert.deepEqual(fromHf.tokenizer!.vocab().pieces, src.tokenizer!.vocab().pieces);
      assert.deepEqual(fromHf.tokenizer!.encode(text), src.tokenizer!.encode(text));
      // and the single-file form carries config and tokenizer in __metadata__
      const one = join(dir, "one.safetensors");
      await saveSafetensorsFile(src, one, { dtype: "f32" });
      const single = await loadModel(one);
      assert.equal(single.source.format, "safetensors");
      const c = logitsOf(single, ids);
      for (let i = 0; i < ids.length; i++) assert.deepEqual(c[i], a[i], `single file, position ${i}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a synthetic HF directory (config.json, 2 shards + index, tokenizer.json) loads and runs like the same model in memory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-hf-"));
    try {
      const cfg: ModelConfig = { arch: "llama", dim: 32, hiddenDim: 48, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 8, vocabSize: 300, seqLen: 64, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: false };
      const rng = new Rng(3);
      const weights = new Map<string, import("../../src/core/weight.js").Weight>();
      for (const [n, shape] of expectedShapes(cfg)) {
        const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
        if (shape.length === 1) d.fill(1).forEach((_, i) => (d[i] = 1 + 0.1 * rng.normal()));
        else rng.fillNormal(d, 0.2);
        weights.set(n, { kind: "dense", tensor: new Tensor("f32", shape, d) });
      }
      const mem: Model = { config: cfg, weights, source: { path: "memory", format: "memory" } };
      // HF files written by hand: names, f16/bf16/f32 dtypes mixed, Q/K in HF row order (the inverse permutation)
      const hfName: Record<string, string> = { [TensorNames.tokenEmbd]: "model.embed_tokens.weight", [TensorNames.outputNorm]: "model.norm.weight", [TensorNames.output]: "lm_head.weight" };
      const sfx: [string, string][] = [["attn_norm", "input_layernorm"], ["attn_q", "self_attn.q_proj"], ["attn_k", "self_attn.k_proj"], ["attn_v", "self_attn.v_proj"], ["attn_output", "self_attn.o_proj"], ["ffn_norm", "post_attention_layernorm"], ["ffn_gate", "mlp.gate_proj"], ["ffn_up", "mlp.up_proj"], ["ffn_down", "mlp.down_proj"]];
      for (let l = 0; l < cfg.nLayers; l++) for (const [a, b] of sfx) hfName[`blk.${l}.${a}.weight`] = `model.layers.${l}.${b}.weight`;
      const entries = [...weights].map(([n, w]) => {
        const t = (w as { tensor: Tensor }).tensor;
        let bytes = new Uint8Array(t.data.buffer);
        if (n.includes("attn_q") || n.includes("attn_k")) bytes = permuteQK(bytes, n.includes("attn_q") ? cfg.nHeads : cfg.nKvHeads, cfg.headDim, cfg.dim * 4, false);
        return { name: hfName[n]!, dtype: "f32" as const, shape: t.shape, bytes: () => bytes };
      });
      const half = Math.floor(entries.length / 2);
      const shards = [entries.slice(0, half), entries.slice(half)];
      const files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
      const weightMap: Record<string, string> = {};
      for (let i = 0; i < 2; i++) {
        await atomicWriteFile(join(dir, files[i]!), (s) => writeSafetensors(s, shards[i]!));
        for (const e of shards[i]!) weightMap[e.name] = files[i]!;
      }
      writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
      writeFileSync(join(dir, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 64, rope_theta: 500000, rms_norm_eps: 1e-5, tie_word_embeddings: false, hidden_act: "silu" }));
      // a small byte-level BPE tokenizer: 256 byte pieces + 43 merges + one special
      const pieces = byteLevelAlphabet();
      const merges: string[] = [];
      for (const [a, b] of [["h", "e"], ["l", "l"], ["o", "Ġ"], ["he", "ll"]] as const) { merges.push(`${a} ${b}`); pieces.push(a + b); }
      while (pieces.length < 299) pieces.push(`<unused${pieces.length}>`);
      pieces.push("<|begin_of_text|>");
      const types = new Int32Array(300).fill(1); types[299] = 3;
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(vocabToTokenizerJson({ model: "gpt2", pre: "llama-bpe", pieces, scores: new Float32Array(300), types, merges, bosId: 299, eosId: 299, addBos: true })));
      const m = await loadModel(dir);
      assert.deepEqual({ ...m.config, name: undefined }, { ...cfg, name: undefined });
      const ids = m.tokenizer!.encode("hello world", { bos: true });
      assert.equal(ids[0], 299);
      assert.equal(ids[1], pieces.indexOf("hell"));
      assert.equal(m.tokenizer!.decode(ids), "hello world");
      const a = logitsOf(mem, ids), b = logitsOf(m, ids);
      for (let i = 0; i < ids.length; i++) assert.deepEqual(b[i], a[i], `position ${i}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}


describe("padded vocabularies", () => {
  test("a tokenizer smaller than the embedding gets [PAD<id>] tokens (UNUSED), and a GGUF round trip keeps them", async () => {
    const { HfTokenizer } = await import("../../src/model/tokenizers/hf.js");
    const { writeGgufModel, readGgufModel } = await import("../../src/io/gguf-model.js");
    const { MemorySink, openGguf } = await import("../../src/io/gguf.js");
    const { BufferSource } = await import("../../src/io/source.js");
    const pieces = byteLevelAlphabet();
    pieces.push("<|begin_of_text|>");
    const types = new Int32Array(257).fill(1); types[256] = 3;
    const json = vocabToTokenizerJson({ model: "gpt2", pre: "llama-bpe", pieces, scores: new Float32Array(257), types, merges: [], bosId: 256, eosId: 256, addBos: true });
    const tok = new HfTokenizer(json, { bos_token: "<|begin_of_text|>" }, "t.json", 264);
    assert.equal(tok.vocabSize, 264);
    const v = tok.vocab();
    assert.equal(v.pieces[263], "[PAD263]");
    assert.equal(v.types[263], 5);
    assert.equal(v.types[256], 3);
    const cfg: ModelConfig = { arch: "llama", dim: 8, hiddenDim: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, headDim: 4, vocabSize: 264, seqLen: 16, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true };
    const weights = new Map<string, import("../../src/core/weight.js").Weight>();
    for (const [n, shape] of expectedShapes(cfg)) weights.set(n, { kind: "dense", tensor: new Tensor("f32", shape, new Rng(1).fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1)))) });
    const sink = new MemorySink();
    await writeGgufModel({ config: cfg, weights, tokenizer: tok, source: { path: "m", format: "memory" } }, sink);
    const back = await readGgufModel(await openGguf(new BufferSource("m.gguf", sink.bytes())));
    assert.equal(back.tokenizer!.vocabSize, 264);
    assert.deepEqual(back.tokenizer!.encode("hi there", { bos: true }), tok.encode("hi there", { bos: true }));
    assert.deepEqual(back.tokenizer!.vocab().pieces, v.pieces);
  });
});

describe("BOS / EOS when tokenizer_config.json names none", () => {
  // Qwen2/2.5 as the hub ships them: tokenizer_config.json has "bos_token": null, config.json "bos_token_id": 151643
  // (<|endoftext|>); llama.cpp's converter (gguf-py SpecialVocab) then takes config.json's id. Before, quantlab
  // guessed <|im_start|> from its list of spellings.
  async function qwenLike(cfg: Record<string, unknown>, tokCfg: Record<string, unknown>) {
    const { BlobDir } = await import("../../src/io/blob-source.js");
    const { loadHfTokenizer } = await import("../../src/io/hf.js");
    const pieces = byteLevelAlphabet();
    pieces.push("<|endoftext|>", "<|im_start|>", "<|im_end|>");
    const types = new Int32Array(pieces.length).fill(1); types[256] = 3; types[257] = 3; types[258] = 3;
    const json = vocabToTokenizerJson({ model: "gpt2", pre: "qwen2", pieces, scores: new Float32Array(pieces.length), types, merges: [], bosId: -1, eosId: 258, addBos: false });
    const dir = new BlobDir("qwen", [["tokenizer.json", new Blob([JSON.stringify(json)])], ["tokenizer_config.json", new Blob([JSON.stringify(tokCfg)])]]);
    return loadHfTokenizer(dir, 0, cfg);
  }
  test("config.json's bos_token_id / eos_token_id (first of a list) decide, as in llama.cpp's converter", async () => {
    const t = (await qwenLike({ bos_token_id: 256, eos_token_id: [258, 256] }, { bos_token: null, eos_token: null, add_bos_token: false }))!;
    assert.equal(t.bosId, 256);
    assert.equal(t.eosId, 258);
    assert.equal(t.addBos, false);
  });
  test("tokenizer_config.json's named token wins over config.json; no ids anywhere falls back to the spellings", async () => {
    const named = (await qwenLike({ bos_token_id: 256 }, { bos_token: "<|im_start|>", eos_token: "<|endoftext|>" }))!;
    assert.equal(named.bosId, 257);
    assert.equal(named.eosId, 256);
    const none = (await qwenLike({}, { bos_token: null }))!;
    assert.equal(none.bosId, 256); // <|endoftext|>: <|im_start|> opens a ChatML turn and is never guessed as BOS
    const outOfRange = (await qwenLike({ bos_token_id: 99999 }, {}))!;
    assert.equal(outOfRange.bosId, 256);
  });
});

test("a tokenizer with no BOS at all: evaluation and calibration windows name it instead of feeding id −1", async () => {
  const { windowInputs, planWindows } = await import("../../src/eval/windows.js");
  const { calibrationWindows } = await import("../../src/algos/calib.js");
  const tokens = Int32Array.from({ length: 40 }, (_, i) => i);
  assert.throws(() => windowInputs(tokens, planWindows(40, 8)[0]!, -1), /evaluation windows start with the BOS token, and the model's tokenizer has none/);
  assert.throws(() => calibrationWindows(tokens, { samples: 2, seq: 8, seed: 1, bosId: -1 }), /calibration windows start with the BOS token/);
  assert.deepEqual([...windowInputs(tokens, planWindows(40, 8)[1]!, 3)], [3, 7, 8, 9, 10, 11, 12]);
});
