// Kernel A/B probe for a packed int4 spec in q8-activation mode: one mat-vec of a [rows, cols] weight on this build
// and on other builds (their dists), all live in one process, passes alternating; hot (one copy, cache-resident when
// small) or cold (copies streamed round-robin past the L3).
//
//   node --experimental-wasm-relaxed-simd dist/bench/_int4-kab.js <dist,dist,…> [spec=int4:g32:asym] [rows×cols=4096x4096]
//        [threads=1] [passes=15] [coldMiB=0] [variant=relaxed|simd]
//
// Prints per build the median and min CPU µs per mat-vec and the median of the per-pass ratios against the first build.
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { stats } from "./types.js";
import { packedRand } from "./_packed-model.js";

interface Build {
  quantizeTensor: (v: Float32Array, shape: readonly number[], spec: string) => unknown;
  createNodeWasmBackend: (o: { threads: number; packedActivations: "f32" | "q8"; variant?: string }) => {
    prepare(w: unknown, name: string): { bytes: number }; matvec(p: unknown, x: Float32Array, out: Float32Array): void;
    listing(): { kernel: string }[]; dispose(): void; ready(ms: number): Promise<boolean>;
  };
}

async function load(dist: string): Promise<Build> {
  const imp = (p: string) => import(pathToFileURL(resolve(dist, p)).href);
  const [q, b] = await Promise.all([imp("src/quant/tensor.js"), imp("src/kernels/wasm/pool-node.js")]);
  return { quantizeTensor: q.quantizeTensor, createNodeWasmBackend: b.createNodeWasmBackend };
}

const rand = packedRand;

async function main(): Promise<void> {
  const dists = (process.argv[2] ?? ".").split(",");
  const spec = process.argv[3] ?? "int4:g32:asym";
  const [rows, cols] = (process.argv[4] ?? "4096x4096").split("x").map(Number) as [number, number];
  const threads = Number(process.argv[5] ?? 1);
  const passes = Number(process.argv[6] ?? 15);
  const coldMiB = Number(process.argv[7] ?? 0);
  const variant = process.argv[8] ?? "relaxed";
  const w = rand(rows * cols, 11), x = rand(cols, 3), out = new Float32Array(rows);
  const runs: { name: string; mv: () => void; kernel: string; bytes: number; t: number[]; dispose: () => void }[] = [];
  for (const d of dists) {
    const B = await load(d);
    const be = B.createNodeWasmBackend({ threads, packedActivations: "q8", variant });
    if (threads > 1) await be.ready(20000);
    const weight = { kind: "quant", q: B.quantizeTensor(w, [rows, cols], spec) };
    const first = be.prepare(weight, "w0");
    const ps = [first];
    const count = coldMiB > 0 ? Math.max(2, Math.ceil((coldMiB * 2 ** 20) / first.bytes)) : 1;
    for (let i = 1; i < count; i++) ps.push(be.prepare(weight, `w${i}`));
    let k = 0;
    const mv = () => { be.matvec(ps[k]!, x, out); k = (k + 1) % ps.length; };
    for (let i = 0; i < 20; i++) mv();
    runs.push({ name: d, mv, kernel: be.listing().at(-1)!.kernel, bytes: first.bytes, t: [], dispose: () => be.dispose() });
  }
  const inner = coldMiB > 0 ? 16 : 64;
  const l0 = loadavg()[0]!;
  for (let p = 0; p < passes; p++) {
    for (let j = 0; j < runs.length; j++) {
      const r = runs[(j + p) % runs.length]!;
      // the process's CPU time (user + system), not wall: a pass the scheduler parks on the busy machine does not count
      const c0 = process.cpuUsage();
      for (let i = 0; i < inner; i++) r.mv();
      const c = process.cpuUsage(c0);
      r.t.push((c.user + c.system) / inner);
    }
  }
  const l1 = loadavg()[0]!;
  console.log(`${spec} [${rows}×${cols}] ${variant} ${threads} thread(s), ${coldMiB > 0 ? `cold (${coldMiB} MiB round-robin)` : "hot (one copy)"}, ${passes} passes × ${inner}, load ${l0.toFixed(2)} → ${l1.toFixed(2)}`);
  for (const r of runs) {
    const ratio = r.t.map((t, i) => runs[0]!.t[i]! / t);
    console.log(`  ${r.name}: ${r.kernel}, ${r.bytes} B: median ${stats(r.t).median.toFixed(1)} µs, min ${stats(r.t).min.toFixed(1)} µs (${((r.bytes / stats(r.t).min) / 1e3).toFixed(1)} GB/s); speed vs first: median ${stats(ratio).median.toFixed(3)}`);
  }
  for (const r of runs) r.dispose();
}

await main();
