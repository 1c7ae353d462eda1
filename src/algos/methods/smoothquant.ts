/**
 * Method "smoothquant": SmoothQuant (Xiao et al. 2023) for weight+activation specs (`…:a8` per-token
 * dynamic, `…:a8s` static per-tensor): per input site s = max|x|^α / max|W|^(1−α) folded into the
 * producer, then round to nearest of the weights.
 */
import { QuantlabError } from "../../core/errors.js";
import { printSpec } from "../../quant/spec.js";
import { smoothQuantScales } from "../smoothquant.js";
import { runLayerwise, type LayerwiseMethod } from "../pipeline.js";
import type { MethodDef } from "./types.js";
import { isSpecTarget } from "../recipe.js";
import { runGgmlPreset } from "./ggml-preset.js";

export const smoothquant: MethodDef = {
  doc: "SmoothQuant: migrate activation outliers into the weights (weight+activation specs), then round to nearest",
  targets: ["spec", "preset"],
  options: { alpha: { type: "number", default: 0.5, min: 0, max: 1, doc: "migration strength α" } },
  windows: (r) => (isSpecTarget(r.target) ? ["random"] : ["chunks"]),
  calibration: () => "required",
  run(ctx) {
    const alpha = ctx.recipe.options.alpha as number;
    // presets: the scales folded into the norms / previous linears offline (algos/ggml-transform.ts), then
    // llama.cpp's quantizers; its mat-vecs round the smoothed activations to 8 bits per 32-block
    if (!isSpecTarget(ctx.recipe.target)) return runGgmlPreset(ctx, { gptq: false, smooth: { alpha } });
    const m: LayerwiseMethod = {
      label: "smoothquant",
      validate(spec) {
        if (!spec.activations) throw new QuantlabError("E_SPEC", `spec "${printSpec(spec)}": smoothquant is for weight+activation specs; add an activation part, e.g. int8:channel:a8 (per token) or int8:channel:a8s (static)`);
      },
      migrate(site, step) {
        for (const k of site.keys) step.detail.set(k, { alpha });
        return smoothQuantScales(site.stats.absMax, site.linears, alpha);
      },
      quantizeBlock(step) {
        for (const k of step.selected) {
          const t0 = Date.now();
          step.setQuant(k, step.quantizeRtn(k, step.bw[k]), t0);
        }
      },
    };
    return runLayerwise(ctx, m);
  },
};
