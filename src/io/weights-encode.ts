/**
 * Weight → bytes of a target storage type, for writers (GGUF, safetensors) and `convert --type`.
 *
 * F32/F16/BF16 are encoded here; ggml block types (Q8_0, Q4_K, …) by the `GgmlEncoder` the caller
 * passes (ggml/encoder.ts: the TypeScript reference by default, the WASM backend's threaded encoder in
 * the CLI; same bytes), without an importance matrix (`quantize` presets and imatrix live with the ggml
 * work). F32 and F16 sources go to the encoder as they are (F16 without an f32 copy of the tensor); any
 * other ggml weight is decoded through ggml's codecs first.
 */
import { QuantlabError } from "../core/errors.js";
import { f32ArrayToBf16, f32ArrayToF16 } from "../core/f16.js";
import { GgmlType, ggmlRowBytes, ggmlTypeByName, ggmlTypeName } from "../ggml/types.js";
import { GGML_CODEC_TYPES, ggmlRowFit, refGgmlEncoder, type GgmlEncoder } from "../ggml/index.js";
import { dequantizeWeight, rowReader } from "../kernels/dequantize.js";
import { Tensor } from "../core/tensor.js";
import { yieldToEventLoop } from "../core/progress.js";
import { describeElement, findNonFinite } from "../model/finite.js";
import { weightShape, type Weight } from "../core/weight.js";

/** Types a tensor can be stored as in a file: every ggml codec except the activation-only Q8_1 and Q8_K. */
const STORAGE_TYPES: readonly GgmlType[] = GGML_CODEC_TYPES.filter((t) => t !== GgmlType.Q8_1 && t !== GgmlType.Q8_K);

const FLOAT_TYPES = new Set([GgmlType.F32, GgmlType.F16, GgmlType.BF16]);

/** Target types `convert --type` accepts: the float types, then every ggml block type with a codec. */
export function encodableTypes(): GgmlType[] {
  return [...FLOAT_TYPES, ...STORAGE_TYPES.filter((t) => !FLOAT_TYPES.has(t))];
}

/** Parses a `--type` value (case-insensitive ggml type name) into a type we can encode. */
export function parseOutputType(name: string): GgmlType {
  const t = ggmlTypeByName(name);
  const ok = encodableTypes();
  if (t === undefined || !ok.includes(t)) {
    throw new QuantlabError("E_ARG", `--type ${name}: not a type we can write (available: ${ok.map(ggmlTypeName).join(", ")})`);
  }
  return t;
}

/** The storage type a weight has now (dense f32/f16/bf16, raw ggml blocks; others are f32 once dequantized). */
export function currentGgmlType(w: Weight, name: string): GgmlType {
  if (w.kind === "ggml") return w.type;
  if (w.kind === "quant") return GgmlType.F32;
  switch (w.tensor.dtype) {
    case "f32": return GgmlType.F32;
    case "f16": return GgmlType.F16;
    case "bf16": return GgmlType.BF16;
    case "i8": return GgmlType.I8;
    case "i16": return GgmlType.I16;
    case "i32": return GgmlType.I32;
    default: throw new QuantlabError("E_UNSUPPORTED", `${name}: dtype ${w.tensor.dtype} has no ggml type`);
  }
}

/** Raw bytes of a weight in its own storage type (no conversion, no copy when possible). */
export function rawBytes(w: Weight, name: string): { type: GgmlType; data: Uint8Array } {
  if (w.kind === "ggml") return { type: w.type, data: w.data };
  if (w.kind === "quant") {
    const f = w.q.dequantize();
    return { type: GgmlType.F32, data: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) };
  }
  const d = w.tensor.data;
  return { type: currentGgmlType(w, name), data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) };
}

/**
 * Chooses the type a tensor is written as when the user asked for `target`: 1-D tensors (norms, rope
 * factors) stay F32 as llama.cpp's converters keep them; a block type whose block does not divide the
 * row falls back to F16 (reported by the caller).
 */
