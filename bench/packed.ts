// Packed quantlab specs vs llama.cpp block types on the WASM backend: decode tok/s of a synthetic
// Llama-shaped model whose linears are packed-spec QuantizedTensors — with f32 activations (the fused
// fake-quant kernels K_U4G / K_U8G / K_LUT*) and with `packedActivations: "q8"` (the integer forms) — against
// the same model in Q4_0 / Q8_0 / TQ2_0 on quantlab's ggml kernels, at 1 and 2 threads; the ternary spec
// also against llama.cpp's own TQ2_0 decode (node-llama-cpp, same shapes, same run). Bandwidth share per row:
// bytes streamed per token × tok/s ÷ the same run's read-bandwidth probe (bench/_bandwidth.ts). Plus the
// resident bytes of the prepared weights and the peak RSS of a process that loads the packed model from its
// quantized safetensors file (bench/_rss-child.ts), against the file's size.
//
// Filters (the shared machine: keep runs short): `node dist/bench/run.js packed.js:int4` runs only the specs whose name
// starts with a section word (`packed.js:int4,nf4`); the words `q8` / `f32` keep only that activation mode's rows
// (`packed.js:int4,q8`: int4:g32:asym in q8 mode against Q4_0), `rss` / `norss` force or skip the peak-RSS children
// (a spec filter skips them unless `rss` is given). QUANTLAB_PACKED_SPECS=nf4:g64,mxfp4 (exact spec names) and
// QUANTLAB_PACKED_NO_RSS=1 do the same from the environment. The q8 rows time spec and peer as alternating pairs
// (QUANTLAB_PACKED_PAIRED_REPS pairs, default 7); the ternary rows against llama.cpp alternate with its runs
// (QUANTLAB_PACKED_CPP_REPS, default 5).
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { loadavg } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Tensor } from "../src/core/tensor.js";
import type { Weight } from "../src/core/weight.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import { GGML_TYPES, GgmlType } from "../src/ggml/types.js";
import { quantModelEntries } from "../src/io/quant-model.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { atomicWriteFile } from "../src/io/node/atomic.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../src/model/config.js";
import { Llama } from "../src/model/llama.js";
import type { Model } from "../src/model/weights.js";
import { quantizeTensor } from "../src/quant/tensor.js";
import { benchCacheDir, syntheticGguf } from "./_synthetic.js";
import { readBandwidthGBs } from "./_bandwidth.js";
import { openGgufFile } from "../src/io/node/gguf-file.js";
import { openLlamaCpp } from "../src/cli/commands/bench.js";
import { dataPath } from "../src/io/node/data.js";
import { fmt, stats, type BenchContext, type BenchSection } from "./types.js";
import { PACKED_SHAPE, packedRand } from "./_packed-model.js";

const SHAPE = PACKED_SHAPE;
const rand = packedRand;

/** The model with every linear as `what` (a ggml type or a spec); norms and the tied embedding f32. */
function model(c: ModelConfig, what: GgmlType | string): Model {
  const weights = new Map<string, Weight>();
  let seed = 1;
  for (const [name, shape] of expectedShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = name.endsWith("norm.weight") ? new Float32Array(n).fill(1) : rand(n, seed++);
    if (shape.length === 1 || name === TensorNames.tokenEmbd) weights.set(name, { kind: "dense", tensor: Tensor.fromF32(shape, v) });
    else if (typeof what === "string") weights.set(name, { kind: "quant", q: quantizeTensor(v, shape, what, { name }) });
    else {
      const t = GGML_TYPES[what];
      const data = new Uint8Array((n / t.blockSize) * t.bytesPerBlock);
      quantizeRow(what, v, data, n);
      weights.set(name, { kind: "ggml", type: what, shape, data });
    }
  }
  return { config: c, weights, source: { path: "synthetic", format: "memory" } };
}

