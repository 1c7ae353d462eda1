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
import { join } from "node:path";
import { loadModel } from "../../src/io/node/load.js";
import { saveGgufFile } from "../../src/io/node/gguf-file.js";
import { quantize } from "../../src/algos/quantize.js";
import { sha256Hex } from "../../src/algos/recipe.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { GgmlForward } from "../../src/model/ggml-forward.js";
import { LlamaCppModel, ggmlSimdOfThisMachine, maxAbsProbDiff, softmax } from "./llamacpp.js";

export const TINY_VOCAB = 512;
const VOCAB = TINY_VOCAB;

/** The tiny byte-level vocabulary; `lastPiece` names its last token (Phi-3's "<|end|>"), `bos` its BOS id (none: −1). */
export function tinyTokenizer(opts: { lastPiece?: string; bosId?: number } = {}): HfTokenizer {
  const pieces = byteLevelAlphabet();
  const merges: string[] = [];
  for (const [a, b] of [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["Ġ", "a"], ["o", "n"], ["e", "r"], ["Ġ", "w"], ["a", "s"], ["Ġw", "as"]] as const) { merges.push(`${a} ${b}`); pieces.push(a + b); }
  while (pieces.length < VOCAB - 2) pieces.push(`<|extra_${pieces.length}|>`);
  pieces.push("<|endoftext|>", opts.lastPiece ?? "<|im_end|>");
  const types = new Int32Array(VOCAB).fill(1);
  for (let i = 266; i < VOCAB; i++) types[i] = 3;
  return HfTokenizer.fromVocab({ model: "gpt2", pre: "qwen2", pieces, scores: new Float32Array(VOCAB), types, merges, bosId: opts.bosId ?? -1, eosId: VOCAB - 2, addBos: false });
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


export function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i]!.length; j++) m = Math.max(m, Math.abs(a[i]![j]! - b[i]![j]!));
  return m;
}

/** The GGUF methods an architecture test runs, by label (the label also names the file). */
export type GgufCase = "Q8_0" | "Q4_0" | "Q4_K_M" | "awq Q4_0" | "smoothquant Q4_0" | "rotate+gptq Q4_K_M";

export interface GgufCaseResult {
  /** max |Δp| of llama.cpp (f32 KV cache, no flash attention) against GgmlForward on the same file */
  llamaCpp: number;
  /** mean KLD of quantlab's forward pass on the file against the float model */
  kld: number;
  /** the tensors whose input scales were not folded (AWQ / SmoothQuant), with why */
  notFolded: { name: string; reason: string }[];
}

/**
 * Each case quantized from `back` (a model loaded from its float GGUF), written as GGUF, run in llama.cpp and in
 * GgmlForward (llama.cpp's CPU arithmetic: activations to Q8_0 / Q8_K per the weight type, its rope, norm, GELU
 * table and softmax roundings) on `ids`; KLD vs the float model over `evalIds`. Calibration: chunks of 64 tokens
 * of `calibText`, the importance matrix for GPTQ from the same text.
 */
export async function ggufCasesVsLlamaCpp(back: Model, ids: number[], evalIds: number[], calibText: string, dir: string, cases: readonly GgufCase[], bosId = TINY_VOCAB - 2): Promise<Map<GgufCase, GgufCaseResult>> {
  const c = back.config;
  const source = { text: { name: "calib.txt", sha256: await sha256Hex(new TextEncoder().encode(calibText)) } };
  const chunks = { source, windows: { kind: "chunks" as const, ctx: 64, maxChunks: 8 } };
  const recipes: Record<GgufCase, Record<string, unknown>> = {
    "Q8_0": { target: { preset: "Q8_0" }, method: "rtn" },
    "Q4_0": { target: { preset: "Q4_0" }, method: "rtn" },
    "Q4_K_M": { target: { preset: "Q4_K_M" }, method: "rtn" },
    "awq Q4_0": { target: { preset: "Q4_0" }, method: "awq", calibration: chunks },
    "smoothquant Q4_0": { target: { preset: "Q4_0" }, method: "smoothquant", calibration: chunks },
    "rotate+gptq Q4_K_M": { target: { preset: "Q4_K_M" }, method: "gptq", rotate: { seed: 0, mode: "residual" }, calibration: chunks, imatrix: { source: "calibration" } },
  };
  const out = new Map<GgufCase, GgufCaseResult>();
  for (const label of cases) {
    const r = await quantize(back, recipes[label], { calibText });
    const f = join(dir, `${c.arch}-${label.replace(/\W+/g, "-")}.gguf`);
    await saveGgufFile(r.model, f);
    const qm = await loadModel(f);
    const gf = new GgmlForward(qm, { simd: ggmlSimdOfThisMachine(), kvType: "f32", contextLength: 128 });
    const qp = ids.map((tk, p) => softmax(gf.forward(tk, p)));
    const lc = await LlamaCppModel.load(f, { contextSize: 128, kvCacheType: "F32", flashAttention: false });
    let d;
    try {
      d = maxAbsProbDiff(qp, await lc.nextTokenProbs(ids, c.vocabSize));
    } finally {
      await lc.dispose();
    }
    const k = await kld(new ModelLogits(new Llama(back, { contextLength: 128 })), new ModelLogits(new Llama(qm, { contextLength: 128 })), evalIds, { ctx: 64, bosId });
    out.set(label, { llamaCpp: d.max, kld: k.meanKld, notFolded: (r.ggml?.tensors ?? []).filter((x) => x.noScaleFold).map((x) => ({ name: x.name, reason: x.noScaleFold! })) });
  }
  return out;
}
