/**
 * Model-level quantization shared by `quantize` and `compare`: pick tensors by glob, quantize each with a
 * spec (round to nearest), and set up activation quantization (a<b> dynamic, a<b>s static from
 * calibration through the forward pass's input hook).
 */
import { QuantlabError } from "../core/errors.js";
import type { Progress } from "../core/progress.js";
import { noProgress } from "../core/progress.js";
import { numel } from "../core/tensor.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import type { Backend } from "../kernels/types.js";
import { TensorNames } from "../model/config.js";
import { Llama } from "../model/llama.js";
import { siteKey, type ActivationQuantConfig, type LinearSite } from "../model/transforms.js";
import type { Model } from "../model/weights.js";
import { planWindows, windowInputs } from "../eval/windows.js";
import { errorStats } from "../quant/metrics.js";
import { ActivationObserver } from "../quant/observer.js";
import { printSpec, toSpec, type QuantSpec } from "../quant/spec.js";
import { quantizeLearned } from "../algos/learned.js";
import type { QuantizedTensor } from "../quant/types.js";
import { quantizeLayer, type LayerEntry, type QTensor } from "../quant/tensor.js";
import { isMixedSpec, parseMixedSpec, planMixed, printMixedSpec, type MixedPlan } from "../algos/mixed-model.js";
import { canonicalSpec } from "../quant/spec.js";
import type { Weight } from "../core/weight.js";

/** The block linears: what `quantize` touches unless --only says otherwise. */
export function linearWeightNames(m: Model): string[] {
  const out: string[] = [];
  for (let l = 0; l < m.config.nLayers; l++) {
    for (const f of [TensorNames.attnQ, TensorNames.attnK, TensorNames.attnV, TensorNames.attnOutput, TensorNames.ffnGate, TensorNames.ffnUp, TensorNames.ffnDown]) out.push(f(l));
  }
  return out;
}

/** Shell-style glob (`*`, `?`, `{a,b}`) → RegExp over whole names. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === "*") re += ".*";
    else if (ch === "?") re += ".";
    else if (ch === "{") {
      const end = glob.indexOf("}", i);
      if (end < 0) throw new QuantlabError("E_ARG", `glob "${glob}": unclosed {`);
      re += "(?:" + glob.slice(i + 1, end).split(",").map((s) => s.replace(/[.+^$()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")).join("|") + ")";
      i = end;
    } else re += ch.replace(/[.+^$()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Tensors to quantize: --only globs over every weight (default: the block linears), minus --skip globs. */
export function selectTensors(m: Model, only?: string, skip?: string): string[] {
  const split = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean).map(globToRegExp);
  const all = [...m.weights.keys()];
  let names = only ? all.filter((n) => split(only).some((r) => r.test(n))) : linearWeightNames(m).filter((n) => m.weights.has(n));
  if (only && names.length === 0) throw new QuantlabError("E_ARG", `option --only: "${only}" matches no tensor (names look like ${all.slice(0, 3).join(", ")})`);
  if (skip) { const rs = split(skip); names = names.filter((n) => !rs.some((r) => r.test(n))); }
  return names;
}

export interface TensorReport {
  name: string;
  shape: number[];
  storageBits: number;
  bpw: number;
  sqnrDb: number;
}

export interface QuantizeModelResult {
  /** mixed-precision specs: the spec chosen per tensor */
  mixed?: Pick<MixedPlan, "choice" | "counts" | "sensitivity" | "loss">;
  model: Model;
  tensors: TensorReport[];
  /** bits per weight over the quantized tensors, everything included */
  bpw: number;
  /** lowest SQNR of any quantized tensor */
  worstSqnrDb: number;
  worstTensor: string;
  seconds: number;
}

/** Canonical form of a model-level spec: a tensor spec, or mixed:<B>bpw:<spec>+<spec>… (algos/mixed-model.ts). */
export function canonicalModelSpec(text: string): string {
  return isMixedSpec(text) ? printMixedSpec(parseMixedSpec(text)) : canonicalSpec(text);
}

