/**
 * The GGUF path of `quantlab quantize`: `--type <preset>` (llama-quantize's Q4_K_M, Q8_0, …) writes a
 * GGUF that llama.cpp runs, with the preset's per-tensor types (algos/ggml-quant.ts), per-tensor
 * fall-backs where a row does not fit a block (reported), and optionally an importance matrix:
 * `--imatrix calib.txt` collects one by running the model on the text (algos/imatrix.ts, as
 * llama-imatrix does), `--imatrix file.dat|file.gguf` loads one llama-imatrix wrote.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import type { Command } from "commander";
import { QuantlabError } from "../core/errors.js";
import { collectImatrix } from "../algos/imatrix.js";
import { quantizeModelToGgml } from "../algos/ggml-quant.js";
import { withGgmlEncoder } from "./ggml-encoder.js";
import { formatImatrixDat, parseImatrixDat, type Imatrix } from "../ggml/imatrix.js";
import { GGML_PRESETS, GGML_PRESET_NAMES, parseGgmlPreset } from "../ggml/mix.js";
import { GgufValueType, type GgufValue } from "../io/gguf.js";
import { isImatrixGguf, readImatrixGguf, writeImatrixGguf } from "../io/imatrix-file.js";
import { atomicWriteFile } from "../io/node/atomic.js";
import { openGgufFile, saveGgufFile } from "../io/node/gguf-file.js";
import { readTextFile } from "./commands/eval.js";
import { backendFromOptions, displayName, loadModelWithTokenizer, positiveInt } from "./model-options.js";
import { printJson, stderrProgress } from "./util.js";

export interface GgufQuantizeCliOptions {
  type: string;
  output: string;
  imatrix?: string;
  imatrixCtx?: number;
  imatrixChunks?: number;
  imatrixOut?: string;
  pure?: boolean;
  refine?: boolean;
  gptq?: boolean;
  tokenizer?: string;
  backend?: string;
  threads?: number;
  json?: boolean;
}

/** Adds the GGUF-preset options to the quantize command (skipping any it already defines). */
export function addGgufQuantizeOptions(cmd: Command): Command {
  const has = (flag: string) => cmd.options.some((o) => o.long === flag);
  const add = (flags: string, desc: string, parse?: (v: string) => unknown, dflt?: unknown) => {
    const long = flags.split(/[ ,]+/).find((f) => f.startsWith("--"))!;
    if (has(long)) return;
    if (parse) cmd.option(flags, desc, parse as (v: string, prev: unknown) => unknown, dflt);
    else if (dflt !== undefined) cmd.option(flags, desc, dflt as string);
    else cmd.option(flags, desc);
  };
  add("--type <preset>", `llama-quantize preset, writes a GGUF (-o out.gguf): ${GGML_PRESET_NAMES.join(", ")}`);
  add("--imatrix <file>", "with --type: importance matrix from a calibration text (.txt, run through the model) or a llama-imatrix file (.dat, .gguf)");
  add("--imatrix-ctx <n>", "with --imatrix text: positions per chunk, BOS included (default 512, or the model's context if shorter)", positiveInt("--imatrix-ctx"));
  add("--imatrix-chunks <n>", "with --imatrix text: use at most this many chunks (default: the whole text)", positiveInt("--imatrix-chunks"));
  add("--imatrix-out <file>", "with --imatrix text: also save the collected matrix (.gguf or .dat, llama-imatrix formats)");
  add("--pure", "with --type: every quantizable tensor at the preset's base type (no output/attn_v/ffn_down bumps)");
  add("--refine", "with --type: quantlab's extra scale search after llama.cpp's (lower error, still plain llama.cpp blocks)");
  add("--gptq", "with --type and --imatrix <text>: GPTQ picks the codes on llama.cpp's scales (input Hessians collected with the imatrix)");
  add("--backend <name>", "kernels for the --imatrix forward pass: ref (plain TypeScript) or wasm (SIMD)", undefined, "ref");
  add("--threads <n>", "worker threads (quantization with --type; the wasm backend)", positiveInt("--threads"), 1);
  return cmd;
}

