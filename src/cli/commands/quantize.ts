/**
 * `quantlab quantize <model> (--spec <spec> | --type <preset> | --recipe <file>) -o <out>`: parses the
 * flags into a recipe (cli/recipe-flags.ts), runs the library's `quantize(model, recipe)`
 * (algos/quantize.ts) and writes the result with io's `saveQuantizeResult` — a quantized-model safetensors
 * file for spec targets (docs/quant-format.md), a GGUF that llama.cpp runs for presets. The recipe goes
 * into the file's metadata; `--recipe` takes a recipe JSON or any file quantlab wrote, so every result
 * can be reproduced from its file.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { METHODS } from "../../algos/methods/index.js";
import { quantize, normalizeRecipe, type QuantizeResult } from "../../algos/quantize.js";
import { METHOD_NAMES, recipeToJson, type Recipe } from "../../algos/recipe.js";
import { imatrixFileNames } from "../../algos/imatrix.js";
import { GGML_PRESET_NAMES } from "../../ggml/mix.js";
import { readImatrixFile, saveImatrixFile } from "../../io/node/imatrix-file.js";
import { loadModel } from "../../io/node/load.js";
import { checkOutputPath, saveQuantizeResult } from "../../io/node/quantize-output.js";
import { atomicWriteFile } from "../../io/node/atomic.js";
import { WasmBackend } from "../../kernels/wasm/backend.js";
import { poolEncoder } from "../ggml-encoder.js";
import { printJson, stderrProgress, parseFloatOpt } from "../util.js";
import { refGgmlEncoder } from "../../ggml/encoder.js";
import { ALLOW_NONFINITE_HELP, addBackendOptions, backendFromOptions, backendReady, displayName, loadModelWithTokenizer, positiveInt } from "../model-options.js";
import { readCalibText, recipeFromFlags, type QuantizeFlags } from "../recipe-flags.js";

/** A recipe from --recipe: a JSON file, or the metadata of a file quantlab wrote. */
export async function loadRecipeArg(path: string): Promise<Recipe> {
  let head: Uint8Array;
  try {
    head = new Uint8Array(readFileSync(path)).subarray(0, 1);
  } catch {
    throw new QuantlabError("E_IO", `--recipe ${path}: no such file`);
  }
  if (head[0] === 0x7b /* { */) return normalizeRecipe(readFileSync(path, "utf8"), `--recipe ${path}`);
  const m = await loadModel(path);
  if (m.recipe === undefined) throw new QuantlabError("E_ARG", `--recipe ${path}: the file carries no recipe (metadata "quantlab.recipe"); give a recipe JSON or a file quantlab quantize wrote`);
  return normalizeRecipe(m.recipe, `--recipe ${path} (its quantlab.recipe)`);
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export function register(program: Command): void {
  const cmd = program
    .command("quantize")
    .description("quantize a model with a spec (quantized safetensors) or a llama-quantize preset (GGUF), with any method")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory")
    .option("--spec <spec>", "quantization spec, <format>[:<granularity>][:<option>...] (docs/quant-format.md), or mixed:<B>bpw:<spec>+<spec>…")
    .option("--type <preset>", `llama-quantize preset, writes a GGUF (-o out.gguf): ${GGML_PRESET_NAMES.join(", ")}`)
    .option("--recipe <file>", "a recipe JSON, or a file quantlab wrote (its metadata's recipe): quantize exactly as it says")
    .option("--method <method>", `algorithm: ${METHOD_NAMES.map((m) => `${m} (${METHODS[m].targets.join("/")})`).join(", ")}; default rtn (docs/algos.md)`)
    .option("--rotate [mode]", "fuse randomized Hadamard rotations (QuaRot) before quantizing: full (default; spec targets only: FFN-down input rotated online) or residual (the residual stream only, folded into the weights: what --type presets take)")
    .option("--calib <file>", "calibration text (UTF-8) for gptq, awq, smoothquant, qat, static activation scales, mixed sensitivity; with --type: for --method awq / awq+gptq / smoothquant (chunks as --imatrix-ctx/--imatrix-chunks)")
    .option("--calib-from-model", "spec targets: data-free calibration, windows sampled from the model itself (temperature 1)")
    .option("--samples <n>", "calibration windows", positiveInt("--samples"), 128)
    .option("--seq <n>", "positions per calibration window, BOS included", positiveInt("--seq"), 256)
    .option("--imatrix <file>", "presets: importance matrix from a calibration text (.txt, run through the model) or a llama-imatrix file (.dat, .gguf)")
    .option("--imatrix-ctx <n>", "with --imatrix text: positions per chunk, BOS included (default 512, or the model's context if shorter)", positiveInt("--imatrix-ctx"))
    .option("--imatrix-chunks <n>", "with --imatrix text: use at most this many chunks (default: the whole text)", positiveInt("--imatrix-chunks"))
    .option("--imatrix-forward <kind>", "with --imatrix text: exact (default: the f32 forward) or int (integer calibration GEMM, wasm: weights per row and activations per token as ≈11-bit codes, exact int32 sums; faster, the matrix within rounding of those codes: docs/kernels.md)")
    .option("--imatrix-bits <n>", "with --imatrix-forward int: code bits (2-16; default: the widest whose int32 sums cannot overflow)", positiveInt("--imatrix-bits"))
    .option("--imatrix-out <file>", "with --imatrix text: also save the collected matrix (.gguf or .dat, llama-imatrix formats)")
    .option("--pure", "presets: every quantizable tensor at the preset's base type (no output/attn_v/ffn_down bumps)")
    .option("--refine", "presets: quantlab's extra scale search after llama.cpp's (lower error, still plain llama.cpp blocks)")
    .option("--gptq", "presets: GPTQ picks the codes on llama.cpp's scales (= --method gptq; needs --imatrix <text>)")
    .option("--act-order", "gptq: quantize columns by descending Hessian diagonal (static groups)")
    .option("--damp <f>", "gptq: dampening, fraction of the mean Hessian diagonal (default 0.01)", parseFloatOpt("--damp"))
    .option("--alpha <f>", "smoothquant: migration strength in [0, 1] (default 0.5)", parseFloatOpt("--alpha"))
    .option("--only <globs>", "spec targets: comma-separated globs of tensors to quantize (default: every block linear, blk.*.attn_*/ffn_*)")
    .option("--skip <globs>", "comma-separated globs of tensors to keep in float")
    .option("--override <glob=value>", "per-tensor spec (spec targets, e.g. blk.*.ffn_down.weight=int8:channel) or ggml type (presets, e.g. output.weight=Q8_0); repeatable", collect)
    .option("--seed <n>", "seed of stochastic rounding (:sr), rotations, calibration windows and k-means", "0")
    .requiredOption("-o, --output <file>", "output file, written atomically: .safetensors for --spec, .gguf for --type")
    .option("--save-recipe <file>", "also write the recipe as JSON (what --recipe reads)")
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .option("--allow-nonfinite", ALLOW_NONFINITE_HELP)
    .option("--json", "print one JSON object {output, recipe, bytes, bpw, seconds, tensors: [...], …}");
  addBackendOptions(cmd).action(async (path: string, o: QuantizeFlags, c: Command) => {
    const progress = o.json ? undefined : stderrProgress();
    if (o.recipe === undefined && o.spec === undefined && o.type === undefined) throw new QuantlabError("E_ARG", "quantize: give --spec <spec> (quantized safetensors) or --type <preset> (GGUF), or --recipe <file>");
    if (o.spec !== undefined && o.type !== undefined) throw new QuantlabError("E_ARG", "give either --spec <spec> (quantized safetensors) or --type <preset> (GGUF), not both");
    if (o.spec !== undefined) checkOutputPath("safetensors", o.output);
    if (o.type !== undefined) checkOutputPath("gguf", o.output);
    if (o.imatrixOut !== undefined && !/\.(gguf|dat)$/i.test(o.imatrixOut)) throw new QuantlabError("E_ARG", `--imatrix-out ${o.imatrixOut}: expected a .gguf or .dat file name`);
    // the pool's workers start (module load, WASM instantiation) while the model loads
    const backend = backendFromOptions(o);
    let r: QuantizeResult;
    let bytes: number;
    try {
      const fromFile = o.recipe !== undefined ? await loadRecipeArg(o.recipe) : undefined;
      const { model } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer, ...(progress ? { progress } : {}) });
      const flags = await recipeFromFlags(o, c, model.config);
      const recipe = fromFile ?? normalizeRecipe(flags.recipe);
      checkOutputPath("spec" in recipe.target ? "safetensors" : "gguf", o.output);
      // the files the recipe names: calibration text (sha256 checked by quantize) and an imatrix file
      let calibText: string | undefined;
      const cal = recipe.calibration;
      if (cal && "text" in cal.source) {
        // with --recipe, a preset's calibration text comes as --imatrix <text>, as on the command line that made it
        const p = flags.calibPath ?? (fromFile && "preset" in recipe.target ? flags.imatrixPath : undefined);
        if (p === undefined) throw new QuantlabError("E_ARG", `the recipe calibrates on ${cal.source.text.name}: give its path with ${"preset" in recipe.target ? "--imatrix" : "--calib"} <file>`);
        calibText = (await readCalibText(p, "--calib")).text;
      } else if (fromFile && o.calib !== undefined) throw new QuantlabError("E_ARG", `option --calib: the recipe (--recipe ${o.recipe}) uses no calibration text`);
      let imatrixFile: Awaited<ReturnType<typeof readImatrixFile>> | undefined;
      if (recipe.imatrix && "file" in recipe.imatrix) {
        const p = flags.imatrixPath;
        if (p === undefined) throw new QuantlabError("E_ARG", `the recipe reads the importance matrix ${recipe.imatrix.file.name}: give its path with --imatrix <file>`);
        imatrixFile = await readImatrixFile(p);
      } else if (fromFile && o.imatrix !== undefined && !(cal && "text" in cal.source)) throw new QuantlabError("E_ARG", `option --imatrix: the recipe (--recipe ${o.recipe}) uses no importance matrix`);
      if (o.imatrixOut !== undefined && !(recipe.imatrix && "source" in recipe.imatrix)) throw new QuantlabError("E_ARG", "--imatrix-out: only a matrix collected from a text can be saved");
      await backendReady(backend);
      // QUANTLAB_WASM_QUANTIZE=0: ggml blocks through the TypeScript reference encoder, =ts-pool: the TS codecs
      // on the pool's threads (same bytes; for comparisons)
      const encoder = process.env.QUANTLAB_WASM_QUANTIZE === "0" ? { encoder: refGgmlEncoder } : process.env.QUANTLAB_WASM_QUANTIZE === "ts-pool" && backend instanceof WasmBackend ? { encoder: poolEncoder(backend) } : {};
      // a plain preset's tensors are encoded as the GGUF writer reaches them (deferGgmlEncoding), so the file is
      // written and flushed while the later tensors encode; the backend (its encoder) lives until the file is saved
      const t0 = Date.now();
      r = await quantize(model, recipe, { ...(calibText !== undefined ? { calibText } : {}), ...(imatrixFile ? { imatrixFile } : {}), backend, ...encoder, ...(progress ? { progress } : {}), allowNonFinite: !!o.allowNonfinite, deferGgmlEncoding: true });
      if (o.imatrixOut !== undefined && r.imatrix?.collected) {
        // under the names of the GGUF this writes (Phi-3: attn_qkv, ffn_up = gate + up), as llama-quantize looks them up
        await saveImatrixFile(o.imatrixOut, imatrixFileNames(model.config, r.imatrix.imatrix), { chunks: r.imatrix.chunks!, chunkSize: r.imatrix.ctx!, tokens: r.imatrix.tokens!, dataset: r.imatrix.source });
      }
      bytes = (await saveQuantizeResult(r, o.output, { ...(progress ? { progress } : {}), allowNonFinite: !!o.allowNonfinite })).bytes;
      // the time to the saved file (the deferred tensors were encoded while writing)
      if ("preset" in r.recipe.target) r = { ...r, seconds: (Date.now() - t0) / 1000 };
    } finally {
      backend.dispose?.();
    }
    if (o.saveRecipe !== undefined) {
      const text = recipeToJson(r.recipe, 2) + "\n";
      await atomicWriteFile(o.saveRecipe, (sink) => sink.write(new TextEncoder().encode(text)));
    }
    report(path, o, r, bytes);
  });
}

