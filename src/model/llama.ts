/**
 * Llama-family forward pass on the Backend interface (llama2.c run.c `forward`, batched for prefill):
 * token embedding → per layer [RMSNorm → Q,K,V → RoPE on interleaved pairs → grouped-query attention
 * over the KV cache → output projection → residual; RMSNorm → SwiGLU FFN → residual] → RMSNorm →
 * classifier (the token embedding when tied).
 *
 * One code path serves decode (n = 1, `matvec`) and prefill (n positions at once, `matmul`), so both
 * give the same numbers on the reference backend. Buffers are allocated once per instance; `forward`
 * returns a view of an internal buffer that the next call overwrites.
 */
import { QuantlabError } from "../core/errors.js";
import { addRmsnorm, matmulMany, matvecMany, swiglu, type Backend, type MatvecJob, type PreparedWeight } from "../kernels/types.js";
import { RefBackend } from "../kernels/ref/backend.js";
import { dequantizeWeight, rowReader, type RowReader } from "../kernels/dequantize.js";
import { ARCH_TRAITS, TensorNames, blockTensors, expectedShapes, layerRope, layerWindow, rotaryDimOf, type ArchTraits, type BlockTensors, type ModelConfig } from "./config.js";
import { rmsnormRowsRef, swigluRef } from "../kernels/ref/rows.js";
import type { Model } from "./weights.js";
import { attendRef, f32KvCache, type KvCache, type KvCacheFactory } from "./kv-cache.js";
import { applyInputTransforms, checkInputTransforms, type InputTransforms, type LinearSite } from "./transforms.js";
import { isWeightLoaded, releaseWeight, weightShape, type Weight } from "../core/weight.js";
import { integerRuntime } from "./integer-block.js";

/**
 * Called with the input x (n, width) of a block's linears before they run (calibration capture, or
 * experiments that change activations in place); after the model's own `inputTransforms`.
 */
export type LinearInputHook = (layer: number, site: LinearSite, x: Float32Array, n: number, width: number) => void;

/** llama.cpp's name for per-frequency RoPE divisors (Llama 3.1+ GGUF files carry them as a tensor) */
export const ROPE_FREQS = "rope_freqs.weight";

export interface LlamaOptions {
  backend?: Backend;
  /** positions the KV cache holds (default: the model's seqLen) */
  contextLength?: number;
  /** the KV cache (default: the backend's own when it offers one — WASM: in its memory, with a batched
   * SIMD `attend` — else the TypeScript f32 cache); a quantized cache passes its factory here */
  kvCache?: KvCacheFactory;
  /** most positions per prefill chunk (default: 128, fewer for very large vocabularies) */
  maxBatch?: number;
  /** observer/modifier of every block linear's input (see LinearInputHook) */
  inputHook?: LinearInputHook;
  /** prepares each block linear instead of `backend.prepare` (the output matrix is always the backend's); e.g. the
   * integer calibration GEMM of `collectImatrix({ forward: "int" })` */
  prepareLinear?: (w: Weight, name: string) => PreparedWeight;
  /** LongRoPE models: which factor set to rotate with (default: by the context length, as llama.cpp; see ropeFactorSet) */
  ropeFactors?: RopeFactorSet;
  /**
   * the forward pass runs only for its `inputHook` (calibration statistics): `prefill` computes no logits and skips
   * the last layer's FFN down projection (its output reaches only the logits), and returns an empty array;
   * `forward` and a prefill with a logits sink are errors
   */
  hooksOnly?: boolean;
}

/** the prepared linears of a block */
const LINEARS = ["wq", "wk", "wv", "wo", "gate", "up", "down"] as const;

/** norms as f32, linears prepared by the backend */
type Layer = BlockTensors<Float32Array, PreparedWeight>;

/** Called with the logits of positions [row, row+n) of a prefill: logits is (n, vocab). */
export type LogitsSink = (logits: Float32Array, row: number, n: number) => void;

/**
 * What evaluation needs of a causal language model (perplexity, KLD): Llama, and GgmlForward (llama.cpp's
 * CPU arithmetic, model/ggml-forward.ts).
 */
export interface CausalLM {
  readonly config: ModelConfig;
  /** positions the KV cache holds */
  readonly capacity: number;
  /** most positions one prefill call hands to its sink at a time */
  readonly maxBatch: number;
  /** starts a fresh sequence */
  reset(): void;
  /** feeds tokens at positions pos0…; with a sink every position's logits go to it; returns the last ones */
  prefill(tokens: ArrayLike<number>, pos0: number, sink?: LogitsSink): Float32Array;
}

