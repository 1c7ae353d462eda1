/**
 * Whole-model GGUF quantization on several cores: a pool of worker threads (ggml-quant-worker.ts) that
 * encode row ranges of a tensor in parallel. Rows are independent in every ggml quantizer (the imatrix
 * and Q4_0…Q5_1's per-row σ² are per row or per column), so the bytes equal the single-thread result.
 * Plugs into algos/ggml-quant.ts quantizeModelToGgmlAsync as its `quantizeRows`.
 */
import { Worker } from "node:worker_threads";
import { QuantlabError } from "../core/errors.js";
import type { Progress } from "../core/progress.js";
import type { RowsJob } from "../algos/ggml-quant.js";
import { ggmlRowBytes } from "../ggml/types.js";
import type { WorkerRequest } from "./ggml-quant-worker.js";

type Reply = { id: number; data?: Uint8Array; error?: string };

export class GgmlQuantPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: (() => void)[] = [];
  private readonly pending = new Map<number, { resolve: (d: Uint8Array) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(readonly threads: number) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(new URL("./ggml-quant-worker.js", import.meta.url));
      w.on("message", (r: Reply) => {
        const p = this.pending.get(r.id)!;
        this.pending.delete(r.id);
        this.release(w);
        if (r.error !== undefined || !r.data) p.reject(new QuantlabError("E_INTERNAL", `quantize worker: ${r.error}`));
        else p.resolve(r.data);
      });
      w.on("error", (e) => {
        for (const p of this.pending.values()) p.reject(new QuantlabError("E_INTERNAL", `quantize worker failed: ${e.message}`));
        this.pending.clear();
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private release(w: Worker): void {
    this.idle.push(w);
    this.waiting.shift()?.();
  }

  private async acquire(): Promise<Worker> {
    while (this.idle.length === 0) await new Promise<void>((r) => this.waiting.push(r));
    return this.idle.pop()!;
  }

  private async run(job: RowsJob, rowStart: number, rowEnd: number): Promise<Uint8Array> {
    const w = await this.acquire();
    const id = this.nextId++;
    // only this range's rows travel (copied by structured clone)
    const x = job.x.slice(rowStart * job.cols, rowEnd * job.cols);
    const req: WorkerRequest = { id, job: { ...job, x, rows: rowEnd - rowStart }, rowStart: 0, rowEnd: rowEnd - rowStart };
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage(req, [x.buffer as ArrayBuffer]);
    });
  }

  /** Encodes a tensor's rows in parallel chunks of ~256K elements. */
  readonly quantizeRows = async (job: RowsJob, progress: Progress): Promise<Uint8Array> => {
    const rowBytes = ggmlRowBytes(job.type, job.cols)!;
    const chunkRows = Math.max(1, Math.min(Math.ceil(job.rows / this.threads), Math.floor((1 << 18) / job.cols)));
    const out = new Uint8Array(job.rows * rowBytes);
    const parts: Promise<void>[] = [];
    for (let r = 0; r < job.rows; r += chunkRows) {
      const end = Math.min(job.rows, r + chunkRows);
      parts.push(this.run(job, r, end).then((d) => {
        out.set(d, r * rowBytes);
        progress.tick((end - r) * job.cols);
      }));
    }
    await Promise.all(parts);
    return out;
  };

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
