// A/B of two kernel builds in one process, alternating runs: dense prefill (`matmul`, f32 or f16 weights)
// GFLOP/s, or stories3M prefill tokens/s through Llama, with this tree's WASM backend ("new") against the
// one of another build tree ("old": a copy of an older dist/, default build/ab-old/dist). Not part of
// `npm run bench` (files starting with "_" are skipped); docs/kernels.md shows how to make the old tree.
//   node dist/bench/_ab-prefill.js kernel relaxed 1 f32 128,256 256x768,2048x2048 [reps]
//   node dist/bench/_ab-prefill.js llama relaxed 2 [sequences of 256 tokens] [reps]
//   node dist/bench/_ab-prefill.js ggml relaxed 1 Q4_K,Q8_0 128 2048x8192 [reps]   (GGUF blocks; also times
//     the new build's mat-vec once per token, the prefill tiles' per-token peer)
// With 1 thread, times are the process's CPU time (robust to other jobs taking the core away); with 2,
// wall time. AB_WALL=1 forces wall time.
import { setFlagsFromString } from "node:v8";
setFlagsFromString("--experimental-wasm-relaxed-simd");

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Tensor } from "../src/core/tensor.js";
import { f32ToF16Bits } from "../src/core/f16.js";
import type { Weight } from "../src/core/weight.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../src/kernels/wasm/backend.js";
import type { WasmVariant } from "../src/kernels/wasm/module.js";
import { loadModel } from "../src/io/node/load.js";
import { dataPath } from "../src/io/node/data.js";
import { Llama } from "../src/model/llama.js";
import { randomF32 } from "./_synthetic.js";
import { GgmlType, ggmlRowBytes } from "../src/ggml/types.js";
import { quantizeRow } from "../src/ggml/codecs.js";

type Make = typeof createNodeWasmBackend;
const oldDist = resolve(process.env.AB_OLD ?? "build/ab-old/dist");
const makeOld = ((await import(pathToFileURL(`${oldDist}/src/kernels/wasm/pool-node.js`).href)) as { createNodeWasmBackend: Make }).createNodeWasmBackend;
const [mode = "kernel", variant = "relaxed", threadsArg = "1", ...rest] = process.argv.slice(2);
const threads = Number(threadsArg);
const cpuTime = threads === 1 && process.env.AB_WALL !== "1";

