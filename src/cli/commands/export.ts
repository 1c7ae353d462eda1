/**
 * `quantlab export <model> --onnx <out-dir> [--spec <spec> | --recipe <file>] [--dtype fp32|fp16|q8|q4|q4f16]`:
 * quantizes with the library's `quantize(model, recipe)` when a spec or recipe is given (or the dtype's
 * default spec for a float model), then writes the transformers.js directory with io's ONNX writer
 * (io/onnx.ts, atomic through io/node/onnx-file.ts). Int4/int8 QTensors keep their codes and scales
 * (MatMulNBits); what the file holds as dequantized float is a warning on stderr and in --json's notes.
 */
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { quantize, normalizeRecipe } from "../../algos/quantize.js";
import type { Recipe } from "../../algos/recipe.js";
import { saveOnnxDir } from "../../io/node/onnx-file.js";
import { ONNX_DTYPES, ONNX_DTYPE_NAMES, containerBits, dtypeFor, encodingBits, inferOnnxDtype, isOnnxLinearName, linearEncoding, parseOnnxDtype, type OnnxDtype } from "../../io/onnx.js";
import { toSpec } from "../../quant/spec.js";
import { parseMixedSpec } from "../../algos/mixed-model.js";
import type { Model } from "../../model/weights.js";
import { printJson, stderrProgress } from "../util.js";
import { ALLOW_NONFINITE_HELP, displayName, loadModelWithTokenizer } from "../model-options.js";
import { readCalibText } from "../recipe-flags.js";
import { loadRecipeArg } from "./quantize.js";

interface ExportOptions {
  onnx?: string;
  spec?: string;
  recipe?: string;
  calib?: string;
  dtype?: string;
  accuracyLevel: string;
  tokenizer?: string;
  allowNonfinite?: boolean;
  json?: boolean;
}

/** formats whose codes the export can carry (io/onnx-weights.ts): integer levels, and ONNX's float8 types */
const CODED_FORMAT = /^(u?int\d+|ternary|binary|fp8_e4m3|fp8_e5m2|fp8_e4m3fnuz|fp8_e5m2fnuz)$/;

/** What a spec target must be for a dtype, checked before any work. */
function checkSpecForDtype(spec: string, dtype: OnnxDtype | undefined, where: string): void {
  const s = toSpec(spec);
  if (s.activations) throw new QuantlabError("E_UNSUPPORTED", `${where}: spec ${spec} quantizes activations, which the ONNX export cannot carry`);
  if (s.integerMatmul) throw new QuantlabError("E_UNSUPPORTED", `${where}: spec ${spec} asks for an integer matmul, which the ONNX export cannot carry`);
  if (dtype === undefined) return;
  const bits = ONNX_DTYPES[dtype].bits;
  if (bits === undefined) return;
  if (!CODED_FORMAT.test(s.format)) throw new QuantlabError("E_UNSUPPORTED", `--dtype ${dtype}: spec ${spec}: ${s.format} codes have no ONNX equivalent (integer grids, ternary, binary and float8 only); --dtype fp32 exports it as exact dequantized float`);
  if (containerBits(s.bits) > bits) throw new QuantlabError("E_ARG", `--dtype ${dtype}: spec ${spec} has ${s.bits}-bit codes, wider than the dtype's ${bits} (use --dtype ${dtypeFor(containerBits(s.bits)) ?? "fp32"})`);
  // the graph's float type holds the scales: a float16 graph carries f16 scales exactly, nothing wider
  if (ONNX_DTYPES[dtype].float === "fp16" && s.scale.dtype !== "f16") throw new QuantlabError("E_ARG", `--dtype ${dtype}: spec ${spec} stores ${s.scale.dtype} scales, which float16 scales cannot hold exactly (add :scale=f16)`);
}

/** In a q2/q4/q8 file every quantized linear must be carried by its codes, no wider than the dtype's. */
function checkQuantized(model: Model, dtype: OnnxDtype): void {
  const bits = ONNX_DTYPES[dtype].bits;
  if (bits === undefined) return;
  for (const [name, w] of model.weights) {
    if (w.kind === "dense" || !isOnnxLinearName(name)) continue;
    const e = linearEncoding(w, name);
    if (e.kind === "float") throw new QuantlabError("E_UNSUPPORTED", `--dtype ${dtype}: tensor ${name}: ${e.why}; --dtype fp32 exports it as exact dequantized float`);
    const b = encodingBits(e)!;
    if (b > bits) throw new QuantlabError("E_ARG", `--dtype ${dtype}: tensor ${name} has ${b}-bit codes, wider than the dtype's ${bits} (use --dtype ${dtypeFor(b) ?? "fp32"})`);
  }
}