/**
 * backend.prepare, then, when the backend copied the weight and this call was what read it from its file
 * (io/ lazy loading), lets the weight's own bytes go again: the model is held once, in the backend.
 */
export function prepareWeight(be: Backend, w: Weight, name: string): PreparedWeight {
  const wasLoaded = isWeightLoaded(w);
  const p = be.prepare(w, name);
  if (be.preparesCopies && !wasLoaded) releaseWeight(w);
  return p;
}

export class Llama implements CausalLM {
  readonly config: ModelConfig;
  readonly backend: Backend;
  readonly capacity: number;
  readonly kv: KvCache;
  readonly maxBatch: number;
  /** what this architecture's block does beyond Llama's (model/config.ts ARCH_TRAITS) */
  readonly traits: ArchTraits;
  private readonly qDim: number;
  private readonly kvDim: number;
  /** rows of the token embedding (vocab, dim), decoded on demand: the table is never expanded whole */
  private embedding: RowReader;
  private readonly layers: Layer[];
  private readonly outputNorm: Float32Array; // (dim)
  private readonly output: PreparedWeight; // (vocab, dim)
  /** RoPE frequency sets (one, or Gemma 3's global and local) and each layer's index into them */
  private readonly ropeSets: { invFreq: Float64Array; cos: Float32Array; sin: Float32Array }[]; // invFreq (rotaryDim/2); cos, sin (B, rotaryDim/2)
  private readonly ropeOfLayer: number[]; // (nLayers)
  private readonly rotDim: number; // values of each head RoPE rotates (config.rotaryDim)
  private readonly ropeScale: number; // cos and sin × this (LongRoPE's attention factor)
  // scratch, reused by every call
  private readonly x: Float32Array; // (B, dim) residual stream
  private readonly xb: Float32Array; // (B, max(dim, qDim)) normed input / projection output
  private readonly q: Float32Array; // (B, qDim)
  private readonly k: Float32Array; // (B, kvDim)
  private readonly v: Float32Array; // (B, kvDim)
  private readonly attOut: Float32Array; // (B, qDim)
  private readonly att: Float32Array; // (capacity) scores of one head
  private readonly hb: Float32Array; // (B, hidden)
  private readonly hb2: Float32Array; // (B, hidden)
  private readonly logits1: Float32Array; // (vocab)
  private logitsB: Float32Array | undefined; // (B, vocab), on first use
  private readonly transforms: InputTransforms | undefined;
  private readonly inputHook: LinearInputHook | undefined;
  private readonly rotTmp: Float64Array | undefined; // (inner factor size) scratch of the online rotation
  private readonly hooksOnly: boolean;
  /** the arrays above that live in the backend's memory (Backend.residentF32), given back by dispose */
  private readonly residents: Float32Array[];