/** A prepared decoder: `rep()` = ms per token of one run of `steps` tokens (after 4 warm-up tokens at creation). */
function decoder(m: Model, threads: number, steps: number, packedActivations: "f32" | "q8" = "f32"): { rep: () => number; dispose: () => void; resident: number; streamed: number; kernels: string } {
  const be = createNodeWasmBackend({ threads, packedActivations });
  try {
    const llama = new Llama(m, { backend: be, contextLength: steps + 8 });
    const all = be.listing();
    const rows = all.filter((r) => r.name.startsWith("blk."));
    const resident = rows.reduce((a, r) => a + r.bytes, 0);
    const streamed = all.reduce((a, r) => a + r.bytes, 0);
    const kernels = [...new Set(rows.map((r) => r.kernel + (r.fallback ? " (fallback!)" : "")))].join(", ");
    llama.forward(1, 0);
    for (let i = 1; i < 4; i++) llama.forward(1 + i, i); // warm-up (tier-up)
    const rep = () => {
      llama.reset();
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) llama.forward(1 + (i % 100), i);
      return (performance.now() - t0) / steps;
    };
    return { rep, dispose: () => { llama.dispose(); be.dispose(); }, resident, streamed, kernels };
  } catch (e) {
    be.dispose();
    throw e;
  }
}

/** Decode tok/s (best of 3 runs of `steps` tokens after 4 warm-up tokens), the prepared linears' bytes and
 * the bytes a token streams (every prepared matrix: the linears and the tied f32 output). */
function decodeTokS(m: Model, threads: number, steps: number, packedActivations: "f32" | "q8" = "f32"): { tokS: number; resident: number; streamed: number; kernels: string } {
  const d = decoder(m, threads, steps, packedActivations);
  try {
    const times: number[] = [];
    for (let rep = 0; rep < 3; rep++) times.push(d.rep());
    return { tokS: 1000 / stats(times).min, resident: d.resident, streamed: d.streamed, kernels: d.kernels };
  } finally {
    d.dispose();
  }
}

const PAIRED_REPS = Math.max(1, Number(process.env.QUANTLAB_PACKED_PAIRED_REPS ?? 7));

/** The spec's q8 decode and its quantlab peer's, both decoders live and their runs alternating (`reps` pairs,
 * best of each), so both see the same load: on the shared 2-core machine the second core's occupant moves a run
 * timed minutes apart by ±30%. */
function pairedTokS(spec: Model, peer: Model, threads: number, steps: number, reps: number): { a: ReturnType<typeof decodeTokS>; bTokS: number; pairRatios: number[] } {
  const da = decoder(spec, threads, steps, "q8");
  try {
    const db = decoder(peer, threads, steps);
    try {
      const ta: number[] = [], tb: number[] = [], pairRatios: number[] = [];
      for (let r = 0; r < reps; r++) {
        const b = db.rep(), a = da.rep();
        tb.push(b);
        ta.push(a);
        pairRatios.push(b / a);
      }
      return { a: { tokS: 1000 / stats(ta).min, resident: da.resident, streamed: da.streamed, kernels: da.kernels }, bTokS: 1000 / stats(tb).min, pairRatios };
    } finally {
      db.dispose();
    }
  } finally {
    da.dispose();
  }
}

/** llama.cpp's decode tok/s of a GGUF at each thread count (best of `reps` runs of `steps` tokens after a warm-up),
 * and, when `ours` is given, quantlab's decode at that thread count with its runs alternating with llama.cpp's
 * (ours, theirs, ours, theirs …: both sides see the same load on a shared machine). */
async function llamaCppTokS(path: string, threadsList: number[], steps: number, reps: number, ours?: (threads: number) => ReturnType<typeof decoder>): Promise<{ tokS: Map<number, number>; ourTokS: Map<number, number>; cpuTokS: Map<number, [number, number]>; version: string } | { error: string }> {
  let cpp: Awaited<ReturnType<typeof openLlamaCpp>>;
  try { cpp = await openLlamaCpp(path); } catch (e) { return { error: (e as Error).message.split("\n")[0]! }; }
  try {
    const tokS = new Map<number, number>(), ourTokS = new Map<number, number>();
    // tok/s by the process's CPU time (user + system) per token, [ours, llama.cpp]: at 1 thread a yardstick that the
    // other jobs of a shared machine disturb less than wall time (llama.cpp's decode runs while this thread waits)
    const cpuTokS = new Map<number, [number, number]>();
    const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
    for (const threads of threadsList) {
      const s = await cpp.session({ threads, context: (reps + 1) * steps + 16, batch: 16 });
      const d = ours?.(threads);
      try {
        let best = Infinity, ourBest = Infinity, cpuBest = Infinity, ourCpuBest = Infinity;
        await s.prefill([300]);
        await s.decode(4); // warm-up
        for (let rep = 0; rep < reps; rep++) {
          if (d) {
            const c0 = process.cpuUsage();
            ourBest = Math.min(ourBest, d.rep());
            ourCpuBest = Math.min(ourCpuBest, cpuMs(process.cpuUsage(c0)) / steps);
          }
          await s.prefill([300]);
          const c0 = process.cpuUsage();
          best = Math.min(best, (await s.decode(steps)) / steps);
          cpuBest = Math.min(cpuBest, cpuMs(process.cpuUsage(c0)) / steps);
        }
        tokS.set(threads, 1000 / best);
        if (d) ourTokS.set(threads, 1000 / ourBest);
        if (d) cpuTokS.set(threads, [1000 / ourCpuBest, 1000 / cpuBest]);
      } finally {
        d?.dispose();
        await s.close();
      }
    }
    return { tokS, ourTokS, cpuTokS, version: cpp.version };
  } finally {
    await cpp.close();
  }
}

