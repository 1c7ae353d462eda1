/**
 * Method "mixed": mixed precision over the whole model (algos/mixed-model.ts) — the target spec is a
 * model-level `mixed:<B>bpw[:<sensitivity>]:<spec>+<spec>…`; one candidate per tensor under the budget,
 * by an exact knapsack over per-tensor sensitivities. `hess` sensitivity weighs the weight error by E[x²]
 * of each input column from the calibration windows (plain MSE without calibration); `kld` measures the
 * model's KL divergence from the float model on one calibration window with only that tensor quantized.
 */
import { QuantlabError } from "../../core/errors.js";
import type { Weight } from "../../core/weight.js";
import type { QuantizedTensor } from "../../core/weight.js";
import { dequantizeWeight } from "../../kernels/dequantize.js";
import type { Backend } from "../../kernels/types.js";
import { Llama } from "../../model/llama.js";
import type { Model } from "../../model/weights.js";
import { inputSecondMoments } from "../activations.js";
import { parseMixedSpec, planMixed } from "../mixed-model.js";
import { isSpecTarget } from "../recipe.js";
import { specReport } from "./rtn.js";
import type { MethodDef, SpecTensorReport } from "./types.js";

/** Tokens of calibration text the kld sensitivity scores per (tensor, candidate): one window. */
export const KLD_SENSITIVITY_TOKENS = 255;

/**
 * Mixed precision's kld sensitivity: mean KL(float ‖ model with only tensor `names[ti]` quantized) over one
 * calibration window (its first KLD_SENSITIVITY_TOKENS + 1 positions).
 */
function kldSensitivity(model: Model, window: Int32Array, names: readonly string[], backend: Backend | undefined): (ti: number, ci: number, q: QuantizedTensor) => number {
  const ids = window.subarray(0, Math.min(window.length, KLD_SENSITIVITY_TOKENS + 1));
  const V = model.config.vocabSize;
  const logProbs = (m: Model): Float64Array => {
    const llama = new Llama(m, { contextLength: ids.length, ...(backend ? { backend } : {}) });
    const out = new Float64Array(ids.length * V);
    try {
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
    } finally {
      llama.dispose();
    }
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

export const mixed: MethodDef = {
  doc: "mixed precision: one candidate spec per tensor under a bits-per-weight budget (target spec mixed:<B>bpw[:hess|mse|kld]:<spec>+<spec>…)",
  targets: ["spec"],
  options: {},
  windows: () => ["random", "consecutive"],
  calibration(r) {
    if (!isSpecTarget(r.target)) return "unused";
    const s = parseMixedSpec(r.target.spec).sensitivity;
    return s === "kld" ? "required" : s === "hess" ? "optional" : "unused";
  },
  async run(ctx) {
    const { model, recipe, names, progress } = ctx;
    if (!isSpecTarget(recipe.target)) throw new QuantlabError("E_INTERNAL", "mixed on a preset recipe");
    const m = parseMixedSpec(recipe.target.spec);
    const windows = ctx.calib?.windows();
    const hDiag = m.sensitivity === "hess" && windows ? inputSecondMoments(model, { windows, ...(ctx.backend ? { backend: ctx.backend } : {}) }) : undefined;
    const tensors = names.map((name) => {
      const w = model.weights.get(name);
      if (!w) throw new QuantlabError("E_ARG", `model has no tensor "${name}"`);
      const { rows, cols, data } = dequantizeWeight(w, name);
      const h = hDiag?.get(name);
      return { name, w: data, shape: [rows, cols] as const, ...(h ? { hDiag: h } : {}) };
    });
    progress.start(names.length, `mixed ${m.budgetBpw} bpw`);
    const lossOf = m.sensitivity === "kld" ? kldSensitivity(model, windows![0]!, names, ctx.backend) : undefined;
    const plan = planMixed(tensors, m, { seed: recipe.seed, onTensor: () => progress.tick(), ...(lossOf ? { lossOf } : {}) });
    progress.done();
    const weights = new Map<string, Weight>(model.weights);
    const reports: SpecTensorReport[] = [];
    for (const t of tensors) {
      const q = plan.tensors.get(t.name)!;
      reports.push(specReport(t.name, t.shape, q.spec, t.w, q));
      weights.set(t.name, { kind: "quant", q });
    }
    return {
      model: { ...model, weights }, tensors: reports, calibTokens: windows ? windows.reduce((a, w) => a + w.length, 0) : 0,
      mixed: { choice: Object.fromEntries(plan.choice), counts: plan.counts, sensitivity: plan.sensitivity },
    };
  },
};
