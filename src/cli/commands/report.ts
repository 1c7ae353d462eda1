/**
 * `quantlab report <model> --specs s1,s2,… [--text eval.txt] -o report.html`: one self-contained HTML file
 * (inline SVG, no script, no network) with the compare table (the rows `quantlab compare` measures, by the
 * same library code, eval/compare.ts), the size-vs-KLD frontier with llama.cpp presets marked, per-layer
 * SQNR and KLD contribution, a histogram of one tensor on each spec's grid, the outlier-channel heatmap,
 * the KV-cache rows, the recipe of each row and the machine it ran on (report/build.ts, report/html.ts).
 */
import { readFileSync } from "node:fs";
import { arch, availableParallelism, cpus, platform, release, totalmem } from "node:os";
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { parseCompareTargets } from "../../eval/compare.js";
import { atomicWriteFile } from "../../io/node/atomic.js";
import { buildReport } from "../../report/build.js";
import { reportHtml } from "../../report/html.js";
import { splitGlobs } from "../../algos/select.js";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, backendFromOptions, backendReady, displayName, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";
import { readTextFile, warnContext } from "./eval.js";
import { readCalibText } from "../recipe-flags.js";

interface ReportOptions extends BackendOptions {
  specs?: string;
  kvSpecs?: string;
  text?: string;
  ctx: number;
  maxTokens: number;
  calib?: string;
  calibTokens: number;
  only?: string;
  skip?: string;
  layerKld: boolean;
  layerTokens: number;
  histTensor?: string;
  title?: string;
  tokenizer?: string;
  output: string;
  json?: boolean;
}

/** quantlab's version, from the package.json beside dist/. */
function quantlabVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL("../../../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

/** Where the report ran: what the numbers (and the seconds) depend on. */
function machine(backend: string, threads: number): Record<string, string> {
  const cpu = cpus()[0];
  return {
    quantlab: quantlabVersion(),
    runtime: `Node.js ${process.version} (V8 ${process.versions.v8})`,
    os: `${platform()} ${release()} ${arch()}`,
    cpu: `${cpu?.model ?? "?"} × ${availableParallelism()}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernels: `${backend}, ${threads} thread${threads > 1 ? "s" : ""}`,
    command: `quantlab ${process.argv.slice(2).join(" ")}`,
  };
}

export function register(program: Command): void {
  const cmd = program
    .command("report")
    .description("quantize a model several ways and write one self-contained HTML report (tables, plots, recipes)")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory")
    .requiredOption("--specs <list>", "comma-separated weight specs and llama-quantize presets, e.g. int8:channel,int4:g32:asym,nf4:g64,Q4_K_M,Q8_0")
    .option("--kv-specs <list>", "comma-separated KV-cache specs: one row each with float weights and that cache")
    .option("--text <file>", "UTF-8 evaluation text (perplexity, KLD, the frontier and per-layer KLD need it)")
    .option("--ctx <n>", "window length in positions, BOS included", positiveInt("--ctx"), 256)
    .option("--max-tokens <n>", "scored tokens per row, in whole windows (1020 = 4 windows of 255 at --ctx 256)", positiveInt("--max-tokens"), 1020)
    .option("--calib <file>", "calibration text for rows that read one (static activation scales a<b>s, mixed sensitivity)")
    .option("--calib-tokens <n>", "tokens of the calibration text to run", positiveInt("--calib-tokens"), 4096)
    .option("--only <globs>", "comma-separated globs of tensors spec rows quantize (default: every block linear)")
    .option("--skip <globs>", "comma-separated globs of tensors spec rows keep in float")
    .option("--no-layer-kld", "skip the per-layer KLD contributions (one more quantize + evaluation per row and layer)")
    .option("--layer-tokens <n>", "tokens each per-layer KLD measurement scores: the rows' first windows (255 = 1 window at --ctx 256)", positiveInt("--layer-tokens"), 255)
    .option("--hist-tensor <name>", "the tensor the grid histograms show (default: the block linear with the strongest outlier channel)")
    .option("--title <text>", "report title")
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .requiredOption("-o, --output <file>", "the HTML file to write (atomically)")
    .option("--json", "also print the report's data as one JSON object on stdout");
  addBackendOptions(cmd).action(async (path: string, o: ReportOptions) => {
    if (!/\.html?$/i.test(o.output)) throw new QuantlabError("E_ARG", `option -o: ${o.output}: the report is an HTML file (.html)`);
    const split = (t: string | undefined) => (t ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    const targets = parseCompareTargets(split(o.specs), split(o.kvSpecs));
    if (targets.length === 0) throw new QuantlabError("E_ARG", "option --specs: no spec given");
    if (targets.some((t) => t.spec === undefined && t.preset === undefined) && o.text === undefined) throw new QuantlabError("E_ARG", "option --kv-specs: KV-cache rows are measured on a text; give --text <file>");
    const text = o.text !== undefined ? readTextFile(o.text) : undefined;
    const calib = o.calib ? await readCalibText(o.calib, "--calib") : undefined;
    const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
    if (text !== undefined) warnContext(path, o.ctx, model.config.seqLen);
    const tensors: { only?: string[]; keepFloat?: string[] } = {};
    if (o.only) tensors.only = splitGlobs(o.only);
    if (o.skip) tensors.keepFloat = splitGlobs(o.skip);
    const backend = backendFromOptions(o);
    const progress = o.json ? undefined : stderrProgress();
    let html: string;
    let data;
    try {
      await backendReady(backend);
      data = await buildReport(model, {
        targets,
        ...(text !== undefined ? { tokens: tokenizer.encode(text, { bos: false }), textName: displayName(o.text!) } : {}),
        bosId: tokenizer.bosId, ctx: o.ctx, maxTokens: o.maxTokens, backend, ...(progress ? { progress } : {}),
        ...(calib ? { calib, calibTokens: o.calibTokens } : {}),
        ...(Object.keys(tensors).length ? { tensors } : {}),
        layerKld: o.layerKld,
        layerTokens: o.layerTokens,
        ...(o.histTensor !== undefined ? { histTensor: o.histTensor } : {}),
        ...(o.title !== undefined ? { title: o.title } : {}),
        machine: machine(o.backend === "ref" ? "ref (TypeScript)" : backend.name, o.threads ?? 1),
      });
      html = await reportHtml(data);
    } finally {
      backend.dispose?.();
    }
    const bytes = new TextEncoder().encode(html);
    await atomicWriteFile(o.output, (sink) => sink.write(bytes));
    if (o.json) printJson({ output: o.output, bytes: bytes.length, ...data });
    else process.stdout.write(`${displayName(path)} → ${o.output}: ${data.rows.length} rows${data.kvRows.length ? ` + ${data.kvRows.length} KV-cache row${data.kvRows.length > 1 ? "s" : ""}` : ""}, ${data.layerKld.length} layer measurements, ${bytes.length} bytes, ${data.seconds.toFixed(1)} s\n`);
  });
}
