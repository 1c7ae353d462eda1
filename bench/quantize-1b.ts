// Issue 15 ("quantize --type Q4_K_M of the 1B-shaped F16 model: ≤ 1.0× llama-quantize's time at the same
// thread count"): `quantlab quantize --type Q4_K_M / Q4_0 / Q8_0` of the full synthetic Llama-3.2-1B-shaped
// F16 GGUF (dim 2048, FFN 8192, 16 layers, vocab 128256; bench/_synthetic.ts), at 1 and 2 threads, one child
// process per row (wall time: reading the 2.5 GB F16 file, the finite checks, encoding, writing the GGUF).
// The peer is quoted, not run: there is no llama-quantize binary on this machine.
import { spawnSync } from "node:child_process";
import { rmSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GgmlType } from "../src/ggml/types.js";
import { benchCacheDir, LLAMA_1B_SHAPE, syntheticGguf } from "./_synthetic.js";
import { type BenchContext, type BenchSection, fmt } from "./types.js";

const BIN = fileURLToPath(new URL("../../bin/quantlab.js", import.meta.url));
/** the llama-quantize figures on this machine, seconds at [1, 2] threads */
const PEER: Record<string, [number, number]> = { Q4_K_M: [66.9, 36.2], Q8_0: [7.9, 7.1], Q4_0: [5.5, 3.9] };

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const file = await syntheticGguf(GgmlType.F16, LLAMA_1B_SHAPE, undefined, ctx.log);
  const out = join(benchCacheDir(), "quantize-1b-out.gguf");
  const rows: (string | number)[][] = [];
  // QUANTLAB_QUANTIZE_TYPES=Q4_0[,Q8_0…] / QUANTLAB_QUANTIZE_THREADS=1[,2]: only those rows (A/Bs of one preset)
  const all = ctx.quick ? ["Q8_0"] : ["Q4_K_M", "Q4_0", "Q8_0"];
  const pick = (env: string | undefined, from: string[], what: string): string[] => {
    if (env === undefined || env === "") return from;
    const want = env.split(",").map((s) => s.trim());
    const bad = want.filter((t) => !from.includes(t));
    if (bad.length) throw new Error(`${what}=${env}: ${bad.join(", ")} not among ${from.join(", ")}`);
    return want;
  };
  const types = pick(process.env.QUANTLAB_QUANTIZE_TYPES, all, "QUANTLAB_QUANTIZE_TYPES");
  const threadList = pick(process.env.QUANTLAB_QUANTIZE_THREADS, ["1", "2"], "QUANTLAB_QUANTIZE_THREADS").map(Number);
  for (const type of types) {
    for (const threads of threadList) {
      const load = loadavg()[0]!.toFixed(2);
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [BIN, "quantize", file.path, "--type", type, "-o", out, "--threads", String(threads)], { encoding: "utf8", env: { ...process.env, QUANTLAB_PROGRESS: "0" }, timeout: 1_800_000 });
      const s = (performance.now() - t0) / 1000;
      if (r.status !== 0) throw new Error(`quantize ${type} t${threads}: exit ${r.status}: ${(r.stderr ?? "").trim().split("\n").pop()}`);
      const peer = PEER[type]![threads - 1]!;
      rows.push([type, threads, fmt(s, 1), fmt(peer, 1), `${fmt(s / peer, 2)}×`, (statSync(out).size / 1e6).toFixed(0), load, loadavg()[0]!.toFixed(2)]);
      ctx.log(`  quantize ${type} t${threads}: ${fmt(s, 1)} s (llama-quantize ${peer} s), load ${load}`);
    }
  }
  rmSync(out, { force: true });
  return [{
    title: "Issue 15: quantize the synthetic Llama-3.2-1B-shaped F16 model (16 layers), quantlab vs llama-quantize's quoted figures",
    table: { headers: ["--type", "threads", "quantlab wall s", "llama-quantize s (quoted)", "ratio", "output MB", "load avg at start", "load avg at end"], rows },
    notes: [
      `Model: ${LLAMA_1B_SHAPE.name}: dim 2048, FFN 8192, 16 layers, vocab 128256, tied embeddings, F16 (${(file.bytes / 1e9).toFixed(2)} GB), random weights tiled (bench/_synthetic.ts).`,
      "Wall time of one `node bin/quantlab.js quantize <f16.gguf> --type T -o out.gguf --threads N` child per row (QUANTLAB_PROGRESS=0): file read, finite checks, WASM encoders (assembly/kquants.ts, src/kernels/wasm/encoders.ts), atomic GGUF write (O_DIRECT, io/node/atomic.ts DirectFileSink) with fsync.",
      "Peer: no llama-quantize binary on this machine (node-llama-cpp 3.21.1 ships only its addon), so the issue's figures for llama-quantize on this machine stand in (Q4_K_M 66.9 / 36.2 s, Q8_0 7.9 / 7.1 s, Q4_0 5.5 / 3.9 s at 1 / 2 threads); they were not measured in this run.",
      "The machine is shared with other agents (2 cores): the load averages say how busy it was; wall times above the CPU time mean waiting for a core or for the disk.",
    ],
  }];
}
