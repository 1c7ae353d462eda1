// Kernel benchmarks: mat-vec GB/s of weight bytes for 4096×4096 matrices streamed from RAM (≥ 8× L3 of
// distinct weights, so nothing is served from cache), TS reference vs WASM SIMD128 vs WASM relaxed SIMD,
// 1 and 2 threads, against a same-run WASM streaming-read yardstick; dense prefill (f32 GEMM) GFLOP/s
// against the same tokens as row dots; quantization throughput; and stories260K decode tokens/s on the
// ref and WASM backends. Sections: matvec, gemm, quantize, decode (`node dist/bench/run.js kernels:gemm`).
import { Tensor } from "../src/core/tensor.js";
import { f32ToF16Bits } from "../src/core/f16.js";
import { GgmlType, ggmlTypeName, GGML_TYPES } from "../src/ggml/types.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import type { PreparedWeight } from "../src/kernels/types.js";
import { RefBackend } from "../src/kernels/ref/backend.js";
import { wasmVariantSupported, type WasmVariant } from "../src/kernels/wasm/module.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import { NATIVE } from "../src/kernels/wasm/layouts.js";
import type { WasmBackend } from "../src/kernels/wasm/backend.js";
import { loadModel } from "../src/io/node/load.js";
import { defaultModelPath } from "../src/io/node/data.js";
import { Llama } from "../src/model/llama.js";
import { type BenchContext, type BenchSection, fmt, stats } from "./types.js";
import type { Weight } from "../src/core/weight.js";
import { randomF32 } from "./_synthetic.js";

const MiB = 1 << 20;
/** this machine's L3 (shared/notes/kernels.md); the cold set is 8× that */
const L3 = 32 * MiB;

/** An N×N weight of the given type: random values; quantized types are a 64-row quantized tile repeated. */
function makeWeight(type: GgmlType, n: number): Weight {
  if (type === GgmlType.F32) return { kind: "dense", tensor: Tensor.fromF32([n, n], randomF32(n * n, 1)) };
  if (type === GgmlType.F16) {
    const src = randomF32(n * n, 2);
    const h = new Uint16Array(n * n);
    for (let i = 0; i < h.length; i++) h[i] = f32ToF16Bits(src[i]!);
    return { kind: "dense", tensor: new Tensor("f16", [n, n], h) };
  }
  const size = GGML_TYPES[type];
  const tileRows = 64;
  const rowBytes = (n / size.blockSize) * size.bytesPerBlock;
  const tile = new Uint8Array(tileRows * rowBytes);
  quantizeRow(type, randomF32(tileRows * n, 3), tile, tileRows * n);
  const data = new Uint8Array(n * rowBytes);
  for (let r = 0; r < n; r += tileRows) data.set(tile, r * rowBytes);
  return { kind: "ggml", type, shape: [n, n], data };
}

function timePasses(be: { matvec(w: PreparedWeight, x: Float32Array, out: Float32Array): void }, ws: PreparedWeight[], x: Float32Array, out: Float32Array, reps: number): { median: number; min: number } {
  const pass = (): void => {
    for (const w of ws) be.matvec(w, x, out);
  };
  pass();
  pass(); // warm-up: TurboFan tier, page faults, workers awake
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    pass();
    t.push((performance.now() - t0) / ws.length);
  }
  return stats(t);
}

