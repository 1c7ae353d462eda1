// Importance-matrix collection speed (issue 15): stories3M (f32 GGUF: dim 256, hidden 768, 4 layers, vocab 512) over
// chunks of 128 positions of tinystories/calib.txt through `collectImatrix`, the exact f32 forward (the default, the
// previous code path) against the integer calibration forward (`--imatrix-forward int`, K_I16GEMM) in the same
// process, alternating rounds; plus the two GEMMs alone on the model's shapes (section "gemm"). The imatrix of the
// two forwards is compared value by value. llama.cpp's llama-imatrix is not a peer here: node-llama-cpp exposes no
// imatrix collection (only inference), so there is no same-run llama.cpp figure.
// `node dist/bench/run.js imatrix:gemm` runs only the kernel section.
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { collectImatrix } from "../src/algos/imatrix.js";
import { Tensor } from "../src/core/tensor.js";
import type { Weight } from "../src/core/weight.js";
import { calibrationQmax } from "../src/kernels/ref/igemm.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../src/kernels/wasm/backend.js";
import { dataPath } from "../src/io/node/data.js";
import { loadModel } from "../src/io/node/load.js";
import { fmt, stats, type BenchContext, type BenchSection } from "./types.js";
import { randomF32 } from "./_synthetic.js";

const load = (): string => loadavg().map((x) => x.toFixed(1)).join(" ");

