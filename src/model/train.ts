/**
 * Training forward + backward pass of the Llama architecture exactly as `llama.ts` runs it (llama2.c
 * run.c semantics): embedding → per layer [RMSNorm(normEps) → Q,K,V → RoPE on interleaved pairs
 * (ropeTheta, the same f32 angle tables as inference) → causal grouped-query attention (scores /
 * fround(√headDim)) → output projection → residual; RMSNorm → SwiGLU → residual] → RMSNorm →
 * classifier (the token embedding when tied).
 *
 * The architecture traits (config.ts ARCH_TRAITS) the block has a backward for: q/k/v biases (Qwen2), q/k
 * RMSNorm before RoPE per head (Qwen3, Gemma 3) or over the whole projection (OLMo 2), NeoX RoPE pairs, partial
 * rotary and LongRoPE (Phi-3: fixed per-pair factors, the attention factor on cos and sin), Granite's four
 * multipliers, sliding windows (Mistral; per layer with a local RoPE base and linear scaling elsewhere: Gemma 3),
 * sandwich and post-branch norms (Gemma, OLMo 2; (1 + w) weights are held as 1 + w, so the gradient is the
 * stored weight's), GeGLU with tanh GELU, embeddings × √dim, the query scale, attention and final-logit soft-caps.
 * Any other trait or config field is refused by name.
 *
 * Everything is float64 (parameters, activations, gradients), so finite differences check the
 * gradients to many digits, and the logits agree with the f32 inference pass to ~1e-5. A batch is
 * `nSeq` independent sequences of T tokens at positions 0..T−1 (attention never crosses sequences).
 *
 * Use: `forward(w, inputs, nSeq, T)` stores the activations and returns the logits (nSeq·T, vocab);
 * the caller turns them into dL/dlogits (`crossEntropyGrad`, `distillGrad`), then `backward(w, dLogits,
 * grads)` adds dL/dθ into `grads` (same names as `w`). Buffers are allocated once per (nSeq, T).
 */
import { QuantlabError } from "../core/errors.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { ARCH_TRAITS, TensorNames, expectedShapes, isArchitecture, layerWindow, rotaryDimOf, type ArchTraits, type ModelConfig } from "./config.js";
import { ropeFactorSet, ropeInvFreq, ropeSetsOf, ROPE_FREQS, type RopeFactorSet } from "./llama.js";
import type { Model } from "./weights.js";
import type { Weight } from "../core/weight.js";

/** Parameters (or gradients) by canonical tensor name, row-major float64. */
export type ParamMap = Map<string, Float64Array>;

/** Every tensor of the model's config as float64 (quantized/ggml weights are dequantized). */
export function paramsFromModel(model: Model): ParamMap {
  const out: ParamMap = new Map();
  for (const name of expectedShapes(model.config).keys()) {
    const w = model.weights.get(name);
    if (!w) throw new QuantlabError("E_FORMAT", `${model.source.path}: missing tensor ${name}`);
    out.set(name, Float64Array.from(dequantizeWeight(w, name).data));
  }
  return out;
}

/** Zeroed float64 arrays shaped like `p`. */
export function zerosLike(p: ParamMap): ParamMap {
  const out: ParamMap = new Map();
  for (const [k, v] of p) out.set(k, new Float64Array(v.length));
  return out;
}

interface LayerActs {
  xIn: Float64Array; // (N, dim) residual entering the block
  rA: Float64Array; // (N) 1/rms of xIn
  xnA: Float64Array; // (N, dim) attention-norm output (a copy of xIn when the block has no pre-branch norm)
  q: Float64Array; // (N, qDim) after RoPE
  k: Float64Array; // (N, kvDim) after RoPE
  qPre?: Float64Array; // (N, qDim) projection (+ bias) before the q norm (qkNorm)
  kPre?: Float64Array; // (N, kvDim)
  rQ?: Float64Array; // (N·nHeads) 1/rms of each q head (N rows only for a whole-projection norm)
  rK?: Float64Array; // (N·nKvHeads)
  v: Float64Array; // (N, kvDim)
  p: Float64Array; // (nSeq, nHeads, T, T) attention probabilities (row i: keys 0..i)
  ao: Float64Array; // (N, qDim) attention output (input of wo)
  oA?: Float64Array; // (N, dim) wo·ao before the post-attention norm (norms "sandwich" / "post")
  rPA?: Float64Array; // (N) 1/rms of oA
  xMid: Float64Array; // (N, dim) residual after attention
  rF: Float64Array; // (N) 1/rms of xMid
  xnF: Float64Array; // (N, dim) ffn-norm output
  g: Float64Array; // (N, hidden) gate pre-activation (w1·x)
  u: Float64Array; // (N, hidden) up projection (w3·x)
  h: Float64Array; // (N, hidden) act(g) ⊙ u (input of w2)
  oF?: Float64Array; // (N, dim) w2·h before the post-FFN norm
  rPF?: Float64Array; // (N) 1/rms of oF
}

/** one RoPE frequency set's tables over the training positions (Gemma 3: a local and a global set) */
interface RopeTables {
  cos: Float64Array; // (T, rotaryDim/2)
  sin: Float64Array; // (T, rotaryDim/2)
}

