/** GGUF files on disk: open (header only), load a Model, write a Model atomically. */
import type { Progress } from "../../core/progress.js";
import { namingFile } from "../../core/errors.js";
import type { Model } from "../../model/weights.js";
import { openGguf, type GgufFile } from "../gguf.js";
import { readGgufModel, writeGgufModel, type TensorPlacer, type WriteGgufModelOptions, type WriteReport } from "../gguf-model.js";
import { atomicWriteFile } from "./atomic.js";
import { openFile } from "./file.js";

export async function openGgufFile(path: string): Promise<GgufFile> {
  const src = openFile(path);
  try {
    return await openGguf(src);
  } catch (e) {
    await src.close();
    throw namingFile(e, path);
  }
}

/** Loads a GGUF model lazily: the file stays open for its weights until `model.close()`. */
export async function loadGgufFile(path: string, opts: { tokenizer?: string; progress?: Progress; place?: TensorPlacer } = {}): Promise<Model> {
  const f = await openGgufFile(path);
  try {
    return await readGgufModel(f, { progress: opts.progress, place: opts.place });
  } catch (e) {
    await f.close();
    throw e;
  }
}

export async function saveGgufFile(model: Model, path: string, opts: WriteGgufModelOptions = {}): Promise<WriteReport & { path: string }> {
  const report = await atomicWriteFile(path, (sink) => writeGgufModel(model, sink, opts, path));
  return { ...report, path };
}
