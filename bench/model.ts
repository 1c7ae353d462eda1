// Model-level speed next to llama.cpp (issues 2 and 4): prefill and decode tokens/s of quantlab's WASM
// backend and of llama.cpp (node-llama-cpp, CPU build) on the same GGUF in the same process, runs
// alternating; stories260K and a synthetic model of Llama-3.2-1B's shapes in F32, F16, Q8_0, Q4_0, Q4_K
// and Q6_K at 1 and 2 threads; weight GB/s against a same-run memory-bandwidth probe; peak RSS of
// loading the F16 model (child process, VmHWM); whole-model quantization throughput.
// Sections: f32, rss, quantize, types; pick some with `node dist/bench/run.js model:rss,types` (or
// QUANTLAB_BENCH_SECTIONS=rss,types); default all. QUANTLAB_BENCH_TYPES=F16,Q6_K limits the types section.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadavg } from "node:os";
import { GgmlType, ggmlTypeName } from "../src/ggml/types.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import { f16ArrayToF32 } from "../src/core/f16.js";
import { openGgufFile } from "../src/io/node/gguf-file.js";
import { dataPath } from "../src/io/node/data.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import {
  benchPrompt, openLlamaCpp, openQuantlabSession, runAlternating, type LlamaCppModel, type SpeedFigures, type SpeedSession,
} from "../src/cli/commands/bench.js";
import { syntheticGguf } from "./_synthetic.js";
import { readBandwidthGBs } from "./_bandwidth.js";
import { type BenchContext, type BenchSection, fmt, stats } from "./types.js";

const GB = 1e9;
const load1 = (): string => loadavg()[0]!.toFixed(2);

function wanted(ctx: BenchContext, name: string): boolean {
  const f = ctx.sections?.length ? ctx.sections : process.env.QUANTLAB_BENCH_SECTIONS?.split(",");
  return !f || f.length === 0 || f.some((s) => name.includes(s.trim()));
}

/** Same-run memory bandwidth: WASM SIMD streaming read of 1 GiB (f32 sum), best of 5, 1 thread. */
function bandwidth(ctx: BenchContext): number {
  return readBandwidthGBs(ctx.quick ? 256 : 1024);
}

interface Pair { ours: SpeedFigures; theirs?: SpeedFigures; load: string }

const measured = new Map<string, Promise<{ rows: Map<number, Pair>; weightBytes: number; cppNote?: string }>>();

/** quantlab (backend with `maxThreads` threads) and llama.cpp on one file; one alternating run per thread
 * count. Memoized per file and settings, so sections that show the same model share one measurement. */
function measure(path: string, threadsList: number[], prompt: number, gen: number, reps: number, ctx: BenchContext): Promise<{ rows: Map<number, Pair>; weightBytes: number; cppNote?: string }> {
  const key = JSON.stringify([path, threadsList, prompt, gen, reps]);
  let m = measured.get(key);
  if (!m) {
    m = measureOnce(path, threadsList, prompt, gen, reps, ctx);
    measured.set(key, m);
  }
  return m;
}

async function measureOnce(path: string, threadsList: number[], prompt: number, gen: number, reps: number, ctx: BenchContext): Promise<{ rows: Map<number, Pair>; weightBytes: number; cppNote?: string }> {
  const context = prompt + gen + 8;
  const maxThreads = Math.max(...threadsList);
  const q = await openQuantlabSession(path, { threads: maxThreads, context, batch: prompt, backend: "wasm" });
  let cpp: LlamaCppModel | undefined;
  let cppNote: string | undefined;
  try {
    cpp = await openLlamaCpp(path);
  } catch (e) {
    cppNote = (e as Error).message;
  }
  const rows = new Map<number, Pair>();
  try {
    for (const threads of threadsList) {
      q.setThreads(threads);
      const sessions: SpeedSession[] = [q];
      const cs = cpp ? await cpp.session({ threads, context, batch: prompt }) : undefined;
      if (cs) sessions.push(cs);
      const load = load1();
      const tokens = benchPrompt(q.llama.config.vocabSize, prompt);
      const [ours, theirs] = await runAlternating(sessions, tokens, gen, reps);
      await cs?.close();
      rows.set(threads, { ours: ours!, theirs, load: `${load}→${load1()}` });
      ctx.log(`    t${threads}: quantlab prefill ${fmt(ours!.prefill.median)} decode ${fmt(ours!.decode.median)} tok/s; llama.cpp ${theirs ? `${fmt(theirs.prefill.median)} / ${fmt(theirs.decode.median)}` : "—"} (load ${load1()})`);
    }
  } finally {
    await q.close();
    await cpp?.close();
  }
  return { rows, weightBytes: q.weightBytes, cppNote };
}