/**
 * Traits the trainer runs forward and backward; the others must equal Llama's. normOffset: the (1 + w) weight is
 * held as 1 + w (config.ts), a plain RMSNorm weight here; fusedProjections and phi3Rope only say how files lay
 * out the tensors and RoPE parameters (the Model holds the canonical ones).
 */
const TRAINED_TRAITS: ReadonlySet<string> = new Set(["qkvBias", "qkNorm", "rope", "multipliers", "norms", "normOffset", "activation", "embedScaleSqrtDim", "fusedProjections", "phi3Rope"]);
/** ModelConfig fields the trainer honours. */
const TRAINED_CONFIG: ReadonlySet<string> = new Set([
  "arch", "dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "headDim", "vocabSize", "seqLen", "ropeTheta", "normEps", "tiedEmbeddings", "ropeScaling", "multipliers",
  "slidingWindow", "slidingLayers", "ropeThetaLocal", "ropeLinearFactor", "attnScale", "attnSoftcap", "finalSoftcap", "rotaryDim", "longRope", "name",
]);

/** LlamaTrainer options */
export interface TrainerOptions {
  /** LongRoPE models: the factor set to rotate with (default: that of a context of config.seqLen, as Llama's default) */
  ropeFactors?: RopeFactorSet;
}

/**
 * Refuses, by name, a trait of `traits` that differs from Llama's and has no backward here (a trait added to
 * ARCH_TRAITS later is refused until the training pass learns it).
 */
export function checkTrainedTraits(arch: string, traits: ArchTraits): void {
  const base = ARCH_TRAITS.llama as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(traits)) {
    if (!TRAINED_TRAITS.has(k) && JSON.stringify(v) !== JSON.stringify(base[k])) throw new QuantlabError("E_UNSUPPORTED", `QAT: architecture "${arch}": its ${k} (${JSON.stringify(v)}) has no backward in the training pass yet; quantize it with a post-training method`);
  }
}

export class LlamaTrainer {
  readonly config: ModelConfig;
  readonly traits: ArchTraits;
  readonly nSeq: number;
  readonly T: number;
  readonly N: number;
  private readonly qDim: number;
  private readonly kvDim: number;
  private readonly ropeSets: RopeTables[];
  private readonly ropeOfLayer: number[]; // (nLayers) index into ropeSets
  private readonly rotDim: number; // values of each head RoPE rotates
  private readonly scale: number;
  private readonly embScale: number; // token embeddings × this (Granite's multiplier, Gemma's √dim)
  private capT?: Float64Array; // (N, vocab) tanh(raw logit / cap) of the final soft-cap
  private readonly acts: LayerActs[];
  private readonly inputs: Int32Array; // (N)
  private readonly xFinal: Float64Array; // (N, dim)
  private readonly rOut: Float64Array; // (N)
  private readonly xnOut: Float64Array; // (N, dim)
  readonly logits: Float64Array; // (N, vocab)
  // backward scratch
  private readonly dx: Float64Array; // (N, dim) gradient of the residual stream
  private readonly dxn: Float64Array; // (N, dim)
  private readonly dao: Float64Array; // (N, qDim)
  private readonly dq: Float64Array; // (N, qDim)
  private readonly dk: Float64Array; // (N, kvDim)
  private readonly dv: Float64Array; // (N, kvDim)
  private readonly dh: Float64Array; // (N, hidden)
  private readonly dg: Float64Array; // (N, hidden)
  private readonly du: Float64Array; // (N, hidden)
  private readonly dp: Float64Array; // (T)
  private readonly sc = new MatScratch();
  private dLogitsScaled?: Float64Array;
  private dBranch?: Float64Array;
  private dqPre?: Float64Array;
  private dkPre?: Float64Array;
  private dPost?: Float64Array; // (N, dim) gradient of a branch output before its post norm

