/**
 * llama2.c checkpoints and tokenizers, read through a ByteSource (isomorphic: files, buffers, HTTP).
 *
 * Legacy checkpoint (karpathy/llama2.c run.c `read_checkpoint`, export.py `legacy_export`):
 *   7 × int32 LE header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *   (vocab_size < 0 means the classifier is NOT shared with the token embedding), then f32 arrays:
 *   token_embedding (vocab, dim), rms_att (L, dim), wq (L, nH·hs, dim), wk (L, nKv·hs, dim),
 *   wv (L, nKv·hs, dim), wo (L, dim, nH·hs), rms_ffn (L, dim), w1 (L, hidden, dim),
 *   w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
 *   [freq_cis_real (seq_len, hs/2), freq_cis_imag (seq_len, hs/2)]  — written by the legacy exporter
 *   (stories15M…, our stories3M) and absent in some files (stories260K); run.c skips them blindly,
 *   we decide from the file size — then [wcls (vocab, dim)] when not shared.
 *
 * Version 2 "ak42" Q8_0 export (export.py `version2_export`, read by runq.c): uint32 magic 0x616b3432,
 *   int32 version 2, the 7 ints (vocab_size positive), uint8 shared_classifier, int32 group_size,
 *   zero padding to 256 bytes; then f32 rms_att (L, dim), rms_ffn (L, dim), rms_final (dim); then Q8
 *   tensors, each int8 q[n] followed by f32 scales[n / group_size]: token_embedding, wq[L], wk[L],
 *   wv[L], wo[L], w1[L], w2[L], w3[L], [wcls]. Groups run over the flattened tensor. We dequantize to
 *   f32 when a tensor is first read (the exact stored values); the packed form is not a kernel layout of ours.
 *
 * Tokenizer (run.c `build_tokenizer`): int32 max_token_length, then per token f32 score, int32 len,
 * len bytes. The count is not stored: it is the model's vocab_size, so we read to the end of the file
 * and compare.
 */
import { QuantlabError } from "../core/errors.js";
import { MAX_DIM, MAX_HEADS, MAX_HIDDEN, MAX_LAYERS, MAX_SEQ_LEN, MAX_VOCAB } from "../core/limits.js";
import { Tensor, viewAs } from "../core/tensor.js";
import type { LazyData } from "../core/lazy.js";
import type { ModelConfig } from "../model/config.js";
import { TensorNames } from "../model/config.js";
import { Llama2cTokenizer } from "../model/tokenizers/llama2c.js";
import type { ByteSource } from "./source.js";
import { TensorStore } from "./lazy.js";
import type { Weight } from "../core/weight.js";
import type { Model } from "../model/weights.js";

/** "ak42" read as a little-endian uint32 (export.py: struct.pack('I', 0x616b3432)) */
export const LLAMA2C_V2_MAGIC = 0x616b3432;
const LEGACY_HEADER_BYTES = 28;
const V2_HEADER_BYTES = 256;

// Limits on header values: core/limits.ts's, far above any llama2.c model (Llama 2 70B: dim 8192,
// hidden 28672, 80 layers, 64 heads, vocab 32000, seq_len 4096) yet small enough that the products
// below (layers × hidden × dim ≤ 2^49 floats) stay exact doubles; the file size then pins them exactly.
/** tok.bin entries: run.c reads `len` bytes into a malloc'd buffer; no real piece is longer than this */
const MAX_PIECE_BYTES = 1 << 16;

export interface Llama2cHeader {
  /** 1 = legacy float32 checkpoint, 2 = "ak42" Q8_0 export */
  version: 1 | 2;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
  /** Q8_0 group size (version 2 only) */
  groupSize?: number;
  headerBytes: number;
}

export interface Llama2cLayout {
  /** floats of each tensor in file order; offsets are in bytes from the file start */
  offsets: Record<Llama2cArray, number>;
  /** present in the file (legacy exporter) */
  hasFreqCis: boolean;
  /** bytes the file must have */
  expectedBytes: number;
}

type Llama2cArray =
  | "token_embedding" | "rms_att" | "wq" | "wk" | "wv" | "wo" | "rms_ffn" | "w1" | "w2" | "w3"
  | "rms_final" | "freq_cis" | "wcls";

