/**
 * safetensors container (huggingface/safetensors `docs` and `safetensors/src/tensor.rs`), isomorphic:
 *   u64 LE N · N bytes of UTF-8 JSON header (may end in spaces, padding the data to 8 bytes) · data.
 * The header maps each tensor name to {dtype, shape, data_offsets: [begin, end)} relative to the data
 * section, plus an optional "__metadata__" map of string → string. Tensors are read one at a time.
 */
import { QuantlabError } from "../core/errors.js";
import { DTYPES, Tensor, numel, viewAs, type DType, type TypedData } from "../core/tensor.js";
import type { PlaceBytes, TensorStore } from "./lazy.js";
import type { ByteSink } from "./gguf.js";
import type { ByteSource } from "./source.js";

/** safetensors' own parser refuses headers over 100 MB (safetensors/src/tensor.rs MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Dimensions per tensor: no model tensor has more than a handful; a long list means a corrupt header. */
export const MAX_DIMS = 8;

export type SafetensorsDType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL" | "U16" | "U32" | "U64" | "F8_E4M3" | "F8_E5M2";

/** safetensors dtype ↔ our DType (F64 is read as f32, rounded; the rest are not model weights we run). */
const TO_DTYPE: Partial<Record<string, DType>> = { F32: "f32", F16: "f16", BF16: "bf16", I8: "i8", U8: "u8", I16: "i16", I32: "i32" };
const FROM_DTYPE: Record<DType, SafetensorsDType> = { f32: "F32", f16: "F16", bf16: "BF16", i8: "I8", u8: "U8", i16: "I16", i32: "I32" };
const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8, F8_E4M3: 1, F8_E5M2: 1 };

export interface SafetensorsTensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** absolute file offset */
  fileOffset: number;
  byteLength: number;
}

export class SafetensorsFile {
  private readonly byName: Map<string, SafetensorsTensorInfo>;
  constructor(
    readonly source: ByteSource,
    readonly tensors: SafetensorsTensorInfo[],
    readonly metadata: Record<string, string>,
    readonly dataOffset: number,
  ) {
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }
  get name(): string {
    return this.source.name;
  }
  tensor(name: string): SafetensorsTensorInfo | undefined {
    return this.byName.get(name);
  }
  async readBytes(t: SafetensorsTensorInfo): Promise<Uint8Array> {
    return this.source.read(t.fileOffset, t.byteLength);
  }
  /** A tensor as a dense Tensor over the bytes just read (F64 converted to f32). */
  async readTensor(t: SafetensorsTensorInfo | string): Promise<Tensor> {
    const info = this.resolve(t);
    const dtype = this.tensorDtype(info);
    return new Tensor(dtype, info.shape, decodeTensorBytes(info, dtype, await this.readBytes(info)));
  }
  /**
   * A tensor as a dense Tensor whose bytes are read on first access through `store` (io/lazy.ts; F64
   * converted to f32 then). `rewrite` reorders the decoded bytes first (the HF Q/K row permutation).
   * The dtype is checked now, so an unloadable tensor fails at load, not on first use.
   */
  lazyTensor(store: TensorStore, t: SafetensorsTensorInfo | string, rewrite?: (bytes: Uint8Array, dtype: DType) => Uint8Array, place?: PlaceBytes): Tensor {
    const info = this.resolve(t);
    const dtype = this.tensorDtype(info);
    const n = numel(info.shape);
    if (place && (rewrite || info.dtype === "F64")) throw new QuantlabError("E_INTERNAL", `${this.name}: tensor "${info.name}": a placed tensor is used as its file bytes`);
    const lazy = store.tensor(this.source, info.name, [{ offset: info.fileOffset, byteLength: info.byteLength }], ([b]) => {
      const d = decodeTensorBytes(info, dtype, b!);
      if (!rewrite) return d;
      const out = rewrite(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), dtype);
      return viewAs(dtype, out.buffer, out.byteOffset, n);
    }, place);
    return new Tensor(dtype, info.shape, lazy);
  }
  /**
   * A lazily read tensor decoded to f32 and then changed in place by `map` (Gemma's norm weights, stored as w
   * and used as 1 + w: adding 1 in bf16 or f16 would round away most of w, so it happens in f32).
   */
  lazyTensorF32(store: TensorStore, t: SafetensorsTensorInfo | string, map: (values: Float32Array) => void): Tensor {
    const info = this.resolve(t);
    const dtype = this.tensorDtype(info);
    const lazy = store.tensor(this.source, info.name, [{ offset: info.fileOffset, byteLength: info.byteLength }], ([b]) => {
      const d = decodeTensorBytes(info, dtype, b!);
      const f = new Tensor(dtype, info.shape, d).toF32(true);
      map(f);
      return f;
    });
    return new Tensor("f32", info.shape, lazy);
  }
  private resolve(t: SafetensorsTensorInfo | string): SafetensorsTensorInfo {
    const info = typeof t === "string" ? this.byName.get(t) : t;
    if (!info) throw new QuantlabError("E_FORMAT", `${this.name}: no tensor named "${String(t)}"`);
    return info;
  }
  /** The dtype a tensor loads as (F64 → f32), or E_UNSUPPORTED naming it. */
  private tensorDtype(info: SafetensorsTensorInfo): DType {
    const dtype = info.dtype === "F64" ? "f32" : TO_DTYPE[info.dtype];
    if (!dtype) throw new QuantlabError("E_UNSUPPORTED", `${this.name}: tensor "${info.name}" has dtype ${info.dtype}, which quantlab does not load (F32, F16, BF16, F64, I8, U8, I16, I32)`);
    return dtype;
  }
  async close(): Promise<void> {
    await this.source.close?.();
  }
}

