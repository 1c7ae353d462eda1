/**
 * Calibration data and layer-by-layer activation capture for post-training quantization.
 *
 * - `calibrationWindows`: a token stream (from a text) → N seeded windows of L positions, each BOS
 *   followed by L−1 consecutive tokens from a random offset (GPTQ's `get_wikitext2` recipe; windows may
 *   overlap). `generatedWindows`: the same shape sampled from the model itself (data-free calibration).
 * - `BlockRunner`: runs ONE transformer block on the hidden states of all calibration windows at once
 *   (T = N·L tokens), with dense f32 weights of that block only, and calls a hook with the input of
 *   each linear site. The PTQ pipeline (ptq.ts) walks the blocks in order, feeding each block the
 *   outputs of the already-quantized blocks before it, so memory stays near one block's weights plus
 *   T hidden states, whatever the depth. Its linears run on the `Backend` the caller passes (prepared
 *   per run, since calibration changes the weights between runs, and released after it), or on the
 *   plain-TS `matmulXWt` when none is given.
 * The block arithmetic follows model/llama.ts (llama2.c run.c): RMSNorm, interleaved-pair RoPE with the
 * same f32 angle rounding, grouped-query causal attention, SwiGLU; a test checks that stacking blocks
 * reproduces the Llama forward pass's logits.
 */
