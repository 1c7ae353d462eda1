/**
 * Tiny models for the architecture tests (test/io/architectures-*.test.ts): a 512-token byte-level BPE
 * vocabulary and seeded random weights in canonical names.
 */
import { Tensor } from "../../src/core/tensor.js";
import { Rng } from "../../src/core/rng.js";
import { expectedShapes, type ModelConfig } from "../../src/model/config.js";
import { HfTokenizer } from "../../src/model/tokenizers/hf.js";
import type { Weight } from "../../src/core/weight.js";
import { byteLevelAlphabet } from "./byte-level.js";
import * as ort from "onnxruntime-node";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import type { Backend } from "../../src/kernels/types.js";

export const TINY_VOCAB = 512;
const VOCAB = TINY_VOCAB;

export function tinyTokenizer(): HfTokenizer {
  const pieces = byteLevelAlphabet();
  const merges: string[] = [];
  for (const [a, b] of [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["Ġ", "a"], ["o", "n"], ["e", "r"], ["Ġ", "w"], ["a", "s"], ["Ġw", "as"]] as const) { merges.push(`${a} ${b}`); pieces.push(a + b); }
  while (pieces.length < VOCAB - 2) pieces.push(`<|extra_${pieces.length}|>`);
  pieces.push("<|endoftext|>", "<|im_end|>");
  const types = new Int32Array(VOCAB).fill(1);
  for (let i = 266; i < VOCAB; i++) types[i] = 3;
  return HfTokenizer.fromVocab({ model: "gpt2", pre: "qwen2", pieces, scores: new Float32Array(VOCAB), types, merges, bosId: -1, eosId: VOCAB - 2, addBos: false });
}

/** Random weights in canonical names; biases small, norms near 1, the (tied) embedding scaled for peaky outputs. */
export function randomWeights(cfg: ModelConfig, seed: number, embdStd: number): Map<string, Weight> {
  const rng = new Rng(seed);
  const weights = new Map<string, Weight>();
  for (const [n, shape] of expectedShapes(cfg)) {
    const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (n.endsWith(".bias")) rng.fillNormal(d, 0.5);
    else if (shape.length === 1) for (let i = 0; i < d.length; i++) d[i] = 1 + 0.2 * rng.normal();
    else rng.fillNormal(d, n.startsWith("token_embd") ? embdStd : 0.08);
    weights.set(n, { kind: "dense", tensor: new Tensor("f32", shape, d) });
  }
  return weights;
}


/** ONNX Runtime on an exported graph (prefill of the first half, then one position at a time) vs quantlab's ref forward. */
export async function ortVsQuantlab(m: Model, bytes: Uint8Array, ids: number[]): Promise<number> {
  const c = m.config;
  const s = await ort.InferenceSession.create(bytes, { extra: { session: { qdq_matmulnbits_accuracy_level: "0" } } });
  const want = logitsOf(m, ids);
  const i64 = (v: number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(v.map((x) => BigInt(x))), dims);
  let past: Record<string, ort.Tensor> = {};
  for (let l = 0; l < c.nLayers; l++) for (const kv of ["key", "value"]) past[`past_key_values.${l}.${kv}`] = new ort.Tensor("float32", new Float32Array(0), [1, c.nKvHeads, 0, c.headDim]);
  const h = Math.floor(ids.length / 2);
  const chunks = [ids.slice(0, h), ...ids.slice(h).map((x) => [x])];
  let pos = 0, worst = 0;
  for (const chunk of chunks) {
    const n = chunk.length;
    const r = await s.run({ input_ids: i64(chunk, [1, n]), attention_mask: i64(new Array(pos + n).fill(1), [1, pos + n]), position_ids: i64(chunk.map((_, i) => pos + i), [1, n]), ...past });
    const got = r.logits!.data as Float32Array;
    for (let i = 0; i < n; i++) for (let j = 0; j < c.vocabSize; j++) worst = Math.max(worst, Math.abs(got[i * c.vocabSize + j]! - want[pos + i]![j]!));
    past = {};
    for (let l = 0; l < c.nLayers; l++) for (const kv of ["key", "value"]) past[`past_key_values.${l}.${kv}`] = r[`present.${l}.${kv}`]!;
    pos += n;
  }
  await s.release();
  return worst;
}

export function logitsOf(m: Model, ids: number[], backend?: Backend): Float32Array[] {
  const llama = new Llama(m, backend ? { backend } : {});
  return ids.map((t, pos) => Float32Array.from(llama.forward(t, pos)));
}