/** True when the options ask for the GGUF-preset path. */
export function wantsGgufQuantize(o: { type?: string }): boolean {
  return o.type !== undefined;
}

/** Loads or collects the importance matrix named by --imatrix. */
async function obtainImatrix(
  path: string,
  model: Parameters<typeof collectImatrix>[0],
  o: GgufQuantizeCliOptions,
  progress: ReturnType<typeof stderrProgress> | undefined,
): Promise<{ imatrix: Imatrix; source: string; chunks?: number; tokens?: number; ctx?: number; collected: boolean; hessians?: Map<string, Float64Array> }> {
  if (!existsSync(path)) throw new QuantlabError("E_IO", `--imatrix ${path}: no such file`);
  const lower = path.toLowerCase();
  if (lower.endsWith(".dat")) {
    const r = parseImatrixDat(new Uint8Array(readFileSync(path)), path);
    return { imatrix: r.imatrix, source: path, chunks: r.chunks, collected: false };
  }
  const head = readFileSync(path).subarray(0, 4);
  if (head.length === 4 && head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46) {
    const f = await openGgufFile(path);
    try {
      if (!isImatrixGguf(f)) throw new QuantlabError("E_ARG", `--imatrix ${path}: a GGUF without imatrix tensors (*.in_sum2)`);
      const r = await readImatrixGguf(f);
      return { imatrix: r.imatrix, source: path, chunks: r.chunks, collected: false };
    } finally {
      await f.close();
    }
  }
  const tok = model.tokenizer;
  if (!tok) throw new QuantlabError("E_ARG", `--imatrix ${path}: collecting an importance matrix needs the model's tokenizer`);
  const tokens = tok.encode(readTextFile(path), { bos: false });
  const backend = backendFromOptions({ backend: o.backend ?? "ref", threads: o.threads });
  try {
    const r = collectImatrix(model, tokens, { ctx: o.imatrixCtx, maxChunks: o.imatrixChunks, bosId: tok.bosId, backend, progress, hessians: !!o.gptq });
    return { imatrix: r.imatrix, source: path, chunks: r.chunks, tokens: r.tokens, ctx: r.ctx, collected: true, hessians: r.hessians };
  } finally {
    backend.dispose?.();
  }
}

