// Issue 15 ("machine speed"): whole-model k-quant encoding through the real CLI, `quantlab convert --type
// Q4_K / Q6_K` and `quantlab quantize --type Q4_K_M`, of a synthetic F16 model with Llama-3.2-1B's matrix
// shapes (dim 2048, FFN 8192) scaled down to one layer and an 8192-token vocabulary, so that the
// TypeScript rows finish in about a minute. Encoders: the TypeScript codecs on the worker pool (how
// k-quants ran before, QUANTLAB_WASM_QUANTIZE=ts-pool) and the WASM encoders (assembly/kquants.ts), at
// 1 and 2 threads; each run is a child process (wall time, file read and write included), and the
// outputs of the two encoders are compared byte for byte. The peer, llama-quantize, is run when a binary
// is on PATH; otherwise the issue's figures are quoted.
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GgmlType } from "../src/ggml/types.js";
import { openGgufFile } from "../src/io/node/gguf-file.js";
import { benchCacheDir, LLAMA_1B_SHAPE, syntheticGguf } from "./_synthetic.js";
import { type BenchContext, type BenchSection, fmt } from "./types.js";

const BIN = fileURLToPath(new URL("../../bin/quantlab.js", import.meta.url));
/** values of the 1.1B model the issue timed (its llama-quantize figures: 66.9 s at 1 thread, 36.2 s at 2) */
const ISSUE_VALUES = 1.1e9;

function runCli(args: string[], env: Record<string, string>): { s: number; err: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, QUANTLAB_PROGRESS: "0", ...env }, timeout: 1_800_000 });
  const s = (performance.now() - t0) / 1000;
  return { s, err: r.status === 0 ? "" : `exit ${r.status}: ${(r.stderr ?? "").trim().split("\n").pop()}` };
}

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex").slice(0, 12);
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const config = { ...LLAMA_1B_SHAPE, nLayers: 1, vocabSize: ctx.quick ? 1024 : 8192, hiddenDim: ctx.quick ? 2048 : 8192, name: "synthetic Llama-3.2-1B shapes, 1 layer" };
  const file = await syntheticGguf(GgmlType.F16, config, undefined, ctx.log);
  const f = await openGgufFile(file.path);
  const values = f.tensors.filter((t) => t.shape.length === 2).reduce((a, t) => a + t.shape[0]! * t.shape[1]!, 0);
  await f.close();
  const out = join(benchCacheDir(), "kquant-encode-out.gguf");
  const targets: [string, string[]][] = [
    ["convert --type Q4_K", ["convert", file.path, out, "--type", "Q4_K"]],
    ["convert --type Q6_K", ["convert", file.path, out, "--type", "Q6_K"]],
    ["quantize --type Q4_K_M", ["quantize", file.path, "--type", "Q4_K_M", "-o", out]],
  ];
  const rows: (string | number)[][] = [];
  for (const [label, args] of targets) {
    const hashes = new Map<string, string>();
    for (const threads of [1, 2]) {
      for (const [enc, env] of [["TS codecs on the pool", { QUANTLAB_WASM_QUANTIZE: "ts-pool" }], ["WASM encoders", {}]] as const) {
        const load = loadavg()[0]!.toFixed(2);
        const r = runCli([...args, "--threads", String(threads)], env);
        if (r.err) throw new Error(`${label} (${enc}, ${threads} threads): ${r.err}`);
        const h = sha(out);
        const bytes = statSync(out).size;
        hashes.set(`${enc}/${threads}`, h);
        const rate = values / 1e6 / r.s;
        rows.push([label, enc, threads, fmt(r.s, 1), fmt(rate, 2), fmt(ISSUE_VALUES / 1e6 / rate, 0), (bytes / 1e6).toFixed(1), h, load]);
        ctx.log(`  ${label} ${enc} t${threads}: ${fmt(r.s, 1)} s (${fmt(rate, 2)} M values/s), sha ${h}`);
      }
    }
    if (new Set(hashes.values()).size !== 1) throw new Error(`${label}: the encoders wrote different files (${[...hashes].join(", ")})`);
  }
  rmSync(out, { force: true });
  const peer = spawnSync("which", ["llama-quantize"], { encoding: "utf8" });
  const peerNote = peer.status === 0 && peer.stdout.trim()
    ? `llama-quantize is at ${peer.stdout.trim()} but this bench does not run it yet.`
    : "Peer: no llama-quantize binary on this machine (`which llama-quantize` finds none; node-llama-cpp 3.21.1 ships only its addon, no tools), so the issue's figures stand in: llama-quantize Q4_K_M of the 1.1B F16 model, 66.9 s at 1 thread and 36.2 s at 2 (same class of machine, not this run). Compare them with the projected column.";
  return [{
    title: "Issue 15: k-quant encoding of a synthetic 1B-shaped F16 model (1 layer), TS codecs vs WASM encoders, 1 and 2 threads",
    table: { headers: ["command", "encoder", "threads", "wall s", "M values/s", "projected s for 1.1B values", "output MB", "sha256 (first 12)", "load avg at start"], rows },
    notes: [
      `Model: ${config.name}: dim ${config.dim}, FFN ${config.hiddenDim}, vocab ${config.vocabSize}, ${config.nLayers} layer, F16, ${(values / 1e6).toFixed(1)} M matrix values (${(file.bytes / 1e9).toFixed(2)} GB); random weights (bench/_synthetic.ts tiles). Llama-3.2-1B has 16 layers and a 128256-token vocabulary (1.24 B values): the projected column scales the measured rate to the issue's 1.1 B values.`,
      "Wall time of one child process per row (`node bin/quantlab.js …`, QUANTLAB_PROGRESS=0): reading the F16 file, encoding, writing the GGUF. `TS codecs on the pool` is QUANTLAB_WASM_QUANTIZE=ts-pool, how k-quants were encoded before issue 15; the same sha256 in every row of a command shows the bytes do not depend on the encoder or the thread count.",
      "Q4_K_M is quantlab's llama.cpp mix (ggml/mix.ts): Q4_K with Q6_K for attn_v/ffn_down in some layers and for the output/embedding as llama.cpp chooses.",
      peerNote,
      "The machine is shared (2 cores, other jobs running): the load average column says how busy it was; 2-thread rows are the most affected.",
    ],
  }];
}
