/** Entry of one Node worker thread of the WASM kernel pool: instantiate the kernels on every shard's shared
 * memory, loop. Shards added later arrive as messages on `port` and are read synchronously
 * (receiveMessageOnPort), since the loop never returns to the event loop. */
import { receiveMessageOnPort, workerData, type MessagePort } from "node:worker_threads";
import { instantiateKernels, type KernelExports } from "./module.js";
import { workerLoop, type WorkerInit } from "./pool.js";

const init = workerData as WorkerInit & { port?: MessagePort };
const memories = init.memories ?? [init.memory];
const pending = new Map<number, WebAssembly.Memory>();

function fetch(have: number): KernelExports[] {
  const out: KernelExports[] = [];
  if (!init.port) return out;
  for (let m = receiveMessageOnPort(init.port); m; m = receiveMessageOnPort(init.port)) {
    const { index, memory } = m.message as { index: number; memory: WebAssembly.Memory };
    pending.set(index, memory);
  }
  for (let i = have; pending.has(i); i++) {
    out.push(instantiateKernels(init.module, pending.get(i)!));
    pending.delete(i);
  }
  return out;
}

workerLoop(init, memories.map((m) => instantiateKernels(init.module, m)), fetch);