export interface QuantizeModelOptions {
  seed?: number;
  progress?: Progress;
  /** E[x²] per input column of each linear (by tensor name), the mixed-precision sensitivity weights */
  hDiag?: ReadonlyMap<string, ArrayLike<number>>;
  /** calibration tokens for mixed precision's kld sensitivity (the first window of ctx is used) */
  calib?: { tokens: ArrayLike<number>; bosId: number; ctx: number; backend?: Backend };
}

/**
 * Quantizes `names` of a model with one spec (weights only); the other weights are shared, not copied.
 * A mixed:<B>bpw:… spec picks one candidate per tensor under the budget (see algos/mixed-model.ts).
 */
export function quantizeModel(model: Model, specIn: string | QuantSpec, names: string[], opts: QuantizeModelOptions = {}): QuantizeModelResult {
  if (typeof specIn === "string" && isMixedSpec(specIn)) return quantizeModelMixed(model, specIn, names, opts);
  const spec = toSpec(specIn);
  const weights = new Map<string, Weight>(model.weights);
  const tensors: TensorReport[] = [];
  const progress = opts.progress ?? noProgress;
  const t0 = Date.now();
  let bits = 0, count = 0, worst = Infinity, worstName = "";
  progress.start(names.length, `quantize ${printSpec(spec)}`);
  // layer granularity: one range per block (blk.<n>.*) shared by its selected tensors (quantizeLayer); others alone
  const layerQ = new Map<string, QTensor>();
  if (spec.granularity.kind === "layer") {
    const blocks = new Map<string, LayerEntry[]>();
    for (const name of names) {
      const w = model.weights.get(name);
      if (!w) throw new QuantlabError("E_ARG", `model has no tensor "${name}"`);
      const { rows, cols, data } = dequantizeWeight(w, name);
      const key = /^blk\.\d+\./.exec(name)?.[0] ?? name;
      if (!blocks.has(key)) blocks.set(key, []);
      blocks.get(key)!.push({ name, w: data, shape: [rows, cols] });
    }
    for (const entries of blocks.values()) quantizeLayer(entries, spec, { seed: opts.seed ?? 0 }).forEach((q, j) => layerQ.set(entries[j]!.name, q));
  }
  names.forEach((name, i) => {
    const w = model.weights.get(name);
    if (!w) throw new QuantlabError("E_ARG", `model has no tensor "${name}"`);
    const { rows, cols, data } = dequantizeWeight(w, name);
    const shape = [rows, cols];
    const q = layerQ.get(name) ?? quantizeLearned(data, shape, spec, { name, seed: (opts.seed ?? 0) + i }); // = quantizeTensor, after a k-means fit for kmeans<b> / vq<b>d<d>
    const e = errorStats(data, q.dequantize());
    tensors.push({ name, shape, storageBits: q.storageBits, bpw: q.bitsPerWeight, sqnrDb: e.sqnrDb });
    bits += q.storageBits;
    count += numel(shape);
    if (e.sqnrDb < worst) { worst = e.sqnrDb; worstName = name; }
    weights.set(name, { kind: "quant", q });
    progress.tick();
  });
  progress.done();
  const out: Model = { ...model, weights };
  return { model: out, tensors, bpw: count ? bits / count : 0, worstSqnrDb: worst, worstTensor: worstName, seconds: (Date.now() - t0) / 1000 };
}

