/** Entry of one Node worker thread of the WASM kernel pool: instantiate the kernels on the shared memory, loop. */
import { workerData } from "node:worker_threads";
import { instantiateKernels } from "./module.js";
import { workerLoop, type WorkerInit } from "./pool.js";

const init = workerData as WorkerInit;
workerLoop(init, instantiateKernels(init.module, init.memory));
