/**
 * Browser adapter for the WASM kernel worker pool: Web Workers running worker-web.ts's loop on the
 * kernels' shared WebAssembly.Memory. The compiled WebAssembly.Module and the memory go to each worker in
 * one postMessage (no recompilation); that needs a cross-origin isolated page (COOP/COEP headers, as
 * `quantlab lab` serves), where shared memory may cross threads — elsewhere use one thread.
 *
 * How a worker script is found is the bundler's business, so the host is given a `spawn` function (the lab:
 * `() => new Worker(new URL("./pool-worker.ts", import.meta.url), { type: "module" })`).
 *
 * No `addMemory`: a worker sits in `workerLoop` and never returns to its event loop, so it cannot take a
 * message for a second 4 GiB shard; the pool then runs dispatches on later shards on the calling thread
 * (pool.ts WorkerHost). Browser models stay far below one shard.
 */
import { QuantlabError } from "../../core/errors.js";
import type { WorkerHost, WorkerInit } from "./pool.js";

/** The part of a Web Worker this host uses. */
export interface WebWorkerLike {
  postMessage(message: unknown): void;
  terminate(): void;
  onerror: ((e: { message?: string }) => void) | null;
}

/** True where a WebAssembly.Memory shared between threads can be posted to a worker. */
export function canShareMemory(): boolean {
  return (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true && typeof SharedArrayBuffer === "function";
}

export class WebWorkerHost implements WorkerHost {
  private workers: WebWorkerLike[] = [];
  /** worker start-up or run-time failures, for diagnostics (the pool's own error flag reaches the caller) */
  readonly errors: string[] = [];

  constructor(private readonly spawn: () => WebWorkerLike) {}

  start(n: number, init: WorkerInit): void {
    if (!canShareMemory()) throw new QuantlabError("E_UNSUPPORTED", "wasm worker pool: this page is not cross-origin isolated (COOP/COEP headers), so its WebAssembly memory cannot be shared with workers; use one thread");
    for (let i = 0; i < n; i++) {
      const w = this.spawn();
      w.onerror = (e) => { this.errors.push(e.message ?? "worker error"); };
      w.postMessage(init);
      this.workers.push(w);
    }
  }

  stop(): void {
    for (const w of this.workers) w.terminate();
    this.workers = [];
  }
}
