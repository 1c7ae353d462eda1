// Q4_K / Q5_K / Q6_K decode kernels on GGUF blocks, 4 rows interleaved, against Q8_K activations (relaxed build;
// assembly/kdecode.ts): the WASM Q8_K quantizer writes ggml's quantize_row_q8_K_ref values, every output
// equals the scalar twin (kernels/ref/kdecode.ts) bit for bit — first call (baseline tier) and warmed up,
// 1 and 2 threads, mat-vec and matmul, alone and mixed with Q8_0-activation kinds in one dispatch — and the
// twin agrees with a float64 dot of the decoded weights and the decoded Q8_K activations.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlTypeName } from "../../../src/ggml/types.js";
import { dequantizeRow } from "../../../src/ggml/codecs.js";
import { quantizeQ8_KRef } from "../../../src/ggml/kquants.js";
import { readF32, readI16 } from "../../../src/ggml/cfloat.js";
import { dotQ4_KQ8KRef, dotQ5_KQ8KRef, dotQ6_KQ8KRef } from "../../../src/kernels/ref/kdecode.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { Q8K_SUM_BYTES } from "../../../assembly/abi.js";
import { VARIANTS, ggmlWeight, randomF32 } from "../helpers.js";
import { Tensor } from "../../../src/core/tensor.js";

const made: WasmBackend[] = [];
after(() => { for (const b of made) b.dispose(); });
function make(threads: number): WasmBackend {
  const b = createNodeWasmBackend({ variant: "relaxed", threads, minParallelBytes: 0, watchdogMs: 20000 });
  made.push(b);
  return b;
}

const Q8K = 292;

/** x (n floats) as ggml block_q8_K bytes */
function q8k(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * Q8K);
  for (let s = 0; s < x.length / 256; s++) quantizeQ8_KRef(x, 256 * s, out, s * Q8K);
  return out;
}

const TWIN = { [GgmlType.Q4_K]: dotQ4_KQ8KRef, [GgmlType.Q5_K]: dotQ5_KQ8KRef, [GgmlType.Q6_K]: dotQ6_KQ8KRef } as const;
const BPB = { [GgmlType.Q4_K]: 144, [GgmlType.Q5_K]: 176, [GgmlType.Q6_K]: 210 } as const;
type KType = GgmlType.Q4_K | GgmlType.Q5_K | GgmlType.Q6_K;

/** twin outputs (n, rows) */
function twin(type: KType, data: Uint8Array, rows: number, cols: number, x: Float32Array, n: number): Float32Array {
  const nsb = cols / 256;
  const out = new Float32Array(n * rows);
  for (let t = 0; t < n; t++) {
    const a = q8k(x.subarray(t * cols, (t + 1) * cols));
    for (let r = 0; r < rows; r++) out[t * rows + r] = TWIN[type](data, r * nsb * BPB[type], a, 0, nsb);
  }
  return out;
}

function firstDiff(a: Float32Array, b: Float32Array): string | undefined {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `output ${i}: ${a[i]} vs twin ${b[i]}`;
  return a.length === b.length ? undefined : `length ${a.length} vs ${b.length}`;
}

