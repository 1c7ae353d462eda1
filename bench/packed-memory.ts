// Issue 11 memory: peak RSS of a process that loads a packed quantized model of Llama-3.2-1B's shapes
// (bench/_synthetic-quant.ts; dim 2048, ffn 8192, 16 layers, 32/8 heads, vocab 128256, tied) from its
// quantlab safetensors file onto the WASM backend and decodes a few tokens (bench/_mem-child.ts), minus
// the peak of the same child loading stories260K (Node, the wasm module, scratch), against the file size.
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { dataPath } from "../src/io/node/data.js";
import { synthetic1bQuant, type EmbeddingMode } from "./_synthetic-quant.js";
import { LLAMA_1B_SHAPE } from "./_synthetic.js";
import { fmt, type BenchContext, type BenchSection } from "./types.js";

interface ChildResult {
  hwmKiB: number; rssKiB: number; heapUsed: number; external: number; arrayBuffers: number;
  wasmBytes: number; preparedBytes: number; kernels: string[]; fallback: string[]; loadMs: number; tokenMs: number;
}

const MiB = 2 ** 20;

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const child = join(dirname(fileURLToPath(import.meta.url)), "_mem-child.js");
  const measure = (path: string): ChildResult => {
    const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", child, path, "4"], { encoding: "utf8", maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`memory child failed on ${path}: ${r.stderr.trim().split("\n").slice(-3).join(" / ")}`);
    return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as ChildResult;
  };
  const c = ctx.quick ? { ...LLAMA_1B_SHAPE, nLayers: 2, vocabSize: 8192, name: "synthetic Llama-3.2-1B shapes, 2 layers, vocab 8192 (quick)" } : LLAMA_1B_SHAPE;
  const base = measure(dataPath("stories260K", "stories260K.bin"));
  const baseline = base.hwmKiB * 1024;
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const specs = ["int4:g32:asym", "nf4:g64", "mxfp4"];
  const embeddings: EmbeddingMode[] = ["f16", "spec"];
  for (const spec of specs) {
    for (const emb of embeddings) {
      const path = await synthetic1bQuant(spec, emb, ctx.log, c);
      const size = statSync(path).size;
      ctx.log(`packed-memory: ${spec}, embedding ${emb}: ${fmt(size / MiB, 0)} MiB file`);
      const m = measure(path);
      const peak = m.hwmKiB * 1024;
      rows.push([spec, emb === "f16" ? "f16" : spec, fmt(size / MiB, 1), fmt(m.preparedBytes / MiB, 1), fmt(m.wasmBytes / MiB, 1),
        fmt(peak / MiB, 1), fmt((peak - baseline) / MiB, 1), fmt((peak - baseline) / size, 3), fmt(m.arrayBuffers / MiB, 1), fmt(m.loadMs / 1000, 1), fmt(m.tokenMs, 0)]);
      if (m.fallback.length) notes.push(`${spec} (embedding ${emb}): ${m.fallback.length} weights fell back: ${m.fallback.slice(0, 2).join("; ")}`);
      if (emb === "f16") notes.push(`${spec} runs on ${m.kernels.join(", ")}`);
    }
  }
  notes.push(`model: ${c.name} — dim ${c.dim}, ffn ${c.hiddenDim}, ${c.nLayers} layers, ${c.nHeads}/${c.nKvHeads} heads, vocab ${c.vocabSize}, tied embedding; each matrix a repeated 64-row tile of random weights (bench/_synthetic-quant.ts), norms f32`);
  notes.push(`peak = VmHWM of a child (bench/_mem-child.ts, 1 thread) that loads the file with the wasm backend, builds the Llama (context 16) and decodes 4 tokens; baseline = the same child loading stories260K: ${fmt(baseline / MiB, 1)} MiB`);
  notes.push("prepared = bytes of the weights the kernels read (backend listing); wasm = size of the WebAssembly memories (prepared weights, KV cache, activation scratch); JS array buffers = process.memoryUsage().arrayBuffers after the decode");
  return [{
    title: "Packed spec models in memory: peak RSS vs file size (Llama-3.2-1B shapes, WASM backend)",
    table: { headers: ["spec", "tied embedding", "file (MiB)", "prepared (MiB)", "wasm memory (MiB)", "peak RSS (MiB)", "peak − baseline (MiB)", "÷ file", "JS array buffers (MiB)", "load (s)", "decode ms/token"], rows },
    notes,
  }];
}
