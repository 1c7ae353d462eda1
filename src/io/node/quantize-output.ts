/**
 * Writes the result of `quantize(model, recipe)` (algos/quantize.ts) to the file its target calls for,
 * atomically: the bytes come from io/quantize-output.ts (spec targets → quantized safetensors, presets →
 * GGUF with llama-quantize's keys), the same function the browser lab downloads from. The CLI and library
 * scripts call this same function, so they write the same bytes.
 */
import { QuantlabError } from "../../core/errors.js";
import type { Progress } from "../../core/progress.js";
import type { QuantizeResult } from "../../algos/quantize.js";
import { writeQuantizeResult } from "../quantize-output.js";
import { atomicWriteFile } from "./atomic.js";

export { imatrixMetadata } from "../quantize-output.js";

/** The output file name a result needs (.safetensors or .gguf); throws E_ARG naming the option otherwise. */
export function checkOutputPath(output: "safetensors" | "gguf", path: string, option = "-o"): void {
  const ext = output === "gguf" ? ".gguf" : ".safetensors";
  if (!path.toLowerCase().endsWith(ext)) {
    throw new QuantlabError("E_ARG", `option ${option}: ${path}: ${output === "gguf" ? "a GGUF preset (--type) writes a GGUF, the output must be a .gguf file" : "a spec (--spec) writes quantlab's quantized safetensors, the output must be a .safetensors file"}`);
  }
}

export async function saveQuantizeResult(r: QuantizeResult, path: string, opts: { progress?: Progress; allowNonFinite?: boolean } = {}): Promise<{ bytes: number }> {
  checkOutputPath(r.output, path);
  return { bytes: await atomicWriteFile(path, (sink) => writeQuantizeResult(r, sink, path, opts), { direct: true }) };
}
