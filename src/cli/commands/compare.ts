/**
 * `quantlab compare <model> --specs s1,s2,… --text eval.txt`: quantize the model with each spec (round to
 * nearest, weights of the block linears; activations too for a<b>/a<b>s specs) and measure, against the
 * float model on the same windows: bits per weight (scales and zero points included), file size of the
 * quantized-model safetensors, perplexity, mean KL divergence, top-1 agreement, worst-tensor SQNR and
 * the quantization time. `--json`: {model, text, tokens, ctx, base: {ppl}, rows: [{spec, bpw, sizeBytes,
 * ppl, meanKld, top1, worstSqnrDb, seconds}]}.
 */
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { kld, ModelLogits, type LogitsSource } from "../../eval/kld.js";
import { safetensorsSize } from "../../io/safetensors.js";
import { quantModelEntries } from "../../io/quant-model.js";
import { Llama } from "../../model/llama.js";
import { printSpec } from "../../quant/spec.js";
import { parseKvSpec, quantKvCacheFactory, type QuantKvCache } from "../../model/kv-quant.js";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, backendFromOptions, displayName, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";
import { readTextFile, warnContext } from "./eval.js";
import { quantize, normalizeRecipe } from "../../algos/quantize.js";
import { METHODS } from "../../algos/methods/index.js";
import { isMixedSpec, parseMixedSpec, printMixedSpec } from "../../algos/mixed-model.js";
import { canonicalSpec } from "../../quant/spec.js";
import { selectTensors, splitGlobs } from "../../algos/select.js";
import { readCalibText } from "../recipe-flags.js";
import { IntegerLinearBackend, hasIntegerLinears } from "../../model/integer-linear.js";

interface CompareOptions extends BackendOptions {
  specs?: string;
  text: string;
  ctx: number;
  maxTokens?: number;
  calib?: string;
  calibTokens: number;
  only?: string;
  skip?: string;
  tokenizer?: string;
  kv?: string;
  kvSpecs?: string;
  markdown?: boolean;
  json?: boolean;
}

export interface CompareRow {
  /** weight spec ("f32" for rows that only quantize the KV cache) */
  spec: string;
  /** KV-cache spec, when the cache is quantized */
  kv?: string;
  /** storage bits per K/V element of the quantized cache (scales included) */
  kvBits?: number;
  /** mixed-precision rows: how many tensors got each candidate, and which */
  mixed?: { counts: Record<string, number>; sensitivity: string; choice: Record<string, string> };
  /** integer-only rows: dot products run and overflow counts */
  integer?: { dots: number; accOverflows: number; outSaturations: number };
  bpw: number;
  sizeBytes: number;
  ppl: number;
  meanKld: number;
  top1: number;
  worstSqnrDb: number;
  /** quantization time */
  seconds: number;
  /** evaluation time (both models on the text) */
  evalSeconds: number;
}

/** Records a LogitsSource's answers on the first pass and replays them afterwards (the float model runs once). */
class RecordedLogits implements LogitsSource {
  private readonly calls: Float32Array[] = [];
  private i = 0;
  private recording = true;
  constructor(private readonly live: LogitsSource) {}
  get vocabSize(): number { return this.live.vocabSize; }
  get maxRows(): number { return this.live.maxRows; }
  replay(): void { this.recording = false; this.i = 0; }
  async rows(inputs: Int32Array, pos: number, n: number): Promise<Float32Array> {
    if (this.recording) {
      const r = (await this.live.rows(inputs, pos, n)).slice();
      this.calls.push(r);
      return r;
    }
    const r = this.calls[this.i++];
    if (!r || r.length !== n * this.vocabSize) throw new QuantlabError("E_INTERNAL", "compare: replayed base logits out of step");
    return r;
  }
}

function fmt(x: number, d: number): string {
  return Number.isFinite(x) ? x.toFixed(d) : String(x);
}

