/**
 * Model-level post-training quantization: `quantizeModelPtq(model, {method, spec, rotate, calib, …})`.
 *
 * Walks the transformer blocks in order. Each block's weights are copied to f32, transformed
 * (rotation, AWQ/SmoothQuant scales folded into the RMSNorm or the previous linear), quantized with
 * the chosen method, and the quantized block is run on the calibration hidden states to produce the
 * next block's inputs. So every block is calibrated on the outputs of the already-quantized blocks
 * before it, and memory stays near one block's f32 weights plus T = samples·seq hidden states.
 *
 * Methods (all target any registry spec with channel or g<N> granularity; rtn takes any spec):
 *   rtn         round to nearest (quant's quantizeTensor), no calibration
 *   hqq         HQQ half-quadratic solver per group, no calibration (int asym/asymf specs)
 *   gptq        GPTQ, sequential inside the block: q,k,v ← attn_in; o ← attn_out_in (inputs computed
 *               with q,k,v already quantized); gate,up ← ffn_in; down ← ffn_down_in
 *   awq         AWQ scale search + clipping search on float-block inputs, scales folded, then RTN
 *   awq+gptq    AWQ scales (no clipping) folded, then GPTQ on the scaled block
 *   smoothquant SmoothQuant smoothing (α, default 0.5) folded, then RTN of the weights; for W8A8 specs
 *               (`…:a8` per-token dynamic, `…:a8s` static per-tensor)
 * `rotate` (any method): QuaRot-style randomized Hadamard rotation of the residual stream, fused into
 * the weights after folding every RMSNorm (the output head is untied), plus a rotation of the FFN-down
 * input fused into ffn_down and applied online by the forward pass (model.inputTransforms).
 * A spec with an activation part (a<b>, a<b>s) sets model.inputTransforms.activations: every block
 * linear's input is fake-quantized at run time (static scales are calibrated here).
 *
 * Where a fold is impossible the site is left unscaled: AWQ/SmoothQuant on the attention-output input
 * need v rows to match o columns one to one, which grouped-query attention breaks (llm-awq skips it too).
 */
import type { Backend } from "../kernels/types.js";
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { Tensor } from "../core/tensor.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { TensorNames } from "../model/config.js";
import { fakeQuantInputs, siteKey, type InputTransforms, type LinearSite } from "../model/transforms.js";
import type { Model } from "../model/weights.js";
import { ActivationObserver, activationQuantSpec, printSpec, quantizeTensor, toSpec, type QTensor, type QuantSpec } from "../quant/index.js";
import { awqQuantizePrep, awqSearchScales, type AwqOptions } from "./awq.js";
import { BlockRunner, LINEAR_KEYS, SITE_OF, blockWeights, linearName, type BlockWeights, type LinearKey } from "./calib.js";
import { gptqQuantize, HessianAccumulator, type GptqOptions } from "./gptq.js";
import { foldNormInPlace, randomizedHadamard, rotateInputsInPlace, rotateOutputsInPlace, type Rotation } from "./rotation.js";
import { rtnQuantize } from "./rtn.js";
import { smoothQuantScales } from "./smoothquant.js";
import { RegistryQuantizer } from "./spec-quantizer.js";
import { ChannelStats, divideNormInPlace, divideRowsInPlace, scaleColumnsInPlace } from "./stats.js";
import type { Weight } from "../core/weight.js";

export const PTQ_METHODS = ["rtn", "gptq", "awq", "awq+gptq", "hqq", "smoothquant"] as const;
export type PtqMethod = (typeof PTQ_METHODS)[number];

export interface PtqOptions {
  method: PtqMethod;
  spec: string | QuantSpec;
  /** fused randomized Hadamard rotations (+ online FFN-down rotation) */
  rotate?: boolean;
  /** seed of the rotations */
  rotateSeed?: number;
  /** calibration windows (each BOS + tokens, all the same length); needed by gptq, awq, smoothquant and static activations */
  calib?: readonly Int32Array[];
  /** which linears to quantize, by canonical name (default: every block linear) */
  include?: (name: string) => boolean;
  gptq?: Omit<GptqOptions, "name">;
  awq?: Omit<AwqOptions, "name">;
  /** SmoothQuant migration strength α (default 0.5) */
  smoothAlpha?: number;
  /** runs the calibration passes' block linears (e.g. the WASM backend); default: plain TypeScript */
  backend?: Backend;
  progress?: Progress;
  /**
   * streaming: each quantized linear is handed over here as soon as its block is done and NOT kept in
   * the returned model (whose linears are then missing), so memory stays at one block for any depth
   */
  onTensor?: (name: string, w: Weight) => void;
}