import { QuantlabError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import { checkBos } from "../eval/windows.js";
import { ARCH_TRAITS, TensorNames, blockTensors, layerWindow, rotaryDimOf, type BlockTensors, type ModelConfig } from "../model/config.js";
import { Llama, ROPE_FREQS, gatedActivation, qkvTraits, queryPrescale, rmsnormRows, rope, ropeInvFreq, ropeNeox, ropeSetsOf, scaleRows } from "../model/llama.js";
import { Sampler } from "../model/sampler.js";
import { applyInputTransforms, type InputTransforms, type LinearSite } from "../model/transforms.js";
import type { Model } from "../model/weights.js";
import { bf16BitsToF32, f16BitsToF32 } from "../core/f16.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { matmulMany, type Backend, type PreparedWeight } from "../kernels/types.js";
import { Tensor } from "../core/tensor.js";
import type { Weight } from "../core/weight.js";

export interface WindowOptions {
  /** number of windows (GPTQ/AWQ papers: 128) */
  samples: number;
  /** positions per window, BOS included */
  seq: number;
  seed: number;
  bosId: number;
}

/** N windows (each Int32Array of `seq`: BOS + seq−1 tokens) from random offsets of a token stream. */
export function calibrationWindows(tokens: ArrayLike<number>, o: WindowOptions): Int32Array[] {
  checkWindowOptions(o);
  checkBos(o.bosId, "calibration windows");
  const body = o.seq - 1;
  if (tokens.length < body) {
    throw new QuantlabError("E_ARG", `calibration text has ${tokens.length} tokens, fewer than one window of ${body} (--seq ${o.seq}); use a longer text or a smaller --seq`);
  }
  const rng = new Rng(o.seed);
  const span = tokens.length - body + 1; // possible starts
  const out: Int32Array[] = [];
  for (let w = 0; w < o.samples; w++) {
    const start = Math.floor(rng.next() * span);
    const win = new Int32Array(o.seq);
    win[0] = o.bosId;
    for (let i = 0; i < body; i++) win[i + 1] = tokens[start + i]!;
    out.push(win);
  }
  return out;
}

/** Data-free calibration: N windows sampled from the model at temperature 1 (top-p off), seeded. */
export function generatedWindows(model: Model, o: WindowOptions): Int32Array[] {
  checkWindowOptions(o);
  checkBos(o.bosId, "generated calibration windows");
  if (o.seq > model.config.seqLen) throw new QuantlabError("E_ARG", `--seq ${o.seq} is longer than the model's context ${model.config.seqLen}`);
  const llama = new Llama(model, { contextLength: o.seq });
  const out: Int32Array[] = [];
  for (let w = 0; w < o.samples; w++) {
    const sampler = new Sampler({ temperature: 1, topP: 1, seed: o.seed * 1_000_003 + w });
    llama.reset();
    const win = new Int32Array(o.seq);
    win[0] = o.bosId;
    for (let p = 0; p + 1 < o.seq; p++) win[p + 1] = sampler.sample(llama.forward(win[p]!, p));
    out.push(win);
  }
  return out;
}

function checkWindowOptions(o: WindowOptions): void {
  if (!Number.isInteger(o.samples) || o.samples < 1) throw new QuantlabError("E_ARG", `calibration samples must be a positive integer, got ${o.samples}`);
  if (!Number.isInteger(o.seq) || o.seq < 2) throw new QuantlabError("E_ARG", `calibration window length must be an integer ≥ 2, got ${o.seq}`);
}

/** Dense f32 weights of one block. Linear weights are (out, in) row-major. */
export type BlockWeights = BlockTensors<Float32Array, Float32Array>;

export type LinearKey = "wq" | "wk" | "wv" | "wo" | "gate" | "up" | "down";
export const LINEAR_KEYS: readonly LinearKey[] = ["wq", "wk", "wv", "wo", "gate", "up", "down"];

/** Canonical tensor name of a block linear. */
export function linearName(l: number, k: LinearKey): string {
  switch (k) {
    case "wq": return TensorNames.attnQ(l);
    case "wk": return TensorNames.attnK(l);
    case "wv": return TensorNames.attnV(l);
    case "wo": return TensorNames.attnOutput(l);
    case "gate": return TensorNames.ffnGate(l);
    case "up": return TensorNames.ffnUp(l);
    case "down": return TensorNames.ffnDown(l);
  }
}

/** Which site feeds each linear. */
export const SITE_OF: Record<LinearKey, LinearSite> = { wq: "attn_in", wk: "attn_in", wv: "attn_in", wo: "attn_out_in", gate: "ffn_in", up: "ffn_in", down: "ffn_down_in" };

/** A fresh f32 copy of block l's weights from a model (any weight kind, dequantized). */
export function blockWeights(model: Model, l: number): BlockWeights {
  const get = (name: string): Float32Array => {
    const w = model.weights.get(name);
    if (!w) throw new QuantlabError("E_FORMAT", `${model.source.path}: missing tensor ${name}`);
    const d = dequantizeWeight(w, name).data;
    return w.kind === "dense" && w.tensor.dtype === "f32" ? new Float32Array(d) : d;
  };
  return blockTensors(l, get, get, ARCH_TRAITS[model.config.arch]);
}

/** out (n, rows) = x (n, cols) · wᵀ, w (rows, cols); four output rows per pass over x's row. */
export function matmulXWt(x: Float32Array, n: number, w: Float32Array, rows: number, cols: number, out: Float32Array): void {
  for (let t = 0; t < n; t++) {
    const xo = t * cols;
    const oo = t * rows;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const w0 = r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let c = 0; c < cols; c++) {
        const xv = x[xo + c]!;
        s0 += w[w0 + c]! * xv;
        s1 += w[w1 + c]! * xv;
        s2 += w[w2 + c]! * xv;
        s3 += w[w3 + c]! * xv;
      }
      out[oo + r] = s0; out[oo + r + 1] = s1; out[oo + r + 2] = s2; out[oo + r + 3] = s3;
    }
    for (; r < rows; r++) {
      const wo = r * cols;
      let s = 0;
      for (let c = 0; c < cols; c++) s += w[wo + c]! * x[xo + c]!;
      out[oo + r] = s;
    }
  }
}

/** Called with the input (T, width) of the linears at a site, after the model's input transforms. */
export type SiteHook = (site: LinearSite, x: Float32Array, width: number) => void;

/** activation values per backend matmul call: bounds the backend's activation scratch (16 MiB of f32) */
const TOKENS_PER_CALL_VALUES = 1 << 22;

/**
 * One transformer block over T = nWindows·seq tokens at once. Scratch buffers are allocated per call
 * and dropped after it, so memory is T·(dim + qDim + 2·kvDim + 2·hidden) floats during a call. With a
 * `backend`, each linear is prepared when a run first needs it and released when the run ends.
 */
export class BlockRunner {
  readonly config: ModelConfig;
  /** RoPE tables per frequency set (model/llama.ts ropeSetsOf), each (seq, rotaryDim/2), and each layer's set */
  private readonly ropeSets: { cos: Float32Array; sin: Float32Array }[];
  private readonly ropeOfLayer: number[];
  private readonly rotDim: number;

