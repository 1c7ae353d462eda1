/**
 * Node adapter for the WASM kernel worker pool: worker_threads running worker-node.ts, which share the
 * kernels' WebAssembly.Memory and receive the compiled WebAssembly.Module through workerData (no
 * recompilation). Workers are unref'd, so an undisposed backend does not keep the process alive.
 */
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { WorkerHost, WorkerInit } from "./pool.js";
import { WasmBackend, type WasmBackendOptions } from "./backend.js";

export class NodeWorkerHost implements WorkerHost {
  private workers: Worker[] = [];
  /** our end of each worker's channel for shards added after start */
  private ports: MessagePort[] = [];
  /** startup or runtime failures of workers, for diagnostics */
  readonly errors: string[] = [];

  start(n: number, init: WorkerInit): void {
    for (let i = 0; i < n; i++) {
      const { port1, port2 } = new MessageChannel();
      port1.unref();
      const w = new Worker(new URL("./worker-node.js", import.meta.url), { workerData: { ...init, port: port2 }, transferList: [port2] });
      this.ports.push(port1);
      w.unref();
      // a worker that dies sets the pool's error flag itself when it can; never crash the host process
      w.on("error", (e) => { this.errors.push(String(e)); });
      w.on("exit", (code) => { if (code !== 0) this.errors.push(`worker exited with code ${code}`); });
      this.workers.push(w);
    }
  }

  addMemory(index: number, memory: WebAssembly.Memory): void {
    for (const p of this.ports) p.postMessage({ index, memory });
  }

  stop(): void {
    for (const w of this.workers) void w.terminate();
    for (const p of this.ports) p.close();
    this.workers = [];
    this.ports = [];
  }
}

/** The WASM backend with a Node worker pool when `threads` > 1. */
export function createNodeWasmBackend(opts: Omit<WasmBackendOptions, "workerHost"> = {}): WasmBackend {
  const threads = opts.threads ?? 1;
  return new WasmBackend({ ...opts, workerHost: threads > 1 ? new NodeWorkerHost() : undefined });
}
