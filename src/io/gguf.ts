/**
 * GGUF container, versions 2 and 3 (isomorphic: reads through a ByteSource, writes through a ByteSink).
 *
 * Layout (ggml `docs/gguf.md`, `src/gguf.cpp`), all little-endian:
 *   u32 magic "GGUF" · u32 version · u64 n_tensors · u64 n_kv
 *   n_kv × (string key · u32 value_type · value)
 *   n_tensors × (string name · u32 n_dims · u64 ne[n_dims] · u32 ggml_type · u64 offset)
 *   padding to `general.alignment` (default 32) · tensor data, each tensor at an aligned offset
 * A string is u64 byte length + UTF-8 bytes (no NUL); an array is u32 item type · u64 count · items.
 * GGUF `ne` is innermost-first; our shapes are outermost-first, so `shape = ne.reverse()`.
 * Version 1 (u32 counts) is obsolete since 2023 and refused.
 */
import { QuantlabError } from "../core/errors.js";
import { GgmlType, ggmlRowBytes, ggmlTypeName, ggmlTypeTraits } from "../ggml/types.js";
import type { ByteSource } from "./source.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as u32 LE
export const GGUF_DEFAULT_ALIGNMENT = 32; // gguf.h GGUF_DEFAULT_ALIGNMENT

// ---- limits on counts read from a file (each guards an allocation or a loop driven by file data) ----
/** Tensors per file: the largest published models (MoE with per-expert tensors) stay below ~100k. */
export const MAX_TENSOR_COUNT = 1 << 20;
/** Metadata pairs per file: real files carry tens; a million means a corrupt count. */
export const MAX_KV_COUNT = 1 << 20;
/** One string: chat templates reach tens of KB; 64 MiB means a corrupt length. */
export const MAX_STRING_BYTES = 64 << 20;
/** One array: vocabularies and merge lists reach ~300k entries; 64M entries means a corrupt count. */
export const MAX_ARRAY_LENGTH = 1 << 26;
/** Array nesting depth: GGUF files use at most arrays of arrays; deeper nesting only serves stack bombs. */
export const MAX_ARRAY_DEPTH = 8;
/** Dimensions per tensor: GGML_MAX_DIMS in ggml.h. */
export const MAX_DIMS = 4;
/** The whole header (KV + tensor infos) is parsed from memory; 1 GiB is far above any real vocabulary. */
export const MAX_HEADER_BYTES = 1 << 30;
/** Elements in one tensor must stay exact in a JS number (2^53). */
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GgufNumberType =
  | GgufValueType.UINT8 | GgufValueType.INT8 | GgufValueType.UINT16 | GgufValueType.INT16
  | GgufValueType.UINT32 | GgufValueType.INT32 | GgufValueType.FLOAT32 | GgufValueType.FLOAT64;
export type GgufBigType = GgufValueType.UINT64 | GgufValueType.INT64;

/** Array items: numeric arrays as typed arrays (zero-copy friendly), the rest as JS arrays. */
export type GgufArrayItems =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigUint64Array | BigInt64Array
  | boolean[] | string[] | GgufArray[];

export interface GgufArray {
  itemType: GgufValueType;
  items: GgufArrayItems;
}

/** One metadata value, tagged with its GGUF type so it writes back unchanged. */
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigType; value: bigint }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.ARRAY; value: GgufArray };

export interface GgufTensorInfo {
  name: string;
  /** outermost first (reverse of GGUF `ne`) */
  shape: number[];
  type: GgmlType;
  /** offset of the tensor's first byte relative to the start of the data section */
  offset: number;
  /** absolute file offset of the tensor's first byte */
  fileOffset: number;
  byteLength: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** absolute file offset of the data section */
  dataOffset: number;
}

const utf8 = new TextDecoder("utf-8");
const utf8Enc = new TextEncoder();

/** Thrown (internally) when the parser runs past the bytes it holds; the caller fetches more and retries. */
class NeedMore {
  constructor(readonly upTo: number) {}
}

