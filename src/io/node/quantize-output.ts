/**
 * Writes the result of `quantize(model, recipe)` (algos/quantize.ts) to the file its target calls for,
 * atomically: spec targets → quantlab's quantized safetensors (io/quant-model.ts), preset targets → GGUF
 * with llama-quantize's `general.file_type` and `quantize.imatrix.*` keys. The recipe travels in both
 * (`quantlab.recipe`). The CLI and library scripts call this same function, so they write the same bytes.
 */
import { QuantlabError } from "../../core/errors.js";
import type { Progress } from "../../core/progress.js";
import type { QuantizeResult } from "../../algos/quantize.js";
import { presetFileType } from "../../algos/quantize.js";
import { GgufValueType, type GgufValue } from "../gguf.js";
import { saveGgufFile } from "./gguf-file.js";
import { saveQuantModelFile } from "./quant-file.js";
import { statSync } from "node:fs";

/** The output file name a result needs (.safetensors or .gguf); throws E_ARG naming the option otherwise. */
export function checkOutputPath(output: "safetensors" | "gguf", path: string, option = "-o"): void {
  const ext = output === "gguf" ? ".gguf" : ".safetensors";
  if (!path.toLowerCase().endsWith(ext)) {
    throw new QuantlabError("E_ARG", `option ${option}: ${path}: ${output === "gguf" ? "a GGUF preset (--type) writes a GGUF, the output must be a .gguf file" : "a spec (--spec) writes quantlab's quantized safetensors, the output must be a .safetensors file"}`);
  }
}

/** llama.cpp LLM_KV_QUANTIZE_IMATRIX_* keys, as llama-quantize records them. */
export function imatrixMetadata(r: QuantizeResult): Map<string, GgufValue> {
  const extra = new Map<string, GgufValue>();
  const im = r.imatrix;
  if (!im) return extra;
  extra.set("quantize.imatrix.file", { type: GgufValueType.STRING, value: im.source });
  if (im.collected) extra.set("quantize.imatrix.dataset", { type: GgufValueType.STRING, value: im.source });
  extra.set("quantize.imatrix.entries_count", { type: GgufValueType.UINT32, value: im.imatrix.size });
  if (im.chunks !== undefined) extra.set("quantize.imatrix.chunks_count", { type: GgufValueType.UINT32, value: im.chunks });
  return extra;
}

export async function saveQuantizeResult(r: QuantizeResult, path: string, opts: { progress?: Progress; allowNonFinite?: boolean } = {}): Promise<{ bytes: number }> {
  checkOutputPath(r.output, path);
  const allow = opts.allowNonFinite ? { allowNonFinite: true } : {};
  if (r.output === "safetensors") return { bytes: await saveQuantModelFile(r.model, path, allow) };
  const preset = (r.recipe.target as { preset: string }).preset;
  await saveGgufFile(r.model, path, { fileType: presetFileType(preset), extraMetadata: imatrixMetadata(r), ...(opts.progress ? { progress: opts.progress } : {}), ...allow });
  return { bytes: statSync(path).size };
}
