// Native ggml-block kernels (Q8_0, Q4_0, Q4_K, Q6_K read in place) and the repacked layouts agree with
// the oracle in both builds; tensors placed by `placeTensor` run in place; weights spread over several
// WebAssembly memories ("shards") give the single-memory bits, with and without workers, including a
// shard added after the workers started.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { GgmlType } from "../../../src/ggml/types.js";
import { quantizeRow } from "../../../src/ggml/codecs.js";
import { Tensor } from "../../../src/core/tensor.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { NATIVE } from "../../../src/kernels/wasm/layouts.js";
import { VARIANTS, denseWeight, ggmlWeight, oracle, randomF32, worstRelError } from "../helpers.js";
import type { Weight } from "../../../src/core/weight.js";

const made: WasmBackend[] = [];
function make(opts: Parameters<typeof createNodeWasmBackend>[0]): WasmBackend {
  const b = createNodeWasmBackend({ minParallelBytes: 0, watchdogMs: 20000, ...opts });
  made.push(b);
  return b;
}
after(() => { for (const b of made) b.dispose(); });

const NATIVE_TYPES = [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K];

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

for (const variant of VARIANTS) {
  for (const layouts of ["auto", "native", "repacked"] as const) {
    test(`${variant} ${layouts}: Q8_0, Q4_0, Q4_K, Q6_K vs the oracle (1–3 blocks, odd rows, matmul n=3), cold and warm`, () => {
      const be = make({ variant, layouts });
      let seed = 500;
      for (const type of NATIVE_TYPES) {
        const bs = NATIVE[type]!.blockSize;
        for (const cols of [bs, 2 * bs, 3 * bs]) {
          for (const rows of [1, 9]) {
            const w = ggmlWeight(type, rows, cols, randomF32(rows * cols, seed++, 2));
            const p = be.prepare(w.weight, w.label);
            const native = (layouts === "native" ? NATIVE[type]!.variants : layouts === "auto" ? NATIVE[type]!.byDefault : []).includes(variant);
            assert.equal(be.listing().at(-1)!.kernel.endsWith("(ggml blocks)"), native, `${w.label}: ${be.listing().at(-1)!.kernel}`);
            const x = randomF32(3 * cols, seed++, 3);
            const got = new Float32Array(3 * rows);
            for (let rep = 0; rep < 40; rep++) be.matmul(p, x, 3, got); // later calls run TurboFan code
            const { err, at } = worstRelError(got, oracle(w, x, 3, p));
            assert.ok(err <= 2e-6, `${variant} ${layouts} ${w.label}: ${err.toExponential(2)} at ${at}`);
          }
        }
      }
    });
  }
}

test("placeTensor: a tensor read into the returned view runs in place (no copy), same bits as a copied one", () => {
  const be = make({ variant: VARIANTS[VARIANTS.length - 1]!, layouts: "native" });
  const cases = [
    ggmlWeight(GgmlType.Q4_K, 24, 512, randomF32(24 * 512, 1)),
    ggmlWeight(GgmlType.Q6_K, 24, 512, randomF32(24 * 512, 2)),
    ggmlWeight(GgmlType.Q8_0, 24, 512, randomF32(24 * 512, 3)),
    denseWeight("f32", 24, 100, randomF32(2400, 4)),
    denseWeight("f16", 24, 100, randomF32(2400, 5)),
  ];
  for (const w of cases) {
    const type = w.weight.kind === "ggml" ? w.weight.type : w.label.startsWith("f16") ? GgmlType.F16 : GgmlType.F32;
    const wt = w.weight;
    const bytes = wt.kind === "ggml" ? wt.data : wt.kind === "dense" ? new Uint8Array(wt.tensor.data.buffer, wt.tensor.data.byteOffset, wt.tensor.data.byteLength) : new Uint8Array(0);
    const view = be.placeTensor(type, [w.rows, w.cols], w.label);
    if (!view) {
      // only native types of this build are placed
      assert.ok(type !== GgmlType.F32 && type !== GgmlType.F16 && !NATIVE[type]!.variants.includes(be.variant), `${w.label} not placed`);
      continue;
    }
    assert.equal(view.length, bytes.length);
    view.set(bytes);
    const n = w.rows * w.cols;
    const placed: Weight = w.weight.kind === "ggml"
      ? { ...w.weight, data: view }
      : type === GgmlType.F32
        ? { kind: "dense", tensor: new Tensor("f32", [w.rows, w.cols], new Float32Array(view.buffer, view.byteOffset, n)) }
        : { kind: "dense", tensor: new Tensor("f16", [w.rows, w.cols], new Uint16Array(view.buffer, view.byteOffset, n)) };
    const used = be.memoryStats().shards.reduce((a, b) => a + b, 0);
    const p1 = be.prepare(placed, `${w.label} placed`);
    const row = be.listing().at(-1)!;
    assert.ok(row.inPlace, `${w.label}: not in place (${row.kernel})`);
    assert.ok(be.memoryStats().shards.reduce((a, b) => a + b, 0) - used < 256 * 1024 + 64, `${w.label}: prepare copied the placed tensor`);
    const p2 = be.prepare(w.weight, `${w.label} copied`);
    assert.equal(be.listing().at(-1)!.inPlace, false);
    const x = randomF32(w.cols, 9);
    const a = new Float32Array(w.rows), b = new Float32Array(w.rows);
    be.matvec(p1, x, a);
    be.matvec(p2, x, b);
    assert.ok(sameBits(a, b), `${w.label}: in-place result differs`);
  }
});