  constructor(model: Model, readonly seq: number, readonly backend?: Backend) {
    const c = model.config;
    this.config = c;
    this.rotDim = rotaryDimOf(c);
    const half = this.rotDim / 2;
    // LongRoPE: the factor set of the model's default context (config.seqLen), as a default Llama instance uses
    const scale = c.longRope?.attentionFactor ?? 1;
    const sets = ropeSetsOf(c);
    this.ropeOfLayer = sets.ofLayer;
    this.ropeSets = sets.params.map((r) => {
      const inv = ropeInvFreq(c, model.weights.get(ROPE_FREQS), undefined, r.theta, r.linear);
      const cos = new Float32Array(seq * half);
      const sin = new Float32Array(seq * half);
      for (let p = 0; p < seq; p++) {
        for (let j = 0; j < half; j++) {
          const val = Math.fround(p * inv[j]!); // as Llama.ropeTables (run.c: f32 angle)
          cos[p * half + j] = Math.cos(val) * scale;
          sin[p * half + j] = Math.sin(val) * scale;
        }
      }
      return { cos, sin };
    });
  }

  /**
   * Token embeddings of the windows, (T, dim), from an f32 table or an embedding Weight. Dense f16/bf16
   * tables are converted row by row, so a large vocabulary never becomes a full f32 copy.
   */
  embed(embedding: Float32Array | Weight, windows: readonly Int32Array[]): Float32Array {
    const { dim, vocabSize } = this.config;
    const x = new Float32Array(windows.length * this.seq * dim);
    let row: (t: number, out: Float32Array, o: number) => void;
    if (embedding instanceof Float32Array) row = (t, out, o) => out.set(embedding.subarray(t * dim, (t + 1) * dim), o);
    else if (embedding.kind === "dense" && (embedding.tensor.dtype === "f16" || embedding.tensor.dtype === "bf16" || embedding.tensor.dtype === "f32")) {
      const d = embedding.tensor.data;
      const conv = embedding.tensor.dtype === "f16" ? f16BitsToF32 : embedding.tensor.dtype === "bf16" ? bf16BitsToF32 : (v: number) => v;
      row = (t, out, o) => { for (let i = 0; i < dim; i++) out[o + i] = conv(d[t * dim + i]!); };
    } else {
      const all = dequantizeWeight(embedding, TensorNames.tokenEmbd).data;
      row = (t, out, o) => out.set(all.subarray(t * dim, (t + 1) * dim), o);
    }
    let o = 0;
    for (const w of windows) {
      if (w.length !== this.seq) throw new QuantlabError("E_ARG", `calibration window of ${w.length} tokens, expected ${this.seq}`);
      for (const t of w) {
        if (!(t >= 0 && t < vocabSize)) throw new QuantlabError("E_ARG", `calibration token ${t} outside the vocabulary (0..${vocabSize - 1})`);
        row(t, x, o);
        o += dim;
      }
    }
    // Granite and Gemma scale the embeddings before the first block (model/llama.ts)
    const mult = this.config.multipliers;
    if (mult) scaleRows(x, x.length, mult.embedding);
    if (ARCH_TRAITS[this.config.arch].embedScaleSqrtDim) scaleRows(x, x.length, Math.fround(Math.sqrt(dim)));
    return x;
  }

