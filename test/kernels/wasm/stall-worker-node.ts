// Test-only worker for the pool watchdog test: claims one chunk of some dispatch, then never finishes
// it (a stuck worker). Mirrors the ticket protocol of src/kernels/wasm/pool.ts.
import { workerData } from "node:worker_threads";
import { C_ALIVE, C_GEN, C_STOP, C_TICKET, C_TOTAL, CTRL_WORDS, type WorkerInit } from "../../../src/kernels/wasm/pool.js";

const init = workerData as WorkerInit;
const ctrl = new Int32Array(init.memory.buffer, init.ctrl, CTRL_WORDS);
let seen = Atomics.load(ctrl, C_GEN);
Atomics.add(ctrl, C_ALIVE, 1);
let claimed = false;
while (!claimed && Atomics.load(ctrl, C_STOP) === 0) {
  while (Atomics.load(ctrl, C_GEN) === seen && Atomics.load(ctrl, C_STOP) === 0); // spin: be there first
  seen = Atomics.load(ctrl, C_GEN);
  for (;;) {
    const t = Atomics.load(ctrl, C_TICKET);
    if ((t & 0xfff) >= Atomics.load(ctrl, C_TOTAL)) break; // all taken: try the next dispatch
    if (Atomics.compareExchange(ctrl, C_TICKET, t, t + 1) === t) {
      claimed = true; // and never report it done
      break;
    }
  }
}
while (Atomics.load(ctrl, C_STOP) === 0) Atomics.wait(ctrl, C_STOP, 0, 100);
