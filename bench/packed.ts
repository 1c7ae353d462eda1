// Packed quantlab specs vs llama.cpp block types on the WASM backend: decode tok/s of a synthetic
// Llama-shaped model whose linears are int4:g32:asym / int8:channel QuantizedTensors (fused K_U4G / K_U8G
// kernels, f32 activations) against the same model in Q4_0 / Q8_0 (ggml kernels, Q8 activations), at 1 and
// 2 threads, plus the resident bytes of the prepared weights and the peak RSS of a process that loads the
// packed model from its quantized safetensors file (bench/_rss-child.ts), against the file's size.
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Tensor } from "../src/core/tensor.js";
import type { Weight } from "../src/core/weight.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import { GGML_TYPES, GgmlType } from "../src/ggml/types.js";
import { quantModelEntries } from "../src/io/quant-model.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { atomicWriteFile } from "../src/io/node/atomic.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../src/model/config.js";
import { Llama } from "../src/model/llama.js";
import type { Model } from "../src/model/weights.js";
import { quantizeTensor } from "../src/quant/tensor.js";
import { benchCacheDir } from "./_synthetic.js";
import { dataPath } from "../src/io/node/data.js";
import { fmt, stats, type BenchContext, type BenchSection } from "./types.js";

/** A mid-size Llama shape (the 1B one's per-layer matrices at half width): quantizing 1.2 B weights with
 * the TypeScript RTN per run takes too long on this 2-core machine. */
const SHAPE: ModelConfig = {
  arch: "llama", dim: 1024, hiddenDim: 4096, nLayers: 8, nHeads: 16, nKvHeads: 4, headDim: 64, vocabSize: 4096,
  seqLen: 256, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: true, name: "synthetic Llama (dim 1024, ffn 4096, 8 layers)",
};

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * 0.05;
  }
  return out;
}

/** The model with every linear as `what` (a ggml type or a spec); norms and the tied embedding f32. */
function model(c: ModelConfig, what: GgmlType | string): Model {
  const weights = new Map<string, Weight>();
  let seed = 1;
  for (const [name, shape] of expectedShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = name.endsWith("norm.weight") ? new Float32Array(n).fill(1) : rand(n, seed++);
    if (shape.length === 1 || name === TensorNames.tokenEmbd) weights.set(name, { kind: "dense", tensor: Tensor.fromF32(shape, v) });
    else if (typeof what === "string") weights.set(name, { kind: "quant", q: quantizeTensor(v, shape, what, { name }) });
    else {
      const t = GGML_TYPES[what];
      const data = new Uint8Array((n / t.blockSize) * t.bytesPerBlock);
      quantizeRow(what, v, data, n);
      weights.set(name, { kind: "ggml", type: what, shape, data });
    }
  }
  return { config: c, weights, source: { path: "synthetic", format: "memory" } };
}

function decodeTokS(m: Model, threads: number, steps: number, packedActivations: "f32" | "q8" = "f32"): { tokS: number; resident: number; kernels: string } {
  const be = createNodeWasmBackend({ threads, packedActivations });
  try {
    const llama = new Llama(m, { backend: be, contextLength: steps + 8 });
    const rows = be.listing().filter((r) => r.name.startsWith("blk."));
    const resident = rows.reduce((a, r) => a + r.bytes, 0);
    const kernels = [...new Set(rows.map((r) => r.kernel + (r.fallback ? " (fallback!)" : "")))].join(", ");
    llama.forward(1, 0);
    for (let i = 1; i < 4; i++) llama.forward(1 + i, i); // warm-up (tier-up)
    const times: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      llama.reset();
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) llama.forward(1 + (i % 100), i);
      times.push((performance.now() - t0) / steps);
    }
    llama.dispose();
    return { tokS: 1000 / stats(times).min, resident, kernels };
  } finally {
    be.dispose();
  }
}

