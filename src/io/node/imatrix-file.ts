/**
 * Importance matrices on disk: llama-imatrix's `.dat` (ggml/imatrix.ts) and GGUF (io/imatrix-file.ts)
 * forms, read whole, with the sha256 a recipe records; and writing a collected one in either form.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { QuantlabError } from "../../core/errors.js";
import { formatImatrixDat, parseImatrixDat, type Imatrix } from "../../ggml/imatrix.js";
import { isImatrixGguf, readImatrixGguf, writeImatrixGguf } from "../imatrix-file.js";
import { sha256Hex } from "../../algos/recipe.js";
import { BufferSource } from "../source.js";
import { openGguf } from "../gguf.js";
import { atomicWriteFile } from "./atomic.js";

const isGgufMagic = (b: Uint8Array): boolean => b.length >= 4 && b[0] === 0x47 && b[1] === 0x47 && b[2] === 0x55 && b[3] === 0x46;

/** Is the file at `path` an importance-matrix file (.dat or a GGUF), rather than a calibration text? */
export function isImatrixFile(path: string, bytes: Uint8Array): boolean {
  return path.toLowerCase().endsWith(".dat") || isGgufMagic(bytes);
}

/** Reads an imatrix file (already read into `bytes`): the matrix, its chunk count and its sha256. */
export async function readImatrixFile(path: string, bytes: Uint8Array = new Uint8Array(readFileSync(path))): Promise<{ imatrix: Imatrix; source: string; chunks?: number; sha256: string }> {
  const sha256 = await sha256Hex(bytes);
  if (path.toLowerCase().endsWith(".dat")) {
    const r = parseImatrixDat(bytes, path);
    return { imatrix: r.imatrix, source: basename(path), ...(r.chunks !== undefined ? { chunks: r.chunks } : {}), sha256 };
  }
  const f = await openGguf(new BufferSource(path, bytes));
  if (!isImatrixGguf(f)) throw new QuantlabError("E_ARG", `--imatrix ${path}: a GGUF without imatrix tensors (*.in_sum2)`);
  const r = await readImatrixGguf(f);
  return { imatrix: r.imatrix, source: basename(path), ...(r.chunks !== undefined ? { chunks: r.chunks } : {}), sha256 };
}

/** Saves a collected importance matrix as .dat or .gguf (by the file name), atomically. */
export async function saveImatrixFile(path: string, imatrix: Imatrix, info: { chunks: number; chunkSize: number; tokens: number; dataset: string }): Promise<void> {
  if (path.toLowerCase().endsWith(".dat")) {
    const bytes = formatImatrixDat(imatrix, info.chunks, info.dataset);
    await atomicWriteFile(path, (sink) => sink.write(bytes));
  } else if (path.toLowerCase().endsWith(".gguf")) await atomicWriteFile(path, (sink) => writeImatrixGguf(imatrix, sink, info, path));
  else throw new QuantlabError("E_ARG", `--imatrix-out ${path}: expected a .gguf or .dat file name`);
}