function quantizeModelMixed(model: Model, text: string, names: string[], opts: QuantizeModelOptions): QuantizeModelResult {
  const m = parseMixedSpec(text);
  const progress = opts.progress ?? noProgress;
  const t0 = Date.now();
  const tensors = names.map((name) => {
    const w = model.weights.get(name);
    if (!w) throw new QuantlabError("E_ARG", `model has no tensor "${name}"`);
    const { rows, cols, data } = dequantizeWeight(w, name);
    const h = opts.hDiag?.get(name);
    return { name, w: data, shape: [rows, cols] as const, ...(h ? { hDiag: h } : {}) };
  });
  progress.start(names.length, `mixed ${m.budgetBpw} bpw`);
  const lossOf = m.sensitivity === "kld" ? kldSensitivity(model, opts.calib, names) : undefined;
  const plan = planMixed(tensors, m, { seed: opts.seed, onTensor: () => progress.tick(), ...(lossOf ? { lossOf } : {}) });
  progress.done();
  const weights = new Map<string, Weight>(model.weights);
  const reports: TensorReport[] = [];
  let bits = 0, count = 0, worst = Infinity, worstName = "";
  for (const t of tensors) {
    const q = plan.tensors.get(t.name)!;
    const e = errorStats(t.w, q.dequantize());
    reports.push({ name: t.name, shape: [...t.shape], storageBits: q.storageBits, bpw: q.bitsPerWeight, sqnrDb: e.sqnrDb });
    bits += q.storageBits;
    count += t.w.length;
    if (e.sqnrDb < worst) { worst = e.sqnrDb; worstName = t.name; }
    weights.set(t.name, { kind: "quant", q });
  }
  return {
    model: { ...model, weights }, tensors: reports, bpw: bits / count, worstSqnrDb: worst, worstTensor: worstName, seconds: (Date.now() - t0) / 1000,
    mixed: { choice: plan.choice, counts: plan.counts, sensitivity: plan.sensitivity, loss: plan.loss },
  };
}

/** Tokens of calibration text the kld sensitivity scores per (tensor, candidate): one window. */
export const KLD_SENSITIVITY_TOKENS = 255;

/**
 * Mixed precision's kld sensitivity: mean KL(float ‖ model with only tensor `names[ti]` quantized) over one
 * window of calibration text (BOS + up to KLD_SENSITIVITY_TOKENS tokens).
 */
function kldSensitivity(model: Model, calib: QuantizeModelOptions["calib"], names: string[]): (ti: number, ci: number, q: QuantizedTensor) => number {
  if (!calib?.tokens || calib.tokens.length < 2) throw new QuantlabError("E_ARG", "mixed precision with kld sensitivity needs calibration text (--calib <file>)");
  const ctx = Math.min(calib.ctx, KLD_SENSITIVITY_TOKENS + 1);
  const [w] = planWindows(calib.tokens.length, ctx, KLD_SENSITIVITY_TOKENS);
  const ids = windowInputs(calib.tokens, w!, calib.bosId);
  const V = model.config.vocabSize;
  const logProbs = (m: Model): Float64Array => {
    const llama = new Llama(m, { contextLength: ctx, ...(calib.backend ? { backend: calib.backend } : {}) });
    const out = new Float64Array(ids.length * V);
    llama.prefill(ids, 0, (lg, row, n) => {
      for (let i = 0; i < n; i++) {
        let mx = -Infinity;
        for (let j = 0; j < V; j++) mx = Math.max(mx, lg[i * V + j]!);
        let se = 0;
        for (let j = 0; j < V; j++) se += Math.exp(lg[i * V + j]! - mx);
        const lse = mx + Math.log(se);
        for (let j = 0; j < V; j++) out[(row + i) * V + j] = lg[i * V + j]! - lse;
      }
    });
    return out;
  };
  const base = logProbs(model);
  return (ti, _ci, q) => {
    const weights = new Map<string, Weight>(model.weights);
    weights.set(names[ti]!, { kind: "quant", q });
    const lp = logProbs({ ...model, weights });
    let s = 0;
    for (let i = 0; i < base.length; i++) s += Math.exp(base[i]!) * (base[i]! - lp[i]!);
    return s / ids.length;
  };
}

/**
 * E[x_c²] of every block linear's input (the diagonal of its layer Hessian up to a factor 2), by tensor
 * name, from running the model on calibration tokens (windows of ctx with BOS).
 */
