// Synthetic GGUF models for the speed benchmarks: a model of Llama-3.2-1B's shapes (dim 2048, 16 layers,
// FFN 8192, 32 heads, 8 KV heads, vocab 128256, tied embeddings) with random weights, written once per
// ggml type into a cache directory and reused. Speed does not depend on the values, so each matrix is a
// tile of 64 random rows (quantized once for block types) repeated: writing a 4.9 GB F32 file then takes
// seconds instead of the many minutes the reference k-quant quantizers would need. The file carries a
// made-up SentencePiece-style vocabulary so llama.cpp (node-llama-cpp) loads it too.
import { existsSync, mkdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { f32ToF16Bits } from "../src/core/f16.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../src/ggml/types.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import { GgufValueType, GgufWriter, tensorByteLength } from "../src/io/gguf.js";
import { canonicalOrder, llamaMetadata, vocabMetadata } from "../src/io/gguf-model.js";
import { atomicWriteFile } from "../src/io/node/atomic.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../src/model/config.js";
import type { Vocab } from "../src/model/tokenizer.js";

/** n uniform values in [-1, 1) from a xorshift32 stream (seeded; the benches' weights and inputs). */
export function randomF32(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

export const LLAMA_1B_SHAPE: ModelConfig = {
  arch: "llama",
  dim: 2048,
  hiddenDim: 8192,
  nLayers: 16,
  nHeads: 32,
  nKvHeads: 8,
  headDim: 64,
  vocabSize: 128256,
  seqLen: 2048,
  ropeTheta: 500000,
  normEps: 1e-5,
  tiedEmbeddings: true,
  name: "synthetic Llama-3.2-1B shapes",
};

/** Where the synthetic files live between runs (QUANTLAB_BENCH_DIR overrides). */
export function benchCacheDir(): string {
  const dir = process.env.QUANTLAB_BENCH_DIR ?? join(tmpdir(), "quantlab-bench");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** <unk>, <s>, </s>, 256 byte tokens, then plain pieces: enough for llama.cpp's SPM vocabulary loader. */
function fakeVocab(n: number): Vocab {
  const pieces: string[] = ["<unk>", "<s>", "</s>"];
  const types: number[] = [2, 3, 3]; // llama_token_type: UNKNOWN, CONTROL, CONTROL
  for (let b = 0; b < 256; b++) {
    pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6); // BYTE
  }
  while (pieces.length < n) {
    pieces.push(`\u2581t${pieces.length}`);
    types.push(1); // NORMAL
  }
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) scores[i] = -i;
  return { model: "llama", pieces, scores, types: Int32Array.from(types), bosId: 1, eosId: 2, unkId: 0, addBos: true };
}

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296 * 2 - 1;
  };
}

const TILE_ROWS = 64;

/** 64 rows × cols of uniform(−a, a) values encoded as `type` (a = 0.04: activations stay O(1) through 16 layers). */
function tile(type: GgmlType, cols: number, seed: number): Uint8Array {
  const rnd = xorshift(seed);
  const n = TILE_ROWS * cols;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rnd() * 0.04;
  if (type === GgmlType.F32) return new Uint8Array(x.buffer);
  if (type === GgmlType.F16) {
    const h = new Uint16Array(n);
    for (let i = 0; i < n; i++) h[i] = f32ToF16Bits(x[i]!);
    return new Uint8Array(h.buffer);
  }
  const out = new Uint8Array(tensorByteLength(type, [TILE_ROWS, cols], "tile"));
  quantizeRow(type, x, out, n);
  return out;
}

/**
 * The synthetic model as a GGUF of `type` (every 2-D tensor but the tied embedding when `opts.embedding` gives
 * its type; norms F32), created on first use in `dir`.
 * Returns its path and size.
 */
export async function syntheticGguf(type: GgmlType, config: ModelConfig = LLAMA_1B_SHAPE, dir = benchCacheDir(), log: (m: string) => void = () => {}, opts: { embedding?: GgmlType } = {}): Promise<{ path: string; bytes: number }> {
  const emb = opts.embedding;
  const tag = `${config.dim}x${config.nLayers}-ffn${config.hiddenDim}-v${config.vocabSize}${emb !== undefined ? `-emb${ggmlTypeName(emb)}` : ""}`;
  const path = join(dir, `synthetic-llama-${tag}-${ggmlTypeName(type)}.gguf`);
  if (existsSync(path)) return { path, bytes: statSync(path).size };
  log(`  writing ${path} …`);
  const t0 = performance.now();
  const shapes = expectedShapes(config);
  const names = canonicalOrder(config, [...shapes.keys()].filter((n) => n !== TensorNames.output));
  await atomicWriteFile(path, async (sink) => {
    const w = new GgufWriter(sink, path);
    for (const [k, v] of llamaMetadata(config)) w.setKV(k, v);
    for (const [k, v] of vocabMetadata(fakeVocab(config.vocabSize))) w.setKV(k, v);
    const ft = GGML_TYPES[type].ftype;
    if (ft !== undefined) w.setKV("general.file_type", { type: GgufValueType.UINT32, value: ft });
    // opts.embedding: the tied token embedding (= the output matrix) in its own type
    const typeOf = (name: string): GgmlType => (shapes.get(name)!.length !== 2 ? GgmlType.F32 : name === TensorNames.tokenEmbd && emb !== undefined ? emb : type);
    for (const name of names) w.addTensor({ name, shape: [...shapes.get(name)!], type: typeOf(name) });
    await w.writeHeader();
    const tiles = new Map<string, Uint8Array>(); // by type and row length
    let seed = 1;
    for (const name of names) {
      const shape = shapes.get(name)!;
      if (shape.length === 1) {
        await w.writeTensorData(name, new Uint8Array(new Float32Array(shape[0]!).fill(1).buffer));
        continue;
      }
      const [rows, cols] = shape as [number, number];
      const key = `${typeOf(name)}:${cols}`;
      let t = tiles.get(key);
      if (!t) {
        t = tile(typeOf(name), cols, seed++);
        tiles.set(key, t);
      }
      // write in chunks of up to 64 MiB of repeated tiles
      const reps = Math.max(1, Math.floor((64 << 20) / t.length));
      const chunk = new Uint8Array(t.length * reps);
      for (let i = 0; i < reps; i++) chunk.set(t, i * t.length);
      let left = rows;
      while (left > 0) {
        const r = Math.min(left, reps * TILE_ROWS);
        const whole = Math.floor(r / TILE_ROWS);
        const part = r - whole * TILE_ROWS;
        await w.writeTensorData(name, chunk.subarray(0, whole * t.length));
        if (part > 0) await w.writeTensorData(name, t.subarray(0, (t.length / TILE_ROWS) * part));
        left -= r;
      }
    }
    w.finish();
  });
  const bytes = statSync(path).size;
  log(`  wrote ${(bytes / 1e9).toFixed(2)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { path, bytes };
}