  /**
   * `ropeFreqs`: llama.cpp's per-pair RoPE divisors when the model carries them (rope_freqs.weight,
   * `modelRopeFreqs`); pass the model's so the angles match `Llama`'s.
   */
  constructor(config: ModelConfig, nSeq: number, T: number, ropeFreqs?: Weight, opts: TrainerOptions = {}) {
    // what the block does beyond Llama's must have a backward here: anything else is refused by name, never
    // trained as a different model
    if (!isArchitecture(config.arch)) throw new QuantlabError("E_UNSUPPORTED", `QAT: unknown architecture "${String(config.arch)}"`);
    const traits = ARCH_TRAITS[config.arch];
    checkTrainedTraits(config.arch, traits);
    for (const [k, v] of Object.entries(config)) {
      if (v !== undefined && !TRAINED_CONFIG.has(k)) throw new QuantlabError("E_UNSUPPORTED", `QAT: the model's config field ${k} is not in the training pass yet; quantize it with a post-training method`);
    }
    this.traits = traits;
    const c = config;
    if (!Number.isInteger(nSeq) || nSeq < 1 || !Number.isInteger(T) || T < 1) throw new QuantlabError("E_ARG", `trainer: batch ${nSeq} × seq ${T}: expected positive integers`);
    if (c.nHeads % c.nKvHeads !== 0) throw new QuantlabError("E_FORMAT", `trainer: n_heads ${c.nHeads} is not a multiple of n_kv_heads ${c.nKvHeads}`);
    if (c.headDim % 2 !== 0) throw new QuantlabError("E_FORMAT", `trainer: head dim ${c.headDim} is odd, RoPE needs pairs`);
    this.config = c;
    this.nSeq = nSeq;
    this.T = T;
    const N = (this.N = nSeq * T);
    this.qDim = c.nHeads * c.headDim;
    this.kvDim = c.nKvHeads * c.headDim;
    this.rotDim = rotaryDimOf(c);
    const half = this.rotDim / 2;
    // LongRoPE's attention factor scales cos and sin (as Llama.ropeTables): the rotation's transpose is still the
    // rotation by −angle at the same scale, which is what the backward applies
    const ropeScale = c.longRope?.attentionFactor ?? 1;
    const factorSet = opts.ropeFactors ?? ropeFactorSet(c, c.seqLen);
    const sets = ropeSetsOf(c);
    this.ropeOfLayer = sets.ofLayer;
    this.ropeSets = sets.params.map((r) => {
      const inv = ropeInvFreq(c, ropeFreqs, factorSet, r.theta, r.linear);
      const t: RopeTables = { cos: new Float64Array(T * half), sin: new Float64Array(T * half) };
      for (let pos = 0; pos < T; pos++) {
        for (let j = 0; j < half; j++) {
          // as Llama.ropeTables: f32 angle, cos/sin (× the attention factor) stored in f32 tables
          const val = Math.fround(pos * inv[j]!);
          t.cos[pos * half + j] = Math.fround(Math.cos(val) * ropeScale);
          t.sin[pos * half + j] = Math.fround(Math.sin(val) * ropeScale);
        }
      }
      return t;
    });
    this.scale = Math.fround(Math.sqrt(c.headDim)); // run.c: score /= sqrtf(head_size)
    this.embScale = (c.multipliers ? c.multipliers.embedding : 1) * (traits.embedScaleSqrtDim ? Math.fround(Math.sqrt(c.dim)) : 1);
    const { dim, hiddenDim: H, nHeads } = c;
    const f = (n: number) => new Float64Array(n);
    this.acts = [];
    for (let l = 0; l < c.nLayers; l++) {
      this.acts.push({
        xIn: f(N * dim), rA: f(N), xnA: f(N * dim), q: f(N * this.qDim), k: f(N * this.kvDim), v: f(N * this.kvDim),
        p: f(nSeq * nHeads * T * T), ao: f(N * this.qDim), xMid: f(N * dim), rF: f(N), xnF: f(N * dim),
        g: f(N * H), u: f(N * H), h: f(N * H),
        ...(traits.qkNorm ? { qPre: f(N * this.qDim), kPre: f(N * this.kvDim), rQ: f(N * nHeads), rK: f(N * c.nKvHeads) } : {}),
        ...(traits.norms !== "pre" ? { oA: f(N * dim), rPA: f(N), oF: f(N * dim), rPF: f(N) } : {}),
      });
    }
    this.inputs = new Int32Array(N);
    this.xFinal = f(N * dim);
    this.rOut = f(N);
    this.xnOut = f(N * dim);
    this.logits = f(N * c.vocabSize);
    this.dx = f(N * dim);
    this.dxn = f(N * dim);
    this.dao = f(N * this.qDim);
    this.dq = f(N * this.qDim);
    this.dk = f(N * this.kvDim);
    this.dv = f(N * this.kvDim);
    this.dh = f(N * H);
    this.dg = f(N * H);
    this.du = f(N * H);
    this.dp = f(T);
  }

