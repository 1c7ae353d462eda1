// GPTQ phase A/B on one n×n linear (the layer of bench/gptq.ts): the Hessian with f64 and f32 products
// (alternating, `reps` rounds, wall ms), their max difference relative to √(H_ii H_jj), then GPTQ the f64 way
// (f64 Hessian, f64 lazy updates) and the f32 way (f32 products in both), phases and how many codes differ.
// usage: node --experimental-wasm-relaxed-simd dist/bench/_gptq-phases.js <n> <tokens> [reps] [threads] [variant]
import { loadavg } from "node:os";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import { Rng } from "../src/core/rng.js";
import { gptqQuantize, HessianAccumulator, RegistryQuantizer } from "../src/algos/index.js";
import type { LinalgKernels } from "../src/kernels/types.js";
import { layerInputs } from "./gptq.js";

const n = Number(process.argv[2] ?? 2048), nTok = Number(process.argv[3] ?? 8192), reps = Number(process.argv[4] ?? 2);
const threads = Number(process.argv[5] ?? 2);
const variant = (process.argv[6] ?? "relaxed") as "relaxed" | "simd";
const be = createNodeWasmBackend({ threads, variant });
await be.ready(20000);
const K: LinalgKernels = be.linalg();
const rng = new Rng(7);
const x = layerInputs(rng, n, nTok); // bench/gptq.ts's inputs: a rank-64 signal plus noise
const w = rng.fillNormal(new Float32Array(n * n), 0.02);

function hessian(products: "f64" | "f32"): { h: Float64Array; ms: number } {
  const t0 = performance.now();
  const acc = new HessianAccumulator(n, K, products);
  for (let s = 0; s < nTok; s += 512) acc.add(x.subarray(s * n, Math.min(nTok, s + 512) * n), Math.min(512, nTok - s));
  const h = acc.takeHessian();
  return { h, ms: performance.now() - t0 };
}
const ms: Record<string, number[]> = { f64: [], f32: [] };
let h64: Float64Array | undefined, h32: Float64Array | undefined;
for (let r = 0; r < reps; r++) {
  for (const p of ["f64", "f32"] as const) {
    const { h, ms: t } = hessian(p);
    ms[p]!.push(t);
    if (p === "f64") { if (h64) K.free(h64); h64 = h; } else { if (h32) K.free(h32); h32 = h; }
  }
}
// |h32 − h64| / √(h_ii h_jj) (≥ Σ|x_i x_j|·2/N by Cauchy–Schwarz: a stricter scale than the bound's)
let maxRel = 0;
for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) {
  const s = Math.sqrt(h64![i * n + i]! * h64![j * n + j]!);
  maxRel = Math.max(maxRel, Math.abs(h32![i * n + j]! - h64![i * n + j]!) / s);
}
console.log(`n=${n} tokens=${nTok} t${threads} ${variant}: Hessian ms f64 ${ms.f64!.map((v) => v.toFixed(0)).join(",")} f32 ${ms.f32!.map((v) => v.toFixed(0)).join(",")}; max |Δ|/√(HiiHjj) ${maxRel.toExponential(2)} (load ${loadavg()[0]!.toFixed(2)})`);
const quant = new RegistryQuantizer("int4:g128:asym");
const res = [];
for (const [name, h] of [["f64", h64!], ["f32", h32!]] as const) {
  const timings = { factorMs: 0, columnsMs: 0 };
  const r = gptqQuantize(w, n, n, h, quant, { overwriteHessian: true, timings, kernels: K, updates: name });
  console.log(`gptq, ${name} Hessian and updates: factor ${timings.factorMs} ms, columns ${timings.columnsMs} ms, loss ${r.loss.toExponential(6)} (load ${loadavg()[0]!.toFixed(2)})`);
  res.push(r);
}
let differ = 0;
for (let i = 0; i < res[0]!.q.length; i++) if (res[0]!.q[i] !== res[1]!.q[i]) differ++;
console.log(`codes differing, f32 vs f64 path: ${differ} of ${res[0]!.q.length}; loss f32/f64 − 1 = ${(res[1]!.loss / res[0]!.loss - 1).toExponential(2)}`);
be.dispose();