async function matvecSection(ctx: BenchContext): Promise<BenchSection[]> {
  const n = ctx.quick ? 1024 : 4096;
  const coldBytes = ctx.quick ? 2 * L3 : 8 * L3;
  const reps = ctx.quick ? 3 : 7;
  const variants = (["simd", "relaxed"] as WasmVariant[]).filter(wasmVariantSupported);
  const types = [GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];
  const x = randomF32(n, 9);
  const out = new Float32Array(n);

  // yardstick: a WASM SIMD streaming read over the cold set, single thread
  let streamGBs = 0;
  {
    const be = createNodeWasmBackend({ variant: variants[0] });
    const count = coldBytes / 4;
    const off = be.arena.alloc(coldBytes);
    be.arena.f32.fill(1, off >> 2, (off >> 2) + count);
    be.kernels.stream_sum(off, count);
    const t: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      be.kernels.stream_sum(off, count);
      t.push(performance.now() - t0);
    }
    streamGBs = coldBytes / 1e6 / stats(t).min;
    be.dispose();
    ctx.log(`  stream read: ${fmt(streamGBs)} GB/s`);
  }

  // TS reference: every type runs as f32 there (dequantized once at prepare)
  let refMs = NaN;
  {
    const ref = new RefBackend();
    const ws = [0, 1].map(() => ref.prepare(makeWeight(GgmlType.F32, n)));
    refMs = timePasses(ref, ws, x, out, ctx.quick ? 2 : 3).median;
    ctx.log(`  TS ref f32: ${fmt(refMs)} ms`);
  }

  const rows: (string | number)[][] = [];
  rows.push(["all (as f32)", "4.000", "TS ref (plain TypeScript)", 1, fmt(refMs), "—", fmt((n * n * 4) / 1e6 / refMs), fmt((100 * (n * n * 4)) / 1e6 / refMs / streamGBs, 0), "1.00"]);
  for (const type of types) {
    const w = makeWeight(type, n);
    const runs: [WasmVariant, "auto" | "native" | "repacked"][] = variants.map((v) => [v, "auto"]);
    // the relaxed build can run these types on their GGUF blocks: show the layout the default did not pick
    if (NATIVE[type]?.variants.includes("relaxed") && variants.includes("relaxed")) runs.push(["relaxed", NATIVE[type]!.byDefault.includes("relaxed") ? "repacked" : "native"]);
    for (const [variant, layouts] of runs) {
      const be: WasmBackend = createNodeWasmBackend({ variant, threads: 2, layouts });
      await be.ready(20000);
      const first = be.prepare(w, "w0");
      const count = Math.max(2, Math.ceil(coldBytes / first.bytes));
      const ws = [first];
      for (let i = 1; i < count; i++) ws.push(be.prepare(w, `w${i}`));
      for (const threads of [1, 2]) {
        be.minParallelBytes = threads === 1 ? Infinity : 0;
        const s = timePasses(be, ws, x, out, reps);
        const gbs = first.bytes / 1e6 / s.median;
        rows.push([
          ggmlTypeName(type),
          fmt(first.bytes / (n * n), 3),
          `WASM ${variant === "simd" ? "SIMD128" : "relaxed SIMD"}${layouts === "auto" ? "" : `, forced ${layouts === "repacked" ? "repack" : "GGUF blocks"}`} (${be.listing()[0]!.kernel}, ${count}× ${fmt(first.bytes / MiB, 1)} MiB)`,
          threads,
          fmt(s.median, 3),
          fmt(s.min, 3),
          fmt(gbs),
          fmt((100 * gbs) / streamGBs, 0),
          fmt(refMs / s.median, 1),
        ]);
        ctx.log(`  ${ggmlTypeName(type)} ${variant} ${layouts} t${threads}: ${fmt(s.median, 3)} ms, ${fmt(gbs)} GB/s`);
      }
      be.dispose();
    }
  }
  return [{
    title: `Mat-vec ${n}×${n}, weights streamed from RAM (${coldBytes / MiB} MiB of distinct matrices per row)`,
    table: { headers: ["type", "B/weight (prepared)", "implementation", "threads", "ms median", "ms min", "GB/s (median)", "% of stream read", "× TS ref"], rows },
    notes: [
      `Same-run yardstick: WASM SIMD streaming read (f32 sum) over ${coldBytes / MiB} MiB, 1 thread: **${fmt(streamGBs)} GB/s** (best of ${reps}). "% of stream read" = mat-vec GB/s / that.`,
      "GB/s counts the prepared weight bytes one mat-vec streams: the GGUF blocks themselves for the native kernels (\"(ggml blocks)\": Q8_0 in both builds, Q4_0/Q4_K/Q5_K/Q6_K in the relaxed build), else SoA codes + f32 scales/mins; f16 stays 2 B/weight. \"forced\" rows run the relaxed build on the layout its default did not pick (GGUF blocks in place: fewer bytes, more instructions; SoA repack: the reverse), for comparison. Activations are quantized once per mat-vec (inside the timing): Q8_0 per 32, or Q8_K per 256 for the k-quants' interleaved kernels.",
      "Each row cycles through enough distinct copies of the matrix (≥ 8× the 32 MiB L3) that weights come from RAM, as in decode; 2 warm-up passes, then the median and best of the timed passes, per mat-vec.",
      "TS ref: the plain-TypeScript reference backend (f32 after dequantize-once, whatever the type); \"× TS ref\" = its time / this row's time.",
      "For context (not this run): shared/notes/kernels.md measured C AVX2 kernels in llama.cpp's style on this machine at ≈26 GB/s f32, ≈23 GB/s Q8_0, ≈15 GB/s Q4_0 (1 thread, cold). The issue's llama.cpp peer comparison (decode tok/s on the same GGUF) is the model bench's job.",
      "The machine is shared with other jobs (see the load average above): 2-thread rows only show scaling when the second core is free.",
    ],
  }];
}

