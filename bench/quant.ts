// Quantize throughput per format family: quantizeTensor (round to nearest, codes packed, scales stored)
// on a (rows, 4096) f32 Gaussian weight; GB/s of f32 input. 64M values per spec (quick: 1M); specs whose
// calibration searches (mse, kl) run on 1/16 of that. One warm-up on a small tensor, then the best of the runs.
import { Rng } from "../src/core/rng.js";
import { quantizeTensor } from "../src/quant/tensor.js";
import { errorStats } from "../src/quant/metrics.js";
import { fmt, type BenchContext, type BenchSection } from "./types.js";

const SPECS: [family: string, spec: string][] = [
  ["int (sym)", "int8:channel"],
  ["int (affine)", "int4:g32:asym"],
  ["int (HQQ float zero)", "int4:g64:asymf"],
  ["int (group)", "int4:g32"],
  ["float", "fp8_e4m3:channel"],
  ["float", "fp8_e5m2:channel"],
  ["float", "fp4_e2m1:g32"],
  ["codebook", "nf4:g64"],
  ["codebook + double quant", "nf4:g64:dq"],
  ["ternary", "ternary:channel"],
  ["binary", "binary:channel"],
  ["log", "pow2:4bit:g32"],
  ["block (MX)", "mxfp4"],
  ["block (MX)", "mxint8"],
  ["block (NVFP4)", "nvfp4"],
  ["block (BFP)", "bfp8"],
  ["0-bit", "zero:g32"],
  ["stochastic rounding", "int4:g32:sr"],
  ["MSE clip search", "int3:g32:mse"],
  ["KL calibration", "int3:channel:kl"],
];

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const cols = 4096;
  const total = ctx.quick ? 1 << 20 : 1 << 26;
  const w = new Rng(1).fillNormal(new Float32Array(total), 0.02);
  const rows: (string | number)[][] = [];
  for (const [family, spec] of SPECS) {
    const slow = /mse|kl/.test(spec);
    const n = slow ? total / 16 : total;
    const x = w.subarray(0, n);
    quantizeTensor(x.subarray(0, cols * 16), [16, cols], spec); // warm-up
    let best = Infinity, bestCpu = Infinity;
    let q = quantizeTensor(x.subarray(0, cols), [1, cols], spec);
    const reps = ctx.quick || n >= 1 << 26 ? 1 : 2;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      q = quantizeTensor(x, [n / cols, cols], spec, { seed: r });
      const c = process.cpuUsage(c0);
      best = Math.min(best, performance.now() - t0);
      bestCpu = Math.min(bestCpu, (c.user + c.system) / 1e3);
    }
    const sqnr = errorStats(x.subarray(0, 1 << 20), q.dequantize().subarray(0, 1 << 20)).sqnrDb;
    rows.push([family, spec, (n / 2 ** 20).toFixed(0) + "M", fmt(best, 0), fmt((n * 4) / 1e6 / best, 3), fmt((n * 4) / 1e6 / bestCpu, 3), fmt(n / 1e3 / bestCpu, 1), fmt(q.bitsPerWeight, 3), fmt(sqnr, 2)]);
    ctx.log(`quant ${spec}: ${fmt(best, 0)} ms`);
  }
  return [{
    title: "Quantize throughput per format family (quant/quantizeTensor, TypeScript)",
    table: { headers: ["family", "spec", "values", "ms (wall)", "GB/s (f32 in, wall)", "GB/s (f32 in, CPU time)", "M values/s (CPU time)", "bits/weight", "SQNR dB (first 1M)"], rows },
    notes: [
      "Round to nearest: calibration + scale storage + encode + bit packing, one thread. Input: Gaussian σ = 0.02, rows of 4096.",
      "Level formats (fp8/fp6/fp4, NF4, ternary, binary, log, MX elements) encode inline by binary search over the format's sorted values (ties to the even code, the registry's exact rule; test/quant/tensor-encode.test.ts checks every code against the scalar encode); integer grids use inline arithmetic.",
      "CPU-time columns divide by this process's user+system CPU time, which is what the code costs when the machine is shared (wall time also counts waiting for a core: see the load average above).",
      "MSE (110 clip ratios) and KL (histogram thresholds) calibration run on 1/16 of the values.",
    ],
  }];
}