  /**
   * Runs block `layer` on x (T, dim) in place (x becomes the block's output). `transforms` are the
   * model's run-time input transforms (online rotation, activation quantization), applied before the
   * hook at each site. With `stopAfter`, stops right after that site's hook and leaves x unchanged.
   *
   * `chunkWindows`: the windows go through the block that many at a time (default: all at once), so the
   * scratch is that chunk's (the FFN's two T × hidden buffers dominate: 2 GiB at T = 32768, hidden 8192)
   * and the hook is called once per chunk with the chunk's rows. Every value is that of the one-chunk
   * run when a chunk's token count is a multiple of 256 (`alignedChunkWindows`): the backend's f32 mat-mat
   * gives a token's row the same bits for any call length that is a multiple of 16, and the Gram kernels
   * sum 256-token panels from each call's first token.
   *
   * `cache` keeps the attention output and the residual after attention of a run for the next runs of the
   * same block (BlockPassCache), which resume after them when the weights they came from are the same
   * arrays; the hook must then only read its buffers, and `hookSites` names the sites it reads.
   */
  run(layer: number, bw: BlockWeights, x: Float32Array, opts: { transforms?: InputTransforms; hook?: SiteHook; stopAfter?: LinearSite; chunkWindows?: number; cache?: BlockPassCache; hookSites?: readonly LinearSite[] } = {}): void {
    const c = this.config;
    const { dim } = c;
    const L = this.seq;
    if (x.length % (L * dim) !== 0) throw new QuantlabError("E_ARG", `block input of ${x.length} values is not whole windows of ${L}×${dim}`);
    const T = x.length / dim;
    const nWin = T / L;
    const cw = opts.chunkWindows ?? nWin;
    if (!(Number.isInteger(cw) && cw >= 1)) throw new QuantlabError("E_ARG", `BlockRunner: chunkWindows must be a positive integer, got ${cw}`);
    const { transforms, hook, stopAfter, cache } = opts;
    if (cache && hook && !opts.hookSites) throw new QuantlabError("E_ARG", "BlockRunner: a run with a cache and a hook must name the hook's sites (hookSites)");
    const hookSites = hook ? opts.hookSites ?? ["attn_in", "attn_out_in", "ffn_in", "ffn_down_in"] : [];
    const stopIdx = stopAfter ? SITE_ORDER.indexOf(stopAfter) : 4;
    const firstHook = Math.min(stopIdx, ...hookSites.map((s) => SITE_ORDER.indexOf(s)));
    // resume after the deepest cached stage this run may skip: x1 (residual after attention) serves runs
    // that start reading at ffn_in; att (the attention output, transformed) runs from attn_out_in on
    let from: "start" | "att" | "x1" = "start";
    let useHb = false;
    if (cache) {
      // a different block, or a run that did not finish (an error): start afresh
      if (cache.layer !== layer || cache.tokens !== T || cache.attFilling || cache.x1Filling || cache.hbFilling) cache.reset(layer, T);
      const attKey = [x, transforms, bw.attnNorm, bw.wq, bw.wk, bw.wv, bw.bq, bw.bk, bw.bv, bw.qNorm, bw.kNorm];
      const x1Key = [...attKey, bw.wo, bw.postAttnNorm];
      if (firstHook >= 2 && cache.x1 && sameKey(cache.x1Key!, x1Key)) from = "x1";
      else if (firstHook >= 1 && cache.att && cache.attKey && sameKey(cache.attKey, attKey)) from = "att";
      if (cache.inputSpent === x && from !== "x1") {
        throw new QuantlabError("E_INTERNAL", `BlockRunner: block ${layer}'s input was overwritten with its residual after attention (BlockPassCache overwriteInput); a run from an earlier site needs a cache without overwriteInput`);
      }
      // what this run leaves in the cache: the attention output when it stops at its site, else x1
      if (from === "start" && stopIdx === 1) cache.startAtt(attKey, T * c.nHeads * c.headDim);
      if (from !== "x1" && stopIdx >= 2) cache.startX1(x1Key, x, from === "att");
      // the FFN-down input (transformed), up to the cache's ffnBytes in whole chunks, from its site's pass to the
      // block's last pass (no hook: it reads the block output only)
      const hbKey = [...x1Key, bw.ffnNorm, bw.gate, bw.up];
      if (from === "x1" && stopIdx === 3 && cache.ffnBytes > 0) {
        const perChunk = cw * L * c.hiddenDim;
        cache.startHb(hbKey, Math.min(T * c.hiddenDim, Math.floor(cache.ffnBytes / 4 / perChunk) * perChunk));
      }
      useHb = from === "x1" && stopIdx === 4 && !hook && !!cache.hb && sameKey(cache.hbKey!, hbKey);
    }
    const scratch = new Map<string, Float32Array>();
    const buf = (name: string, n: number, zero = false): Float32Array => {
      let b = scratch.get(name);
      if (!b || b.length < n) { b = new Float32Array(n); scratch.set(name, b); }
      const v = b.subarray(0, n);
      if (zero) v.fill(0);
      return v;
    };
    const prepared = new Map<string, PreparedWeight>();
    try {
      for (let w0 = 0; w0 < nWin; w0 += cw) {
        const t0 = w0 * L, t1 = Math.min(nWin, w0 + cw) * L;
        const n = t1 - t0;
        const site = (s: LinearSite, b: Float32Array, width: number, transformed = false): boolean => {
          if (transforms && !transformed) applyInputTransforms(transforms, layer, s, b, n, width);
          if (hook && hookSites.includes(s)) hook(s, b, width);
          return stopAfter === s;
        };
        this.chunk(layer, bw, x, t0, t1, from, cache, useHb, buf, prepared, site);
      }
      if (cache) {
        cache.finish();
        // the run wrote x: nothing kept describes the new x
        if (!stopAfter) { cache.reset(layer, T); cache.inputSpent = undefined; }
      }
    } finally {
      for (const p of prepared.values()) this.backend!.release(p);
    }
  }