const ratio = (a: number, b: number | undefined): string => (b === undefined ? "—" : `${fmt(a / b)}×`);

async function f32Section(ctx: BenchContext): Promise<BenchSection> {
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const prompt = ctx.quick ? 32 : 128;
  const gen = ctx.quick ? 16 : 64;
  const s260 = dataPath("ggml", "stories260K", "stories260K-F32.gguf");
  ctx.log("  stories260K F32");
  const a = await measure(s260, [1], prompt, gen, ctx.quick ? 2 : 5, ctx);
  const syn = await syntheticGguf(GgmlType.F32, undefined, undefined, ctx.log);
  ctx.log("  synthetic 1B F32");
  const bPrompt = ctx.quick ? 16 : 32, bGen = ctx.quick ? 4 : 16;
  const b = await measure(syn.path, [1, 2], bPrompt, bGen, ctx.quick ? 1 : 2, ctx);
  for (const [label, m, p, g] of [["stories260K (llama.cpp's F32 GGUF)", a, prompt, gen], ["synthetic Llama-3.2-1B shapes, F32", b, bPrompt, bGen]] as const) {
    for (const [threads, r] of m.rows) {
      rows.push([label, threads, `${p} / ${g}`, fmt(r.ours.prefill.median), r.theirs ? fmt(r.theirs.prefill.median) : "—", ratio(r.ours.prefill.median, r.theirs?.prefill.median),
        fmt(r.ours.decode.median), r.theirs ? fmt(r.theirs.decode.median) : "—", ratio(r.ours.decode.median, r.theirs?.decode.median), r.load]);
    }
    if (m.cppNote) notes.push(`llama.cpp not measured: ${m.cppNote}`);
  }
  notes.push(
    "quantlab: WASM backend (relaxed-SIMD build when V8 validates it), weights read from the GGUF straight into wasm memory (sharded over several 4 GiB memories for the 1B F32 model). llama.cpp: node-llama-cpp's prebuilt CPU binaries, same thread count, same file, runs alternating with quantlab's in this process.",
    "tok/s are medians of the timed runs after a warm-up (a 16-token prefill and 4 decoded tokens on each engine). Prefill = one batch of the prompt from an empty cache; decode = greedy tokens after it.",
    `The synthetic model (random weights, ${(syn.bytes / GB).toFixed(2)} GB) uses a shorter prompt/decode (${bPrompt}/${bGen}) and 2 runs to keep the whole bench near 20 minutes; it is the same measurement as its rows in the issue-4 table.`,
    "load = the 1-minute load average before → after the row (the machine has 2 cores shared with other jobs: rows measured at load ≫ 1 are not comparable, llama.cpp's 2-thread barriers suffer most).",
  );
  return {
    title: "Issue 2: f32 forward pass, quantlab vs llama.cpp (same GGUF, same run)",
    table: { headers: ["model", "threads", "prompt / gen tokens", "quantlab prefill tok/s", "llama.cpp prefill tok/s", "prefill ratio", "quantlab decode tok/s", "llama.cpp decode tok/s", "decode ratio", "load avg"], rows },
    notes,
  };
}

