// The worker pool: results are bit-identical to one thread for any split, workers really take chunks,
// many small dispatches under oversubscription (more workers than cores) never hang, a stuck worker
// trips the watchdog instead of hanging, and a disposed backend refuses work.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { GgmlType } from "../../../src/ggml/types.js";
import { QuantlabError } from "../../../src/core/errors.js";
import { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import type { WorkerHost, WorkerInit } from "../../../src/kernels/wasm/pool.js";
import type { PreparedWeight } from "../../../src/kernels/types.js";
import { denseWeight, ggmlWeight, randomF32, VARIANTS } from "../helpers.js";

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

test("workers take chunks of big jobs, and any split gives the single-thread bits", async () => {
  const one = createNodeWasmBackend({ variant: VARIANTS[0] });
  const two = createNodeWasmBackend({ variant: VARIANTS[0], threads: 2, minParallelBytes: 0 });
  try {
    assert.ok(await two.ready(20000), "worker did not start");
    const w = ggmlWeight(GgmlType.Q4_0, 2048, 1024, randomF32(2048 * 1024, 4));
    const p1 = one.prepare(w.weight), p2 = two.prepare(w.weight);
    const x = randomF32(1024, 5);
    const a = new Float32Array(2048), b = new Float32Array(2048);
    one.matvec(p1, x, a);
    let workerChunks = 0;
    for (let i = 0; i < 50 && workerChunks === 0; i++) {
      const before = two.poolStats();
      two.matvec(p2, x, b);
      assert.ok(sameBits(a, b), "2-thread result differs from 1-thread bits");
      const after = two.poolStats();
      // 2 threads × 4 chunks per thread = 8 chunks per dispatch
      workerChunks += 8 - (after.callerChunks - before.callerChunks);
    }
    assert.ok(workerChunks > 0, "the worker never ran a chunk");
  } finally {
    one.dispose();
    two.dispose();
  }
});

test("oversubscribed: 6 threads on this machine's cores, 600 small batched dispatches, no hang, exact results", async () => {
  const one = createNodeWasmBackend({ variant: VARIANTS[0] });
  const many = createNodeWasmBackend({ variant: VARIANTS[0], threads: 6, minParallelBytes: 0, spinMicros: 0, watchdogMs: 20000 });
  try {
    await many.ready(20000); // proceed even if some did not start: the caller covers for them
    const ws = [
      ggmlWeight(GgmlType.Q8_0, 33, 64, randomF32(33 * 64, 1)),
      ggmlWeight(GgmlType.Q4_K, 17, 256, randomF32(17 * 256, 2)),
      denseWeight("f32", 5, 40, randomF32(200, 3)),
      ggmlWeight(GgmlType.Q6_K, 64, 256, randomF32(64 * 256, 4)),
    ];
    const p1: PreparedWeight[] = ws.map((w) => one.prepare(w.weight));
    const pm: PreparedWeight[] = ws.map((w) => many.prepare(w.weight));
    const t0 = performance.now();
    for (let it = 0; it < 600; it++) {
      const k = it % ws.length;
      const x = randomF32(ws[k]!.cols, it + 1);
      const jobs = [k, (k + 1) % ws.length].map((j) => ({ w: pm[j]!, x: j === k ? x : randomF32(ws[j]!.cols, it + 7), out: new Float32Array(ws[j]!.rows) }));
      many.matvecMany(jobs);
      for (const [i, j] of [k, (k + 1) % ws.length].entries()) {
        const want = new Float32Array(ws[j]!.rows);
        one.matvec(p1[j]!, jobs[i]!.x, want);
        assert.ok(sameBits(jobs[i]!.out, want), `dispatch ${it} job ${i} differs`);
      }
    }
    const s = many.poolStats();
    assert.equal(s.broken, undefined);
    assert.equal(s.dispatches, 600);
    assert.ok(performance.now() - t0 < 60000);
  } finally {
    one.dispose();
    many.dispose();
  }
});

class StallHost implements WorkerHost {
  private workers: Worker[] = [];
  start(n: number, init: WorkerInit): void {
    for (let i = 0; i < n; i++) {
      const w = new Worker(new URL("./stall-worker-node.js", import.meta.url), { workerData: init });
      w.unref();
      this.workers.push(w);
    }
  }
  stop(): void {
    for (const w of this.workers) void w.terminate();
  }
}

test("a stuck worker trips the watchdog (an error, not a hang); the pool then runs on the caller", async () => {
  const be = new WasmBackend({ variant: VARIANTS[0], threads: 2, workerHost: new StallHost(), minParallelBytes: 0, watchdogMs: 300 });
  try {
    assert.ok(await be.ready(20000));
    // big enough (8 chunks of ~0.2 ms) that the spinning stuck worker claims one before the caller is done
    const w = denseWeight("f32", 2048, 2048, randomF32(2048 * 2048, 1));
    const p = be.prepare(w.weight);
    const out = new Float32Array(2048);
    const x = randomF32(2048, 2);
    // the stuck worker may be descheduled on a busy machine: dispatch until it has claimed a chunk
    let err: unknown;
    let t0 = 0;
    for (let i = 0; i < 200 && err === undefined; i++) {
      t0 = performance.now();
      try {
        be.matvec(p, x, out);
      } catch (e) {
        err = e;
      }
    }
    assert.ok(err instanceof QuantlabError && err.code === "E_INTERNAL" && /stalled/.test(err.message), String(err));
    assert.ok(performance.now() - t0 < 5000);
    assert.match(be.poolStats().broken ?? "", /stalled/);
    be.matvec(p, x, out); // degraded to the calling thread, still correct
    const ref = createNodeWasmBackend({ variant: VARIANTS[0] });
    const want = new Float32Array(2048);
    ref.matvec(ref.prepare(w.weight), x, want);
    assert.ok(sameBits(out, want));
    ref.dispose();
  } finally {
    be.dispose();
  }
});

test("errors: threads without a host, foreign weights, short buffers, use after dispose", () => {
  assert.throws(() => new WasmBackend({ threads: 2 }), /needs a worker host/);
  const a = createNodeWasmBackend(), b = createNodeWasmBackend();
  const w = denseWeight("f32", 4, 8, randomF32(32, 1));
  const pa = a.prepare(w.weight);
  assert.throws(() => b.matvec(pa, new Float32Array(8), new Float32Array(4)), /not prepared by this backend/);
  assert.throws(() => a.matvec(pa, new Float32Array(7), new Float32Array(4)), /x has 7 elements/);
  assert.throws(() => a.prepare({ kind: "ggml", type: GgmlType.Q4_0, shape: [2, 48], data: new Uint8Array(54) }, "blk.0.w"), /blk\.0\.w: Q4_0 rows of 48/);
  a.dispose();
  assert.throws(() => a.matvec(pa, new Float32Array(8), new Float32Array(4)), /after dispose/);
  b.dispose();
});