  /** out (n, rows) = x (n, cols) · wᵀ for one or more weights reading the same x, on the backend (each
   * prepared once per run) or in plain TS. */
  private matmuls(layer: number, jobs: readonly { k: LinearKey; w: Float32Array; rows: number; out: Float32Array }[], x: Float32Array, n: number, cols: number, prepared: Map<string, PreparedWeight>): void {
    const be = this.backend;
    if (!be) {
      for (const j of jobs) matmulXWt(x, n, j.w, j.rows, cols, j.out);
      return;
    }
    const pws = jobs.map((j) => {
      const name = linearName(layer, j.k);
      let pw = prepared.get(name);
      if (!pw) { pw = be.prepare({ kind: "dense", tensor: Tensor.fromF32([j.rows, cols], j.w) }, name); prepared.set(name, pw); }
      return pw;
    });
    const step = Math.max(1, Math.floor(TOKENS_PER_CALL_VALUES / Math.max(cols, ...jobs.map((j) => j.rows))));
    for (let t = 0; t < n; t += step) {
      const m = Math.min(step, n - t);
      const xs = x.subarray(t * cols, (t + m) * cols);
      matmulMany(be, jobs.map((j, i) => ({ w: pws[i]!, x: xs, out: j.out.subarray(t * j.rows, (t + m) * j.rows) })), m);
    }
  }

