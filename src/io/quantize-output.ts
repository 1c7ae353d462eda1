/**
 * The bytes of a `quantize(model, recipe)` result (algos/quantize.ts), written through any ByteSink: spec
 * targets → quantlab's quantized safetensors (io/quant-model.ts), preset targets → GGUF with llama-quantize's
 * `general.file_type` and `quantize.imatrix.*` keys. The recipe travels in both (`quantlab.recipe`).
 * Isomorphic: the CLI writes through an atomic file sink (io/node/quantize-output.ts), the browser lab into
 * memory chunks it downloads as a Blob, and both call this one function, so they write the same bytes.
 */
import type { Progress } from "../core/progress.js";
import type { QuantizeResult } from "../algos/quantize.js";
import { presetFileType } from "../algos/quantize.js";
import { GgufValueType, type ByteSink, type GgufValue } from "./gguf.js";
import { writeGgufModel } from "./gguf-model.js";
import { quantModelEntries } from "./quant-model.js";
import { writeSafetensors } from "./safetensors.js";

/** The file name extension a result's writer produces. */
export function resultExtension(r: Pick<QuantizeResult, "output">): ".gguf" | ".safetensors" {
  return r.output === "gguf" ? ".gguf" : ".safetensors";
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

/** Writes the result's file through `sink` (`name` appears in error messages); returns the bytes written. */
export async function writeQuantizeResult(r: QuantizeResult, sink: ByteSink, name = "output", opts: { progress?: Progress; allowNonFinite?: boolean } = {}): Promise<number> {
  const allow = opts.allowNonFinite ? { allowNonFinite: true } : {};
  if (r.output === "safetensors") {
    const { entries, metadata } = quantModelEntries(r.model, { ...allow, name });
    return writeSafetensors(sink, entries, metadata, name);
  }
  const preset = (r.recipe.target as { preset: string }).preset;
  let bytes = 0;
  const counting: ByteSink = { write: (c) => { bytes += c.length; return sink.write(c); } };
  await writeGgufModel(r.model, counting, { fileType: presetFileType(preset), extraMetadata: imatrixMetadata(r), ...(opts.progress ? { progress: opts.progress } : {}), ...allow }, name);
  return bytes;
}
