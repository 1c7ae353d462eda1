/**
 * Statistics of the inputs of a model's block linears, gathered by running the model on calibration
 * windows through the forward pass's input hook (model/llama.ts `inputHook`, after the model's own
 * input transforms — exactly what each weight multiplies):
 * - `inputSecondMoments`: E[x_c²] per input column of every linear (mixed precision's sensitivity).
 */
import { QuantlabError } from "../core/errors.js";
import type { Backend } from "../kernels/types.js";
import { TensorNames } from "../model/config.js";
import { Llama } from "../model/llama.js";
import { siteKey, type ActivationQuantConfig, type LinearSite } from "../model/transforms.js";
import type { Model } from "../model/weights.js";
import { printSpec, toSpec, type QuantSpec } from "../quant/spec.js";

/** Windows to run (each a BOS-first Int32Array fed at positions 0…) and the kernels to run them on. */
export interface CalibRun {
  windows: readonly Int32Array[];
  backend?: Backend;
}

function runWindows(model: Model, calib: CalibRun, hook: (layer: number, site: LinearSite, x: Float32Array, n: number, width: number) => void): void {
  const ctx = Math.max(...calib.windows.map((w) => w.length));
  const llama = new Llama(model, { contextLength: ctx, ...(calib.backend ? { backend: calib.backend } : {}), inputHook: hook, hooksOnly: true });
  try {
    for (const w of calib.windows) {
      llama.reset();
      llama.prefill(w, 0);
    }
  } finally {
    llama.dispose();
  }
}

/**
 * E[x_c²] of every block linear's input (the diagonal of its layer Hessian up to a factor 2), by tensor
 * name, from running the model on the calibration windows.
 */
export function inputSecondMoments(model: Model, calib: CalibRun): Map<string, Float64Array> {
  const sums = new Map<string, { s: Float64Array; n: number }>();
  runWindows(model, calib, (layer, site, x, n, width) => {
    const key = siteKey(layer, site);
    let a = sums.get(key);
    if (!a) { a = { s: new Float64Array(width), n: 0 }; sums.set(key, a); }
    for (let t = 0; t < n; t++) for (let c = 0; c < width; c++) { const v = x[t * width + c]!; a.s[c] += v * v; }
    a.n += n;
  });
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
 * The run-time activation quantization of a spec with a dynamic activation part (a<b>: per-token
 * symmetric int-b, nothing to calibrate), or undefined without one. Static scales (a<b>s) are calibrated
 * by the layer-by-layer pipeline (algos/pipeline.ts), site by site on already-quantized inputs.
 */
export function dynamicActivations(specIn: string | QuantSpec): ActivationQuantConfig | undefined {
  const spec = toSpec(specIn);
  const a = spec.activations;
  if (!a) return undefined;
  if (a.format !== "int") throw new QuantlabError("E_UNSUPPORTED", `spec ${printSpec(spec)}: the forward pass quantizes activations to symmetric integers only (a<bits>, a<bits>s), not fp8`);
  if (a.mode !== "dynamic") throw new QuantlabError("E_INTERNAL", `spec ${printSpec(spec)}: static activation scales are calibrated by the layer-by-layer pipeline`);
  return { bits: a.bits, mode: "dynamic" };
}