async function fileTensorBytes(path: string): Promise<number> {
  const f = await openGgufFile(path);
  try { return f.tensors.reduce((a, t) => a + t.byteLength, 0); } finally { await f.close(); }
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const pairNotes: string[] = [];
  const c = ctx.quick ? { ...SHAPE, nLayers: 2 } : SHAPE;
  const steps = ctx.quick ? 4 : 16;
  // [spec, ggml peer, issue 11 target for the q8 row: spec tok/s ≥ target × the peer's]
  const all: [string, GgmlType, number][] = [
    ["int4:g32:asym", GgmlType.Q4_0, 0.9], ["int8:channel", GgmlType.Q8_0, 0.9],
    ["nf4:g64", GgmlType.Q4_0, 0.8], ["mxfp4", GgmlType.Q4_0, 0.8], ["ternary:channel", GgmlType.TQ2_0, 1],
  ];
  // QUANTLAB_PACKED_SPECS=nf4:g64,mxfp4 runs only those pairs; section words (file header) filter by spec prefix and mode
  const only = process.env.QUANTLAB_PACKED_SPECS?.split(",");
  const words = ctx.sections ?? [];
  const modeWords = new Set(["q8", "f32", "rss", "norss"]);
  const prefixes = words.filter((w) => !modeWords.has(w));
  const modes = (["f32", "q8"] as const).filter((a) => !words.includes(a === "f32" ? "q8" : "f32"));
  const pairs = all.filter(([s]) => (!only || only.includes(s)) && (prefixes.length === 0 || prefixes.some((p) => s.startsWith(p))));
  if (pairs.length === 0) throw new Error(`bench packed: no spec matches ${[...(only ?? []), ...prefixes].join(", ")} (specs: ${all.map(([s]) => s).join(", ")})`);
  const skipRss = words.includes("norss") || process.env.QUANTLAB_PACKED_NO_RSS === "1" || ((prefixes.length > 0 || only !== undefined) && !words.includes("rss"));
  const focused = pairs.length < all.length || modes.length < 2 || skipRss;
  const bwMiB = ctx.quick ? 256 : 1024;
  const streamGBs = readBandwidthGBs(bwMiB);
  const load1 = () => loadavg()[0]!.toFixed(1);
  notes.push(`read bandwidth yardstick (same run, WASM SIMD streaming f32 sum over ${bwMiB} MiB, 1 thread, bench/_bandwidth.ts as bench/model.ts): **${fmt(streamGBs)} GB/s**. "GB/s / % bw" = bytes streamed per token (every prepared matrix: the linears and the tied f32 output; llama.cpp: the file's tensor bytes) × tok/s, and its share of that yardstick`);
  const linearBytes = (m: Model) => { let b = 0; for (const [k, w] of m.weights) if (k.startsWith("blk.") && w.kind !== "dense") b += w.kind === "quant" ? w.q.storageBits / 8 : w.data.length; return b; };
  const child = join(dirname(fileURLToPath(import.meta.url)), "_rss-child.js");
  const hwm = (path: string): number | undefined => {
    const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", child, path, "wasm"], { encoding: "utf8" });
    return r.status === 0 ? (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { hwmKiB: number }).hwmKiB * 1024 : undefined;
  };
  // the same process loading stories260K (1 MB): Node, the wasm module and the backend's scratch
  const baseline = skipRss ? 0 : hwm(dataPath("stories260K", "stories260K.bin")) ?? 0;
  if (!skipRss) notes.push(`baseline peak RSS (the same child loading stories260K, ~1 MB): ${fmt(baseline / 2 ** 20, 1)} MiB`);
  const bw = (bytes: number, tokS: number) => `${fmt((bytes * tokS) / 1e9, 1)} / ${fmt((100 * bytes * tokS) / 1e9 / streamGBs, 0)}%`;
  const verdict = (ratio: number, target: number) => `≥ ${target}: ${ratio >= target ? "met" : "not met"}`;
  for (const [spec, type, target] of pairs) {
    const mq = model(c, spec);
    const mg = model(c, type);
    const q8 = new Map<number, ReturnType<typeof decodeTokS>>();
    // ternary: quantlab's Q4_0 (the 4-bit peer, 0.5625 B/weight) as a second yardstick in the same run
    const m4 = type === GgmlType.TQ2_0 ? model(c, GgmlType.Q4_0) : undefined;
    for (const threads of [1, 2]) {
      const b = decodeTokS(mg, threads, steps);
      for (const acts of modes) {
        const load = load1();
        // q8 rows: spec and peer measured as a pair (runs alternating, both decoders live); f32 rows: one after the other
        const paired = acts === "q8" ? pairedTokS(mq, mg, threads, steps, PAIRED_REPS) : undefined;
        const a = paired ? paired.a : decodeTokS(mq, threads, steps, acts);
        const bTokS = paired ? paired.bTokS : b.tokS;
        if (acts === "q8") q8.set(threads, a);
        // paired rows: the median of the per-pair ratios (one slow run on either side moves a best-of ratio, not this)
        const ratio = paired ? stats(paired.pairRatios).median : a.tokS / bTokS;
        if (paired) pairNotes.push(`${spec} q8 vs ${GgmlType[type]}, ${threads} thread(s): per-pair ratios ${paired.pairRatios.map((r) => fmt(r, 2)).join(", ")}`);
        rows.push([spec, acts, `${GgmlType[type]} (quantlab)`, threads, fmt(a.tokS, 1), fmt(bTokS, 1), fmt(ratio, 2), acts === "q8" && type !== GgmlType.TQ2_0 ? verdict(ratio, target) : "—",
          bw(a.streamed, a.tokS), bw(b.streamed, bTokS), `${fmt(a.resident / 2 ** 20, 1)} / ${fmt(linearBytes(mq) / 2 ** 20, 1)}`, `${fmt(b.resident / 2 ** 20, 1)} / ${fmt(linearBytes(mg) / 2 ** 20, 1)}`, `${load} → ${load1()}`]);
        if (threads === 1) notes.push(`${spec} (${acts} activations) runs on ${a.kernels}${acts === "f32" ? `; ${GgmlType[type]} on ${b.kernels}` : ""}`);
      }
      if (m4 && q8.has(threads)) {
        const load = load1();
        const b4 = decodeTokS(m4, threads, steps), a = q8.get(threads)!;
        rows.push([spec, "q8", "Q4_0 (quantlab)", threads, fmt(a.tokS, 1), fmt(b4.tokS, 1), fmt(a.tokS / b4.tokS, 2), "—",
          bw(a.streamed, a.tokS), bw(b4.streamed, b4.tokS), `${fmt(a.resident / 2 ** 20, 1)} / ${fmt(linearBytes(mq) / 2 ** 20, 1)}`, `${fmt(b4.resident / 2 ** 20, 1)} / ${fmt(linearBytes(m4) / 2 ** 20, 1)}`, `${load} → ${load1()}`]);
      }
    }
    if (type === GgmlType.TQ2_0 && q8.size > 0) {
      // llama.cpp's TQ2_0 on the same shapes: every linear TQ2_0, the tied embedding F32 as in the packed model
      const gguf = await syntheticGguf(GgmlType.TQ2_0, c, benchCacheDir(), undefined, { embedding: GgmlType.F32 });
      const fileBytes = await fileTensorBytes(gguf.path);
      const load = load1();
      // quantlab's q8 decode measured again, its runs alternating with llama.cpp's (QUANTLAB_PACKED_CPP_REPS, default 5)
      const reps = Math.max(1, Number(process.env.QUANTLAB_PACKED_CPP_REPS ?? 5));
      const cpp = await llamaCppTokS(gguf.path, [1, 2], steps, reps, (threads) => decoder(mq, threads, steps, "q8"));
      if ("error" in cpp) notes.push(`llama.cpp TQ2_0 not measured: ${cpp.error}`);
      else {
        for (const [threads, tokS] of cpp.tokS) {
          const a = q8.get(threads)!, ours = cpp.ourTokS.get(threads)!;
          rows.push([spec, "q8", "TQ2_0 (llama.cpp)", threads, fmt(ours, 1), fmt(tokS, 1), fmt(ours / tokS, 2), verdict(ours / tokS, target),
            bw(a.streamed, ours), bw(fileBytes, tokS), `${fmt(a.resident / 2 ** 20, 1)} / ${fmt(linearBytes(mq) / 2 ** 20, 1)}`, `file ${fmt(fileBytes / 2 ** 20, 1)}`, `${load} → ${load1()}`]);
        }
        const c1 = cpp.cpuTokS.get(1);
        if (c1) notes.push(`${spec} q8 vs llama.cpp TQ2_0 at 1 thread by CPU time per token (same runs; the process's user + system time, less disturbed by other jobs than wall time): ${fmt(c1[0], 1)} vs ${fmt(c1[1], 1)} tok/s = **${fmt(c1[0] / c1[1], 2)}**`);
        notes.push(`llama.cpp: ${cpp.version} CPU build, the same shapes as a GGUF (every linear TQ2_0, tied embedding F32; bench/_synthetic.ts), decode = best of ${reps} runs of ${steps} tokens after a warm-up; the spec tok/s of its rows is quantlab's q8 decode measured again in the same loop, each of its ${reps} runs just before one of llama.cpp's (same load on both)`);
      }
    }
    if (skipRss) continue;
    // peak RSS of a process loading the packed model from its file (lazily, released after prepare)
    const path = join(benchCacheDir(), `packed-${c.nLayers}l-${spec.replace(/:/g, "_")}.safetensors`);
    const { entries, metadata } = quantModelEntries(mq);
    await atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata));
    const size = statSync(path).size;
    const peak = hwm(path);
    notes.push(peak === undefined ? `${spec}: RSS child failed` : `${spec}: file ${fmt(size / 2 ** 20, 1)} MiB (f32 tied embedding included); loading it and decoding one token peaks at ${fmt(peak / 2 ** 20, 1)} MiB RSS, ${fmt((peak - baseline) / 2 ** 20, 1)} MiB above the baseline = ${fmt((peak - baseline) / size, 2)}× the file`);
  }
  notes.push(`model: ${c.name}, ${c.nLayers} layers, vocab ${c.vocabSize}, tied f32 embedding; decode = best of 3 runs of ${steps} tokens after 4 warm-up tokens; q8 rows against a quantlab peer: spec and peer decoders both live, ${PAIRED_REPS} pairs of runs alternating (peer, then spec), best of each for the tok/s columns, ratio = the median of the per-pair ratios (QUANTLAB_PACKED_PAIRED_REPS) — the peer tok/s of those rows is from the pairs, not the f32 row's`);
  notes.push(...pairNotes);
  if (focused) notes.push(`Focused run: specs ${pairs.map(([sp]) => sp).join(", ")}; activations ${modes.join(", ")}; peak-RSS children ${skipRss ? "skipped" : "run"} (section words / QUANTLAB_PACKED_SPECS / QUANTLAB_PACKED_NO_RSS); the rows left out keep no figure here — see the last full run in git history`);
  notes.push("activations f32 = the default fused K_U4G / K_U8G / K_LUT* kernels (the fake-quant numbers: stories260K logits within 1e-4); q8 = `packedActivations: \"q8\"`, the spec repacked at load onto integer kernels with Q8 activations as the ggml peers use (not the fake-quant numbers; 4-bit tables 4 rows interleaved as Q4_0's, nf4's levels on a 7-bit grid: docs/kernels.md)");
  notes.push("the quantlab peers are its own ggml kernels (Q4_0 / Q8_0 blocks in place, 4 rows interleaved; TQ2_0 repacked to i8·s32, 1 B/weight); target = issue 11's decode target for the q8 row (ternary: against llama.cpp's TQ2_0)");
  notes.push("load = the 1-minute load average before → after the row (2 cores shared with other jobs: rows at load ≫ 1, 2-thread rows most, understate both sides)");
  notes.push("resident = bytes of the prepared linears in wasm memory; packed linears = their QuantizedTensor storage (codes + f16 scales + zeros), the file's share");
  return [{
    title: "Packed spec layouts vs ggml blocks: decode tok/s (WASM backend)",
    table: { headers: ["spec", "activations", "peer", "threads", "spec tok/s", "peer tok/s", "ratio", "target (issue 11)", "spec GB/s / % bw", "peer GB/s / % bw", "spec resident / packed linears (MiB)", "peer resident / file linears (MiB)", "load"], rows },
    notes,
  }];
}
