// Child process of bench/model.ts's RSS section: load a GGUF the way `quantlab run` does (backend first,
// tensors placed into its memory), decode one token, print VmHWM / VmRSS (KiB) as one JSON line.
// Usage: node dist/bench/_rss-child.js <model.gguf> <wasm|ref>
import { readFileSync } from "node:fs";
import { backendFromOptions } from "../src/cli/model-options.js";
import { placerOf } from "../src/io/placement.js";
import { loadModel } from "../src/io/node/load.js";
import { Llama } from "../src/model/llama.js";

const [path, backendName] = process.argv.slice(2);
const t0 = performance.now();
const backend = backendFromOptions({ backend: backendName ?? "wasm", threads: 1 });
const model = await loadModel(path!, { place: placerOf(backend) });
const llama = new Llama(model, { backend, contextLength: 16 });
const loadMs = performance.now() - t0;
const t1 = performance.now();
llama.forward(1, 0);
const tokenMs = performance.now() - t1;
const status = readFileSync("/proc/self/status", "utf8");
const kib = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
console.log(JSON.stringify({ hwmKiB: kib("VmHWM"), rssKiB: kib("VmRSS"), loadMs, tokenMs }));
backend.dispose?.();