  /** The block on tokens t0..t1 (whole windows) of x, from the stage `from` (see run). */
  private chunk(layer: number, bw: BlockWeights, x: Float32Array, t0: number, t1: number, from: "start" | "att" | "x1", cache: BlockPassCache | undefined, useHb: boolean,
    buf: (name: string, n: number, zero?: boolean) => Float32Array, prepared: Map<string, PreparedWeight>,
    site: (s: LinearSite, b: Float32Array, width: number, transformed?: boolean) => boolean): void {
    const c = this.config;
    const { dim, hiddenDim: hidden, headDim: hd, nHeads, nKvHeads } = c;
    const L = this.seq;
    const T = t1 - t0;
    const nWin = T / L;
    const qDim = nHeads * hd, kvDim = nKvHeads * hd;
    const traits = ARCH_TRAITS[c.arch];
    const mult = c.multipliers;
    const xc = x.subarray(t0 * dim, t1 * dim);
    const xb = buf("xb", T * dim);
    let x1: Float32Array;
    if (from === "x1") x1 = cache!.x1!.subarray(t0 * dim, t1 * dim);
    else {
      let att: Float32Array;
      if (from === "att") {
        att = cache!.att!.subarray(t0 * qDim, t1 * qDim);
        if (site("attn_out_in", att, qDim, true)) return;
      } else {
        // no pre-branch norm (OLMo 2): the attention reads a copy of the stream
        if (bw.attnNorm) rmsnormRows(xb, xc, bw.attnNorm, T, dim, c.normEps);
        else xb.set(xc);
        if (site("attn_in", xb, dim)) return;
        const q = buf("q", T * qDim), k = buf("k", T * kvDim), v = buf("v", T * kvDim);
        this.matmuls(layer, [{ k: "wq", w: bw.wq, rows: qDim, out: q }, { k: "wk", w: bw.wk, rows: kvDim, out: k }, { k: "wv", w: bw.wv, rows: kvDim, out: v }], xb, T, dim, prepared);
        att = cache?.att && cache.attFilling ? cache.att.subarray(t0 * qDim, t1 * qDim) : buf("att", T * qDim, true);
        this.attention(layer, bw, q, k, v, att, T, nWin);
        if (site("attn_out_in", att, qDim)) return;
      }
      const proj = buf("proj", T * dim);
      this.matmuls(layer, [{ k: "wo", w: bw.wo, rows: dim, out: proj }], att, T, qDim, prepared);
      x1 = cache?.x1 && cache.x1Filling ? cache.x1.subarray(t0 * dim, t1 * dim) : buf("x1", T * dim); // residual after attention
      if (bw.postAttnNorm) rmsnormRows(proj, proj, bw.postAttnNorm, T, dim, c.normEps);
      if (mult) scaleRows(proj, T * dim, mult.residual);
      for (let i = 0; i < T * dim; i++) x1[i] = xc[i]! + proj[i]!;
    }
    const cachedHb = cache?.hb && t1 * hidden <= cache.hb.length ? cache.hb.subarray(t0 * hidden, t1 * hidden) : undefined;
    let hb: Float32Array;
    if (useHb && cachedHb) hb = cachedHb;
    else {
      if (bw.ffnNorm) rmsnormRows(xb, x1, bw.ffnNorm, T, dim, c.normEps);
      else xb.set(x1);
      if (site("ffn_in", xb, dim)) return;
      hb = cachedHb && cache!.hbFilling ? cachedHb : buf("hb", T * hidden);
      const hb2 = buf("hb2", T * hidden);
      this.matmuls(layer, [{ k: "gate", w: bw.gate, rows: hidden, out: hb }, { k: "up", w: bw.up, rows: hidden, out: hb2 }], xb, T, dim, prepared);
      gatedActivation(undefined, traits, hb, hb2, T * hidden);
      if (site("ffn_down_in", hb, hidden)) return;
    }
    const proj = buf("proj", T * dim);
    this.matmuls(layer, [{ k: "down", w: bw.down, rows: dim, out: proj }], hb, T, hidden, prepared);
    if (bw.postFfnNorm) rmsnormRows(proj, proj, bw.postFfnNorm, T, dim, c.normEps);
    if (mult) scaleRows(proj, T * dim, mult.residual);
    for (let i = 0; i < T * dim; i++) xc[i] = x1[i]! + proj[i]!;
  }

  /** q, k (RoPE applied here), v of T tokens (whole windows) → att (T, qDim), which must be zero on entry. */
  private attention(layer: number, bw: BlockWeights, q: Float32Array, k: Float32Array, v: Float32Array, att: Float32Array, T: number, nWin: number): void {
    const c = this.config;
    const { headDim: hd, nHeads, nKvHeads } = c;
    const L = this.seq;
    const qDim = nHeads * hd, kvDim = nKvHeads * hd;
    qkvTraits(bw, q, k, v, T, qDim, kvDim, hd, c.normEps);
    const half = this.rotDim / 2;
    const traits = ARCH_TRAITS[c.arch];
    const rot = traits.rope === "neox" ? ropeNeox : rope;
    // Granite / Gemma: q pre-scaled as the forward pass does (model/llama.ts queryPrescale), before RoPE as there
    const qScale = queryPrescale(c);
    if (qScale !== 1) scaleRows(q, T * qDim, qScale);
    const { cos, sin } = this.ropeSets[this.ropeOfLayer[layer]!]!;
    for (let t = 0; t < T; t++) {
      const p = t % L;
      rot(q, t * qDim, qDim, hd, cos, sin, p * half, this.rotDim);
      rot(k, t * kvDim, kvDim, hd, cos, sin, p * half, this.rotDim);
    }
    attendWindows(q, k, v, att, nWin, L, nHeads, nKvHeads, hd, layerWindow(c, layer), c.attnSoftcap);
  }
}

/**
 * Causal softmax attention of nWin windows of L positions (q, att: (nWin·L, nHeads·hd); k, v: (nWin·L,
 * nKvHeads·hd); att zero on entry), with the arithmetic of the per-head loop this replaces, value for value:
 * s = Σ_d q·k in f64 over d in order, score fround(s) / fround(√hd) (soft-capped) stored in f32, the running
 * max over the unrounded scores, e = exp(score − max) stored in f32 and summed unrounded, att += (e / sum)·v
 * rounded to f32 at every key in order. The query heads that share a KV head (grouped-query attention) are
 * taken together, four at a time, so each key and value row is read once for them.
 */
