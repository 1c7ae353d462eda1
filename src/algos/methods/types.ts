/**
 * The contract between `quantize(model, recipe)` (algos/quantize.ts) and the methods (one file each in
 * this folder, one row each in ./index.ts): what a method is handed, and what it hands back.
 */
import type { Progress } from "../../core/progress.js";
import type { Weight } from "../../core/weight.js";
import type { Imatrix } from "../../ggml/imatrix.js";
import type { GgmlEncoder } from "../../ggml/encoder.js";
import type { Backend } from "../../kernels/types.js";
import type { Model } from "../../model/weights.js";
import type { GgmlTensorReport } from "../ggml-quant.js";
import type { CalibrationWindows, OptionSchema, Recipe } from "../recipe.js";

/** Calibration data the recipe names, resolved (text tokenized, or windows sampled from the model). */
export interface CalibrationData {
  /** the calibration text's tokens, no BOS (undefined for data-free calibration from the model) */
  tokens?: Int32Array;
  bosId: number;
  /** the recipe's windows ("random", "consecutive"; BOS first), made on first call */
  windows(): Int32Array[];
}

/** An importance matrix read from a file (llama-imatrix .dat / .gguf) by the caller. */
export interface ImatrixFile {
  imatrix: Imatrix;
  /** file name, for the GGUF's quantize.imatrix.file */
  source: string;
  chunks?: number;
}

export interface MethodContext {
  model: Model;
  recipe: Recipe;
  /** spec targets: the tensors to quantize (selection applied, keepFloat removed) */
  names: string[];
  /** spec targets: the canonical spec of a tensor (the target's, or an override's) */
  specOf(name: string): string;
  calib?: CalibrationData;
  imatrixFile?: ImatrixFile;
  /** kernels of the calibration forward passes */
  backend?: Backend;
  /** encodes ggml blocks (preset targets) */
  encoder: GgmlEncoder;
  progress: Progress;
  /** streaming: each finished tensor goes here instead of the returned model (layer-by-layer methods) */
  onTensor?: (name: string, w: Weight) => void;
  /** preset targets: the model's weights were not checked for NaN/Inf up front; the encoding must refuse
   * one (ggml-quant.ts GgmlQuantizeOptions.refuseNonFinite) */
  refuseNonFinite?: { where: string; what: string };
  /** preset targets: encode each tensor when it is first read (quantize.ts QuantizeOptions.deferGgmlEncoding) */
  deferGgmlEncoding?: boolean;
  /** layer-by-layer methods with streamed passes (GPTQ): bytes of the FFN-down input kept from its capture to the
   * block's last pass, which then skips gate/up for those tokens (calib.ts BlockPassCache ffnBytes; default 0) */
  ffnCacheBytes?: number;
  /** layer-by-layer methods: wall-clock phase times (ms) are added here when given (pipeline.ts LayerwiseTimings) */
  timings?: LayerwiseTimings;
}

/** Where a layer-by-layer run spends its time (ms, summed over blocks). */
export interface LayerwiseTimings {
  /** the clock (ms) the phases are timed with; default performance.now (wall). A CPU-time clock (the
   * process's, workers included) gives each phase's work on a machine shared with other jobs. */
  now?: () => number;
  /** embedding lookup of the calibration windows */
  embedMs: number;
  /** forward passes that capture a site's input, per site (what the hook does is not counted) */
  forwardMs: Record<string, number>;
  /** the capture hooks per site (GPTQ: the Hessian accumulation) */
  hookMs: Record<string, number>;
  /** the method's quantization of each block, captures excluded (GPTQ: the solves) */
  quantizeMs: number;
  /** scale migration (AWQ, SmoothQuant): its statistics pass and the search */
  migrateMs: number;
  /** the pass of the quantized block that makes the next block's inputs */
  finalPassMs: number;
}

/** Zeroed LayerwiseTimings. */
export function newLayerwiseTimings(): LayerwiseTimings {
  return { embedMs: 0, forwardMs: {}, hookMs: {}, quantizeMs: 0, migrateMs: 0, finalPassMs: 0 };
}

/** One quantized tensor of a spec target. */
export interface SpecTensorReport {
  name: string;
  shape: number[];
  spec: string;
  storageBits: number;
  bpw: number;
  /** 10·log10(‖W‖² / ‖W − Ŵ‖²) against the float weight the method started from (after its transforms) */
  sqnrDb: number;
  /** ‖W − Ŵ‖² / ‖W‖², the same measure as a ratio */
  relErr: number;
  seconds?: number;
  /** GPTQ proxy loss, AWQ α, SmoothQuant α … where they apply */
  detail?: Record<string, number>;
}

export interface ImatrixInfo {
  imatrix: Imatrix;
  /** calibration text name or imatrix file name */
  source: string;
  collected: boolean;
  chunks?: number;
  tokens?: number;
  ctx?: number;
  seconds: number;
}

export interface MethodOutput {
  model: Model;
  /** spec targets */
  tensors?: SpecTensorReport[];
  /** preset targets */
  ggml?: { fileType: number; tensors: GgmlTensorReport[]; params: number; bytes: number; bitsPerWeight: number };
  imatrix?: ImatrixInfo;
  calibTokens?: number;
  /** mixed precision: the spec chosen per tensor and the candidates' counts */
  mixed?: { choice: Record<string, string>; counts: Record<string, number>; sensitivity: string };
  /** QAT: the loss curve */
  qat?: { losses: number[]; trainTokens: number };
}

export type CalibrationUse = "required" | "optional" | "unused";

export interface MethodDef {
  /** what the method is, for --help */
  doc: string;
  /** target kinds it runs on */
  targets: readonly ("spec" | "preset")[];
  options: OptionSchema;
  /** whether it reads calibration data for this recipe (an unused calibration is an error, never ignored) */
  calibration(r: Recipe): CalibrationUse;
  /** the calibration window kinds it can use for this recipe */
  windows(r: Recipe): readonly CalibrationWindows["kind"][];
  run(ctx: MethodContext): Promise<MethodOutput>;
}
