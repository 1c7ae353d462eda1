/**
 * One small model per architecture quantlab runs (model/config.ts ARCH_TRAITS), for tests that sweep every
 * architecture through a command or a page: Llama with a sliding window (Mistral), Qwen2, Qwen3, Granite, Phi-3
 * (partial rotary, LongRoPE), Gemma 2, Gemma 3 and OLMo 2. Heads are untied but Gemma's (llama.cpp's gemma2
 * requires a tied one): a tied random table makes greedy decoding repeat the last token. The llama.cpp oracle
 * tests (test/io/architectures-*.test.ts) hold the larger, transformers-field-exact versions.
 */
import type { ModelConfig } from "../../src/model/config.js";
import type { Model } from "../../src/model/weights.js";
import { TINY_VOCAB, randomWeights, tinyTokenizer } from "./tiny-arch.js";

const base = { dim: 64, hiddenDim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: TINY_VOCAB, seqLen: 128, ropeTheta: 10000, normEps: 1e-6, tiedEmbeddings: false } as const;

export const TINY_ARCH_CASES: ModelConfig[] = [
  { ...base, arch: "llama", slidingWindow: 8, name: "tiny-swa" },
  { ...base, arch: "qwen2", name: "tiny-qwen2" },
  { ...base, arch: "qwen3", headDim: 32, name: "tiny-qwen3" },
  { ...base, arch: "granite", nKvHeads: 1, multipliers: { embedding: 12, residual: 0.22, attention: 0.0625, logits: 5 }, name: "tiny-granite" },
  { ...base, arch: "phi3", rotaryDim: 12, longRope: { shortFactor: [1, 1.2, 1.5, 2, 3, 4], longFactor: [1, 1.5, 2, 3, 5, 8], originalMaxPositionEmbeddings: 32, attentionFactor: 1.2 }, name: "tiny-phi" },
  { ...base, arch: "gemma2", headDim: 24, slidingWindow: 8, slidingLayers: [true, false], attnSoftcap: 20, finalSoftcap: 30, tiedEmbeddings: true, name: "tiny-gemma2" },
  { ...base, arch: "gemma3", nKvHeads: 1, slidingWindow: 8, slidingLayers: [true, false], ropeThetaLocal: 10000, ropeTheta: 1000000, tiedEmbeddings: true, name: "tiny-gemma3" },
  { ...base, arch: "olmo2", name: "tiny-olmo2" },
];

/** Case i as an in-memory model with the byte-level test tokenizer (seeded; Gemma's √dim-scaled table kept small). */
export function tinyArchModel(cfg: ModelConfig, i: number): Model {
  return { config: cfg, weights: randomWeights(cfg, 11 + i, cfg.arch.startsWith("gemma") ? 0.03 : 0.3), tokenizer: tinyTokenizer(), source: { path: "memory", format: "memory" } };
}
