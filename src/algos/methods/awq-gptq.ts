/** Method "awq+gptq": AWQ's scales (no clipping) folded in, then GPTQ on the scaled block. */
import { awqSearchScales } from "../awq.js";
import { runLayerwise, type LayerwiseMethod } from "../pipeline.js";
import type { OptionValue } from "../recipe.js";
import { AWQ_OPTIONS, awqOptionsOf } from "./awq.js";
import { GPTQ_OPTIONS, gptqBlock } from "./gptq.js";
import type { MethodDef } from "./types.js";

const awqGptqLayerwise = (options: Record<string, OptionValue>): LayerwiseMethod => ({
  label: "awq+gptq",
  columnQuantizer: true,
  gram: true,
  migrate(m, step) {
    const st = m.stats;
    const r = awqSearchScales(m.linears, m.cols, { meanAbs: st.meanAbs(), gram: st.gram!, nTokens: st.nTokens }, m.quantizer, { ...awqOptionsOf(options), name: `blk.${m.layer}.${m.site}` });
    for (const k of m.keys) step.detail.set(k, { alpha: r.alpha });
    return r.scales;
  },
  quantizeBlock: (step) => gptqBlock(step, options),
});

export const awqGptq: MethodDef = {
  doc: "AWQ's per-channel scales folded in, then GPTQ",
  targets: ["spec"],
  options: { ...GPTQ_OPTIONS, grid: AWQ_OPTIONS.grid!, clipGrid: AWQ_OPTIONS.clipGrid!, maxShrink: AWQ_OPTIONS.maxShrink! },
  windows: () => ["random"],
  calibration: () => "required",
  run: (ctx) => runLayerwise(ctx, awqGptqLayerwise(ctx.recipe.options)),
};
