/**
 * The GGUF route of the transforming methods (AWQ, rotations): the transform is applied offline to the
 * f32 weights, so the result is a plain model llama.cpp's graph runs unchanged, and the preset then
 * quantizes it as it would any F32 model (methods/ggml-preset.ts; the importance matrix and GPTQ's
 * Hessians are collected on the transformed model, i.e. on the inputs the stored weights really see).
 *
 * - Residual rotation R1 (QuaRot §4, SpinQuant's R1): every RMSNorm weight is folded into the linears
 *   reading it (the norms become ones: llama.cpp still runs RMSNorm, which commutes with an orthogonal R
 *   only with a unit weight), linears reading the residual take W·Rᵀ, linears writing it R·W (and their
 *   output biases R·b), the token embedding rows R·e. The output head takes the output norm and Rᵀ, so
 *   it differs from the embedding: a tied model comes out untied (output.weight written). The online
 *   FFN-down rotation R4 is not applied (llama.cpp cannot run it): recipes ask for this with
 *   `rotate: {mode: "residual"}` and anything else is refused before any work.
 * - AWQ (algos/awq.ts): per input site the scales s are searched against the ggml type each linear is
 *   stored in (its mix choice: Q4_0, Q4_K, Q6_K …, with ggml's own quantizer, no importance matrix), the
 *   site's linears become W·diag(s) (clipped, unless the method picks codes itself), 1/s folds into the
 *   RMSNorm weight (q/k/v ← attn_norm, gate/up ← ffn_norm) or into the rows of the previous linear
 *   (v → o without grouped-query attention, up → down) and that linear's bias. Blocks are calibrated in
 *   order, each on the outputs of the blocks before it as they will be stored (ggml round trip).
 *
 * Per architecture (model/config.ts ARCH_TRAITS):
 * - Phi-3: the file's fused attn_qkv / ffn_up are split into q/k/v and gate/up at load and fused again when written;
 *   a scale is per input column, so W·diag(s) on each part is W·diag(s) on the fused tensor, and v → o / up → down
 *   divide the v / up row slices. Partial rotary and LongRoPE act on q/k inside a head: the residual rotation and
 *   the input scales never reach them.
 * - Gemma 2/3: quantlab holds each RMSNorm weight in its GGUF form, the whole multiplier 1 + w (the HF loader adds
 *   the 1, the HF writer subtracts it), so dividing the stored weight by s is exact (no w' = (1 + w)/s − 1 here);
 *   the post-branch norms (post_attention_norm, post_ffw_norm) sit after o / down and are carried unchanged — they
 *   normalize the branch output, which the input scales do not change. The residual rotation is refused: a
 *   post-branch norm's weight multiplies the branch output element by element before the residual add, which does
 *   not commute with R (RMSNorm(R·y)·w ≠ R·(RMSNorm(y)·w)), and it cannot be folded into o / down through the norm.
 * - OLMo 2: no norm before q/k/v or gate/up (post-norms only), so the attn_in and ffn_in scales have nowhere to go
 *   (scaling the residual stream itself would change every later block): those groups are skipped, listed in
 *   `skipped` (a warning in the CLI, `noScaleFold` in the --json tensor list); v → o (without GQA) and up → down
 *   run. The residual rotation is refused (post-norms, as Gemma).
 *
 * Anything else these folds do not know (an unknown tensor, a norm bias, an unknown config field) is refused by name.
 */
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { Tensor } from "../core/tensor.js";
import type { Weight } from "../core/weight.js";
import { dequantizeRow, hasGgmlCodec, quantizeRow } from "../ggml/codecs.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../ggml/types.js";
import type { Backend } from "../kernels/types.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { ARCH_TRAITS, TensorNames } from "../model/config.js";
import type { LinearSite } from "../model/transforms.js";
import type { Model } from "../model/weights.js";
import { awqQuantizePrep, awqSearchScales } from "./awq.js";
import { BlockRunner, blockWeights, LINEAR_KEYS, linearName, type LinearKey } from "./calib.js";
import { colsOf, rotateBlock, rowsOf, SITE_GROUPS } from "./pipeline.js";
import type { GroupQuantizer } from "./quantizer.js";
import { foldNormInPlace, randomizedHadamard, rotateInputsInPlace, type Rotation } from "./rotation.js";
import { rtnQuantize } from "./rtn.js";
import { smoothQuantScales } from "./smoothquant.js";
import { ChannelStats, divideNormInPlace, divideRowsInPlace, scaleColumnsInPlace } from "./stats.js";

