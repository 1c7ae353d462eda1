/** Method "awq+gptq": AWQ's scales (no clipping) folded in, then GPTQ on the scaled block. */
import { awqSearchScales } from "../awq.js";
import { runLayerwise, type LayerwiseMethod } from "../pipeline.js";
import { isSpecTarget, type OptionValue } from "../recipe.js";
import { runGgmlPreset } from "./ggml-preset.js";
import { AWQ_OPTIONS } from "./awq.js";
import { GPTQ_OPTIONS, gptqBlock } from "./gptq.js";
import type { MethodDef } from "./types.js";
import type { LinalgKernels } from "../../kernels/types.js";

const awqGptqLayerwise = (options: Record<string, OptionValue>, kernels?: LinalgKernels): LayerwiseMethod => ({
  label: "awq+gptq",
  columnQuantizer: true,
  gram: true,
  migrate(m, step) {
    const st = m.stats;
    const r = awqSearchScales(m.linears, m.cols, { meanAbs: st.meanAbs(), gram: st.gram!, nTokens: st.nTokens }, m.quantizer, { grid: options.grid as number, name: `blk.${m.layer}.${m.site}` });
    for (const k of m.keys) step.detail.set(k, { alpha: r.alpha });
    return r.scales;
  },
  quantizeBlock: (step) => gptqBlock(step, options, kernels),
});

export const awqGptq: MethodDef = {
  doc: "AWQ's per-channel scales folded in, then GPTQ (presets: GPTQ codes on llama.cpp's scales of the scaled model)",
  targets: ["spec", "preset"],
  // AWQ's scale search only (no clipping search: GPTQ chooses the codes), so its clip options do not apply
  options: { ...GPTQ_OPTIONS, grid: AWQ_OPTIONS.grid! },
  windows: (r) => (isSpecTarget(r.target) ? ["random"] : ["chunks"]),
  calibration: () => "required",
  // presets: the scales folded in, then GPTQ codes on llama.cpp's scales (Hessians collected on the scaled model)
  run: (ctx) => (isSpecTarget(ctx.recipe.target) ? runLayerwise(ctx, awqGptqLayerwise(ctx.recipe.options, ctx.backend?.linalg?.())) : runGgmlPreset(ctx, { gptq: true, awq: { grid: ctx.recipe.options.grid as number, clip: false } })),
};
