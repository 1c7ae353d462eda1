/**
 * `quantize(model, recipe)`: the one library verb that quantizes a whole model (torchao's
 * `quantize_(model, config)`). The recipe (algos/recipe.ts) is plain data; this function checks it
 * against the model and the method's row in the method table (algos/methods/index.ts), resolves the
 * calibration data it names, runs the method, and returns the quantized model with the canonical
 * recipe attached (`model.recipe`), which the writers put into the file's metadata.
 *
 * Isomorphic: files are the caller's business (the CLI reads the calibration text and imatrix files,
 * io/ writes the result), so the same call runs in Node and in the browser.
 */
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { numel } from "../core/tensor.js";
import type { Weight } from "../core/weight.js";
import { GGML_PRESETS, parseGgmlPreset } from "../ggml/mix.js";
import type { Backend } from "../kernels/types.js";
import { WasmBackend } from "../kernels/wasm/backend.js";
import { refGgmlEncoder, type GgmlEncoder } from "../ggml/encoder.js";
import type { Model } from "../model/weights.js";
import { checkFiniteWeight } from "../model/finite.js";
import { planWindows, windowInputs } from "../eval/windows.js";
import { canonicalSpec } from "../quant/spec.js";
import { calibrationWindows, generatedWindows } from "./calib.js";
import { isMixedSpec, parseMixedSpec, printMixedSpec } from "./mixed-model.js";
import { METHODS } from "./methods/index.js";
import type { CalibrationData, ImatrixFile, MethodContext, MethodOutput } from "./methods/types.js";
import { METHOD_NAMES, parseJson, parseRecipe, recipeToJson, sha256Hex, type MethodName, type Recipe } from "./recipe.js";
import { globToRegExp, linearWeightNames, selectTensors } from "./select.js";

export interface QuantizeOptions {
  /** the text the recipe's calibration names (its sha256 must match the recipe's) */
  calibText?: string;
  /** the importance matrix file the recipe names, read by the caller (io/imatrix-file.ts, ggml/imatrix.ts) */
  imatrixFile?: ImatrixFile & { sha256: string };
  /** kernels of the calibration forward passes (default: a one-thread WASM SIMD backend, as the CLI's
   * default; threads do not change results, each output row is computed by one thread) */
  backend?: Backend;
  progress?: Progress;
  /** encodes ggml blocks for preset targets (default: the backend's pool encoder when it is the WASM
   * backend, else the TypeScript reference; the bytes are the same) */
  encoder?: GgmlEncoder;
  /** streaming: layer-by-layer methods hand each finished block linear here instead of keeping it */
  onTensor?: (name: string, w: Weight) => void;
  /**
   * Go ahead although a weight holds NaN/Inf (default: refuse, naming the tensor and the first bad
   * element, before anything runs). An execution option, not part of the recipe: the same recipe on a
   * clean model gives the same file. Spec quantizers still refuse to quantize a NaN themselves.
   */
  allowNonFinite?: boolean;
  /**
   * Preset targets (plain rtn, no calibration): encode each ggml tensor when its bytes are first read — by the
   * GGUF writer, in file order — rather than all of them before returning, so writing the file (and flushing
   * it to disk) overlaps the encoding of the tensors after it. Same bytes. The encoder (and `backend`) must
   * stay usable until the result's tensors have been read; a NaN/Inf is then refused when its tensor is read.
   */
  deferGgmlEncoding?: boolean;
}

export interface QuantizeResult extends MethodOutput {
  /** the canonical recipe (defaults filled in) and its JSON, as the file carries it */
  recipe: Recipe;
  recipeJson: string;
  /** which writer takes the result: quantlab's quantized safetensors, or GGUF */
  output: "safetensors" | "gguf";
  /** bits per weight over the quantized tensors (spec targets) or the whole file's tensors (presets) */
  bpw: number;
  seconds: number;
}

/** The recipe of a method name's options, for `quantize --help` and parseRecipe. */
export function methodOptions(m: MethodName) {
  return METHODS[m].options;
}