async function typesSection(ctx: BenchContext): Promise<BenchSection> {
  const bw = bandwidth(ctx);
  ctx.log(`  memory read bandwidth (WASM, 1 thread): ${fmt(bw)} GB/s`);
  // QUANTLAB_BENCH_TYPES=F16,Q6_K measures only those weight types
  const only = process.env.QUANTLAB_BENCH_TYPES?.split(",").map((t) => t.trim().toUpperCase()).filter((t) => t.length > 0);
  const all = ctx.quick ? [GgmlType.Q8_0, GgmlType.Q4_K] : [GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];
  const types = only?.length ? all.filter((t) => only.includes(ggmlTypeName(t).toUpperCase())) : all;
  if (only?.length && types.length !== only.length) throw new Error(`QUANTLAB_BENCH_TYPES=${process.env.QUANTLAB_BENCH_TYPES}: the types section measures ${all.map(ggmlTypeName).join(", ")}`);
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const promptEnv = process.env.QUANTLAB_BENCH_PROMPT;
  if (promptEnv !== undefined && !(Number.isInteger(Number(promptEnv)) && Number(promptEnv) > 0)) throw new Error(`QUANTLAB_BENCH_PROMPT: ${promptEnv} is not a positive integer`);
  // issue 15's prefill target is pp128: a 128-token prompt in one batch
  const prompt = promptEnv !== undefined ? Number(promptEnv) : ctx.quick ? 16 : 128, gen = ctx.quick ? 4 : 16;
  for (const type of types) {
    const file = await syntheticGguf(type, undefined, undefined, ctx.log);
    ctx.log(`  synthetic 1B ${ggmlTypeName(type)}`);
    const fileTensorBytes = await tensorBytes(file.path);
    const m = await measure(file.path, [1, 2], prompt, gen, ctx.quick ? 1 : 2, ctx);
    if (m.cppNote) notes.push(`${ggmlTypeName(type)}: llama.cpp not measured: ${m.cppNote}`);
    for (const [threads, r] of m.rows) {
      const ourGBs = (m.weightBytes * r.ours.decode.median) / GB;
      const theirGBs = r.theirs ? (fileTensorBytes * r.theirs.decode.median) / GB : NaN;
      rows.push([ggmlTypeName(type), threads, fmt(r.ours.decode.median), r.theirs ? fmt(r.theirs.decode.median) : "—", ratio(r.ours.decode.median, r.theirs?.decode.median),
        r.theirs ? ratio(r.theirs.decode.cpuMsPerToken, r.ours.decode.cpuMsPerToken) : "—",
        fmt(r.ours.prefill.median), r.theirs ? fmt(r.theirs.prefill.median) : "—", ratio(r.ours.prefill.median, r.theirs?.prefill.median),
        `${fmt(m.weightBytes / 1e6, 0)} MB`, `${fmt(ourGBs)} (${fmt((100 * ourGBs) / bw, 0)}%)`, r.theirs ? `${fmt(theirGBs)} (${fmt((100 * theirGBs) / bw, 0)}%)` : "—", r.load]);
    }
  }
  if (promptEnv !== undefined || only?.length) notes.push(`Focused run: ${only?.length ? `types ${types.map(ggmlTypeName).join(", ")}` : "all types"}, prompt ${prompt} tokens (QUANTLAB_BENCH_TYPES / QUANTLAB_BENCH_PROMPT).`);
  notes.push(
    `Memory bandwidth measured in this run: **${fmt(bw)} GB/s** (WASM SIMD streaming read of ${ctx.quick ? 256 : 1024} MiB, 1 thread, best of 5). "GB/s" = weight bytes streamed per decoded token × decode tok/s (quantlab: its prepared weights, all matrices incl. the tied output; llama.cpp: the file's tensor bytes), and its share of that bandwidth.`,
    `Decode includes attention, norms, RoPE and the 128256-wide output matrix; prefill = one batch of the ${prompt}-token prompt (pp${prompt}), decode ${gen} tokens after it. Medians of the timed runs after a warm-up, quantlab and llama.cpp alternating on the same file in the same process; 1- and 2-thread rows use the same loaded model (the WASM pool with 1 worker; llama.cpp one context per thread count).`,
    "quantlab kernels (relaxed build, default layouts): Q8_0, Q4_0, Q4_K, Q5_K and Q6_K run on the GGUF blocks in place (file bytes = streamed bytes), rows interleaved 4 at a time (same bytes, permuted at load; prefill in 4-row × 4-token tiles, bit for bit the mat-vec's per token); F16 converts in the kernel (prefill: each 4-row tile to an f32 panel once per 64 tokens, then the f32 GEMM tile); F32 streams 4 B/weight. Activations are quantized as ggml pairs them: Q8_0 per 32 for Q8_0/Q4_0, Q8_K per 256 for the k-quants (their super-block dots stay in integers).",
    "decode ratio by CPU time = llama.cpp's process CPU ms per decoded token / quantlab's (every thread of the process, median of the runs): time spent waiting for a CPU, which makes one-thread wall tok/s bimodal on a shared machine, does not count (docs/kernels.md, run-to-run variation); at 2 threads it also counts each engine's spinning.",
    "Targets (issue 4): decode ≥ 0.5× llama.cpp for Q8_0 and Q4_0.",
    "load = 1-minute load average before → after the row: with 2 cores shared by other jobs, rows at load ≫ 1 understate both engines (llama.cpp's spinning 2-thread barriers most).",
  );
  return {
    title: "Issue 4: synthetic Llama-3.2-1B shapes by weight type, quantlab vs llama.cpp (same GGUF, same run)",
    table: { headers: ["type", "threads", "quantlab decode tok/s", "llama.cpp decode tok/s", "decode ratio", "decode ratio by CPU time", "quantlab prefill tok/s", "llama.cpp prefill tok/s", "prefill ratio", "quantlab weights", "quantlab GB/s (% of BW)", "llama.cpp GB/s (% of BW)", "load avg"], rows },
    notes,
  };
}