describe("WASM relaxed: Q4_K / Q5_K / Q6_K × Q8_K, 4 rows interleaved", { skip: !VARIANTS.includes("relaxed") && "relaxed SIMD not supported" }, () => {
  test("quantize_act_q8k = quantize_row_q8_K_ref (codes, d, sums per 16 and per 32), zero and tied blocks", () => {
    const be = make(1);
    const n = 1024;
    const x = randomF32(n, 3, 5);
    x.fill(0, 256, 512); // an all-zero super-block
    x[600] = 4.75; x[700] = -4.75; // equal magnitudes of both signs: the first one sets the sign of the scale
    x[900] = 1e-30; // tiny values beside normal ones
    // the SIMD scan (largest |x| by lanes, then the first x of it): ties in one 4-lane step (lanes 1, 2) and across
    // two steps with the later one in a lower lane (771 = lane 3, 772 = lane 0): the first in element order wins
    x[33] = 9.5; x[34] = -9.5;
    x[771] = -12.25; x[772] = 12.25; x[1000] = 12.25;
    const off = be.arena.alloc(n * 4 + n + (n / 256) * (4 + Q8K_SUM_BYTES) + 256, 64);
    const x8 = off + n * 4, xd = x8 + n, xs = xd + (n / 256) * 4 + 64;
    be.arena.f32.set(x, off >> 2);
    be.kernels.quantize_act_q8k(off, n, x8, xd, xs);
    const ref = q8k(x);
    const u8 = be.arena.u8;
    const i16 = new Int16Array(u8.buffer, u8.byteOffset, u8.length >> 1);
    for (let s = 0; s < n / 256; s++) {
      assert.equal(be.arena.f32[(xd >> 2) + s], readF32(ref, s * Q8K), `d of super-block ${s}`);
      assert.deepEqual(u8.subarray(x8 + 256 * s, x8 + 256 * (s + 1)), ref.subarray(s * Q8K + 4, s * Q8K + 260), `codes of super-block ${s}`);
      const r = (xs + s * Q8K_SUM_BYTES) >> 1;
      for (let g = 0; g < 16; g++) assert.equal(i16[r + g], readI16(ref, s * Q8K + 260 + 2 * g), `sum ${g} of super-block ${s}`);
      for (let h = 0; h < 8; h++) assert.equal(i16[r + 16 + h], readI16(ref, s * Q8K + 260 + 4 * h) + readI16(ref, s * Q8K + 262 + 4 * h), `sum per 32 ${h}`);
    }
    assert.equal(readF32(ref, Q8K), 0, "the zero super-block has d = 0");
    assert.ok(readF32(ref, 0) < 0 && readF32(ref, 3 * Q8K) > 0, "the ties set the sign of d = −max/127 by the first of them");
  });

  test("decode chunkBytes: chunks of about chunkBytes of weights (one row group each here) = the default split = the twin, bit for bit, 2 threads", async () => {
    const be = make(2);
    assert.ok(await be.ready(20000), "workers started");
    const rows = 64, cols = 2048;
    const w = ggmlWeight(GgmlType.Q4_K, rows, cols, randomF32(rows * cols, 120, 2));
    const p = be.prepare(w.weight, w.label);
    const x = randomF32(cols, 121, 3);
    const want = twin(GgmlType.Q4_K, (w.weight as { data: Uint8Array }).data, rows, cols, x, 1);
    assert.equal(be.chunkBytes, 256 * 1024, "default");
    assert.throws(() => { be.chunkBytes = 0; }, /chunkBytes must be > 0/);
    const chunks: Record<string, number> = {};
    for (const cb of [Infinity, 4608, 1]) {
      be.chunkBytes = cb;
      const got = new Float32Array(rows).fill(NaN);
      const c0 = be.poolStats().chunks;
      be.matvec(p, x, got);
      chunks[String(cb)] = be.poolStats().chunks - c0;
      assert.equal(firstDiff(got, want), undefined, `chunkBytes ${cb}: ${firstDiff(got, want)}`);
    }
    // 16 row groups of 4608 bytes: the default split is threads × 4 = 8 chunks; 4608 B → 16; 1 B → 16 (one group each)
    assert.deepEqual(chunks, { Infinity: 8, 4608: 16, 1: 16 });
  });

  for (const type of [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K] as const) {
    const name = ggmlTypeName(type);
    test(`${name}: interleaved listing; mat-vec and matmul (n = 3, 6, 9: the 4- and 2-token prefill tiles and the single-token tail) = the twin bit for bit, cold and warm, 1 and 2 threads`, async () => {
      let seed = 40 + type;
      for (const threads of [1, 2]) {
        const be = make(threads);
        if (threads > 1) assert.ok(await be.ready(20000), "workers started");
        for (const [rows, cols] of [[4, 256], [12, 768], [8, 512]] as const) {
          const w = ggmlWeight(type, rows, cols, randomF32(rows * cols, seed++, 2));
          const data = (w.weight as { data: Uint8Array }).data;
          const copy = data.slice();
          const p = be.prepare(w.weight, w.label);
          assert.match(be.listing().at(-1)!.kernel, /4 rows interleaved/, `${w.label}`);
          assert.deepEqual(data, copy, "the caller's bytes are not permuted");
          for (const n of [1, 3, 6, 9]) {
            const x = randomF32(n * cols, seed++, 3);
            const want = twin(type, data, rows, cols, x, n);
            const got = new Float32Array(n * rows);
            for (let rep = 0; rep < 40; rep++) {
              got.fill(NaN);
              be.matmul(p, x, n, got);
              const d = firstDiff(got, want);
              assert.equal(d, undefined, `${w.label} n=${n} threads=${threads} call ${rep}: ${d}`);
            }
          }
        }
      }
    });

    // Q6_K: n = 37 runs both blocks on the panel (32 + 5 tokens), n = 34 its second block (2 tokens) on the tiles;
    // 16640 columns (65 super-blocks) are beyond a panel slot (Q6_PANEL_MAX_SB): every block on the tiles
    for (const [cols, n] of [[8192, 37], [8192, 34], ...(type === GgmlType.Q6_K ? [[16640, 6]] as const : [])] as const) {
      test(`${name}: prefill over token blocks (${cols} columns, n = ${n}) = the twin bit for bit, 1 and 2 threads`, async () => {
        const rows = 8;
        const w = ggmlWeight(type, rows, cols, randomF32(rows * cols, 70 + type + n, 2));
        const data = (w.weight as { data: Uint8Array }).data;
        const x = randomF32(n * cols, 71 + type + n, 3);
        const want = twin(type, data, rows, cols, x, n);
        for (const threads of [1, 2]) {
          const be = make(threads);
          if (threads > 1) assert.ok(await be.ready(20000), "workers started");
          const p = be.prepare(w.weight, w.label);
          const got = new Float32Array(n * rows);
          for (let rep = 0; rep < 3; rep++) {
            got.fill(NaN);
            be.matmul(p, x, n, got);
            const d = firstDiff(got, want);
            assert.equal(d, undefined, `${w.label} n=${n} threads=${threads} call ${rep}: ${d}`);
          }
        }
      });
    }

    test(`${name}: the twin = a float64 dot of the decoded rows and decoded Q8_K activations (to f32 rounding)`, () => {
      const rows = 8, cols = 1024;
      const w = ggmlWeight(type, rows, cols, randomF32(rows * cols, 90 + type, 1));
      const x = randomF32(cols, 91, 4);
      const a = q8k(x);
      const xa = new Float32Array(cols);
      dequantizeRow(GgmlType.Q8_K, a, xa, cols);
      const got = twin(type, (w.weight as { data: Uint8Array }).data, rows, cols, x, 1);
      for (let r = 0; r < rows; r++) {
        let s = 0, mag = 0;
        for (let c = 0; c < cols; c++) {
          const t = w.values[r * cols + c]! * xa[c]!;
          s += t;
          mag += Math.abs(t);
        }
        // the kernel applies d·xd to exact integer sums: a few f32 roundings per super-block
        assert.ok(Math.abs(got[r]! - s) <= 4e-6 * mag, `row ${r}: ${got[r]} vs ${s} (Σ|terms| ${mag})`);
      }
    });
  }

  test("Q5_K has only the interleaved kernel: 4k rows run (and are placed) on the GGUF blocks, other matrices on the repack", () => {
    const auto = make(1);
    const native = createNodeWasmBackend({ variant: "relaxed", threads: 1, layouts: "native" });
    made.push(native);
    const cols = 512;
    for (const rows of [8, 7]) {
      const w = ggmlWeight(GgmlType.Q5_K, rows, cols, randomF32(rows * cols, 300 + rows, 2));
      const view = auto.placeTensor(GgmlType.Q5_K, [rows, cols], "q5k");
      assert.equal(view !== undefined, rows % 4 === 0, `rows ${rows}: placed`);
      const p = auto.prepare(w.weight, w.label);
      assert.match(auto.listing().at(-1)!.kernel, rows % 4 === 0 ? /^q5_k \(ggml blocks, 4 rows interleaved\)/ : /^i8·s32·m32/);
      native.prepare(w.weight, w.label);
      assert.match(native.listing().at(-1)!.kernel, /^i8·s32·m32/, "layouts native: no non-interleaved Q5_K kernel, so the repack");
      const x = randomF32(cols, 5);
      const out = new Float32Array(rows);
      auto.matvec(p, x, out);
      if (rows % 4 === 0) assert.deepEqual(out, twin(GgmlType.Q5_K, (w.weight as { data: Uint8Array }).data, rows, cols, x, 1));
    }
  });

  test("one dispatch mixing Q8_K kinds with Q8_0 kinds on the same x: each output = its own mat-vec", () => {
    const be = make(2);
    const cols = 512;
    const ws = [GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q8_0, GgmlType.Q6_K, GgmlType.Q4_K, GgmlType.Q5_K].map((t, i) => ggmlWeight(t, 8, cols, randomF32(8 * cols, 70 + i)));
    const ps = ws.map((w) => be.prepare(w.weight, w.label));
    const x = randomF32(cols, 77, 2);
    const many = ws.map(() => new Float32Array(8));
    be.matvecMany(ps.map((w, i) => ({ w, x, out: many[i]! })));
    ps.forEach((p, i) => {
      const one = new Float32Array(8);
      be.matvec(p, x, one);
      assert.deepEqual(many[i], one, ws[i]!.label);
    });
    const q4k = new Float32Array(8);
    be.matvec(ps[1]!, x, q4k);
    assert.deepEqual(q4k, twin(GgmlType.Q4_K, (ws[1]!.weight as { data: Uint8Array }).data, 8, cols, x, 1));
  });
});

