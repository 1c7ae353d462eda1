/**
 * `quantlab inspect <model> [--calib text]`: per-tensor weight statistics that predict quantization
 * difficulty (std, max/std, excess kurtosis, outlier input/output channels), and with --calib the same
 * for the activations entering every block linear (per-token absmax, outlier channels), collected by
 * running the model on the calibration text.
 */
import type { Command } from "commander";
import { dequantizeWeight } from "../../kernels/dequantize.js";
import { Llama } from "../../model/llama.js";
import { siteKey } from "../../model/transforms.js";
import { planWindows, windowInputs } from "../../eval/windows.js";
import { ActivationObserver, type ActivationStats } from "../../quant/observer.js";
import { tensorStats, type TensorStats } from "../../quant/stats.js";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, backendFromOptions, displayName, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";
import { readTextFile } from "./eval.js";

interface InspectOptions extends BackendOptions {
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
    .option("--calib <file>", "calibration text: also collect activation statistics at every block linear's input")
    .option("--calib-tokens <n>", "tokens of the calibration text to run", positiveInt("--calib-tokens"), 4096)
    .option("--ctx <n>", "window length for the calibration run", positiveInt("--ctx"), 256)
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .option("--json", "print one JSON object {tensors: [{name, shape, ...stats}], activations?: [{site, ...stats}]}");
  addBackendOptions(cmd).action(async (path: string, o: InspectOptions) => {
    const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
    const tensors: ({ name: string; shape: number[] } & TensorStats)[] = [];
    for (const [name, w] of model.weights) {
      const { rows, cols, data } = dequantizeWeight(w, name);
      tensors.push({ name, shape: rows === 1 ? [cols] : [rows, cols], ...tensorStats(data, rows, cols) });
    }
    let activations: ({ site: string } & Omit<ActivationStats, "channelAbsMax">)[] | undefined;
    if (o.calib) {
      const tokens = tokenizer.encode(readTextFile(o.calib), { bos: false }).slice(0, o.calibTokens);
      const observers = new Map<string, ActivationObserver>();
      const backend = backendFromOptions(o);
      const progress = stderrProgress();
      try {
        const llama = new Llama(model, {
          contextLength: o.ctx, backend,
          inputHook: (layer, site, x, n, width) => {
            const key = siteKey(layer, site);
            let ob = observers.get(key);
            if (!ob) { ob = new ActivationObserver(width); observers.set(key, ob); }
            ob.observe(x.subarray(0, n * width), key);
          },
        });
        const plan = planWindows(tokens.length, o.ctx);
        progress.start(plan.length, "calibration");
        for (const w of plan) { llama.reset(); llama.prefill(windowInputs(tokens, w, tokenizer.bosId), 0, () => {}); progress.tick(); }
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