  /** Logits (N, vocab) of `inputs` (nSeq × T token ids, row-major); activations kept for backward. A view. */
  forward(w: ParamMap, inputs: ArrayLike<number>): Float64Array {
    const c = this.config;
    const { N, T, nSeq, qDim, kvDim, rotDim } = this;
    const { dim, hiddenDim: H, nHeads, headDim: hd, vocabSize: V } = c;
    if (inputs.length !== N) throw new QuantlabError("E_ARG", `trainer: ${inputs.length} input ids, expected ${nSeq} × ${T}`);
    const emb = get(w, TensorNames.tokenEmbd);
    let x = this.acts.length > 0 ? this.acts[0]!.xIn : this.xFinal;
    const mul = c.multipliers;
    for (let n = 0; n < N; n++) {
      const t = inputs[n]!;
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new QuantlabError("E_ARG", `trainer: token id ${t} is outside the vocabulary (0..${V - 1})`);
      this.inputs[n] = t;
      x.set(emb.subarray(t * dim, (t + 1) * dim), n * dim);
    }
    if (this.embScale !== 1) for (let j = 0; j < N * dim; j++) x[j] *= this.embScale;
    const kvMul = nHeads / c.nKvHeads;
    const tr = this.traits;
    const rope = tr.rope === "neox" ? ropeNeoxDir : ropeDir;
    const resid = mul ? mul.residual : 1;
    const sS = this.scoreScale();
    const cap = c.attnSoftcap;
    const eps = c.normEps;
    for (let l = 0; l < c.nLayers; l++) {
      const A = this.acts[l]!;
      if (tr.norms !== "post") rmsnormF(A.xnA, A.rA, A.xIn, get(w, TensorNames.attnNorm(l)), N, dim, eps);
      else A.xnA.set(A.xIn);
      linF(A.q, A.xnA, get(w, TensorNames.attnQ(l)), N, dim, qDim);
      linF(A.k, A.xnA, get(w, TensorNames.attnK(l)), N, dim, kvDim);
      linF(A.v, A.xnA, get(w, TensorNames.attnV(l)), N, dim, kvDim);
      if (tr.qkvBias) {
        addBias(A.q, get(w, TensorNames.attnQBias(l)), N, qDim);
        addBias(A.k, get(w, TensorNames.attnKBias(l)), N, kvDim);
        addBias(A.v, get(w, TensorNames.attnVBias(l)), N, kvDim);
      }
      if (tr.qkNorm) {
        // RMSNorm of the projections before RoPE, over rows as wide as the norm weight: one head (Qwen3, Gemma 3)
        // or the whole projection (OLMo 2), as llama.ts qkvTraits
        A.qPre!.set(A.q);
        A.kPre!.set(A.k);
        const wq = get(w, TensorNames.attnQNorm(l)), wk = get(w, TensorNames.attnKNorm(l));
        rmsnormF(A.q, A.rQ!, A.qPre!, wq, (N * qDim) / wq.length, wq.length, eps);
        rmsnormF(A.k, A.rK!, A.kPre!, wk, (N * kvDim) / wk.length, wk.length, eps);
      }
      const rt = this.ropeSets[this.ropeOfLayer[l]!]!;
      for (let n = 0; n < N; n++) {
        const pos = n % T;
        rope(A.q, n * qDim, qDim, hd, rotDim, rt.cos, rt.sin, pos, 1);
        rope(A.k, n * kvDim, kvDim, hd, rotDim, rt.cos, rt.sin, pos, 1);
      }
      // causal attention, sequence by sequence
      const { q, k, v, p, ao } = A;
      const W = layerWindow(c, l);
      for (let s = 0; s < nSeq; s++) {
        for (let h = 0; h < nHeads; h++) {
          const kh = Math.floor(h / kvMul) * hd;
          for (let i = 0; i < T; i++) {
            const qo = (s * T + i) * qDim + h * hd;
            const po = ((s * nHeads + h) * T + i) * T;
            let max = -Infinity;
            // a sliding window W: position i sees i − W + 1 … i (the probabilities before stay 0)
            const j0 = W !== undefined ? Math.max(0, i - W + 1) : 0;
            for (let j = 0; j < j0; j++) p[po + j] = 0;
            for (let j = j0; j <= i; j++) {
              const ko = (s * T + j) * kvDim + kh;
              let d = 0;
              for (let e = 0; e < hd; e++) d += q[qo + e]! * k[ko + e]!;
              let z = sS === undefined ? d / this.scale : d * sS;
              if (cap !== undefined) z = cap * Math.tanh(z / cap); // Gemma 2's attention soft-cap
              p[po + j] = z;
              if (z > max) max = z;
            }
            let sum = 0;
            for (let j = j0; j <= i; j++) sum += (p[po + j] = Math.exp(p[po + j]! - max));
            const invSum = 1 / sum;
            for (let e = 0; e < hd; e++) ao[qo + e] = 0;
            for (let j = j0; j <= i; j++) {
              const pj = (p[po + j] = p[po + j]! * invSum);
              const vo = (s * T + j) * kvDim + kh;
              for (let e = 0; e < hd; e++) ao[qo + e] += pj * v[vo + e]!;
            }
          }
        }
      }
      if (A.oA) {
        // a post-attention norm on the branch before its residual add (sandwich / post)
        linF(A.oA, ao, get(w, TensorNames.attnOutput(l)), N, qDim, dim);
        rmsnormF(A.xMid, A.rPA!, A.oA, get(w, TensorNames.postAttnNorm(l)), N, dim, eps);
      } else linF(A.xMid, ao, get(w, TensorNames.attnOutput(l)), N, qDim, dim);
      for (let j = 0; j < N * dim; j++) A.xMid[j] = resid * A.xMid[j]! + A.xIn[j]!;
      if (tr.norms !== "post") rmsnormF(A.xnF, A.rF, A.xMid, get(w, TensorNames.ffnNorm(l)), N, dim, eps);
      else A.xnF.set(A.xMid);
      linF(A.g, A.xnF, get(w, TensorNames.ffnGate(l)), N, dim, H);
      linF(A.u, A.xnF, get(w, TensorNames.ffnUp(l)), N, dim, H);
      if (tr.activation === "gelu_tanh") {
        for (let j = 0; j < N * H; j++) A.h[j] = geluTanh(A.g[j]!) * A.u[j]!; // GeGLU: gelu_tanh(w1·x) ⊙ (w3·x)
      } else {
        for (let j = 0; j < N * H; j++) {
          const a = A.g[j]!;
          A.h[j] = (a / (1 + Math.exp(-a))) * A.u[j]!; // SwiGLU: silu(w1·x) ⊙ (w3·x)
        }
      }
      x = l + 1 < c.nLayers ? this.acts[l + 1]!.xIn : this.xFinal;
      if (A.oF) {
        linF(A.oF, A.h, get(w, TensorNames.ffnDown(l)), N, H, dim);
        rmsnormF(x, A.rPF!, A.oF, get(w, TensorNames.postFfnNorm(l)), N, dim, eps);
      } else linF(x, A.h, get(w, TensorNames.ffnDown(l)), N, H, dim);
      for (let j = 0; j < N * dim; j++) x[j] = resid * x[j]! + A.xMid[j]!;
    }
    rmsnormF(this.xnOut, this.rOut, this.xFinal, get(w, TensorNames.outputNorm), N, dim, eps);
    linF(this.logits, this.xnOut, get(w, this.outputName(w)), N, dim, V);
    if (mul) for (let j = 0; j < N * V; j++) this.logits[j]! /= mul.logits;
    const fcap = c.finalSoftcap;
    if (fcap !== undefined) {
      // Gemma 2's final soft-cap; tanh kept for the backward (1 − tanh²)
      const t = (this.capT ??= new Float64Array(N * V));
      for (let j = 0; j < N * V; j++) this.logits[j] = fcap * (t[j] = Math.tanh(this.logits[j]! / fcap));
    }
    return this.logits;
  }