function checkInt(name: string, file: string, v: number, min: number, max: number, why: string): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c header: ${name} = ${v} (expected ${min}..${max}; ${why})`);
  }
}

/** Parses and validates the header. `bytes` holds at least the first 28 bytes (256 for version 2). */
export function parseLlama2cHeader(bytes: Uint8Array, file: string): Llama2cHeader {
  if (bytes.length < LEGACY_HEADER_BYTES) {
    throw new QuantlabError("E_FORMAT", `${file}: truncated: ${bytes.length} bytes, a llama2.c header needs ${LEGACY_HEADER_BYTES}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  let version: 1 | 2 = 1;
  if (dv.getUint32(0, true) === LLAMA2C_V2_MAGIC) {
    if (bytes.length < V2_HEADER_BYTES) {
      throw new QuantlabError("E_FORMAT", `${file}: truncated: ${bytes.length} bytes, a llama2.c version-2 header needs ${V2_HEADER_BYTES}`);
    }
    const v = dv.getInt32(4, true);
    if (v !== 2) throw new QuantlabError("E_UNSUPPORTED", `${file}: llama2.c "ak42" export version ${v} is not supported (only version 2, Q8_0)`);
    version = 2;
    o = 8;
  }
  const ints: number[] = [];
  for (let i = 0; i < 7; i++) ints.push(dv.getInt32(o + 4 * i, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = ints as [number, number, number, number, number, number, number];
  checkInt("dim", file, dim, 1, MAX_DIM, "model width");
  checkInt("hidden_dim", file, hiddenDim, 1, MAX_HIDDEN, "FFN width");
  checkInt("n_layers", file, nLayers, 1, MAX_LAYERS, "layer count");
  checkInt("n_heads", file, nHeads, 1, MAX_HEADS, "attention heads");
  checkInt("n_kv_heads", file, nKvHeads, 1, nHeads, "at most n_heads");
  checkInt("|vocab_size|", file, Math.abs(rawVocab), 1, MAX_VOCAB, "vocabulary size");
  checkInt("seq_len", file, seqLen, 1, MAX_SEQ_LEN, "context length");
  if (dim % nHeads !== 0) throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c header: dim ${dim} is not a multiple of n_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c header: n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  const h: Llama2cHeader = {
    version, dim, hiddenDim, nLayers, nHeads, nKvHeads,
    vocabSize: Math.abs(rawVocab),
    seqLen,
    sharedClassifier: rawVocab > 0,
    headerBytes: version === 2 ? V2_HEADER_BYTES : LEGACY_HEADER_BYTES,
  };
  if (version === 2) {
    if (rawVocab < 0) throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c version-2 header: negative vocab_size ${rawVocab}`);
    const shared = bytes[o + 28]!;
    if (shared > 1) throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c version-2 header: shared_classifier = ${shared} (expected 0 or 1)`);
    h.sharedClassifier = shared === 1;
    const gs = dv.getInt32(o + 29, true);
    checkInt("group_size", file, gs, 1, 1 << 16, "Q8_0 group size");
    h.groupSize = gs;
  }
  return h;
}

