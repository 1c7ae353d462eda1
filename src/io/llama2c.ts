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
 *   f32 once at load (the exact stored values); the file's packed form is not a kernel layout of ours.
 *
 * Tokenizer (run.c `build_tokenizer`): int32 max_token_length, then per token f32 score, int32 len,
 * len bytes. The count is not stored: it is the model's vocab_size, so we read to the end of the file
 * and compare.
 */
import { QuantlabError } from "../core/errors.js";
import { Tensor } from "../core/tensor.js";
import type { ModelConfig } from "../model/config.js";
import { TensorNames } from "../model/config.js";
import { Llama2cTokenizer } from "../model/tokenizers/llama2c.js";
import type { ByteSource } from "./source.js";
import type { Weight } from "../core/weight.js";

/** "ak42" read as a little-endian uint32 (export.py: struct.pack('I', 0x616b3432)) */
export const LLAMA2C_V2_MAGIC = 0x616b3432;
const LEGACY_HEADER_BYTES = 28;
const V2_HEADER_BYTES = 256;

// Limits on header values: far above any llama2.c model (Llama 2 70B: dim 8192, hidden 28672,
// 80 layers, 64 heads, vocab 32000, seq_len 4096) yet small enough that products stay exact doubles.
const MAX_DIM = 1 << 16;
const MAX_HIDDEN = 1 << 18;
const MAX_LAYERS = 1 << 10;
const MAX_HEADS = 1 << 10;
const MAX_VOCAB = 1 << 22;
const MAX_SEQ_LEN = 1 << 22;
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
  weights: Map<string, Weight>;
}

/**
 * Reads a whole checkpoint. Legacy f32 files are read into one buffer and every tensor is a zero-copy
 * view of it (per-layer tensors are views into the stacked arrays); nothing is copied twice.
 */
export async function readLlama2cCheckpoint(src: ByteSource): Promise<Llama2cCheckpoint> {
  const file = src.name;
  const headLen = Math.min(src.size, V2_HEADER_BYTES);
  const head = await src.read(0, headLen);
  const header = parseLlama2cHeader(head, file);
  const layout = llama2cLayout(header, src.size, file);
  let buf: ArrayBuffer;
  try {
    buf = new ArrayBuffer(layout.expectedBytes);
  } catch {
    throw new QuantlabError("E_UNSUPPORTED", `${file}: ${layout.expectedBytes} bytes is too large to load into one buffer`);
  }
  const all = new Uint8Array(buf);
  await src.readInto(0, all);
  const config = llama2cConfig(header, baseName(file));
  const weights = header.version === 2 ? v2Weights(header, layout, buf) : legacyWeights(header, layout, buf);
  return { header, layout, config, weights };
}

function dense(shape: number[], data: Float32Array): Weight {
  return { kind: "dense", tensor: Tensor.fromF32(shape, data) };
}

function legacyWeights(h: Llama2cHeader, lay: Llama2cLayout, buf: ArrayBuffer): Map<string, Weight> {
  const hs = h.dim / h.nHeads;
  const qDim = h.nHeads * hs;
  const kvDim = h.nKvHeads * hs;
  const view = (name: Llama2cArray, n: number) => new Float32Array(buf, lay.offsets[name], n);
  return assemble(h, (name, n) => view(name, n), qDim, kvDim);
}

function v2Weights(h: Llama2cHeader, lay: Llama2cLayout, buf: ArrayBuffer): Map<string, Weight> {
  const gs = h.groupSize!;
  const bytes = new Uint8Array(buf);
  const dv = new DataView(buf);
  // Q8 tensors are dequantized (q · scale per group of gs, over the flattened tensor) into fresh f32
  // arrays; the raw file buffer is dropped after load, so there is still one copy of the weights.
  const deq = (off: number, n: number): Float32Array => {
    const out = new Float32Array(n);
    const sOff = off + n;
    for (let g = 0; g < n / gs; g++) {
      const s = dv.getFloat32(sOff + 4 * g, true);
      for (let i = g * gs; i < (g + 1) * gs; i++) out[i] = ((bytes[off + i]! << 24) >> 24) * s;
    }
    return out;
  };
  const hs = h.dim / h.nHeads;
  const qDim = h.nHeads * hs;
  const kvDim = h.nKvHeads * hs;
  const cache = new Map<Llama2cArray, Float32Array>();
  return assemble(h, (name, n) => {
    let a = cache.get(name);
    if (!a) {
      const off = lay.offsets[name];
      if (name.startsWith("rms")) a = new Float32Array(buf.slice(off, off + 4 * n));
      else if (name === "token_embedding" || name === "wcls") a = deq(off, n);
      else {
        // per-layer Q8 tensors are stored one after another, each with its own scales
        const per = n / h.nLayers;
        a = new Float32Array(n);
        for (let l = 0; l < h.nLayers; l++) a.set(deq(off + l * (per + 4 * (per / gs)), per), l * per);
      }
      cache.set(name, a);
    }
    return a;
  }, qDim, kvDim);
}

function assemble(
  h: Llama2cHeader,
  get: (name: Llama2cArray, n: number) => Float32Array,
  qDim: number,
  kvDim: number,
): Map<string, Weight> {
  const L = h.nLayers;
  const m = new Map<string, Weight>();
  m.set(TensorNames.tokenEmbd, dense([h.vocabSize, h.dim], get("token_embedding", h.vocabSize * h.dim)));
  const stacked = (name: Llama2cArray, rows: number, cols: number) => {
    const a = get(name, L * rows * cols);
    return (l: number) => a.subarray(l * rows * cols, (l + 1) * rows * cols);
  };
  const rmsAtt = stacked("rms_att", 1, h.dim);
  const wq = stacked("wq", qDim, h.dim);
  const wk = stacked("wk", kvDim, h.dim);
  const wv = stacked("wv", kvDim, h.dim);
  const wo = stacked("wo", h.dim, qDim);
  const rmsFfn = stacked("rms_ffn", 1, h.dim);
  const w1 = stacked("w1", h.hiddenDim, h.dim);
  const w2 = stacked("w2", h.dim, h.hiddenDim);
  const w3 = stacked("w3", h.hiddenDim, h.dim);
  for (let l = 0; l < L; l++) {
    m.set(TensorNames.attnNorm(l), dense([h.dim], rmsAtt(l)));
    m.set(TensorNames.attnQ(l), dense([qDim, h.dim], wq(l)));
    m.set(TensorNames.attnK(l), dense([kvDim, h.dim], wk(l)));
    m.set(TensorNames.attnV(l), dense([kvDim, h.dim], wv(l)));
    m.set(TensorNames.attnOutput(l), dense([h.dim, qDim], wo(l)));
    m.set(TensorNames.ffnNorm(l), dense([h.dim], rmsFfn(l)));
    m.set(TensorNames.ffnGate(l), dense([h.hiddenDim, h.dim], w1(l))); // llama2.c w1
    m.set(TensorNames.ffnDown(l), dense([h.dim, h.hiddenDim], w2(l))); // llama2.c w2
    m.set(TensorNames.ffnUp(l), dense([h.hiddenDim, h.dim], w3(l))); // llama2.c w3
  }
  m.set(TensorNames.outputNorm, dense([h.dim], get("rms_final", h.dim)));
  if (!h.sharedClassifier) m.set(TensorNames.output, dense([h.vocabSize, h.dim], get("wcls", h.vocabSize * h.dim)));
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