  constructor(original: Model, opts: LlamaOptions = {}) {
    // integer-only linears (`…:intmm`) run as integer kernels here too, not as their float fake-quantization
    const { model, backend } = integerRuntime(original, opts.backend ?? new RefBackend());
    const c = model.config;
    this.config = c;
    this.backend = backend;
    this.capacity = opts.contextLength ?? c.seqLen;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new QuantlabError("E_ARG", `context length ${this.capacity}: expected a positive integer`);
    this.maxBatch = opts.maxBatch ?? Math.max(1, Math.min(128, Math.floor((1 << 24) / c.vocabSize)));
    this.qDim = c.nHeads * c.headDim;
    this.kvDim = c.nKvHeads * c.headDim;
    if (c.nHeads % c.nKvHeads !== 0) throw new QuantlabError("E_FORMAT", `${model.source.path}: n_heads ${c.nHeads} is not a multiple of n_kv_heads ${c.nKvHeads}`);
    if (c.headDim % 2 !== 0) throw new QuantlabError("E_FORMAT", `${model.source.path}: head dim ${c.headDim} is odd, RoPE needs pairs`);
    checkWeights(model);
    const W = model.weights;
    const be = this.backend;
    // the norm vectors and scratch below live in the backend's memory when it offers that (WASM: its entries then
    // read and write them in place, no copies per call), else in ordinary arrays
    const residents = (this.residents = []);
    const f32 = (len: number, what: string): Float32Array => residentOr(be, len, what, residents);
    const vec = (name: string) => {
      const d = dequantizeWeight(W.get(name)!, name).data;
      const r = f32(d.length, name);
      r.set(d);
      return r;
    };
    const prepLinear = opts.prepareLinear;
    const prep = prepLinear
      ? (name: string) => {
        const w = W.get(name)!;
        const wasLoaded = isWeightLoaded(w);
        const p = prepLinear(w, name);
        if (be.preparesCopies && !wasLoaded) releaseWeight(w);
        return p;
      }
      : (name: string) => prepareWeight(be, W.get(name)!, name);
    this.layers = [];
    this.traits = ARCH_TRAITS[c.arch];
    for (let l = 0; l < c.nLayers; l++) this.layers.push(blockTensors(l, vec, prep, this.traits));
    this.outputNorm = vec(TensorNames.outputNorm);
    // GGUF files from llama.cpp's converter carry output.weight even for tied models: use it if present
    const outName = W.has(TensorNames.output) ? TensorNames.output : TensorNames.tokenEmbd;
    this.output = prepareWeight(be, W.get(outName)!, outName);
    // a tied table is read through the backend when it can decode rows of its prepared copy (WASM: f32, f16,
    // packed specs, interleaved blocks), so it is held once, as the output matrix; the weight's own reader
    // otherwise (made after prepare, which has let a lazily read copy go again)
    this.embedding = (outName === TensorNames.tokenEmbd ? be.rowReader?.(this.output) : undefined) ?? rowReader(W.get(TensorNames.tokenEmbd)!, TensorNames.tokenEmbd);
    const B0 = this.maxBatch;
    this.rotDim = rotaryDimOf(c);
    this.ropeScale = c.longRope?.attentionFactor ?? 1;
    const factorSet = opts.ropeFactors ?? ropeFactorSet(c, this.capacity);
    const sets = ropeSetsOf(c);
    this.ropeOfLayer = sets.ofLayer;
    this.ropeSets = sets.params.map((r) => ({ invFreq: ropeInvFreq(c, W.get(ROPE_FREQS), factorSet, r.theta, r.linear), cos: f32(B0 * (this.rotDim / 2), "rope cos"), sin: f32(B0 * (this.rotDim / 2), "rope sin") }));
    if (opts.kvCache && be.ownsAttention) throw new QuantlabError("E_ARG", `a KV cache of its own (--kv) would replace the attention of ${be.ownsAttention}; drop --kv`);
    this.kv = opts.kvCache
      ? opts.kvCache(c.nLayers, this.capacity, c.nKvHeads, c.headDim)
      : be.kvCache?.(c.nLayers, this.capacity, c.nKvHeads, c.headDim) ?? f32KvCache(c.nLayers, this.capacity, c.nKvHeads, c.headDim);
    const B = this.maxBatch;
    this.x = f32(B * c.dim, "residual stream");
    this.xb = f32(B * Math.max(c.dim, this.qDim), "normed input");
    this.q = f32(B * this.qDim, "queries");
    this.k = f32(B * this.kvDim, "keys");
    this.v = f32(B * this.kvDim, "values");
    this.attOut = f32(B * this.qDim, "attention output");
    this.att = new Float32Array(this.capacity);
    this.hb = f32(B * c.hiddenDim, "ffn gate");
    this.hb2 = f32(B * c.hiddenDim, "ffn up");
    if (residents.length > 0) residentsFinalizer.register(this, { be, arrays: residents }, this);
    this.logits1 = new Float32Array(c.vocabSize);
    this.transforms = model.inputTransforms;
    if (this.transforms) checkInputTransforms(this.transforms, c.hiddenDim, model.source.path);
    const rot = this.transforms?.ffnDownRotation;
    this.rotTmp = rot ? new Float64Array(rot.n / rot.pow2) : undefined;
    this.inputHook = opts.inputHook;
    this.hooksOnly = opts.hooksOnly ?? false;
  }

  /** The model's input transforms, then the caller's hook, on the input of the linears at `site`. */
  private site(l: number, site: LinearSite, x: Float32Array, n: number, width: number): void {
    if (this.transforms) applyInputTransforms(this.transforms, l, site, x, n, width, this.rotTmp);
    if (this.inputHook) this.inputHook(l, site, x.subarray(0, n * width), n, width);
  }

  /** Logits (vocab) for `token` at `pos`, after positions 0..pos-1 are in the cache. A view, reused. */
  forward(token: number, pos: number): Float32Array {
    if (this.hooksOnly) throw new QuantlabError("E_ARG", "forward: this Llama was made with hooksOnly (it computes no logits)");
    this.run([token], 0, 1, pos, undefined);
    return this.logits1;
  }

