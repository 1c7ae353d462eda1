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

