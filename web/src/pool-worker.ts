// One thread of the WASM kernel pool (src/kernels/wasm/worker-web.ts): the bundler turns this file into the
// worker script the lab worker's WebWorkerHost spawns.
import { startWebPoolWorker } from "../../src/kernels/wasm/worker-web.js";

startWebPoolWorker(self as unknown as Parameters<typeof startWebPoolWorker>[0]);
