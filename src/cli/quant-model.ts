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
import { siteKey, type ActivationQuantConfig } from "../model/transforms.js";
import type { Model, Weight } from "../model/weights.js";
import { planWindows, windowInputs } from "../eval/windows.js";
import { errorStats } from "../quant/metrics.js";
import { ActivationObserver } from "../quant/observer.js";
import { printSpec, toSpec, type QuantSpec } from "../quant/spec.js";
import { quantizeTensor } from "../quant/tensor.js";

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
  model: Model;
  tensors: TensorReport[];
  /** bits per weight over the quantized tensors, everything included */
  bpw: number;
  /** lowest SQNR of any quantized tensor */
  worstSqnrDb: number;
  worstTensor: string;
  seconds: number;
}

/** Quantizes `names` of a model with one spec (weights only); the other weights are shared, not copied. */
export function quantizeModel(model: Model, specIn: string | QuantSpec, names: string[], opts: { seed?: number; progress?: Progress } = {}): QuantizeModelResult {
  const spec = toSpec(specIn);
  const weights = new Map<string, Weight>(model.weights);
  const tensors: TensorReport[] = [];
  const progress = opts.progress ?? noProgress;
  const t0 = Date.now();
  let bits = 0, count = 0, worst = Infinity, worstName = "";
  progress.start(names.length, `quantize ${printSpec(spec)}`);
  names.forEach((name, i) => {
    const w = model.weights.get(name);
    if (!w) throw new QuantlabError("E_ARG", `model has no tensor "${name}"`);
    const { rows, cols, data } = dequantizeWeight(w, name);
    const shape = [rows, cols];
    const q = quantizeTensor(data, shape, spec, { name, seed: (opts.seed ?? 0) + i });
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

/**
 * The activation-quantization config of a spec for the forward pass: a<b> → dynamic per-token int-b;
 * a<b>s → static per-(layer, site) scales, calibrated on `calibTokens` by running the (weight-quantized)
 * model and observing every linear's input. Only symmetric integer activations are run by the forward pass.
 */
export function activationConfig(model: Model, specIn: string | QuantSpec, calib: { tokens?: ArrayLike<number>; bosId?: number; ctx: number; backend?: Backend } | undefined): ActivationQuantConfig | undefined {
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
