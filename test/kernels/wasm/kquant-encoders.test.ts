// The WASM k-quant encoders (assembly/kquants.ts, run by the pool task T_GGML_ROWS) write the TypeScript
// codecs' bytes (src/ggml/kquants.ts, byte-identical with llama.cpp) for Q2_K … Q6_K, with and without an
// importance matrix: edge rows (zero, constant, huge, tiny, subnormal, one spike, ties), random rows,
// real weights, fast-check rows, f16 input, chunk boundaries, both wasm builds, 1 and 2 threads; and they
// reproduce llama.cpp's own files (stories3M quantized by llama-quantize, the imatrix golden fixture).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import fc from "fast-check";
import { GgmlType, ggmlTypeName, GGML_TYPES } from "../../../src/ggml/types.js";
import { quantize } from "../../../src/ggml/codecs.js";
import { f32ArrayToF16, f16ArrayToF32 } from "../../../src/core/f16.js";
import { openGguf } from "../../../src/io/gguf.js";
import { FileSource } from "../../../src/io/node/file.js";
import { dataPath } from "../../../src/io/node/data.js";
import { WasmGgmlEncoder } from "../../../src/kernels/wasm/encoders.js";
import { VARIANTS, backend, disposeAll, randomF32, readyBackend, storiesWeights } from "../helpers.js";

after(disposeAll);

const KTYPES = [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K] as const;

/** 256-blocks aimed at the searches' branches: all zero, constant (both signs), huge (products overflow
 * f32), tiny and subnormal (below GROUP_MAX_EPS), one spike, only positive / only negative, exact ties at
 * half levels, sub-blocks of zeros beside large values, f16-rounded values. */
function edgeBlocks(): Float32Array {
  const b: number[][] = [];
  const blk = (f: (j: number) => number): void => void b.push(Array.from({ length: 256 }, (_, j) => f(j)));
  blk(() => 0);
  blk(() => 0.75);
  blk(() => -3);
  blk((j) => (j % 2 ? 3e38 : -3e38));
  blk((j) => ((j * 37) % 101 - 50) * 6e36);
  blk((j) => (j % 3 ? 1e-30 : -3e-39));
  blk((j) => (j % 5 ? 1e-16 : 0));
  blk((j) => (j === 77 ? 5 : 0));
  blk((j) => (j === 200 ? -5 : 1e-3 * (j % 4)));
  blk((j) => 1 + (j % 16));
  blk((j) => -1 - (j % 32));
  blk((j) => ((j % 31) - 15) * 0.5);
  blk((j) => (j < 128 ? 0 : (j % 9) - 4));
  blk((j) => ((j >> 4) % 2 ? 0 : Math.sin(j) * 100));
  blk((j) => (j % 16 === 0 ? 1e4 : Math.cos(j)));
  blk((j) => Math.fround(Math.tan(j * 0.37)));
  return Float32Array.from(b.flat());
}

