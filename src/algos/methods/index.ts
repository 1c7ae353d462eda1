/**
 * The method table: one row per method, each in its own file. Adding a method is one file and one row
 * here; `quantize(model, recipe)` (algos/quantize.ts) and the CLI read everything else from the row.
 */
import type { MethodName } from "../recipe.js";
import { awq } from "./awq.js";
import { awqGptq } from "./awq-gptq.js";
import { gptq } from "./gptq.js";
import { hqq } from "./hqq.js";
import { mixed } from "./mixed.js";
import { qat } from "./qat.js";
import { rtn } from "./rtn.js";
import { smoothquant } from "./smoothquant.js";
import type { MethodDef } from "./types.js";

export const METHODS: Record<MethodName, MethodDef> = {
  rtn,
  gptq,
  awq,
  "awq+gptq": awqGptq,
  hqq,
  smoothquant,
  mixed,
  qat,
};

export type { MethodDef, MethodContext, MethodOutput, CalibrationData, ImatrixFile, ImatrixInfo, SpecTensorReport } from "./types.js";
