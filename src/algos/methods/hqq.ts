/** Method "hqq": HQQ's half-quadratic solver per group (algos/hqq.ts), no calibration (int asym/asymf specs). */
import { rtnQuantize } from "../rtn.js";
import { linearName } from "../calib.js";
import { colsOf, rowsOf, runLayerwise } from "../pipeline.js";
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
        const c = step.config;
        for (const k of step.selected) {
          const t0 = Date.now();
          const rows = rowsOf(k, c), cols = colsOf(k, c);
          const gq = step.quantizer(k);
          step.setQuant(k, gq.toQTensor(rtnQuantize(step.bw[k], rows, cols, gq), rows, cols, linearName(step.layer, k)), t0);
        }
      },
    }),
};