/** Importance vectors: ordinary, with zero columns, huge, tiny, spiky. */
function imatrices(cols: number): [string, Float32Array][] {
  return [
    ["imatrix", Float32Array.from({ length: cols }, (_, j) => 0.5 + ((j * 7) % 13))],
    ["imatrix with zeros", Float32Array.from({ length: cols }, (_, j) => (j % 5 === 0 ? 0 : 1 + (j % 3)))],
    ["huge imatrix", Float32Array.from({ length: cols }, (_, j) => 1e30 * (1 + (j % 4)))],
    ["tiny imatrix", Float32Array.from({ length: cols }, (_, j) => 1e-30 * (1 + (j % 4)))],
    ["spiky imatrix", Float32Array.from({ length: cols }, (_, j) => (j % 64 === 3 ? 1e6 : 1e-3))],
  ];
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function assertSame(got: Uint8Array, want: Uint8Array, type: GgmlType, what: string): void {
  const at = firstDiff(got, want);
  const bpb = GGML_TYPES[type].bytesPerBlock;
  assert.equal(at, -1, `${what} ${ggmlTypeName(type)}: first differing byte ${at} (block ${Math.floor(at / bpb)}, byte ${at % bpb}): ${got[at]} vs TS ${want[at]}`);
}

/** Encodes with the pool encoder and checks that the WASM k-quant path (not the TS codec) did every value. */
function encodeWasm(enc: WasmGgmlEncoder, type: GgmlType, rows: number, cols: number, x: Float32Array, imatrix?: Float32Array): Uint8Array {
  const out = enc.encodeRows({ type, rows, cols, x, ...(imatrix ? { imatrix } : {}) });
  assert.equal(enc.lastWasmValues, rows * cols, `${ggmlTypeName(type)}: ${rows * cols - enc.lastWasmValues} values took the TS codec`);
  return out;
}

test("WASM k-quant encoders give the TS codecs' bytes: edge, random and real rows, with and without imatrices, both builds", () => {
  const edge = edgeBlocks();
  const inputs: [string, Float32Array, number][] = [
    ["edge", edge, 256],
    ["edge in 1024-wide rows", edge, 1024],
    ["random", randomF32(256 * 48, 5, 2), 768],
    ["random ×1e-3", randomF32(256 * 16, 11, 1e-3), 512],
    ["stories260K", storiesWeights().subarray(0, 256 * 200), 512],
  ];
  for (const variant of VARIANTS) {
    const enc = backend(variant, 1).ggmlEncoder() as WasmGgmlEncoder;
    for (const [label, x, cols] of inputs) {
      const rows = x.length / cols;
      for (const type of KTYPES) {
        assertSame(encodeWasm(enc, type, rows, cols, x), quantize(type, x), type, `${variant} ${label}`);
        for (const [iml, im] of imatrices(cols)) {
          assertSame(encodeWasm(enc, type, rows, cols, x, im), quantize(type, x, x.length, { imatrix: im }), type, `${variant} ${label} ${iml}`);
        }
      }
    }
  }
});

test("WASM k-quant encoders: 1 and 2 threads, f16 input and chunk boundaries give the same bytes", async () => {
  const cols = 512;
  const rows = 96;
  const x = randomF32(rows * cols, 23, 4);
  for (let i = 0; i < x.length; i += 9) x[i] = x[i]! * x[i]! * x[i]!; // heavier tails
  const h = f32ArrayToF16(x);
  const xh = f16ArrayToF32(h);
  const im = imatrices(cols)[0]![1];
  for (const variant of VARIANTS) {
    for (const threads of [1, 2]) {
      const be = await readyBackend(variant, threads);
      // 3 rows per staged chunk: 32 dispatches, rows split between the threads
      for (const enc of [be.ggmlEncoder() as WasmGgmlEncoder, be.ggmlEncoder(3 * cols) as WasmGgmlEncoder]) {
        for (const type of KTYPES) {
          assertSame(encodeWasm(enc, type, rows, cols, x), quantize(type, x), type, `${variant} t${threads} f32`);
          assertSame(encodeWasm(enc, type, rows, cols, x, im), quantize(type, x, x.length, { imatrix: im }), type, `${variant} t${threads} f32 imatrix`);
          const got = enc.encodeRows({ type, rows, cols, f16: h, imatrix: im });
          assert.equal(enc.lastWasmValues, rows * cols);
          assertSame(got, quantize(type, xh, xh.length, { imatrix: im }), type, `${variant} t${threads} f16 imatrix`);
        }
      }
    }
  }
});

test("rows holding NaN/Inf, a non-finite imatrix and refine take the TS codec (same bytes as today); the other rows stay in WASM", () => {
  const cols = 256;
  const rows = 8;
  const x = randomF32(rows * cols, 31);
  x[3 * cols + 10] = NaN;
  x[5 * cols + 200] = -Infinity;
  const enc = backend(VARIANTS[0]!, 1).ggmlEncoder() as WasmGgmlEncoder;
  for (const type of KTYPES) {
    const got = enc.encodeRows({ type, rows, cols, x });
    assertSame(got, quantize(type, x), type, "non-finite rows");
    assert.equal(enc.lastWasmValues, (rows - 2) * cols, `${ggmlTypeName(type)}: only the 2 non-finite rows leave WASM`);
    const y = randomF32(rows * cols, 32);
    const bad = Float32Array.from({ length: cols }, (_, j) => (j === 7 ? Infinity : 1));
    assertSame(enc.encodeRows({ type, rows, cols, x: y, imatrix: bad }), quantize(type, y, y.length, { imatrix: bad }), type, "non-finite imatrix");
    assert.equal(enc.lastWasmValues, 0);
    assertSame(enc.encodeRows({ type, rows, cols, x: y, refine: true }), quantize(type, y, y.length, { refine: true }), type, "refine");
    assert.equal(enc.lastWasmValues, 0);
  }
});

test("fast-check: any finite rows (any magnitude), with or without an imatrix, encode as the TS codecs do", () => {
  const enc = backend(VARIANTS[VARIANTS.length - 1]!, 1).ggmlEncoder() as WasmGgmlEncoder;
  const finite = fc.float({ noNaN: true, noDefaultInfinity: true });
  const row = fc.oneof(
    fc.float32Array({ minLength: 256, maxLength: 256, noNaN: true, noDefaultInfinity: true }),
    fc.tuple(fc.array(finite, { minLength: 1, maxLength: 8 }), fc.integer({ min: -30, max: 30 })).map(([vals, e]) =>
      Float32Array.from({ length: 256 }, (_, j) => {
        const v = Math.fround(vals[j % vals.length]! * (j % 3 ? 1 : 2 ** e));
        return Number.isFinite(v) ? v : Math.sign(v) * 3.4028234663852886e38; // scaling may overflow: keep it finite
      })),
    fc.integer({ min: 1, max: 1e9 }).map((seed) => randomF32(256, seed, 10)),
  );
  const imatrix = fc.option(fc.float32Array({ minLength: 256, maxLength: 256, min: 0, max: Math.fround(1e6), noNaN: true }), { nil: undefined });
  fc.assert(fc.property(row, imatrix, fc.constantFrom(...KTYPES), (x, im, type) => {
    assertSame(encodeWasm(enc, type, 1, 256, x, im), quantize(type, x, x.length, im ? { imatrix: im } : {}), type, "fast-check");
  }), { numRuns: 300 });
});

// dist/test/kernels/wasm → test/ggml/fixtures
const fixture = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "test", "ggml", "fixtures", "imatrix-golden.gguf");