/** A tensor's file bytes as typed data of `dtype` (F64 rounded to f32; other dtypes viewed in place). */
function decodeTensorBytes(info: SafetensorsTensorInfo, dtype: DType, bytes: Uint8Array): TypedData {
  const n = numel(info.shape);
  if (info.dtype === "F64") return Float32Array.from(new Float64Array(bytes.slice().buffer));
  return viewAs(dtype, bytes.buffer, bytes.byteOffset, n);
}

/** Parses the header; checks every tensor's dtype size × shape against its byte range and the file size. */
export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  const name = source.name;
  if (source.size < 8) throw new QuantlabError("E_FORMAT", `${name}: truncated: ${source.size} bytes, a safetensors header needs at least 8`);
  const head = await source.read(0, 8);
  const n64 = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) throw new QuantlabError("E_FORMAT", `${name}: safetensors header length ${n64} is above MAX_HEADER_BYTES = ${MAX_HEADER_BYTES} (not a safetensors file?)`);
  const n = Number(n64);
  if (8 + n > source.size) throw new QuantlabError("E_FORMAT", `${name}: truncated header: the header needs ${n} bytes but the file has ${source.size - 8} after the length`);
  const text = new TextDecoder("utf-8").decode(await source.read(8, n));
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new QuantlabError("E_FORMAT", `${name}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new QuantlabError("E_FORMAT", `${name}: safetensors header is not a JSON object`);
  const dataOffset = 8 + n;
  const dataSize = source.size - dataOffset;
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [k, v] of Object.entries(json as Record<string, unknown>)) {
    if (k === "__metadata__") {
      if (typeof v !== "object" || v === null || Object.values(v).some((x) => typeof x !== "string")) {
        throw new QuantlabError("E_FORMAT", `${name}: __metadata__ must map strings to strings`);
      }
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e?.dtype !== "string" || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets) || e.data_offsets.length !== 2) {
      throw new QuantlabError("E_FORMAT", `${name}: tensor "${k}": header entry needs dtype, shape and data_offsets`);
    }
    const bytesPer = DTYPE_BYTES[e.dtype];
    if (bytesPer === undefined) throw new QuantlabError("E_UNSUPPORTED", `${name}: tensor "${k}" has unknown dtype ${e.dtype}`);
    if (e.shape.length > MAX_DIMS || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new QuantlabError("E_FORMAT", `${name}: tensor "${k}" has a bad shape ${JSON.stringify(e.shape)}`);
    }
    const shape = e.shape as number[];
    const [b, end] = e.data_offsets as number[];
    if (!Number.isSafeInteger(b) || !Number.isSafeInteger(end) || b! < 0 || end! < b!) throw new QuantlabError("E_FORMAT", `${name}: tensor "${k}" has bad data_offsets ${JSON.stringify(e.data_offsets)}`);
    const want = numel(shape) * bytesPer;
    if (end! - b! !== want) {
      throw new QuantlabError("E_FORMAT", `${name}: tensor "${k}" (${e.dtype} [${shape.join(", ")}]) has ${end! - b!} bytes of data but its shape needs ${want}`);
    }
    if (end! > dataSize) {
      throw new QuantlabError("E_FORMAT", `${name}: truncated tensor data: tensor "${k}" needs bytes ${dataOffset + b!}..${dataOffset + end!} but the file has ${source.size}`);
    }
    tensors.push({ name: k, dtype: e.dtype, shape, fileOffset: dataOffset + b!, byteLength: want });
  }
  return new SafetensorsFile(source, tensors, metadata, dataOffset);
}

export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: readonly number[];
  /** produces the bytes when the writer reaches this tensor (so only one tensor is materialized at a time) */
  bytes: () => Uint8Array | Promise<Uint8Array>;
}

/** Bytes a safetensors file of these entries will take. */
export function safetensorsSize(entries: readonly { name: string; dtype: DType; shape: readonly number[] }[], metadata: Record<string, string> = {}): number {
  // the header names every tensor, so its length depends on the names too
  return headerBytes(entries, metadata).length + entries.reduce((a, e) => a + numel(e.shape) * DTYPES[e.dtype].bytes, 0);
}

function headerBytes(entries: readonly { name: string; dtype: DType; shape: readonly number[] }[], metadata: Record<string, string>): Uint8Array {
  const h: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) h.__metadata__ = metadata;
  let off = 0;
  for (const e of entries) {
    const len = numel(e.shape) * DTYPES[e.dtype].bytes;
    h[e.name] = { dtype: FROM_DTYPE[e.dtype], shape: [...e.shape], data_offsets: [off, off + len] };
    off += len;
  }
  let json = new TextEncoder().encode(JSON.stringify(h));
  const padded = Math.ceil(json.length / 8) * 8; // the data section starts 8-byte aligned, as safetensors writes it
  const out = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  json = out;
  return json;
}

/** Streams a safetensors file: header, then each tensor's bytes in order (checked against its shape). */
export async function writeSafetensors(sink: ByteSink, entries: readonly SafetensorsEntry[], metadata: Record<string, string> = {}, name = "output"): Promise<number> {
  const names = new Set<string>();
  for (const e of entries) {
    if (names.has(e.name)) throw new QuantlabError("E_ARG", `${name}: duplicate tensor name "${e.name}"`);
    names.add(e.name);
  }
  const h = headerBytes(entries, metadata);
  await sink.write(h);
  let total = h.length;
  for (const e of entries) {
    const b = await e.bytes();
    const want = numel(e.shape) * DTYPES[e.dtype].bytes;
    if (b.length !== want) throw new QuantlabError("E_INTERNAL", `${name}: tensor "${e.name}" produced ${b.length} bytes, its shape needs ${want}`);
    await sink.write(b);
    total += b.length;
  }
  return total;
}