  /** Adds dL/dθ to `grads` given dL/dlogits (N, vocab) of the last `forward` with the same `w`. */
  backward(w: ParamMap, dLogits: Float64Array, grads: ParamMap): void {
    const c = this.config;
    const { N, T, nSeq, qDim, kvDim, rotDim, dx, dxn, dao, dq, dk, dv, dh, dg, du, dp } = this;
    const { dim, hiddenDim: H, nHeads, headDim: hd, vocabSize: V } = c;
    if (dLogits.length !== N * V) throw new QuantlabError("E_ARG", `trainer: dLogits has ${dLogits.length} values, expected ${N} × ${V}`);
    const outName = this.outputName(w);
    const mul = c.multipliers;
    const tr = this.traits;
    const rope = tr.rope === "neox" ? ropeNeoxDir : ropeDir;
    const resid = mul ? mul.residual : 1;
    const sS = this.scoreScale();
    const cap = c.attnSoftcap;
    let dL = dLogits;
    const fcap = c.finalSoftcap;
    if (mul || fcap !== undefined) {
      // logits = cap·tanh((raw ÷ m) / cap): dL/draw = dL · (1 − tanh²) ÷ m
      dL = (this.dLogitsScaled ??= new Float64Array(N * V));
      const t = this.capT;
      const m = mul ? mul.logits : 1;
      for (let j = 0; j < N * V; j++) dL[j] = (fcap !== undefined ? dLogits[j]! * (1 - t![j]! * t![j]!) : dLogits[j]!) / m;
    }
    linB(this.sc, dL, this.xnOut, get(w, outName), dxn, get(grads, outName), N, dim, V);
    dx.fill(0);
    rmsnormB(dx, get(grads, TensorNames.outputNorm), dxn, this.xFinal, this.rOut, get(w, TensorNames.outputNorm), N, dim);
    const kvMul = nHeads / c.nKvHeads;
    for (let l = c.nLayers - 1; l >= 0; l--) {
      const A = this.acts[l]!;
      // x_{l+1} = xMid + r·post(w2·h): dx flows to xMid unchanged, and through the post norm and w2 scaled by the
      // residual multiplier r
      let dBranch = mul ? scaled(this.dBranch ??= new Float64Array(N * dim), dx, resid) : dx;
      if (A.oF) {
        const dO = (this.dPost ??= new Float64Array(N * dim));
        dO.fill(0);
        rmsnormB(dO, get(grads, TensorNames.postFfnNorm(l)), dBranch, A.oF, A.rPF!, get(w, TensorNames.postFfnNorm(l)), N, dim);
        dBranch = dO;
      }
      linB(this.sc, dBranch, A.h, get(w, TensorNames.ffnDown(l)), dh, get(grads, TensorNames.ffnDown(l)), N, H, dim);
      if (tr.activation === "gelu_tanh") {
        for (let j = 0; j < N * H; j++) {
          const a = A.g[j]!;
          du[j] = dh[j]! * geluTanh(a);
          dg[j] = dh[j]! * A.u[j]! * geluTanhGrad(a);
        }
      } else {
        for (let j = 0; j < N * H; j++) {
          const a = A.g[j]!;
          const sg = 1 / (1 + Math.exp(-a));
          const silu = a * sg;
          du[j] = dh[j]! * silu;
          dg[j] = dh[j]! * A.u[j]! * sg * (1 + a * (1 - sg)); // d silu/da = σ(a)(1 + a(1 − σ(a)))
        }
      }
      linB(this.sc, dg, A.xnF, get(w, TensorNames.ffnGate(l)), dxn, get(grads, TensorNames.ffnGate(l)), N, dim, H);
      linBAcc(this.sc, du, A.xnF, get(w, TensorNames.ffnUp(l)), dxn, get(grads, TensorNames.ffnUp(l)), N, dim, H);
      if (tr.norms !== "post") rmsnormB(dx, get(grads, TensorNames.ffnNorm(l)), dxn, A.xMid, A.rF, get(w, TensorNames.ffnNorm(l)), N, dim);
      else for (let j = 0; j < N * dim; j++) dx[j] += dxn[j]!; // the FFN read the stream itself
      // xMid = xIn + r·post(wo·ao)
      let dBranchA = mul ? scaled(this.dBranch!, dx, resid) : dx;
      if (A.oA) {
        const dO = (this.dPost ??= new Float64Array(N * dim));
        dO.fill(0);
        rmsnormB(dO, get(grads, TensorNames.postAttnNorm(l)), dBranchA, A.oA, A.rPA!, get(w, TensorNames.postAttnNorm(l)), N, dim);
        dBranchA = dO;
      }
      linB(this.sc, dBranchA, A.ao, get(w, TensorNames.attnOutput(l)), dao, get(grads, TensorNames.attnOutput(l)), N, qDim, dim);
      dq.fill(0);
      dk.fill(0);
      dv.fill(0);
      const { q, k, v, p } = A;
      const W = layerWindow(c, l);
      for (let s = 0; s < nSeq; s++) {
        for (let h = 0; h < nHeads; h++) {
          const kh = Math.floor(h / kvMul) * hd;
          for (let i = 0; i < T; i++) {
            const qo = (s * T + i) * qDim + h * hd;
            const po = ((s * nHeads + h) * T + i) * T;
            // o_i = Σ_j p_ij v_j  →  dp_ij = do_i·v_j, dv_j += p_ij do_i
            let dot = 0;
            const j0 = W !== undefined ? Math.max(0, i - W + 1) : 0;
            for (let j = j0; j <= i; j++) {
              const vo = (s * T + j) * kvDim + kh;
              const pj = p[po + j]!;
              let d = 0;
              for (let e = 0; e < hd; e++) {
                const g = dao[qo + e]!;
                d += g * v[vo + e]!;
                dv[vo + e] += pj * g;
              }
              dp[j] = d;
              dot += pj * d;
            }
            // softmax: dz_ij = p_ij (dp_ij − Σ_k p_ik dp_ik); z = q·k · scale (or / √hd), soft-capped: × (1 − tanh²)
            for (let j = j0; j <= i; j++) {
              let dz = sS === undefined ? (p[po + j]! * (dp[j]! - dot)) / this.scale : p[po + j]! * (dp[j]! - dot) * sS;
              if (dz === 0) continue;
              const ko = (s * T + j) * kvDim + kh;
              if (cap !== undefined) {
                // the capped score's tanh, from q·k again (the activations keep only the probabilities)
                let d = 0;
                for (let e = 0; e < hd; e++) d += q[qo + e]! * k[ko + e]!;
                const th = Math.tanh((sS === undefined ? d / this.scale : d * sS) / cap);
                dz *= 1 - th * th;
              }
              for (let e = 0; e < hd; e++) {
                dq[qo + e] += dz * k[ko + e]!;
                dk[ko + e] += dz * q[qo + e]!;
              }
            }
          }
        }
      }
      const rt = this.ropeSets[this.ropeOfLayer[l]!]!;
      for (let n = 0; n < N; n++) {
        const pos = n % T;
        rope(dq, n * qDim, qDim, hd, rotDim, rt.cos, rt.sin, pos, -1);
        rope(dk, n * kvDim, kvDim, hd, rotDim, rt.cos, rt.sin, pos, -1);
      }
      if (tr.qkNorm) {
        // through the q/k norms: dq/dk now hold the gradients of the projections (+ bias)
        const dqPre = (this.dqPre ??= new Float64Array(N * qDim)), dkPre = (this.dkPre ??= new Float64Array(N * kvDim));
        dqPre.fill(0);
        dkPre.fill(0);
        const wq = get(w, TensorNames.attnQNorm(l)), wk = get(w, TensorNames.attnKNorm(l));
        rmsnormB(dqPre, get(grads, TensorNames.attnQNorm(l)), dq, A.qPre!, A.rQ!, wq, (N * qDim) / wq.length, wq.length);
        rmsnormB(dkPre, get(grads, TensorNames.attnKNorm(l)), dk, A.kPre!, A.rK!, wk, (N * kvDim) / wk.length, wk.length);
        dq.set(dqPre);
        dk.set(dkPre);
      }
      if (tr.qkvBias) {
        biasGrad(get(grads, TensorNames.attnQBias(l)), dq, N, qDim);
        biasGrad(get(grads, TensorNames.attnKBias(l)), dk, N, kvDim);
        biasGrad(get(grads, TensorNames.attnVBias(l)), dv, N, kvDim);
      }
      linB(this.sc, dq, A.xnA, get(w, TensorNames.attnQ(l)), dxn, get(grads, TensorNames.attnQ(l)), N, dim, qDim);
      linBAcc(this.sc, dk, A.xnA, get(w, TensorNames.attnK(l)), dxn, get(grads, TensorNames.attnK(l)), N, dim, kvDim);
      linBAcc(this.sc, dv, A.xnA, get(w, TensorNames.attnV(l)), dxn, get(grads, TensorNames.attnV(l)), N, dim, kvDim);
      if (tr.norms !== "post") rmsnormB(dx, get(grads, TensorNames.attnNorm(l)), dxn, A.xIn, A.rA, get(w, TensorNames.attnNorm(l)), N, dim);
      else for (let j = 0; j < N * dim; j++) dx[j] += dxn[j]!;
    }
    const gE = get(grads, TensorNames.tokenEmbd);
    const eScale = this.embScale;
    for (let n = 0; n < N; n++) {
      const t = this.inputs[n]!;
      for (let j = 0; j < dim; j++) gE[t * dim + j] += eScale * dx[n * dim + j]!;
    }
  }

