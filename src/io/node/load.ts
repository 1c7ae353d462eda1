/**
 * `<model>` on the command line → Model. Detects the format from the path and the file's magic:
 * a directory (Hugging Face layout), GGUF (magic "GGUF"), safetensors (u64 header length + JSON),
 * or a llama2.c checkpoint (.bin); `hf://owner/name[@rev]` is downloaded into the cache first.
 */
import { existsSync, statSync } from "node:fs";
import { QuantlabError, readingFile } from "../../core/errors.js";
import type { Model } from "../../model/weights.js";
import { openFile } from "./file.js";
import { loadLlama2cFile } from "./llama2c-file.js";
import { loadGgufFile } from "./gguf-file.js";
import { loadSafetensorsFile, loadHfDir } from "./hf-file.js";
import { loadHubModel } from "./hub-cache.js";
import { isQuantModelFile, loadQuantModelFile } from "./quant-file.js";
import { isHubRef } from "../hub.js";
import { sniffFormat } from "../open-model.js";
import type { Progress } from "../../core/progress.js";
import type { TensorPlacer } from "../gguf-model.js";

export interface LoadOptions {
  /** tokenizer file for formats that do not carry one (llama2.c) */
  tokenizer?: string;
  /** progress of tensor loading and hub downloads */
  progress?: Progress;
  /** GGUF: read tensors straight into memory the kernels provide (see TensorPlacer) */
  place?: TensorPlacer;
}

export type ModelFileFormat = "llama2c" | "gguf" | "safetensors" | "hf";

export async function detectFormat(path: string): Promise<ModelFileFormat> {
  if (!existsSync(path)) throw new QuantlabError("E_IO", `${path}: no such file or directory`);
  if (statSync(path).isDirectory()) return "hf";
  const src = openFile(path);
  try {
    // the same rules as for files picked in the browser lab (io/open-model.ts)
    return await sniffFormat(src, path);
  } finally {
    await src.close();
  }
}

/**
 * Loads any model `<model>` may name. Every error is a QuantlabError naming the file (errors.ts
 * `namingFile`): the readers' own, and whatever a dependency throws, wrapped here at the boundary.
 */
export async function loadModel(path: string, opts: LoadOptions = {}): Promise<Model> {
  return readingFile(path.replace(/\/+$/, "") || path, async () => {
    if (isHubRef(path)) return loadHubModel(path, opts);
    const fmt = await detectFormat(path);
    switch (fmt) {
      case "llama2c": return loadLlama2cFile(path, opts);
      case "gguf": return loadGgufFile(path, opts);
      case "safetensors": return (await isQuantModelFile(path)) ? loadQuantModelFile(path, { place: opts.place }) : loadSafetensorsFile(path, opts);
      case "hf": return loadHfDir(path, opts);
    }
  });
}