/** Dense prefill: OUT(n, rows) = X(n, cols)·Wᵀ for f32 W through `matmul` (the register-blocked GEMM of
 * assembly/index.ts), GFLOP/s, next to the same product as n mat-vecs (the decode kernel: every output an
 * independent row dot, as prefill ran before the GEMM) on the same backend, and the TS reference. */
async function gemmSection(ctx: BenchContext): Promise<BenchSection> {
  const shapes: [number, number][] = ctx.quick ? [[256, 768], [768, 256]] : [[256, 768], [768, 256], [2048, 2048], [2048, 8192]];
  const tokens = ctx.quick ? [64] : [128, 256];
  const reps = ctx.quick ? 3 : 5;
  const variants = (["simd", "relaxed"] as WasmVariant[]).filter(wasmVariantSupported);
  /** median and best ms of one call of f, after 2 warm-up calls; each timed sample repeats f ≈ 1 GFLOP */
  const time = (f: () => void, flop: number, r: number): { median: number; min: number } => {
    const inner = Math.max(1, Math.round(1e9 / flop));
    f();
    f();
    const t: number[] = [];
    for (let i = 0; i < r; i++) {
      const t0 = performance.now();
      for (let j = 0; j < inner; j++) f();
      t.push((performance.now() - t0) / inner);
    }
    return stats(t);
  };
  const rows: (string | number)[][] = [];
  for (const [nr, nc] of shapes) {
    const w: Weight = { kind: "dense", tensor: Tensor.fromF32([nr, nc], randomF32(nr * nc, 21)) };
    for (const n of tokens) {
      const x = randomF32(n * nc, 22);
      const out = new Float32Array(n * nr);
      const flop = 2 * n * nr * nc;
      if (nr * nc <= 1 << 20) {
        const ref = new RefBackend();
        const p = ref.prepare(w);
        const s = time(() => ref.matmul(p, x, n, out), flop, 2);
        rows.push([`${nr}×${nc}`, n, "TS ref", 1, fmt(flop / 1e6 / s.median), fmt(flop / 1e6 / s.min), "—"]);
      }
      for (const variant of variants) {
        const be: WasmBackend = createNodeWasmBackend({ variant, threads: 2 });
        await be.ready(20000);
        const p = be.prepare(w, "w");
        for (const threads of [1, 2]) {
          be.minParallelBytes = threads === 1 ? Infinity : 0;
          const g = time(() => be.matmul(p, x, n, out), flop, reps);
          const dots = time(() => {
            for (let t = 0; t < n; t++) be.matvec(p, x.subarray(t * nc, (t + 1) * nc), out.subarray(t * nr, (t + 1) * nr));
          }, flop, Math.min(reps, 3));
          const label = `WASM ${variant === "simd" ? "SIMD128" : "relaxed SIMD (FMA)"}`;
          rows.push([`${nr}×${nc}`, n, `${label}, GEMM`, threads, fmt(flop / 1e6 / g.median), fmt(flop / 1e6 / g.min), fmt(dots.median / g.median)]);
          rows.push([`${nr}×${nc}`, n, `${label}, row dots (n mat-vecs)`, threads, fmt(flop / 1e6 / dots.median), fmt(flop / 1e6 / dots.min), "1.00"]);
          ctx.log(`  gemm ${nr}×${nc} n=${n} ${variant} t${threads}: ${fmt(flop / 1e6 / g.median)} GFLOP/s (row dots ${fmt(flop / 1e6 / dots.median)})`);
        }
        be.dispose();
      }
    }
  }
  return {
    title: "Dense prefill (f32 weights): GEMM vs row dots, GFLOP/s",
    table: { headers: ["W (rows×cols)", "tokens", "implementation", "threads", "GFLOP/s (median)", "GFLOP/s (best)", "× row dots"], rows },
    notes: [
      "GFLOP/s = 2·tokens·rows·cols / time of one `matmul` (activations copied in and outputs out included). GEMM: tiles of 4 rows × 2 tokens of f32x4 accumulators, token blocks of 64 (assembly/index.ts gemmRows; docs/kernels.md). Row dots: the same product as one `matvec` per token, each output an independent dot product (the decode kernel), on the same backend in the same minutes; '× row dots' = its time / the GEMM's.",
      "The relaxed build accumulates with f32x4.relaxed_madd (FMA); SIMD128 with mul + add.",
      "The machine is shared with other jobs (see the load average above): 2-thread rows only show scaling when the second core is free.",
    ],
  };
}

