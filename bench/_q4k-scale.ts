// Issue 15 probe: mat-vec of the 1B model's shapes (2048², 512×2048, 8192×2048, 2048×8192, 128256×2048) for
// two weight types (default Q4_K against Q4_0: the same 4.5 bits/weight) in one backend, streamed cold
// (≥ 256 MiB of distinct matrices per shape and type), 1 and 2 threads, passes alternating type and thread
// count so load changes spread over all cells. Prints per cell: median wall ms per mat-vec, GB/s of weight
// bytes, the 2-thread speed-up, and the share of chunks the calling thread ran.
//   node --experimental-wasm-relaxed-simd dist/bench/_q4k-scale.js [types=Q4_K,Q4_0] [reps=7] [shapes=all|ffn|out] [chunkBytes]
// A type written TYPE@BYTES (e.g. Q4_K@inf) runs with the backend's decode chunkBytes set to BYTES (inf = the pool's
// default threads × 4 chunks per job), so two chunk sizes compare in one process.
import { loadavg } from "node:os";
import { GgmlType } from "../src/ggml/types.js";
import type { PreparedWeight } from "../src/kernels/types.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import { makeWeight } from "./_probe-weight.js";
import { randomF32 } from "./_synthetic.js";

const MiB = 1 << 20;
const COLD = 256 * MiB;

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;

async function main(): Promise<void> {
  const typeNames = (process.argv[2] ?? "Q4_K,Q4_0").split(",");
  const reps = Number(process.argv[3] ?? 7);
  const which = process.argv[4] ?? "all";
  const all: [number, number][] = [[2048, 2048], [512, 2048], [8192, 2048], [2048, 8192], [128256, 2048]];
  const shapes = which === "ffn" ? all.slice(2, 4) : which === "out" ? all.slice(4) : all;
  const be = createNodeWasmBackend({ variant: "relaxed", threads: 2 });
  await be.ready(20000);
  console.log(`load ${loadavg().map((v) => v.toFixed(2)).join(" ")}`);
  for (const [rows, cols] of shapes) {
    const x = randomF32(cols, 3);
    const out = new Float32Array(rows);
    const cells = typeNames.map((tn) => {
      const [base, cb] = tn.split("@");
      const chunkBytes = cb === undefined ? be.chunkBytes : cb === "inf" ? Infinity : Number(cb);
      const type = (GgmlType as unknown as Record<string, GgmlType>)[base!];
      if (type === undefined) throw new Error(`unknown ggml type ${tn}`);
      const w = makeWeight(type, rows, cols);
      const first = be.prepare(w, `${tn}-0`);
      const ws: PreparedWeight[] = [first];
      const count = Math.max(2, Math.ceil(COLD / first.bytes));
      for (let i = 1; i < count; i++) ws.push(be.prepare(w, `${tn}-${i}`));
      return { tn, chunkBytes, ws, bytes: first.bytes, t: [[], []] as number[][], caller: [0, 0], chunks: [0, 0] };
    });
    const pass = (c: (typeof cells)[number], ti: number): void => {
      be.minParallelBytes = ti === 0 ? Infinity : 0;
      be.chunkBytes = c.chunkBytes;
      const s0 = be.poolStats();
      const t0 = performance.now();
      for (const p of c.ws) be.matvec(p, x, out);
      c.t[ti]!.push((performance.now() - t0) / c.ws.length);
      const s1 = be.poolStats();
      c.caller[ti]! += s1.callerChunks - s0.callerChunks;
      c.chunks[ti]! += s1.chunks - s0.chunks;
    };
    for (const c of cells) for (const ti of [0, 1]) pass(c, ti);
    for (const c of cells) { c.t = [[], []]; c.caller = [0, 0]; c.chunks = [0, 0]; }
    const l0 = loadavg()[0]!.toFixed(2);
    for (let r = 0; r < reps; r++) for (let i = 0; i < 2 * cells.length; i++) {
      const k = (i + r) % (2 * cells.length);
      pass(cells[k >> 1]!, k & 1);
    }
    for (const c of cells) {
      const m1 = median(c.t[0]!), m2 = median(c.t[1]!);
      const sp = median(c.t[0]!.map((v, k) => v / c.t[1]![k]!));
      console.log(`  ${rows}×${cols} ${c.tn} (${(c.bytes / MiB).toFixed(2)} MiB × ${c.ws.length}): t1 ${m1.toFixed(3)} ms ${(c.bytes / 1e6 / m1).toFixed(1)} GB/s | t2 ${m2.toFixed(3)} ms ${(c.bytes / 1e6 / m2).toFixed(1)} GB/s | t1/t2 ${sp.toFixed(2)} | caller ran ${((100 * c.caller[1]!) / Math.max(1, c.chunks[1]!)).toFixed(0)} % of chunks (load ${l0}→${loadavg()[0]!.toFixed(2)})`);
      for (const p of c.ws) be.release(p);
    }
  }
  be.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