/** Cursor over a prefix of the file. Readers advance `pos` and return the value. */
class Cursor {
  pos = 0;
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly name: string, readonly fileSize: number) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number, what: string): void {
    const end = this.pos + n;
    if (end <= this.bytes.length) return;
    if (end > this.fileSize || !Number.isSafeInteger(end)) {
      throw new QuantlabError("E_FORMAT", `${this.name}: truncated GGUF header: ${what} at byte ${this.pos} needs ${n} bytes but the file has ${this.fileSize}`);
    }
    throw new NeedMore(end);
  }
  u8(what: string): number { this.need(1, what); return this.view.getUint8(this.pos++); }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  u64(what: string): bigint { this.need(8, what); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  /** u64 that must fit a JS number and stay ≤ `limit` (named in the message) */
  count(what: string, limit: number, limitName: string): number {
    const v = this.u64(what);
    if (v > BigInt(limit)) throw new QuantlabError("E_FORMAT", `${this.name}: ${what} is ${v}, above ${limitName} = ${limit} (corrupt file?)`);
    return Number(v);
  }
  string(what: string): string {
    const len = this.count(`length of ${what}`, MAX_STRING_BYTES, "MAX_STRING_BYTES");
    this.need(len, what);
    const b = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    return decodeUtf8(b);
  }
}

/** ASCII fast path (vocabularies are mostly ASCII); TextDecoder otherwise. */
function decodeUtf8(b: Uint8Array): string {
  if (b.length < 32) {
    let ascii = true;
    for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) { ascii = false; break; }
    if (ascii) return String.fromCharCode.apply(null, b as unknown as number[]);
  }
  return utf8.decode(b);
}

const NUMBER_ITEM_BYTES: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4, [GgufValueType.FLOAT64]: 8,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.BOOL]: 1,
};

export function ggufValueTypeName(t: GgufValueType): string {
  return GgufValueType[t] ?? `type#${t}`;
}

function readScalar(c: Cursor, type: GgufValueType, what: string): GgufValue {
  const v = c.view;
  switch (type) {
    case GgufValueType.UINT8: c.need(1, what); return { type, value: v.getUint8(c.pos++) };
    case GgufValueType.INT8: c.need(1, what); return { type, value: v.getInt8(c.pos++) };
    case GgufValueType.UINT16: c.need(2, what); c.pos += 2; return { type, value: v.getUint16(c.pos - 2, true) };
    case GgufValueType.INT16: c.need(2, what); c.pos += 2; return { type, value: v.getInt16(c.pos - 2, true) };
    case GgufValueType.UINT32: c.need(4, what); c.pos += 4; return { type, value: v.getUint32(c.pos - 4, true) };
    case GgufValueType.INT32: c.need(4, what); c.pos += 4; return { type, value: v.getInt32(c.pos - 4, true) };
    case GgufValueType.FLOAT32: c.need(4, what); c.pos += 4; return { type, value: v.getFloat32(c.pos - 4, true) };
    case GgufValueType.FLOAT64: c.need(8, what); c.pos += 8; return { type, value: v.getFloat64(c.pos - 8, true) };
    case GgufValueType.UINT64: c.need(8, what); c.pos += 8; return { type, value: v.getBigUint64(c.pos - 8, true) };
    case GgufValueType.INT64: c.need(8, what); c.pos += 8; return { type, value: v.getBigInt64(c.pos - 8, true) };
    case GgufValueType.BOOL: {
      const b = c.u8(what);
      if (b > 1) throw new QuantlabError("E_FORMAT", `${c.name}: ${what}: bool byte is ${b}, expected 0 or 1`);
      return { type, value: b === 1 };
    }
    case GgufValueType.STRING: return { type, value: c.string(what) };
    case GgufValueType.ARRAY: return { type, value: readArray(c, what, 0) };
    default:
      throw new QuantlabError("E_FORMAT", `${c.name}: ${what}: unknown GGUF value type ${type}`);
  }
}