async function quantizeSection(ctx: BenchContext): Promise<BenchSection> {
  const n = ctx.quick ? 1 << 22 : 1 << 24;
  const x = randomF32(n, 11);
  const reps = ctx.quick ? 2 : 5;
  const rows: (string | number)[][] = [];
  const variants = (["simd", "relaxed"] as WasmVariant[]).filter(wasmVariantSupported);
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_0] as const) {
    const bpb = type === GgmlType.Q8_0 ? 34 : 18;
    const dst = new Uint8Array((n / 32) * bpb);
    const measure = (f: () => void, r: number): number => {
      f();
      const t: number[] = [];
      for (let i = 0; i < r; i++) {
        const t0 = performance.now();
        f();
        t.push(performance.now() - t0);
      }
      return stats(t).median;
    };
    const tsMs = measure(() => quantizeRow(type, x, dst, n), Math.min(reps, 2));
    rows.push([ggmlTypeName(type), "TS (ggml quantizeRow, reference quantizer)", fmt(tsMs, 1), fmt((n * 4) / 1e6 / tsMs), fmt((n * 2) / 1e3 / tsMs, 0), "1.00"]);
    for (const variant of variants) {
      const be = createNodeWasmBackend({ variant });
      const ms = measure(() => be.quantizeGgml(type, x, dst), reps);
      rows.push([ggmlTypeName(type), `WASM ${variant === "simd" ? "SIMD128" : "relaxed build"} (quantizeGgml, copies in/out included)`, fmt(ms, 1), fmt((n * 4) / 1e6 / ms), fmt((n * 2) / 1e3 / ms, 0), fmt(tsMs / ms, 1)]);
      be.dispose();
    }
  }
  return {
    title: `Quantize f32 → Q8_0 / Q4_0 (${n / MiB} Mi values, 1 thread)`,
    table: { headers: ["type", "implementation", "ms", "GB/s of f32 input", "MB/s of f16-equivalent input", "× TS"], rows },
    notes: [
      "Both produce llama.cpp's reference bytes (quantize_row_*_ref; tested byte for byte). The issue's target is ≥ 200 MB/s of f16 input per thread.",
      "The WASM quantizers use the SIMD128 instructions in both builds (no relaxed-only path yet).",
    ],
  };
}

async function decodeSection(ctx: BenchContext): Promise<BenchSection> {
  const model = await loadModel(defaultModelPath());
  const steps = ctx.quick ? 50 : 200;
  const rows: (string | number)[][] = [];
  const variants = (["simd", "relaxed"] as WasmVariant[]).filter(wasmVariantSupported);
  const backends: [string, () => { backend: import("../src/kernels/types.js").Backend; done(): void }][] = [
    ["TS ref", () => ({ backend: new RefBackend(), done() {} })],
    ...variants.map((v) => [`WASM ${v}`, () => {
      const b = createNodeWasmBackend({ variant: v });
      return { backend: b, done: () => b.dispose() };
    }] as [string, () => { backend: import("../src/kernels/types.js").Backend; done(): void }]),
  ];
  let refTps = NaN;
  for (const [label, make] of backends) {
    const { backend, done } = make();
    const llama = new Llama(model, { backend });
    const t: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      llama.reset();
      let tok = 1;
      const t0 = performance.now();
      for (let pos = 0; pos < steps; pos++) {
        const logits = llama.forward(tok, pos);
        let best = 0;
        for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
        tok = best;
      }
      t.push(performance.now() - t0);
    }
    const tps = (steps * 1000) / stats(t).median;
    if (label === "TS ref") refTps = tps;
    rows.push([label, 1, steps, fmt(tps, 0), fmt(tps / refTps, 2)]);
    done();
  }
  return {
    title: "stories260K decode (greedy, f32 weights, 1 thread)",
    table: { headers: ["backend", "threads", "tokens", "tokens/s (median of 3)", "× TS ref"], rows },
    notes: ["stories260K is tiny (dim 64): per-call overhead (copying x in, the output out) dominates; it checks the plumbing, not the kernels' bandwidth."],
  };
}

/** sections named on the command line (`kernels:gemm,decode`), all by default */
function wanted(ctx: BenchContext, name: string): boolean {
  return !ctx.sections?.length || ctx.sections.some((s) => name.includes(s.trim()));
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const out: BenchSection[] = [];
  if (wanted(ctx, "matvec")) out.push(...(await matvecSection(ctx)));
  if (wanted(ctx, "gemm")) out.push(await gemmSection(ctx));
  if (wanted(ctx, "quantize")) out.push(await quantizeSection(ctx));
  if (wanted(ctx, "decode")) out.push(await decodeSection(ctx));
  return out;
}
