// The row decoder (kernels/rowdec.ts, issue 11) on the WASM backend: layouts without a fast kernel keep their
// stored form and decode ~256 KiB chunks of rows into one f32 scratch for the f32 kernel. Per layout: mat-vec
// (n = 1) and mat-mat (n = 16, 64) time against the f32 kernel on a dequantized copy (what `prepare` did before:
// 4 bytes per weight resident) and, as the fast-kernel yardstick, a packed int4:g64 weight of the same shape;
// resident bytes of each. 1 and 2 threads (the decode runs on the calling thread; the f32 chunk goes to the pool
// only from 32 tokens on, dispatch.ts ROWDEC_PARALLEL_FACTOR).
import { Tensor } from "../src/core/tensor.js";
import type { Weight } from "../src/core/weight.js";
import { quantizeRow } from "../src/ggml/codecs.js";
import { GGML_TYPES, GgmlType } from "../src/ggml/types.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import { dequantizeWeight } from "../src/kernels/dequantize.js";
import type { WasmBackend } from "../src/kernels/wasm/backend.js";
import { quantizeTensor } from "../src/quant/tensor.js";
import { randomF32 } from "./_synthetic.js";
import { fmt, stats, type BenchContext, type BenchSection } from "./types.js";

/** best time (ms) of one W·x for n tokens, after warm-up */
function time(be: WasmBackend, w: Weight, x: Float32Array, n: number, reps: number): { ms: number; bytes: number; kernel: string } {
  const p = be.prepare(w, "bench");
  const row = be.listing().at(-1)!;
  const out = new Float32Array(n * p.rows);
  for (let i = 0; i < 2; i++) be.matmul(p, x, n, out);
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) { const t0 = performance.now(); be.matmul(p, x, n, out); ts.push(performance.now() - t0); }
  be.release(p);
  return { ms: stats(ts).min, bytes: p.bytes, kernel: row.kernel };
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const rows = ctx.quick ? 512 : 2048, cols = ctx.quick ? 512 : 2048;
  const reps = ctx.quick ? 3 : 7;
  const v = randomF32(rows * cols, 1).map((a) => a * 0.05);
  const q8_1 = new Uint8Array((rows * cols / 32) * GGML_TYPES[GgmlType.Q8_1].bytesPerBlock);
  quantizeRow(GgmlType.Q8_1, v, q8_1, rows * cols);
  const cases: [string, Weight][] = [
    ["int4:ichannel", { kind: "quant", q: quantizeTensor(v, [rows, cols], "int4:ichannel") }],
    ["int4:g64:outliers=1", { kind: "quant", q: quantizeTensor(v, [rows, cols], "int4:g64:outliers=1") }],
    ["ternary:channel:trits", { kind: "quant", q: quantizeTensor(v, [rows, cols], "ternary:channel:trits") }],
    ["int12:channel", { kind: "quant", q: quantizeTensor(v, [rows, cols], "int12:channel") }],
    ["ggml Q8_1", { kind: "ggml", type: GgmlType.Q8_1, shape: [rows, cols], data: q8_1 }],
  ];
  const packed: Weight = { kind: "quant", q: quantizeTensor(v, [rows, cols], "int4:g64") };
  const table: (string | number)[][] = [];
  const notes: string[] = [];
  for (const threads of [1, 2]) {
    const be = createNodeWasmBackend({ threads });
    await be.ready();
    try {
      for (const n of [1, 16, 64]) {
        const x = randomF32(n * cols, 2);
        const yard = time(be, packed, x, n, reps);
        for (const [label, w] of cases) {
          ctx.log(`rowdec: ${label} t${threads} n=${n}`);
          const r = time(be, w, x, n, reps);
          const copy = time(be, { kind: "dense", tensor: Tensor.fromF32([rows, cols], dequantizeWeight(w).data) }, x, n, reps);
          table.push([label, threads, n, fmt(r.ms, 2), fmt(copy.ms, 2), fmt(r.ms / copy.ms, 2), fmt(yard.ms, 2), fmt((rows * cols * n) / r.ms / 1e6, 2), `${fmt(r.bytes / 2 ** 20, 2)} / ${fmt(copy.bytes / 2 ** 20, 2)}`]);
          if (threads === 1 && n === 1) notes.push(`${label}: ${r.kernel}`);
        }
      }
    } finally {
      be.dispose();
    }
  }
  notes.push(`weights ${rows}×${cols}; best of ${reps} after 2 warm-up calls; "f32 copy" = the f32 kernel on the dequantized weight (the former fallback, 4 B/weight resident); "int4:g64 packed" = the fused K_U4G kernel on the same shape`);
  notes.push("the decode of each chunk runs on the calling thread (the QTensor's arrays are JS arrays); the f32 kernel on a chunk splits across the pool only from 32 tokens on. Decode-bound at n = 1; the decode is shared by all tokens of a mat-mat, so the gap to the f32 copy closes as n grows");
  return [{
    title: "Row decoder (layouts without a fast kernel): time per call (WASM backend)",
    table: { headers: ["layout", "threads", "tokens", "rowdec ms", "f32 copy ms", "ratio", "int4:g64 packed ms", "rowdec Gweight·tok/s", "resident rowdec / f32 copy (MiB)"], rows: table },
    notes,
  }];
}
