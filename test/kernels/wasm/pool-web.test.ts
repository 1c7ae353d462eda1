// The browser's worker-pool host (pool-web.ts) and worker entry (worker-web.ts), run here on Node worker
// threads behind the Web Worker interface: a 3-thread backend on them computes the 1-thread results (a
// mat-vec, and ggml encoding through the TypeScript task table), its workers really take chunks, and the
// host refuses to start where memory cannot be shared (a page that is not cross-origin isolated).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { quantize } from "../../../src/ggml/codecs.js";
import { GgmlType } from "../../../src/ggml/types.js";
import { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { WebWorkerHost, canShareMemory, type WebWorkerLike } from "../../../src/kernels/wasm/pool-web.js";
import { Tensor } from "../../../src/core/tensor.js";
import { VARIANTS, randomF32 } from "../helpers.js";

const g = globalThis as { crossOriginIsolated?: boolean };
const backends: WasmBackend[] = [];
after(() => { for (const b of backends) b.dispose(); delete g.crossOriginIsolated; });

/** A Node worker behind the part of the Web Worker API the host uses. */
function spawn(): WebWorkerLike {
  const w = new Worker(new URL("./web-worker-shim.js", import.meta.url));
  w.unref();
  const like: WebWorkerLike = {
    postMessage: (m) => w.postMessage(m),
    terminate: () => void w.terminate(),
    onerror: null,
  };
  w.on("error", (e) => like.onerror?.({ message: e.message }));
  return like;
}

test("not cross-origin isolated: the web host refuses threads, naming why", () => {
  delete g.crossOriginIsolated;
  assert.equal(canShareMemory(), false);
  assert.throws(() => new WasmBackend({ threads: 2, workerHost: new WebWorkerHost(spawn) }), /not cross-origin isolated \(COOP\/COEP headers\).*use one thread/);
});

test("3 threads over Web-Worker-shaped workers: the 1-thread mat-vec and ggml bytes, chunks run by the workers", async () => {
  g.crossOriginIsolated = true;
  const variant = VARIANTS[0]!;
  const host = new WebWorkerHost(spawn);
  const threaded = new WasmBackend({ variant, threads: 3, workerHost: host, minParallelBytes: 0, watchdogMs: 20000 });
  const single = new WasmBackend({ variant, threads: 1 });
  backends.push(threaded, single);
  assert.ok(await threaded.ready(20000), `workers did not start: ${host.errors.join("; ")}`);
  assert.equal(threaded.poolStats().alive, 2);

  // big enough (4 MB) that a worker woken by the dispatch finds chunks left before the caller is done
  const rows = 1024, cols = 1024;
  const wv = randomF32(rows * cols, 3);
  const x = randomF32(cols, 4);
  const w = { kind: "dense" as const, tensor: new Tensor("f32", [rows, cols], wv) };
  const want = new Float32Array(rows), got = new Float32Array(rows);
  single.matvec(single.prepare(w), x, want);
  const pw = threaded.prepare(w);
  let workerChunks = 0;
  for (let i = 0; i < 200 && workerChunks === 0; i++) {
    const before = threaded.poolStats();
    threaded.matvec(pw, x, got);
    assert.deepEqual(got, want);
    const s = threaded.poolStats();
    workerChunks += s.chunks - before.chunks - (s.callerChunks - before.callerChunks);
  }
  assert.ok(workerChunks > 0, "no web worker ever ran a chunk");

  // T_GGML_ROWS is a TypeScript task: the web worker entry must hold the same task table
  const xs = randomF32(64 * 256, 5, 2);
  assert.deepEqual(threaded.ggmlEncoder(16 * 256).encodeRows({ type: GgmlType.Q4_K, rows: 64, cols: 256, x: xs }), quantize(GgmlType.Q4_K, xs));
  assert.equal(threaded.poolStats().broken, undefined);
});