async function tensorBytes(path: string): Promise<number> {
  const f = await openGgufFile(path);
  try {
    return f.tensors.reduce((a, t) => a + t.byteLength, 0);
  } finally {
    await f.close();
  }
}

/** Peak RSS of loading the F16 model and decoding one token, in a child process (VmHWM). */
async function rssSection(ctx: BenchContext): Promise<BenchSection> {
  const file = await syntheticGguf(GgmlType.F16, undefined, undefined, ctx.log);
  const script = fileURLToPath(new URL("./_rss-child.js", import.meta.url));
  const rows: (string | number)[][] = [];
  for (const backend of ["wasm"]) {
    const r = spawnSync(process.execPath, [script, file.path, backend], { encoding: "utf8", timeout: 600000 });
    if (r.status !== 0) {
      rows.push([backend, "failed", r.stderr.trim().split("\n").pop() ?? "", "", ""]);
      continue;
    }
    const o = JSON.parse(r.stdout.trim().split("\n").pop()!) as { hwmKiB: number; rssKiB: number; loadMs: number; tokenMs: number };
    const hwm = o.hwmKiB * 1024;
    rows.push(["wasm (tensors read straight into wasm memory)", fmt(file.bytes / GB), fmt(hwm / GB), `${fmt(hwm / file.bytes)}×`, fmt(o.loadMs / 1000, 1)]);
    ctx.log(`  ${backend}: VmHWM ${fmt(hwm / GB)} GB = ${fmt(hwm / file.bytes)}× the file`);
  }
  return {
    title: "Issue 2: peak RSS loading the synthetic Llama-3.2-1B-shaped F16 model",
    table: { headers: ["backend", "file GB", "peak RSS (VmHWM) GB", "× file size", "load s"], rows },
    notes: [
      "Measured in a fresh child process (bench/_rss-child.ts): load the GGUF, build the model, decode one token, then read VmHWM from /proc/self/status. Target: under 1.3× the file size.",
      "The token embedding is read row by row on lookup (never expanded to f32), and with the wasm backend every matrix is read from the file into its place in wasm memory, so the model is held once.",
    ],
  };
}

