// A quantlab quantized-model safetensors file of Llama-3.2-1B's shapes (bench/_synthetic.ts LLAMA_1B_SHAPE)
// for the memory bench (bench/packed-memory.ts): every linear quantized with one spec, norms f32, the tied
// embedding f16 ("f16") or quantized with the spec too ("spec"). Quantizing 1.2 B weights with the
// TypeScript RTN would take far too long here, so each matrix is one 64-row tile of seeded random weights
// quantized once and repeated (rows quantize independently for row-major group specs, so the tile's side
// arrays repeat too; checked below by quantizing 64 and 128 rows). Written once to the bench cache
// directory and reused; the writer holds one tensor's bytes at a time.
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { f32ToF16Bits } from "../src/core/f16.js";
import { QuantlabError } from "../src/core/errors.js";
import { atomicWriteFile } from "../src/io/node/atomic.js";
import { QUANT_MODEL_FORMAT } from "../src/io/quant-model.js";
import { writeSafetensors, type SafetensorsEntry } from "../src/io/safetensors.js";
import { expectedShapes, TensorNames, type ModelConfig } from "../src/model/config.js";
import { QUANT_LAYOUT_VERSION, QUANT_METADATA_PREFIX, toEntries } from "../src/quant/serialize.js";
import { quantizeTensor } from "../src/quant/tensor.js";
import { benchCacheDir, LLAMA_1B_SHAPE, randomF32 } from "./_synthetic.js";

const TILE = 64;

type Tile = { dtype: SafetensorsEntry["dtype"]; bytes: Uint8Array }[];

/** The side arrays of a TILE-row block of the spec, in toEntries order (suffix, dtype, bytes). */
function tileEntries(spec: string, cols: number, seed: number): { tile: Map<string, Tile[number]>; order: string[]; canonical: string } {
  let canonical = spec;
  const q = (rows: number) => {
    const v = randomF32(rows * cols, seed);
    for (let i = 0; i < v.length; i++) v[i] = v[i]! * 0.05;
    const t = quantizeTensor(v, [rows, cols], spec, { name: `tile ${cols}` });
    canonical = t.spec;
    return toEntries("t", t).tensors;
  };
  const one = q(TILE), two = q(2 * TILE);
  const tile = new Map<string, Tile[number]>();
  for (const [k, e] of Object.entries(one)) {
    const e2 = two[k];
    // the 128-row block must be the 64-row one's bytes twice over (rows independent, no whole-tensor state)
    if (!e2 || e2.bytes.length !== 2 * e.bytes.length) throw new QuantlabError("E_INTERNAL", `${spec}: entry ${k} does not scale with the rows; tiling cannot build it`);
    tile.set(k.slice(2), { dtype: e.dtype, bytes: e.bytes });
  }
  return { tile, order: [...tile.keys()], canonical };
}

function repeat(b: Uint8Array, times: number): Uint8Array {
  const out = new Uint8Array(b.length * times);
  for (let i = 0; i < times; i++) out.set(b, i * b.length);
  return out;
}

export type EmbeddingMode = "f16" | "spec";

/** Path of the synthetic 1B file quantized with `spec` (written now unless it exists). */
export async function synthetic1bQuant(spec: string, embedding: EmbeddingMode, log: (m: string) => void, c: ModelConfig = LLAMA_1B_SHAPE): Promise<string> {
  const path = join(benchCacheDir(), `quant-${c.dim}x${c.nLayers}-v${c.vocabSize}-${spec.replace(/:/g, "_")}-emb_${embedding}.safetensors`);
  if (existsSync(path) && statSync(path).size > 0) return path;
  log(`synthetic: writing ${path}`);
  const tiles = new Map<number, ReturnType<typeof tileEntries>>();
  const tileOf = (cols: number) => {
    let t = tiles.get(cols);
    if (!t) tiles.set(cols, (t = tileEntries(spec, cols, 1000 + cols)));
    return t;
  };
  const metadata: Record<string, string> = { format: "pt", "quantlab.format": QUANT_MODEL_FORMAT, "quantlab.model_config": JSON.stringify(c) };
  const entries: SafetensorsEntry[] = [];
  for (const [name, shape] of expectedShapes(c)) {
    if (name === TensorNames.output) continue; // tied
    if (shape.length === 1) {
      entries.push({ name, dtype: "f32", shape: [...shape], bytes: () => new Uint8Array(new Float32Array(shape[0]!).fill(1).buffer) });
      continue;
    }
    const [rows, cols] = shape as [number, number];
    if (name === TensorNames.tokenEmbd && embedding === "f16") {
      entries.push({ name, dtype: "f16", shape: [rows, cols], bytes: () => {
        const v = randomF32(TILE * cols, 7);
        const h = new Uint16Array(TILE * cols);
        for (let i = 0; i < h.length; i++) h[i] = f32ToF16Bits(v[i]! * 0.05);
        return repeat(new Uint8Array(h.buffer), rows / TILE);
      } });
      continue;
    }
    if (rows % TILE !== 0) throw new QuantlabError("E_INTERNAL", `${name}: ${rows} rows is not a multiple of ${TILE}`);
    const { tile, order, canonical } = tileOf(cols);
    for (const suffix of order) {
      const e = tile.get(suffix)!;
      const size = e.dtype === "u8" ? 1 : e.dtype === "f32" || e.dtype === "i32" ? 4 : 2;
      entries.push({ name: `${name}.${suffix}`, dtype: e.dtype, shape: [(e.bytes.length / size) * (rows / TILE)], bytes: () => repeat(e.bytes, rows / TILE) });
    }
    metadata[QUANT_METADATA_PREFIX + name] = JSON.stringify({ spec: canonical, shape: [rows, cols], layout: QUANT_LAYOUT_VERSION });
  }
  await atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata, path));
  return path;
}
