/**
 * The WASM backend: AssemblyScript SIMD kernels (assembly/index.ts) over shared WebAssembly.Memory
 * "shards". One wasm32 memory holds at most 4 GiB, so weights fill shard 0 up to a limit (leaving room
 * for activation scratch), then shard 1, and so on; every shard has its own kernel instance (one per
 * thread), and a job names its shard. A tensor never straddles shards.
 *
 * `prepare` puts a weight into wasm memory once: f32/f16 and the "native" ggml types (layouts.ts NATIVE:
 * Q8_0, Q4_0 (relaxed build) by default; Q4_K, Q6_K too with `layouts: "native"`) keep their file bytes, the other ggml types are repacked to a
 * SIMD-friendly SoA layout (layouts.ts REPACK). `placeTensor` tells a loader where to read a tensor so
 * that `prepare` then uses it in place (no second copy). Each mat-vec copies x in, quantizes it once to
 * Q8 (as ggml does; not for f32/f16 weights), runs the rows (split across the worker pool when one is
 * attached and the job is big enough) and copies the output back. Isomorphic: threads come from a
 * `WorkerHost` (Node: pool-node.ts).
 *
 * Types without a WASM kernel (ggml types not in layouts.ts REPACK, quantlab QuantizedTensors, rows
 * that are not whole blocks) are dequantized once to f32 and run on the f32 kernel; `listing()` says so.
 */
import { QuantlabError } from "../../core/errors.js";
import { bf16ArrayToF32, f16Table32 } from "../../core/f16.js";
import { GgmlType, ggmlTypeName } from "../../ggml/types.js";
import { dequantizeWeight, type RowReader } from "../dequantize.js";
import type { Backend, MatvecJob, PreparedWeight } from "../types.js";
import {
  K_F32, K_F16, K_I8S32, K_Q4_0, K_N4A32, K_I8S16, K_I8A32, K_I8A16, K_Q8_0N, K_Q4_0N, K_Q4_KN, K_Q6_KN, K_Q4_0X4, K_Q8_0X4,
  D_KIND, D_ROWS, D_COLS, D_W0, D_W1, D_W2, D_XF, D_X16, D_X8, D_XD, D_XS, D_OUT, D_N, DESC_WORDS,
} from "../../../assembly/abi.js";
import { MAX_PAGES, WasmArena } from "./arena.js";
import { NATIVE, REPACK, type NibbleOrder } from "./layouts.js";
import { instantiateKernels, pickVariant, wasmModule, type KernelExports, type WasmVariant } from "./module.js";
import { CTRL_BYTES, Dispatcher, runJobPart, type WorkerHost } from "./pool.js";
import { weightShape, type Weight } from "../../core/weight.js";

export const KERNEL_NAMES: Record<number, string> = {
  [K_F32]: "f32",
  [K_F16]: "f16",
  [K_I8S32]: "i8·s32",
  [K_Q4_0]: "q4_0",
  [K_N4A32]: "n4·s32·m32",
  [K_I8S16]: "i8·s16",
  [K_I8A32]: "i8·s32·m32",
  [K_I8A16]: "i8·s16·m16",
  [K_Q8_0N]: "q8_0 (ggml blocks)",
  [K_Q4_0N]: "q4_0 (ggml blocks)",
  [K_Q4_KN]: "q4_K (ggml blocks)",
  [K_Q6_KN]: "q6_K (ggml blocks)",
  [K_Q4_0X4]: "q4_0 (ggml blocks, 4 rows interleaved)",
  [K_Q8_0X4]: "q8_0 (ggml blocks, 4 rows interleaved)",
};

