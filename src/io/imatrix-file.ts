/**
 * llama.cpp's GGUF importance-matrix files (llama-imatrix since 2025-07, tools/imatrix/imatrix.cpp
 * `save_imatrix`): `general.type` = "imatrix", `imatrix.chunk_count`, `imatrix.chunk_size`,
 * `imatrix.datasets`, and per weight two F32 tensors: `<name>.in_sum2` (ne = [n_per_row, n_mat], Σ x²)
 * and `<name>.counts` (ne = [1, n_mat], tokens summed); the matrix is in_sum2 / counts. Reading and
 * writing here; the legacy `.dat` form is in ggml/imatrix.ts.
 */
import { QuantlabError } from "../core/errors.js";
import { GgmlType } from "../ggml/types.js";
import type { Imatrix } from "../ggml/imatrix.js";
import { GgufValueType, GgufWriter, metaNumber, metaString, type ByteSink, type GgufFile } from "./gguf.js";

const SUM2 = ".in_sum2";
const COUNTS = ".counts";

/** Is this GGUF an importance matrix (general.type "imatrix", or in_sum2 tensors)? */
export function isImatrixGguf(f: GgufFile): boolean {
  return metaString(f, "general.type") === "imatrix" || f.tensors.some((t) => t.name.endsWith(SUM2));
}

export async function readImatrixGguf(f: GgufFile): Promise<{ imatrix: Imatrix; chunks?: number; chunkSize?: number }> {
  const imatrix: Imatrix = new Map();
  for (const t of f.tensors) {
    if (!t.name.endsWith(SUM2)) continue;
    const name = t.name.slice(0, -SUM2.length);
    const c = f.tensor(name + COUNTS);
    if (!c) throw new QuantlabError("E_FORMAT", `${f.name}: ${t.name} has no ${name}${COUNTS}`);
    if (t.type !== GgmlType.F32 || c.type !== GgmlType.F32) throw new QuantlabError("E_FORMAT", `${f.name}: ${name}: imatrix tensors must be F32`);
    const sums = new Float32Array((await f.readTensorBytes(t)).slice().buffer);
    const counts = new Float32Array((await f.readTensorBytes(c)).slice().buffer);
    const nMat = counts.length;
    if (nMat === 0 || sums.length % nMat !== 0) throw new QuantlabError("E_FORMAT", `${f.name}: ${name}: ${sums.length} sums for ${nMat} matrices`);
    const per = sums.length / nMat;
    const out = new Float32Array(sums.length);
    for (let m = 0; m < nMat; m++) {
      const n = counts[m]!;
      for (let j = 0; j < per; j++) out[m * per + j] = n > 0 ? sums[m * per + j]! / n : 0;
    }
    for (const v of out) if (!Number.isFinite(v)) throw new QuantlabError("E_FORMAT", `${f.name}: ${name} has non-finite values`);
    imatrix.set(name, out);
  }
  if (imatrix.size === 0) throw new QuantlabError("E_FORMAT", `${f.name}: no *${SUM2} tensors (not an importance matrix)`);
  return { imatrix, chunks: metaNumber(f, "imatrix.chunk_count"), chunkSize: metaNumber(f, "imatrix.chunk_size") };
}

/** Writes an importance matrix in llama-imatrix's GGUF form (counts = tokens, so sums = mean · tokens). */
export async function writeImatrixGguf(imatrix: Imatrix, sink: ByteSink, info: { chunks: number; chunkSize: number; tokens: number; dataset?: string }, name = "imatrix.gguf"): Promise<void> {
  const w = new GgufWriter(sink, name);
  w.setKV("general.type", { type: GgufValueType.STRING, value: "imatrix" });
  w.setKV("imatrix.chunk_count", { type: GgufValueType.UINT32, value: info.chunks });
  w.setKV("imatrix.chunk_size", { type: GgufValueType.UINT32, value: info.chunkSize });
  if (info.dataset !== undefined) w.setKV("imatrix.datasets", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.STRING, items: [info.dataset] } });
  const names = [...imatrix.keys()].sort();
  for (const n of names) {
    w.addTensor({ name: n + SUM2, shape: [1, imatrix.get(n)!.length], type: GgmlType.F32 });
    w.addTensor({ name: n + COUNTS, shape: [1, 1], type: GgmlType.F32 });
  }
  await w.writeHeader();
  for (const n of names) {
    const v = imatrix.get(n)!;
    const s = new Float32Array(v.length);
    for (let j = 0; j < v.length; j++) s[j] = v[j]! * info.tokens;
    await w.writeTensorData(n + SUM2, new Uint8Array(s.buffer));
    await w.writeTensorData(n + COUNTS, new Uint8Array(new Float32Array([info.tokens]).buffer));
  }
  w.finish();
}
