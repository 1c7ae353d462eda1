/**
 * Quantization-aware training of a whole Llama model (model/train.ts forward + backward).
 *
 * Latent float weights W are kept for every block linear; each step the forward pass uses
 * fq(W) = quantizeTensor(W, spec).dequantize(), i.e. the spec's own calibration re-fits the group
 * scales / zero points on the current latent weights every step (no learnable scales), and the
 * gradient w.r.t. fq(W) is applied to W unchanged (straight-through estimator: Bengio, Léonard &
 * Courville 2013; QAT as in Jacob et al. 2018). Norms and the embedding (not quantized) train as
 * plain floats unless `train: "linears"`. Adam (Kingma & Ba 2015) with a cosine learning-rate decay.
 *
 * Batches are seeded random windows of the token stream, fed as evaluation windows are
 * (eval/windows.ts): BOS at position 0, then the window's tokens; position i predicts token i.
 * Loss: next-token cross-entropy ("ce"), or distillation from the float model's own distribution
 * ("kd": mean KL(float ‖ quantized), which targets the KLD metric directly).
 *
 * The result is a model whose linears are QuantizedTensors of the final latent weights (exactly the
 * weights the last forward pass used), ready for the quantized-safetensors writer.
 */
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { Rng } from "../core/rng.js";
import { Tensor } from "../core/tensor.js";
import { TensorNames, expectedShapes } from "../model/config.js";
import { LlamaTrainer, crossEntropyGrad, distillGrad, modelRopeFreqs, paramsFromModel, zerosLike, type ParamMap } from "../model/train.js";
import type { Model } from "../model/weights.js";
import { printSpec, toSpec, type QuantSpec } from "../quant/spec.js";
import { quantizeTensor, type QTensor } from "../quant/tensor.js";
import type { Weight } from "../core/weight.js";

export interface QatLlamaOptions {
  /** spec of the fake-quantized linears; absent = plain float fine-tuning (the control run) */
  spec?: string | QuantSpec;
  /** tensors under fake quantization (default: every block linear, blk.*.attn_q/k/v/output, ffn_*) */
  names?: readonly string[];
  steps: number;
  /** Adam learning rate at step 0 (cosine decay to lrMin·lr) */
  lr: number;
  /** final learning rate as a fraction of lr (default 0.1) */
  lrMin?: number;
  /** sequences per step */
  batch: number;
  /** positions per sequence (BOS included) */
  seq: number;
  seed?: number;
  loss?: "ce" | "kd";
  /** which float tensors learn: everything (default) or only the quantized linears */
  train?: "all" | "linears";
  bosId: number;
  progress?: Progress;
  /** called after every step with the step's mean loss */
  onStep?: (step: number, loss: number) => void;
}

export interface QatLlamaResult {
  model: Model;
  /** mean loss per step (nats/token: cross-entropy, or KL for "kd") */
  losses: number[];
  spec?: string;
  names: string[];
  seconds: number;
}

/** Canonical names of the block linears of a model. */
export function blockLinearNames(model: Model): string[] {
  const out: string[] = [];
  for (let l = 0; l < model.config.nLayers; l++) {
    for (const f of [TensorNames.attnQ, TensorNames.attnK, TensorNames.attnV, TensorNames.attnOutput, TensorNames.ffnGate, TensorNames.ffnUp, TensorNames.ffnDown]) out.push(f(l));
  }
  return out;
}

/** Adam state for a set of parameters (β1 0.9, β2 0.999, ε 1e-8). */
export class Adam {
  private readonly m: ParamMap;
  private readonly v: ParamMap;
  private t = 0;
  constructor(params: ParamMap, readonly beta1 = 0.9, readonly beta2 = 0.999, readonly eps = 1e-8) {
    this.m = zerosLike(params);
    this.v = zerosLike(params);
  }

  /** One update of every parameter in `names` from its gradient. */
  step(params: ParamMap, grads: ParamMap, names: Iterable<string>, lr: number): void {
    this.t++;
    const { beta1: b1, beta2: b2, eps } = this;
    const c1 = 1 / (1 - Math.pow(b1, this.t));
    const c2 = 1 / (1 - Math.pow(b2, this.t));
    for (const name of names) {
      const p = params.get(name)!, g = grads.get(name)!, m = this.m.get(name)!, v = this.v.get(name)!;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        const mi = (m[i] = b1 * m[i]! + (1 - b1) * gi);
        const vi = (v[i] = b2 * v[i]! + (1 - b2) * gi * gi);
        p[i] -= (lr * mi * c1) / (Math.sqrt(vi * c2) + eps);
      }
    }
  }
}

/** Shape (rows, cols) of a 2-D parameter of the model's config. */
function shapeOf(model: Model, name: string): [number, number] {
  const s = expectedShapes(model.config).get(name);
  if (!s || s.length !== 2) throw new QuantlabError("E_ARG", `qat: ${name} is not a linear weight of this model`);
  return [s[0]!, s[1]!];
}

/** Fake-quantizes latent → effective (float64) through the spec; returns the QTensor used. */
function fakeQuantInto(latent: Float64Array, shape: [number, number], spec: QuantSpec, name: string, eff: Float64Array): QTensor {
  const q = quantizeTensor(Float32Array.from(latent), shape, spec, { name });
  const d = q.dequantize();
  for (let i = 0; i < d.length; i++) eff[i] = d[i]!;
  return q;
}