export async function runGgufQuantize(modelPath: string, o: GgufQuantizeCliOptions): Promise<void> {
  const preset = parseGgmlPreset(o.type);
  if (!o.output.toLowerCase().endsWith(".gguf")) throw new QuantlabError("E_ARG", `option -o: ${o.output}: --type writes a GGUF, the output must be a .gguf file`);
  if (o.imatrixOut && !/\.(gguf|dat)$/i.test(o.imatrixOut)) throw new QuantlabError("E_ARG", `--imatrix-out ${o.imatrixOut}: expected a .gguf or .dat file name`);
  if (o.gptq && !o.imatrix) throw new QuantlabError("E_ARG", "--gptq needs --imatrix <calibration text> (the input Hessians are collected with it)");
  const progress = o.json ? undefined : stderrProgress();
  const { model } = await loadModelWithTokenizer(modelPath, { tokenizer: o.tokenizer, progress });
  const t0 = Date.now();
  let im: Awaited<ReturnType<typeof obtainImatrix>> | undefined;
  if (o.imatrix) {
    im = await obtainImatrix(o.imatrix, model, o, progress);
    if (o.gptq && !im.hessians) throw new QuantlabError("E_ARG", `--gptq: ${o.imatrix} is an imatrix file; GPTQ needs a calibration text to collect input Hessians`);
    if (o.imatrixOut) {
      if (!im.collected) throw new QuantlabError("E_ARG", "--imatrix-out: only a matrix collected from a text can be saved");
      const info = { chunks: im.chunks!, chunkSize: im.ctx!, tokens: im.tokens!, dataset: basename(o.imatrix) };
      if (o.imatrixOut.toLowerCase().endsWith(".dat")) {
        const bytes = formatImatrixDat(im.imatrix, info.chunks, info.dataset);
        await atomicWriteFile(o.imatrixOut, (sink) => sink.write(bytes));
      } else await atomicWriteFile(o.imatrixOut, (sink) => writeImatrixGguf(im!.imatrix, sink, info, o.imatrixOut));
    }
  }
  const imatrixSeconds = (Date.now() - t0) / 1000;
  const qopts = { type: preset, imatrix: im?.imatrix, pure: o.pure, refine: o.refine, progress, gptq: im?.hessians ? { hessians: im.hessians } : undefined };
  const r = await withGgmlEncoder(o.threads ?? 1, async (encoder) => quantizeModelToGgml(model, { ...qopts, encoder }));
  const extra = new Map<string, GgufValue>();
  const str = (value: string): GgufValue => ({ type: GgufValueType.STRING, value });
  const u32 = (value: number): GgufValue => ({ type: GgufValueType.UINT32, value });
  if (im) {
    // llama.cpp LLM_KV_QUANTIZE_IMATRIX_* keys, as llama-quantize records them
    extra.set("quantize.imatrix.file", str(basename(im.source)));
    if (im.collected) extra.set("quantize.imatrix.dataset", str(basename(im.source)));
    extra.set("quantize.imatrix.entries_count", u32(im.imatrix.size));
    if (im.chunks !== undefined) extra.set("quantize.imatrix.chunks_count", u32(im.chunks));
  }
  await saveGgufFile(r.model, o.output, { fileType: GGML_PRESETS[preset].ftype, extraMetadata: extra, progress });
  const fileBytes = statSync(o.output).size;
  const fallbacks = r.tensors.filter((t) => t.fallback);
  const seconds = (Date.now() - t0) / 1000;
  if (o.json) {
    printJson({
      output: o.output, model: modelPath, type: preset, fileType: r.fileType, pure: !!o.pure, refine: !!o.refine, gptq: !!o.gptq,
      bytes: fileBytes, tensorBytes: r.bytes, params: r.params, bitsPerWeight: r.bitsPerWeight, seconds, quantizeSeconds: r.seconds,
      imatrix: im ? { source: im.source, collected: im.collected, entries: im.imatrix.size, chunks: im.chunks ?? null, tokens: im.tokens ?? null, ctx: im.ctx ?? null, seconds: imatrixSeconds } : null,
      fallbacks: fallbacks.map((t) => ({ name: t.name, requested: t.requested, type: t.type, reason: t.fallback, llamaRefuses: !!t.llamaRefuses })),
      tensors: r.tensors,
    });
    return;
  }
  // one note per kind of fall-back (the per-tensor list is in --json)
  const groups = new Map<string, string[]>();
  for (const t of fallbacks) {
    const key = `${t.requested} → ${t.type} (row width ${t.shape[t.shape.length - 1]}${t.llamaRefuses ? ", llama.cpp refuses it" : ""})`;
    groups.set(key, [...(groups.get(key) ?? []), t.name]);
  }
  for (const [k, names] of groups) {
    process.stderr.write(`quantlab: note: fall-back ${k}: ${names.length} tensor${names.length > 1 ? "s" : ""} (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""})\n`);
  }
  const refused = fallbacks.filter((t) => t.llamaRefuses).length;
  if (refused > 0) process.stderr.write(`quantlab: note: llama-quantize would refuse ${preset} for this model (${refused} tensors); quantlab fell back per tensor\n`);
  const counts = new Map<string, number>();
  for (const t of r.tensors) counts.set(t.type, (counts.get(t.type) ?? 0) + 1);
  if (im) process.stdout.write(`imatrix: ${im.collected ? `${im.chunks} chunks of ${im.ctx} from ${displayName(im.source)}` : `${im.imatrix.size} entries from ${displayName(im.source)}`} (${imatrixSeconds.toFixed(1)} s)\n`);
  process.stdout.write(
    `${displayName(modelPath)} → ${o.output}: ${preset}${o.pure ? " (pure)" : ""}${o.gptq ? " (GPTQ codes)" : ""}, ${[...counts].map(([k, v]) => `${v}×${k}`).join(" ")}, ` +
      `${r.bitsPerWeight.toFixed(3)} bits/weight, ${fileBytes} bytes, ${fallbacks.length} fall-backs, ${seconds.toFixed(1)} s\n`,
  );
}