export function chooseType(shape: readonly number[], target: GgmlType | undefined, current: GgmlType): { type: GgmlType; fallback?: string } {
  if (target === undefined) return { type: current };
  if (shape.length < 2) return { type: current === GgmlType.F16 || current === GgmlType.BF16 ? GgmlType.F32 : current };
  const cols = shape[shape.length - 1]!;
  if (ggmlRowBytes(target, cols) === undefined) {
    // llama.cpp's fall-back chain (Q4_K → Q5_0, Q6_K → Q8_0, …, then F16), as llama-quantize
    const fit = ggmlRowFit(target, cols);
    return { type: fit.use, fallback: fit.reason };
  }
  return { type: target };
}

/**
 * Encodes a weight as `type`: F32/F16/BF16 here, block types through `encoder`. With `checkOverflow`
 * (the writers' default, off under allowNonFinite), a finite source that the encoding turns into
 * Inf/NaN — an f16 value past 65504, a block scale past f16's range — is an error naming the element,
 * not a silently broken file.
 */
export interface OverflowCheck {
  where: string;
  tensor: string;
  /** the source's largest magnitude when known (model/finite.ts scanWeight): up to OVERFLOW_FREE no check is needed */
  maxAbs?: number;
  rowOffset?: number;
}

/**
 * Up to this magnitude no encoding can overflow, so the decode check is skipped: f16 holds up to
 * 65504 (and rounds nothing at or below it to Inf), and every f16 field of a ggml block is at most the
 * block's largest |x| (ggml-quants.c: d = amax / nmax with nmax ≥ 1 — TQ1_0/TQ2_0 have d = amax;
 * least-squares refinements give Σ l·x / Σ l² ≤ amax for integer levels |l| ≥ 1; k-quant super-block
 * scales are sub-scales / 63 or less; mins are at most amax). Every F16 source satisfies it.
 */
const OVERFLOW_FREE = 65504;

export function encodeWeight(w: Weight, name: string, type: GgmlType, encoder: GgmlEncoder = refGgmlEncoder, checkOverflow?: OverflowCheck): Uint8Array {
  const out = encodeWeightRaw(w, name, type, encoder);
  if (checkOverflow && !(checkOverflow.maxAbs !== undefined && checkOverflow.maxAbs <= OVERFLOW_FREE) && type !== GgmlType.F32 && currentGgmlType(w, name) !== type) {
    const shape = weightShape(w);
    const encoded: Weight = FLOAT_TYPES.has(type)
      ? { kind: "dense", tensor: new Tensor(type === GgmlType.F16 ? "f16" : "bf16", shape, new Uint16Array(out.buffer, out.byteOffset, out.byteLength / 2)) }
      : { kind: "ggml", type, shape, data: out };
    const bad = findNonFinite(encoded, name);
    if (bad) {
      const cols = shape[shape.length - 1] ?? 1;
      const src = new Float32Array(cols);
      rowReader(w, name)(Math.floor(bad.index / cols), src, 0);
      const at = bad.index + (checkOverflow.rowOffset ?? 0) * cols;
      throw new QuantlabError("E_VALUE", `${checkOverflow.where}: ${describeElement(checkOverflow.tensor, shape, at)} is ${src[bad.index % cols]}, which ${ggmlTypeName(type)} cannot hold: it would be written as ${bad.value} (write F32, or scale the weights)`);
    }
  }
  return out;
}

/**
 * Source elements per chunk when a tensor is encoded to a ggml block type: a tensor of 10⁸ weights is
 * encoded in pieces, its bytes stream out piece by piece, and the event loop turns between them, so a
 * Ctrl-C during a long encode is handled within one piece (io/node/atomic.ts), not after the tensor.
 */
const CHUNK_ELEMENTS = 1 << 22;

/** Rows [r0, r1) of a dense or ggml weight as a weight of its own (views, no copy); undefined for other kinds. */
function rowSlice(w: Weight, r0: number, r1: number): Weight | undefined {
  const shape = weightShape(w);
  if (shape.length !== 2) return undefined;
  const cols = shape[1]!;
  if (w.kind === "dense") {
    const d = w.tensor.data;
    return { kind: "dense", tensor: new Tensor(w.tensor.dtype, [r1 - r0, cols], d.subarray(r0 * cols, r1 * cols)) };
  }
  if (w.kind === "ggml") {
    const rowBytes = ggmlRowBytes(w.type, cols);
    if (rowBytes === undefined) return undefined;
    return { kind: "ggml", type: w.type, shape: [r1 - r0, cols], data: w.data.subarray(r0 * rowBytes, r1 * rowBytes) };
  }
  return undefined;
}

