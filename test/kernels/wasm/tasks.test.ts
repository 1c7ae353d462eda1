// The pool's ggml row encoder (WasmBackend.ggmlEncoder, pool task T_GGML_ROWS) writes the TypeScript
// reference's bytes (ggml `quantize` on the whole tensor) for every codec type, with and without an
// importance matrix and refine, from f32 and from f16 input, at 1, 2 and 3 threads, with row counts that
// are not a multiple of the staging chunk; workers really take row ranges; non-finite values take the TS
// codec; a failing task's message reaches the caller.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { f16ArrayToF32, f32ArrayToF16 } from "../../../src/core/f16.js";
import { GGML_CODEC_TYPES, quantize } from "../../../src/ggml/codecs.js";
import { refGgmlEncoder } from "../../../src/ggml/encoder.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../../../src/ggml/types.js";
import { WasmArena } from "../../../src/kernels/wasm/arena.js";
import { instantiateKernels, wasmModule } from "../../../src/kernels/wasm/module.js";
import { CTRL_BYTES, Dispatcher } from "../../../src/kernels/wasm/pool.js";
import { NodeWorkerHost } from "../../../src/kernels/wasm/pool-node.js";
import { G_COLS, G_DESC_WORDS, G_DST, G_ROW_BYTES, G_TYPE, G_X, POOL_TASKS, T_GGML_ROWS } from "../../../src/kernels/wasm/tasks.js";
import { VARIANTS, disposeAll, randomF32, readyBackend } from "../helpers.js";

after(disposeAll);

const COLS = 256; // a whole block of every codec type
const ROWS = 11;
/** 4 rows per staged chunk: chunks of 4, 4 and 3 rows */
const CHUNK = 4 * COLS;

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Rows of varied scale, an all-zero row and a constant row (the quantizers' edge cases). */
function values(): Float32Array {
  const x = randomF32(ROWS * COLS, 77, 1);
  for (let r = 0; r < ROWS; r++) for (let c = 0; c < COLS; c++) x[r * COLS + c]! *= 0.01 + r * 0.7;
  x.fill(0, 2 * COLS, 3 * COLS);
  x.fill(0.25, 5 * COLS, 6 * COLS);
  return x;
}

test("every codec type, imatrix or not, refine or not, f32 or f16 in, 1/2/3 threads: the reference bytes", async () => {
  const x = values();
  const h = f32ArrayToF16(x);
  const xh = f16ArrayToF32(h);
  const imatrix = Float32Array.from(randomF32(COLS, 5), (v) => 0.1 + v * v * 4);
  const cases = [{ label: "plain" }, { label: "imatrix", imatrix }, { label: "refine", refine: true }, { label: "imatrix+refine", imatrix, refine: true }];
  for (const threads of [1, 2, 3]) {
    const enc = (await readyBackend(VARIANTS[0]!, threads)).ggmlEncoder(CHUNK);
    assert.equal(enc.threads, threads);
    for (const type of GGML_CODEC_TYPES) {
      for (const c of cases) {
        const opts = { imatrix: c.imatrix, refine: c.refine };
        for (const [input, want] of [["f32", quantize(type, x, x.length, opts)], ["f16", quantize(type, xh, xh.length, opts)]] as const) {
          const got = enc.encodeRows({ type, rows: ROWS, cols: COLS, ...(input === "f32" ? { x } : { f16: h }), ...opts });
          const at = firstDiff(got, want);
          assert.equal(at, -1, `${threads} threads, ${ggmlTypeName(type)} ${c.label} ${input}: first differing byte ${at} (block ${Math.floor(at / GGML_TYPES[type].bytesPerBlock)})`);
        }
      }
    }
  }
});

test("the reference encoder gives quantize's bytes too, and both name the tensor in their errors", async () => {
  const x = values();
  const h = f32ArrayToF16(x);
  for (const type of [GgmlType.Q4_K, GgmlType.Q5_0, GgmlType.TQ2_0]) {
    assert.deepEqual(refGgmlEncoder.encodeRows({ type, rows: ROWS, cols: COLS, x }), quantize(type, x));
    assert.deepEqual(refGgmlEncoder.encodeRows({ type, rows: ROWS, cols: COLS, f16: h }), quantize(type, f16ArrayToF32(h)));
  }
  const enc = (await readyBackend(VARIANTS[0]!, 2)).ggmlEncoder();
  for (const e of [refGgmlEncoder, enc]) {
    assert.throws(() => e.encodeRows({ type: GgmlType.Q4_K, rows: 2, cols: 96, x: new Float32Array(192), name: "blk.0.w" }), /blk\.0\.w: row length 96 is not a multiple of the Q4_K block size 256/);
    assert.throws(() => e.encodeRows({ type: GgmlType.IQ2_XS, rows: 1, cols: 256, x: new Float32Array(256), name: "t" }), /t: ggml type IQ2_XS has no encoder/);
    assert.throws(() => e.encodeRows({ type: GgmlType.Q8_0, rows: 2, cols: 32, x: new Float32Array(63), name: "t" }), /t: 63 values for a \[2, 32\] tensor/);
    assert.throws(() => e.encodeRows({ type: GgmlType.Q4_0, rows: 1, cols: 32, x: new Float32Array(32), imatrix: new Float32Array(64), name: "t" }), /t: the importance matrix has 64 columns, the tensor 32/);
    assert.throws(() => e.encodeRows({ type: GgmlType.Q4_0, rows: 1, cols: 32, name: "t" }), /exactly one of x \(f32\) and f16/);
    assert.equal(e.encodeRows({ type: GgmlType.Q4_0, rows: 0, cols: 32, x: new Float32Array(0) }).length, 0);
  }
});

test("Inf/NaN rows take the TS codec (the SIMD quantizers saturate where C's casts do not): same bytes as the reference", async () => {
  const x = values().subarray(0, 4 * COLS).slice();
  x[3] = Infinity;
  x[COLS + 7] = -Infinity;
  x[2 * COLS + 1] = NaN;
  const h = f32ArrayToF16(x);
  const enc = (await readyBackend(VARIANTS[0]!, 2)).ggmlEncoder(COLS);
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_0]) {
    assert.deepEqual(enc.encodeRows({ type, rows: 4, cols: COLS, x }), quantize(type, x), `${ggmlTypeName(type)} f32`);
    assert.deepEqual(enc.encodeRows({ type, rows: 4, cols: COLS, f16: h }), quantize(type, f16ArrayToF32(h)), `${ggmlTypeName(type)} f16`);
  }
});