export interface GgmlTransformOptions {
  /** residual rotation R1 (mode must be "residual": the online R4 cannot reach GGUF) */
  rotate?: { seed: number; mode?: "residual" };
  /** AWQ scale search (and clipping search when `clip`) against each linear's ggml type */
  awq?: { grid: number; clip: boolean; clipGrid?: number; maxShrink?: number };
  /**
   * SmoothQuant's scales s = max|x|^α / max|W|^(1−α) per input site, folded as AWQ's are. llama.cpp rounds
   * every quantized mat-vec's activations to 8 bits per 32-block (Q8_0 / Q8_K): the migration evens out the
   * channels those blocks hold, at the cost of harder weights
   */
  smooth?: { alpha: number };
  /** the ggml type a block linear will be stored in (the preset's mix after overrides) */
  typeOf?: (name: string) => GgmlType;
  /** calibration windows (AWQ), all the same length */
  windows?: readonly Int32Array[];
  backend?: Backend;
  progress?: Progress;
}

export interface GgmlTransformResult {
  model: Model;
  /** AWQ: the α chosen per block linear */
  alpha: Record<string, number>;
  calibTokens: number;
  /**
   * input sites whose scales could not be folded and were skipped (their linears keep their weights), with why:
   * OLMo 2's attn_in / ffn_in (no norm before the branch), attn_out_in under grouped-query attention
   */
  skipped: { site: string; linears: string[]; reason: string }[];
}

const FLOAT_TYPES: ReadonlySet<GgmlType> = new Set([GgmlType.F32, GgmlType.F16, GgmlType.BF16]);

/**
 * ggml's quantizer of `type` as a column-group quantizer (one group per ggml block): fit encodes the
 * block with llama.cpp's reference quantizer and decodes it; float types round-trip unchanged.
 */
export function ggmlGroupQuantizer(type: GgmlType): GroupQuantizer<Float32Array> {
  if (FLOAT_TYPES.has(type)) return { name: ggmlTypeName(type), groupSize: 0, fit: () => new Float32Array(0), fakeQuant: (x) => x };
  if (!hasGgmlCodec(type)) throw new QuantlabError("E_UNSUPPORTED", `no quantizer for ${ggmlTypeName(type)}`);
  const { blockSize: B, bytesPerBlock } = GGML_TYPES[type];
  const src = new Float32Array(B);
  const block = new Uint8Array(bytesPerBlock);
  return {
    name: ggmlTypeName(type),
    groupSize: B,
    fit(segment) {
      if (segment.length !== B) throw new QuantlabError("E_ARG", `${ggmlTypeName(type)}: a group of ${segment.length} values, blocks hold ${B}`);
      for (let i = 0; i < B; i++) src[i] = segment[i]!;
      quantizeRow(type, src, block, B);
      const out = new Float32Array(B);
      dequantizeRow(type, block, out, B);
      return out;
    },
    fakeQuant: (_x, p, i) => p[i]!,
  };
}

