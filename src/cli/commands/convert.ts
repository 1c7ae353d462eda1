/**
 * `quantlab convert <in> <out>`: between llama2.c, GGUF, .safetensors and Hugging Face directories.
 * The output format follows the output path: `*.gguf`, `*.safetensors`, or a directory (`out/`).
 * GGUF → GGUF works on any GGUF (names, order and all metadata kept); `--type` re-encodes every 2-D
 * tensor (1-D tensors stay F32; a row that does not fit the block size falls back to F16, reported).
 */
import { existsSync, statSync } from "node:fs";
import { extname } from "node:path";
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { GgmlType, ggmlTypeName } from "../../ggml/types.js";
import { detectFormat } from "../../io/node/load.js";
import { loadCliModel } from "../model-options.js";
import { openGgufFile, saveGgufFile } from "../../io/node/gguf-file.js";
import { saveHfDir, saveSafetensorsFile } from "../../io/node/hf-file.js";
import { atomicWriteFile } from "../../io/node/atomic.js";
import { convertGguf } from "../../io/gguf-convert.js";
import { encodableTypes, parseOutputType } from "../../io/weights-encode.js";
import { isHubRef } from "../../io/hub.js";
import { printJson, stderrProgress } from "../util.js";
import { withGgmlEncoder } from "../ggml-encoder.js";
import { ALLOW_NONFINITE_HELP, addBackendOptions } from "../model-options.js";

interface ConvertOptions {
  type?: string;
  backend: string;
  threads: number;
  tokenizer?: string;
  shardSize?: string;
  allowNonfinite?: boolean;
  json?: boolean;
}

type OutKind = "gguf" | "safetensors" | "hf";

export function outputKind(out: string): OutKind {
  if (out.endsWith("/") || (existsSync(out) && statSync(out).isDirectory())) return "hf";
  const ext = extname(out).toLowerCase();
  if (ext === ".gguf") return "gguf";
  if (ext === ".safetensors") return "safetensors";
  if (ext === "") return "hf";
  throw new QuantlabError("E_ARG", `${out}: cannot tell the output format (use a .gguf or .safetensors file name, or a directory ending in /)`);
}

const DENSE: Partial<Record<GgmlType, "f32" | "f16" | "bf16">> = { [GgmlType.F32]: "f32", [GgmlType.F16]: "f16", [GgmlType.BF16]: "bf16" };

function parseBytes(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i.exec(v.trim());
  if (!m) throw new QuantlabError("E_ARG", `--shard-size ${v}: expected bytes like 500MB or 2GB`);
  const mult = { "": 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  return Math.floor(Number(m[1]) * mult);
}

export function register(program: Command): void {
  const cmd = program
    .command("convert")
    .description("convert a model between llama2.c, GGUF, safetensors and Hugging Face directories (atomic output)")
    .argument("<in>", "llama2.c .bin, GGUF (any), .safetensors, Hugging Face directory or hf://owner/name[@rev]")
    .argument("<out>", "out.gguf | out.safetensors | out-dir/")
    .option("--type <type>", `re-encode 2-D tensors: ${encodableTypes().map(ggmlTypeName).join(", ")} (safetensors/HF: F32, F16, BF16)`)
    .option("--tokenizer <file>", "tokenizer for llama2.c input when it is not beside the model")
    .option("--shard-size <bytes>", "HF directory: largest shard (e.g. 2GB; default 5GB)")
    .option("--allow-nonfinite", ALLOW_NONFINITE_HELP)
    .option("--json", "print one JSON object");
  addBackendOptions(cmd).action(async (input: string, out: string, o: ConvertOptions) => {
      const t0 = Date.now();
      const kind = outputKind(out);
      const type = o.type !== undefined ? parseOutputType(o.type) : undefined;
      // --backend/--threads pick the ggml block encoder: they only act when --type asks for block types in a GGUF
      const encodes = kind === "gguf" && type !== undefined && DENSE[type] === undefined;
      for (const k of ["backend", "threads"] as const) {
        if (!encodes && cmd.getOptionValueSource(k) === "cli") throw new QuantlabError("E_ARG", `option --${k}: picks the ggml block encoder, which only runs with --type <block type> into a .gguf`);
      }
      if (kind !== "gguf" && type !== undefined && DENSE[type] === undefined) {
        throw new QuantlabError("E_ARG", `--type ${o.type}: ${kind} output holds F32, F16 or BF16 tensors only (ggml block types need a .gguf output)`);
      }
      const progress = o.json ? undefined : stderrProgress();
      const allowNonFinite = !!o.allowNonfinite;
      let result: { tensors?: { name: string; type: string; fallback?: string }[]; bytes: number; files?: string[]; warnings?: string[] };
      if (kind === "gguf" && !isHubRef(input) && (await detectFormat(input)) === "gguf") {
        const f = await openGgufFile(input);
        try {
          result = await withGgmlEncoder(o, (encoder) => atomicWriteFile(out, (sink) => convertGguf(f, sink, { type, progress, encoder, allowNonFinite }, out)));
        } finally {
          await f.close();
        }
      } else {
        const model = await loadCliModel(input, { tokenizer: o.tokenizer, progress });
        // the recipe describes the weights as they are; re-encoding them with --type makes it untrue
        const dropped = type !== undefined && model.recipe !== undefined;
        if (dropped) delete model.recipe;
        if (kind === "gguf") result = await withGgmlEncoder(o, (encoder) => saveGgufFile(model, out, { type, progress, encoder, allowNonFinite }));
        else if (kind === "safetensors") result = await saveSafetensorsFile(model, out, { dtype: type !== undefined ? DENSE[type] : undefined, progress, allowNonFinite });
        else result = await saveHfDir(model, out, { dtype: type !== undefined ? DENSE[type] : undefined, progress, maxShardBytes: o.shardSize ? parseBytes(o.shardSize) : undefined, allowNonFinite });
        if (dropped) result.warnings = [...(result.warnings ?? []), `${input}'s recipe (metadata quantlab.recipe) is not written: --type re-encodes the weights, so it no longer describes them`];
      }
      const fallbacks = (result.tensors ?? []).filter((t) => t.fallback);
      const seconds = (Date.now() - t0) / 1000;
      for (const w of result.warnings ?? []) process.stderr.write(`quantlab: warning: ${w}\n`);
      if (o.json) {
        printJson({ input, output: out, format: kind, type: type !== undefined ? ggmlTypeName(type) : null, bytes: result.bytes, seconds, warnings: result.warnings ?? [], ...(result.files ? { files: result.files } : {}), ...(result.tensors ? { tensors: result.tensors } : {}), fallbacks });
      } else {
        for (const t of fallbacks) process.stderr.write(`quantlab: note: ${t.name}: ${t.fallback}; written as ${t.type}\n`);
        process.stdout.write(`wrote ${out} (${kind}${type !== undefined ? `, ${ggmlTypeName(type)}` : ""}, ${result.bytes} bytes) in ${seconds.toFixed(2)} s\n`);
      }
    });
}