export function attendWindows(q: Float32Array, k: Float32Array, v: Float32Array, att: Float32Array, nWin: number, L: number,
  nHeads: number, nKvHeads: number, hd: number, window?: number, cap?: number): void {
  const qDim = nHeads * hd, kvDim = nKvHeads * hd;
  const kvMul = nHeads / nKvHeads;
  const scale = Math.fround(Math.sqrt(hd));
  const scores = new Float32Array(kvMul * L);
  const max = new Float64Array(kvMul), sum = new Float64Array(kvMul);
  const score = (hh: number, j: number, s: number): void => {
    let sc = Math.fround(s) / scale;
    if (cap !== undefined) sc = cap * Math.tanh(sc / cap); // Gemma 2's soft-cap (model/kv-cache.ts expScores)
    scores[hh * L + j] = sc;
    if (sc > max[hh]!) max[hh] = sc;
  };
  for (let w = 0; w < nWin; w++) {
    const t0 = w * L;
    for (let i = 0; i < L; i++) {
      const ti = t0 + i;
      // a sliding window (Mistral) masks keys older than W positions, as model/kv-cache.ts attendRef does
      const j0 = window !== undefined ? Math.max(0, i + 1 - window) : 0;
      for (let g = 0; g < nKvHeads; g++) {
        const h0 = g * kvMul;
        const qb = ti * qDim + h0 * hd;
        max.fill(-Infinity);
        for (let hh = 0; hh < kvMul; hh++) for (let j = 0; j < j0; j++) scores[hh * L + j] = -Infinity;
        for (let j = j0; j <= i; j++) {
          const ko = (t0 + j) * kvDim + g * hd;
          let hh = 0;
          for (; hh + 4 <= kvMul; hh += 4) {
            const qa = qb + hh * hd, qc = qa + hd, qe = qc + hd, qg = qe + hd;
            let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (let d = 0; d < hd; d++) {
              const kv = k[ko + d]!;
              s0 += q[qa + d]! * kv;
              s1 += q[qc + d]! * kv;
              s2 += q[qe + d]! * kv;
              s3 += q[qg + d]! * kv;
            }
            score(hh, j, s0); score(hh + 1, j, s1); score(hh + 2, j, s2); score(hh + 3, j, s3);
          }
          for (; hh < kvMul; hh++) {
            const qa = qb + hh * hd;
            let s0 = 0;
            for (let d = 0; d < hd; d++) s0 += q[qa + d]! * k[ko + d]!;
            score(hh, j, s0);
          }
        }
        for (let hh = 0; hh < kvMul; hh++) {
          const so = hh * L, mx = max[hh]!;
          let sm = 0;
          for (let j = 0; j <= i; j++) {
            const e = Math.exp(scores[so + j]! - mx);
            scores[so + j] = e;
            sm += e;
          }
          sum[hh] = sm;
        }
        for (let j = 0; j <= i; j++) {
          const vo = (t0 + j) * kvDim + g * hd;
          let hh = 0;
          for (; hh + 4 <= kvMul; hh += 4) {
            const a0 = scores[hh * L + j]! / sum[hh]!, a1 = scores[(hh + 1) * L + j]! / sum[hh + 1]!;
            const a2 = scores[(hh + 2) * L + j]! / sum[hh + 2]!, a3 = scores[(hh + 3) * L + j]! / sum[hh + 3]!;
            const oa = qb + hh * hd, oc = oa + hd, oe = oc + hd, og = oe + hd;
            for (let d = 0; d < hd; d++) {
              const vv = v[vo + d]!;
              att[oa + d] += a0 * vv;
              att[oc + d] += a1 * vv;
              att[oe + d] += a2 * vv;
              att[og + d] += a3 * vv;
            }
          }
          for (; hh < kvMul; hh++) {
            const a0 = scores[hh * L + j]! / sum[hh]!;
            const oa = qb + hh * hd;
            for (let d = 0; d < hd; d++) att[oa + d] += a0 * v[vo + d]!;
          }
        }
      }
    }
  }
}