export interface WasmBackendOptions {
  /** threads including the caller (default 1 = no workers); > 1 needs `workerHost` */
  threads?: number;
  /** kernel build: "auto" (default) = relaxed SIMD when the engine supports it, else SIMD128 */
  variant?: WasmVariant | "auto";
  workerHost?: WorkerHost;
  /** memory limits of each shard in 64 KiB pages (default maximum 65536 = 4 GiB, the wasm32 cap) */
  initialPages?: number;
  maxPages?: number;
  /** bytes of each shard kept free of weights for activation scratch (default min(256 MiB, ¼ of a shard)) */
  scratchReserveBytes?: number;
  /** "auto" (default): each ggml type on the layout measured fastest for this build (layouts.ts NATIVE
   * `byDefault`); "native": every type with a native kernel in this build runs on its file bytes, in place
   * (least memory); "repacked": always the SoA repacks (fewest instructions, more bytes) */
  layouts?: "auto" | "native" | "repacked";
  /** a dispatch that makes no progress for this long throws instead of hanging (ms, default 30000) */
  watchdogMs?: number;
  /** how long an idle worker spins before sleeping (µs, default 30) */
  spinMicros?: number;
  /** jobs that stream fewer weight bytes than this run on the calling thread alone (default 128 KiB) */
  minParallelBytes?: number;
}

export interface WasmListingRow {
  name: string;
  /** what was given: "dense f16", "ggml Q4_K", "quant int4:g128" … */
  source: string;
  /** the WASM kernel layout that runs it */
  kernel: string;
  rows: number;
  cols: number;
  bytes: number;
  /** which memory it lives in */
  shard: number;
  /** true when the loader read it straight into wasm memory (no copy at prepare) */
  inPlace: boolean;
  /** set when the weight was dequantized to f32 because no WASM kernel handles it */
  fallback?: string;
}

class WasmPrepared implements PreparedWeight {
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly bytes: number,
    readonly kind: number,
    readonly w0: number,
    readonly w1: number,
    readonly w2: number,
    readonly owner: WasmBackend,
    readonly shard: number,
  ) {}
}

/** Activation + output scratch for one job of a dispatch (in the job's shard). */
interface Slot {
  /** capacity in activation elements (n·cols) and output elements (n·rows) */
  xCap: number;
  outCap: number;
  xf: number;
  x16: number;
  x8: number;
  xd: number;
  xs: number;
  out: number;
  desc: number;
}

/** One WebAssembly.Memory with the caller's kernel instance on it. */
interface Shard {
  index: number;
  arena: WasmArena;
  kernels: KernelExports;
  slots: Slot[];
  /** byte offset of the f16 → f32 table the native kernels read scales through (0 until first needed) */
  lut: number;
}

const needsQ8 = (kind: number): boolean => kind !== K_F32 && kind !== K_F16;
const isX4 = (kind: number): boolean => kind === K_Q4_0X4 || kind === K_Q8_0X4;
const PAGE = 65536;

export class WasmBackend implements Backend {
  readonly name: string;
  /** every weight is copied, repacked or placed into wasm memory (prepare below) */
  readonly preparesCopies = true;
  readonly variant: WasmVariant;
  readonly threads: number;
  /** kernels on shard 0 (quantizers, f16 helpers, bandwidth probe) */
  readonly kernels: KernelExports;
  private readonly shards: Shard[] = [];
  private readonly module: WebAssembly.Module;
  private readonly heapBase: number;
  private readonly maxPages: number;
  private readonly initialPages: number | undefined;
  /** weights may fill a shard up to this byte offset; the rest is for scratch */
  private readonly weightLimit: number;
  private readonly pool: Dispatcher;
  private readonly nibbleOrder: NibbleOrder;
  private readonly layouts: "auto" | "native" | "repacked";
  /** regions ("shard:offset") whose rows were interleaved in place (K_Q4_0X4/K_Q8_0X4) */
  private readonly interleaved = new Set<string>();
  private readonly interleaveScratch = new Map<number, { off: number; bytes: number }>();
  /** jobs streaming fewer weight bytes run on the calling thread alone (Infinity = never dispatch) */
  minParallelBytes: number;
  private readonly rowsListing: WasmListingRow[] = [];
  private disposed = false;

