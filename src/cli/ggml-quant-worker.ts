/**
 * Worker thread of cli/ggml-quant-pool.ts: encodes row ranges of one tensor with ggml's quantizers
 * (algos/ggml-quant.ts quantizeRowsSync) and posts the bytes back (transferred, not copied).
 */
import { parentPort } from "node:worker_threads";
import { quantizeRowsSync, type RowsJob } from "../algos/ggml-quant.js";
import { useWasmQuantizers } from "./wasm-quantizers.js";

useWasmQuantizers();

export interface WorkerRequest {
  id: number;
  job: RowsJob;
  rowStart: number;
  rowEnd: number;
}

parentPort!.on("message", (m: WorkerRequest) => {
  try {
    const data = quantizeRowsSync(m.job, undefined, m.rowStart, m.rowEnd);
    parentPort!.postMessage({ id: m.id, data }, [data.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: (e as Error).message });
  }
});