  /**
   * Feeds tokens at positions pos0.. in chunks of maxBatch. With a sink, every position's logits are
   * computed and handed over chunk by chunk; without, only the last position's (returned, a view).
   */
  prefill(tokens: ArrayLike<number>, pos0: number, sink?: LogitsSink): Float32Array {
    const n = tokens.length;
    if (n === 0) throw new QuantlabError("E_ARG", "prefill: no tokens");
    if (this.hooksOnly && sink) throw new QuantlabError("E_ARG", "prefill: a logits sink on a Llama made with hooksOnly (it computes no logits)");
    for (let s = 0; s < n; s += this.maxBatch) {
      const m = Math.min(this.maxBatch, n - s);
      const last = s + m === n && !this.hooksOnly;
      this.run(tokens, s, m, pos0 + s, sink, last);
    }
    return this.hooksOnly ? new Float32Array(0) : this.logits1;
  }

  /** Starts a fresh sequence. */
  reset(): void {
    this.kv.reset();
  }

  /**
   * Releases the weights this instance prepared on its backend (the backend itself stays usable), so a
   * transient forward pass — calibration, a sensitivity probe, one row of `compare` — does not keep a copy
   * of the model in the backend's memory. The instance must not run afterwards.
   */
  dispose(): void {
    for (const L of this.layers) for (const k of LINEARS) this.backend.release(L[k]);
    this.backend.release(this.output);
    this.layers.length = 0;
    this.decodeJobs.clear();
    this.kv.dispose?.();
    residentsFinalizer.unregister(this);
    freeResidents({ be: this.backend, arrays: this.residents });
  }

  /** decode's views and job lists by their first weight (each weight is used at one site, on the same arrays each
   * token): made once, not per call (a token makes dozens of these calls) */
  private readonly decodeJobs = new Map<PreparedWeight, { x: Float32Array; out: Float32Array; jobs: MatvecJob[] }>();

  private mm(w: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    if (n === 1) {
      let d = this.decodeJobs.get(w);
      if (!d || d.x !== x || d.out !== out) this.decodeJobs.set(w, (d = { x, out, jobs: [{ w, x: x.subarray(0, w.cols), out: out.subarray(0, w.rows) }] }));
      const j = d.jobs[0]!;
      this.backend.matvec(w, j.x, j.out);
    }
    else this.backend.matmul(w, x.subarray(0, n * w.cols), n, out.subarray(0, n * w.rows));
  }

  /** Projections that share their input: one backend dispatch (matvecMany when decoding, matmulMany in prefill). */
  private mm3(
    a: PreparedWeight, b: PreparedWeight, c: PreparedWeight | undefined,
    x: Float32Array, n: number,
    oa: Float32Array, ob: Float32Array, oc: Float32Array | undefined,
  ): void {
    if (n === 1) {
      let d = this.decodeJobs.get(a);
      if (!d || d.x !== x || d.out !== oa || d.jobs[1]!.w !== b || d.jobs[2]?.w !== c) {
        const xv = x.subarray(0, a.cols);
        const jobs = [{ w: a, x: xv, out: oa.subarray(0, a.rows) }, { w: b, x: xv, out: ob.subarray(0, b.rows) }];
        if (c && oc) jobs.push({ w: c, x: xv, out: oc.subarray(0, c.rows) });
        this.decodeJobs.set(a, (d = { x, out: oa, jobs }));
      }
      matvecMany(this.backend, d.jobs);
      return;
    }
    const xs = x.subarray(0, n * a.cols);
    const jobs = [{ w: a, x: xs, out: oa.subarray(0, n * a.rows) }, { w: b, x: xs, out: ob.subarray(0, n * b.rows) }];
    if (c && oc) jobs.push({ w: c, x: xs, out: oc.subarray(0, n * c.rows) });
    matmulMany(this.backend, jobs, n);
  }

