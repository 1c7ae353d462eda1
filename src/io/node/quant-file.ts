/** Node file access for quantized-model safetensors files (layout: io/quant-model.ts, docs/quant-format.md). */
import { basename } from "node:path";
import type { Model } from "../../model/weights.js";
import { openSafetensors, writeSafetensors } from "../safetensors.js";
import { isQuantModelMetadata, quantModelEntries, readQuantModel } from "../quant-model.js";
import { atomicWriteFile } from "./atomic.js";
import { openFile } from "./file.js";

/** True when the safetensors file at `path` is a quantlab quantized model. */
export async function isQuantModelFile(path: string): Promise<boolean> {
  const st = await openSafetensors(openFile(path));
  try {
    return isQuantModelMetadata(st.metadata);
  } finally {
    await st.close();
  }
}

export async function loadQuantModelFile(path: string): Promise<Model> {
  const st = await openSafetensors(openFile(path));
  try {
    const m = await readQuantModel(st);
    m.source = { ...m.source, path };
    m.config.name = basename(path);
    return m;
  } finally {
    await st.close();
  }
}

/** Writes the model atomically (temp file + rename); returns the bytes written. */
export async function saveQuantModelFile(model: Model, path: string): Promise<number> {
  const { entries, metadata } = quantModelEntries(model);
  return atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata, path));
}
