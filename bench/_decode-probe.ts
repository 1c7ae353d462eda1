// Focused decode probe (issue 15): mat-vec of the 1B model's FFN shapes (2048×8192 and 8192×2048) for one
// weight type, streamed cold (≥ 8× the L3 of distinct matrices), this build next to another build's dist
// (the previous kernel) in the same process, passes alternating, against a same-run streaming-read probe.
//
//   node dist/bench/_decode-probe.js <F16|Q6_K|…> [baseDist=/path/to/old/dist] [threads=1,2] [reps=9]
//
// Prints per shape and thread count: wall ms per mat-vec (median, min) and GB/s of weight bytes for each
// build, and the ratio old/new (median of the per-pass ratios, so load changes between passes cancel).
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { GgmlType } from "../src/ggml/types.js";
import type { PreparedWeight } from "../src/kernels/types.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../src/kernels/wasm/backend.js";
import { readBandwidthGBs } from "./_bandwidth.js";
import { makeWeight } from "./_probe-weight.js";
import { randomF32 } from "./_synthetic.js";

const MiB = 1 << 20;
const COLD = 256 * MiB;

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;

async function main(): Promise<void> {
  const typeName = process.argv[2] ?? "F16";
  const type = (GgmlType as unknown as Record<string, GgmlType>)[typeName];
  if (type === undefined) throw new Error(`unknown ggml type ${typeName}`);
  const baseDist = process.argv[3];
  const threadsList = (process.argv[4] ?? "1,2").split(",").map(Number);
  const reps = Number(process.argv[5] ?? 9);
  const bw = readBandwidthGBs(256);
  console.log(`${typeName}: stream read ${bw.toFixed(1)} GB/s, load ${loadavg()[0]!.toFixed(2)}`);
  type Make = typeof createNodeWasmBackend;
  const builds: [string, Make][] = [["new", createNodeWasmBackend]];
  if (baseDist) {
    const mod = (await import(pathToFileURL(resolve(baseDist, "src/kernels/wasm/pool-node.js")).href)) as { createNodeWasmBackend: Make };
    builds.push(["old", mod.createNodeWasmBackend]);
  }
  for (const [rows, cols] of [[2048, 8192], [8192, 2048]] as const) {
    const w = makeWeight(type, rows, cols);
    const x = randomF32(cols, 3);
    const out = new Float32Array(rows);
    const bes: { name: string; be: WasmBackend; ws: PreparedWeight[] }[] = [];
    for (const [name, make] of builds) {
      const be = make({ variant: "relaxed", threads: Math.max(...threadsList) });
      await be.ready(20000);
      const first = be.prepare(w, "w0");
      const ws = [first];
      const count = Math.max(2, Math.ceil(COLD / first.bytes));
      for (let i = 1; i < count; i++) ws.push(be.prepare(w, `w${i}`));
      bes.push({ name, be, ws });
    }
    const bytes = bes[0]!.ws[0]!.bytes;
    const kernel = bes[0]!.be.listing()[0]!.kernel;
    // outputs must agree between builds (same kernel contract)
    if (bes.length > 1) {
      const a = new Float32Array(rows), b = new Float32Array(rows);
      bes[0]!.be.matvec(bes[0]!.ws[0]!, x, a);
      bes[1]!.be.matvec(bes[1]!.ws[0]!, x, b);
      let diff = 0;
      for (let i = 0; i < rows; i++) if (!Object.is(a[i], b[i])) diff++;
      console.log(`  ${rows}×${cols} ${kernel}: ${bytes / MiB} MiB × ${bes[0]!.ws.length}; outputs differing new vs old: ${diff}/${rows}`);
    }
    for (const threads of threadsList) {
      for (const b of bes) b.be.minParallelBytes = threads === 1 ? Infinity : 0;
      const t = bes.map(() => [] as number[]);
      const cpu = bes.map(() => [] as number[]);
      const pass = (i: number): void => {
        const { be, ws } = bes[i]!;
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        for (const p of ws) be.matvec(p, x, out);
        t[i]!.push((performance.now() - t0) / ws.length);
        const c = process.cpuUsage(c0);
        cpu[i]!.push((c.user + c.system) / 1000 / ws.length);
      };
      for (let i = 0; i < bes.length; i++) { pass(i); pass(i); t[i]!.length = 0; cpu[i]!.length = 0; }
      const l0 = loadavg()[0]!.toFixed(2);
      for (let r = 0; r < reps; r++) for (let i = 0; i < bes.length; i++) pass((i + r) % bes.length);
      const parts = bes.map((b, i) => `${b.name} ${median(t[i]!).toFixed(3)} ms (min ${Math.min(...t[i]!).toFixed(3)}, cpu ${median(cpu[i]!).toFixed(3)}) ${(bytes / 1e6 / median(t[i]!)).toFixed(1)} GB/s`);
      let rat = "";
      if (bes.length > 1) rat = `; old/new ${median(t[1]!.map((v, k) => v / t[0]![k]!)).toFixed(3)} wall, ${median(cpu[1]!.map((v, k) => v / cpu[0]![k]!)).toFixed(3)} cpu`;
      console.log(`  ${rows}×${cols} t${threads}: ${parts.join(" | ")}${rat} (load ${l0}→${loadavg()[0]!.toFixed(2)})`);
    }
    for (const b of bes) b.be.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