export function inputSecondMoments(model: Model, calib: { tokens: ArrayLike<number>; bosId: number; ctx: number; backend?: Backend }): Map<string, Float64Array> {
  const sums = new Map<string, { s: Float64Array; n: number }>();
  const llama = new Llama(model, {
    contextLength: calib.ctx,
    ...(calib.backend ? { backend: calib.backend } : {}),
    inputHook: (layer, site, x, n, width) => {
      const key = siteKey(layer, site);
      let a = sums.get(key);
      if (!a) { a = { s: new Float64Array(width), n: 0 }; sums.set(key, a); }
      for (let t = 0; t < n; t++) for (let c = 0; c < width; c++) { const v = x[t * width + c]!; a.s[c] += v * v; }
      a.n += n;
    },
  });
  for (const w of planWindows(calib.tokens.length, calib.ctx)) {
    llama.reset();
    llama.prefill(windowInputs(calib.tokens, w, calib.bosId), 0, () => {});
  }
  const out = new Map<string, Float64Array>();
  const sitesOf: [LinearSite, (l: number) => string][] = [
    ["attn_in", TensorNames.attnQ], ["attn_in", TensorNames.attnK], ["attn_in", TensorNames.attnV], ["attn_out_in", TensorNames.attnOutput],
    ["ffn_in", TensorNames.ffnGate], ["ffn_in", TensorNames.ffnUp], ["ffn_down_in", TensorNames.ffnDown],
  ];
  for (let l = 0; l < model.config.nLayers; l++) {
    for (const [site, nameOf] of sitesOf) {
      const a = sums.get(siteKey(l, site));
      if (a) out.set(nameOf(l), a.s.map((v) => v / Math.max(1, a.n)));
    }
  }
  return out;
}

/**
 * The activation-quantization config of a spec for the forward pass: a<b> → dynamic per-token int-b;
 * a<b>s → static per-(layer, site) scales, calibrated on `calibTokens` by running the (weight-quantized)
 * model and observing every linear's input. Only symmetric integer activations are run by the forward pass.
 */
export function activationConfig(model: Model, specIn: string | QuantSpec, calib: { tokens?: ArrayLike<number>; bosId?: number; ctx: number; backend?: Backend } | undefined): ActivationQuantConfig | undefined {
  if (typeof specIn === "string" && isMixedSpec(specIn)) return undefined; // mixed precision is weight-only
  const spec = toSpec(specIn);
  const a = spec.activations;
  if (!a) return undefined;
  if (a.format !== "int") throw new QuantlabError("E_UNSUPPORTED", `spec ${printSpec(spec)}: the forward pass quantizes activations to symmetric integers only (a<bits>, a<bits>s), not fp8`);
  if (a.mode === "dynamic") return { bits: a.bits, mode: "dynamic" };
  if (!calib?.tokens || calib.bosId === undefined) throw new QuantlabError("E_ARG", `spec ${printSpec(spec)}: static activation scales need a calibration text (--calib <file>)`);
  const observers = new Map<string, ActivationObserver>();
  const llama = new Llama(model, {
    contextLength: calib.ctx,
    ...(calib.backend ? { backend: calib.backend } : {}),
    inputHook: (layer, site, x, n, width) => {
      const key = siteKey(layer, site);
      let o = observers.get(key);
      if (!o) { o = new ActivationObserver(width); observers.set(key, o); }
      o.observe(x.subarray(0, n * width), key);
    },
  });
  for (const w of planWindows(calib.tokens.length, calib.ctx)) {
    llama.reset();
    llama.prefill(windowInputs(calib.tokens, w, calib.bosId), 0, () => {});
  }
  // the weight spec's clipping method (percentile / mse / kl) if it has one, else min-max
  const cal = spec.calibration.method === "percentile" ? `p${(spec.calibration as { percentile: number }).percentile}` : spec.calibration.method === "mse" || spec.calibration.method === "kl" ? spec.calibration.method : "minmax";
  const actSpec = `int${a.bits}:tensor${cal === "minmax" ? "" : `:${cal}`}`;
  const scales: Record<string, number> = {};
  for (const [k, o] of observers) scales[k] = o.staticParams(actSpec).scale;
  return { bits: a.bits, mode: "static", scales };
}
