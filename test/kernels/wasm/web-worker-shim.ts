// A Node worker_thread dressed as a Web Worker for pool-web.test.ts: its first message goes to the web
// pool entry (src/kernels/wasm/worker-web.ts) as a MessageEvent would, so the browser code runs unchanged.
import { parentPort } from "node:worker_threads";
import { startWebPoolWorker, type WorkerScopeLike } from "../../../src/kernels/wasm/worker-web.js";

const scope: WorkerScopeLike = { onmessage: null };
startWebPoolWorker(scope);
parentPort!.once("message", (data: unknown) => scope.onmessage?.({ data }));