  private run(tokens: ArrayLike<number>, start: number, n: number, pos0: number, sink: LogitsSink | undefined, lastChunk = true): void {
    const c = this.config;
    const { dim, hiddenDim: hidden, headDim: hd, nHeads, vocabSize } = c;
    const { qDim, kvDim, x, xb, q, k, v, attOut, att, hb, hb2 } = this;
    if (pos0 < 0 || pos0 + n > this.capacity) {
      throw new QuantlabError("E_ARG", `position ${pos0 + n - 1} is beyond the context length ${this.capacity}`);
    }
    for (let i = 0; i < n; i++) {
      const t = tokens[start + i]!;
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new QuantlabError("E_ARG", `token id ${t} is outside the vocabulary (0..${vocabSize - 1})`);
      this.embedding(t, x, i * dim);
    }
    const mult = c.multipliers;
    const traits = this.traits;
    if (mult) scaleRows(x, n * dim, mult.embedding);
    if (traits.embedScaleSqrtDim) scaleRows(x, n * dim, Math.fround(Math.sqrt(dim)));
    // the cache divides q·k by √headDim: q is pre-scaled so that this gives q·k · the model's own scale
    // (Granite's attention multiplier, Gemma's query_pre_attn_scalar^-0.5)
    const qScale = queryPrescale(c);
    const half = this.rotDim / 2;
    for (const set of this.ropeSets) for (let i = 0; i < n; i++) this.ropeTables(set, pos0 + i, i * half); // the same angles in every layer of a set
    const be = this.backend;
    const eps = c.normEps;
    const neox = traits.rope === "neox";
    const rot = neox ? ropeNeox : rope;
    const beRope = be.rope?.bind(be);
    // Each residual add runs with the norm that follows it (addRmsnorm): the FFN output of layer l − 1 is
    // added at layer l's attention norm, the last layer's at the output norm (or not at all when no logits
    // are wanted from this chunk: x is not read again). Post-branch norms (sandwich, post) run on the branch
    // output before that add; with no pre-branch norm (post) the branch reads a copy of the stream.
    for (let l = 0; l < c.nLayers; l++) {
      const L = this.layers[l]!;
      if (mult && l > 0) scaleRows(xb, n * dim, mult.residual);
      preNorm(be, x, l === 0 ? undefined : xb, L.attnNorm, xb, n, dim, eps);
      this.site(l, "attn_in", xb, n, dim);
      this.mm3(L.wq, L.wk, L.wv, xb, n, q, k, v);
      qkvTraits(L, q, k, v, n, qDim, kvDim, hd, eps);
      if (qScale !== 1) scaleRows(q, n * qDim, qScale);
      const set = this.ropeSets[this.ropeOfLayer[l]!]!;
      for (let i = 0; i < n; i++) {
        // the backend's kernel when it runs on these arrays (the same bits), else TypeScript
        if (!beRope?.(q, i * qDim, qDim, hd, set.cos, set.sin, i * half, this.rotDim, neox)) rot(q, i * qDim, qDim, hd, set.cos, set.sin, i * half, this.rotDim);
        if (!beRope?.(k, i * kvDim, kvDim, hd, set.cos, set.sin, i * half, this.rotDim, neox)) rot(k, i * kvDim, kvDim, hd, set.cos, set.sin, i * half, this.rotDim);
        this.kv.store(l, pos0 + i, k.subarray(i * kvDim, (i + 1) * kvDim), v.subarray(i * kvDim, (i + 1) * kvDim));
      }
      // a sliding window that cuts into the sequence, or soft-capped scores, run the reference attention (the
      // cache's fused `attend` is plain full causal attention, the same thing while every position is inside the window)
      const window = layerWindow(c, l);
      const windowed = window !== undefined && pos0 + n > window;
      if (this.kv.attend && !windowed && c.attnSoftcap === undefined) this.kv.attend(l, q, pos0, n, nHeads, attOut);
      else attendRef(this.kv, l, q, pos0, n, nHeads, attOut, att, window, c.attnSoftcap);
      this.site(l, "attn_out_in", attOut, n, qDim);
      this.mm(L.wo, attOut, n, xb);
      if (L.postAttnNorm) rmsnormRowsRef(xb, xb, L.postAttnNorm, n, dim, eps);
      if (mult) scaleRows(xb, n * dim, mult.residual);
      preNorm(be, x, xb, L.ffnNorm, xb, n, dim, eps);
      this.site(l, "ffn_in", xb, n, dim);
      this.mm3(L.gate, L.up, undefined, xb, n, hb, hb2, undefined);
      gatedActivation(be, traits, hb, hb2, n * hidden); // act(w1·x) * (w3·x), as run.c
      this.site(l, "ffn_down_in", hb, n, hidden);
      // the last layer's FFN output feeds only the logits: without any wanted (hooksOnly), it is not computed
      if (this.hooksOnly && l === c.nLayers - 1) break;
      this.mm(L.down, hb, n, xb);
      if (L.postFfnNorm) rmsnormRowsRef(xb, xb, L.postFfnNorm, n, dim, eps);
    }
    if (this.hooksOnly) return;
    if (mult) scaleRows(xb, n * dim, mult.residual);
    if (sink) {
      addRmsnorm(be, x, xb, this.outputNorm, xb, n, dim, eps);
      const out = (this.logitsB ??= new Float32Array(this.maxBatch * vocabSize));
      this.mm(this.output, xb, n, out);
      if (mult) scaleRows(out, n * vocabSize, 1 / mult.logits);
      if (c.finalSoftcap !== undefined) softcapRows(out, n * vocabSize, c.finalSoftcap);
      sink(out.subarray(0, n * vocabSize), start, n);
      if (lastChunk) this.logits1.set(out.subarray((n - 1) * vocabSize, n * vocabSize));
    } else if (lastChunk) {
      const r = (n - 1) * dim;
      addRmsnorm(be, x.subarray(r, r + dim), xb.subarray(r, r + dim), this.outputNorm, xb, 1, dim, eps);
      this.mm(this.output, xb, 1, this.logits1);
      if (mult) scaleRows(this.logits1, vocabSize, 1 / mult.logits);
      if (c.finalSoftcap !== undefined) softcapRows(this.logits1, vocabSize, c.finalSoftcap);
    }
  }