test("f16Read (a file read chunk by chunk into the encoder's buffer) gives the f16 array's bytes; onNonFinite gets the first Inf/NaN", async () => {
  const x = values();
  const h = f32ArrayToF16(x);
  /** an f16Read over h that records the ranges asked for */
  const reader = (log: [number, number][]) => (start: number, dst: Uint16Array): void => {
    log.push([start, dst.length]);
    dst.set(h.subarray(start, start + dst.length));
  };
  const encoders = [refGgmlEncoder, (await readyBackend(VARIANTS[0]!, 1)).ggmlEncoder(CHUNK), (await readyBackend(VARIANTS[0]!, 2)).ggmlEncoder(CHUNK)];
  for (const enc of encoders) {
    for (const type of [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_1]) {
      const log: [number, number][] = [];
      const seen: number[] = [];
      const got = enc.encodeRows({ type, rows: ROWS, cols: COLS, f16Read: reader(log), onNonFinite: (i) => seen.push(i) });
      assert.deepEqual(got, quantize(type, f16ArrayToF32(h)), `${enc.name} ${ggmlTypeName(type)}`);
      assert.deepEqual(seen, [], `${enc.name}: finite values reported`);
      // in order, each value once
      let next = 0;
      for (const [start, n] of log) {
        assert.equal(start, next, `${enc.name}: read at ${start}, expected ${next}`);
        next += n;
      }
      assert.equal(next, ROWS * COLS);
    }
    // the first non-finite value in flat order, in a later chunk than the first row (CHUNK = 4 rows), f32 and f16
    for (const [bad, at] of [[NaN, 5 * COLS + 17], [Infinity, 9 * COLS], [-Infinity, ROWS * COLS - 1]] as const) {
      const xb = x.slice();
      xb[at] = bad;
      if (at < ROWS * COLS - 1) xb[ROWS * COLS - 1] = NaN; // a later one too (not reported first)
      const hb = f32ArrayToF16(xb);
      for (const input of [{ x: xb }, { f16: hb }, { f16Read: (start: number, dst: Uint16Array) => dst.set(hb.subarray(start, start + dst.length)) }]) {
        const seen: [number, number][] = [];
        enc.encodeRows({ type: GgmlType.Q4_K, rows: ROWS, cols: COLS, ...input, onNonFinite: (i, v) => seen.push([i, v]) });
        assert.deepEqual(seen, [[at, bad]], `${enc.name} ${Object.keys(input)[0]}`);
        // a caller refusing it throws from the callback: the job stops with that error
        assert.throws(() => enc.encodeRows({ type: GgmlType.Q8_0, rows: ROWS, cols: COLS, ...input, onNonFinite: (i) => { throw new Error(`refused ${i}`); } }), new RegExp(`^Error: refused ${at}$`));
      }
    }
  }
});