test("shards: weights spread over several small memories give the one-memory bits (1 and 2 threads, shard added after workers start)", async () => {
  for (const variant of VARIANTS) {
    const one = make({ variant });
    // 2 MiB memories with 512 KiB kept for scratch: each 1 MiB-ish weight below lands in its own shard
    const small = make({ variant, maxPages: 32, scratchReserveBytes: 512 * 1024, threads: 2 });
    assert.ok(await small.ready(20000), "workers did not start");
    const ws = [
      ggmlWeight(GgmlType.Q4_K, 2048, 512, randomF32(2048 * 512, 11)), // 576 KiB
      denseWeight("f32", 300, 1000, randomF32(300000, 12)), // 1.2 MB
      ggmlWeight(GgmlType.Q6_K, 2048, 512, randomF32(2048 * 512, 13)),
      ggmlWeight(GgmlType.Q8_0, 1024, 768, randomF32(1024 * 768, 14)),
      denseWeight("f16", 700, 1000, randomF32(700000, 15)),
    ];
    const p1 = ws.map((w) => one.prepare(w.weight, w.label));
    const ps = ws.map((w) => small.prepare(w.weight, w.label));
    const shards = new Set(small.listing().map((r) => r.shard));
    assert.ok(shards.size >= 3, `expected several shards, got ${[...shards]}`);
    assert.equal(small.memoryStats().shards.length, shards.size);
    for (const threads of [1, 2]) {
      small.minParallelBytes = threads === 1 ? Infinity : 0;
      const before = small.poolStats();
      for (let it = 0; it < 30; it++) {
        // Q/K/V style: one x shared by jobs in different shards, in one dispatch
        const x = randomF32(512, it + 1);
        const idx = [0, 2];
        const jobs = idx.map((i) => ({ w: ps[i]!, x, out: new Float32Array(ws[i]!.rows) }));
        small.matvecMany(jobs);
        idx.forEach((i, j) => {
          const want = new Float32Array(ws[i]!.rows);
          one.matvec(p1[i]!, x, want);
          assert.ok(sameBits(jobs[j]!.out, want), `${variant} t${threads}: ${ws[i]!.label} differs`);
        });
        for (const i of [1, 3, 4]) {
          const xi = randomF32(ws[i]!.cols * 2, it + 50);
          const a = new Float32Array(2 * ws[i]!.rows), b = new Float32Array(2 * ws[i]!.rows);
          small.matmul(ps[i]!, xi, 2, a);
          one.matmul(p1[i]!, xi, 2, b);
          assert.ok(sameBits(a, b), `${variant} t${threads}: ${ws[i]!.label} matmul differs`);
        }
      }
      if (threads === 2) {
        const s = small.poolStats();
        assert.equal(s.broken, undefined);
        assert.ok(s.dispatches > 0);
        // the worker took part although the later shards were announced after it started
        assert.ok(s.callerChunks - before.callerChunks < s.chunks - before.chunks, "the worker never ran a chunk");
      }
    }
  }
});

test("a tensor larger than one memory is refused with its name and sizes", () => {
  const be = make({ variant: VARIANTS[0]!, maxPages: 16, scratchReserveBytes: 256 * 1024 });
  const w = denseWeight("f32", 1024, 1024, new Float32Array(1024 * 1024));
  assert.throws(() => be.prepare(w.weight, "blk.0.ffn_up.weight"), /blk\.0\.ffn_up\.weight needs 4\.0 MiB, more than one WebAssembly memory takes for weights/);
  const data = new Uint8Array(((64 * 256) / 256) * 144);
  quantizeRow(GgmlType.Q4_K, randomF32(64 * 256, 1), data, 64 * 256);
  be.prepare({ kind: "ggml", type: GgmlType.Q4_K, shape: [64, 256], data }, "fits"); // still usable
});

test("offsets above 2 GiB (weights and scratch past the int32 range) work", () => {
  const be = make({ variant: VARIANTS[VARIANTS.length - 1]! });
  // untouched pages cost no RSS: push the allocator past 2^31 bytes, then prepare and run above it
  be.arena.alloc(2 ** 31 + 4096, 64, "padding");
  const ws = [denseWeight("f32", 9, 64, randomF32(9 * 64, 1)), ggmlWeight(GgmlType.Q4_K, 9, 256, randomF32(9 * 256, 2)), ggmlWeight(GgmlType.Q8_0, 9, 64, randomF32(9 * 64, 3))];
  for (const w of ws) {
    const p = be.prepare(w.weight, w.label);
    const x = randomF32(w.cols, 4);
    const out = new Float32Array(w.rows);
    be.matvec(p, x, out);
    const { err } = worstRelError(out, oracle(w, x, 1, p));
    assert.ok(err <= 2e-6, `${w.label}: ${err}`);
  }
  assert.ok(be.memoryStats().shards[0]! > 2 ** 31);
});
