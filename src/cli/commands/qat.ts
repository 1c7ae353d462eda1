/**
 * `quantlab qat <model> --spec <spec> --text calib.txt --steps N --lr x --seq 64 -o out.safetensors`:
 * quantization-aware training of a model's block linears (algos/qat-llama.ts) on a text, written as a
 * quantized-model safetensors file that `quantlab run/eval/kld` load back. `--float` fine-tunes
 * without fake quantization instead (the control run: how much is the text, how much the QAT).
 */
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { checkOutputPath, saveQuantizeResult } from "../../io/node/quantize-output.js";
import { normalizeRecipe, quantize } from "../../algos/quantize.js";
import { selectTensors, splitGlobs } from "../../algos/select.js";
import { readCalibText } from "../recipe-flags.js";
import { parseFloatOpt, printJson, stderrProgress } from "../util.js";
import { ALLOW_NONFINITE_HELP, displayName, loadModelWithTokenizer, positiveInt } from "../model-options.js";

interface QatOptions {
  spec?: string;
  allowNonfinite?: boolean;
  float?: boolean;
  text: string;
  output: string;
  steps: number;
  lr: number;
  lrMin: number;
  batch: number;
  seq: number;
  seed: string;
  loss: string;
  train: string;
  only?: string;
  skip?: string;
  tokenizer?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command("qat")
    .description("quantization-aware training: fake-quantize the linears with a spec, train on a text (STE, Adam), write the quantized model")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory")
    .option("--spec <spec>", "quantization spec of the linears (e.g. int2:g32:asym, ternary:channel, int3:g32:asym)")
    .option("--float", "fine-tune in float without fake quantization (control run; writes float weights)")
    .requiredOption("--text <file>", "UTF-8 training text (tokenized with the model's tokenizer)")
    .requiredOption("-o, --output <file>", "output .safetensors file (written atomically)")
    .option("--steps <n>", "optimizer steps", positiveInt("--steps"), 200)
    .option("--lr <x>", "Adam learning rate at step 0 (cosine decay to --lr-min × lr)", parseFloatOpt("--lr"), 2e-3)
    .option("--lr-min <x>", "final learning rate as a fraction of --lr", parseFloatOpt("--lr-min"), 0.1)
    .option("--batch <n>", "windows per step", positiveInt("--batch"), 8)
    .option("--seq <n>", "positions per window, BOS included", positiveInt("--seq"), 64)
    .option("--seed <n>", "seed of the window sampler", "0")
    .option("--loss <kind>", "ce (next-token cross-entropy) or kd (KL to the float model's distribution)", "ce")
    .option("--train <which>", "all (linears, norms, embedding) or linears (only the quantized tensors learn)", "all")
    .option("--only <globs>", "comma-separated globs of tensors to quantize (default: every block linear)")
    .option("--skip <globs>", "comma-separated globs of tensors to leave in float")
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .option("--allow-nonfinite", ALLOW_NONFINITE_HELP)
    .option("--json", "print one JSON object {output, spec, steps, firstLoss, lastLoss, bytes, seconds, ...}")
    .action(async (path: string, o: QatOptions) => {
      if (o.float && o.spec) throw new QuantlabError("E_ARG", "qat: give --spec <spec> or --float, not both");
      if (!o.float && o.spec === undefined) throw new QuantlabError("E_ARG", "qat: give --spec <spec> (or --float for the float control run)");
      const seed = Number(o.seed);
      if (!Number.isInteger(seed) || seed < 0) throw new QuantlabError("E_ARG", `option --seed: expected a non-negative integer, got "${o.seed}"`);
      if (o.loss !== "ce" && o.loss !== "kd") throw new QuantlabError("E_ARG", `option --loss: expected ce or kd, got "${o.loss}"`);
      if (o.train !== "all" && o.train !== "linears") throw new QuantlabError("E_ARG", `option --train: expected all or linears, got "${o.train}"`);
      if (!(o.lr > 0)) throw new QuantlabError("E_ARG", `option --lr: expected a positive number, got ${o.lr}`);
      if (!(o.lrMin >= 0 && o.lrMin <= 1)) throw new QuantlabError("E_ARG", `option --lr-min: expected a fraction in [0, 1], got ${o.lrMin}`);
      checkOutputPath("safetensors", o.output);
      const calib = await readCalibText(o.text, "--text");
      const tensors: Record<string, string[]> = {};
      if (o.only) tensors.only = splitGlobs(o.only);
      if (o.skip) tensors.keepFloat = splitGlobs(o.skip);
      // the float control run keeps f32 weights: its target is fp32, with the method's float option set
      const recipe = normalizeRecipe({
        target: { spec: o.spec ?? "fp32" }, method: "qat", seed,
        options: { steps: o.steps, lr: o.lr, lrMin: o.lrMin, batch: o.batch, seq: o.seq, loss: o.loss, train: o.train, float: !!o.float },
        calibration: { source: { text: calib.ref }, windows: { kind: "stream" } },
        ...(Object.keys(tensors).length ? { tensors } : {}),
      });
      const { model } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
      const allow = { allowNonFinite: !!o.allowNonfinite };
      const r = await quantize(model, recipe, { calibText: calib.text, progress: stderrProgress(), ...allow });
      const { bytes } = await saveQuantizeResult(r, o.output, allow);
      const losses = r.qat!.losses;
      const tail = losses.slice(-Math.min(10, losses.length));
      const lastLoss = tail.reduce((a, b) => a + b, 0) / Math.max(1, tail.length);
      const firstLoss = losses[0] ?? NaN;
      const specText = o.float ? undefined : (recipe.target as { spec: string }).spec;
      const nTensors = o.float ? selectTensors(model, tensors.only, tensors.keepFloat).length : r.tensors!.length;
      if (o.json) {
        printJson({
          output: o.output, model: path, text: o.text, recipe: r.recipe, spec: specText ?? "float", steps: o.steps, lr: o.lr, lrMin: o.lrMin,
          batch: o.batch, seq: o.seq, seed, loss: o.loss, train: o.train, trainTokens: r.qat!.trainTokens,
          tensors: nTensors, firstLoss, lastLoss, losses, bytes, seconds: r.seconds,
        });
        return;
      }
      process.stdout.write(
        `${displayName(path)} → ${o.output}: ${specText ?? "float fine-tune"}, ${nTensors} tensors, ${o.steps} steps of ${o.batch}×${o.seq} ` +
          `(${o.loss} loss ${firstLoss.toFixed(4)} → ${lastLoss.toFixed(4)}, mean of the last ${tail.length}), ${bytes} bytes, ${r.seconds.toFixed(1)} s\n`,
      );
    });
}