/**
 * encodeWeight in row chunks of about CHUNK_ELEMENTS source elements (block types; one piece otherwise),
 * each handed to `emit` as it is made; returns the bytes written. Same bytes as encodeWeight: every ggml
 * block type encodes rows independently.
 */
export async function encodeWeightChunked(w: Weight, name: string, type: GgmlType, encoder: GgmlEncoder, checkOverflow: OverflowCheck | undefined, emit: (bytes: Uint8Array) => Promise<void>): Promise<number> {
  const shape = weightShape(w);
  const rows = shape.length === 2 ? shape[0]! : 1;
  const cols = shape.length === 2 ? shape[1]! : 1;
  const step = Math.max(1, Math.floor(CHUNK_ELEMENTS / Math.max(1, cols)));
  if (FLOAT_TYPES.has(type) || rows <= step || currentGgmlType(w, name) === type || rowSlice(w, 0, 1) === undefined) {
    const b = encodeWeight(w, name, type, encoder, checkOverflow);
    await emit(b);
    return b.length;
  }
  let total = 0;
  for (let r0 = 0; r0 < rows; r0 += step) {
    const r1 = Math.min(rows, r0 + step);
    const b = encodeWeight(rowSlice(w, r0, r1)!, name, type, encoder, checkOverflow && { ...checkOverflow, rowOffset: r0 });
    await emit(b);
    total += b.length;
    await yieldToEventLoop();
  }
  return total;
}

function encodeWeightRaw(w: Weight, name: string, type: GgmlType, encoder: GgmlEncoder): Uint8Array {
  const raw = rawBytes(w, name);
  if (raw.type === type) return raw.data;
  const shape = weightShape(w);
  const cols = shape[shape.length - 1] ?? 1;
  if (!FLOAT_TYPES.has(type)) {
    if (!STORAGE_TYPES.includes(type)) throw new QuantlabError("E_UNSUPPORTED", `${name}: no encoder for ggml type ${ggmlTypeName(type)}`);
    if (ggmlRowBytes(type, cols) === undefined) throw new QuantlabError("E_ARG", `${name}: shape [${shape.join(", ")}]: row length ${cols} is not a multiple of the ${ggmlTypeName(type)} block size`);
    const n = shape.reduce((a, b) => a * b, 1);
    const rows = n / cols;
    const d = raw.data;
    // F16 and F32 sources go to the encoder as they are (F16: no f32 copy of the tensor)
    if (raw.type === GgmlType.F16 && d.byteOffset % 2 === 0) return encoder.encodeRows({ type, rows, cols, f16: new Uint16Array(d.buffer, d.byteOffset, n), name });
    if (raw.type === GgmlType.F32 && d.byteOffset % 4 === 0) return encoder.encodeRows({ type, rows, cols, x: new Float32Array(d.buffer, d.byteOffset, n), name });
    return encoder.encodeRows({ type, rows, cols, x: decode(w, name).data, name });
  }
  const { data } = decode(w, name);
  switch (type) {
    case GgmlType.F32: return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    case GgmlType.F16: { const h = f32ArrayToF16(data); return new Uint8Array(h.buffer); }
    default: { const h = f32ArrayToBf16(data); return new Uint8Array(h.buffer); }
  }
}

/** dequantizeWeight, with the tensor's name on errors (decoders name neither the file nor the tensor). */
function decode(w: Weight, name: string): ReturnType<typeof dequantizeWeight> {
  try {
    return dequantizeWeight(w, name);
  } catch (e) {
    if (e instanceof QuantlabError && !e.message.startsWith(name)) throw new QuantlabError(e.code, `${name}: ${e.message}`, { cause: e });
    throw e;
  }
}