/** Parses and canonicalizes a recipe (JSON text or object; `kind` and `version` may be omitted). */
export function normalizeRecipe(input: unknown, where = "recipe"): Recipe {
  let v = typeof input === "string" ? parseJson(input, where) : input;
  if (typeof v === "object" && v !== null && !Array.isArray(v)) v = { kind: "quantlab.recipe", version: 1, ...(v as object) };
  const r = parseRecipe(v, methodOptions, where);
  // canonical target: specs printed canonically, presets by their table name
  if ("spec" in r.target) {
    const s = r.target.spec;
    if (isMixedSpec(s)) {
      if (r.method !== "mixed") throw new QuantlabError("E_ARG", `recipe: target spec "${s}" is a mixed-precision spec: run it with method "mixed"`);
      r.target = { spec: printMixedSpec(parseMixedSpec(s)) };
    } else {
      if (r.method === "mixed") throw new QuantlabError("E_ARG", `recipe: method mixed needs a mixed:<bits>bpw:<spec>+<spec>… target spec, got "${s}"`);
      r.target = { spec: canonicalSpec(s) };
    }
  } else r.target = { ...r.target, preset: parseGgmlPreset(r.target.preset) };
  if (r.overrides) for (const o of r.overrides) if (o.spec !== undefined) o.spec = canonicalSpec(o.spec);
  return r;
}

const LAYERWISE: readonly MethodName[] = ["gptq", "awq", "awq+gptq", "hqq", "smoothquant"];

/** Checks that every field of the recipe has an effect for its target and method; names the first that does not. */
function checkApplicable(r: Recipe, model: Model): void {
  const def = METHODS[r.method];
  const kind = "spec" in r.target ? "spec" : "preset";
  if (!def.targets.includes(kind)) {
    throw new QuantlabError("E_ARG", `recipe: method ${r.method} does not take a ${kind === "spec" ? "spec" : "GGUF preset"} target (it runs on: ${def.targets.map((t) => (t === "spec" ? "specs" : "presets")).join(", ")})${kind === "preset" ? "; its results cannot be written as llama.cpp blocks yet" : ""}`);
  }
  if (r.rotate && kind === "preset") {
    // the residual rotation R1 folds into the weights; the online FFN-down rotation R4 is a run-time transform llama.cpp has no op for
    if (r.rotate.mode !== "residual") throw new QuantlabError("E_ARG", `recipe: rotate (mode full) with the GGUF preset ${(r.target as { preset: string }).preset}: the online FFN-down Hadamard rotation (R4) cannot run in llama.cpp; rotate the residual stream only (rotate.mode "residual", --rotate residual)`);
    if (!["rtn", "gptq", "awq", "awq+gptq"].includes(r.method)) throw new QuantlabError("E_ARG", `recipe: rotate does not compose with method ${r.method} on a GGUF preset`);
  } else if (r.rotate && r.method !== "rtn" && !LAYERWISE.includes(r.method)) {
    throw new QuantlabError("E_ARG", `recipe: rotate does not compose with method ${r.method}`);
  }
  if (r.imatrix && kind === "spec") throw new QuantlabError("E_ARG", "recipe: imatrix applies to GGUF preset targets; spec targets calibrate through the method");
  if (kind === "preset" && r.tensors?.only) throw new QuantlabError("E_ARG", "recipe: tensors.only applies to spec targets; a preset covers every tensor (use overrides to change a tensor's type)");
  const use = def.calibration(r);
  if (use === "required" && !r.calibration) {
    throw new QuantlabError("E_ARG", `method ${r.method}${kind === "preset" ? ` with preset ${(r.target as { preset: string }).preset}` : ""} needs calibration data (--calib <text>${kind === "preset" ? " / --imatrix <text>" : ""})`);
  }
  if (use === "unused" && r.calibration) {
    throw new QuantlabError("E_ARG", `recipe: calibration is given but method ${r.method} with target ${"spec" in r.target ? r.target.spec : r.target.preset} does not use it${r.imatrix ? " (an imatrix read from a file)" : ""}`);
  }
  if (r.calibration) {
    const kinds = def.windows(r);
    if (!kinds.includes(r.calibration.windows.kind)) throw new QuantlabError("E_ARG", `recipe: calibration.windows.kind "${r.calibration.windows.kind}" does not suit method ${r.method} here (expected ${kinds.map((k) => `"${k}"`).join(" or ")})`);
    if (r.calibration.windows.kind === "random" && r.calibration.windows.seq > model.config.seqLen) {
      throw new QuantlabError("E_ARG", `option --seq: ${r.calibration.windows.seq} is longer than the model's context ${model.config.seqLen}`);
    }
  }
  if (r.overrides && kind === "spec") {
    for (const o of r.overrides) if (o.spec === undefined) throw new QuantlabError("E_ARG", `recipe: override "${o.match}" gives a ggml type; spec targets take specs ("spec")`);
    if (r.method === "mixed" || r.method === "qat") throw new QuantlabError("E_ARG", `recipe: overrides do not compose with method ${r.method}`);
  }
}

