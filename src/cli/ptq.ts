/**
 * The calibration-based path of `quantlab quantize`: `--method rtn|gptq|awq|awq+gptq|hqq|smoothquant`,
 * `--rotate`, `--calib <text>` (or `--calib-from-model`), `--samples`, `--seq`, `--seed`, GPTQ/AWQ/
 * SmoothQuant knobs. Runs algos/ptq.ts `quantizeModelPtq` layer by layer and writes the same
 * quantized-model safetensors file as the plain path (io/quant-model.ts), with the model's run-time
 * input transforms (online FFN-down rotation, W8A8 activation scales) in its metadata.
 *
 * Kept apart from commands/quantize.ts so each output path (registry spec + method here, GGUF presets
 * with --type later) is one function the command dispatches to.
 */
import type { Command } from "commander";
import { QuantlabError } from "../core/errors.js";
import { calibrationWindows, generatedWindows, PTQ_METHODS, quantizeModelPtq, type PtqMethod } from "../algos/index.js";
import { saveQuantModelFile } from "../io/node/quant-file.js";
import { readTextFile } from "./commands/eval.js";
import { displayName, loadModelWithTokenizer, positiveInt } from "./model-options.js";
import { globToRegExp, linearWeightNames } from "./quant-model.js";
import { parseFloatOpt, printJson, stderrProgress } from "./util.js";

export interface PtqCliOptions {
  spec: string;
  output: string;
  method?: string;
  rotate?: boolean;
  calib?: string;
  calibFromModel?: boolean;
  samples: number;
  seq: number;
  seed?: string;
  only?: string;
  skip?: string;
  actOrder?: boolean;
  damp?: number;
  alpha?: number;
  tokenizer?: string;
  json?: boolean;
}

/** Adds the PTQ options to the quantize command (skipping any the command already defines). */
export function addPtqOptions(cmd: Command): Command {
  const has = (flag: string) => cmd.options.some((o) => o.long === flag);
  const add = (flags: string, desc: string, parse?: (v: string) => unknown, dflt?: unknown) => {
    const long = flags.split(/[ ,]+/).find((f) => f.startsWith("--"))!;
    if (has(long)) return;
    if (parse) cmd.option(flags, desc, parse as (v: string, prev: unknown) => unknown, dflt);
    else cmd.option(flags, desc);
  };
  add("--method <method>", `PTQ algorithm: ${PTQ_METHODS.join(", ")} (runs the layer-by-layer pipeline; see docs/algos.md)`);
  add("--rotate", "fuse randomized Hadamard rotations (QuaRot) before quantizing; FFN-down input rotated online");
  add("--calib <file>", "calibration text (UTF-8) for gptq, awq, smoothquant and static activation scales");
  add("--calib-from-model", "data-free calibration: sample the windows from the model itself (temperature 1)");
  add("--samples <n>", "calibration windows", positiveInt("--samples"), 128);
  add("--seq <n>", "positions per calibration window, BOS included", positiveInt("--seq"), 256);
  add("--act-order", "GPTQ: quantize columns by descending Hessian diagonal (static groups)");
  add("--damp <f>", "GPTQ: dampening, fraction of the mean Hessian diagonal (default 0.01)", parseFloatOpt("--damp"));
  add("--alpha <f>", "SmoothQuant migration strength in [0, 1] (default 0.5)", parseFloatOpt("--alpha"));
  return cmd;
}

/** True when the options ask for the PTQ pipeline rather than plain round-to-nearest. */
export function wantsPtq(o: { method?: string; rotate?: boolean }): boolean {
  return o.method !== undefined || o.rotate === true;
}

/** --only / --skip globs → a predicate over canonical tensor names (block linears only). */
function includeFilter(only: string | undefined, skip: string | undefined, all: string[]): (name: string) => boolean {
  const split = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean).map(globToRegExp);
  const onlyRs = only ? split(only) : undefined;
  const skipRs = skip ? split(skip) : [];
  const f = (n: string) => (!onlyRs || onlyRs.some((r) => r.test(n))) && !skipRs.some((r) => r.test(n));
  if (onlyRs && !all.some(f)) throw new QuantlabError("E_ARG", `option --only: "${only}" matches no block linear (names look like ${all.slice(0, 2).join(", ")}); PTQ methods quantize block linears only`);
  return f;
}