/** Prints the result: one JSON object, or a table and a summary line. */
function report(path: string, o: QuantizeFlags, r: QuantizeResult, bytes: number): void {
  const t = r.recipe.target;
  const rotate = !!r.recipe.rotate;
  if ("preset" in t) {
    const g = r.ggml!;
    const fallbacks = g.tensors.filter((x) => x.fallback);
    const im = r.imatrix;
    if (o.json) {
      printJson({
        output: o.output, model: path, recipe: r.recipe, method: r.recipe.method, type: t.preset, fileType: g.fileType, pure: t.pure, refine: t.refine, gptq: r.recipe.method === "gptq" || r.recipe.method === "awq+gptq", rotate: r.recipe.rotate ?? null,
        bytes, tensorBytes: g.bytes, params: g.params, bitsPerWeight: g.bitsPerWeight, seconds: r.seconds,
        imatrix: im ? { source: im.source, collected: im.collected, entries: im.imatrix.size, chunks: im.chunks ?? null, tokens: im.tokens ?? null, ctx: im.ctx ?? null, seconds: im.seconds } : null,
        fallbacks: fallbacks.map((x) => ({ name: x.name, requested: x.requested, type: x.type, reason: x.fallback, llamaRefuses: !!x.llamaRefuses })),
        scalesNotFolded: g.tensors.filter((x) => x.noScaleFold).map((x) => ({ name: x.name, reason: x.noScaleFold })),
        tensors: g.tensors,
      });
      return;
    }
    // input sites whose AWQ / SmoothQuant scales had nowhere to fold (OLMo 2's attn_in / ffn_in, v → o under GQA)
    const noFold = new Map<string, string[]>();
    for (const x of g.tensors) if (x.noScaleFold) { const why = x.noScaleFold.replace(/^blk\.\d+\.\S+: /, ""); noFold.set(why, [...(noFold.get(why) ?? []), x.name]); }
    for (const [why, names] of noFold) process.stderr.write(`quantlab: warning: ${r.recipe.method}: scales not folded, weights kept as they are, for ${names.length} tensor${names.length > 1 ? "s" : ""} (${names.slice(0, 4).join(", ")}${names.length > 4 ? ", …" : ""}): ${why}\n`);
    // one note per kind of fall-back (the per-tensor list is in --json)
    const groups = new Map<string, string[]>();
    for (const x of fallbacks) {
      const key = `${x.requested} → ${x.type} (row width ${x.shape[x.shape.length - 1]}${x.llamaRefuses ? ", llama.cpp refuses it" : ""})`;
      groups.set(key, [...(groups.get(key) ?? []), x.name]);
    }
    for (const [k, names] of groups) process.stderr.write(`quantlab: note: fall-back ${k}: ${names.length} tensor${names.length > 1 ? "s" : ""} (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""})\n`);
    const refused = fallbacks.filter((x) => x.llamaRefuses).length;
    if (refused > 0) process.stderr.write(`quantlab: note: llama-quantize would refuse ${t.preset} for this model (${refused} tensors); quantlab fell back per tensor\n`);
    const counts = new Map<string, number>();
    for (const x of g.tensors) counts.set(x.type, (counts.get(x.type) ?? 0) + 1);
    if (im) process.stdout.write(`imatrix: ${im.collected ? `${im.chunks} chunks of ${im.ctx} from ${im.source}` : `${im.imatrix.size} entries from ${im.source}`} (${im.seconds.toFixed(1)} s)\n`);
    process.stdout.write(
      `${displayName(path)} → ${o.output}: ${t.preset}${t.pure ? " (pure)" : ""}${r.recipe.method !== "rtn" ? ` (${r.recipe.method})` : ""}${rotate ? " (residual rotation)" : ""}, ${[...counts].map(([k, v]) => `${v}×${k}`).join(" ")}, ` +
        `${g.bitsPerWeight.toFixed(3)} bits/weight, ${bytes} bytes, ${fallbacks.length} fall-backs, ${r.seconds.toFixed(1)} s\n`,
    );
    return;
  }
  const tensors = r.tensors ?? [];
  let worst = Infinity, worstTensor = "";
  for (const x of tensors) if (x.sqnrDb < worst) { worst = x.sqnrDb; worstTensor = x.name; }
  if (o.json) {
    printJson({
      output: o.output, model: path, recipe: r.recipe, spec: t.spec, method: r.recipe.method, rotate, calibTokens: r.calibTokens ?? 0, bytes, bpw: r.bpw,
      worstSqnrDb: worst, worstTensor, seconds: r.seconds, tensors, ...(r.mixed ? { mixed: r.mixed } : {}), ...(r.qat ? { qat: r.qat } : {}),
    });
    return;
  }
  for (const x of tensors) {
    const extra = x.detail ? "  " + Object.entries(x.detail).map(([k, v]) => `${k} ${Number(v.toPrecision(4))}`).join("  ") : "";
    process.stdout.write(`${x.name.padEnd(28)} [${x.shape.join(", ")}]  ${x.spec.padEnd(14)} ${x.bpw.toFixed(3)} bpw  SQNR ${x.sqnrDb.toFixed(2)} dB${extra}\n`);
  }
  const calib = r.calibTokens ? `, ${r.calibTokens} calibration tokens` : "";
  process.stdout.write(
    `${displayName(path)} → ${o.output}: ${r.recipe.method}${rotate ? "+rotate" : ""} ${t.spec}, ${tensors.length} tensors at ${r.bpw.toFixed(3)} bits/weight, ` +
      `worst SQNR ${worst.toFixed(2)} dB (${worstTensor})${calib}, ${r.seconds.toFixed(1)} s, ${bytes} bytes\n`,
  );
}