  private ropeTables(set: { invFreq: Float64Array; cos: Float32Array; sin: Float32Array }, pos: number, at: number): void {
    const f = set.invFreq;
    for (let j = 0; j < f.length; j++) {
      // run.c: float val = pos * freq; fcr = cosf(val); fci = sinf(val) (f32 at each step)
      const val = Math.fround(pos * f[j]!);
      // LongRoPE's attention factor scales cos and sin (transformers: cos · attention_scaling; ggml rope: mscale)
      set.cos[at + j] = Math.cos(val) * this.ropeScale;
      set.sin[at + j] = Math.sin(val) * this.ropeScale;
    }
  }
}

/** A zeroed f32 array in the backend's memory (Backend.residentF32, recorded in `list`) when it offers one and has
 * room, else an ordinary array. */
function residentOr(be: Backend, len: number, what: string, list: Float32Array[]): Float32Array {
  if (be.residentF32 && len > 0) {
    try {
      const a = be.residentF32(len, what);
      list.push(a);
      return a;
    } catch (e) {
      // a full memory (E_VALUE) keeps the array in the JS heap: the entries then copy it in and out, as before
      if (!(e instanceof QuantlabError && e.code === "E_VALUE")) throw e;
    }
  }
  return new Float32Array(len);
}

function freeResidents(r: { be: Backend; arrays: Float32Array[] }): void {
  for (const a of r.arrays.splice(0)) r.be.freeResident?.(a);
}

/** an instance dropped without dispose() gives its backend arrays back when collected */
const residentsFinalizer = new FinalizationRegistry<{ be: Backend; arrays: Float32Array[] }>(freeResidents);

/**
 * The distinct RoPE (base, linear factor) pairs of a model's layers and each layer's index into them: one
 * set for most models, two for Gemma 3 (local base on sliding layers, global base and scaling elsewhere).
 */
export function ropeSetsOf(c: ModelConfig): { params: { theta: number; linear: number }[]; ofLayer: number[] } {
  const params: { theta: number; linear: number }[] = [];
  const ofLayer: number[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const r = layerRope(c, l);
    let i = params.findIndex((p) => p.theta === r.theta && p.linear === r.linear);
    if (i < 0) i = params.push(r) - 1;
    ofLayer.push(i);
  }
  return { params, ofLayer };
}

/**
 * What q is multiplied by so that the attention's q·k / √headDim becomes the model's own score scale:
 * Granite's attention multiplier, Gemma's `query_pre_attn_scalar`^-0.5 (ModelConfig.attnScale); 1 otherwise.
 */
export function queryPrescale(c: ModelConfig): number {
  const s = c.multipliers?.attention ?? c.attnScale;
  return s === undefined ? 1 : Math.fround(s * Math.fround(Math.sqrt(c.headDim)));
}

/** The residual add and the pre-branch RMSNorm (addRmsnorm); with no norm (OLMo 2) out becomes a copy of the stream. */
function preNorm(be: Backend, x: Float32Array, y: Float32Array | undefined, w: Float32Array | undefined, out: Float32Array, n: number, dim: number, eps: number): void {
  if (w) return addRmsnorm(be, x, y, w, out, n, dim, eps);
  const len = n * dim;
  if (y) for (let i = 0; i < len; i++) x[i] = x[i]! + y[i]!;
  out.set(x.subarray(0, len));
}

/**
 * gate ← act(gate) ⊙ up over n values: SwiGLU (the backend's kernel) or GeGLU with tanh-approximated GELU
 * (transformers GELUTanh / PytorchGELUTanh: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))).
 */
