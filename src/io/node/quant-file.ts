/** Node file access for quantized-model safetensors files (layout: io/quant-model.ts, docs/quant-format.md). */
import { basename } from "node:path";
import type { Model } from "../../model/weights.js";
import { openSafetensors, writeSafetensors } from "../safetensors.js";
import { isQuantModelMetadata, quantModelEntries, readQuantModel } from "../quant-model.js";
import { atomicWriteFile } from "./atomic.js";
import type { TensorPlacer } from "../gguf-model.js";
import { openFile } from "./file.js";

/** True when the safetensors file at `path` is a quantlab quantized model. */
export async function isQuantModelFile(path: string): Promise<boolean> {
  const src = openFile(path);
  try {
    return isQuantModelMetadata((await openSafetensors(src)).metadata);
  } finally {
    await src.close();
  }
}

/** Loads a quantized model lazily: the file stays open for its weights until `model.close()`. */
export async function loadQuantModelFile(path: string, opts: { place?: TensorPlacer } = {}): Promise<Model> {
  const src = openFile(path);
  try {
    const m = await readQuantModel(await openSafetensors(src), opts);
    m.source = { ...m.source, path };
    m.config.name = basename(path);
    return m;
  } catch (e) {
    await src.close();
    throw e;
  }
}

/** Writes the model atomically (temp file + rename); returns the bytes written. */
export async function saveQuantModelFile(model: Model, path: string, opts: { allowNonFinite?: boolean } = {}): Promise<number> {
  const { entries, metadata } = quantModelEntries(model, { ...opts, name: path });
  return atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata, path));
}
