/**
 * Worker pool over shared WebAssembly.Memory: the dispatch protocol, isomorphic (Atomics only).
 * Starting threads is platform-specific and lives behind `WorkerHost` (Node: pool-node.ts; a browser
 * Web Worker host can follow with the same `workerLoop`).
 *
 * A job names a task: a WASM kernel kind (abi.ts K_*: the module's entry `run_k<kind>`) or a TypeScript
 * task from a `TaskTable` (tasks.ts, e.g. ggml row encoding), which runs on views of the same shared
 * memory. Caller and workers are given the same table, so every thread can run every job.
 *
 * Protocol (control block = Int32 words in wasm memory at `ctrl`):
 * - A dispatch is a list of jobs (a job = one descriptor + its row count + its task). Each job's rows are
 *   cut into chunks; all chunks of all jobs form one numbered sequence 0..total-1.
 * - Threads (the caller AND the workers) claim chunks with a compare-exchange on TICKET, which packs
 *   (generation, next chunk index). A thread that read a stale generation cannot claim a chunk of a
 *   newer dispatch, and the job table is only read after a successful claim.
 * - Each finished chunk adds 1 to DONE; the caller returns when DONE = total.
 * Because the caller claims chunks too, a dispatch always completes even if no worker ever wakes up
 * (oversubscription, a slow start, a dead worker). Only a chunk claimed by a worker that then stalls
 * can delay it: every wait has a timeout and a watchdog turns a stall into an error, never a hang
 * (shared/notes/kernels.md: a timeout-free dispatcher hung under load).
 */
import { QuantlabError } from "../../core/errors.js";
import type { KernelExports } from "./module.js";

/** control block word indices */
export const C_GEN = 0;
export const C_TICKET = 1;
export const C_TOTAL = 2;
export const C_DONE = 3;
export const C_STOP = 4;
export const C_ERROR = 5;
export const C_NJOBS = 6;
export const C_ALIVE = 7;
/** microseconds a worker spins on GEN before sleeping */
export const C_SPIN_US = 8;
/** memories (shards) the caller has announced; a worker with fewer fetches the rest before claiming */
export const C_NSHARDS = 9;
export const JOB_BASE = 16;
export const JOB_WORDS = 5; // desc offset, rows, chunk rows, first chunk, shard | task << 16
export const MAX_JOBS = 64;
export const CTRL_WORDS = JOB_BASE + JOB_WORDS * MAX_JOBS;
/** after the words: the first failing chunk's error text (u16 length, then UTF-16 code units), so a
 * worker's exception reaches the caller as a message and not only as a flag */
const ERR_CHARS = 255;
export const CTRL_BYTES = CTRL_WORDS * 4 + 2 * (ERR_CHARS + 1);

/** Task ids from here up are TypeScript tasks (TaskTable); below are WASM kernel kinds. */
export const TS_TASK_BASE = 256;

const IDX_BITS = 12;
/** chunks per dispatch are numbered in IDX_BITS bits */
export const MAX_CHUNKS = (1 << IDX_BITS) - 1;
const GEN_MASK = (1 << (32 - IDX_BITS)) - 1;

/** One shard as a thread sees it: its memory and this thread's kernel instance on it. */
export interface PoolShard {
  kernels: KernelExports;
  memory: WebAssembly.Memory;
}

/** A TypeScript task: rows [r0, r1) of the job whose descriptor is at byte `desc` of the shard's memory. */
export type PoolTask = (shard: PoolShard, desc: number, r0: number, r1: number) => void;

/** TypeScript tasks by id (≥ TS_TASK_BASE). Caller and workers must hold the same table. */
export type TaskTable = Readonly<Record<number, PoolTask>>;

export interface WorkerInit {
  module: WebAssembly.Module;
  /** shard 0's memory, which holds the control block */
  memory: WebAssembly.Memory;
  /** byte offset of the control block */
  ctrl: number;
  /** every shard's memory known at start (index = shard); later shards come through `WorkerHost.addMemory` */
  memories?: WebAssembly.Memory[];
}

/** Platform adapter: starts and stops threads that run `workerLoop`. */
export interface WorkerHost {
  start(n: number, init: WorkerInit): void;
  /** Hands shard `index`'s memory to every worker (they pick it up through their `fetch` callback). A
   * host without it cannot serve more than one shard: workers then skip dispatches that need more. */
  addMemory?(index: number, memory: WebAssembly.Memory): void;
  stop(): void;
}

