/**
 * Method "gptq": GPTQ (Frantar et al. 2022), algos/gptq.ts.
 * - spec target: sequential inside each block: q,k,v ← attn_in; o ← attn_out_in (inputs computed with
 *   q,k,v already quantized); gate,up ← ffn_in; down ← ffn_down_in; every Hessian from the calibration
 *   windows through the already-quantized blocks before it (algos/pipeline.ts).
 * - preset target: GPTQ codes on llama.cpp's own scales (algos/ggml-gptq.ts), with the input Hessians
 *   collected alongside the importance matrix from the calibration text.
 */
import { gptqQuantize, HessianAccumulator } from "../gptq.js";
import { isSpecTarget } from "../recipe.js";
import { colsOf, rowsOf, runLayerwise, SITE_GROUPS, type BlockStep, type LayerwiseMethod } from "../pipeline.js";
import { linearName } from "../calib.js";
import { runGgmlPreset } from "./ggml-preset.js";
import type { MethodDef } from "./types.js";
import type { OptionSchema, OptionValue } from "../recipe.js";
import type { LinalgKernels } from "../../kernels/types.js";

export const GPTQ_OPTIONS: OptionSchema = {
  actOrder: { type: "boolean", default: false, doc: "quantize columns by descending Hessian diagonal (static groups)" },
  damp: { type: "number", default: 0.01, min: 0, doc: "dampening, fraction of the mean Hessian diagonal added to it" },
  blockSize: { type: "integer", default: 128, min: 1, doc: "columns per lazy-update block" },
};

/** GPTQ over one block's selected linears, site by site (shared by gptq and awq+gptq). */
export function gptqBlock(step: BlockStep, options: Record<string, OptionValue>, kernels?: LinalgKernels): void {
  const c = step.config;
  for (const g of SITE_GROUPS) {
    const keys = g.keys.filter((k) => step.selected.includes(k));
    if (keys.length === 0) continue;
    const t1 = Date.now();
    const cols = colsOf(keys[0]!, c);
    // on a backend's kernels: f32 products (twice the lanes; the Hessian within γ₆₆ of Σ|x_i x_j| per 256 tokens)
    const acc = new HessianAccumulator(cols, kernels, kernels ? "f32" : "f64");
    step.captureSite(g.site, (x, T) => acc.add(x, T));
    const h = acc.takeHessian();
    try {
    for (const k of keys) {
      const t2 = k === keys[0] ? t1 : Date.now();
      const rows = rowsOf(k, c);
      const name = linearName(step.layer, k);
      const gq = step.quantizer(k);
      // the last linear of a site may consume the Hessian (no cols×cols copy: 512 MiB at width 8192)
      const r = gptqQuantize(step.bw[k], rows, cols, h, gq, {
        blockSize: options.blockSize as number, percDamp: options.damp as number, ...(options.actOrder ? { actOrder: true } : {}),
        overwriteHessian: k === keys[keys.length - 1], name, ...(kernels ? { kernels, updates: "f32" as const } : {}),
      });
      step.setQuant(k, gq.toQTensor(r, rows, cols, name), t2, { loss: r.loss });
    }
    } finally {
      kernels?.free(h);
    }
  }
}

/** GPTQ layer by layer; with `kernels` (the run's backend's `linalg()`) the Hessians, factorizations and
 * lazy updates run on them (WASM SIMD, threads), else in the TypeScript reference. */
export const gptqLayerwise = (options: Record<string, OptionValue>, kernels?: LinalgKernels): LayerwiseMethod => ({
  label: "gptq",
  columnQuantizer: true,
  streamPasses: true,
  quantizeBlock: (step) => gptqBlock(step, options, kernels),
});

export const gptq: MethodDef = {
  doc: "GPTQ: column-by-column rounding with Hessian-based error compensation (spec targets; presets: GPTQ codes on llama.cpp's scales)",
  targets: ["spec", "preset"],
  options: GPTQ_OPTIONS,
  windows: (r) => (isSpecTarget(r.target) ? ["random"] : ["chunks"]),
  calibration: () => "required",
  async run(ctx) {
    if (!isSpecTarget(ctx.recipe.target)) return runGgmlPreset(ctx, { gptq: true });
    return runLayerwise(ctx, gptqLayerwise(ctx.recipe.options, ctx.backend?.linalg?.()));
  },
};