// F16 mat-vec: the kernel converts binary16 in registers and accumulates exactly as the f32 kernel does
// (16-wide steps into 4 accumulators, a 4-wide tail, a scalar tail), so on the same values — f16 weights
// and their exact f32 decodes — the two give the same bits. Every finite f16 pattern (normals of all
// exponents, subnormals, ±0) is in the weights; lengths hit every tail.
for (const variant of VARIANTS) {
  test(`WASM ${variant}: F16 mat-vec = F32 mat-vec on the decoded weights, bit for bit (all finite f16 patterns, every tail)`, () => {
    const be = createNodeWasmBackend({ variant, threads: 1 });
    made.push(be);
    const patterns: number[] = [];
    for (let h = 0; h < 0x10000; h++) if ((h & 0x7c00) !== 0x7c00) patterns.push(h);
    for (const cols of [16, 37, 64, 515, 4096]) {
      const rows = Math.ceil(patterns.length / cols / 8);
      const h = new Uint16Array(rows * cols);
      for (let i = 0; i < h.length; i++) h[i] = patterns[(i * 7919) % patterns.length]!;
      const f16 = new Tensor("f16", [rows, cols], h);
      const p16 = be.prepare({ kind: "dense", tensor: f16 }, `f16 ${cols}`);
      const p32 = be.prepare({ kind: "dense", tensor: Tensor.fromF32([rows, cols], f16.toF32()) }, `f32 ${cols}`);
      assert.equal(be.listing().at(-2)!.kernel, "f16");
      // activations small enough that no product overflows (|w| ≤ 65504)
      const x = randomF32(cols, cols, 1e-3);
      const a = new Float32Array(rows), b = new Float32Array(rows);
      for (let rep = 0; rep < 30; rep++) {
        be.matvec(p16, x, a);
        be.matvec(p32, x, b);
        assert.equal(firstDiff(a, b), undefined, `cols ${cols} call ${rep}: ${firstDiff(a, b)}`);
      }
    }
  });
}

