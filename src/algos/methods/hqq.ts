/** Method "hqq": HQQ's half-quadratic solver per group (algos/hqq.ts), no calibration (int asym/asymf specs). */
import { runLayerwise } from "../pipeline.js";
import { RegistryQuantizer } from "../spec-quantizer.js";
import type { MethodDef } from "./types.js";
import { staticActivations } from "./rtn.js";

export const hqq: MethodDef = {
  doc: "HQQ: half-quadratic optimization of each group's scale and zero point (no calibration)",
  targets: ["spec"],
  options: {},
  windows: () => ["random"],
  calibration: (r) => (staticActivations(r) ? "required" : "unused"),
  run: (ctx) =>
    runLayerwise(ctx, {
      label: "hqq",
      columnQuantizer: true,
      quantizer: (spec) => new RegistryQuantizer(spec, { hqq: {} }),
      quantizeBlock(step) {
        for (const k of step.selected) {
          const t0 = Date.now();
          step.setQuant(k, step.quantizeWith(k, step.bw[k]), t0);
        }
      },
    }),
};