/** ms of f (CPU or wall time) */
function timed(f: () => void): number {
  const t0 = performance.now(), c0 = process.cpuUsage();
  f();
  const c = process.cpuUsage(c0);
  return cpuTime ? (c.user + c.system) / 1000 : performance.now() - t0;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** alternates old/new `reps` times (order flipped every round); returns per-side times and old/new ratios */
function alternate(reps: number, run: { old: () => void; new: () => void }): { old: number[]; new: number[]; ratios: number[] } {
  run.old(); run.new(); run.old(); run.new();
  const t = { old: [] as number[], new: [] as number[] };
  for (let r = 0; r < reps; r++) for (const k of r % 2 ? (["new", "old"] as const) : (["old", "new"] as const)) t[k].push(timed(run[k]));
  return { ...t, ratios: t.old.map((o, i) => o / t.new[i]!) };
}

const backends = async (): Promise<{ old: WasmBackend; new: WasmBackend }> => {
  const b = { old: makeOld({ variant: variant as WasmVariant, threads, minParallelBytes: 0 }), new: createNodeWasmBackend({ variant: variant as WasmVariant, threads, minParallelBytes: 0 }) };
  await b.old.ready(20000);
  await b.new.ready(20000);
  return b;
};
const clock = cpuTime ? "cpu" : "wall";
const range = (r: number[]): string => `${median(r).toFixed(2)} [${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)}]`;

if (mode === "kernel") {
  const [dtype = "f32", tokensArg = "128", shapesArg = "256x768", repsArg = "7"] = rest;
  const be = await backends();
  for (const n of tokensArg.split(",").map(Number)) {
    for (const shape of shapesArg.split(",")) {
      const [rows, cols] = shape.split("x").map(Number) as [number, number];
      const v = randomF32(rows * cols, 1);
      let tensor = Tensor.fromF32([rows, cols], v);
      if (dtype === "f16") tensor = new Tensor("f16", [rows, cols], Uint16Array.from(v, (x) => f32ToF16Bits(x)));
      const w: Weight = { kind: "dense", tensor };
      const x = randomF32(n * cols, 2);
      const p = { old: be.old.prepare(w), new: be.new.prepare(w) };
      const out = { old: new Float32Array(n * rows), new: new Float32Array(n * rows) };
      const flop = 2 * n * rows * cols;
      const inner = Math.max(1, Math.round(2e9 / flop)); // ≈ 2 GFLOP per timed sample
      const r = alternate(Number(repsArg), {
        old: () => { for (let i = 0; i < inner; i++) be.old.matmul(p.old, x, n, out.old); },
        new: () => { for (let i = 0; i < inner; i++) be.new.matmul(p.new, x, n, out.new); },
      });
      const gf = (ts: number[]): string => ((flop * inner) / 1e6 / median(ts)).toFixed(2);
      console.log(`${clock} ${variant} t${threads} ${dtype} n=${n} ${rows}×${cols}: old ${gf(r.old)} GFLOP/s, new ${gf(r.new)} GFLOP/s, old/new time ${range(r.ratios)}`);
    }
  }
  be.old.dispose();
  be.new.dispose();
} else if (mode === "ggml") {
  const [typesArg = "Q4_K", tokensArg = "128", shapesArg = "2048x8192", repsArg = "7"] = rest;
  const be = await backends();
  for (const tname of typesArg.split(",")) {
    const type = (GgmlType as unknown as Record<string, GgmlType>)[tname];
    if (type === undefined) throw new Error(`_ab-prefill ggml: unknown type ${tname}`);
    for (const shape of shapesArg.split(",")) {
      const [rows, cols] = shape.split("x").map(Number) as [number, number];
      const data = new Uint8Array(rows * ggmlRowBytes(type, cols)!);
      quantizeRow(type, randomF32(rows * cols, 1), data, rows * cols);
      const w = (): Weight => ({ kind: "ggml", type, shape: [rows, cols], data: data.slice() });
      const p = { old: be.old.prepare(w()), new: be.new.prepare(w()) };
      for (const n of tokensArg.split(",").map(Number)) {
        const x = randomF32(n * cols, 2);
        const out = { old: new Float32Array(n * rows), new: new Float32Array(n * rows), mv: new Float32Array(n * rows) };
        const mvPass = (): void => { for (let t = 0; t < n; t++) be.new.matvec(p.new, x.subarray(t * cols, (t + 1) * cols), out.mv.subarray(t * rows, (t + 1) * rows)); };
        const r = alternate(Number(repsArg), { old: () => be.old.matmul(p.old, x, n, out.old), new: () => be.new.matmul(p.new, x, n, out.new) });
        const m = alternate(Number(repsArg), { old: mvPass, new: () => be.new.matmul(p.new, x, n, out.new) });
        let same = true;
        for (let i = 0; i < out.new.length; i++) if (!Object.is(out.new[i], out.mv[i])) { same = false; break; }
        const gw = (ts: number[]): string => ((n * rows * cols) / 1e6 / median(ts)).toFixed(2);
        console.log(`${clock} ${variant} t${threads} ${tname} n=${n} ${rows}×${cols}: old matmul ${gw(r.old)}, new ${gw(r.new)} G weight·token/s, old/new time ${range(r.ratios)}; ` +
          `per-token mat-vec ${gw(m.old)}, mat-vec/new time ${range(m.ratios)}; new = mat-vec bit for bit: ${same}`);
      }
    }
  }
  be.old.dispose();
  be.new.dispose();
} else if (mode === "llama") {
  const [seqArg = "8", repsArg = "7"] = rest;
  const model = await loadModel(dataPath("stories3M", "stories3M.bin"), { tokenizer: dataPath("stories260K", "tok512.bin") });
  const ids = model.tokenizer!.encode(readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 200000));
  const len = 256;
  const seqs: number[][] = [];
  for (let i = 0; i < Number(seqArg); i++) seqs.push([model.tokenizer!.bosId, ...ids.slice(i * (len - 1), (i + 1) * (len - 1))]);
  const be = await backends();
  const llama = { old: new Llama(model, { backend: be.old }), new: new Llama(model, { backend: be.new }) };
  const pass = (l: Llama): void => {
    for (const s of seqs) { l.reset(); l.prefill(s, 0); }
  };
  const r = alternate(Number(repsArg), { old: () => pass(llama.old), new: () => pass(llama.new) });
  const tokens = seqs.reduce((s, q) => s + q.length, 0);
  const tps = (ts: number[]): string => ((tokens * 1000) / median(ts)).toFixed(0);
  console.log(`${clock} ${variant} t${threads} stories3M prefill ${seqs.length}×${len} tokens (chunks of ${llama.new.maxBatch}): old ${tps(r.old)} tok/s, new ${tps(r.new)} tok/s, old/new time ${range(r.ratios)}`);
  be.old.dispose();
  be.new.dispose();
} else {
  throw new Error(`_ab-prefill: mode ${mode}: expected kernel, ggml or llama`);
}
