/** Entry of one Node worker thread of the WASM pool: instantiate the kernels on every shard's shared
 * memory, loop. Shards added later arrive as messages on `port` and are read synchronously
 * (receiveMessageOnPort), since the loop never returns to the event loop. The TypeScript tasks come from
 * the same table the caller dispatches with (tasks.ts). */
import { receiveMessageOnPort, workerData, type MessagePort } from "node:worker_threads";
import { instantiateKernels } from "./module.js";
import { workerLoop, type PoolShard, type WorkerInit } from "./pool.js";
import { POOL_TASKS } from "./tasks.js";

const init = workerData as WorkerInit & { port?: MessagePort };
const memories = init.memories ?? [init.memory];
const pending = new Map<number, WebAssembly.Memory>();

const shardOf = (memory: WebAssembly.Memory): PoolShard => ({ kernels: instantiateKernels(init.module, memory), memory });

function fetch(have: number): PoolShard[] {
  const out: PoolShard[] = [];
  if (!init.port) return out;
  for (let m = receiveMessageOnPort(init.port); m; m = receiveMessageOnPort(init.port)) {
    const { index, memory } = m.message as { index: number; memory: WebAssembly.Memory };
    pending.set(index, memory);
  }
  for (let i = have; pending.has(i); i++) {
    out.push(shardOf(pending.get(i)!));
    pending.delete(i);
  }
  return out;
}

workerLoop(init, memories.map(shardOf), POOL_TASKS, fetch);