test("with llama.cpp's imatrix golden, the WASM encoders write ggml_quantize_chunk's bytes", async () => {
  const f = await openGguf(new FileSource(fixture));
  try {
    const x = new Float32Array((await f.readTensorBytes("x")).slice().buffer);
    const imatrix = new Float32Array((await f.readTensorBytes("imatrix")).slice().buffer);
    const [rows, cols] = f.tensor("x")!.shape as [number, number];
    let seen = 0;
    for (const variant of VARIANTS) {
      const enc = (await readyBackend(variant, 2)).ggmlEncoder() as WasmGgmlEncoder;
      for (const ti of f.tensors) {
        if (!ti.name.startsWith("q.") || !(KTYPES as readonly GgmlType[]).includes(ti.type)) continue;
        seen++;
        assertSame(encodeWasm(enc, ti.type, rows, cols, x, imatrix), await f.readTensorBytes(ti), ti.type, `${variant} llama.cpp imatrix golden`);
      }
    }
    assert.equal(seen, 5 * VARIANTS.length);
  } finally {
    await f.close();
  }
});

test("stories3M as llama-quantize wrote it (Q6_K, Q4_K_M, Q3_K_M, Q2_K): every k-quant tensor re-encodes in WASM to llama.cpp's bytes", async (t) => {
  const src = await openGguf(new FileSource(dataPath("ggml", "stories3M", "stories3M-F32.gguf")));
  const enc = (await readyBackend(VARIANTS[VARIANTS.length - 1]!, 2)).ggmlEncoder() as WasmGgmlEncoder;
  try {
    for (const kind of ["Q6_K", "Q4_K_M", "Q3_K_M", "Q2_K"]) {
      const q = await openGguf(new FileSource(dataPath("ggml", "stories3M", `stories3M-${kind}.gguf`)));
      try {
        const counts = new Map<string, number>();
        for (const ti of q.tensors) {
          if (!(KTYPES as readonly GgmlType[]).includes(ti.type)) continue;
          const si = src.tensor(ti.name)!;
          const x = new Float32Array((await src.readTensorBytes(si)).slice().buffer);
          const cols = ti.shape[ti.shape.length - 1]!;
          assertSame(encodeWasm(enc, ti.type, x.length / cols, cols, x), await q.readTensorBytes(ti), ti.type, `${kind} ${ti.name}`);
          counts.set(ggmlTypeName(ti.type), (counts.get(ggmlTypeName(ti.type)) ?? 0) + 1);
        }
        assert.ok(counts.size > 0, kind);
        t.diagnostic(`${kind}: ${[...counts].map(([k, v]) => `${v}×${k}`).join(", ")} identical with llama.cpp`);
      } finally {
        await q.close();
      }
    }
  } finally {
    await src.close();
  }
});