export interface PoolJob {
  desc: number;
  rows: number;
  /** which shard's memory (and kernel instance) the job lives in (default 0) */
  shard?: number;
  /** a kernel kind (abi.ts K_*, entry `run_k<kind>`) or a TypeScript task id (≥ TS_TASK_BASE) */
  task: number;
  /** rows per claimed chunk (default: the rows spread over threads × chunksPerThread chunks); finer
   * chunks keep every thread busy when another is preempted (a loaded machine), at a claim (one
   * compare-exchange) per chunk */
  chunkRows?: number;
}

/** Runs part [r0, r1) of a job: a WASM kernel's entry point, or a TypeScript task of `tasks`. */
export function runJobPart(sh: PoolShard, tasks: TaskTable, task: number, desc: number, r0: number, r1: number): void {
  if (task >= TS_TASK_BASE) {
    const t = tasks[task];
    if (!t) throw new Error(`wasm worker pool: no task ${task} in this thread's task table`);
    t(sh, desc, r0, r1);
    return;
  }
  const f = entryOf(sh.kernels, task);
  f(desc, r0, r1);
}

type Entry = (desc: number, r0: number, r1: number) => void;
/** each kernel instance's `run_k<kind>` entries by kind, looked up once (a decode token runs dozens of jobs: the
 * name string and the keyed lookup cost about a microsecond each) */
const ENTRIES = new WeakMap<KernelExports, Entry[]>();

function entryOf(k: KernelExports, task: number): Entry {
  let list = ENTRIES.get(k);
  if (!list) ENTRIES.set(k, (list = []));
  const f = list[task];
  if (f) return f;
  const g = k[`run_k${task}`] as Entry | undefined;
  if (!g) throw new Error(`wasm kernels: no entry point for kind ${task}`);
  list[task] = g;
  return g;
}

/** Records the first failure of a dispatch (flag `code` and its message) for the caller. */
function reportError(ctrl: Int32Array, code: number, e: unknown): void {
  if (Atomics.compareExchange(ctrl, C_ERROR, 0, code) !== 0) return;
  const text = e instanceof Error ? e.message : String(e);
  const u16 = new Uint16Array(ctrl.buffer, ctrl.byteOffset + CTRL_WORDS * 4, ERR_CHARS + 1);
  const n = Math.min(text.length, ERR_CHARS);
  for (let i = 0; i < n; i++) u16[1 + i] = text.charCodeAt(i);
  u16[0] = n;
}

function errorText(ctrl: Int32Array): string {
  const u16 = new Uint16Array(ctrl.buffer, ctrl.byteOffset + CTRL_WORDS * 4, ERR_CHARS + 1);
  return String.fromCharCode(...u16.subarray(1, 1 + Math.min(u16[0]!, ERR_CHARS)));
}

/** Claims and runs chunks of dispatch `gen` until none is left; returns how many this thread ran.
 * Shared by caller and workers; `ss[s]` is shard s as this thread sees it. */
function runChunks(ctrl: Int32Array, gen: number, ss: readonly PoolShard[], tasks: TaskTable): number {
  const tag = (gen & GEN_MASK) << IDX_BITS;
  let ran = 0;
  for (;;) {
    const t = Atomics.load(ctrl, C_TICKET);
    if ((t & ~MAX_CHUNKS) !== tag) return ran;
    const idx = t & MAX_CHUNKS;
    if (idx >= Atomics.load(ctrl, C_TOTAL)) return ran;
    if (Atomics.compareExchange(ctrl, C_TICKET, t, t + 1) !== t) continue;
    // chunk idx of this dispatch is ours: the caller cannot move on until we report it done
    const total = Atomics.load(ctrl, C_TOTAL);
    const nJobs = Atomics.load(ctrl, C_NJOBS);
    let j = 0;
    while (j + 1 < nJobs && ctrl[JOB_BASE + (j + 1) * JOB_WORDS + 3]! <= idx) j++;
    const o = JOB_BASE + j * JOB_WORDS;
    const rows = ctrl[o + 1]!;
    const chunkRows = ctrl[o + 2]!;
    const r0 = (idx - ctrl[o + 3]!) * chunkRows;
    try {
      const sw = ctrl[o + 4]!;
      runJobPart(ss[sw & 0xffff]!, tasks, sw >>> 16, ctrl[o]!, r0, Math.min(rows, r0 + chunkRows));
    } catch (e) {
      reportError(ctrl, 1, e);
    }
    ran++;
    if (Atomics.add(ctrl, C_DONE, 1) + 1 === total) Atomics.notify(ctrl, C_DONE);
  }
}