export function register(program: Command): void {
  program
    .command("export")
    .description("export a model (optionally quantized first) as a directory transformers.js / ONNX Runtime loads (atomic output)")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors (quantlab's quantized ones keep their codes) or Hugging Face directory")
    .option("--onnx <out-dir>", "write an ONNX directory: config.json, generation_config.json, tokenizer files, onnx/<model file>")
    .option("--dtype <dtype>", `${ONNX_DTYPE_NAMES.map((d) => `${d} (onnx/${ONNX_DTYPES[d].file})`).join(", ")}; default: from the weights' widest codes (≤ 2 bits → q2, ≤ 4 → q4, ≤ 8 → q8), else fp32`)
    .option("--spec <spec>", "quantize first with this spec (round-to-nearest), e.g. int4:g32:asym; q2/q4/q8 default to int2:g32:asym / int4:g32 / int8:g32 for a float model")
    .option("--recipe <file>", "quantize first exactly as a recipe says (a JSON, or a file quantlab wrote)")
    .option("--calib <file>", "the calibration text a --recipe names")
    .option("--accuracy-level <n>", "MatMulNBits accuracy_level: 0 float activations (exact, default), 4 int8 activations (ONNX Runtime's fast CPU path)", "0")
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .option("--allow-nonfinite", ALLOW_NONFINITE_HELP)
    .option("--json", "print one JSON object {output, dtype, file, files, bytes, notes, matMulNBits, dequantizeLinear, floatLinears, …}")
    .action(async (path: string, o: ExportOptions) => {
      const t0 = Date.now();
      if (o.onnx === undefined) throw new QuantlabError("E_ARG", "export: give --onnx <out-dir> (the only export format so far)");
      const out = o.onnx;
      const dtypeArg = o.dtype !== undefined ? parseOnnxDtype(o.dtype) : undefined;
      const accuracyLevel = Number(o.accuracyLevel);
      if (!Number.isInteger(accuracyLevel) || accuracyLevel < 0 || accuracyLevel > 4) throw new QuantlabError("E_ARG", `option --accuracy-level: expected 0…4, got "${o.accuracyLevel}"`);
      if (o.spec !== undefined && o.recipe !== undefined) throw new QuantlabError("E_ARG", "give either --spec <spec> or --recipe <file>, not both");
      if (o.calib !== undefined && o.recipe === undefined) throw new QuantlabError("E_ARG", "option --calib: only a --recipe that calibrates reads a text");
      let recipe: Recipe | undefined;
      if (o.spec !== undefined) {
        recipe = normalizeRecipe({ target: { spec: o.spec }, method: "rtn" }, `--spec ${o.spec}`);
      } else if (o.recipe !== undefined) {
        recipe = await loadRecipeArg(o.recipe);
      }
      if (recipe && "spec" in recipe.target) {
        const where = o.spec !== undefined ? "--spec" : `--recipe ${o.recipe}`;
        // mixed precision: every candidate must be one the dtype carries (each tensor is coded on its own)
        if (recipe.method === "mixed") for (const c of parseMixedSpec(recipe.target.spec).candidates) checkSpecForDtype(c, dtypeArg, `${where}: mixed candidate ${c}`);
        else checkSpecForDtype(recipe.target.spec, dtypeArg, where);
        for (const ov of recipe.overrides ?? []) if (ov.spec !== undefined) checkSpecForDtype(ov.spec, undefined, `--recipe ${o.recipe}: override ${ov.match}`);
      }
      const progress = o.json ? undefined : stderrProgress();
      const { model: loaded } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer, ...(progress ? { progress } : {}) });
      let model = loaded;
      let spec: string | undefined = recipe && "spec" in recipe.target ? recipe.target.spec : undefined;
      // a float model and a quantized dtype without a spec: the dtype's default spec
      const defaultSpec = dtypeArg !== undefined ? ONNX_DTYPES[dtypeArg].defaultSpec : undefined;
      if (!recipe && defaultSpec !== undefined && [...model.weights.values()].every((w) => w.kind === "dense")) {
        spec = defaultSpec;
        recipe = normalizeRecipe({ target: { spec }, method: "rtn" }, `--dtype ${dtypeArg}`);
      }
      if (recipe) {
        const calibText = o.calib !== undefined ? (await readCalibText(o.calib, "--calib")).text : undefined;
        const r = await quantize(model, recipe, { ...(calibText !== undefined ? { calibText } : {}), ...(progress ? { progress } : {}), allowNonFinite: !!o.allowNonfinite });
        model = r.model;
      }
      const dtype = dtypeArg ?? inferOnnxDtype(model);
      checkQuantized(model, dtype);
      const res = await saveOnnxDir(model, out, { dtype, accuracyLevel, allowNonFinite: !!o.allowNonfinite });
      const seconds = (Date.now() - t0) / 1000;
      for (const n of res.notes) process.stderr.write(`quantlab: warning: ${n}\n`);
      if (o.json) {
        printJson({ input: path, output: out, dtype, file: `onnx/${ONNX_DTYPES[dtype].file}`, spec: spec ?? null, recipe: recipe ?? null, files: res.files, bytes: res.bytes, matMulNBits: res.matMulNBits, dequantizeLinear: res.dequantizeLinear, gatherBlockQuantized: res.gatherBlockQuantized, floatLinears: res.floatLinears, accuracyLevel, notes: res.notes, seconds });
      } else {
        process.stdout.write(`${displayName(path)} → ${out}: onnx/${ONNX_DTYPES[dtype].file} (${dtype}${spec ? `, ${spec}` : ""}), ${res.matMulNBits} MatMulNBits + ${res.dequantizeLinear} DequantizeLinear + ${res.floatLinears} float linears, ${res.bytes} bytes in ${seconds.toFixed(2)} s\n`);
      }
    });
}