function readArray(c: Cursor, what: string, depth: number): GgufArray {
  if (depth >= MAX_ARRAY_DEPTH) throw new QuantlabError("E_FORMAT", `${c.name}: ${what}: arrays nested deeper than MAX_ARRAY_DEPTH = ${MAX_ARRAY_DEPTH}`);
  const itemType = c.u32(`item type of ${what}`) as GgufValueType;
  const n = c.count(`length of ${what}`, MAX_ARRAY_LENGTH, "MAX_ARRAY_LENGTH");
  const fixed = NUMBER_ITEM_BYTES[itemType];
  if (fixed !== undefined) {
    c.need(n * fixed, what);
    // copy into an aligned buffer of its own so typed arrays work whatever the file offset (not .slice:
    // on a Node Buffer it is a view, and the typed arrays below would read the file from byte 0)
    const raw = new Uint8Array(n * fixed);
    raw.set(c.bytes.subarray(c.pos, c.pos + n * fixed));
    c.pos += n * fixed;
    const buf = raw.buffer;
    switch (itemType) {
      case GgufValueType.UINT8: return { itemType, items: raw };
      case GgufValueType.INT8: return { itemType, items: new Int8Array(buf, 0, n) };
      case GgufValueType.UINT16: return { itemType, items: new Uint16Array(buf, 0, n) };
      case GgufValueType.INT16: return { itemType, items: new Int16Array(buf, 0, n) };
      case GgufValueType.UINT32: return { itemType, items: new Uint32Array(buf, 0, n) };
      case GgufValueType.INT32: return { itemType, items: new Int32Array(buf, 0, n) };
      case GgufValueType.FLOAT32: return { itemType, items: new Float32Array(buf, 0, n) };
      case GgufValueType.FLOAT64: return { itemType, items: new Float64Array(buf, 0, n) };
      case GgufValueType.UINT64: return { itemType, items: new BigUint64Array(buf, 0, n) };
      case GgufValueType.INT64: return { itemType, items: new BigInt64Array(buf, 0, n) };
      case GgufValueType.BOOL: {
        const out: boolean[] = new Array(n);
        for (let i = 0; i < n; i++) {
          if (raw[i]! > 1) throw new QuantlabError("E_FORMAT", `${c.name}: ${what}[${i}]: bool byte is ${raw[i]}, expected 0 or 1`);
          out[i] = raw[i] === 1;
        }
        return { itemType, items: out };
      }
    }
  }
  if (itemType === GgufValueType.STRING) {
    // each string needs at least its 8-byte length: reject impossible counts before allocating
    c.need(n * 8, what);
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = c.string(`${what}[${i}]`);
    return { itemType, items: out };
  }
  if (itemType === GgufValueType.ARRAY) {
    c.need(n * 12, what);
    const out: GgufArray[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = readArray(c, `${what}[${i}]`, depth + 1);
    return { itemType, items: out };
  }
  throw new QuantlabError("E_FORMAT", `${c.name}: ${what}: unknown GGUF array item type ${itemType}`);
}

/** Parses the header from a prefix of the file; throws NeedMore when the prefix is too short. */
function parseHeader(c: Cursor): GgufHeader {
  const name = c.name;
  const magic = c.u32("magic");
  if (magic !== GGUF_MAGIC) {
    const m = Array.from(c.bytes.subarray(0, 4), (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`)).join("");
    throw new QuantlabError("E_FORMAT", `${name}: not a GGUF file (magic "${m}", expected "GGUF")`);
  }
  const version = c.u32("version");
  if (version === 1) throw new QuantlabError("E_UNSUPPORTED", `${name}: GGUF version 1 is obsolete; re-convert the model with a current llama.cpp`);
  if (version !== 2 && version !== 3) throw new QuantlabError("E_UNSUPPORTED", `${name}: GGUF version ${version} is not supported (2 or 3)`);
  const nTensors = c.count("tensor count", MAX_TENSOR_COUNT, "MAX_TENSOR_COUNT");
  const nKv = c.count("metadata count", MAX_KV_COUNT, "MAX_KV_COUNT");
  // gguf.cpp checks each count against the bytes left before it resizes a vector; the same here: a
  // tensor info takes at least 24 bytes (name length, n_dims, type, offset), a pair at least 13 (key
  // length, value type, one byte of value), so counts the file cannot hold are refused before any loop
  const minBytes = 24 + 24 * nTensors + 13 * nKv;
  if (minBytes > c.fileSize) {
    throw new QuantlabError("E_FORMAT", `${name}: truncated GGUF header: ${nTensors} tensors and ${nKv} metadata pairs need at least ${minBytes} bytes but the file has ${c.fileSize}`);
  }

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key #${i}`);
    const type = c.u32(`type of metadata "${key}"`) as GgufValueType;
    if (metadata.has(key)) throw new QuantlabError("E_FORMAT", `${name}: duplicate metadata key "${key}"`);
    metadata.set(key, readScalar(c, type, `metadata "${key}"`));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al) {
    if (al.type !== GgufValueType.UINT32) throw new QuantlabError("E_FORMAT", `${name}: general.alignment must be UINT32, got ${ggufValueTypeName(al.type)}`);
    // gguf.cpp: alignment must be a non-zero power of two
    if (al.value === 0 || (al.value & (al.value - 1)) !== 0) throw new QuantlabError("E_FORMAT", `${name}: general.alignment ${al.value} is not a power of two`);
    alignment = al.value;
  }

  const infos: Omit<GgufTensorInfo, "fileOffset">[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const tname = c.string(`tensor name #${i}`);
    if (names.has(tname)) throw new QuantlabError("E_FORMAT", `${name}: duplicate tensor name "${tname}"`);
    names.add(tname);
    const nDims = c.u32(`dimension count of tensor "${tname}"`);
    if (nDims > MAX_DIMS) throw new QuantlabError("E_FORMAT", `${name}: tensor "${tname}" has ${nDims} dimensions, above MAX_DIMS = ${MAX_DIMS}`);
    const ne: number[] = [];
    let nel = 1;
    for (let d = 0; d < nDims; d++) {
      const v = c.u64(`dimension ${d} of tensor "${tname}"`);
      if (v > BigInt(MAX_SAFE)) throw new QuantlabError("E_FORMAT", `${name}: tensor "${tname}" dimension ${d} is ${v}, too large`);
      ne.push(Number(v));
      nel *= Number(v);
      if (nel > MAX_SAFE) throw new QuantlabError("E_FORMAT", `${name}: tensor "${tname}" has more than 2^53 elements`);
    }
    const type = c.u32(`type of tensor "${tname}"`) as GgmlType;
    const ts = ggmlTypeTraits(type);
    if (!ts) throw new QuantlabError("E_UNSUPPORTED", `${name}: tensor "${tname}" has unknown ggml type id ${type}`);
    const offset = c.u64(`data offset of tensor "${tname}"`);
    if (offset > BigInt(MAX_SAFE)) throw new QuantlabError("E_FORMAT", `${name}: tensor "${tname}" data offset ${offset} is too large`);
    const off = Number(offset);
    if (off % alignment !== 0) throw new QuantlabError("E_FORMAT", `${name}: tensor "${tname}" data offset ${off} is not a multiple of the alignment ${alignment}`);
    const ne0 = ne.length > 0 ? ne[0]! : 1;
    const rowBytes = ggmlRowBytes(type, ne0);
    if (rowBytes === undefined) throw new QuantlabError("E_FORMAT", `${name}: tensor "${tname}" row length ${ne0} is not a multiple of the ${ts.name} block size ${ts.blockSize}`);
    let rows = 1;
    for (let d = 1; d < ne.length; d++) rows *= ne[d]!;
    const byteLength = rowBytes * rows;
    infos.push({ name: tname, shape: ne.slice().reverse(), type, offset: off, byteLength });
  }
  const dataOffset = alignUp(c.pos, alignment);
  const tensors = infos.map((t) => ({ ...t, fileOffset: dataOffset + t.offset }));
  return { version, metadata, tensors, alignment, dataOffset };
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** An opened GGUF: header parsed, tensor bytes read on demand. */
export class GgufFile implements GgufHeader {
  readonly version: number;
  readonly metadata: Map<string, GgufValue>;
  readonly tensors: GgufTensorInfo[];
  readonly alignment: number;
  readonly dataOffset: number;
  private readonly byName: Map<string, GgufTensorInfo>;

  constructor(readonly source: ByteSource, h: GgufHeader) {
    this.version = h.version;
    this.metadata = h.metadata;
    this.tensors = h.tensors;
    this.alignment = h.alignment;
    this.dataOffset = h.dataOffset;
    this.byName = new Map(h.tensors.map((t) => [t.name, t]));
  }

  get name(): string {
    return this.source.name;
  }

  tensor(name: string): GgufTensorInfo | undefined {
    return this.byName.get(name);
  }

  /** Metadata value (unwrapped), or undefined. */
  get(key: string): GgufValue["value"] | undefined {
    return this.metadata.get(key)?.value;
  }

  /** The tensor's raw bytes (ggml layout). */
  async readTensorBytes(info: GgufTensorInfo | string): Promise<Uint8Array> {
    const t = this.resolve(info);
    return this.source.read(t.fileOffset, t.byteLength);
  }

  /** Reads the tensor's raw bytes into `dst` (e.g. a view on WebAssembly memory); `dst.length` must equal its byte length. */
  async readTensorInto(info: GgufTensorInfo | string, dst: Uint8Array): Promise<void> {
    const t = this.resolve(info);
    if (dst.length !== t.byteLength) throw new QuantlabError("E_ARG", `${this.name}: tensor "${t.name}" has ${t.byteLength} bytes, destination has ${dst.length}`);
    await this.source.readInto(t.fileOffset, dst);
  }

  private resolve(info: GgufTensorInfo | string): GgufTensorInfo {
    if (typeof info !== "string") return info;
    const t = this.byName.get(info);
    if (!t) throw new QuantlabError("E_FORMAT", `${this.name}: no tensor named "${info}"`);
    return t;
  }

  async close(): Promise<void> {
    await this.source.close?.();
  }
}

/**
 * Initial prefix read for the header, doubled until the header fits. Small, because whatever the first
 * read takes beyond the header is tensor data read for nothing (a model loads lazily: `info` and a
 * one-tensor command should read little more than the header); big vocabularies cost a few more reads.
 */
const FIRST_READ_BYTES = 64 << 10;

/**
 * Reads the header of a GGUF (metadata and tensor infos) and checks that every tensor's bytes lie inside
 * the file, without reading tensor data.
 */
export async function openGguf(source: ByteSource): Promise<GgufFile> {
  let prefix = await source.read(0, Math.min(source.size, FIRST_READ_BYTES));
  for (;;) {
    try {
      const h = parseHeader(new Cursor(prefix, source.name, source.size));
      checkDataExtent(source, h);
      return new GgufFile(source, h);
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
      if (e.upTo > MAX_HEADER_BYTES) throw new QuantlabError("E_FORMAT", `${source.name}: GGUF header larger than MAX_HEADER_BYTES = ${MAX_HEADER_BYTES}`);
      // read only the bytes not held yet
      const want = Math.min(source.size, Math.max(prefix.length * 2, e.upTo));
      const grown = new Uint8Array(want);
      grown.set(prefix);
      grown.set(await source.read(prefix.length, want - prefix.length), prefix.length);
      prefix = grown;
    }
  }
}

function checkDataExtent(source: ByteSource, h: GgufHeader): void {
  // Tensors must not overlap (gguf.cpp checks that offsets are consecutive; files from other writers may reorder,
  // so we check by sorted ranges) and must lie inside the file.
  const sorted = [...h.tensors].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const t of sorted) {
    if (t.offset < end) throw new QuantlabError("E_FORMAT", `${source.name}: tensor "${t.name}" data (offset ${t.offset}) overlaps the previous tensor`);
    end = t.offset + t.byteLength;
    if (t.fileOffset + t.byteLength > source.size) {
      throw new QuantlabError("E_FORMAT", `${source.name}: truncated tensor data: tensor "${t.name}" needs bytes ${t.fileOffset}..${t.fileOffset + t.byteLength} but the file has ${source.size}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Typed metadata access

export function metaString(f: { name: string; metadata: Map<string, GgufValue> }, key: string): string | undefined {
  const v = f.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.STRING) throw new QuantlabError("E_FORMAT", `${f.name}: metadata "${key}" should be a string, got ${ggufValueTypeName(v.type)}`);
  return v.value;
}

/** Any integer or float scalar as a JS number. */
export function metaNumber(f: { name: string; metadata: Map<string, GgufValue> }, key: string): number | undefined {
  const v = f.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type === GgufValueType.UINT64 || v.type === GgufValueType.INT64) return Number(v.value);
  if (v.type === GgufValueType.STRING || v.type === GgufValueType.ARRAY || v.type === GgufValueType.BOOL) {
    throw new QuantlabError("E_FORMAT", `${f.name}: metadata "${key}" should be a number, got ${ggufValueTypeName(v.type)}`);
  }
  return Number(v.value);
}

export function metaBool(f: { name: string; metadata: Map<string, GgufValue> }, key: string): boolean | undefined {
  const v = f.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.BOOL) throw new QuantlabError("E_FORMAT", `${f.name}: metadata "${key}" should be a bool, got ${ggufValueTypeName(v.type)}`);
  return v.value;
}

export function metaArray(f: { name: string; metadata: Map<string, GgufValue> }, key: string, itemType?: GgufValueType): GgufArray | undefined {
  const v = f.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.ARRAY) throw new QuantlabError("E_FORMAT", `${f.name}: metadata "${key}" should be an array, got ${ggufValueTypeName(v.type)}`);
  if (itemType !== undefined && v.value.itemType !== itemType) {
    throw new QuantlabError("E_FORMAT", `${f.name}: metadata "${key}" should be an array of ${ggufValueTypeName(itemType)}, got ${ggufValueTypeName(v.value.itemType)}`);
  }
  return v.value;
}

/** Plain-JSON view of metadata for reports (`info --json`): bigints as numbers, long arrays summarized. */
export function metadataToJson(md: Map<string, GgufValue>, maxArray = 16): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const arr = (a: GgufArray): unknown => {
    const n = a.items.length;
    const head = Array.from(a.items as ArrayLike<unknown>).slice(0, maxArray).map((x) => (typeof x === "bigint" ? Number(x) : (x as GgufArray).items ? arr(x as GgufArray) : x));
    return n > maxArray ? { type: ggufValueTypeName(a.itemType), length: n, head } : head;
  };
  for (const [k, v] of md) {
    out[k] = v.type === GgufValueType.ARRAY ? arr(v.value) : typeof v.value === "bigint" ? Number(v.value) : v.value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Writer

/** Where writers put bytes: a file (io/node), memory, or a network stream. Chunks may be reused after write resolves. */
export interface ByteSink {
  write(chunk: Uint8Array): Promise<void>;
}

/** Collects everything in memory (tests, browser downloads). */
export class MemorySink implements ByteSink {
  private chunks: Uint8Array[] = [];
  length = 0;
  async write(chunk: Uint8Array): Promise<void> {
    this.chunks.push(chunk.slice());
    this.length += chunk.length;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) { out.set(c, o); o += c.length; }
    return out;
  }
}

/** Growable little-endian byte builder for the header. */
class Builder {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.length));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }
  u8(v: number): void { this.ensure(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.ensure(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.ensure(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.ensure(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.ensure(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.ensure(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.ensure(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.ensure(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: bigint | number): void {
    this.ensure(8);
    // a safe non-negative integer as two u32 words (no BigInt per string length); anything else as before
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) {
      this.view.setUint32(this.length, v >>> 0, true);
      this.view.setUint32(this.length + 4, Math.floor(v / 2 ** 32), true);
    } else this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: bigint): void { this.ensure(8); this.view.setBigInt64(this.length, v, true); this.length += 8; }
  bytes(b: Uint8Array): void { this.ensure(b.length); this.buf.set(b, this.length); this.length += b.length; }
  string(s: string): void {
    // UTF-8 straight into the buffer (at most 3 bytes per UTF-16 unit), the length written in front after
    this.ensure(8 + 3 * s.length);
    const { written } = utf8Enc.encodeInto(s, this.buf.subarray(this.length + 8));
    this.u64(written);
    this.length += written;
  }
  zeros(n: number): void { this.ensure(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }
  take(): Uint8Array { return this.buf.subarray(0, this.length); }
}

/** A Builder that keeps nothing: writeScalar through it only runs the range checks (setKV), so a 128 K-token
 * vocabulary is not encoded twice. */
class CheckBuilder extends Builder {
  override u8(): void {}
  override i8(): void {}
  override u16(): void {}
  override i16(): void {}
  override u32(): void {}
  override i32(): void {}
  override f32(): void {}
  override f64(): void {}
  override u64(v: bigint | number): void { if (typeof v !== "bigint") BigInt(v); } // BigInt's own errors, as when written
  override i64(): void {}
  override bytes(): void {}
  override string(): void {}
  override zeros(): void {}
}

function writeScalar(b: Builder, v: GgufValue, key: string): void {
  switch (v.type) {
    case GgufValueType.UINT8: b.u8(checkInt(v.value, 0, 0xff, key)); break;
    case GgufValueType.INT8: b.i8(checkInt(v.value, -0x80, 0x7f, key)); break;
    case GgufValueType.UINT16: b.u16(checkInt(v.value, 0, 0xffff, key)); break;
    case GgufValueType.INT16: b.i16(checkInt(v.value, -0x8000, 0x7fff, key)); break;
    case GgufValueType.UINT32: b.u32(checkInt(v.value, 0, 0xffffffff, key)); break;
    case GgufValueType.INT32: b.i32(checkInt(v.value, -0x80000000, 0x7fffffff, key)); break;
    case GgufValueType.FLOAT32: b.f32(v.value); break;
    case GgufValueType.FLOAT64: b.f64(v.value); break;
    case GgufValueType.UINT64: b.u64(v.value); break;
    case GgufValueType.INT64: b.i64(v.value); break;
    case GgufValueType.BOOL: b.u8(v.value ? 1 : 0); break;
    case GgufValueType.STRING: b.string(v.value); break;
    case GgufValueType.ARRAY: writeArray(b, v.value, key); break;
    default: throw new QuantlabError("E_ARG", `GGUF metadata "${key}": unknown value type ${(v as { type: number }).type}`);
  }
}

function checkInt(v: number, lo: number, hi: number, key: string): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new QuantlabError("E_ARG", `GGUF metadata "${key}": ${v} does not fit its integer type [${lo}, ${hi}]`);
  return v;
}

function writeArray(b: Builder, a: GgufArray, key: string): void {
  b.u32(a.itemType);
  b.u64(a.items.length);
  const items = a.items;
  switch (a.itemType) {
    case GgufValueType.STRING: for (const s of items as string[]) b.string(s); return;
    case GgufValueType.BOOL: for (const x of items as boolean[]) b.u8(x ? 1 : 0); return;
    case GgufValueType.ARRAY: for (const x of items as GgufArray[]) writeArray(b, x, key); return;
    case GgufValueType.UINT64: for (const x of items as BigUint64Array) b.u64(x); return;
    case GgufValueType.INT64: for (const x of items as BigInt64Array) b.i64(x); return;
    default:
      for (const x of items as ArrayLike<number> as number[]) writeScalar(b, { type: a.itemType as GgufNumberType, value: x }, key);
  }
}

export interface GgufTensorSpec {
  name: string;
  /** outermost first */
  shape: readonly number[];
  type: GgmlType;
}

type WriterState = "kv" | "data" | "done";

/**
 * Streams a GGUF v3 file in section order: metadata (`setKV`, any order) and tensor declarations
 * (`addTensor`), then `writeHeader()`, then every declared tensor's bytes in declaration order
 * (`writeTensorData`), then `finish()`. Out-of-order calls, missing or extra data are errors, so a file
 * we write is always complete.
 */
export class GgufWriter {
  private state: WriterState = "kv";
  private readonly kv = new Map<string, GgufValue>();
  private readonly specs: (GgufTensorSpec & { byteLength: number; offset: number })[] = [];
  private next = 0;
  private written = 0;
  private dataBytes = 0;
  alignment = GGUF_DEFAULT_ALIGNMENT;

  constructor(private readonly sink: ByteSink, readonly name = "GGUF output") {}

  setKV(key: string, value: GgufValue): this {
    if (this.state !== "kv") throw new QuantlabError("E_INTERNAL", `${this.name}: metadata "${key}" set after the header was written`);
    if (key === "general.alignment") {
      if (value.type !== GgufValueType.UINT32 || value.value === 0 || (value.value & (value.value - 1)) !== 0) {
        throw new QuantlabError("E_ARG", `${this.name}: general.alignment must be a UINT32 power of two`);
      }
      this.alignment = value.value;
    }
    writeScalar(new CheckBuilder(), value, key); // validates ranges now, so the error points at the caller
    this.kv.set(key, value);
    return this;
  }

  addTensor(spec: GgufTensorSpec): this {
    if (this.state !== "kv") throw new QuantlabError("E_INTERNAL", `${this.name}: tensor "${spec.name}" declared after the header was written`);
    if (this.specs.some((s) => s.name === spec.name)) throw new QuantlabError("E_ARG", `${this.name}: duplicate tensor name "${spec.name}"`);
    if (spec.shape.length > MAX_DIMS) throw new QuantlabError("E_ARG", `${this.name}: tensor "${spec.name}" has ${spec.shape.length} dimensions, GGUF allows ${MAX_DIMS}`);
    const byteLength = tensorByteLength(spec.type, spec.shape, `${this.name}: tensor "${spec.name}"`);
    this.specs.push({ ...spec, shape: [...spec.shape], byteLength, offset: 0 });
    return this;
  }

  async writeHeader(): Promise<void> {
    if (this.state !== "kv") throw new QuantlabError("E_INTERNAL", `${this.name}: header written twice`);
    const b = new Builder();
    b.u32(GGUF_MAGIC);
    b.u32(3);
    b.u64(this.specs.length);
    b.u64(this.kv.size);
    for (const [k, v] of this.kv) {
      b.string(k);
      b.u32(v.type);
      writeScalar(b, v, k);
    }
    let off = 0;
    for (const s of this.specs) {
      s.offset = off;
      off = alignUp(off + s.byteLength, this.alignment);
      b.string(s.name);
      b.u32(Math.max(s.shape.length, 1));
      if (s.shape.length === 0) b.u64(1);
      for (let d = s.shape.length - 1; d >= 0; d--) b.u64(s.shape[d]!);
      b.u32(s.type);
      b.u64(s.offset);
    }
    b.zeros(alignUp(b.length, this.alignment) - b.length);
    this.dataBytes = 0;
    this.state = "data";
    await this.sink.write(b.take());
    if (this.specs.length === 0) this.state = "done";
  }

  /** Bytes of the next tensor (in declaration order); may come in several chunks. */
  async writeTensorData(name: string, bytes: Uint8Array): Promise<void> {
    if (this.state !== "data") throw new QuantlabError("E_INTERNAL", `${this.name}: tensor data for "${name}" written ${this.state === "kv" ? "before the header" : "after the last tensor"}`);
    const s = this.specs[this.next]!;
    if (s.name !== name) throw new QuantlabError("E_INTERNAL", `${this.name}: expected data for tensor "${s.name}", got "${name}" (tensors must be written in declaration order)`);
    if (this.written + bytes.length > s.byteLength) {
      throw new QuantlabError("E_FORMAT", `${this.name}: tensor "${name}" (${ggmlTypeName(s.type)} [${s.shape.join(", ")}]) needs ${s.byteLength} bytes, got ${this.written + bytes.length}`);
    }
    await this.sink.write(bytes);
    this.written += bytes.length;
    if (this.written === s.byteLength) {
      const end = s.offset + s.byteLength;
      const pad = (this.next + 1 < this.specs.length ? this.specs[this.next + 1]!.offset : alignUp(end, this.alignment)) - end;
      if (pad > 0) await this.sink.write(new Uint8Array(pad));
      this.written = 0;
      this.next++;
      if (this.next === this.specs.length) this.state = "done";
    }
  }

  /** Checks that every declared tensor got all its bytes. */
  finish(): void {
    if (this.state === "kv") throw new QuantlabError("E_INTERNAL", `${this.name}: finished before the header was written`);
    if (this.state !== "done") {
      const s = this.specs[this.next]!;
      throw new QuantlabError("E_INTERNAL", `${this.name}: tensor "${s.name}" got ${this.written} of ${s.byteLength} bytes; ${this.specs.length - this.next} tensors incomplete`);
    }
  }
}

/** Bytes of a tensor of `type` and `shape` (outermost first); the innermost dim must be a whole number of blocks. */
export function tensorByteLength(type: GgmlType, shape: readonly number[], what: string): number {
  const ts = ggmlTypeTraits(type);
  if (!ts) throw new QuantlabError("E_UNSUPPORTED", `${what}: unknown ggml type id ${type}`);
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  const rowBytes = ggmlRowBytes(type, cols);
  if (rowBytes === undefined) throw new QuantlabError("E_ARG", `${what}: row length ${cols} is not a multiple of the ${ts.name} block size ${ts.blockSize}`);
  let rows = 1;
  for (let i = 0; i < shape.length - 1; i++) rows *= shape[i]!;
  return rows * rowBytes;
}
