// Probe for issue 11's 1-thread ternary decode: one process loads a packed model file (the packed bench's
// `packed-8l-ternary_channel.safetensors`, bench/packed.ts) into decoders of this build and of other builds' dist
// folders, q8 activations, and times runs of `steps` tokens (reset between runs, as bench/packed.ts) with the
// builds alternating, by the process's CPU time (1 thread: the calling thread's) and wall time.
//
//   node --experimental-wasm-relaxed-simd dist/bench/_tern-probe.js <model> [dists=.,/old/dist] [reps=15] [steps=16] [threads=1]
//   QUANTLAB_PROBE_PROFILE=1 …   (first build only) a V8 CPU profile of `reps` runs, self time per function and
//                                 wasm function names from the module's export section
//
// Prints per build the median and best CPU ms per token and, for each later build, the median of the per-pass
// ratios (its CPU time ÷ the first build's: > 1 = the first build is faster).
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Session } from "node:inspector";

const [path, distsArg, repsArg, stepsArg, threadsArg] = process.argv.slice(2);
if (!path) throw new Error("usage: _tern-probe.js <model> [dists=.] [reps] [steps] [threads]");
const here = resolve(new URL("..", import.meta.url).pathname);
const dists = (distsArg ?? ".").split(",").map((d) => (d === "." ? here : resolve(d)));
const reps = Number(repsArg ?? 15), steps = Number(stepsArg ?? 16), threads = Number(threadsArg ?? 1);
const profile = process.env.QUANTLAB_PROBE_PROFILE === "1";

/** QUANTLAB_PROBE_SPLIT=1 (first build): wall ms per token in each backend entry the forward pass calls (the tied
 * f32 output apart from the other linears) and the rest (the forward's own TypeScript: RoPE, embedding, KV stores). */
const splitMs = new Map<string, number>();
function split(be: any, llama: any): void {
  const wrap = (o: any, name: string, key: (args: any[]) => string) => {
    const f = o[name].bind(o);
    o[name] = (...args: any[]) => { const t0 = performance.now(); try { return f(...args); } finally { const k = key(args); splitMs.set(k, (splitMs.get(k) ?? 0) + performance.now() - t0); } };
  };
  wrap(be, "matvec", (a) => (a[0].rows === llama.config.vocabSize ? "matvec: output (f32)" : "matvec: wo, down"));
  wrap(be, "matvecMany", () => "matvecMany: qkv, gate+up");
  wrap(be, "addRmsnorm", () => "addRmsnorm");
  wrap(be, "swiglu", () => "swiglu");
  wrap(llama.kv, "attend", () => "attention");
  wrap(llama.kv, "store", () => "kv store");
}

interface Dec { name: string; rep: () => [number, number]; wasm: Uint8Array | undefined }
const decs: Dec[] = [];
for (const dist of dists) {
  const imp = async <T>(p: string): Promise<T> => (await import(pathToFileURL(resolve(dist, p)).href)) as T;
  const { loadModel } = await imp<typeof import("../src/io/node/load.js")>("src/io/node/load.js");
  const { placerOf } = await imp<typeof import("../src/io/placement.js")>("src/io/placement.js");
  const { createNodeWasmBackend } = await imp<typeof import("../src/kernels/wasm/pool-node.js")>("src/kernels/wasm/pool-node.js");
  const { Llama } = await imp<typeof import("../src/model/llama.js")>("src/model/llama.js");
  let wasm: Uint8Array | undefined;
  try {
    const g = await imp<Record<string, string>>("src/kernels/wasm/generated/relaxed.js");
    const b64 = Object.values(g).find((v) => typeof v === "string" && v.length > 1000);
    if (b64) wasm = Buffer.from(b64, "base64");
  } catch { /* names stay numeric */ }
  const be = createNodeWasmBackend({ threads, packedActivations: "q8" });
  const model = await loadModel(path, { place: placerOf(be) });
  const llama = new Llama(model, { backend: be, contextLength: steps + 8 });
  await be.ready(20000);
  if (process.env.QUANTLAB_PROBE_SPLIT === "1" && decs.length === 0) split(be, llama);
  for (let i = 0; i < 4; i++) llama.forward(1 + i, i);
  const rep = (): [number, number] => {
    llama.reset();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) llama.forward(1 + (i % 100), i);
    const wall = (performance.now() - t0) / steps;
    const c = process.cpuUsage(c0);
    return [(c.user + c.system) / 1000 / steps, wall];
  };
  decs.push({ name: dist, rep, wasm });
}
for (const d of decs) for (let i = 0; i < 3; i++) d.rep();

const median = (v: number[]): number => { const s = [...v].sort((a, b) => a - b); return s[s.length >> 1]!; };

