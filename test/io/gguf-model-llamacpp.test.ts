/**
 * llama.cpp interop: GGUFs we write load in llama.cpp (node-llama-cpp 3.21.1) and give the same
 * next-token probabilities as our forward pass (≤ 1e-3 max abs); GGUFs llama.cpp wrote load in quantlab
 * and agree the same way.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveGgufFile } from "../../src/io/node/gguf-file.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { Tensor } from "../../src/core/tensor.js";
import { Rng } from "../../src/core/rng.js";
import { expectedShapes, type ModelConfig } from "../../src/model/config.js";
import { LlamaCppModel, maxAbsProbDiff, softmax } from "../helpers/llamacpp.js";
import { byteLevelAlphabet } from "../helpers/byte-level.js";
import type { Weight } from "../../src/core/weight.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8")) as { logits: { prompt: string; token_ids: number[] } };
const TOL = 1e-3;

function ourProbs(m: Model, ids: number[]): Float64Array[] {
  const llama = new Llama(m);
  return ids.map((t, pos) => softmax(llama.forward(t, pos)));
}

async function compare(path: string, m: Model, ids: number[], label: string): Promise<number> {
  const t0 = Date.now();
  const lc = await LlamaCppModel.load(path, { contextSize: Math.min(256, m.config.seqLen) });
  try {
    const theirs = await lc.nextTokenProbs(ids, m.config.vocabSize);
    const ours = ourProbs(m, ids);
    const d = maxAbsProbDiff(ours, theirs);
    // a comparison only means something if the distributions are far from uniform
    let peak = 0;
    for (const p of ours) for (const x of p) peak = Math.max(peak, x);
    assert.ok(peak > 20 / m.config.vocabSize, `${label}: distributions too flat (max p ${peak})`);
    console.log(`# ${label}: max p ${peak.toFixed(3)}, max |Δp| = ${d.max.toExponential(3)} (position ${d.pos}, id ${d.id}), ${ids.length} positions, ${Date.now() - t0} ms`);
    assert.ok(d.max <= TOL, `${label}: max |Δp| ${d.max} at position ${d.pos}, id ${d.id}`);
    return d.max;
  } finally {
    await lc.dispose();
  }
}

describe("llama.cpp interop", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-lc-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("our GGUF F32 of stories260K: llama.cpp tokenizes and predicts like us", async () => {
    const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const out = join(dir, "s260k.gguf");
    await saveGgufFile(m, out);
    const lc = await LlamaCppModel.load(out, { contextSize: 128 });
    try {
      // llama.cpp's SPM tokenizer on our vocabulary = llama2.c's tokenizer
      assert.deepEqual([lc.bosId, ...lc.tokenize(ref.logits.prompt)], ref.logits.token_ids);
    } finally {
      await lc.dispose();
    }
    await compare(out, m, ref.logits.token_ids, "stories260K F32 (ours) in llama.cpp");
  });

  test("llama.cpp's own stories260K F32 and F16 GGUFs: quantlab agrees with llama.cpp on them", async () => {
    for (const f of ["stories260K-F32.gguf", "stories260K-F16.gguf"]) {
      const p = dataPath("ggml", "stories260K", f);
      const m = await loadModel(p);
      await compare(p, m, ref.logits.token_ids, `${f} (llama.cpp's) in quantlab`);
    }
  });

  test("synthetic Llama (GQA, untied output, rope_theta 500000, dims multiples of 256) agrees", async () => {
    const cfg: ModelConfig = { arch: "llama", dim: 256, hiddenDim: 512, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 64, vocabSize: 256, seqLen: 256, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: false, name: "synthetic" };
    const weights = randomWeights(cfg, 11);
    // a byte-piece llama vocabulary so llama.cpp accepts the file: <unk>, <s>, </s>, then bytes
    const { Llama2cTokenizer } = await import("../../src/model/tokenizers/llama2c.js");
    const pieces = [new TextEncoder().encode("<unk>"), new TextEncoder().encode("<s>"), new TextEncoder().encode("</s>")];
    for (let b = 0; b < 253; b++) pieces.push(new TextEncoder().encode(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`));
    const tokenizer = new Llama2cTokenizer({ pieces, scores: new Float32Array(256) });
    const m: Model = { config: cfg, weights, tokenizer, source: { path: "memory", format: "memory" } };
    const out = join(dir, "synthetic.gguf");
    await saveGgufFile(m, out);
    const ids = [1];
    for (let i = 0; i < 40; i++) ids.push(3 + ((i * 37 + 11) % 250));
    await compare(out, m, ids, "synthetic Llama F32 (ours) in llama.cpp");
  });

  test("synthetic Llama 3 style: byte-level BPE vocabulary (gpt2, llama-bpe) and llama3 RoPE scaling as rope_freqs", async () => {
    const { HfTokenizer } = await import("../../src/model/tokenizers/hf.js");
    const pieces = byteLevelAlphabet();
    const merges: string[] = [];
    for (const [a, b] of [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["Ġ", "a"], ["o", "n"], ["e", "r"], ["Ġ", "w"], ["a", "s"], ["Ġw", "as"]] as const) { merges.push(`${a} ${b}`); pieces.push(a + b); }
    while (pieces.length < 510) pieces.push(`<|reserved_${pieces.length}|>`);
    pieces.push("<|begin_of_text|>", "<|end_of_text|>");
    const types = new Int32Array(512).fill(1);
    for (let i = 266; i < 512; i++) types[i] = 3;
    const tokenizer = HfTokenizer.fromVocab({ model: "gpt2", pre: "llama-bpe", pieces, scores: new Float32Array(512), types, merges, bosId: 510, eosId: 511, addBos: true });
    const cfg: ModelConfig = { arch: "llama", dim: 256, hiddenDim: 768, nLayers: 2, nHeads: 4, nKvHeads: 1, headDim: 64, vocabSize: 512, seqLen: 256, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: true, name: "synthetic-llama3",
      ropeScaling: { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } };
    const m: Model = { config: cfg, weights: randomWeights(cfg, 12, 0.12), tokenizer, source: { path: "memory", format: "memory" } };
    const out = join(dir, "synthetic-l3.gguf");
    await saveGgufFile(m, out);
    const back = await loadModel(out);
    assert.deepEqual(back.config.ropeScaling, cfg.ropeScaling); // recovered from rope_freqs.weight
    const text = "The theater was in the west, then 12345 rooms…";
    const ids = [510, ...tokenizer.encode(text)];
    assert.deepEqual(back.tokenizer!.encode(text, { bos: true }), ids);
    const lc = await LlamaCppModel.load(out, { contextSize: 256 });
    try {
      assert.deepEqual(lc.tokenize(text), ids.slice(1));
    } finally {
      await lc.dispose();
    }
    await compare(out, back, ids, "synthetic Llama-3-style F32 (ours) in llama.cpp");
  });
});

/** Random weights; the embedding's scale sets how peaked the output is (it is the classifier when tied). */
function randomWeights(cfg: ModelConfig, seed: number, embdStd = 1): Map<string, Weight> {
  const rng = new Rng(seed);
  const weights = new Map<string, Weight>();
  for (const [n, shape] of expectedShapes(cfg)) {
    const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (shape.length === 1) for (let i = 0; i < d.length; i++) d[i] = 1 + 0.1 * rng.normal();
    else rng.fillNormal(d, n.startsWith("token_embd") ? embdStd : 0.06);
    weights.set(n, { kind: "dense", tensor: new Tensor("f32", shape, d) });
  }
  return weights;
}