// F16 decode reads x·2^112 (dispatch.ts: scale_act_f16 once per x) unless some |x| ≥ 2^16, where that copy
// would overflow and the kernel multiplies by 2^112 itself; long rows (≥ 4096 columns) run two at a time.
// Both paths, odd row counts and row splits over 2 threads, one dispatch sharing x between F16 jobs: each
// output = the F32 mat-vec on the decoded weights, bit for bit.
for (const variant of VARIANTS) {
  test(`WASM ${variant}: F16 decode, x prescaled or not (|x| ≥ 2^16), rows in pairs, 1 and 2 threads = F32 mat-vec bit for bit`, async () => {
    for (const threads of [1, 2]) {
      const be = createNodeWasmBackend({ variant, threads, minParallelBytes: 0, watchdogMs: 20000 });
      made.push(be);
      if (threads > 1) assert.ok(await be.ready(20000), "workers started");
      for (const [rows, cols] of [[7, 4096], [5, 4100], [9, 8192], [6, 2051]] as const) {
        const h = new Uint16Array(rows * cols);
        let s = 17 + rows;
        for (let i = 0; i < h.length; i++) {
          s = (s * 1103515245 + 12345) >>> 0;
          let v = s >>> 16;
          if ((v & 0x7c00) === 0x7c00) v &= 0xbfff; // finite: exponent 15 instead of 31
          h[i] = v;
        }
        const f16 = new Tensor("f16", [rows, cols], h);
        const p16 = be.prepare({ kind: "dense", tensor: f16 }, `f16 ${rows}×${cols}`);
        const p32 = be.prepare({ kind: "dense", tensor: Tensor.fromF32([rows, cols], f16.toF32()) }, `f32 ${rows}×${cols}`);
        const small = randomF32(cols, cols + threads, 1e-3);
        const big = small.slice();
        big[cols >> 1] = 70000; // |x| ≥ 2^16: x·2^112 would overflow, so the unscaled path
        big[3] = -65536;
        for (const x of [small, big]) {
          // products stay finite: |w| ≤ 65504, |x| ≤ 70000 (and the sums of these sizes in f32)
          const a = new Float32Array(rows), b = new Float32Array(rows);
          for (let rep = 0; rep < 3; rep++) {
            be.matvec(p16, x, a);
            be.matvec(p32, x, b);
            assert.equal(firstDiff(a, b), undefined, `${rows}×${cols} threads ${threads} ${x === big ? "big" : "small"} x call ${rep}: ${firstDiff(a, b)}`);
          }
          // two F16 jobs on one x in one dispatch (the scaled copy is made once) and an F32 job beside them
          const m1 = new Float32Array(rows), m2 = new Float32Array(rows), m3 = new Float32Array(rows);
          be.matvecMany([{ w: p16, x, out: m1 }, { w: p32, x, out: m2 }, { w: p16, x, out: m3 }]);
          assert.deepEqual([m1, m2, m3], [b, b, b], `${rows}×${cols} matvecMany`);
        }
      }
    }
  });
}