/** Byte offsets of every array for a file of `fileSize` bytes; errors when the size cannot match. */
export function llama2cLayout(h: Llama2cHeader, fileSize: number, file: string): Llama2cLayout {
  const hs = h.dim / h.nHeads;
  const qDim = h.nHeads * hs;
  const kvDim = h.nKvHeads * hs;
  const L = h.nLayers;
  // element counts in file order
  const counts: [Llama2cArray, number][] = [
    ["token_embedding", h.vocabSize * h.dim],
    ["rms_att", L * h.dim],
    ["wq", L * qDim * h.dim],
    ["wk", L * kvDim * h.dim],
    ["wv", L * kvDim * h.dim],
    ["wo", L * h.dim * qDim],
    ["rms_ffn", L * h.dim],
    ["w1", L * h.hiddenDim * h.dim],
    ["w2", L * h.dim * h.hiddenDim],
    ["w3", L * h.hiddenDim * h.dim],
    ["rms_final", h.dim],
  ];
  const cls = h.vocabSize * h.dim;
  const freq = h.seqLen * hs; // real + imag, (seq_len, hs/2) each
  const offsets = {} as Record<Llama2cArray, number>;
  if (h.version === 2) {
    // f32 norms first, then Q8 tensors (int8 q + f32 scale per group) in the order below
    const gs = h.groupSize!;
    let o = h.headerBytes;
    for (const name of ["rms_att", "rms_ffn", "rms_final"] as const) {
      offsets[name] = o;
      o += 4 * counts.find((c) => c[0] === name)![1];
    }
    const qOrder: Llama2cArray[] = ["token_embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3"];
    if (!h.sharedClassifier) qOrder.push("wcls");
    for (const name of qOrder) {
      const n = name === "wcls" ? cls : counts.find((c) => c[0] === name)![1];
      const per = name === "token_embedding" || name === "wcls" ? n : n / L;
      if (per % gs !== 0) {
        throw new QuantlabError("E_FORMAT", `${file}: llama2.c version-2 tensor ${name} has ${per} values, not a multiple of group_size ${gs}`);
      }
      offsets[name] = o;
      o += n + 4 * (n / gs);
    }
    offsets.freq_cis = o;
    if (o !== fileSize) throw sizeError(file, fileSize, [o]);
    return { offsets, hasFreqCis: false, expectedBytes: o };
  }
  let o = h.headerBytes;
  for (const [name, n] of counts) {
    offsets[name] = o;
    o += 4 * n;
  }
  const clsBytes = h.sharedClassifier ? 0 : 4 * cls;
  const without = o + clsBytes;
  const withFreq = o + 4 * freq + clsBytes;
  let hasFreqCis: boolean;
  if (fileSize === withFreq) hasFreqCis = true;
  else if (fileSize === without) hasFreqCis = false;
  else throw sizeError(file, fileSize, [without, withFreq]);
  offsets.freq_cis = o;
  offsets.wcls = hasFreqCis ? o + 4 * freq : o;
  return { offsets, hasFreqCis, expectedBytes: fileSize };
}

function sizeError(file: string, size: number, expected: number[]): QuantlabError {
  const min = Math.min(...expected);
  if (size < min) {
    return new QuantlabError("E_FORMAT", `${file}: truncated: the llama2.c header implies at least ${min} bytes but the file has ${size}`);
  }
  return new QuantlabError(
    "E_FORMAT",
    `${file}: size ${size} bytes does not match the llama2.c header (expected ${expected.join(" or ")}); wrong header or not a llama2.c checkpoint`,
  );
}

export function llama2cConfig(h: Llama2cHeader, name?: string): ModelConfig {
  return {
    arch: "llama",
    dim: h.dim,
    hiddenDim: h.hiddenDim,
    nLayers: h.nLayers,
    nHeads: h.nHeads,
    nKvHeads: h.nKvHeads,
    headDim: h.dim / h.nHeads,
    vocabSize: h.vocabSize,
    seqLen: h.seqLen,
    ropeTheta: 10000, // run.c: powf(10000.0f, head_dim / (float)head_size)
    normEps: 1e-5, // run.c rmsnorm: ss += 1e-5f
    tiedEmbeddings: h.sharedClassifier,
    name,
  };
}

export interface Llama2cCheckpoint {
  header: Llama2cHeader;
  layout: Llama2cLayout;
  config: ModelConfig;
  /** every tensor created from the header; bytes read on first access (io/lazy.ts) */
  weights: Map<string, Weight>;
  /** closes the source the weights read from (Model.close) */
  close(): Promise<void>;
}

/** The Model of a read checkpoint: `path` is the model's source path, `tokenizerName` the tokenizer's file. */
export function llama2cModel(ck: Llama2cCheckpoint, path: string, tokenizer: Llama2cTokenizer | undefined, tokenizerName: string | undefined): Model {
  return {
    config: ck.config,
    weights: ck.weights,
    tokenizer,
    source: {
      path,
      format: "llama2c",
      metadata: {
        "llama2c.version": ck.header.version,
        "llama2c.shared_classifier": ck.header.sharedClassifier,
        "llama2c.freq_cis": ck.layout.hasFreqCis,
        ...(ck.header.groupSize !== undefined ? { "llama2c.group_size": ck.header.groupSize } : {}),
        ...(tokenizerName !== undefined ? { "llama2c.tokenizer": tokenizerName } : {}),
      },
    },
    close: ck.close,
  };
}

