// Decode A/B probe for a packed int4 spec in q8-activation mode (issue 11): this build's decoder, another build's
// (its dist: the previous kernel and layout) and quantlab's Q4_0 peer on bench/packed.ts's synthetic model, all three
// live in one process with their runs alternating (peer, new, old), so the load is the same on each side.
//
//   node --experimental-wasm-relaxed-simd dist/bench/_int4-ab.js <oldDist> [spec=int4:g32:asym] [threads=1,2] [pairs=7]
//
// Prints per thread count the per-round ratios new/Q4_0, old/Q4_0 and new/old (tok/s), their medians, and the
// load average. Each build quantizes the model with its own modules (a QTensor is recognized by its class).
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { GGML_TYPES, GgmlType } from "../src/ggml/types.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import { expectedShapes, TensorNames, type ModelConfig } from "../src/model/config.js";
import type { Model } from "../src/model/weights.js";
import type { Weight } from "../src/core/weight.js";
import { stats } from "./types.js";
import { PACKED_SHAPE, packedRand } from "./_packed-model.js";

const SHAPE = PACKED_SHAPE;
const rand = packedRand;

interface Build {
  Tensor: { fromF32(shape: readonly number[], v: Float32Array): unknown };
  quantizeTensor: (v: Float32Array, shape: readonly number[], spec: string, o: { name: string }) => unknown;
  Llama: new (m: unknown, o: { backend: unknown; contextLength: number }) => { forward(tok: number, pos: number): unknown; reset(): void; dispose(): void };
  createNodeWasmBackend: (o: { threads: number; packedActivations: "f32" | "q8" }) => { listing(): { name: string; kernel: string; bytes: number }[]; dispose(): void; ready(ms: number): Promise<boolean> };
}

async function load(dist: string): Promise<Build> {
  const imp = (p: string) => import(pathToFileURL(resolve(dist, p)).href);
  const [t, q, l, b] = await Promise.all([imp("src/core/tensor.js"), imp("src/quant/tensor.js"), imp("src/model/llama.js"), imp("src/kernels/wasm/pool-node.js")]);
  return { Tensor: t.Tensor, quantizeTensor: q.quantizeTensor, Llama: l.Llama, createNodeWasmBackend: b.createNodeWasmBackend };
}

function model(B: Build, what: GgmlType | string): Model {
  const weights = new Map<string, Weight>();
  let seed = 1;
  for (const [name, shape] of expectedShapes(SHAPE)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = name.endsWith("norm.weight") ? new Float32Array(n).fill(1) : rand(n, seed++);
    if (shape.length === 1 || name === TensorNames.tokenEmbd) weights.set(name, { kind: "dense", tensor: B.Tensor.fromF32(shape, v) } as Weight);
    else if (typeof what === "string") weights.set(name, { kind: "quant", q: B.quantizeTensor(v, shape, what, { name }) } as Weight);
    else {
      const t = GGML_TYPES[what];
      const data = new Uint8Array((n / t.blockSize) * t.bytesPerBlock);
      quantizeRow(what, v, data, n);
      weights.set(name, { kind: "ggml", type: what, shape, data });
    }
  }
  return { config: SHAPE, weights, source: { path: "synthetic", format: "memory" } };
}

async function decoder(B: Build, m: Model, threads: number, steps: number, acts: "f32" | "q8") {
  const be = B.createNodeWasmBackend({ threads, packedActivations: acts });
  if (threads > 1) await be.ready(20000);
  const llama = new B.Llama(m, { backend: be, contextLength: steps + 8 });
  const rows = be.listing().filter((r) => r.name.startsWith("blk."));
  const kernels = [...new Set(rows.map((r) => r.kernel))].join(", ");
  const bytes = rows.reduce((a, r) => a + r.bytes, 0);
  llama.forward(1, 0);
  for (let i = 1; i < 4; i++) llama.forward(1 + i, i);
  // [wall ms per token, the process's CPU ms per token (user + system: at 1 thread less disturbed by other jobs)]
  const rep = (): [number, number] => {
    llama.reset();
    const c0 = process.cpuUsage(), t0 = performance.now();
    for (let i = 0; i < steps; i++) llama.forward(1 + (i % 100), i);
    const c = process.cpuUsage(c0);
    return [(performance.now() - t0) / steps, (c.user + c.system) / 1000 / steps];
  };
  return { rep, kernels, bytes, dispose: () => { llama.dispose(); be.dispose(); } };
}