export interface PtqTensorReport {
  name: string;
  shape: [number, number];
  /** ‖W − Ŵ‖² / ‖W‖² against the (transformed) float weight the method started from */
  relErr: number;
  bitsPerWeight: number;
  seconds: number;
  /** GPTQ proxy loss, AWQ α, SmoothQuant α … where they apply */
  detail?: Record<string, number>;
}

export interface PtqResult {
  model: Model;
  spec: string;
  method: PtqMethod;
  rotate: boolean;
  tensors: PtqTensorReport[];
  calibTokens: number;
  seconds: number;
}

const needsCalibration = (m: PtqMethod, spec: QuantSpec): boolean =>
  m === "gptq" || m === "awq" || m === "awq+gptq" || m === "smoothquant" || spec.activations?.mode === "static";

function rowsOf(key: LinearKey, c: Model["config"]): number {
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  switch (key) {
    case "wq": return qDim;
    case "wk": case "wv": return kvDim;
    case "wo": case "down": return c.dim;
    case "gate": case "up": return c.hiddenDim;
  }
}

function colsOf(key: LinearKey, c: Model["config"]): number {
  if (key === "wo") return c.nHeads * c.headDim;
  if (key === "down") return c.hiddenDim;
  return c.dim;
}

/** Sites in block order with the linears they feed. */
const SITE_GROUPS: readonly { site: LinearSite; keys: LinearKey[] }[] = [
  { site: "attn_in", keys: ["wq", "wk", "wv"] },
  { site: "attn_out_in", keys: ["wo"] },
  { site: "ffn_in", keys: ["gate", "up"] },
  { site: "ffn_down_in", keys: ["down"] },
];

function relError(w: Float32Array, q: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < w.length; i++) {
    const d = w[i]! - q[i]!;
    num += d * d;
    den += w[i]! * w[i]!;
  }
  return den > 0 ? num / den : num;
}

function f32Dense(shape: readonly number[], data: Float32Array): Weight {
  return { kind: "dense", tensor: new Tensor("f32", shape, data) };
}