/** Whole-model quantization throughput: f16 weights → Q8_0 / Q4_0 (WASM, bit-identical to ggml's reference). */
async function quantizeSection(ctx: BenchContext): Promise<BenchSection> {
  const file = await syntheticGguf(GgmlType.F16, undefined, undefined, ctx.log);
  const f = await openGgufFile(file.path);
  const rows: (string | number)[][] = [];
  try {
    const mats = f.tensors.filter((t) => t.shape.length === 2);
    const f16Bytes = mats.reduce((a, t) => a + t.byteLength, 0);
    const be = createNodeWasmBackend();
    const maxBytes = Math.max(...mats.map((t) => t.byteLength));
    const inBuf = new Uint8Array(maxBytes); // reused: no fresh pages per tensor
    const outBuf = new Uint8Array((maxBytes / 2 / 32) * 34);
    const list = ctx.quick ? mats.slice(0, 4) : mats;
    {
      // warm-up: TurboFan tier of the quantizers, the buffers' pages
      const t = mats.find((m) => m.byteLength === maxBytes)!;
      await f.readTensorInto(t, inBuf.subarray(0, t.byteLength));
      const h = new Uint16Array(inBuf.buffer, 0, t.byteLength / 2);
      for (const type of [GgmlType.Q8_0, GgmlType.Q4_0] as const) be.quantizeGgmlF16(type, h, outBuf.subarray(0, (h.length / 32) * (type === GgmlType.Q8_0 ? 34 : 18)));
    }
    for (const type of [GgmlType.Q8_0, GgmlType.Q4_0] as const) {
      let qMs = 0;
      let outBytes = 0;
      const t0 = performance.now();
      for (const t of list) {
        const raw = inBuf.subarray(0, t.byteLength);
        await f.readTensorInto(t, raw);
        const h = new Uint16Array(raw.buffer, 0, t.byteLength / 2);
        const dst = outBuf.subarray(0, (h.length / 32) * (type === GgmlType.Q8_0 ? 34 : 18));
        const s = performance.now();
        be.quantizeGgmlF16(type, h, dst);
        qMs += performance.now() - s;
        outBytes += dst.length;
      }
      const totalMs = performance.now() - t0;
      const inBytes = list.reduce((a, t) => a + t.byteLength, 0);
      rows.push([ggmlTypeName(type), "WASM SIMD (quantizeGgmlF16: f16→f32 and quantize in WASM), 1 thread", fmt(inBytes / 1e6, 0), fmt(outBytes / 1e6, 0), fmt(qMs / 1000, 1), fmt(inBytes / 1e3 / qMs, 0), fmt(totalMs / 1000, 1), fmt(inBytes / 1e3 / totalMs, 0)]);
      ctx.log(`  ${ggmlTypeName(type)} WASM: ${fmt(inBytes / 1e3 / qMs, 0)} MB/s quantize, ${fmt(inBytes / 1e3 / totalMs, 0)} MB/s with the file read`);
    }
    be.dispose();
    // the TypeScript reference quantizers (what `quantlab convert` uses) on one FFN matrix, for scale
    const t = mats.find((m) => m.name === "blk.0.ffn_up.weight")!;
    const raw = await f.readTensorBytes(t);
    const x = f16ArrayToF32(new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2));
    for (const type of [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K]) {
      const n = ctx.quick || type === GgmlType.Q4_K || type === GgmlType.Q6_K ? x.length / 8 : x.length;
      const dst = new Uint8Array(n * 2);
      const s = performance.now();
      quantizeRow(type, x.subarray(0, n), dst, n);
      const ms = performance.now() - s;
      rows.push([ggmlTypeName(type), `TS reference quantizer (ggml codecs, what convert uses), ${n === x.length ? "" : "⅛ of "}blk.0.ffn_up`, fmt((n * 2) / 1e6, 0), "", fmt(ms / 1000, 2), fmt((n * 2) / 1e3 / ms, 0), "", ""]);
    }
  } finally {
    await f.close();
  }
  return {
    title: "Issue 4: quantization throughput, synthetic Llama-3.2-1B-shaped model (f16 weights in)",
    table: { headers: ["type", "implementation", "f16 input MB", "output MB", "quantize s", "MB/s of f16 input (quantize)", "total s (file read + quantize)", "MB/s total"], rows },
    notes: [
      "Target (issue 4): ≥ 200 MB/s of f16 input per thread for Q8_0/Q4_0. The WASM quantizers are bit-identical to llama.cpp's quantize_row_*_ref (tests/kernels/wasm-quantize). The TS rows are the reference quantizers (k-quants search scales, hence slow) on one 2048×8192 matrix.",
    ],
  };
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const out: BenchSection[] = [];
  if (wanted(ctx, "f32")) out.push(await f32Section(ctx));
  if (wanted(ctx, "rss")) out.push(await rssSection(ctx));
  if (wanted(ctx, "quantize")) out.push(await quantizeSection(ctx));
  if (wanted(ctx, "types")) out.push(await typesSection(ctx));
  return out;
}