/** The recipe's calibration data, resolved against the caller's text (sha256 checked) or the model. */
async function resolveCalibration(r: Recipe, model: Model, opts: QuantizeOptions): Promise<CalibrationData | undefined> {
  const c = r.calibration;
  if (!c) return undefined;
  const tok = model.tokenizer;
  if (!tok) throw new QuantlabError("E_ARG", `${model.source.path}: calibration needs the model's tokenizer`);
  const bosId = tok.bosId;
  let tokens: Int32Array | undefined;
  if ("text" in c.source) {
    if (opts.calibText === undefined) throw new QuantlabError("E_ARG", `recipe: calibration text ${c.source.text.name} was not supplied (--calib <file>)`);
    const sha = await sha256Hex(new TextEncoder().encode(opts.calibText));
    if (sha !== c.source.text.sha256) throw new QuantlabError("E_ARG", `recipe: calibration text ${c.source.text.name}: sha256 ${sha} differs from the recipe's ${c.source.text.sha256} (a different file)`);
    tokens = Int32Array.from(tok.encode(opts.calibText, { bos: false }));
  } else if (opts.calibText !== undefined) throw new QuantlabError("E_ARG", "recipe: calibration samples the model itself; a calibration text was also given");
  const w = c.windows;
  let cached: Int32Array[] | undefined;
  return {
    ...(tokens ? { tokens } : {}),
    bosId,
    windows: () => {
      if (cached) return cached;
      if (w.kind === "random") {
        const o = { samples: w.samples, seq: w.seq, seed: r.seed, bosId };
        cached = tokens ? calibrationWindows(tokens, o) : generatedWindows(model, o);
      } else if (w.kind === "consecutive") {
        if (!tokens) throw new QuantlabError("E_ARG", 'recipe: "consecutive" windows need a calibration text');
        const t = tokens.subarray(0, w.maxTokens);
        cached = planWindows(t.length, w.ctx).map((win) => windowInputs(t, win, bosId));
        if (cached.length === 0) throw new QuantlabError("E_ARG", "recipe: the calibration text has no tokens");
      } else if (w.kind === "chunks") {
        // llama-imatrix's chunks (algos/imatrix.ts): BOS, then the next ctx − 1 tokens of chunk k's ctx
        if (!tokens) throw new QuantlabError("E_ARG", 'recipe: "chunks" windows need a calibration text');
        let n = Math.floor((tokens.length + 1) / w.ctx);
        if (w.maxChunks !== null) n = Math.min(n, w.maxChunks);
        if (n < 1) throw new QuantlabError("E_ARG", `recipe: the calibration text has ${tokens.length} tokens, fewer than one chunk of ${w.ctx}`);
        cached = Array.from({ length: n }, (_, k) => {
          const win = new Int32Array(w.ctx);
          win[0] = bosId;
          win.set(tokens.subarray(k * w.ctx, k * w.ctx + w.ctx - 1), 1);
          return win;
        });
      } else throw new QuantlabError("E_INTERNAL", `calibration windows of kind ${w.kind} are read by the method itself`);
      return cached;
    },
  };
}