  /** q·k × this (Granite's attention multiplier, Gemma's query scale); undefined: ÷ fround(√headDim), as run.c */
  private scoreScale(): number | undefined {
    return this.config.multipliers?.attention ?? this.config.attnScale;
  }

  private outputName(w: ParamMap): string {
    return w.has(TensorNames.output) ? TensorNames.output : TensorNames.tokenEmbd;
  }
}

function get(m: ParamMap, name: string): Float64Array {
  const a = m.get(name);
  if (!a) throw new QuantlabError("E_ARG", `trainer: no parameter ${name}`);
  return a;
}

/**
 * Mean cross-entropy of next-token targets (N) over rows of logits (N, V); writes dL/dlogits
 * (softmax − onehot) / N into dLogits and returns the mean loss (nats/token).
 */
export function crossEntropyGrad(logits: Float64Array, targets: ArrayLike<number>, V: number, dLogits: Float64Array): number {
  const N = targets.length;
  let loss = 0;
  for (let n = 0; n < N; n++) {
    const o = n * V;
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j]! > max) max = logits[o + j]!;
    let sum = 0;
    for (let j = 0; j < V; j++) sum += (dLogits[o + j] = Math.exp(logits[o + j]! - max));
    const t = targets[n]!;
    loss += max + Math.log(sum) - logits[o + t]!;
    for (let j = 0; j < V; j++) dLogits[o + j] = dLogits[o + j]! / sum / N;
    dLogits[o + t] -= 1 / N;
  }
  return loss / N;
}