/** Block tensors the folds carry (by their suffix after `blk.N.`), and what each transform does to them. */
const BLOCK_SUFFIXES = new Set([
  "attn_norm.weight", "ffn_norm.weight",
  // Gemma 2/3, OLMo 2: after o / down, before the residual add; carried unchanged (the rotation refuses them)
  "post_attention_norm.weight", "post_ffw_norm.weight",
  "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight",
  // per-head q/k norms act after the projections: neither an input rotation nor an input scaling reaches them
  "attn_q_norm.weight", "attn_k_norm.weight",
  // q/k/gate biases are untouched; v/up biases take AWQ's 1/s with their rows; o/down biases take R
  "attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_output.bias", "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias",
]);
const POST_NORMS = new Set(["post_attention_norm.weight", "post_ffw_norm.weight"]);
const GLOBAL_NAMES = new Set([TensorNames.tokenEmbd, TensorNames.outputNorm, TensorNames.output, "rope_freqs.weight"]);
// Granite's multipliers scale whole branches / the embedding / the logits by scalars, which commute with an
// orthogonal R and with per-channel scales; sliding windows (and their per-layer pattern), RoPE (partial rotary,
// LongRoPE, local base, linear scaling), the query scale and the attention soft-cap act on q/k inside a head; the
// final soft-cap acts on logits the folds leave unchanged
const CONFIG_KEYS = new Set(["arch", "dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "headDim", "vocabSize", "seqLen", "ropeTheta", "normEps", "tiedEmbeddings", "ropeScaling", "multipliers", "slidingWindow", "name",
  "slidingLayers", "ropeThetaLocal", "ropeLinearFactor", "attnScale", "attnSoftcap", "finalSoftcap", "rotaryDim", "longRope"]);

/** Refuses, by name, a model the folds do not cover (before any work); `rotate`: the residual rotation is asked for. */
export function checkGgmlTransformable(model: Model, what: string, rotate = false): void {
  const c = model.config as unknown as Record<string, unknown>;
  const traits = ARCH_TRAITS[model.config.arch];
  if (!traits) throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: ${what}: unknown architecture ${String(c.arch)}`);
  if (rotate && traits.norms !== "pre") {
    throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: ${what}: ${model.config.arch}'s ${traits.norms === "sandwich" ? "post-branch norms (post_attention_norm, post_ffw_norm)" : "post-norms (no norm before its branches)"} do not commute with a residual rotation: the norm weight multiplies the branch output element by element before the residual add, and cannot be folded into o / down through the norm`);
  }
  for (const k of Object.keys(c)) {
    if (!CONFIG_KEYS.has(k) && c[k] !== undefined) throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: ${what}: the model's config field ${k} is not one the GGUF folds know how to carry`);
  }
  if (model.inputTransforms) throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: ${what}: the model already has run-time input transforms`);
  for (const name of model.weights.keys()) {
    const m = /^blk\.\d+\.(.+)$/.exec(name);
    // a post-branch norm is carried only where the architecture's block has one (else nothing would read it right)
    const known = m ? BLOCK_SUFFIXES.has(m[1]!) && (traits.norms !== "pre" || !POST_NORMS.has(m[1]!)) : GLOBAL_NAMES.has(name);
    if (!known) {
      throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: ${what}: tensor ${name} is not one the folds into the norms / linears know how to carry (a norm bias or an unknown tensor cannot be folded)`);
    }
  }
}

function f32Dense(shape: readonly number[], data: Float32Array): Weight {
  return { kind: "dense", tensor: new Tensor("f32", shape, data) };
}

function f32Copy(model: Model, name: string): Float32Array {
  return new Float32Array(dequantizeWeight(model.weights.get(name)!, name).data);
}

const BIAS_OF: Partial<Record<LinearKey, string>> = { wv: "attn_v.bias", up: "ffn_up.bias", wo: "attn_output.bias", down: "ffn_down.bias" };

/**
 * Applies the rotation and/or AWQ scales offline. Returns an f32 model of the same architecture (untied
 * when rotated); the input model is not modified.
 */
