/**
 * Entry of one Web Worker of the WASM pool (pool-web.ts): the first message is the WorkerInit; instantiate
 * the kernels on every shard's shared memory and loop. The TypeScript tasks come from the same table the
 * caller dispatches with (tasks.ts POOL_TASKS), so a job id means the same code in every thread. The loop
 * blocks the worker (Atomics.wait is allowed in workers), so no later message is read.
 */
import { instantiateKernels } from "./module.js";
import { workerLoop, type PoolShard, type WorkerInit } from "./pool.js";
import { POOL_TASKS } from "./tasks.js";

/** The part of a worker's global scope this entry uses. */
export interface WorkerScopeLike {
  onmessage: ((e: { data: unknown }) => void) | null;
}

/** Installs the pool loop as the worker's message handler (call once, from the bundled worker script). */
export function startWebPoolWorker(scope: WorkerScopeLike): void {
  scope.onmessage = (e) => {
    scope.onmessage = null;
    const init = e.data as WorkerInit;
    const shardOf = (memory: WebAssembly.Memory): PoolShard => ({ kernels: instantiateKernels(init.module, memory), memory });
    workerLoop(init, (init.memories ?? [init.memory]).map(shardOf), POOL_TASKS);
  };
}
