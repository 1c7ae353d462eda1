/**
 * Method "awq": AWQ (Lin et al. 2023), algos/awq.ts — per input site, a scale search on the float
 * block's calibration inputs (s = mean|x|^α, α on a grid) and a clipping search, the scales folded into
 * the RMSNorm or the previous linear, then round to nearest of the clipped, scaled weights.
 */
import { awqQuantizePrep } from "../awq.js";
import { runLayerwise, type LayerwiseMethod } from "../pipeline.js";
import { isSpecTarget, type OptionSchema, type OptionValue } from "../recipe.js";
import { runGgmlPreset } from "./ggml-preset.js";
import type { MethodDef } from "./types.js";

export const AWQ_OPTIONS: OptionSchema = {
  grid: { type: "integer", default: 20, min: 2, doc: "α grid points covering [0, 1]" },
  clipGrid: { type: "integer", default: 20, min: 1, doc: "clipping candidates: max|w|·(1 − i/clipGrid)" },
  maxShrink: { type: "number", default: 0.5, min: 0, max: 1, doc: "largest clipping shrink tried" },
};

export const awqOptionsOf = (o: Record<string, OptionValue>) => ({ grid: o.grid as number, clipGrid: o.clipGrid as number, maxShrink: o.maxShrink as number });

export const awqLayerwise = (options: Record<string, OptionValue>): LayerwiseMethod => ({
  label: "awq",
  columnQuantizer: true,
  gram: true,
  migrate(m, step) {
    const st = m.stats;
    const r = awqQuantizePrep(m.linears, m.cols, { meanAbs: st.meanAbs(), gram: st.gram!, nTokens: st.nTokens }, m.quantizer, { ...awqOptionsOf(options), name: `blk.${m.layer}.${m.site}` });
    m.keys.forEach((k, i) => step.migrated.set(k, r.weights[i]!));
    for (const k of m.keys) step.detail.set(k, { alpha: r.alpha });
    return r.scales;
  },
  quantizeBlock(step) {
    for (const k of step.selected) {
      const t0 = Date.now();
      step.setQuant(k, step.quantizeWith(k, step.migrated.get(k) ?? step.bw[k]), t0); // the clipped, scaled weights
    }
  },
});

export const awq: MethodDef = {
  doc: "AWQ: activation-aware per-channel scales (folded into the norms / previous linears) and clipping, then round to nearest (presets: searched against each tensor's ggml type, then llama.cpp's quantizer)",
  targets: ["spec", "preset"],
  options: AWQ_OPTIONS,
  windows: (r) => (isSpecTarget(r.target) ? ["random"] : ["chunks"]),
  calibration: () => "required",
  run: (ctx) => (isSpecTarget(ctx.recipe.target) ? runLayerwise(ctx, awqLayerwise(ctx.recipe.options)) : runGgmlPreset(ctx, { gptq: false, awq: { ...awqOptionsOf(ctx.recipe.options), clip: true } })),
};
