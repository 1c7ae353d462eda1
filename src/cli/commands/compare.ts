/**
 * `quantlab compare <model> --specs s1,s2,… --text eval.txt`: quantize the model with each spec (round to
 * nearest, weights of the block linears; activations too for a<b>/a<b>s specs) or llama-quantize preset
 * (Q4_K_M …), and measure, against the float model on the same windows: bits per weight (scales and zero
 * points included), file size of the quantized-model safetensors (the GGUF for presets), perplexity, mean
 * KL divergence, top-1 agreement, worst-tensor SQNR and the quantization time. The measuring is the
 * library's (eval/compare.ts, shared with `quantlab report`). `--json`: {model, text, tokens, ctx, base:
 * {ppl}, rows: [{spec, bpw, sizeBytes, ppl, meanKld, top1, worstSqnrDb, seconds}]}.
 */
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { CompareSession, parseCompareTargets, type CompareRow } from "../../eval/compare.js";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, backendFromOptions, displayName, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";
import { readTextFile, warnContext } from "./eval.js";
import { splitGlobs } from "../../algos/select.js";
import { readCalibText } from "../recipe-flags.js";

export type { CompareRow } from "../../eval/compare.js";

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
    const jobs = parseCompareTargets(split(o.specs), split(o.kvSpecs), o.kv);
    if (jobs.length === 0) throw new QuantlabError("E_ARG", "option --specs: no spec given");
    const text = readTextFile(o.text);
    const calibFile = o.calib ? await readCalibText(o.calib, "--calib") : undefined;
    const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
    warnContext(path, o.ctx, model.config.seqLen);
    const tokens = tokenizer.encode(text, { bos: false });
    const tensors: { only?: string[]; keepFloat?: string[] } = {};
    if (o.only) tensors.only = splitGlobs(o.only);
    if (o.skip) tensors.keepFloat = splitGlobs(o.skip);
    const backend = backendFromOptions(o);
    const progress = stderrProgress();
    const session = new CompareSession(model, {
      tokens, bosId: tokenizer.bosId, ctx: o.ctx, maxTokens: o.maxTokens, backend, progress,
      ...(calibFile ? { calib: calibFile, calibTokens: o.calibTokens } : {}),
      ...(Object.keys(tensors).length ? { tensors } : {}),
    });
    const rows: CompareRow[] = [];
    try {
      session.checkRecipes(jobs); // bad recipes fail before any work
      if (!calibFile && cmd.getOptionValueSource("calibTokens") === "cli") throw new QuantlabError("E_ARG", "option --calib-tokens: needs --calib <file>");
      for (const job of jobs) {
        const { row } = await session.measure(job);
        rows.push(row);
        if (!o.json) {
          const extra = (row.mixed ? ` (${Object.entries(row.mixed.counts).map(([c, n]) => `${n}× ${c}`).join(", ")}; ${row.mixed.sensitivity})` : "") +
            (row.integer ? ` (integer-only: ${row.integer.dots} dot products, ${row.integer.accOverflows} accumulator overflows, ${row.integer.outSaturations} saturated outputs)` : "");
          process.stderr.write(`${row.spec}${row.kv ? ` kv ${row.kv}` : ""}: ppl ${fmt(row.ppl, 4)} kld ${fmt(row.meanKld, 5)}${extra}\n`);
        }
      }
    } finally {
      session.dispose();
      backend.dispose?.();
    }
    const basePpl = session.basePpl, nTokens = session.tokens, names = session.names;
    const floatSize = session.floatSizeBytes();
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