export async function runPtq(path: string, o: PtqCliOptions): Promise<void> {
  const method = (o.method ?? "rtn") as PtqMethod;
  if (!(PTQ_METHODS as readonly string[]).includes(method)) throw new QuantlabError("E_ARG", `option --method: "${o.method}"; valid methods: ${PTQ_METHODS.join(", ")}`);
  if (!o.output.endsWith(".safetensors")) throw new QuantlabError("E_ARG", `option -o: ${o.output}: the output of --method/--rotate must be a .safetensors file`);
  if (o.calib && o.calibFromModel) throw new QuantlabError("E_ARG", "give either --calib <file> or --calib-from-model, not both");
  const seed = o.seed === undefined ? 0 : Number(o.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new QuantlabError("E_ARG", `option --seed: expected a non-negative integer, got "${o.seed}"`);
  if (o.alpha !== undefined && !(o.alpha >= 0 && o.alpha <= 1)) throw new QuantlabError("E_ARG", `option --alpha: ${o.alpha} is outside [0, 1]`);
  if (o.damp !== undefined && !(o.damp >= 0)) throw new QuantlabError("E_ARG", `option --damp: ${o.damp} must be ≥ 0`);
  const calibText = o.calib !== undefined ? readTextFile(o.calib) : undefined;
  const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
  if (o.seq > model.config.seqLen) throw new QuantlabError("E_ARG", `option --seq: ${o.seq} is longer than the model's context ${model.config.seqLen}`);
  const include = includeFilter(o.only, o.skip, linearWeightNames(model));
  const wo = { samples: o.samples, seq: o.seq, seed, bosId: tokenizer.bosId };
  let calib: Int32Array[] | undefined;
  if (calibText !== undefined) calib = calibrationWindows(tokenizer.encode(calibText, { bos: false }), wo);
  else if (o.calibFromModel) calib = generatedWindows(model, wo);
  const r = await quantizeModelPtq(model, {
    method,
    spec: o.spec,
    rotate: o.rotate ?? false,
    rotateSeed: seed,
    ...(calib ? { calib } : {}),
    include,
    gptq: { ...(o.actOrder ? { actOrder: true } : {}), ...(o.damp !== undefined ? { percDamp: o.damp } : {}) },
    ...(o.alpha !== undefined ? { smoothAlpha: o.alpha } : {}),
    progress: stderrProgress(),
  });
  const bytes = await saveQuantModelFile(r.model, o.output);
  let bits = 0, count = 0;
  for (const t of r.tensors) {
    const n = t.shape[0] * t.shape[1];
    bits += t.bitsPerWeight * n;
    count += n;
  }
  const bpw = count ? bits / count : 0;
  if (o.json) {
    printJson({ output: o.output, model: path, spec: r.spec, method, rotate: r.rotate, calibTokens: r.calibTokens, bytes, bpw, seconds: r.seconds, tensors: r.tensors });
    return;
  }
  for (const t of r.tensors) {
    const extra = t.detail ? "  " + Object.entries(t.detail).map(([k, v]) => `${k} ${Number(v.toPrecision(4))}`).join("  ") : "";
    process.stdout.write(`${t.name.padEnd(28)} [${t.shape.join(", ")}]  ${t.bitsPerWeight.toFixed(3)} bpw  rel. err ${t.relErr.toExponential(3)}${extra}\n`);
  }
  process.stdout.write(
    `${displayName(path)} → ${o.output}: ${method}${r.rotate ? "+rotate" : ""} ${r.spec}, ${r.tensors.length} tensors at ${bpw.toFixed(3)} bits/weight, ` +
      `${r.calibTokens} calibration tokens, ${r.seconds.toFixed(1)} s, ${bytes} bytes\n`,
  );
}