export async function quantizeModelPtq(model: Model, opts: PtqOptions): Promise<PtqResult> {
  const t0 = Date.now();
  const spec = toSpec(opts.spec);
  const specText = printSpec(spec);
  const method = opts.method;
  if (!(PTQ_METHODS as readonly string[]).includes(method)) throw new QuantlabError("E_ARG", `unknown method "${method}"; valid: ${PTQ_METHODS.join(", ")}`);
  const c = model.config;
  const W = model.weights;
  const include = opts.include ?? (() => true);
  const progress = opts.progress ?? noProgress;
  const rotate = opts.rotate ?? false;
  const act = spec.activations;
  if (act && act.format !== "int") throw new QuantlabError("E_UNSUPPORTED", `spec "${specText}": the forward pass quantizes activations to integers only (a<bits>, a<bits>s), not ${act.format}`);
  if (method === "smoothquant" && !act) throw new QuantlabError("E_SPEC", `spec "${specText}": smoothquant is for weight+activation specs; add an activation part, e.g. int8:channel:a8 (per token) or int8:channel:a8s (static)`);

  // the quantizer the column-walking methods use (validates the spec for them)
  let gq: RegistryQuantizer | undefined;
  if (method === "gptq" || method === "awq" || method === "awq+gptq") gq = new RegistryQuantizer(spec);
  if (method === "hqq") gq = new RegistryQuantizer(spec, { hqq: {} });

  const calibrate = needsCalibration(method, spec);
  const windows = opts.calib ?? [];
  if (calibrate && windows.length === 0) throw new QuantlabError("E_ARG", `method ${method}${act?.mode === "static" ? " with static activations" : ""} needs calibration data (--calib <text>)`);
  const seq = windows[0]?.length ?? 0;
  for (const w of windows) if (w.length !== seq) throw new QuantlabError("E_ARG", "calibration windows must all have the same length");

  const out = new Map<string, Weight>();
  const config = { ...c };
  const transforms: InputTransforms = {};
  const report: PtqTensorReport[] = [];

  // ---- rotations: residual R (dim) and the FFN-down input H (hidden)
  let R: Rotation | undefined;
  let H: Rotation | undefined;
  const seed = opts.rotateSeed ?? 0;
  let embedding: Float32Array | Weight = W.get(TensorNames.tokenEmbd)!;
  if (rotate) {
    R = randomizedHadamard(c.dim, seed);
    H = randomizedHadamard(c.hiddenDim, seed + 1);
    const headName = W.has(TensorNames.output) ? TensorNames.output : TensorNames.tokenEmbd;
    const head = new Float32Array(dequantizeWeight(W.get(headName)!, headName).data);
    const outNorm = new Float32Array(dequantizeWeight(W.get(TensorNames.outputNorm)!, TensorNames.outputNorm).data);
    foldNormInPlace(outNorm, [{ w: head, rows: c.vocabSize }]);
    rotateInputsInPlace(head, c.vocabSize, c.dim, R);
    const table = new Float32Array(dequantizeWeight(embedding, TensorNames.tokenEmbd).data);
    rotateInputsInPlace(table, c.vocabSize, c.dim, R); // each row is a residual vector: e ← R·e
    out.set(TensorNames.tokenEmbd, f32Dense([c.vocabSize, c.dim], table));
    embedding = table;
    out.set(TensorNames.output, f32Dense([c.vocabSize, c.dim], head));
    out.set(TensorNames.outputNorm, f32Dense([c.dim], outNorm));
    config.tiedEmbeddings = false;
    transforms.ffnDownRotation = H.factors();
  } else {
    for (const n of [TensorNames.tokenEmbd, TensorNames.outputNorm, TensorNames.output]) {
      const w = W.get(n);
      if (w) out.set(n, w);
    }
  }
  if (act) transforms.activations = act.mode === "static" ? { bits: act.bits, mode: "static", scales: {} } : { bits: act.bits, mode: "dynamic" };
  // capture passes see the online rotation and dynamic activation quantization; static scales are set by the final pass
  const captureTransforms: InputTransforms = { ...transforms };
  if (act?.mode === "static") delete captureTransforms.activations;
  const actSpec = act ? activationQuantSpec(act) : undefined;

  const runner = calibrate ? new BlockRunner(model, seq, opts.backend) : undefined;
  let X = runner ? runner.embed(embedding, windows) : undefined; // (T, dim) hidden states entering the block
  const T = X ? X.length / c.dim : 0;

  const nLinears = c.nLayers * LINEAR_KEYS.length;
  progress.start(nLinears, `${method}${rotate ? "+rotate" : ""} ${specText}`);

  for (let l = 0; l < c.nLayers; l++) {
    const bw = blockWeights(model, l);
    if (R && H) rotateBlock(bw, c, R, H);
    const quantized = new Map<LinearKey, QTensor>();
    const setQuant = (key: LinearKey, q: QTensor, orig: Float32Array, t1: number, detail?: Record<string, number>): void => {
      const deq = q.dequantize();
      report.push({ name: linearName(l, key), shape: [rowsOf(key, c), colsOf(key, c)], relErr: relError(orig, deq), bitsPerWeight: q.storageBits / deq.length, seconds: (Date.now() - t1) / 1000, ...(detail ? { detail } : {}) });
      quantized.set(key, q);
      bw[key] = deq;
      progress.tick();
    };
    const skip = (key: LinearKey) => !include(linearName(l, key));

    // ---- scale migration (AWQ / SmoothQuant) from one float-block pass
    const awqClipped = new Map<LinearKey, Float32Array>();
    const siteDetail = new Map<LinearKey, Record<string, number>>();
    if (method === "awq" || method === "awq+gptq" || method === "smoothquant") {
      const stats = new Map<LinearSite, ChannelStats>();
      const withGram = method !== "smoothquant";
      runner!.run(l, bw, X!, {
        transforms: captureTransforms,
        hook: (site, x, width) => {
          const s = new ChannelStats(width, { gram: withGram });
          s.add(x, T);
          stats.set(site, s);
        },
        stopAfter: "ffn_down_in",
      });
      for (const g of SITE_GROUPS) {
        const keys = g.keys.filter((k) => !skip(k));
        if (keys.length === 0) continue;
        const cols = colsOf(keys[0]!, c);
        // where 1/s goes: a norm, or the rows of the previous linear
        const foldNorm = g.site === "attn_in" ? bw.attnNorm : g.site === "ffn_in" ? bw.ffnNorm : undefined;
        const foldPrev: LinearKey | undefined = g.site === "ffn_down_in" ? "up" : g.site === "attn_out_in" && c.nHeads === c.nKvHeads ? "wv" : undefined;
        if (!foldNorm && !foldPrev) continue;
        // all linears reading the site must take the scale (skipped ones too), and a folded-into linear must still be float
        const allKeys = g.keys;
        if (foldPrev && (quantized.has(foldPrev))) continue;
        const st = stats.get(g.site)!;
        const linears = allKeys.map((k) => ({ w: bw[k], rows: rowsOf(k, c) }));
        let s: Float64Array;
        if (method === "smoothquant") {
          s = smoothQuantScales(st.absMax, linears, opts.smoothAlpha ?? 0.5);
          for (const k of allKeys) siteDetail.set(k, { alpha: opts.smoothAlpha ?? 0.5 });
        } else {
          const awqStats = { meanAbs: st.meanAbs(), gram: st.gram!, nTokens: st.nTokens };
          const name = `blk.${l}.${g.site}`;
          if (method === "awq") {
            const r = awqQuantizePrep(linears, cols, awqStats, gq!, { ...opts.awq, name });
            s = r.scales;
            allKeys.forEach((k, i) => awqClipped.set(k, r.weights[i]!));
            for (const k of allKeys) siteDetail.set(k, { alpha: r.alpha });
          } else {
            const r = awqSearchScales(linears, cols, awqStats, gq!, { ...opts.awq, name });
            s = r.scales;
            for (const k of allKeys) siteDetail.set(k, { alpha: r.alpha });
          }
        }
        for (const k of allKeys) scaleColumnsInPlace(bw[k], rowsOf(k, c), cols, s);
        if (foldNorm) divideNormInPlace(foldNorm, s);
        else divideRowsInPlace(bw[foldPrev!], rowsOf(foldPrev!, c), colsOf(foldPrev!, c), s);
        // a folded-into linear's clipped copy takes the same row scaling (RTN groups run along rows, so the clip scales with them)
        const clippedPrev = foldPrev ? awqClipped.get(foldPrev) : undefined;
        if (clippedPrev) divideRowsInPlace(clippedPrev, rowsOf(foldPrev!, c), colsOf(foldPrev!, c), s);
      }
    }

    // ---- weight quantization
    if (method === "gptq" || method === "awq+gptq") {
      for (const g of SITE_GROUPS) {
        const keys = g.keys.filter((k) => !skip(k));
        if (keys.length === 0) continue;
        const t1 = Date.now();
        const cols = colsOf(keys[0]!, c);
        const acc = new HessianAccumulator(cols);
        runner!.run(l, bw, X!, { transforms: captureTransforms, hook: (site, x) => { if (site === g.site) acc.add(x, T); }, stopAfter: g.site });
        const h = acc.takeHessian();
        for (const k of keys) {
          const t2 = k === keys[0] ? t1 : Date.now();
          const rows = rowsOf(k, c);
          // the last linear of a site may consume the Hessian (no cols×cols copy: 512 MiB at width 8192)
          const r = gptqQuantize(bw[k], rows, cols, h, gq!, { ...opts.gptq, overwriteHessian: k === keys[keys.length - 1], name: linearName(l, k) });
          setQuant(k, gq!.toQTensor(r, rows, cols, linearName(l, k)), bw[k], t2, { loss: r.loss, ...siteDetail.get(k) });
        }
      }
    } else {
      for (const k of LINEAR_KEYS) {
        if (skip(k)) continue;
        const t1 = Date.now();
        const rows = rowsOf(k, c), cols = colsOf(k, c);
        const name = linearName(l, k);
        let q: QTensor;
        if (method === "hqq" || (method === "awq" && awqClipped.has(k))) {
          const src = method === "awq" ? awqClipped.get(k)! : bw[k];
          const r = rtnQuantize(src, rows, cols, gq!);
          q = gq!.toQTensor(r, rows, cols, name);
        } else if (method === "awq") {
          q = gq!.toQTensor(rtnQuantize(bw[k], rows, cols, gq!), rows, cols, name);
        } else {
          q = quantizeTensor(bw[k], [rows, cols], spec, { name });
        }
        setQuant(k, q, bw[k], t1, siteDetail.get(k));
      }
    }
    // skipped linears report nothing but still count for the bar
    for (const k of LINEAR_KEYS) if (skip(k)) progress.tick();

    // ---- the quantized block's outputs feed the next block (static activation scales calibrated here)
    if (runner && X && l + 1 < c.nLayers + (act?.mode === "static" ? 1 : 0)) {
      const a = transforms.activations;
      if (a?.mode === "static") {
        // rotation (if any) from the transforms, then calibrate this site's scale on the whole calibration
        // batch and fake-quantize with it, exactly as the forward pass will
        runner.run(l, bw, X, {
          transforms: captureTransforms,
          hook: (site, x, width) => {
            const ob = new ActivationObserver(width);
            ob.observe(x, `blk.${l}.${site} input`);
            const scale = ob.staticParams(actSpec!).scale;
            a.scales![siteKey(l, site)] = scale;
            fakeQuantInputs(x, T, width, a.bits, scale);
          },
        });
      } else {
        runner.run(l, bw, X, { transforms });
      }
    }

    // ---- write the block
    out.set(TensorNames.attnNorm(l), f32Dense([c.dim], bw.attnNorm));
    out.set(TensorNames.ffnNorm(l), f32Dense([c.dim], bw.ffnNorm));
    for (const k of LINEAR_KEYS) {
      const q = quantized.get(k);
      const w: Weight = q ? { kind: "quant", q } : f32Dense([rowsOf(k, c), colsOf(k, c)], bw[k]);
      if (opts.onTensor) opts.onTensor(linearName(l, k), w);
      else out.set(linearName(l, k), w);
    }
  }
  progress.done();

  const result: Model = {
    config,
    weights: out,
    source: { path: model.source.path, format: "memory", metadata: { "quantlab.ptq": JSON.stringify({ method, spec: specText, rotate }) } },
  };
  if (model.tokenizer) result.tokenizer = model.tokenizer;
  if (transforms.ffnDownRotation || transforms.activations) result.inputTransforms = transforms;
  return { model: result, spec: specText, method, rotate, tensors: report, calibTokens: T, seconds: (Date.now() - t0) / 1000 };
}