/** QAT (or, without a spec, float fine-tuning) of a Llama model on a token stream. */
export function qatLlama(model: Model, tokens: ArrayLike<number>, opts: QatLlamaOptions): QatLlamaResult {
  const { steps, lr, batch, seq } = opts;
  if (!Number.isInteger(steps) || steps < 0) throw new QuantlabError("E_ARG", `qat: steps ${steps}: expected a non-negative integer`);
  if (!(lr > 0)) throw new QuantlabError("E_ARG", `qat: learning rate ${lr}: expected a positive number`);
  if (!Number.isInteger(seq) || seq < 2) throw new QuantlabError("E_ARG", `qat: seq ${seq}: expected an integer ≥ 2 (BOS + a token)`);
  if (seq > model.config.seqLen) throw new QuantlabError("E_ARG", `qat: seq ${seq} is longer than the model's context length ${model.config.seqLen}`);
  if (tokens.length < seq) throw new QuantlabError("E_ARG", `qat: the training text has ${tokens.length} tokens, fewer than one window of ${seq}`);
  const spec = opts.spec === undefined ? undefined : toSpec(opts.spec);
  const names = [...(opts.names ?? blockLinearNames(model))];
  const shapes = new Map(names.map((n) => [n, shapeOf(model, n)] as const));
  const lossKind = opts.loss ?? "ce";
  const t0 = Date.now();

  const latent = paramsFromModel(model); // float64 copies: the latent weights
  const teacherW = lossKind === "kd" ? paramsFromModel(model) : undefined;
  // effective weights: latent for float tensors, fq(latent) for the quantized ones
  const eff: ParamMap = new Map(latent);
  if (spec) for (const n of names) eff.set(n, new Float64Array(latent.get(n)!.length));
  const trainNames = opts.train === "linears" ? names : [...latent.keys()];
  const grads = zerosLike(latent);
  const adam = new Adam(latent);
  const trainer = new LlamaTrainer(model.config, batch, seq, modelRopeFreqs(model));
  const V = model.config.vocabSize;
  const N = batch * seq;
  const inputs = new Int32Array(N);
  const targets = new Int32Array(N);
  const dLogits = new Float64Array(N * V);
  const teacherLogits = teacherW ? new Float64Array(N * V) : undefined;
  const rng = new Rng(opts.seed ?? 0);
  const lrMin = opts.lrMin ?? 0.1;
  const losses: number[] = [];
  const progress = opts.progress ?? noProgress;
  progress.start(steps, spec ? `qat ${printSpec(spec)}` : "fine-tune (float)");

  const refreshEffective = (): Map<string, QTensor> => {
    const qs = new Map<string, QTensor>();
    if (spec) for (const n of names) qs.set(n, fakeQuantInto(latent.get(n)!, shapes.get(n)!, spec, n, eff.get(n)!));
    return qs;
  };

  for (let step = 0; step < steps; step++) {
    // a batch of windows: BOS, then tokens[s .. s+seq−2]; targets tokens[s .. s+seq−1]
    for (let b = 0; b < batch; b++) {
      const s = rng.int(tokens.length - seq + 1);
      inputs[b * seq] = opts.bosId;
      for (let i = 0; i < seq; i++) {
        if (i > 0) inputs[b * seq + i] = tokens[s + i - 1]!;
        targets[b * seq + i] = tokens[s + i]!;
      }
    }
    refreshEffective();
    if (teacherW && teacherLogits) teacherLogits.set(trainer.forward(teacherW, inputs));
    const logits = trainer.forward(eff, inputs);
    const loss = teacherLogits ? distillGrad(logits, teacherLogits, N, V, dLogits) : crossEntropyGrad(logits, targets, V, dLogits);
    for (const g of grads.values()) g.fill(0);
    trainer.backward(eff, dLogits, grads); // straight-through: dL/dfq(W) is used as dL/dW
    const frac = steps > 1 ? step / (steps - 1) : 0;
    const lrNow = lr * (lrMin + (1 - lrMin) * 0.5 * (1 + Math.cos(Math.PI * frac)));
    adam.step(latent, grads, trainNames, lrNow);
    losses.push(loss);
    opts.onStep?.(step, loss);
    progress.tick();
  }
  progress.done();

  // the trained model: quantized linears from the final latent weights, other tensors as trained f32
  const qs = refreshEffective();
  const weights = new Map<string, Weight>(model.weights);
  for (const [name, data] of latent) {
    if (!trainNames.includes(name) && !qs.has(name)) continue; // untouched: share the original
    const q = qs.get(name);
    if (q) weights.set(name, { kind: "quant", q });
    else {
      const shape = expectedShapes(model.config).get(name)!;
      weights.set(name, { kind: "dense", tensor: new Tensor("f32", shape, Float32Array.from(data)) });
    }
  }
  return {
    model: { ...model, weights, config: { ...model.config } },
    losses,
    spec: spec ? printSpec(spec) : undefined,
    names,
    seconds: (Date.now() - t0) / 1000,
  };
}
