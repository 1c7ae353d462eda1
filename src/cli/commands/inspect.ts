/**
 * `quantlab inspect <model> [--calib text]`: per-tensor weight statistics that predict quantization
 * difficulty (std, max/std, excess kurtosis, outlier input/output channels), and with --calib the same
 * for the activations entering every block linear (per-token absmax, outlier channels), collected by
 * running the model on the calibration text. `--only <globs>` restricts the weight table (and the bytes
 * read) to the matching tensors.
 */
import type { Command } from "commander";
import { Llama } from "../../model/llama.js";
import { siteKey } from "../../model/transforms.js";
import { planWindows, windowInputs } from "../../eval/windows.js";
import { ActivationObserver, type ActivationStats } from "../../quant/observer.js";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, backendFromOptions, displayName, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";
import { readTextFile } from "./eval.js";
import { QuantlabError } from "../../core/errors.js";
import { namesMatching } from "../../algos/select.js";
import { weightStats } from "../../eval/weight-stats.js";

interface InspectOptions extends BackendOptions {
  only?: string;
  calib?: string;
  calibTokens: number;
  ctx: number;
  tokenizer?: string;
  json?: boolean;
}

function f(x: number, d = 3): string {
  return Number.isFinite(x) ? x.toFixed(d) : String(x);
}

export function register(program: Command): void {
  const cmd = program
    .command("inspect")
    .description("per-tensor weight statistics (std, max/std, kurtosis, outlier channels); with --calib, activation statistics too")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory")
    .option("--only <globs>", "comma-separated tensor-name globs (e.g. 'blk.0.*'): report these tensors only, reading only their bytes")
    .option("--calib <file>", "calibration text: also collect activation statistics at every block linear's input")
    .option("--calib-tokens <n>", "tokens of the calibration text to run", positiveInt("--calib-tokens"), 4096)
    .option("--ctx <n>", "window length for the calibration run", positiveInt("--ctx"), 256)
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .option("--json", "print one JSON object {tensors: [{name, shape, ...stats}], activations?: [{site, ...stats}]}");
  addBackendOptions(cmd).action(async (path: string, o: InspectOptions) => {
    const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
    const all = [...model.weights.keys()];
    // the calibration run reads every weight anyway: keep what the statistics read
    const tensors = weightStats(model, o.only !== undefined ? namesMatching(all, o.only, "--only") : all, o.calib !== undefined);
    let activations: ({ site: string } & Omit<ActivationStats, "channelAbsMax">)[] | undefined;
    if (o.calib) {
      const tokens = tokenizer.encode(readTextFile(o.calib), { bos: false }).slice(0, o.calibTokens);
      const observers = new Map<string, ActivationObserver>();
      const backend = backendFromOptions(o);
      const progress = stderrProgress();
      try {
        const llama = new Llama(model, {
          contextLength: o.ctx, backend,
          hooksOnly: true, // only the linears' inputs are observed: no logits
          inputHook: (layer, site, x, n, width) => {
            const key = siteKey(layer, site);
            let ob = observers.get(key);
            if (!ob) { ob = new ActivationObserver(width); observers.set(key, ob); }
            ob.observe(x.subarray(0, n * width), key);
          },
        });
        const plan = planWindows(tokens.length, o.ctx);
        progress.start(plan.length, "calibration");
        for (const w of plan) { llama.reset(); llama.prefill(windowInputs(tokens, w, tokenizer.bosId), 0); progress.tick(); }
        progress.done();
      } finally {
        backend.dispose?.();
      }
      activations = [...observers].map(([site, ob]) => { const { channelAbsMax: _c, ...s } = ob.stats(); return { site, ...s }; });
    }
    if (o.json) {
      printJson({ model: path, tensors, ...(activations ? { activations } : {}) });
      return;
    }
    const out: string[] = [`${displayName(path)}: ${tensors.length} tensors`];
    out.push(["name".padEnd(28), "shape".padEnd(12), "std".padStart(9), "max/std".padStart(8), "kurtosis".padStart(9), "  outlier in/out channels"].join(" "));
    for (const t of tensors) {
      out.push([t.name.padEnd(28), `[${t.shape.join(",")}]`.padEnd(12), f(t.std, 5).padStart(9), f(t.maxOverStd, 2).padStart(8), f(t.kurtosis, 2).padStart(9),
        `  ${t.outlierInputChannels.length ? t.outlierInputChannels.join(",") : "-"} / ${t.outlierOutputChannels.length ? t.outlierOutputChannels.join(",") : "-"}`].join(" "));
    }
    if (activations) {
      out.push("", `activations at block-linear inputs (${activations[0]?.nTokens ?? 0} tokens of ${displayName(o.calib!)}):`);
      out.push(["site".padEnd(16), "std".padStart(9), "absmax".padStart(9), "max/std".padStart(8), "kurtosis".padStart(9), "token absmax mean/max".padStart(22), "  outlier channels"].join(" "));
      for (const a of activations) {
        out.push([a.site.padEnd(16), f(a.std, 4).padStart(9), f(a.absMax, 3).padStart(9), f(a.maxOverStd, 2).padStart(8), f(a.kurtosis, 2).padStart(9),
          `${f(a.tokenAbsMax.mean, 3)}/${f(a.tokenAbsMax.max, 3)}`.padStart(22), `  ${a.outlierChannels.length ? a.outlierChannels.join(",") : "-"}`].join(" "));
      }
    }
    process.stdout.write(out.join("\n") + "\n");
  });
}
