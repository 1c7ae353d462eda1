// Child process of bench/packed-memory.ts: loads a model the way `quantlab run` does (wasm backend first,
// tensors placed into its memory where the loader can), decodes a few tokens, and prints one JSON line:
// VmHWM / VmRSS (KiB), process.memoryUsage() (heap, external, array buffers), the wasm memory size, the
// prepared weights' bytes (backend listing) and the largest of them, and load / decode times.
// Usage: node --experimental-wasm-relaxed-simd dist/bench/_mem-child.js <model> [tokens]
import { readFileSync } from "node:fs";
import { backendFromOptions } from "../src/cli/model-options.js";
import { placerOf } from "../src/io/placement.js";
import { loadModel } from "../src/io/node/load.js";
import { WasmBackend } from "../src/kernels/wasm/backend.js";
import { Llama } from "../src/model/llama.js";

const [path, tokensArg] = process.argv.slice(2);
const tokens = Number(tokensArg ?? 4);
const t0 = performance.now();
const backend = backendFromOptions({ backend: "wasm", threads: 1 });
const model = await loadModel(path!, { place: placerOf(backend) });
const llama = new Llama(model, { backend, contextLength: 16 });
const loadMs = performance.now() - t0;
const t1 = performance.now();
for (let i = 0; i < tokens; i++) llama.forward(1 + i, i);
const tokenMs = (performance.now() - t1) / tokens;
const status = readFileSync("/proc/self/status", "utf8");
const kib = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
const mu = process.memoryUsage();
const be = backend as WasmBackend;
const rows = be.listing();
const fallback = rows.filter((r) => r.fallback).map((r) => `${r.name}: ${r.fallback}`);
console.log(JSON.stringify({
  hwmKiB: kib("VmHWM"), rssKiB: kib("VmRSS"), heapUsed: mu.heapUsed, external: mu.external, arrayBuffers: mu.arrayBuffers,
  wasmBytes: be.memoryStats().shards.reduce((a, b) => a + b, 0), preparedBytes: rows.reduce((a, r) => a + r.bytes, 0),
  kernels: [...new Set(rows.map((r) => r.kernel))], fallback, loadMs, tokenMs,
}));
llama.dispose();
await model.close?.();
backend.dispose?.();