/** seconds of f: CPU time of the process at 1 thread (robust to the core being taken away), else wall time */
function timed(threads: number, f: () => void): number {
  const t0 = performance.now(), c0 = process.cpuUsage();
  f();
  if (threads > 1) return (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

async function backend(threads: number): Promise<WasmBackend> {
  const be = createNodeWasmBackend({ threads, minParallelBytes: 0 });
  await be.ready(20000);
  return be;
}

async function gemmSection(ctx: BenchContext): Promise<BenchSection> {
  const rows: (string | number)[][] = [];
  const reps = ctx.quick ? 3 : 7;
  const n = 128;
  for (const threads of [1, 2]) {
    const be = await backend(threads);
    for (const [r, c] of [[768, 256], [256, 768], [2048, 2048]] as const) {
      const w: Weight = { kind: "dense", tensor: Tensor.fromF32([r, c], randomF32(r * c, 1)) };
      const x = randomF32(n * c, 2);
      const pf = be.prepare(w, "f32");
      const pi = be.prepareCalibration(w, "int", calibrationQmax(c));
      const out = new Float32Array(n * r);
      const flop = 2 * n * r * c;
      const inner = Math.max(1, Math.round((ctx.quick ? 2e8 : 1e9) / flop));
      const t = { f32: [] as number[], int: [] as number[] };
      const run = { f32: () => { for (let i = 0; i < inner; i++) be.matmul(pf, x, n, out); }, int: () => { for (let i = 0; i < inner; i++) be.matmul(pi, x, n, out); } };
      run.f32(); run.int();
      for (let k = 0; k < reps; k++) for (const s of k % 2 ? (["int", "f32"] as const) : (["f32", "int"] as const)) t[s].push(timed(threads, run[s]));
      const gf = (ts: number[]) => (flop * inner) / 1e9 / stats(ts).median;
      const ratios = t.f32.map((a, i) => a / t.int[i]!).sort((a, b) => a - b);
      rows.push([`${r}×${c}`, n, threads, fmt(gf(t.f32), 1), fmt(gf(t.int), 1), `${fmt(ratios[ratios.length >> 1]!)} [${fmt(ratios[0]!)}–${fmt(ratios[ratios.length - 1]!)}]`, load()]);
      ctx.log(`imatrix:gemm ${r}×${c} t${threads}: f32 ${fmt(gf(t.f32), 1)}, int ${fmt(gf(t.int), 1)} GFLOP/s`);
      be.release(pf);
      be.release(pi);
    }
    be.dispose();
  }
  return {
    title: "imatrix: calibration GEMM, f32 vs integer (K_I16GEMM)",
    table: { headers: ["W (rows×cols)", "tokens", "threads", "f32 GFLOP/s", "int GFLOP/s", "f32/int time (median [range])", "load"], rows },
    notes: [
      `GFLOP/s = 2·n·rows·cols per matmul (copies and the int path's activation quantization included), median of ${reps} alternating rounds; 1 thread: process CPU time, 2 threads: wall time.`,
      "int = weights per row and activations per token as symmetric codes |q| ≤ calibrationQmax(cols) (2896 at 256 columns, 1672 at 768, 1023 at 2048), i32x4.dot_i16x8_s, exact int32 sums.",
    ],
  };
}

async function modelSection(ctx: BenchContext): Promise<BenchSection> {
  const model = await loadModel(dataPath("ggml/stories3M/stories3M-F32.gguf"));
  const tok = model.tokenizer!;
  const tokens = Int32Array.from(tok.encode(readFileSync(dataPath("tinystories/calib.txt"), "utf8"), { bos: false }));
  const ctxLen = 128;
  const allChunks = Math.floor((tokens.length + 1) / ctxLen);
  const chunks = ctx.quick ? 20 : 200;
  const reps = ctx.quick ? 1 : 3;
  const rows: (string | number)[][] = [];
  let cmp = "";
  for (const threads of [1, 2]) {
    const be = await backend(threads);
    const t = { exact: [] as number[], int: [] as number[] };
    const ims: Record<string, Map<string, Float32Array>> = {};
    const run = (forward: "exact" | "int") => () => { ims[forward] = collectImatrix(model, tokens, { ctx: ctxLen, maxChunks: chunks, backend: be, forward }).imatrix; };
    run("exact")(); run("int")();
    for (let k = 0; k < reps; k++) for (const s of k % 2 ? (["int", "exact"] as const) : (["exact", "int"] as const)) t[s].push(timed(threads, run(s)));
    const tps = (ts: number[]) => (chunks * ctxLen) / stats(ts).median;
    const ratios = t.exact.map((a, i) => a / t.int[i]!).sort((a, b) => a - b);
    rows.push([threads, chunks, fmt(tps(t.exact), 0), fmt(tps(t.int), 0), fmt((allChunks * ctxLen) / tps(t.exact), 1), fmt((allChunks * ctxLen) / tps(t.int), 1), `${fmt(ratios[ratios.length >> 1]!)} [${fmt(ratios[0]!)}–${fmt(ratios[ratios.length - 1]!)}]`, load()]);
    ctx.log(`imatrix:model t${threads}: exact ${fmt(tps(t.exact), 0)} tok/s, int ${fmt(tps(t.int), 0)} tok/s`);
    if (!cmp) {
      let max = 0, sum = 0, cnt = 0;
      for (const [name, a] of ims.exact!) {
        const b = ims.int!.get(name)!;
        for (let j = 0; j < a.length; j++) {
          const r = Math.abs(b[j]! - a[j]!) / Math.abs(a[j]!);
          max = Math.max(max, r);
          sum += r;
          cnt++;
        }
      }
      cmp = `int vs exact imatrix over ${chunks} chunks: max relative difference ${max.toExponential(2)}, mean ${(sum / cnt).toExponential(2)} (${cnt} values).`;
    }
    be.dispose();
  }
  // the work of one chunk: block linears (collectImatrix runs hooksOnly: the last layer's FFN down projection and the
  // logits feed no collected statistic and are not computed) and causal attention (q·k and the weighted sum of v)
  const c = model.config, qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  const linFlop = 2 * ctxLen * (c.nLayers * (c.dim * (qDim + 2 * kvDim) + qDim * c.dim + 3 * c.dim * c.hiddenDim) - c.hiddenDim * c.dim);
  const attFlop = 4 * c.nLayers * qDim * ((ctxLen * (ctxLen + 1)) / 2);
  const totalGflop = (allChunks * (linFlop + attFlop)) / 1e9;
  return {
    title: "imatrix: stories3M collection, exact f32 vs integer forward",
    table: { headers: ["threads", "chunks of 128", "exact tok/s", "int tok/s", `exact s (all ${allChunks} chunks)`, `int s (all ${allChunks})`, "exact/int time (median [range])", "load"], rows },
    notes: [
      `collectImatrix on the first ${chunks} chunks of calib.txt (tokenized once, outside the timing), median of ${reps} alternating rounds; 1 thread: process CPU time, 2 threads: wall time; the whole-text column extrapolates tok/s.`,
      cmp,
      `Work per chunk of ${ctxLen}: block linears ${fmt(linFlop / 1e6, 0)} MFLOP (the last FFN down projection skipped), attention ${fmt(attFlop / 1e6, 0)} MFLOP; all ${allChunks} chunks ${fmt(totalGflop, 0)} GFLOP, i.e. the whole-text floor at G GFLOP/s of GEMM is ${fmt(totalGflop, 0)}/G s (section "gemm" measures G).`,
      "Peer: the exact f32 forward (the default, the previous code path; its x² sums now run in WASM too, same bits). llama.cpp's llama-imatrix is not reachable through node-llama-cpp (no imatrix API), so it has no row here.",
    ],
  };
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const want = (s: string) => !ctx.sections || ctx.sections.length === 0 || ctx.sections.includes(s);
  const out: BenchSection[] = [];
  if (want("gemm")) out.push(await gemmSection(ctx));
  if (want("model")) out.push(await modelSection(ctx));
  return out;
}