/**
 * Fuses the residual rotation R and the FFN-down input rotation H into one block (column-vector
 * convention h' = R·h): RMSNorm weights folded into the linears reading them (norms become 1, and a
 * unit RMSNorm commutes with R), linears reading the residual W ← W·Rᵀ, linears writing it W ← R·W,
 * ffn_down's inputs W ← W·Hᵀ (H applied online to the FFN-down input).
 */
function rotateBlock(bw: BlockWeights, c: Model["config"], R: Rotation, H: Rotation): void {
  const { dim, hiddenDim } = c;
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  foldNormInPlace(bw.attnNorm, [{ w: bw.wq, rows: qDim }, { w: bw.wk, rows: kvDim }, { w: bw.wv, rows: kvDim }]);
  foldNormInPlace(bw.ffnNorm, [{ w: bw.gate, rows: hiddenDim }, { w: bw.up, rows: hiddenDim }]);
  rotateInputsInPlace(bw.wq, qDim, dim, R);
  rotateInputsInPlace(bw.wk, kvDim, dim, R);
  rotateInputsInPlace(bw.wv, kvDim, dim, R);
  rotateInputsInPlace(bw.gate, hiddenDim, dim, R);
  rotateInputsInPlace(bw.up, hiddenDim, dim, R);
  rotateOutputsInPlace(bw.wo, dim, qDim, R);
  rotateOutputsInPlace(bw.down, dim, hiddenDim, R);
  rotateInputsInPlace(bw.down, dim, hiddenDim, H);
}