async function main(): Promise<void> {
  const oldDist = process.argv[2];
  if (!oldDist) throw new Error("usage: _int4-ab.js <oldDist> [spec] [threads] [pairs]");
  const spec = process.argv[3] ?? "int4:g32:asym";
  const threadsList = (process.argv[4] ?? "1,2").split(",").map(Number);
  const pairs = Number(process.argv[5] ?? 7);
  const steps = 16;
  const here = resolve(new URL(".", import.meta.url).pathname, "..");
  const [N, O] = await Promise.all([load(here), load(oldDist)]);
  const mn = model(N, spec), mo = model(O, spec), mg = model(N, GgmlType.Q4_0);
  const med = (a: number[]) => stats(a).median.toFixed(3);
  for (const threads of threadsList) {
    const dg = await decoder(N, mg, threads, steps, "f32");
    const dn = await decoder(N, mn, threads, steps, "q8");
    const dold = await decoder(O, mo, threads, steps, "q8");
    try {
      console.log(`${spec} ${threads} thread(s): new ${dn.kernels} ${(dn.bytes / 2 ** 20).toFixed(2)} MiB; old ${dold.kernels} ${(dold.bytes / 2 ** 20).toFixed(2)} MiB; Q4_0 ${(dg.bytes / 2 ** 20).toFixed(2)} MiB`);
      const l0 = loadavg()[0]!;
      const rn: number[] = [], ro: number[] = [], rno: number[] = [], cn: number[] = [], co: number[] = [], cno: number[] = [];
      const best = [Infinity, Infinity, Infinity];
      for (let r = 0; r < pairs; r++) {
        // the order rotates per round (peer, new, old / new, old, peer / old, peer, new)
        const t: [number, number][] = [[0, 0], [0, 0], [0, 0]];
        const ds = [dg, dn, dold];
        for (let k = 0; k < 3; k++) { const i = (k + r) % 3; t[i] = ds[i]!.rep(); best[i] = Math.min(best[i]!, t[i]![0]); }
        const [g, n, o] = t as [[number, number], [number, number], [number, number]];
        rn.push(g[0] / n[0]); ro.push(g[0] / o[0]); rno.push(o[0] / n[0]);
        cn.push(g[1] / n[1]); co.push(g[1] / o[1]); cno.push(o[1] / n[1]);
      }
      const l1 = loadavg()[0]!;
      const show = (a: number[]) => `${a.map((x) => x.toFixed(2)).join(" ")}  median ${med(a)}`;
      console.log(`  wall new/Q4_0 ${show(rn)}`);
      console.log(`  wall old/Q4_0 ${show(ro)}`);
      console.log(`  wall new/old  ${show(rno)}`);
      console.log(`  best-of tok/s: Q4_0 ${(1000 / best[0]!).toFixed(1)}, new ${(1000 / best[1]!).toFixed(1)}, old ${(1000 / best[2]!).toFixed(1)}: new/Q4_0 ${(best[0]! / best[1]!).toFixed(3)}, old/Q4_0 ${(best[0]! / best[2]!).toFixed(3)}`);
      console.log(`  cpu  new/Q4_0 median ${med(cn)}, old/Q4_0 median ${med(co)}, new/old median ${med(cno)}`);
      console.log(`  load ${l0.toFixed(2)} → ${l1.toFixed(2)}`);
    } finally {
      dg.dispose(); dn.dispose(); dold.dispose();
    }
  }
}

await main();