export function gatedActivation(be: Backend | undefined, traits: ArchTraits, gate: Float32Array, up: Float32Array, n: number): void {
  if (traits.activation === "silu") {
    if (be) swiglu(be, gate, up, n);
    else swigluRef(gate, up, n);
    return;
  }
  geglu(gate, up, n);
}

/** gate ← gelu_tanh(gate) ⊙ up */
export function geglu(gate: Float32Array, up: Float32Array, n: number): void {
  const k = Math.sqrt(2 / Math.PI);
  for (let i = 0; i < n; i++) {
    const a = gate[i]!;
    gate[i] = 0.5 * a * (1 + Math.tanh(k * (a + 0.044715 * a * a * a))) * up[i]!;
  }
}

/** a[i] ← c·tanh(a[i] / c) for i < len (Gemma 2's soft-caps; llama.cpp: scale 1/c, tanh, scale c) */
export function softcapRows(a: Float32Array, len: number, c: number): void {
  for (let i = 0; i < len; i++) a[i] = c * Math.tanh(a[i]! / c);
}

/** LongRoPE's two factor sets (config.ts LongRope). */
export type RopeFactorSet = "short" | "long";

/**
 * The LongRoPE factor set a context of `contextLength` positions rotates with, as llama.cpp chooses it once per
 * context (llama_model::get_rope_factors: long when n_ctx_seq > rope.scaling.original_context_length). transformers
 * chooses per forward call instead (longrope_frequency_update: long when the call's largest position + 1 exceeds
 * original_max_position_embeddings); a whole sequence of L tokens run at once is therefore "long" there iff
 * L > original: pass LlamaOptions.ropeFactors to reproduce it.
 */
export function ropeFactorSet(c: ModelConfig, contextLength: number): RopeFactorSet {
  return c.longRope && contextLength > c.longRope.originalMaxPositionEmbeddings ? "long" : "short";
}

/**
 * RoPE angle per position for each pair j of a head's rotated part: θ^(−2j/rotaryDim) with base `theta`, linear
 * scaling by `linear`, then Llama-3 scaling, a rope_freqs tensor, or LongRoPE's factors of `set` (default: the
 * set of a context of config.seqLen).
 */
export function ropeInvFreq(c: ModelConfig, freqFactors?: Weight, set: RopeFactorSet = ropeFactorSet(c, c.seqLen), theta = c.ropeTheta, linear = 1): Float64Array {
  const rd = rotaryDimOf(c);
  const half = rd / 2;
  const out = new Float64Array(half);
  for (let j = 0; j < half; j++) {
    // run.c: 1.0f / powf(10000.0f, head_dim / (float)head_size), head_dim = 2j (f32 at each step)
    const e = Math.fround((2 * j) / rd);
    out[j] = Math.fround(1 / Math.fround(Math.pow(theta, e)));
  }
  // linear scaling (transformers _compute_linear_scaling_rope_parameters: inv_freq / factor; llama.cpp freq_scale = 1/factor)
  if (linear !== 1) for (let j = 0; j < half; j++) out[j] = out[j]! / linear;
  if (c.longRope) {
    // transformers: inv_freq = 1 / (ext_factors · base^(2j/dim)); llama.cpp: theta / freq_factors[j]
    const f = set === "long" ? c.longRope.longFactor : c.longRope.shortFactor;
    for (let j = 0; j < half; j++) out[j] = out[j]! / f[j]!;
  }
  if (freqFactors) {
    // llama.cpp: theta = pos·freq / factor[j] (the converter stores Llama 3's scaling this way)
    const f = dequantizeWeight(freqFactors, ROPE_FREQS).data;
    if (f.length !== half) throw new QuantlabError("E_FORMAT", `${ROPE_FREQS}: ${f.length} values, expected rotary dimension / 2 = ${half}`);
    for (let j = 0; j < half; j++) out[j] = out[j]! / f[j]!;
  } else if (c.ropeScaling?.type === "llama3") {
    // transformers modeling_rope_utils._compute_llama3_parameters
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldCtx } = c.ropeScaling;
    const lowFreqWavelen = oldCtx / lowFreqFactor;
    const highFreqWavelen = oldCtx / highFreqFactor;
    for (let j = 0; j < half; j++) {
      const freq = out[j]!;
      const wavelen = (2 * Math.PI) / freq;
      if (wavelen < highFreqWavelen) continue;
      if (wavelen > lowFreqWavelen) out[j] = freq / factor;
      else {
        const smooth = (oldCtx / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        out[j] = (1 - smooth) * (freq / factor) + smooth * freq;
      }
    }
  }
  return out;
}

