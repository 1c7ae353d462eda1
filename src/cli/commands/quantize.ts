/**
 * `quantlab quantize <model> --spec <spec> [--only glob] [--skip glob] -o out.safetensors`: round-to-nearest
 * quantization of a model's block linears (or the tensors --only names) with one spec, written as a
 * quantized-model safetensors file (packed codes + scales + spec in metadata; docs/quant-format.md) that
 * `quantlab run/eval/kld` load back.
 */
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { saveQuantModelFile } from "../../io/node/quant-file.js";
import { canonicalSpec } from "../../quant/spec.js";
import { printJson, stderrProgress } from "../util.js";
import { displayName, loadModelWithTokenizer } from "../model-options.js";
import { quantizeModel, selectTensors } from "../quant-model.js";
import { addPtqOptions, runPtq, wantsPtq, type PtqCliOptions } from "../ptq.js";
import { addGgufQuantizeOptions, runGgufQuantize, wantsGgufQuantize, type GgufQuantizeCliOptions } from "../quantize-gguf.js";

interface QuantizeOptions {
  spec?: string;
  output: string;
  only?: string;
  skip?: string;
  seed: string;
  tokenizer?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command("quantize")
    .description("quantize a model's weights with a spec (e.g. int4:g32:asym, nf4:g64:dq, mxfp4) into a safetensors file")
    .argument("<model>", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory")
    .option("--spec <spec>", "quantization spec, <format>[:<granularity>][:<option>...] (see docs/quant-format.md); or --type for a GGUF")
    .requiredOption("-o, --output <file>", "output .safetensors file (written atomically)")
    .option("--only <globs>", "comma-separated globs of tensor names to quantize (default: every block linear, blk.*.attn_*/ffn_*)")
    .option("--skip <globs>", "comma-separated globs of tensor names to leave in float")
    .option("--seed <n>", "seed of stochastic rounding (specs with :sr)", "0")
    .option("--tokenizer <file>", "tokenizer file when it is not beside the model (llama2.c)")
    .option("--json", "print one JSON object {output, spec, bytes, bpw, worstSqnrDb, tensors: [...]}")
    .action(async (path: string, o: QuantizeOptions) => {
      if (wantsGgufQuantize(o as { type?: string })) return runGgufQuantize(path, o as unknown as GgufQuantizeCliOptions); // --type: llama-quantize preset → GGUF (cli/quantize-gguf.ts)
      if (o.spec === undefined) throw new QuantlabError("E_ARG", "quantize: give --spec <spec> (quantized safetensors) or --type <preset> (GGUF)");
      if (wantsPtq(o as { method?: string; rotate?: boolean })) return runPtq(path, o as unknown as PtqCliOptions); // --method/--rotate: layer-by-layer PTQ (cli/ptq.ts)
      const spec = canonicalSpec(o.spec);
      const seed = Number(o.seed);
      if (!Number.isInteger(seed) || seed < 0) throw new QuantlabError("E_ARG", `option --seed: expected a non-negative integer, got "${o.seed}"`);
      if (!o.output.endsWith(".safetensors")) throw new QuantlabError("E_ARG", `option -o: ${o.output}: the output must be a .safetensors file`);
      const { model } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer });
      const names = selectTensors(model, o.only, o.skip);
      if (names.length === 0) throw new QuantlabError("E_ARG", "nothing to quantize: --skip removed every tensor");
      const r = quantizeModel(model, spec, names, { seed, progress: stderrProgress() });
      const bytes = await saveQuantModelFile(r.model, o.output);
      if (o.json) {
        printJson({ output: o.output, model: path, spec, bytes, bpw: r.bpw, worstSqnrDb: r.worstSqnrDb, worstTensor: r.worstTensor, seconds: r.seconds, tensors: r.tensors });
        return;
      }
      for (const t of r.tensors) process.stdout.write(`${t.name.padEnd(28)} [${t.shape.join(", ")}]  ${t.bpw.toFixed(3)} bpw  SQNR ${t.sqnrDb.toFixed(2)} dB\n`);
      process.stdout.write(`${displayName(path)} → ${o.output}: ${spec}, ${r.tensors.length} tensors at ${r.bpw.toFixed(3)} bits/weight, worst SQNR ${r.worstSqnrDb.toFixed(2)} dB (${r.worstTensor}), ${bytes} bytes\n`);
    });
  addPtqOptions(cmd);
  addGgufQuantizeOptions(cmd);
}