export function register(program: Command): void {
  const cmd = program
    .command("compare")
    .description("quantize a model with several specs and compare bits/weight, size, perplexity, KLD and top-1 against the float model")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory")
    .option("--specs <list>", "comma-separated weight specs, e.g. int8:channel,int4:g32,nf4:g64,ternary:channel,mxfp4")
    .requiredOption("--text <file>", "UTF-8 evaluation text")
    .option("--ctx <n>", "window length in positions, BOS included", positiveInt("--ctx"), 256)
    .option("--max-tokens <n>", "stop after this many scored tokens (whole windows)", positiveInt("--max-tokens"))
    .option("--calib <file>", "calibration text for static activation scales (a<b>s specs)")
    .option("--calib-tokens <n>", "tokens of the calibration text to run", positiveInt("--calib-tokens"), 4096)
    .option("--only <globs>", "comma-separated globs of tensors to quantize (default: every block linear)")
    .option("--skip <globs>", "comma-separated globs of tensors to keep in float")
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .option("--kv <spec>", "also quantize the KV cache with this spec in every row (e.g. int8, int4:g4:asym, fp8_e4m3)")
    .option("--kv-specs <list>", "comma-separated KV-cache specs: one more row each, with float weights and that cache")
    .option("--markdown", "print the table as Markdown")
    .option("--json", "print one JSON object {rows: [{spec, bpw, sizeBytes, ppl, meanKld, top1, worstSqnrDb, seconds}], ...}");
  addBackendOptions(cmd).action(async (path: string, o: CompareOptions) => {
    // bad specs fail before any work
    const split = (t: string | undefined) => (t ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    const specs = split(o.specs).map((s) => (isMixedSpec(s) ? printMixedSpec(parseMixedSpec(s)) : canonicalSpec(s)));
    const kvAll = o.kv === undefined ? undefined : printSpec(parseKvSpec(o.kv));
    const jobs: { spec: string | undefined; kv: string | undefined }[] = specs.map((spec) => ({ spec, kv: kvAll }));
    for (const kv of split(o.kvSpecs)) jobs.push({ spec: undefined, kv: printSpec(parseKvSpec(kv)) });
    if (jobs.length === 0) throw new QuantlabError("E_ARG", "option --specs: no spec given");
    const text = readTextFile(o.text);
    const calibFile = o.calib ? await readCalibText(o.calib, "--calib") : undefined;
    const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
    warnContext(path, o.ctx, model.config.seqLen);
    const tokens = tokenizer.encode(text, { bos: false });
    const tensors: Record<string, string[]> = {};
    if (o.only) tensors.only = splitGlobs(o.only);
    if (o.skip) tensors.keepFloat = splitGlobs(o.skip);
    const names = selectTensors(model, tensors.only, tensors.keepFloat);
    // one recipe per row: round to nearest (or mixed precision), calibrated where the row's method reads
    // calibration: mixed precision on the first --calib-tokens tokens of --calib in windows of --ctx; static
    // activation scales (the layer-by-layer pipeline) on as many seeded windows of --ctx as that holds
    const recipeOf = (spec: string): Record<string, unknown> => {
      const r: Record<string, unknown> = { target: { spec }, method: isMixedSpec(spec) ? "mixed" : "rtn", ...(Object.keys(tensors).length ? { tensors } : {}) };
      const n = normalizeRecipe(r);
      const def = METHODS[n.method];
      if (calibFile && def.calibration(n) !== "unused") {
        const windows = def.windows(n).includes("consecutive") ? { kind: "consecutive", ctx: o.ctx, maxTokens: o.calibTokens } : { kind: "random", samples: Math.max(1, Math.floor(o.calibTokens / (o.ctx - 1))), seq: o.ctx };
        r.calibration = { source: { text: calibFile.ref }, windows };
      }
      return r;
    };
    const recipes = jobs.map(({ spec }) => (spec === undefined ? undefined : normalizeRecipe(recipeOf(spec)))); // bad recipes fail before any work
    if (calibFile && !recipes.some((r) => r?.calibration)) throw new QuantlabError("E_ARG", "option --calib: no spec in --specs reads calibration data (static activations a<b>s, mixed precision with hess or kld sensitivity)");
    if (!calibFile && cmd.getOptionValueSource("calibTokens") === "cli") throw new QuantlabError("E_ARG", "option --calib-tokens: needs --calib <file>");
    const backend = backendFromOptions(o);
    const progress = stderrProgress();
    const rows: CompareRow[] = [];
    const kopts = { ctx: o.ctx, maxTokens: o.maxTokens, bosId: tokenizer.bosId, progress };
    const floatSize = safetensorsSize(quantModelEntries(model).entries, quantModelEntries(model).metadata);
    let basePpl = NaN, nTokens = 0;
    try {
      const base = new RecordedLogits(new ModelLogits(new Llama(model, { contextLength: o.ctx, backend })));
      for (const { spec, kv } of jobs) {
        const q = spec === undefined ? undefined : await quantize(model, recipeOf(spec), { ...(calibFile ? { calibText: calibFile.text } : {}), backend, progress });
        const qModel = q?.model ?? model;
        // integer-only linears quantize their own inputs (model/integer-linear.ts); the others fake-quantize them
        const intmm = hasIntegerLinears(qModel.weights);
        const acts = qModel.inputTransforms?.activations;
        let qm = qModel;
        if (intmm && acts) {
          const { activations: _a, ...rest } = qModel.inputTransforms!;
          qm = { ...qModel, ...(Object.keys(rest).length ? { inputTransforms: rest } : {}) };
          if (!Object.keys(rest).length) delete qm.inputTransforms;
        }
        const t0 = Date.now();
        const rowBackend = intmm ? new IntegerLinearBackend(backend, acts) : backend;
        const llama = new Llama(qm, { contextLength: o.ctx, backend: rowBackend, ...(kv ? { kvCache: quantKvCacheFactory(kv) } : {}) });
        const r = await kld(base, new ModelLogits(llama), tokens, kopts);
        llama.dispose(); // the next row prepares its own weights
        base.replay();
        const { entries, metadata } = quantModelEntries(qModel);
        basePpl = r.pplBase;
        nTokens = r.tokens;
        const row: CompareRow = {
          spec: spec ?? "f32", bpw: q?.bpw ?? 32, sizeBytes: safetensorsSize(entries, metadata), ppl: r.pplOther, meanKld: r.meanKld, top1: r.top1,
          worstSqnrDb: q ? Math.min(...(q.tensors ?? []).map((t) => t.sqnrDb)) : Infinity, seconds: q?.seconds ?? 0, evalSeconds: (Date.now() - t0) / 1000,
        };
        if (kv) { row.kv = kv; row.kvBits = (llama.kv as QuantKvCache).bitsPerElement; }
        if (q?.mixed) row.mixed = { counts: q.mixed.counts, sensitivity: q.mixed.sensitivity, choice: q.mixed.choice };
        if (rowBackend instanceof IntegerLinearBackend) row.integer = { ...rowBackend.stats };
        rows.push(row);
        if (!o.json) {
          const extra = (row.mixed ? ` (${Object.entries(row.mixed.counts).map(([c, n]) => `${n}× ${c}`).join(", ")}; ${row.mixed.sensitivity})` : "") +
            (row.integer ? ` (integer-only: ${row.integer.dots} dot products, ${row.integer.accOverflows} accumulator overflows, ${row.integer.outSaturations} saturated outputs)` : "");
          process.stderr.write(`${row.spec}${kv ? ` kv ${kv}` : ""}: ppl ${fmt(r.pplOther, 4)} kld ${fmt(r.meanKld, 5)}${extra}\n`);
        }
      }
    } finally {
      backend.dispose?.();
    }
    if (o.json) {
      printJson({ model: path, text: o.text, ctx: o.ctx, tokens: nTokens, quantized: names.length, base: { ppl: basePpl, sizeBytes: floatSize }, rows });
      return;
    }
    const withKv = rows.some((r) => r.kv !== undefined);
    const head = ["spec", ...(withKv ? ["KV cache", "KV bits"] : []), "bpw", "size (bytes)", "ppl", "Δppl %", "mean KLD", "top-1", "worst SQNR dB", "quantize s"];
    const body = rows.map((r) => [r.spec, ...(withKv ? [r.kv ?? "f32", fmt(r.kvBits ?? 32, 3)] : []), fmt(r.bpw, 3), String(r.sizeBytes), fmt(r.ppl, 4), fmt((100 * (r.ppl - basePpl)) / basePpl, 2), fmt(r.meanKld, 5), fmt(r.top1, 4), fmt(r.worstSqnrDb, 2), fmt(r.seconds, 2)]);
    body.unshift(["f32 (float model)", ...(withKv ? ["f32", "32.000"] : []), "32.000", String(floatSize), fmt(basePpl, 4), "0.00", "0", "1", "inf", "0"]);
    if (o.markdown) {
      process.stdout.write(`| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|\n`);
      for (const b of body) process.stdout.write(`| ${b.join(" | ")} |\n`);
    } else {
      const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
      const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i]!)).join("  ");
      process.stdout.write([line(head), ...body.map(line)].join("\n") + "\n");
    }
    process.stdout.write(`${displayName(path)} on ${displayName(o.text)}: ${nTokens} tokens, ctx ${o.ctx}, ${names.length} tensors quantized\n`);
  });
}