/**
 * Mean KL(teacher ‖ student) per row (knowledge distillation on the full next-token distribution);
 * teacherLogits and logits are (N, V). dL/dlogits = (p_student − p_teacher) / N. Returns the mean KL.
 */
export function distillGrad(logits: Float64Array, teacherLogits: Float64Array, N: number, V: number, dLogits: Float64Array): number {
  let loss = 0;
  for (let n = 0; n < N; n++) {
    const o = n * V;
    let ms = -Infinity, mt = -Infinity;
    for (let j = 0; j < V; j++) {
      if (logits[o + j]! > ms) ms = logits[o + j]!;
      if (teacherLogits[o + j]! > mt) mt = teacherLogits[o + j]!;
    }
    let ss = 0, st = 0;
    for (let j = 0; j < V; j++) {
      ss += Math.exp(logits[o + j]! - ms);
      st += Math.exp(teacherLogits[o + j]! - mt);
    }
    const lzs = ms + Math.log(ss), lzt = mt + Math.log(st);
    for (let j = 0; j < V; j++) {
      const lt = teacherLogits[o + j]! - lzt;
      const ls = logits[o + j]! - lzs;
      const pt = Math.exp(lt);
      loss += pt * (lt - ls);
      dLogits[o + j] = (Math.exp(ls) - pt) / N;
    }
  }
  return loss / N;
}

/** y (N, O) = x (N, I) · W(O, I)ᵀ */
function linF(y: Float64Array, x: Float64Array, W: Float64Array, N: number, I: number, O: number): void {
  for (let n = 0; n < N; n++) {
    const xo = n * I;
    for (let o = 0; o < O; o++) {
      const wo = o * I;
      y[n * O + o] = dot(x, xo, W, wo, I);
    }
  }
}

/** dot of a[ao .. ao+n) and b[bo .. bo+n), four partial sums (register-resident accumulators) */
function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, n: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    s0 += a[ao + i]! * b[bo + i]!;
    s1 += a[ao + i + 1]! * b[bo + i + 1]!;
    s2 += a[ao + i + 2]! * b[bo + i + 2]!;
    s3 += a[ao + i + 3]! * b[bo + i + 3]!;
  }
  for (; i < n; i++) s0 += a[ao + i]! * b[bo + i]!;
  return s0 + s1 + (s2 + s3);
}

/** dst (C, R) = src (R, C)ᵀ */
function transpose(dst: Float64Array, src: Float64Array, R: number, C: number): void {
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) dst[c * R + r] = src[r * C + c]!;
}

/** Scratch of the backward matmuls, grown on demand (transposed operands make every product a contiguous dot). */
class MatScratch {
  w = new Float64Array(0);
  dy = new Float64Array(0);
  x = new Float64Array(0);
  fit(nw: number, ndy: number, nx: number): void {
    if (this.w.length < nw) this.w = new Float64Array(nw);
    if (this.dy.length < ndy) this.dy = new Float64Array(ndy);
    if (this.x.length < nx) this.x = new Float64Array(nx);
  }
}

/** dx (N, I) = dy · W (overwritten); dW (O, I) += dyᵀ · x */
function linB(sc: MatScratch, dy: Float64Array, x: Float64Array, W: Float64Array, dx: Float64Array, dW: Float64Array, N: number, I: number, O: number): void {
  linBody(sc, dy, x, W, dx, dW, N, I, O, false);
}

/** dx (N, I) += dy · W; dW (O, I) += dyᵀ · x */
function linBAcc(sc: MatScratch, dy: Float64Array, x: Float64Array, W: Float64Array, dx: Float64Array, dW: Float64Array, N: number, I: number, O: number): void {
  linBody(sc, dy, x, W, dx, dW, N, I, O, true);
}