test("a failing f16Read (read ahead while workers encode, 2 threads) fails the job with its error; the encoder works on", async () => {
  const x = values();
  const h = f32ArrayToF16(x);
  const enc = (await readyBackend(VARIANTS[0]!, 2)).ggmlEncoder(CHUNK);
  for (const failAt of [0, 4 * COLS, 8 * COLS]) {
    const f16Read = (start: number, dst: Uint16Array): void => {
      if (start === failAt) throw new Error(`disk gone at ${start}`);
      dst.set(h.subarray(start, start + dst.length));
    };
    assert.throws(() => enc.encodeRows({ type: GgmlType.Q4_K, rows: ROWS, cols: COLS, f16Read }), new RegExp(`disk gone at ${failAt}`));
    assert.deepEqual(enc.encodeRows({ type: GgmlType.Q4_K, rows: ROWS, cols: COLS, f16: h }), quantize(GgmlType.Q4_K, f16ArrayToF32(h)));
  }
});

test("workers take row ranges of a big Q8_0 encode (3 threads) and the bytes stay the reference's", async () => {
  const be = await readyBackend(VARIANTS[0]!, 3);
  const enc = be.ggmlEncoder(64 * 1024);
  const rows = 512, cols = 1024;
  const x = randomF32(rows * cols, 9, 3);
  const want = quantize(GgmlType.Q8_0, x);
  let workerChunks = 0;
  for (let i = 0; i < 30 && workerChunks === 0; i++) {
    const before = be.poolStats();
    assert.deepEqual(enc.encodeRows({ type: GgmlType.Q8_0, rows, cols, x }), want);
    const after = be.poolStats();
    workerChunks += after.chunks - before.chunks - (after.callerChunks - before.callerChunks);
  }
  assert.ok(workerChunks > 0, "no worker ever encoded a row range");
});

test("a task that throws in any thread fails the dispatch with its own message", async () => {
  const module = wasmModule(VARIANTS[0]!);
  const probe = instantiateKernels(module, new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }));
  const arena = new WasmArena(probe.heap_base(), { maxPages: 256 });
  const kernels = instantiateKernels(module, arena.memory);
  const host = new NodeWorkerHost();
  const pool = new Dispatcher(kernels, arena.memory, arena.alloc(CTRL_BYTES), host, module, { threads: 2, tasks: POOL_TASKS });
  try {
    assert.ok(await pool.ready(20000), "worker did not start");
    const desc = arena.alloc(G_DESC_WORDS * 4);
    const d = new Uint32Array(arena.memory.buffer, desc, G_DESC_WORDS);
    d[G_TYPE] = 4; // a retired ggml id: ggml's quantizeRow refuses it, in whichever thread runs the chunk
    d[G_COLS] = 32;
    d[G_X] = arena.alloc(64 * 32 * 4);
    d[G_DST] = arena.alloc(64 * 34);
    d[G_ROW_BYTES] = 34;
    assert.throws(() => pool.run([{ desc, rows: 64, task: T_GGML_ROWS }]), /chunk failed \(code 1\): quantizeRow: ggml type type#4 has no codec/);
    assert.throws(() => pool.run([{ desc, rows: 64, task: T_GGML_ROWS + 99 }]), /no task 355 in this thread's task table/);
  } finally {
    pool.stop();
  }
});