/**
 * Reads a checkpoint's header and lays out its tensors; each tensor's bytes are read on first access
 * (legacy f32: its own slice of the stacked arrays; version 2: its int8 codes and scales, dequantized to
 * f32 then). The source stays open until `close()`; on an error the caller still owns it.
 */
export async function readLlama2cCheckpoint(src: ByteSource): Promise<Llama2cCheckpoint> {
  const file = src.name;
  // 28 bytes first: a legacy header is exactly that, and reading more would be tensor data
  let head = await src.read(0, Math.min(src.size, LEGACY_HEADER_BYTES));
  if (head.length >= 4 && new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) === LLAMA2C_V2_MAGIC) {
    head = await src.read(0, Math.min(src.size, V2_HEADER_BYTES));
  }
  const header = parseLlama2cHeader(head, file);
  const layout = llama2cLayout(header, src.size, file);
  const config = llama2cConfig(header, baseName(file));
  const store = new TensorStore();
  store.add(src);
  const weights = header.version === 2 ? v2Weights(store, src, header, layout) : legacyWeights(store, src, header, layout);
  await store.finishLoad();
  return { header, layout, config, weights, close: () => store.close() };
}

function dense(shape: number[], data: LazyData<Float32Array>): Weight {
  return { kind: "dense", tensor: new Tensor("f32", shape, data) };
}

/** The lazy data of tensor `tensor`: `count` floats of array `name` (layer `l` of a stacked array, or all of it). */
type TensorAt = (name: Llama2cArray, l: number | undefined, count: number, tensor: string) => LazyData<Float32Array>;

/** f32 arrays: a tensor is its own slice of the file, viewed in place. */
function f32Slices(store: TensorStore, src: ByteSource, lay: Llama2cLayout): TensorAt {
  return (name, l, count, tensor) => {
    const offset = lay.offsets[name] + (l ?? 0) * count * 4;
    return store.tensor(src, tensor, [{ offset, byteLength: count * 4 }], ([b]) => viewAs("f32", b!.buffer, b!.byteOffset, count) as Float32Array);
  };
}

function legacyWeights(store: TensorStore, src: ByteSource, h: Llama2cHeader, lay: Llama2cLayout): Map<string, Weight> {
  return assemble(h, f32Slices(store, src, lay));
}

function v2Weights(store: TensorStore, src: ByteSource, h: Llama2cHeader, lay: Llama2cLayout): Map<string, Weight> {
  const gs = h.groupSize!;
  const norms = f32Slices(store, src, lay);
  return assemble(h, (name, l, count, tensor) => {
    if (name.startsWith("rms")) return norms(name, l, count, tensor);
    // a Q8 tensor is int8 q[count] followed by f32 scales[count / gs]; per-layer tensors are stored one
    // after another, each with its own scales
    const bytes = count + 4 * (count / gs);
    const offset = lay.offsets[name] + (l ?? 0) * bytes;
    // dequantized (q · scale per group of gs, over the flattened tensor) into a fresh f32 array: the
    // exact stored values; the raw bytes are dropped, so there is still one copy of the weights
    return store.tensor(src, tensor, [{ offset, byteLength: bytes }], ([b]) => {
      const dv = new DataView(b!.buffer, b!.byteOffset, b!.byteLength);
      const out = new Float32Array(count);
      for (let g = 0; g < count / gs; g++) {
        const sc = dv.getFloat32(count + 4 * g, true);
        for (let i = g * gs; i < (g + 1) * gs; i++) out[i] = ((b![i]! << 24) >> 24) * sc;
      }
      return out;
    });
  });
}

