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
import type { Backend, PreparedWeight } from "../kernels/types.js";
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
   * hook at each site. With `stopAfter`, returns right after that site's hook and leaves x unchanged.
   */
  run(layer: number, bw: BlockWeights, x: Float32Array, opts: { transforms?: InputTransforms; hook?: SiteHook; stopAfter?: LinearSite } = {}): void {
    const c = this.config;
    const { dim } = c;
    const L = this.seq;
    if (x.length % (L * dim) !== 0) throw new QuantlabError("E_ARG", `block input of ${x.length} values is not whole windows of ${L}×${dim}`);
    const T = x.length / dim;
    const { transforms, hook, stopAfter } = opts;
    const site = (s: LinearSite, buf: Float32Array, width: number): boolean => {
      if (transforms) applyInputTransforms(transforms, layer, s, buf, T, width);
      hook?.(s, buf, width);
      return stopAfter === s;
    };

    const xb = new Float32Array(T * dim);
    // no pre-branch norm (OLMo 2): the attention reads a copy of the stream
    if (bw.attnNorm) rmsnormRows(xb, x, bw.attnNorm, T, dim, c.normEps);
    else xb.set(x);
    if (site("attn_in", xb, dim)) return;
    const prepared: PreparedWeight[] = [];
    try {
      this.linears(layer, bw, x, xb, T, prepared, site);
    } finally {
      for (const p of prepared) this.backend!.release(p);
    }
  }

  /** out (T, rows) = x (T, cols) · wᵀ on the backend (prepared once per run) or in plain TS. */
  private matmul(name: string, w: Float32Array, x: Float32Array, T: number, rows: number, cols: number, out: Float32Array, prepared: PreparedWeight[]): void {
    const be = this.backend;
    if (!be) return matmulXWt(x, T, w, rows, cols, out);
    const pw = be.prepare({ kind: "dense", tensor: Tensor.fromF32([rows, cols], w) }, name);
    prepared.push(pw);
    const step = Math.max(1, Math.floor(TOKENS_PER_CALL_VALUES / Math.max(rows, cols)));
    for (let t = 0; t < T; t += step) {
      const m = Math.min(step, T - t);
      be.matmul(pw, x.subarray(t * cols, (t + m) * cols), m, out.subarray(t * rows, (t + m) * rows));
    }
  }

  /** The block's body after the first norm (see run); linears prepared here are pushed to `prepared`. */
  private linears(layer: number, bw: BlockWeights, x: Float32Array, xb: Float32Array, T: number, prepared: PreparedWeight[], site: (s: LinearSite, buf: Float32Array, width: number) => boolean): void {
    const c = this.config;
    const { dim, hiddenDim: hidden, headDim: hd, nHeads, nKvHeads } = c;
    const L = this.seq;
    const nWin = T / L;
    const qDim = nHeads * hd, kvDim = nKvHeads * hd;
    const mm = (k: LinearKey, x: Float32Array, rows: number, cols: number, out: Float32Array): void =>
      this.matmul(linearName(layer, k), bw[k], x, T, rows, cols, out, prepared);
    const q = new Float32Array(T * qDim);
    const k = new Float32Array(T * kvDim);
    const v = new Float32Array(T * kvDim);
    mm("wq", xb, qDim, dim, q);
    mm("wk", xb, kvDim, dim, k);
    mm("wv", xb, kvDim, dim, v);
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
    const mult = c.multipliers;
    const window = layerWindow(c, layer);
    const cap = c.attnSoftcap;
    const att = new Float32Array(T * qDim);
    const scores = new Float32Array(L);
    const kvMul = nHeads / nKvHeads;
    const scale = Math.fround(Math.sqrt(hd));
    for (let w = 0; w < nWin; w++) {
      const t0 = w * L;
      for (let i = 0; i < L; i++) {
        const ti = t0 + i;
        for (let h = 0; h < nHeads; h++) {
          const kvh = Math.floor(h / kvMul);
          const qo = ti * qDim + h * hd;
          let max = -Infinity;
          // a sliding window (Mistral) masks keys older than W positions, as model/kv-cache.ts attendRef does
          const j0 = window !== undefined ? Math.max(0, i + 1 - window) : 0;
          for (let j = 0; j < j0; j++) scores[j] = -Infinity;
          for (let j = j0; j <= i; j++) {
            const ko = (t0 + j) * kvDim + kvh * hd;
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[qo + d]! * k[ko + d]!;
            let sc = Math.fround(s) / scale;
            if (cap !== undefined) sc = cap * Math.tanh(sc / cap); // Gemma 2's soft-cap (model/kv-cache.ts expScores)
            scores[j] = sc;
            if (sc > max) max = sc;
          }
          let sum = 0;
          for (let j = 0; j <= i; j++) {
            const e = Math.exp(scores[j]! - max);
            scores[j] = e;
            sum += e;
          }
          const oo = ti * qDim + h * hd;
          for (let j = 0; j <= i; j++) {
            const a = scores[j]! / sum;
            const vo = (t0 + j) * kvDim + kvh * hd;
            for (let d = 0; d < hd; d++) att[oo + d] += a * v[vo + d]!;
          }
        }
      }
    }
    if (site("attn_out_in", att, qDim)) return;
    const proj = new Float32Array(T * dim);
    mm("wo", att, dim, qDim, proj);
    const x1 = new Float32Array(T * dim); // residual after attention (x itself stays the input until the end)
    if (bw.postAttnNorm) rmsnormRows(proj, proj, bw.postAttnNorm, T, dim, c.normEps);
    if (mult) scaleRows(proj, T * dim, mult.residual);
    for (let i = 0; i < T * dim; i++) x1[i] = x[i]! + proj[i]!;
    if (bw.ffnNorm) rmsnormRows(xb, x1, bw.ffnNorm, T, dim, c.normEps);
    else xb.set(x1);
    if (site("ffn_in", xb, dim)) return;
    const hb = new Float32Array(T * hidden);
    const hb2 = new Float32Array(T * hidden);
    mm("gate", xb, hidden, dim, hb);
    mm("up", xb, hidden, dim, hb2);
    gatedActivation(undefined, traits, hb, hb2, T * hidden);
    if (site("ffn_down_in", hb, hidden)) return;
    mm("down", hb, dim, hidden, proj);
    if (bw.postFfnNorm) rmsnormRows(proj, proj, bw.postFfnNorm, T, dim, c.normEps);
    if (mult) scaleRows(proj, T * dim, mult.residual);
    for (let i = 0; i < T * dim; i++) x[i] = x1[i]! + proj[i]!;
  }
}

/** out[i] = w ⊙ x[i] / sqrt(mean(x[i]²) + eps): the forward pass's own (model/llama.ts). */
export { rmsnormRows as rmsnorm };
