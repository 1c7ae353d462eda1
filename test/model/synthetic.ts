/** Test helpers: random Llama models in memory and their llama2.c serialization. */
import { Rng } from "../../src/core/rng.js";
import { Tensor } from "../../src/core/tensor.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../../src/model/config.js";
import type { Model } from "../../src/model/weights.js";
import type { Weight } from "../../src/core/weight.js";

export function config(over: Partial<ModelConfig> = {}): ModelConfig {
  const c: ModelConfig = {
    arch: "llama", dim: 32, hiddenDim: 48, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 8,
    vocabSize: 40, seqLen: 24, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, ...over,
  };
  if (over.headDim === undefined) c.headDim = c.dim / c.nHeads;
  return c;
}

/** Random weights: linear layers N(0, 1/√nIn), norms around 1, embeddings N(0, 1). */
export function randomModel(c: ModelConfig, seed = 1): Model {
  const rng = new Rng(seed);
  const weights = new Map<string, Weight>();
  for (const [name, shape] of expectedShapes(c)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (shape.length === 1) rng.fillUniform(data, 0.5, 1.5);
    else if (name === TensorNames.tokenEmbd) rng.fillNormal(data, 1);
    else rng.fillNormal(data, 1 / Math.sqrt(shape[1]!));
    weights.set(name, { kind: "dense", tensor: new Tensor("f32", shape, data) });
  }
  return { config: c, weights, source: { path: "synthetic", format: "memory" } };
}

export function f32(m: Model, name: string): Float32Array {
  const w = m.weights.get(name)!;
  if (w.kind !== "dense") throw new Error("dense only");
  return w.tensor.data as Float32Array;
}

/** llama2.c legacy bytes of a model (negative vocab_size when untied), with or without freq_cis. */
export function toLlama2c(m: Model, opts: { freqCis?: boolean } = {}): Uint8Array {
  const c = m.config;
  const parts: Float32Array[] = [];
  const L = [...Array(c.nLayers).keys()];
  parts.push(f32(m, TensorNames.tokenEmbd));
  for (const fn of [TensorNames.attnNorm, TensorNames.attnQ, TensorNames.attnK, TensorNames.attnV, TensorNames.attnOutput, TensorNames.ffnNorm, TensorNames.ffnGate, TensorNames.ffnDown, TensorNames.ffnUp]) {
    for (const l of L) parts.push(f32(m, fn(l)));
  }
  parts.push(f32(m, TensorNames.outputNorm));
  if (opts.freqCis) {
    const fc = new Float32Array(c.seqLen * c.headDim); // real + imag tables (values unused by readers)
    fc.fill(0.25);
    parts.push(fc);
  }
  if (!c.tiedEmbeddings) parts.push(f32(m, TensorNames.output));
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(28 + 4 * n);
  const dv = new DataView(out.buffer);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.tiedEmbeddings ? c.vocabSize : -c.vocabSize, c.seqLen].forEach((v, i) => dv.setInt32(4 * i, v, true));
  let o = 28;
  for (const p of parts) for (const x of p) { dv.setFloat32(o, x, true); o += 4; }
  return out;
}

/** llama2.c tok.bin bytes for the given pieces (scores: -id). */
export function tokBin(pieces: string[], maxLen = 16): Uint8Array {
  const enc = pieces.map((p) => new TextEncoder().encode(p));
  const out = new Uint8Array(4 + enc.reduce((a, e) => a + 8 + e.length, 0));
  const dv = new DataView(out.buffer);
  dv.setInt32(0, maxLen, true);
  let o = 4;
  enc.forEach((e, i) => {
    dv.setFloat32(o, -i, true);
    dv.setInt32(o + 4, e.length, true);
    out.set(e, o + 8);
    o += 8 + e.length;
  });
  return out;
}
