/**
 * Method "rtn": round to nearest, no calibration of the weights.
 * - spec target: each selected tensor is quantized on its own with its spec (quant's quantizeTensor;
 *   k-means / VQ codebooks fitted first, algos/learned.ts; `layer` granularity shares one range across a
 *   block's tensors of that spec). A spec with a dynamic activation part (a<b>) also sets the model's
 *   run-time per-token activation quantization. With `rotate`, or static activation scales (a<b>s:
 *   calibrated site by site with the earlier sites already quantized, exactly as the forward pass will
 *   run them), the layer-by-layer pipeline runs instead (algos/pipeline.ts).
 * - preset target: llama-quantize's mix with ggml's own quantizers (optionally with an importance matrix).
 */
import { QuantlabError } from "../../core/errors.js";
import type { Progress } from "../../core/progress.js";
import { numel } from "../../core/tensor.js";
import { releaseWeight, type Weight } from "../../core/weight.js";
import { dequantizeWeight } from "../../kernels/dequantize.js";
import type { Model } from "../../model/weights.js";
import { errorStats } from "../../quant/metrics.js";
import { toSpec } from "../../quant/spec.js";
import { quantizeLayer, type LayerEntry, type QTensor } from "../../quant/tensor.js";
import { dynamicActivations } from "../activations.js";
import { quantizeLearned } from "../learned.js";
import { isSpecTarget, type Recipe } from "../recipe.js";
import { runLayerwise, type LayerwiseMethod } from "../pipeline.js";
import { runGgmlPreset } from "./ggml-preset.js";
import type { MethodDef, SpecTensorReport } from "./types.js";

/** A tensor's report row from its float and quantized values. */
export function specReport(name: string, shape: readonly number[], spec: string, w: Float32Array, q: { storageBits: number; dequantize(): Float32Array }, extra: Partial<SpecTensorReport> = {}): SpecTensorReport {
  const e = errorStats(w, q.dequantize());
  return { name, shape: [...shape], spec, storageBits: q.storageBits, bpw: q.storageBits / numel(shape), sqnrDb: e.sqnrDb, relErr: e.nmse, ...extra };
}

/**
 * Quantizes `names` of a model, each with `specOf(name)`, weights only; the other weights are shared,
 * not copied. Stochastic rounding of tensor i uses seed + i.
 */
export function quantizeTensors(model: Model, names: readonly string[], specOf: (name: string) => string, opts: { seed: number; progress: Progress }): { model: Model; tensors: SpecTensorReport[] } {
  const weights = new Map<string, Weight>(model.weights);
  const tensors: SpecTensorReport[] = [];
  const { progress } = opts;
  const f32 = (name: string) => {
    const w = model.weights.get(name);
    if (!w) throw new QuantlabError("E_ARG", `model has no tensor "${name}"`);
    return dequantizeWeight(w, name);
  };
  // layer granularity: one range per (block blk.<n>., spec) shared by its selected tensors (quantizeLayer); others alone
  const layerQ = new Map<string, QTensor>();
  const groups = new Map<string, { spec: string; entries: LayerEntry[] }>();
  for (const name of names) {
    const spec = specOf(name);
    if (toSpec(spec).granularity.kind !== "layer") continue;
    const { rows, cols, data } = f32(name);
    const key = `${/^blk\.\d+\./.exec(name)?.[0] ?? name}|${spec}`;
    if (!groups.has(key)) groups.set(key, { spec, entries: [] });
    groups.get(key)!.entries.push({ name, w: data, shape: [rows, cols] });
  }
  for (const { spec, entries } of groups.values()) quantizeLayer(entries, spec, { seed: opts.seed }).forEach((q, j) => layerQ.set(entries[j]!.name, q));
  progress.start(names.length, `quantize ${[...new Set(names.map(specOf))].join(", ")}`);
  names.forEach((name, i) => {
    const { rows, cols, data } = f32(name);
    const shape = [rows, cols];
    const spec = specOf(name);
    const t1 = Date.now();
    const q = layerQ.get(name) ?? quantizeLearned(data, shape, spec, { name, seed: opts.seed + i }); // = quantizeTensor, after a k-means fit for kmeans<b> / vq<b>d<d>
    tensors.push(specReport(name, shape, q.spec, data, q, { seconds: (Date.now() - t1) / 1000 }));
    weights.set(name, { kind: "quant", q });
    releaseWeight(model.weights.get(name)!); // a lazily loaded source tensor is not needed again
    progress.tick();
  });
  progress.done();
  return { model: { ...model, weights }, tensors };
}

/** Per-linear round to nearest inside the layer-by-layer pipeline (used with rotations). */
export const rtnLayerwise: LayerwiseMethod = {
  label: "rtn",
  quantizeBlock(b) {
    for (const k of b.selected) {
      const t0 = Date.now();
      b.setQuant(k, b.quantizeRtn(k, b.bw[k]), t0);
    }
  },
};

/** Does the recipe's spec target quantize activations with static (calibrated) scales? */
export function staticActivations(r: Recipe): boolean {
  return isSpecTarget(r.target) && toSpec(r.target.spec).activations?.mode === "static";
}

export const rtn: MethodDef = {
  doc: "round to nearest (spec targets: quant's quantizers, any spec; presets: ggml's quantizers, optionally with an importance matrix)",
  targets: ["spec", "preset"],
  options: {},
  windows: (r) => (!isSpecTarget(r.target) ? ["chunks"] : ["random"]),
  calibration(r) {
    if (!isSpecTarget(r.target)) return r.imatrix && "source" in r.imatrix ? "required" : "unused";
    return staticActivations(r) ? "required" : "unused";
  },
  async run(ctx) {
    const r = ctx.recipe;
    if (!isSpecTarget(r.target)) return runGgmlPreset(ctx, { gptq: false });
    if (r.rotate || staticActivations(r)) return runLayerwise(ctx, rtnLayerwise);
    const q = quantizeTensors(ctx.model, ctx.names, ctx.specOf, { seed: r.seed, progress: ctx.progress });
    const acts = dynamicActivations(r.target.spec);
    if (acts) q.model.inputTransforms = { ...(q.model.inputTransforms ?? {}), activations: acts };
    return { model: q.model, tensors: q.tensors, calibTokens: 0 };
  },
};
