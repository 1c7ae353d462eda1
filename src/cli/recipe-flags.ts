/**
 * `quantlab quantize` flags → a recipe (algos/recipe.ts). The command only parses: every flag becomes a
 * recipe field, and a flag that would have no effect for the chosen target and method is an error naming
 * it (never silently ignored). The library (`quantize(model, recipe)`) checks the recipe itself again.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import type { Command } from "commander";
import { QuantlabError } from "../core/errors.js";
import { METHODS } from "../algos/methods/index.js";
import { isMixedSpec } from "../algos/mixed-model.js";
import { METHOD_NAMES, sha256Hex, type MethodName, type Recipe, type RecipeOverride } from "../algos/recipe.js";
import { splitGlobs } from "../algos/select.js";
import { isImatrixFile } from "../io/node/imatrix-file.js";

export interface QuantizeFlags {
  spec?: string;
  type?: string;
  recipe?: string;
  method?: string;
  /** true (bare --rotate: mode full) or a mode name */
  rotate?: boolean | string;
  calib?: string;
  calibFromModel?: boolean;
  samples: number;
  seq: number;
  imatrix?: string;
  imatrixCtx?: number;
  imatrixChunks?: number;
  imatrixForward?: string;
  imatrixBits?: number;
  imatrixOut?: string;
  pure?: boolean;
  refine?: boolean;
  gptq?: boolean;
  actOrder?: boolean;
  damp?: number;
  alpha?: number;
  only?: string;
  skip?: string;
  override?: string[];
  seed: string;
  output: string;
  saveRecipe?: string;
  tokenizer?: string;
  backend: string;
  threads: number;
  allowNonfinite?: boolean;
  json?: boolean;
}

/** Flags that shape the recipe (so they cannot be combined with --recipe), with their option keys. */
const RECIPE_FLAGS: readonly [string, keyof QuantizeFlags][] = [
  ["--spec", "spec"], ["--type", "type"], ["--method", "method"], ["--rotate", "rotate"], ["--calib-from-model", "calibFromModel"],
  ["--samples", "samples"], ["--seq", "seq"], ["--imatrix-ctx", "imatrixCtx"], ["--imatrix-chunks", "imatrixChunks"], ["--imatrix-forward", "imatrixForward"], ["--imatrix-bits", "imatrixBits"], ["--pure", "pure"],
  ["--refine", "refine"], ["--gptq", "gptq"], ["--act-order", "actOrder"], ["--damp", "damp"], ["--alpha", "alpha"], ["--only", "only"],
  ["--skip", "skip"], ["--override", "override"], ["--seed", "seed"],
];

/** Method options set by flags: flag → option name. */
const OPTION_FLAGS: readonly [string, keyof QuantizeFlags, string][] = [["--act-order", "actOrder", "actOrder"], ["--damp", "damp", "damp"], ["--alpha", "alpha", "alpha"]];

/** Did the user give this option on the command line (not a default)? */
export function given(cmd: Command, key: keyof QuantizeFlags): boolean {
  return cmd.getOptionValueSource(key as string) === "cli";
}

/** The calibration text of a file, with the file reference a recipe records. */
export async function readCalibText(path: string, option: string): Promise<{ text: string; ref: { name: string; sha256: string } }> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch {
    throw new QuantlabError("E_IO", `${option} ${path}: no such file`);
  }
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  return { text, ref: { name: basename(path), sha256: await sha256Hex(new TextEncoder().encode(text)) } };
}

/** One --override value: `glob=spec` (spec targets) or `glob=TYPE` (preset targets). */
function parseOverride(v: string, preset: boolean): RecipeOverride {
  const i = v.lastIndexOf("=");
  if (i <= 0 || i === v.length - 1) throw new QuantlabError("E_ARG", `option --override: "${v}": expected <glob>=<${preset ? "ggml type" : "spec"}>, e.g. ${preset ? "output.weight=Q8_0" : "blk.*.ffn_down.weight=int8:channel"}`);
  const match = v.slice(0, i).trim(), value = v.slice(i + 1).trim();
  return preset ? { match, type: value } : { match, spec: value };
}

/**
 * Builds the recipe from the flags (or checks that --recipe comes alone). Returns the recipe input for
 * `quantize()` plus the calibration text / imatrix path the run needs.
 */