function assemble(h: Llama2cHeader, at: TensorAt): Map<string, Weight> {
  const hs = h.dim / h.nHeads;
  const qDim = h.nHeads * hs;
  const kvDim = h.nKvHeads * hs;
  const L = h.nLayers;
  const m = new Map<string, Weight>();
  const whole = (tensor: string, name: Llama2cArray, shape: number[]) => m.set(tensor, dense(shape, at(name, undefined, shape.reduce((a, b) => a * b, 1), tensor)));
  const layer = (tensor: string, name: Llama2cArray, l: number, shape: number[]) => m.set(tensor, dense(shape, at(name, l, shape.reduce((a, b) => a * b, 1), tensor)));
  whole(TensorNames.tokenEmbd, "token_embedding", [h.vocabSize, h.dim]);
  for (let l = 0; l < L; l++) {
    layer(TensorNames.attnNorm(l), "rms_att", l, [h.dim]);
    layer(TensorNames.attnQ(l), "wq", l, [qDim, h.dim]);
    layer(TensorNames.attnK(l), "wk", l, [kvDim, h.dim]);
    layer(TensorNames.attnV(l), "wv", l, [kvDim, h.dim]);
    layer(TensorNames.attnOutput(l), "wo", l, [h.dim, qDim]);
    layer(TensorNames.ffnNorm(l), "rms_ffn", l, [h.dim]);
    layer(TensorNames.ffnGate(l), "w1", l, [h.hiddenDim, h.dim]); // llama2.c w1
    layer(TensorNames.ffnDown(l), "w2", l, [h.dim, h.hiddenDim]); // llama2.c w2
    layer(TensorNames.ffnUp(l), "w3", l, [h.hiddenDim, h.dim]); // llama2.c w3
  }
  whole(TensorNames.outputNorm, "rms_final", [h.dim]);
  if (!h.sharedClassifier) whole(TensorNames.output, "wcls", [h.vocabSize, h.dim]);
  return m;
}

export interface Llama2cTokenizerFile {
  maxTokenLength: number;
  pieces: Uint8Array[];
  scores: Float32Array;
}

/** Parses a whole tok.bin; the token count is whatever the file holds (see the file comment). */
export function parseLlama2cTokenizerBytes(bytes: Uint8Array, file: string): Llama2cTokenizerFile {
  if (bytes.length < 4) throw new QuantlabError("E_FORMAT", `${file}: truncated: ${bytes.length} bytes, a llama2.c tokenizer starts with a 4-byte max_token_length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const maxTokenLength = dv.getInt32(0, true);
  if (maxTokenLength < 1 || maxTokenLength > MAX_PIECE_BYTES) {
    throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c tokenizer: max_token_length = ${maxTokenLength} (expected 1..${MAX_PIECE_BYTES})`);
  }
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let o = 4;
  while (o < bytes.length) {
    if (o + 8 > bytes.length) {
      throw new QuantlabError("E_FORMAT", `${file}: truncated: token ${pieces.length} header at byte ${o} needs 8 bytes, the file has ${bytes.length}`);
    }
    const score = dv.getFloat32(o, true);
    const len = dv.getInt32(o + 4, true);
    if (len < 0 || len > MAX_PIECE_BYTES) {
      throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c tokenizer: token ${pieces.length} has length ${len} (expected 0..${MAX_PIECE_BYTES})`);
    }
    o += 8;
    if (o + len > bytes.length) {
      throw new QuantlabError("E_FORMAT", `${file}: truncated: token ${pieces.length} needs ${len} bytes at byte ${o}, the file has ${bytes.length}`);
    }
    pieces.push(bytes.slice(o, o + len));
    scores.push(score);
    o += len;
    if (pieces.length > MAX_VOCAB) throw new QuantlabError("E_FORMAT", `${file}: bad llama2.c tokenizer: more than ${MAX_VOCAB} tokens`);
  }
  return { maxTokenLength, pieces, scores: Float32Array.from(scores) };
}

/** Reads tok.bin and checks it against the model's vocabulary size. */
export async function readLlama2cTokenizer(src: ByteSource, expectVocab?: { size: number; model: string }): Promise<Llama2cTokenizer> {
  const bytes = await src.read(0, src.size);
  const t = parseLlama2cTokenizerBytes(bytes, src.name);
  if (expectVocab && t.pieces.length !== expectVocab.size) {
    throw new QuantlabError(
      "E_FORMAT",
      `tokenizer ${src.name} has ${t.pieces.length} tokens but model ${expectVocab.model} has vocab_size ${expectVocab.size}`,
    );
  }
  return new Llama2cTokenizer({ pieces: t.pieces, scores: t.scores, maxTokenLength: t.maxTokenLength });
}

function baseName(p: string): string {
  const i = Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\"));
  return i >= 0 ? p.slice(i + 1) : p;
}