const SITE_ORDER: readonly LinearSite[] = ["attn_in", "attn_out_in", "ffn_in", "ffn_down_in"];

function sameKey(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Windows per BlockRunner chunk: the fewest whole windows holding at least `minTokens` tokens whose count
 * is a multiple of 256 (so chunked runs give the one-chunk run's values), at most all `nWin`.
 */
export function alignedChunkWindows(seq: number, nWin: number, minTokens = 1024): number {
  const g = (a: number, b: number): number => (b === 0 ? a : g(b, a % b));
  const unit = 256 / g(seq, 256); // windows per multiple of 256 tokens
  const k = Math.max(1, Math.ceil(minTokens / (unit * seq))) * unit;
  return Math.min(nWin, k);
}

/**
 * Intermediates of one block's calibration passes, kept between BlockRunner runs of that block: the
 * attention output (T, qDim, after the attn_out_in input transforms) and the residual after attention
 * (T, dim), each with the arrays it was computed from (the block input, the transforms, the weights up to
 * there). A run that reads no earlier site resumes after the deepest entry whose arrays are the same
 * (weights are replaced, not changed in place, between runs: the layer-by-layer pipeline's setQuant), so
 * GPTQ's per-site passes compute the attention once and the residual once per block.
 */
export class BlockPassCache {
  /** the block input array that holds the residual after attention now (overwriteInput) */
  inputSpent?: Float32Array;
  /**
   * `overwriteInput`: the residual after attention is written over the block input x (x1 = x + attention
   * output, in place), which no run but those from ffn_in on may read afterwards (they throw otherwise):
   * T·dim floats less (256 MiB at 32768 tokens of width 2048). The block output then comes from x1 in place.
   * `ffnBytes`: the FFN-down input of up to that many bytes of whole chunks (T × hidden: 1 GiB at 32768 tokens
   * of 8192) is kept from the pass that captures it to the block's last pass, which then skips gate and up
   * for those chunks (2 · dim · hidden multiply-adds a token).
   */
  constructor(readonly overwriteInput = false, readonly ffnBytes = 0) {}

  layer = -1;
  tokens = 0;
  att?: Float32Array;
  attKey?: readonly unknown[];
  attFilling = false;
  x1?: Float32Array;
  x1Key?: readonly unknown[];
  x1Filling = false;
  hb?: Float32Array;
  hbKey?: readonly unknown[];
  hbFilling = false;

  startHb(key: readonly unknown[], n: number): void {
    this.hb = n > 0 ? new Float32Array(n) : undefined;
    this.hbKey = key;
    this.hbFilling = n > 0;
  }

  reset(layer: number, tokens: number): void {
    this.layer = layer;
    this.tokens = tokens;
    this.att = this.attKey = this.x1 = this.x1Key = this.hb = this.hbKey = undefined;
    this.attFilling = this.x1Filling = this.hbFilling = false;
  }

  startAtt(key: readonly unknown[], n: number): void {
    this.att = new Float32Array(n);
    this.attKey = key;
    this.attFilling = true;
  }

  /** `overAtt`: the run reads the cached attention output, whose chunks it may overwrite with x1's once
   * read (qDim = dim, as in Llama: the residual then takes no memory of its own) */
  startX1(key: readonly unknown[], x: Float32Array, overAtt = false): void {
    const n = x.length;
    if (this.overwriteInput) {
      this.x1 = x;
      this.inputSpent = x;
      if (overAtt) this.attKey = undefined;
    } else if (overAtt && this.att?.length === n) {
      this.x1 = this.att;
      this.attKey = undefined; // no longer the attention output once the run has begun
    } else this.x1 = new Float32Array(n);
    this.x1Key = key;
    this.x1Filling = true;
  }

  /** a run went through every chunk: what it filled is valid; x1 makes the attention output redundant */
  finish(): void {
    if (this.x1Filling) { this.att = this.attKey = undefined; this.attFilling = false; }
    this.attFilling = this.x1Filling = this.hbFilling = false;
  }
}

/** out[i] = w ⊙ x[i] / sqrt(mean(x[i]²) + eps): the forward pass's own (model/llama.ts). */
export { rmsnormRows as rmsnorm };
