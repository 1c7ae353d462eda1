/**
 * ONNX export directories on disk: everything is written into a temp directory beside the target, which
 * replaces it by rename at the end (atomicWriteDir), so a failed export leaves no partial directory.
 */
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Model } from "../../model/weights.js";
import type { ByteSink } from "../gguf.js";
import type { DirSink } from "../hf.js";
import { writeOnnxDir, type OnnxDirResult, type OnnxExportOptions } from "../onnx.js";
import { atomicWriteDir, atomicWriteFile } from "./atomic.js";

/** Writes files (sub-folders created as needed) into a fresh directory. */
class NestedDirSink implements DirSink {
  constructor(private readonly dir: string) {}
  writeFile<T>(file: string, write: (sink: ByteSink) => Promise<T>): Promise<T> {
    const p = join(this.dir, file);
    mkdirSync(dirname(p), { recursive: true });
    return atomicWriteFile(p, write);
  }
}

export async function saveOnnxDir(model: Model, path: string, opts: OnnxExportOptions): Promise<OnnxDirResult & { path: string }> {
  const r = await atomicWriteDir(path, (tmp) => writeOnnxDir(model, new NestedDirSink(tmp), { ...opts, name: opts.name ?? path }));
  return { path, ...r };
}