/**
 * Rotates interleaved pairs (x[2j], x[2j+1]), 2j < rd, of every head in x[off .. off+width) by the angles at
 * cos/sin[tab + j]; values past rd pass through (partial rotary).
 */
export function rope(x: Float32Array, off: number, width: number, hd: number, cos: Float32Array, sin: Float32Array, tab = 0, rd = hd): void {
  for (let h = off; h < off + width; h += hd) {
    for (let j = 0; j < rd / 2; j++) {
      const a = x[h + 2 * j]!;
      const b = x[h + 2 * j + 1]!;
      const fc = cos[tab + j]!;
      const fs = sin[tab + j]!;
      x[h + 2 * j] = a * fc - b * fs;
      x[h + 2 * j + 1] = a * fs + b * fc;
    }
  }
}

/**
 * Rotates (x[j], x[j + rd/2]) of every head in x[off .. off+width) by the angles at cos/sin[tab + j] (NeoX / HF
 * rotate_half on the first rd values: transformers' q[..., :rotary_dim], ggml rope's n_dims); the rest pass through.
 */
export function ropeNeox(x: Float32Array, off: number, width: number, hd: number, cos: Float32Array, sin: Float32Array, tab = 0, rd = hd): void {
  const half = rd / 2;
  for (let h = off; h < off + width; h += hd) {
    for (let j = 0; j < half; j++) {
      const a = x[h + j]!;
      const b = x[h + j + half]!;
      const fc = cos[tab + j]!;
      const fs = sin[tab + j]!;
      x[h + j] = a * fc - b * fs;
      x[h + j + half] = a * fs + b * fc;
    }
  }
}

/**
 * The architecture's own steps between the q/k/v projections and RoPE, on n rows: q/k/v biases (Qwen2),
 * per-head RMSNorm of q and k (Qwen3; the block's norm epsilon, as transformers' Qwen3RMSNorm). Shared by
 * the forward pass and calibration (algos/calib.ts).
 */
export function qkvTraits(L: { bq?: Float32Array; bk?: Float32Array; bv?: Float32Array; qNorm?: Float32Array; kNorm?: Float32Array }, q: Float32Array, k: Float32Array, v: Float32Array, n: number, qDim: number, kvDim: number, hd: number, eps: number): void {
  if (L.bq) addBias(q, n, qDim, L.bq);
  if (L.bk) addBias(k, n, kvDim, L.bk);
  if (L.bv) addBias(v, n, kvDim, L.bv);
  // the norm's width says what it normalizes: one head (Qwen3, Gemma 3) or the whole projection (OLMo 2)
  if (L.qNorm) rmsnormRowsRef(q, q, L.qNorm, (n * qDim) / L.qNorm.length, L.qNorm.length, eps);
  if (L.kNorm) rmsnormRowsRef(k, k, L.kNorm, (n * kvDim) / L.kNorm.length, L.kNorm.length, eps);
}

/** a[i] ← a[i]·f for i < len (Granite's multipliers) */
export function scaleRows(a: Float32Array, len: number, f: number): void {
  for (let i = 0; i < len; i++) a[i] = a[i]! * f;
}

function addBias(x: Float32Array, n: number, width: number, b: Float32Array): void {
  for (let i = 0; i < n; i++) for (let j = 0, o = i * width; j < width; j++) x[o + j] += b[j]!;
}

/** out[i] = w ⊙ x[i] / sqrt(mean(x[i]²) + eps) for n rows of `dim` (run.c rmsnorm; kernels/ref/rows.ts). */
export { rmsnormRowsRef as rmsnormRows } from "../kernels/ref/rows.js";

function checkWeights(model: Model): void {
  const c = model.config;
  for (const [name, shape] of expectedShapes(c)) {
    const w = model.weights.get(name);
    if (!w) {
      if (name === TensorNames.output && model.weights.has(TensorNames.tokenEmbd)) continue;
      throw new QuantlabError("E_FORMAT", `${model.source.path}: missing tensor ${name}`);
    }
    const got = weightShape(w);
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new QuantlabError("E_FORMAT", `${model.source.path}: tensor ${name} has shape [${got.join(", ")}], expected [${shape.join(", ")}]`);
    }
  }
  if (!c.tiedEmbeddings && !model.weights.has(TensorNames.output)) {
    throw new QuantlabError("E_FORMAT", `${model.source.path}: missing tensor ${TensorNames.output} (the model is not tied)`);
  }
}