export async function recipeFromFlags(o: QuantizeFlags, cmd: Command, model: { seqLen: number }): Promise<{ recipe: Record<string, unknown>; calibPath?: string; imatrixPath?: string }> {
  if (o.recipe !== undefined) {
    for (const [flag, key] of RECIPE_FLAGS) if (given(cmd, key)) throw new QuantlabError("E_ARG", `option ${flag}: the recipe (--recipe ${o.recipe}) already says how to quantize; give one or the other`);
    return { recipe: {}, ...(o.calib !== undefined ? { calibPath: o.calib } : {}), ...(o.imatrix !== undefined ? { imatrixPath: o.imatrix } : {}) };
  }
  if (o.spec !== undefined && o.type !== undefined) throw new QuantlabError("E_ARG", "give either --spec <spec> (quantized safetensors) or --type <preset> (GGUF), not both");
  if (o.spec === undefined && o.type === undefined) throw new QuantlabError("E_ARG", "quantize: give --spec <spec> (quantized safetensors) or --type <preset> (GGUF), or --recipe <file>");
  const preset = o.type !== undefined;
  let method = (o.method ?? (o.gptq ? "gptq" : o.spec !== undefined && isMixedSpec(o.spec) ? "mixed" : "rtn")) as MethodName;
  if (!(METHOD_NAMES as readonly string[]).includes(method)) throw new QuantlabError("E_ARG", `option --method: "${o.method}"; valid methods: ${METHOD_NAMES.join(", ")}`);
  if (o.gptq) {
    if (!preset) throw new QuantlabError("E_ARG", "option --gptq: applies to --type presets (with a spec, use --method gptq)");
    if (o.method !== undefined && o.method !== "gptq") throw new QuantlabError("E_ARG", `option --gptq: conflicts with --method ${o.method}`);
    if (o.imatrix === undefined) throw new QuantlabError("E_ARG", "--gptq needs --imatrix <calibration text> (the input Hessians are collected with it)");
    method = "gptq";
  }
  const seed = Number(o.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new QuantlabError("E_ARG", `option --seed: expected a non-negative integer, got "${o.seed}"`);
  // flags that belong to the other kind of target
  const specOnly: [string, keyof QuantizeFlags][] = [["--calib-from-model", "calibFromModel"], ["--samples", "samples"], ["--seq", "seq"], ["--only", "only"], ["--act-order", "actOrder"]];
  const presetOnly: [string, keyof QuantizeFlags][] = [["--imatrix", "imatrix"], ["--imatrix-ctx", "imatrixCtx"], ["--imatrix-chunks", "imatrixChunks"], ["--imatrix-out", "imatrixOut"], ["--imatrix-forward", "imatrixForward"], ["--imatrix-bits", "imatrixBits"], ["--pure", "pure"], ["--refine", "refine"]];
  for (const [flag, key] of preset ? specOnly : presetOnly) {
    if (given(cmd, key)) {
      const hint = flag === "--calib" ? " (a preset calibrates through its importance matrix: --imatrix <text>)" : "";
      throw new QuantlabError("E_ARG", `option ${flag}: applies to ${preset ? "--spec targets" : "--type presets"}, not ${preset ? `--type ${o.type}` : `--spec ${o.spec}`}${hint}`);
    }
  }
  let rotate: { seed: number; mode?: "residual" } | undefined;
  if (o.rotate !== undefined && o.rotate !== false) {
    if (o.rotate !== true && o.rotate !== "full" && o.rotate !== "residual") throw new QuantlabError("E_ARG", `option --rotate: "${o.rotate}": expected no value or "full" (residual + online FFN-down rotation), or "residual" (the residual-stream rotation only, what a GGUF can carry)`);
    rotate = o.rotate === "residual" ? { seed, mode: "residual" } : { seed };
  }
  // --calib with a preset: the calibration text of a method that calibrates itself (AWQ); an importance matrix comes from --imatrix <text>
  const selfCalibrating = method === "awq" || method === "awq+gptq" || method === "smoothquant";
  if (preset && o.calib !== undefined) {
    if (!selfCalibrating) throw new QuantlabError("E_ARG", `option --calib: applies to --type presets only with --method awq, awq+gptq or smoothquant (a preset calibrates through its importance matrix: --imatrix <text>)`);
    if (o.imatrix !== undefined) throw new QuantlabError("E_ARG", "give either --calib <text> or --imatrix <text> with --type: --imatrix <text> calibrates AWQ and collects the importance matrix from the same chunks");
  }
  const def = METHODS[method];
  const options: Record<string, unknown> = {};
  for (const [flag, key, name] of OPTION_FLAGS) {
    if (o[key] === undefined) continue;
    if (!(name in def.options)) {
      const owners = METHOD_NAMES.filter((m) => name in METHODS[m].options);
      throw new QuantlabError("E_ARG", `option ${flag}: method ${method} has no such setting (it applies to ${owners.join(", ")})`);
    }
    options[name] = o[key];
  }
  const recipe: Record<string, unknown> = { method, options, seed };
  let calibPath: string | undefined;
  let imatrixPath: string | undefined;
  if (preset) {
    recipe.target = { preset: o.type, pure: !!o.pure, refine: !!o.refine };
    if (rotate) recipe.rotate = rotate;
    if (o.calib !== undefined) {
      const { ref } = await readCalibText(o.calib, "--calib");
      // the same chunks as an importance matrix would use (--imatrix-ctx / --imatrix-chunks set them)
      recipe.calibration = { source: { text: ref }, windows: { kind: "chunks", ctx: o.imatrixCtx ?? Math.min(512, model.seqLen), maxChunks: o.imatrixChunks ?? null } };
      calibPath = o.calib;
    } else if (o.imatrix !== undefined) {
      let head: Uint8Array;
      try {
        head = new Uint8Array(readFileSync(o.imatrix)).subarray(0, 4);
      } catch {
        throw new QuantlabError("E_IO", `--imatrix ${o.imatrix}: no such file`);
      }
      if (isImatrixFile(o.imatrix, head)) {
        for (const [flag, key] of [["--imatrix-ctx", "imatrixCtx"], ["--imatrix-chunks", "imatrixChunks"], ["--imatrix-out", "imatrixOut"], ["--imatrix-forward", "imatrixForward"], ["--imatrix-bits", "imatrixBits"]] as const) {
          if (given(cmd, key)) throw new QuantlabError("E_ARG", `option ${flag}: applies to an importance matrix collected from a text; ${o.imatrix} is an imatrix file`);
        }
        if (method === "gptq") throw new QuantlabError("E_ARG", `--gptq: ${o.imatrix} is an imatrix file; GPTQ needs a calibration text to collect input Hessians`);
        const sha256 = await sha256Hex(new Uint8Array(readFileSync(o.imatrix)));
        recipe.imatrix = { file: { name: basename(o.imatrix), sha256 } };
        imatrixPath = o.imatrix;
      } else {
        const { ref } = await readCalibText(o.imatrix, "--imatrix");
        const imx: { source: "calibration"; forward?: "int"; intBits?: number } = { source: "calibration" };
        recipe.imatrix = imx;
        const fwd = o.imatrixForward ?? "exact";
        if (fwd !== "exact" && fwd !== "int") throw new QuantlabError("E_ARG", `option --imatrix-forward: ${fwd}: expected exact or int`);
        if (fwd === "int") imx.forward = "int";
        if (o.imatrixBits !== undefined) {
          if (fwd !== "int") throw new QuantlabError("E_ARG", "option --imatrix-bits: needs --imatrix-forward int");
          if (o.imatrixBits < 2 || o.imatrixBits > 16) throw new QuantlabError("E_ARG", `option --imatrix-bits: ${o.imatrixBits}: expected 2…16`);
          imx.intBits = o.imatrixBits;
        }
        // llama-imatrix -c: any length; default 512, or the model's context if shorter
        recipe.calibration = { source: { text: ref }, windows: { kind: "chunks", ctx: o.imatrixCtx ?? Math.min(512, model.seqLen), maxChunks: o.imatrixChunks ?? null } };
        calibPath = o.imatrix;
      }
    } else {
      for (const [flag, key] of [["--imatrix-ctx", "imatrixCtx"], ["--imatrix-chunks", "imatrixChunks"], ["--imatrix-out", "imatrixOut"], ["--imatrix-forward", "imatrixForward"], ["--imatrix-bits", "imatrixBits"]] as const) {
        if (given(cmd, key)) throw new QuantlabError("E_ARG", `option ${flag}: needs --imatrix <calibration text>`);
      }
    }
    if (o.calib !== undefined && given(cmd, "imatrixOut")) throw new QuantlabError("E_ARG", "option --imatrix-out: needs --imatrix <calibration text> (--calib collects no importance matrix)");
    if (o.skip !== undefined) recipe.tensors = { keepFloat: splitGlobs(o.skip) };
  } else {
    recipe.target = { spec: o.spec };
    if (rotate) recipe.rotate = rotate;
    if (o.calib !== undefined && o.calibFromModel) throw new QuantlabError("E_ARG", "give either --calib <file> or --calib-from-model, not both");
    if (o.calib !== undefined || o.calibFromModel) {
      let source: unknown = { model: true };
      if (o.calib !== undefined) {
        source = { text: (await readCalibText(o.calib, "--calib")).ref };
        calibPath = o.calib;
      }
      recipe.calibration = method === "qat" ? { source, windows: { kind: "stream" } } : { source, windows: { kind: "random", samples: o.samples, seq: o.seq } };
      if (method === "qat") for (const [flag, key] of [["--samples", "samples"], ["--seq", "seq"]] as const) if (given(cmd, key)) throw new QuantlabError("E_ARG", `option ${flag}: method qat samples its own windows (quantlab qat --batch/--seq)`);
    } else {
      for (const [flag, key] of [["--samples", "samples"], ["--seq", "seq"]] as const) if (given(cmd, key)) throw new QuantlabError("E_ARG", `option ${flag}: sets the calibration windows, but no --calib <file> or --calib-from-model is given`);
    }
    const tensors: Record<string, string[]> = {};
    if (o.only !== undefined) tensors.only = splitGlobs(o.only);
    if (o.skip !== undefined) tensors.keepFloat = splitGlobs(o.skip);
    if (Object.keys(tensors).length) recipe.tensors = tensors;
  }
  if (o.override && o.override.length) recipe.overrides = o.override.map((v) => parseOverride(v, preset));
  return { recipe, ...(calibPath !== undefined ? { calibPath } : {}), ...(imatrixPath !== undefined ? { imatrixPath } : {}) };
}