/** function index → export name, from a wasm binary's export section */
function exportNames(b: Uint8Array): Map<number, string> {
  let p = 8;
  const names = new Map<number, string>();
  const leb = (): number => { let r = 0, s = 0, c: number; do { c = b[p++]!; r |= (c & 127) << s; s += 7; } while (c & 128); return r >>> 0; };
  const str = (): string => { const n = leb(); const s = Buffer.from(b.subarray(p, p + n)).toString(); p += n; return s; };
  while (p < b.length) {
    const id = b[p++]!, size = leb(), end = p + size;
    if (id === 7) {
      const n = leb();
      for (let i = 0; i < n; i++) { const nm = str(); const k = b[p++]!; const idx = leb(); if (k === 0 && !names.has(idx)) names.set(idx, nm); }
    }
    p = end;
  }
  return names;
}

if (process.env.QUANTLAB_PROBE_SPLIT === "1") {
  const d = decs[0]!;
  splitMs.clear();
  let wall = 0;
  for (let r = 0; r < reps; r++) wall += d.rep()[1] * steps;
  const perTok = (ms: number) => ms / (reps * steps);
  let inside = 0;
  console.log(`split: ${reps} runs of ${steps} tokens, wall ${perTok(wall).toFixed(3)} ms/token, load ${loadavg()[0]!.toFixed(2)}`);
  for (const [k, ms] of [...splitMs].sort((a, b) => b[1] - a[1])) { inside += ms; console.log(`${perTok(ms).toFixed(3).padStart(7)} ms/token ${((100 * ms) / wall).toFixed(1).padStart(5)}%  ${k}`); }
  console.log(`${perTok(wall - inside).toFixed(3).padStart(7)} ms/token ${((100 * (wall - inside)) / wall).toFixed(1).padStart(5)}%  the rest (forward's TypeScript)`);
} else if (profile) {
  const d = decs[0]!;
  const s = new Session();
  s.connect();
  const post = (m: string, p?: object): Promise<any> => new Promise((res, rej) => s.post(m, p ?? {}, (e, r) => (e ? rej(e) : res(r))));
  await post("Profiler.enable");
  await post("Profiler.setSamplingInterval", { interval: 50 });
  await post("Profiler.start");
  const cpu: number[] = [];
  for (let r = 0; r < reps; r++) cpu.push(d.rep()[0]);
  const { profile: p } = await post("Profiler.stop");
  const names = d.wasm ? exportNames(d.wasm) : new Map<number, string>();
  const byId = new Map<number, any>(p.nodes.map((n: any) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i])!;
    const fn: string = n.callFrame.functionName || "(anon)";
    const m = /^wasm-function\[(\d+)\]$/.exec(fn);
    const k = m ? `wasm ${names.get(Number(m[1])) ?? fn}` : `${fn} ${String(n.callFrame.url).split("/").slice(-2).join("/")}:${n.callFrame.lineNumber}`;
    const t = p.timeDeltas[i] ?? 0;
    self.set(k, (self.get(k) ?? 0) + t);
    total += t;
  }
  console.log(`profile: ${reps} runs of ${steps} tokens, median CPU ${median(cpu).toFixed(3)} ms/token, load ${loadavg()[0]!.toFixed(2)}; self time:`);
  for (const [k, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${((100 * t) / total).toFixed(1).padStart(5)}%  ${(t / 1000 / (reps * steps)).toFixed(3)} ms/token  ${k}`);
} else {
  const cpu = decs.map(() => [] as number[]), wall = decs.map(() => [] as number[]), ratios = decs.map(() => [] as number[]);
  const l0 = loadavg()[0]!;
  for (let r = 0; r < reps; r++) {
    // alternate the order of the builds within a pass so neither always runs first
    const order = decs.map((_, i) => i);
    if (r & 1) order.reverse();
    const c = new Array<number>(decs.length);
    for (const i of order) { const [cc, w] = decs[i]!.rep(); c[i] = cc; cpu[i]!.push(cc); wall[i]!.push(w); }
    for (let i = 1; i < decs.length; i++) ratios[i]!.push(c[i]! / c[0]!);
  }
  console.log(`${reps} passes of ${steps} tokens, ${threads} thread(s), load ${l0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`);
  decs.forEach((d, i) => {
    console.log(`${d.name}: CPU ms/token median ${median(cpu[i]!).toFixed(3)} best ${Math.min(...cpu[i]!).toFixed(3)}; wall median ${median(wall[i]!).toFixed(3)} best ${Math.min(...wall[i]!).toFixed(3)}` +
      (i > 0 ? `; CPU ÷ first: median ${median(ratios[i]!).toFixed(3)} (${ratios[i]!.map((x) => x.toFixed(2)).join(" ")})` : ""));
  });
}
process.exit(0);