  constructor(opts: WasmBackendOptions = {}) {
    this.variant = pickVariant(opts.variant ?? "auto");
    this.module = wasmModule(this.variant);
    // instantiate once on a throwaway memory to learn where static data ends, then on the real ones
    const probe = instantiateKernels(this.module, new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }));
    this.heapBase = probe.heap_base();
    this.maxPages = Math.min(opts.maxPages ?? MAX_PAGES, MAX_PAGES);
    this.initialPages = opts.initialPages;
    const cap = this.maxPages * PAGE;
    this.weightLimit = cap - Math.min(opts.scratchReserveBytes ?? 256 * 2 ** 20, Math.floor(cap / 4));
    const first = this.newShardMemory();
    this.kernels = first.kernels;
    this.nibbleOrder = this.kernels.variant() === 1 ? "gguf" : "r16";
    this.layouts = opts.layouts ?? "auto";
    const ctrl = first.arena.alloc(CTRL_BYTES, 64, "worker control block");
    const threads = Math.max(1, Math.floor(opts.threads ?? 1));
    if (threads > 1 && !opts.workerHost) throw new QuantlabError("E_ARG", `wasm backend: threads=${threads} needs a worker host (use createNodeWasmBackend in Node)`);
    this.pool = new Dispatcher(this.kernels, first.arena.memory, ctrl, opts.workerHost, this.module, {
      threads,
      watchdogMs: opts.watchdogMs,
      spinMicros: opts.spinMicros,
    });
    this.shards.push(first);
    this.threads = this.pool.threads;
    this.minParallelBytes = opts.minParallelBytes ?? 128 * 1024;
    this.name = `wasm-${this.variant}${this.threads > 1 ? `-t${this.threads}` : ""}`;
  }

  /** shard 0's memory (activation scratch of quantizeGgml, the bandwidth probe, tests) */
  get arena(): WasmArena {
    return this.shards[0]!.arena;
  }

  private newShardMemory(): Shard {
    const arena = new WasmArena(this.heapBase, { initialPages: this.initialPages, maxPages: this.maxPages });
    return { index: this.shards.length, arena, kernels: instantiateKernels(this.module, arena.memory), slots: [], lut: 0 };
  }

  /** The shard's f16 → f32 table (65536 f32, 256 KiB), made on first use. */
  private lut(sh: Shard): number {
    if (sh.lut === 0) {
      sh.lut = sh.arena.alloc(65536 * 4, 64, "f16 table");
      sh.arena.f32.set(f16Table32(), sh.lut >>> 2);
    }
    return sh.lut;
  }

  /** Memory use per shard (bytes allocated, weights included) and the weight limit of one shard. */
  memoryStats(): { shards: number[]; weightLimit: number } {
    return { shards: this.shards.map((s) => s.arena.used), weightLimit: this.weightLimit };
  }

  /** One row per prepared weight: which kernel runs it, where it lives, whether it fell back to f32. */
  listing(): readonly WasmListingRow[] {
    return this.rowsListing;
  }

  /** Pool counters (dispatches, caller-run chunks, sleeps) and its state. */
  poolStats(): { threads: number; alive: number; broken?: string; dispatches: number; callerChunks: number; chunks: number; waits: number } {
    return { threads: this.threads, alive: this.pool.alive, broken: this.pool.brokenReason, ...this.pool.stats };
  }

  /** Resolves when the pool's workers have started (true) or the timeout passed (false). Workers start
   * in the background while the event loop turns; until then the calling thread does all the work. */
  ready(timeoutMs = 10000): Promise<boolean> {
    return this.pool.ready(timeoutMs);
  }

  /**
   * Allocates `bytes` for a weight: in the last shard while it stays under the weight limit, else in a
   * new shard. Throws E_VALUE when a single tensor is larger than one shard can hold.
   */
  private allocWeight(bytes: number, what: string): { shard: Shard; off: number } {
    let sh = this.shards[this.shards.length - 1]!;
    const start = Math.ceil(sh.arena.used / 64) * 64;
    if (start + bytes > this.weightLimit) {
      if (this.heapBase + 64 + bytes > this.weightLimit) {
        throw new QuantlabError("E_VALUE", `wasm backend: ${what} needs ${mib(bytes)}, more than one WebAssembly memory takes for weights (${mib(this.weightLimit)} of a ${mib(this.maxPages * PAGE)} memory)`);
      }
      sh = this.newShardMemory();
      this.pool.addShard(sh.arena.memory, sh.kernels);
      this.shards.push(sh);
    }
    return { shard: sh, off: sh.arena.alloc(bytes, 64, what) };
  }

  /** The shard and byte offset of an array that lives in one of our memories, else undefined. */
  private locate(a: ArrayBufferView): { shard: Shard; off: number } | undefined {
    for (const sh of this.shards) {
      if (sh.arena.owns(a.buffer) && a.byteOffset + a.byteLength <= sh.arena.used) return { shard: sh, off: a.byteOffset };
    }
    return undefined;
  }

  /** Does `prepare` run a ggml type on its file bytes (no repack) in this build? */
  private nativeRow(type: GgmlType): (typeof NATIVE)[GgmlType] | undefined {
    const row = NATIVE[type];
    if (!row || this.layouts === "repacked") return undefined;
    return (this.layouts === "native" ? row.variants : row.byDefault).includes(this.variant) ? row : undefined;
  }

  /**
   * Where a loader should read a tensor of this type and shape so that `prepare` uses the bytes in place:
   * a view into wasm memory of exactly the tensor's byte length, or undefined when this backend would
   * convert or repack it anyway (then read it anywhere and `prepare` copies). Only matrices (2-D) are placed.
   */
  placeTensor(type: GgmlType, shape: readonly number[], name = "tensor"): Uint8Array | undefined {
    this.checkOpen();
    if (shape.length !== 2) return undefined;
    const [rows, cols] = shape as [number, number];
    let bytes: number;
    if (type === GgmlType.F32) bytes = rows * cols * 4;
    else if (type === GgmlType.F16) bytes = rows * cols * 2;
    else {
      const row = this.nativeRow(type);
      if (!row || cols % row.blockSize !== 0) return undefined;
      bytes = ((rows * cols) / row.blockSize) * row.bytesPerBlock;
    }
    const { shard, off } = this.allocWeight(bytes, name);
    return shard.arena.view(off, bytes);
  }

  prepare(w: Weight, name = "tensor"): PreparedWeight {
    this.checkOpen();
    const shape = weightShape(w);
    const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
    let n = 1;
    for (const d of shape) n *= d;
    const rows = cols === 0 ? 0 : n / cols;
    if (w.kind === "dense") {
      const t = w.tensor;
      if (t.dtype === "f32") return this.prepDense(name, "dense f32", rows, cols, t.data as Float32Array);
      if (t.dtype === "f16") return this.prepF16(name, "dense f16", rows, cols, t.data as Uint16Array);
      return this.prepDense(name, `dense ${t.dtype}`, rows, cols, t.toF32(), t.dtype === "bf16" ? undefined : `${t.dtype} converted to f32`);
    }
    if (w.kind === "quant") {
      const { data } = dequantizeWeight(w, name);
      return this.prepDense(name, `quant ${w.q.spec}`, rows, cols, data, "quantlab QuantizedTensor: no WASM kernel, dequantized once to f32");
    }
    const src = `ggml ${ggmlTypeName(w.type)}`;
    const bytes = w.data;
    switch (w.type) {
      case GgmlType.F32:
        return this.prepDense(name, src, rows, cols, bytesAs(bytes, 4, n, (b, o, c) => new Float32Array(b, o, c)) as Float32Array);
      case GgmlType.F16:
        return this.prepF16(name, src, rows, cols, bytesAs(bytes, 2, n, (b, o, c) => new Uint16Array(b, o, c)) as Uint16Array);
      case GgmlType.BF16:
        return this.prepDense(name, src, rows, cols, bf16ArrayToF32(bytesAs(bytes, 2, n, (b, o, c) => new Uint16Array(b, o, c)) as Uint16Array));
    }
    const nat = this.nativeRow(w.type);
    const rp = REPACK[w.type];
    const blockSize = nat?.blockSize ?? rp?.blockSize;
    const bytesPerBlock = nat?.bytesPerBlock ?? rp?.bytesPerBlock;
    if (blockSize === undefined || bytesPerBlock === undefined) {
      const { data } = dequantizeWeight(w, name);
      return this.prepDense(name, src, rows, cols, data, `no WASM kernel for ${ggmlTypeName(w.type)}: dequantized once to f32`);
    }
    if (cols % blockSize !== 0) {
      throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(w.type)} rows of ${cols} elements are not whole ${blockSize}-element blocks`);
    }
    const nBlocks = n / blockSize;
    if (bytes.length !== nBlocks * bytesPerBlock) {
      throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(w.type)} [${shape.join(", ")}] needs ${nBlocks * bytesPerBlock} bytes, got ${bytes.length}`);
    }
    if (nat) {
      const x4 = this.layouts === "auto" && nat.interleave4 !== undefined && shape.length === 2 && rows % 4 === 0 ? nat.interleave4 : undefined;
      let at = this.locate(bytes);
      const inPlace = at !== undefined;
      if (!at) {
        at = this.allocWeight(bytes.length, name);
        at.shard.arena.u8.set(bytes, at.off);
      }
      if (x4 !== undefined) {
        // the permutation happens once per region: preparing the same placed tensor again reuses it
        const key = `${at.shard.index}:${at.off}`;
        if (!this.interleaved.has(key)) {
          const nb = cols / blockSize;
          const tmpBytes = 4 * nb * bytesPerBlock;
          let tmp = this.interleaveScratch.get(at.shard.index);
          if (!tmp || tmp.bytes < tmpBytes) {
            tmp = { off: at.shard.arena.alloc(tmpBytes, 64, "interleave scratch"), bytes: tmpBytes };
            this.interleaveScratch.set(at.shard.index, tmp);
          }
          at.shard.kernels.interleave_rows4(at.off, rows / 4, nb, bytesPerBlock, tmp.off);
          this.interleaved.add(key);
        }
        return this.record(name, src, new WasmPrepared(rows, cols, bytes.length, x4, at.off, this.lut(at.shard), 0, this, at.shard.index), undefined, inPlace);
      }
      return this.record(name, src, new WasmPrepared(rows, cols, bytes.length, nat.kind, at.off, this.lut(at.shard), 0, this, at.shard.index), undefined, inPlace);
    }
    const r = rp!;
    const codeBytes = (n / 32) * r.codeBytesPer32;
    const nScales = n / r.group;
    const scaleBytes = nScales * 4;
    const total = codeBytes + scaleBytes * (r.affine ? 2 : 1);
    // codes, scales and mins in one allocation (one shard), each part 64-byte aligned
    const a64 = (x: number) => Math.ceil(x / 64) * 64;
    const { shard, off } = this.allocWeight(a64(codeBytes) + a64(scaleBytes) + (r.affine ? scaleBytes : 0), name);
    const w0 = off, w1 = off + a64(codeBytes), w2 = r.affine ? w1 + a64(scaleBytes) : 0;
    const buf = shard.arena.memory.buffer;
    r.repack(bytes, nBlocks, {
      codes: new Uint8Array(buf, w0, codeBytes),
      scales: new Float32Array(buf, w1, nScales),
      mins: r.affine ? new Float32Array(buf, w2, nScales) : undefined,
    }, this.nibbleOrder);
    return this.record(name, src, new WasmPrepared(rows, cols, total, r.kind, w0, w1, w2, this, shard.index));
  }

  private prepDense(name: string, source: string, rows: number, cols: number, data: Float32Array, fallback?: string): WasmPrepared {
    const at = this.locate(data);
    if (at && at.off % 4 === 0) return this.record(name, source, new WasmPrepared(rows, cols, data.length * 4, K_F32, at.off, 0, 0, this, at.shard.index), fallback, true);
    const { shard, off } = this.allocWeight(data.length * 4, name);
    shard.arena.f32.set(data, off >>> 2);
    return this.record(name, source, new WasmPrepared(rows, cols, data.length * 4, K_F32, off, 0, 0, this, shard.index), fallback);
  }

  private prepF16(name: string, source: string, rows: number, cols: number, data: Uint16Array): WasmPrepared {
    let at = this.locate(data);
    let inPlace = true;
    if (!at || at.off % 2 !== 0) {
      inPlace = false;
      at = this.allocWeight(data.length * 2, name);
      new Uint16Array(at.shard.arena.memory.buffer, at.off, data.length).set(data);
    }
    // the f16 kernel converts with integer ops that do not produce Inf/NaN: such matrices run as f32
    if (at.shard.kernels.f16_count_special(at.off, data.length) !== 0) {
      const f = new Float32Array(data.length);
      for (let j = 0; j < data.length; j++) f[j] = this.kernels.f16_to_f32(data[j]!);
      return this.prepDense(name, source, rows, cols, f, "f16 matrix holds Inf/NaN: converted to f32");
    }
    return this.record(name, source, new WasmPrepared(rows, cols, data.length * 2, K_F16, at.off, 0, 0, this, at.shard.index), undefined, inPlace);
  }

  private record(name: string, source: string, p: WasmPrepared, fallback?: string, inPlace = false): WasmPrepared {
    this.rowsListing.push({ name, source, kernel: KERNEL_NAMES[p.kind]!, rows: p.rows, cols: p.cols, bytes: p.bytes, shard: p.shard, inPlace, fallback });
    return p;
  }

  /** Rows of a weight whose blocks were interleaved in place (see prepare), decoded from wasm memory. */
  rowReader(w: PreparedWeight): RowReader | undefined {
    const p = w as WasmPrepared;
    if (!(p instanceof WasmPrepared) || p.owner !== this || !isX4(p.kind)) return undefined;
    const type = p.kind === K_Q4_0X4 ? GgmlType.Q4_0 : GgmlType.Q8_0;
    const bs = p.kind === K_Q4_0X4 ? 18 : 34;
    const nb = p.cols / 32;
    const row = new Uint8Array(nb * bs);
    const shape = [1, p.cols];
    return (r, dst, off) => {
      if (!Number.isInteger(r) || r < 0 || r >= p.rows) throw new QuantlabError("E_ARG", `row ${r} is outside 0..${p.rows - 1}`);
      const u8 = this.shards[p.shard]!.arena.u8;
      // group r>>2 holds rows 4g..4g+3; block b of row 4g+k sits at b·4·bs + k·bs
      const base = p.w0 + (r >> 2) * 4 * nb * bs + (r & 3) * bs;
      for (let b = 0; b < nb; b++) row.set(u8.subarray(base + b * 4 * bs, base + b * 4 * bs + bs), b * bs);
      dst.set(dequantizeWeight({ kind: "ggml", type, shape, data: row }).data, off);
    };
  }

  matvec(w: PreparedWeight, x: Float32Array, out: Float32Array): void {
    this.run([{ w, x, out }], 1);
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    this.run([{ w, x, out }], n);
  }

  /** Several mat-vecs in one dispatch (e.g. Q, K, V, or gate and up); jobs sharing one `x` array (and shard) quantize it once. */
  matvecMany(jobs: readonly MatvecJob[]): void {
    this.run(jobs, 1);
  }

  private slot(sh: Shard, i: number, xElems: number, outElems: number): Slot {
    let s = sh.slots[i];
    const a = sh.arena;
    if (!s) {
      s = { xCap: 0, outCap: 0, xf: 0, x16: 0, x8: 0, xd: 0, xs: 0, out: 0, desc: a.alloc(DESC_WORDS * 4, 64, "job descriptor") };
      sh.slots[i] = s;
    }
    if (s.xCap < xElems) {
      const cap = Math.max(xElems, 2 * s.xCap, 4096);
      s.xf = a.alloc(cap * 4, 64, "activations");
      s.x16 = a.alloc(cap * 2, 64, "activations");
      s.x8 = a.alloc(cap, 64, "activations");
      s.xd = a.alloc(Math.ceil(cap / 32) * 4 + 64, 64, "activations");
      s.xs = a.alloc(Math.ceil(cap / 16) * 4 + 64, 64, "activations");
      s.xCap = cap;
    }
    if (s.outCap < outElems) {
      const cap = Math.max(outElems, 2 * s.outCap, 4096);
      s.out = a.alloc(cap * 4, 64, "outputs");
      s.outCap = cap;
    }
    return s;
  }

  private run(jobs: readonly MatvecJob[], n: number): void {
    this.checkOpen();
    const poolJobs: { desc: number; rows: number; shard: number; kind: number }[] = [];
    const used: Slot[] = [];
    let streamed = 0;
    for (let i = 0; i < jobs.length; i++) {
      const { w, x, out } = jobs[i]!;
      const p = w as WasmPrepared;
      if (!(p instanceof WasmPrepared) || p.owner !== this) throw new QuantlabError("E_ARG", `wasm backend: weight ${i} was not prepared by this backend`);
      const { rows, cols, kind } = p;
      if (x.length < n * cols) throw new QuantlabError("E_ARG", `wasm backend: x has ${x.length} elements, need ${n}×${cols}`);
      if (out.length < n * rows) throw new QuantlabError("E_ARG", `wasm backend: out has ${out.length} elements, need ${n}×${rows}`);
      const sh = this.shards[p.shard]!;
      const s = this.slot(sh, i, n * cols, n * rows);
      // jobs that share an activation array (in the same shard) reuse the first one's quantized copy
      let src: Slot = s;
      let k = 0;
      for (; k < i; k++) {
        const prev = jobs[k]!.w as WasmPrepared;
        if (jobs[k]!.x === x && prev.cols === cols && prev.shard === p.shard) break;
      }
      if (k < i) src = used[k]!;
      else {
        sh.arena.f32.set(x.subarray(0, n * cols), s.xf >>> 2);
        if (needsQ8(kind)) this.quantizeActivations(sh, s, n, cols);
      }
      if (k < i && needsQ8(kind) && !needsQ8((jobs[k]!.w as WasmPrepared).kind)) this.quantizeActivations(sh, src, n, cols);
      const d = sh.arena.u32;
      const o = s.desc >>> 2;
      d[o + D_KIND] = kind;
      d[o + D_ROWS] = rows;
      d[o + D_COLS] = cols;
      d[o + D_W0] = p.w0;
      d[o + D_W1] = p.w1;
      d[o + D_W2] = p.w2;
      d[o + D_XF] = src.xf;
      d[o + D_X16] = src.x16;
      d[o + D_X8] = src.x8;
      d[o + D_XD] = src.xd;
      d[o + D_XS] = src.xs;
      d[o + D_OUT] = s.out;
      d[o + D_N] = n;
      used.push(s);
      // interleaved kinds run groups of 4 rows: the pool splits (and run_k13/14 take) group indices
      poolJobs.push({ desc: s.desc, rows: isX4(kind) ? rows / 4 : rows, shard: p.shard, kind });
      streamed += p.bytes;
    }
    if (streamed < this.minParallelBytes) for (const j of poolJobs) runJobPart(this.shards[j.shard]!.kernels, j.kind, j.desc, 0, j.rows);
    else this.pool.run(poolJobs);
    for (let i = 0; i < jobs.length; i++) {
      const { out, w } = jobs[i]!;
      const s = used[i]!;
      const f = this.shards[poolJobs[i]!.shard]!.arena.f32;
      out.set(f.subarray(s.out >>> 2, (s.out >>> 2) + n * w.rows));
    }
  }

  /** Q8 codes (i16 and i8 copies), f32 scales per 32 and code sums per 16 of the n rows in slot.xf. */
  private quantizeActivations(sh: Shard, s: Slot, n: number, cols: number): void {
    if (cols % 32 !== 0) throw new QuantlabError("E_INTERNAL", `wasm backend: quantized kernel with ${cols} columns (not a multiple of 32)`);
    const nb = cols / 32;
    for (let t = 0; t < n; t++) {
      sh.kernels.quantize_act(s.xf + t * cols * 4, cols, s.x16 + t * cols * 2, s.x8 + t * cols, s.xd + t * nb * 4, s.xs + t * nb * 8);
    }
  }

  /**
   * f32 → ggml block bytes (Q8_0 or Q4_0), bit-identical to llama.cpp's quantize_row_*_ref, in WASM
   * SIMD. `src.length` must be a multiple of 32; `dst` holds src.length/32 blocks. Streams through a
   * scratch buffer in wasm memory.
   */
  quantizeGgml(type: GgmlType.Q8_0 | GgmlType.Q4_0, src: Float32Array, dst: Uint8Array): void {
    this.encodeBlocks("quantizeGgml", type, src.length, dst, (i, m, x) => this.arena.f32.set(src.subarray(i, i + m), x >>> 2));
  }

  /**
   * f16 (binary16 bits, e.g. an F16 GGUF tensor) → Q8_0 / Q4_0 block bytes, as `quantizeGgml` on the f32
   * values: the f16 → f32 conversion runs in WASM on a reused scratch buffer, so no f32 copy of the tensor
   * is ever made. Values must be finite (an Inf/NaN f16 input throws E_VALUE).
   */
  quantizeGgmlF16(type: GgmlType.Q8_0 | GgmlType.Q4_0, src: Uint16Array, dst: Uint8Array): void {
    this.encodeBlocks("quantizeGgmlF16", type, src.length, dst, (i, m, x) => {
      const h = (this.hScratch ??= this.arena.alloc(ENCODE_CHUNK * 2, 64, "quantize scratch"));
      new Uint16Array(this.arena.memory.buffer, h, m).set(src.subarray(i, i + m));
      if (this.kernels.f16_count_special(h, m) !== 0) throw new QuantlabError("E_VALUE", `wasm quantizeGgmlF16: Inf/NaN among values ${i}..${i + m - 1}`);
      this.kernels.f16_to_f32_row(h, m, x);
    });
  }

  /** n values → Q8_0/Q4_0 blocks in chunks: `fill(i, m, x)` puts values i..i+m as f32 at x in wasm memory. */
  private encodeBlocks(what: string, type: GgmlType, n: number, dst: Uint8Array, fill: (i: number, m: number, x: number) => void): void {
    this.checkOpen();
    const bpb = type === GgmlType.Q8_0 ? 34 : type === GgmlType.Q4_0 ? 18 : 0;
    if (bpb === 0) throw new QuantlabError("E_UNSUPPORTED", `wasm ${what}: ${ggmlTypeName(type)} has no WASM quantizer (only Q8_0 and Q4_0 do)`);
    if (n % 32 !== 0) throw new QuantlabError("E_ARG", `wasm ${what}: ${n} values are not whole 32-blocks`);
    if (dst.length < (n / 32) * bpb) throw new QuantlabError("E_ARG", `wasm ${what}: dst has ${dst.length} bytes, need ${(n / 32) * bpb}`);
    const arena = this.arena;
    this.qScratch ??= { x: arena.alloc(ENCODE_CHUNK * 4, 64, "quantize scratch"), y: arena.alloc((ENCODE_CHUNK / 32) * 34, 64, "quantize scratch") };
    const { x, y } = this.qScratch;
    for (let i = 0; i < n; i += ENCODE_CHUNK) {
      const m = Math.min(ENCODE_CHUNK, n - i);
      fill(i, m, x);
      if (type === GgmlType.Q8_0) this.kernels.quantize_row_q8_0(x, m, y);
      else this.kernels.quantize_row_q4_0(x, m, y);
      const yb = (m / 32) * bpb;
      dst.set(arena.u8.subarray(y, y + yb), (i / 32) * bpb);
    }
  }
  private qScratch: { x: number; y: number } | undefined;
  private hScratch: number | undefined;

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pool.stop();
  }

  private checkOpen(): void {
    if (this.disposed) throw new QuantlabError("E_ARG", "wasm backend: used after dispose()");
  }
}

/** values per pass of the WASM encoders (1 MiB of f32) */
const ENCODE_CHUNK = 1 << 18;

function mib(b: number): string {
  return `${(b / 1048576).toFixed(1)} MiB`;
}

/** Typed view over bytes (copying when unaligned). */
function bytesAs<T>(b: Uint8Array, size: number, count: number, make: (buf: ArrayBufferLike, off: number, n: number) => T): T {
  if (b.length < size * count) throw new QuantlabError("E_FORMAT", `tensor has ${b.length} bytes, need ${size * count}`);
  if (b.byteOffset % size === 0) return make(b.buffer, b.byteOffset, count);
  const c = b.slice(0, size * count);
  return make(c.buffer, 0, count);
}
