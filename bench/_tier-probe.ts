// Probe for issue 15 (one-thread decode speed from process to process): one process loads a model file,
// decodes `steps` greedy tokens on the WASM backend and prints one JSON line with wall and CPU ms per token
// (process.cpuUsage: time slicing by other processes does not inflate it) — for the first tokens and the
// median of the rest, so a mid-run change of V8 tier shows. Run it several times, each a new process:
//   node [v8 flags] dist/bench/_tier-probe.js <model file> [steps=50] [threads=1] [packedActivations=f32|q8]
import { setFlagsFromString } from "node:v8";
import { loadavg } from "node:os";
import { readFileSync } from "node:fs";
setFlagsFromString("--experimental-wasm-relaxed-simd");
const { loadModel } = await import("../src/io/node/load.js");
const { placerOf } = await import("../src/io/placement.js");
const { createNodeWasmBackend } = await import("../src/kernels/wasm/pool-node.js");
const { Llama } = await import("../src/model/llama.js");
const { closeModel } = await import("../src/model/weights.js");

const [path, stepsArg, threadsArg, actArg] = process.argv.slice(2);
if (!path) throw new Error("usage: _tier-probe.js <model file> [steps] [threads] [f32|q8]");
const steps = Number(stepsArg ?? 50);
const threads = Number(threadsArg ?? 1);
const packedActivations = (actArg ?? "f32") as "f32" | "q8";
// QUANTLAB_PROBE_WAKER=1: a helper thread that only sleeps 1 ms at a time (the wake-up pattern of
// --cpu-prof's sampler thread, without the profiler), to tell the sampler's scheduling effect from V8's
let waker: import("node:worker_threads").Worker | undefined;
if (process.env.QUANTLAB_PROBE_WAKER === "1") {
  const { Worker } = await import("node:worker_threads");
  waker = new Worker("const a = new Int32Array(new SharedArrayBuffer(4)); for (;;) Atomics.wait(a, 0, 0, 1);", { eval: true });
  waker.unref();
}
const be = createNodeWasmBackend({ threads, packedActivations });
const model = await loadModel(path, { place: placerOf(be) });
const llama = new Llama(model, { backend: be, contextLength: steps + 8 });
await be.ready(10000);
const wall: number[] = [];
const cpu: number[] = [];
// Linux: this thread's time on a CPU and time runnable but waiting for one (ns), and its context switches
const sched = (): { runNs: number; waitNs: number; vol: number; invol: number } => {
  try {
    const [run, wait] = readFileSync("/proc/thread-self/schedstat", "utf8").trim().split(/\s+/).map(Number);
    const st = readFileSync("/proc/thread-self/status", "utf8");
    const num = (k: string) => Number(new RegExp(`${k}:\\s*(\\d+)`).exec(st)?.[1] ?? NaN);
    return { runNs: run!, waitNs: wait!, vol: num("voluntary_ctxt_switches"), invol: num("nonvoluntary_ctxt_switches") };
  } catch {
    return { runNs: NaN, waitNs: NaN, vol: NaN, invol: NaN };
  }
};
let tok = 1;
let s0 = sched();
const tLoop = performance.now();
for (let i = 0; i < steps; i++) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const logits = llama.forward(tok, i);
  wall.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1000);
  let best = 0;
  for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
  tok = best;
  if (i === 4) s0 = sched();
}
const s1 = sched();
const n = steps - 5;
void tLoop;
const median = (v: number[]) => { const s = [...v].sort((a, b) => a - b); return s[s.length >> 1]!; };
const rest = (v: number[]) => v.slice(5);
console.log(JSON.stringify({
  flags: process.execArgv.join(" ") + (waker ? " waker" : ""),
  first5WallMs: wall.slice(0, 5).map((x) => +x.toFixed(1)),
  medWallMs: +median(rest(wall)).toFixed(1),
  medCpuMs: +median(rest(cpu)).toFixed(1),
  // per token over tokens 5…steps-1: ms on CPU, ms runnable but off CPU (run queue), switches
  schedRunMs: +((s1.runNs - s0.runNs) / 1e6 / n).toFixed(2),
  schedWaitMs: +((s1.waitNs - s0.waitNs) / 1e6 / n).toFixed(2),
  volSw: s1.vol - s0.vol,
  involSw: s1.invol - s0.invol,
  tokS: +(1000 / median(rest(wall))).toFixed(2),
  load1: +loadavg()[0]!.toFixed(2),
}));
llama.dispose();
be.dispose();
await closeModel(model);
await waker?.terminate();