/** Single-thread WASM streaming read over 256 MiB (bench/kernels.ts's yardstick), best of 5, GB/s. */
function readBandwidth(): number {
  const be = createNodeWasmBackend({});
  try {
    const bytes = 256 * 2 ** 20, count = bytes / 4;
    const off = be.arena.alloc(bytes);
    be.arena.f32.fill(1, off >> 2, (off >> 2) + count);
    be.kernels.stream_sum(off, count);
    let best = Infinity;
    for (let i = 0; i < 5; i++) { const t0 = performance.now(); be.kernels.stream_sum(off, count); best = Math.min(best, performance.now() - t0); }
    return bytes / 1e6 / best;
  } finally {
    be.dispose();
  }
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const c = ctx.quick ? { ...SHAPE, nLayers: 2 } : SHAPE;
  const steps = ctx.quick ? 4 : 16;
  const all: [string, GgmlType][] = [
    ["int4:g32:asym", GgmlType.Q4_0], ["int8:channel", GgmlType.Q8_0],
    ["nf4:g64", GgmlType.Q4_0], ["mxfp4", GgmlType.Q4_0], ["ternary:channel", GgmlType.TQ2_0],
  ];
  // QUANTLAB_PACKED_SPECS=nf4:g64,mxfp4 runs only those pairs (the shared machine: keep runs short)
  const only = process.env.QUANTLAB_PACKED_SPECS?.split(",");
  const pairs = only ? all.filter(([s]) => only.includes(s)) : all;
  const skipRss = process.env.QUANTLAB_PACKED_NO_RSS === "1";
  const streamGBs = readBandwidth();
  notes.push(`read bandwidth yardstick (same run, WASM SIMD streaming f32 sum over 256 MiB, 1 thread): ${fmt(streamGBs)} GB/s; "GB/s" = resident linear bytes × tok/s, "% bw" = that / the yardstick`);
  const linearBytes = (m: Model) => { let b = 0; for (const [k, w] of m.weights) if (k.startsWith("blk.") && w.kind !== "dense") b += w.kind === "quant" ? w.q.storageBits / 8 : w.data.length; return b; };
  const child = join(dirname(fileURLToPath(import.meta.url)), "_rss-child.js");
  const hwm = (path: string): number | undefined => {
    const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", child, path, "wasm"], { encoding: "utf8" });
    return r.status === 0 ? (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { hwmKiB: number }).hwmKiB * 1024 : undefined;
  };
  // the same process loading stories260K (1 MB): Node, the wasm module and the backend's scratch
  const baseline = skipRss ? 0 : hwm(dataPath("stories260K", "stories260K.bin")) ?? 0;
  if (!skipRss) notes.push(`baseline peak RSS (the same child loading stories260K, ~1 MB): ${fmt(baseline / 2 ** 20, 1)} MiB`);
  for (const [spec, type] of pairs) {
    ctx.log(`packed: building ${spec} and ${GgmlType[type]} models`);
    const mq = model(c, spec);
    const mg = model(c, type);
    for (const threads of [1, 2]) {
      const b = decodeTokS(mg, threads, steps);
      for (const acts of ["f32", "q8"] as const) {
        const a = decodeTokS(mq, threads, steps, acts);
        const bw = (r: { tokS: number; resident: number }) => `${fmt((r.resident * r.tokS) / 1e9, 1)} / ${fmt((100 * r.resident * r.tokS) / 1e9 / streamGBs, 0)}%`;
        rows.push([spec, acts, GgmlType[type], threads, fmt(a.tokS, 1), fmt(b.tokS, 1), fmt(a.tokS / b.tokS, 2), bw(a), bw(b),
          `${fmt(a.resident / 2 ** 20, 1)} / ${fmt(linearBytes(mq) / 2 ** 20, 1)}`, `${fmt(b.resident / 2 ** 20, 1)} / ${fmt(linearBytes(mg) / 2 ** 20, 1)}`]);
        if (threads === 1) notes.push(`${spec} (${acts} activations) runs on ${a.kernels}${acts === "f32" ? `; ${GgmlType[type]} on ${b.kernels}` : ""}`);
      }
    }
    if (skipRss) continue;
    // peak RSS of a process loading the packed model from its file (lazily, released after prepare)
    const path = join(benchCacheDir(), `packed-${c.nLayers}l-${spec.replace(/:/g, "_")}.safetensors`);
    const { entries, metadata } = quantModelEntries(mq);
    await atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata));
    const size = statSync(path).size;
    const peak = hwm(path);
    notes.push(peak === undefined ? `${spec}: RSS child failed` : `${spec}: file ${fmt(size / 2 ** 20, 1)} MiB (f32 tied embedding included); loading it and decoding one token peaks at ${fmt(peak / 2 ** 20, 1)} MiB RSS, ${fmt((peak - baseline) / 2 ** 20, 1)} MiB above the baseline = ${fmt((peak - baseline) / size, 2)}× the file`);
  }
  notes.push(`model: ${c.name}, ${c.nLayers} layers, vocab ${c.vocabSize}, tied f32 embedding; decode = best of 3 runs of ${steps} tokens after 4 warm-up tokens`);
  notes.push("activations f32 = the default fused K_U4G / K_U8G kernels (the fake-quant numbers: stories260K logits within 1e-4); q8 = `packedActivations: \"q8\"`, the spec repacked at load onto the integer SoA kernels with Q8 activations as the ggml peers use (not the fake-quant numbers)");
  notes.push("the peers are quantlab's own ggml kernels (TQ2_0 repacked to i8·s32, 1 B/weight); llama.cpp's TQ2_0 decode was not timed in this run");
  notes.push("resident = bytes of the prepared linears in wasm memory; packed linears = their QuantizedTensor storage (codes + f16 scales + zeros), the file's share");
  return [{
    title: "Packed spec layouts vs ggml blocks: decode tok/s (WASM backend)",
    table: { headers: ["spec", "activations", "ggml peer", "threads", "spec tok/s", "peer tok/s", "ratio", "spec GB/s / % bw", "peer GB/s / % bw", "spec resident / packed linears (MiB)", "peer resident / file linears (MiB)"], rows },
    notes,
  }];
}