/**
 * The body of every worker thread: sleep on GEN, run chunks, until STOP. `ks` holds each shard known at
 * start (memory and this thread's kernel instance); `fetch` (platform-specific, synchronous) returns the
 * shards announced since. A worker that still lacks a shard a dispatch announces sits that dispatch out
 * (the caller runs every unclaimed chunk itself). `tasks` must be the caller's task table.
 */
export function workerLoop(init: WorkerInit, shards: PoolShard[], tasks: TaskTable, fetch?: (have: number) => PoolShard[]): void {
  const ctrl = new Int32Array(init.memory.buffer, init.ctrl, CTRL_WORDS);
  const ks = shards;
  let seen = Atomics.load(ctrl, C_GEN);
  Atomics.add(ctrl, C_ALIVE, 1);
  try {
    for (;;) {
      let g = Atomics.load(ctrl, C_GEN);
      if (g === seen) {
        const spinUntil = performance.now() + Atomics.load(ctrl, C_SPIN_US) / 1000;
        while (g === seen && performance.now() < spinUntil) g = Atomics.load(ctrl, C_GEN);
      }
      while (g === seen) {
        if (Atomics.load(ctrl, C_STOP) !== 0) return;
        Atomics.wait(ctrl, C_GEN, seen, 500);
        g = Atomics.load(ctrl, C_GEN);
      }
      if (Atomics.load(ctrl, C_STOP) !== 0) return;
      seen = g;
      const need = Math.max(1, Atomics.load(ctrl, C_NSHARDS));
      if (ks.length < need && fetch) ks.push(...fetch(ks.length));
      if (ks.length < need) continue;
      runChunks(ctrl, g, ks, tasks);
    }
  } catch (e) {
    reportError(ctrl, 2, e);
    Atomics.notify(ctrl, C_DONE);
  } finally {
    Atomics.sub(ctrl, C_ALIVE, 1);
  }
}

export interface DispatcherOptions {
  /** threads including the caller; 1 = no workers */
  threads: number;
  /** watchdog: a dispatch that makes no progress for this long throws (ms) */
  watchdogMs?: number;
  /** worker spin before sleeping (µs) */
  spinMicros?: number;
  /** aim for this many chunks per thread per job (load balance vs claim overhead) */
  chunksPerThread?: number;
  /** the TypeScript tasks jobs may name (the workers' entry must load the same table) */
  tasks?: TaskTable;
}

/** Caller side: writes the job table, wakes workers, works along, waits for the last chunk. */
export class Dispatcher {
  readonly threads: number;
  private readonly ctrl: Int32Array;
  private gen = 0;
  private broken: string | undefined;
  private readonly watchdogMs: number;
  private readonly chunksPerThread: number;
  /** dispatches and stalls seen, for the debug listing and tests */
  readonly stats = { dispatches: 0, waits: 0, callerChunks: 0, chunks: 0 };

  constructor(
    k: KernelExports,
    memory: WebAssembly.Memory,
    readonly ctrlOffset: number,
    private readonly host: WorkerHost | undefined,
    module: WebAssembly.Module,
    opts: DispatcherOptions,
  ) {
    this.ctrl = new Int32Array(memory.buffer, ctrlOffset, CTRL_WORDS);
    this.ks = [{ kernels: k, memory }];
    this.tasks = opts.tasks ?? {};
    Atomics.store(this.ctrl, C_NSHARDS, 1);
    this.threads = host ? Math.max(1, opts.threads) : 1;
    this.watchdogMs = opts.watchdogMs ?? 30000;
    this.chunksPerThread = opts.chunksPerThread ?? 4;
    Atomics.store(this.ctrl, C_SPIN_US, opts.spinMicros ?? 30);
    if (host && this.threads > 1) host.start(this.threads - 1, { module, memory, ctrl: ctrlOffset, memories: [memory] });
  }

  private readonly ks: PoolShard[];
  private readonly tasks: TaskTable;

  /** Registers another shard (its memory and the caller's kernel instance on it); returns its index.
   * Workers receive the memory through the host and instantiate the kernels on it themselves. */
  addShard(memory: WebAssembly.Memory, k: KernelExports): number {
    const index = this.ks.length;
    this.ks.push({ kernels: k, memory });
    if (this.threads > 1) this.host?.addMemory?.(index, memory);
    Atomics.store(this.ctrl, C_NSHARDS, this.ks.length);
    return index;
  }