export function transformForGgml(model: Model, opts: GgmlTransformOptions): GgmlTransformResult {
  const what = [opts.rotate ? "rotate" : "", opts.awq ? "awq" : "", opts.smooth ? "smoothquant" : ""].filter(Boolean).join("+");
  if (opts.awq && opts.smooth) throw new QuantlabError("E_ARG", "awq and smoothquant are two ways of choosing the same per-channel scales: give one");
  if (opts.rotate && opts.rotate.mode !== "residual") {
    throw new QuantlabError("E_UNSUPPORTED", "rotate (mode full): the online FFN-down Hadamard rotation R4 is applied at run time, which llama.cpp cannot do; for GGUF use the residual rotation alone (rotate mode \"residual\", --rotate residual)");
  }
  checkGgmlTransformable(model, what, !!opts.rotate);
  const c = model.config;
  const skipped: GgmlTransformResult["skipped"] = [];
  const W = model.weights;
  const progress = opts.progress ?? noProgress;
  const out = new Map<string, Weight>(W);
  const config = { ...c };
  const alpha: Record<string, number> = {};

  let R: Rotation | undefined;
  let embedding: Float32Array | Weight = W.get(TensorNames.tokenEmbd)!;
  if (opts.rotate) {
    R = randomizedHadamard(c.dim, opts.rotate.seed);
    const head = f32Copy(model, W.has(TensorNames.output) ? TensorNames.output : TensorNames.tokenEmbd);
    const outNorm = f32Copy(model, TensorNames.outputNorm);
    foldNormInPlace(outNorm, [{ w: head, rows: c.vocabSize }]);
    rotateInputsInPlace(head, c.vocabSize, c.dim, R);
    const table = f32Copy(model, TensorNames.tokenEmbd);
    rotateInputsInPlace(table, c.vocabSize, c.dim, R); // each row is a residual vector: e ← R·e
    embedding = table;
    out.set(TensorNames.tokenEmbd, f32Dense([c.vocabSize, c.dim], table));
    out.set(TensorNames.output, f32Dense([c.vocabSize, c.dim], head));
    out.set(TensorNames.outputNorm, f32Dense([c.dim], outNorm));
    config.tiedEmbeddings = false;
  }

  let runner: BlockRunner | undefined;
  let X: Float32Array | undefined;
  if (opts.awq || opts.smooth) {
    const windows = opts.windows ?? [];
    if (windows.length === 0) throw new QuantlabError("E_ARG", `${what} for a GGUF preset needs calibration windows`);
    const seq = windows[0]!.length;
    for (const w of windows) if (w.length !== seq) throw new QuantlabError("E_ARG", "calibration windows must all have the same length");
    if (!opts.typeOf) throw new QuantlabError("E_INTERNAL", `${what} for a GGUF preset without the linears' types`);
    runner = new BlockRunner(model, seq, opts.backend);
    X = runner.embed(embedding, windows);
  }
  const T = X ? X.length / c.dim : 0;
  progress.start(c.nLayers, what);
  for (let l = 0; l < c.nLayers; l++) {
    const bw = blockWeights(model, l);
    const bias = (suffix: string): Float32Array | undefined => {
      // v's bias is part of the block the calibration forward runs (bw.bv): fold into that same array, so the
      // next block is calibrated on what will be stored
      if (suffix === BIAS_OF.wv && bw.bv) return bw.bv;
      const n = `blk.${l}.${suffix}`;
      return W.has(n) ? f32Copy(model, n) : undefined;
    };
    const biases = new Map<string, Float32Array>();
    for (const s of Object.values(BIAS_OF)) {
      const b = bias(s!);
      if (b) biases.set(s!, b);
    }
    if (R) {
      rotateBlock(bw, c, R);
      for (const s of [BIAS_OF.wo!, BIAS_OF.down!]) { const b = biases.get(s); if (b) R.apply(b); } // the output bias is a residual vector
    }
    if (runner && X) {
      const types = new Map<LinearKey, GgmlType>(LINEAR_KEYS.map((k) => [k, opts.typeOf!(linearName(l, k))]));
      const stats = new Map<LinearSite, ChannelStats>();
      runner.run(l, bw, X, {
        hook: (site, buf, width) => {
          const s = new ChannelStats(width, { gram: !!opts.awq });
          s.add(buf, T);
          stats.set(site, s);
        },
        stopAfter: "ffn_down_in",
      });
      for (const g of SITE_GROUPS) {
        const cols = colsOf(g.keys[0]!, c);
        const foldNorm = g.site === "attn_in" ? bw.attnNorm : g.site === "ffn_in" ? bw.ffnNorm : undefined;
        // v → o needs v's rows to match o's columns one to one, which grouped-query attention breaks (llm-awq skips it too)
        const foldPrev: LinearKey | undefined = g.site === "ffn_down_in" ? "up" : g.site === "attn_out_in" && c.nHeads === c.nKvHeads ? "wv" : undefined;
        if (g.keys.every((k) => FLOAT_TYPES.has(types.get(k)!))) continue; // nothing quantized reads this site
        if (!foldNorm && !foldPrev) {
          const reason = g.site === "attn_out_in" ? `grouped-query attention (${c.nHeads} query heads over ${c.nKvHeads} KV heads): v's rows do not match o's columns one to one` : `no norm before the branch (${c.arch}: post-norms only)`;
          skipped.push({ site: `blk.${l}.${g.site}`, linears: g.keys.map((k) => linearName(l, k)), reason });
          continue;
        }
        const st = stats.get(g.site)!;
        const linears = g.keys.map((k) => ({ w: bw[k], rows: rowsOf(k, c) }));
        const name = `blk.${l}.${g.site}`;
        let s: Float64Array;
        if (opts.smooth) {
          s = smoothQuantScales(st.absMax, linears, opts.smooth.alpha);
          for (const k of g.keys) { scaleColumnsInPlace(bw[k], rowsOf(k, c), cols, s); alpha[linearName(l, k)] = opts.smooth.alpha; }
        } else {
          const quantizers = g.keys.map((k) => ggmlGroupQuantizer(types.get(k)!));
          const awqStats = { meanAbs: st.meanAbs(), gram: st.gram!, nTokens: st.nTokens };
          const a = opts.awq!;
          if (a.clip) {
            const r = awqQuantizePrep(linears, cols, awqStats, quantizers, { grid: a.grid, ...(a.clipGrid !== undefined ? { clipGrid: a.clipGrid } : {}), ...(a.maxShrink !== undefined ? { maxShrink: a.maxShrink } : {}), name });
            g.keys.forEach((k, i) => { bw[k].set(r.weights[i]!); alpha[linearName(l, k)] = r.alpha; });
            s = r.scales;
          } else {
            const r = awqSearchScales(linears, cols, awqStats, quantizers, { grid: a.grid, name });
            for (const k of g.keys) { scaleColumnsInPlace(bw[k], rowsOf(k, c), cols, r.scales); alpha[linearName(l, k)] = r.alpha; }
            s = r.scales;
          }
        }
        if (foldNorm) divideNormInPlace(foldNorm, s);
        else {
          divideRowsInPlace(bw[foldPrev!], rowsOf(foldPrev!, c), colsOf(foldPrev!, c), s);
          const b = biases.get(BIAS_OF[foldPrev!]!);
          if (b) for (let j = 0; j < b.length; j++) b[j]! /= s[j]!;
        }
      }
      // the next block sees this one as it will be stored
      if (l + 1 < c.nLayers) {
        const qbw = { ...bw };
        for (const k of LINEAR_KEYS) {
          const rows = rowsOf(k, c), cols = colsOf(k, c);
          const t = types.get(k)!;
          if (!FLOAT_TYPES.has(t)) qbw[k] = rtnQuantize(bw[k], rows, cols, ggmlGroupQuantizer(t)).q;
        }
        runner.run(l, qbw, X);
      }
    }
    // the pre-branch norms took 1/s (absent in OLMo 2); the post-branch norms are carried as they are (in `out` already)
    if (bw.attnNorm) out.set(TensorNames.attnNorm(l), f32Dense([c.dim], bw.attnNorm));
    if (bw.ffnNorm) out.set(TensorNames.ffnNorm(l), f32Dense([c.dim], bw.ffnNorm));
    for (const k of LINEAR_KEYS) out.set(linearName(l, k), f32Dense([rowsOf(k, c), colsOf(k, c)], bw[k]));
    for (const [s, b] of biases) out.set(`blk.${l}.${s}`, f32Dense([b.length], b));
    progress.tick();
  }
  progress.done();
  const result: Model = { config, weights: out, source: { ...model.source, format: "memory" } };
  if (model.tokenizer) result.tokenizer = model.tokenizer;
  return { model: result, alpha, calibTokens: T, skipped };
}