function linBody(sc: MatScratch, dy: Float64Array, x: Float64Array, W: Float64Array, dx: Float64Array, dW: Float64Array, N: number, I: number, O: number, acc: boolean): void {
  sc.fit(I * O, O * N, I * N);
  const { w: tW, dy: tDy, x: tX } = sc;
  transpose(tW, W, O, I); // (I, O)
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < I; i++) {
      const d = dot(dy, n * O, tW, i * O, O);
      dx[n * I + i] = acc ? dx[n * I + i]! + d : d;
    }
  }
  transpose(tDy, dy, N, O); // (O, N)
  transpose(tX, x, N, I); // (I, N)
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) dW[o * I + i] += dot(tDy, o * N, tX, i * N, N);
  }
}

/** out = w ⊙ x · r per row, r = 1/√(mean(x²) + eps) (kept for backward) */
function rmsnormF(out: Float64Array, r: Float64Array, x: Float64Array, w: Float64Array, N: number, D: number, eps: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * D;
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[o + j]! * x[o + j]!;
    const inv = 1 / Math.sqrt(ss / D + eps);
    r[n] = inv;
    for (let j = 0; j < D; j++) out[o + j] = w[j]! * (inv * x[o + j]!);
  }
}

/**
 * Backward of rmsnormF: dx += r·(w ⊙ dy) − r³/D · x · Σ_k w_k dy_k x_k; dw += dy ⊙ x · r.
 */
function rmsnormB(dx: Float64Array, dw: Float64Array, dy: Float64Array, x: Float64Array, r: Float64Array, w: Float64Array, N: number, D: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * D;
    const rn = r[n]!;
    let s = 0;
    for (let j = 0; j < D; j++) {
      const g = dy[o + j]!;
      s += w[j]! * g * x[o + j]!;
      dw[j] += g * x[o + j]! * rn;
    }
    const c = (rn * rn * rn * s) / D;
    for (let j = 0; j < D; j++) dx[o + j] += rn * w[j]! * dy[o + j]! - c * x[o + j]!;
  }
}

/**
 * Rotates interleaved pairs (x[2j], x[2j+1]), 2j < rd, of every head in x[off, off+width) by the angles of `pos`
 * (dir 1), or applies the transpose (dir −1, for the gradient: the rotation by minus the angles, at the same scale
 * when cos/sin carry LongRoPE's attention factor); values past rd pass through (partial rotary).
 */
function ropeDir(x: Float64Array, off: number, width: number, hd: number, rd: number, cos: Float64Array, sin: Float64Array, pos: number, dir: 1 | -1): void {
  const half = rd / 2;
  const t = pos * half;
  for (let h = off; h < off + width; h += hd) {
    for (let j = 0; j < half; j++) {
      const a = x[h + 2 * j]!, b = x[h + 2 * j + 1]!;
      const fc = cos[t + j]!, fs = dir * sin[t + j]!;
      x[h + 2 * j] = a * fc - b * fs;
      x[h + 2 * j + 1] = a * fs + b * fc;
    }
  }
}

/** NeoX RoPE (traits.rope "neox"): pairs (x[j], x[j + rd/2]) of every head's first rd values, as ropeDir otherwise. */
function ropeNeoxDir(x: Float64Array, off: number, width: number, hd: number, rd: number, cos: Float64Array, sin: Float64Array, pos: number, dir: 1 | -1): void {
  const half = rd / 2;
  const t = pos * half;
  for (let h = off; h < off + width; h += hd) {
    for (let j = 0; j < half; j++) {
      const a = x[h + j]!, b = x[h + j + half]!;
      const fc = cos[t + j]!, fs = dir * sin[t + j]!;
      x[h + j] = a * fc - b * fs;
      x[h + j + half] = a * fs + b * fc;
    }
  }
}

const GELU_K = Math.sqrt(2 / Math.PI);

/** tanh-approximated GELU (llama.ts geglu): 0.5·a·(1 + tanh(√(2/π)·(a + 0.044715·a³))) */
function geluTanh(a: number): number {
  return 0.5 * a * (1 + Math.tanh(GELU_K * (a + 0.044715 * a * a * a)));
}

/** d geluTanh/da = 0.5(1 + t) + 0.5·a·(1 − t²)·√(2/π)·(1 + 3·0.044715·a²), t the tanh above */
function geluTanhGrad(a: number): number {
  const t = Math.tanh(GELU_K * (a + 0.044715 * a * a * a));
  return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * GELU_K * (1 + 3 * 0.044715 * a * a);
}

/** y (N, D) += b (D) on every row */
function addBias(y: Float64Array, b: Float64Array, N: number, D: number): void {
  for (let n = 0; n < N; n++) for (let j = 0; j < D; j++) y[n * D + j] += b[j]!;
}

/** db (D) += Σ_n dy (N, D) */
function biasGrad(db: Float64Array, dy: Float64Array, N: number, D: number): void {
  for (let n = 0; n < N; n++) for (let j = 0; j < D; j++) db[j] += dy[n * D + j]!;
}

/** out = a·x (a scratch the size of x) */
function scaled(out: Float64Array, x: Float64Array, a: number): Float64Array {
  for (let j = 0; j < x.length; j++) out[j] = a * x[j]!;
  return out;
}

/** The model's rope_freqs.weight, when present (pass to LlamaTrainer). */
export function modelRopeFreqs(model: Model): Weight | undefined {
  return model.weights.get(ROPE_FREQS);
}