  /** workers currently running their loop */
  get alive(): number {
    return Atomics.load(this.ctrl, C_ALIVE);
  }

  /** Resolves once every worker runs its loop (true), or after the timeout (false). Node starts worker
   * threads only while the caller's event loop turns, so wait here (asynchronously) before relying on
   * the workers; until they are up, the calling thread simply does all the chunks itself. */
  async ready(timeoutMs = 10000): Promise<boolean> {
    const want = this.threads - 1;
    const t0 = performance.now();
    while (this.alive < want && performance.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 2));
    return this.alive >= want;
  }

  get brokenReason(): string | undefined {
    return this.broken;
  }

  /**
   * Runs every job's rows, split across the threads; returns when all are done. `alongside`: the caller's
   * own work for a next step (e.g. reading the next chunk of input), done while the workers start on these
   * jobs, before the caller joins them; without workers, after the jobs. It must not touch what the jobs
   * read or write.
   */
  run(jobs: readonly PoolJob[], alongside?: () => void): void {
    if (this.threads === 1 || this.broken !== undefined || jobs.length > MAX_JOBS) {
      for (const j of jobs) runJobPart(this.ks[j.shard ?? 0]!, this.tasks, j.task, j.desc, 0, j.rows);
      alongside?.();
      return;
    }
    const ctrl = this.ctrl;
    let total = 0;
    let scale = 1;
    for (;;) {
      total = 0;
      for (let i = 0; i < jobs.length; i++) {
        const rows = jobs[i]!.rows;
        const chunkRows = Math.max(1, (jobs[i]!.chunkRows ?? Math.ceil(rows / (this.threads * this.chunksPerThread))) * scale);
        const o = JOB_BASE + i * JOB_WORDS;
        ctrl[o] = jobs[i]!.desc;
        ctrl[o + 1] = rows;
        ctrl[o + 2] = chunkRows;
        ctrl[o + 3] = total;
        ctrl[o + 4] = (jobs[i]!.shard ?? 0) | (jobs[i]!.task << 16);
        total += Math.ceil(rows / chunkRows);
      }
      if (total <= MAX_CHUNKS) break;
      scale *= 2;
    }
    this.gen = (this.gen + 1) | 0;
    const gen = this.gen;
    Atomics.store(ctrl, C_NJOBS, jobs.length);
    Atomics.store(ctrl, C_TOTAL, total);
    Atomics.store(ctrl, C_DONE, 0);
    Atomics.store(ctrl, C_ERROR, 0);
    Atomics.store(ctrl, C_TICKET, (gen & GEN_MASK) << IDX_BITS);
    Atomics.store(ctrl, C_GEN, gen);
    Atomics.notify(ctrl, C_GEN);
    this.stats.dispatches++;
    this.stats.chunks += total;
    // an error there is thrown once this dispatch is complete (workers must not run it into the next one)
    let alongsideError: { e: unknown } | undefined;
    if (alongside) {
      try {
        alongside();
      } catch (e) {
        alongsideError = { e };
      }
    }
    // only the chunks this thread claimed: C_DONE also counts those workers finished meanwhile
    this.stats.callerChunks += runChunks(ctrl, gen, this.ks, this.tasks);
    // wait for chunks still running on workers
    let done = Atomics.load(ctrl, C_DONE);
    let lastProgress = performance.now();
    let lastDone = done;
    let spins = 0;
    while (done < total) {
      if (spins < 2000) spins++;
      else {
        this.stats.waits++;
        Atomics.wait(ctrl, C_DONE, done, 20);
      }
      done = Atomics.load(ctrl, C_DONE);
      if (done !== lastDone) {
        lastDone = done;
        lastProgress = performance.now();
      } else if (performance.now() - lastProgress > this.watchdogMs) {
        this.broken = `dispatch stalled: ${done} of ${total} chunks done after ${this.watchdogMs} ms without progress`;
        throw new QuantlabError("E_INTERNAL", `wasm worker pool: ${this.broken}; the pool now runs on the calling thread only`);
      }
    }
    const err = Atomics.load(ctrl, C_ERROR);
    if (err !== 0) throw new QuantlabError("E_INTERNAL", `wasm worker pool: a chunk failed (code ${err}): ${errorText(ctrl)}`);
    if (alongsideError) throw alongsideError.e;
  }

  /** Stops the workers (they exit their loop at the next wake-up; the host also terminates them). */
  stop(): void {
    Atomics.store(this.ctrl, C_STOP, 1);
    Atomics.notify(this.ctrl, C_GEN);
    this.host?.stop();
  }
}