/** Quantizes a model as the recipe says. The input model is not modified. */
export async function quantize(model: Model, recipeIn: Recipe | Record<string, unknown> | string, opts: QuantizeOptions = {}): Promise<QuantizeResult> {
  const t0 = Date.now();
  const recipe = normalizeRecipe(recipeIn);
  if (!(METHOD_NAMES as readonly string[]).includes(recipe.method)) throw new QuantlabError("E_INTERNAL", `no method ${recipe.method}`);
  checkApplicable(recipe, model);
  const isSpec = "spec" in recipe.target;
  // every weight feeds the output or the calibration passes: a NaN anywhere is refused before any work —
  // except for a plain preset (rtn, no calibration, no rotation), whose weights are only read to be
  // encoded: there the encoder checks each tensor on the chunks it reads anyway (one read of the file,
  // ggml-quant.ts refuseNonFinite) and the output is written only after every tensor passed
  const streamCheck = !opts.allowNonFinite && !isSpec && recipe.method === "rtn" && !recipe.rotate && recipe.calibration === undefined;
  if (!opts.allowNonFinite && !streamCheck) for (const [name, w] of model.weights) checkFiniteWeight(w, name, model.source.path, "refusing to quantize the model");
  // tensors: the selection, then per-tensor specs from the overrides (spec targets)
  let names: string[] = [];
  const overrideSpec = new Map<string, string>();
  if (isSpec) {
    names = selectTensors(model, recipe.tensors?.only, recipe.tensors?.keepFloat, { only: "tensors.only (--only)", keepFloat: "tensors.keepFloat (--skip)" });
    // a rotation alone (every tensor kept in float) is still a transform; anything else with nothing selected does nothing
    if (names.length === 0 && !recipe.rotate) throw new QuantlabError("E_ARG", "nothing to quantize: tensors.keepFloat (--skip) removed every tensor");
    if (recipe.rotate || LAYERWISE.includes(recipe.method)) {
      const linears = new Set(linearWeightNames(model));
      const other = names.filter((n) => !linears.has(n));
      if (other.length > 0) throw new QuantlabError("E_ARG", `method ${recipe.method}${recipe.rotate ? " with rotate" : ""} quantizes block linears only; tensors.only (--only) selects ${other.slice(0, 3).join(", ")}${other.length > 3 ? ", …" : ""}`);
    }
    for (const o of recipe.overrides ?? []) {
      const re = globToRegExp(o.match);
      const hit = names.filter((n) => re.test(n));
      if (hit.length === 0) throw new QuantlabError("E_ARG", `recipe: override "${o.match}" matches no tensor being quantized`);
      for (const n of hit) overrideSpec.set(n, o.spec!);
    }
  }
  const targetSpec = isSpec ? (recipe.target as { spec: string }).spec : "";
  const calib = await resolveCalibration(recipe, model, opts);
  if (recipe.imatrix && "file" in recipe.imatrix) {
    if (!opts.imatrixFile) throw new QuantlabError("E_ARG", `recipe: imatrix file ${recipe.imatrix.file.name} was not supplied (--imatrix <file>)`);
    if (opts.imatrixFile.sha256 !== recipe.imatrix.file.sha256) throw new QuantlabError("E_ARG", `recipe: imatrix file ${recipe.imatrix.file.name}: sha256 ${opts.imatrixFile.sha256} differs from the recipe's ${recipe.imatrix.file.sha256}`);
  } else if (opts.imatrixFile) throw new QuantlabError("E_ARG", "an imatrix file was supplied but the recipe does not read one");
  const backend = opts.backend ?? new WasmBackend();
  const ctx: MethodContext = {
    model, recipe, names,
    specOf: (n) => overrideSpec.get(n) ?? targetSpec,
    ...(calib ? { calib } : {}),
    ...(opts.imatrixFile ? { imatrixFile: opts.imatrixFile } : {}),
    backend,
    encoder: opts.encoder ?? (backend instanceof WasmBackend ? backend.ggmlEncoder() : refGgmlEncoder),
    progress: opts.progress ?? noProgress,
    ...(opts.onTensor ? { onTensor: opts.onTensor } : {}),
    ...(streamCheck ? { refuseNonFinite: { where: model.source.path, what: "refusing to quantize the model" } } : {}),
    ...(opts.deferGgmlEncoding && opts.backend && recipe.method === "rtn" && !recipe.rotate && recipe.calibration === undefined ? { deferGgmlEncoding: true } : {}),
  };
  let out: MethodOutput;
  try {
    out = await METHODS[recipe.method].run(ctx);
  } finally {
    if (!opts.backend) backend.dispose?.();
  }
  const recipeJson = recipeToJson(recipe);
  out.model = { ...out.model, recipe: recipeJson, source: { ...out.model.source, format: "memory" } };
  let bpw: number;
  if (out.ggml) bpw = out.ggml.bitsPerWeight;
  else {
    let bits = 0, count = 0;
    for (const t of out.tensors ?? []) { bits += t.storageBits; count += numel(t.shape); }
    bpw = count ? bits / count : 0;
  }
  return { ...out, recipe, recipeJson, output: isSpec ? "safetensors" : "gguf", bpw, seconds: (Date.now() - t0) / 1000 };
}

/** llama_ftype of a preset (general.file_type). */
export function presetFileType(preset: string): number {
  return GGML_PRESETS[parseGgmlPreset(preset)].ftype;
}
