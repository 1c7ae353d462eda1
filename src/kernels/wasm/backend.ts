/**
 * The WASM backend: AssemblyScript SIMD kernels (assembly/index.ts) over one shared WebAssembly.Memory.
 * `prepare` copies a weight into wasm memory once, repacked to a SIMD-friendly SoA layout (layouts.ts);
 * each mat-vec copies x in, quantizes it once to Q8 (as ggml does; not for f32/f16 weights), runs the
 * rows (split across the worker pool when one is attached and the job is big enough) and copies the
 * output back. Isomorphic: threads come from a `WorkerHost` (Node: pool-node.ts).
 *
 * Types without a WASM kernel (ggml types not in layouts.ts REPACK, quantlab QuantizedTensors, rows
 * that are not whole blocks) are dequantized once to f32 and run on the f32 kernel; `listing()` says so.
 */
import { QuantlabError } from "../../core/errors.js";
import { bf16ArrayToF32 } from "../../core/f16.js";
import { GgmlType, ggmlTypeName } from "../../ggml/types.js";
import type { Weight } from "../../model/weights.js";
import { weightShape } from "../../model/weights.js";
import { dequantizeWeight } from "../dequantize.js";
import type { Backend, MatvecJob, PreparedWeight } from "../types.js";
import {
  K_F32, K_F16, K_I8S32, K_Q4_0, K_N4A32, K_I8S16, K_I8A32, K_I8A16,
  D_KIND, D_ROWS, D_COLS, D_W0, D_W1, D_W2, D_XF, D_X16, D_X8, D_XD, D_XS, D_OUT, D_N, DESC_WORDS,
} from "../../../assembly/abi.js";
import { WasmArena } from "./arena.js";
import { REPACK, type NibbleOrder } from "./layouts.js";
import { instantiateKernels, pickVariant, wasmModule, type KernelExports, type WasmVariant } from "./module.js";
import { CTRL_BYTES, Dispatcher, type WorkerHost } from "./pool.js";

export const KERNEL_NAMES: Record<number, string> = {
  [K_F32]: "f32",
  [K_F16]: "f16",
  [K_I8S32]: "i8·s32",
  [K_Q4_0]: "q4_0",
  [K_N4A32]: "n4·s32·m32",
  [K_I8S16]: "i8·s16",
  [K_I8A32]: "i8·s32·m32",
  [K_I8A16]: "i8·s16·m16",
};

export interface WasmBackendOptions {
  /** threads including the caller (default 1 = no workers); > 1 needs `workerHost` */
  threads?: number;
  /** kernel build: "auto" (default) = relaxed SIMD when the engine supports it, else SIMD128 */
  variant?: WasmVariant | "auto";
  workerHost?: WorkerHost;
  /** memory limits in 64 KiB pages (default maximum 65536 = 4 GiB, the wasm32 cap) */
  initialPages?: number;
  maxPages?: number;
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
  ) {}
}

/** Activation + output scratch for one job of a dispatch. */
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

const needsQ8 = (kind: number): boolean => kind !== K_F32 && kind !== K_F16;

export class WasmBackend implements Backend {
  readonly name: string;
  readonly variant: WasmVariant;
  readonly threads: number;
  readonly arena: WasmArena;
  readonly kernels: KernelExports;
  private readonly pool: Dispatcher;
  private readonly nibbleOrder: NibbleOrder;
  /** jobs streaming fewer weight bytes run on the calling thread alone (Infinity = never dispatch) */
  minParallelBytes: number;
  private readonly slots: Slot[] = [];
  private readonly rowsListing: WasmListingRow[] = [];
  private disposed = false;

  constructor(opts: WasmBackendOptions = {}) {
    this.variant = pickVariant(opts.variant ?? "auto");
    const module = wasmModule(this.variant);
    // instantiate once on a throwaway memory to learn where static data ends, then on the real one
    const probe = instantiateKernels(module, new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }));
    this.arena = new WasmArena(probe.heap_base(), { initialPages: opts.initialPages, maxPages: opts.maxPages });
    this.kernels = instantiateKernels(module, this.arena.memory);
    this.nibbleOrder = this.kernels.variant() === 1 ? "gguf" : "r16";
    const ctrl = this.arena.alloc(CTRL_BYTES, 64, "worker control block");
    const threads = Math.max(1, Math.floor(opts.threads ?? 1));
    if (threads > 1 && !opts.workerHost) throw new QuantlabError("E_ARG", `wasm backend: threads=${threads} needs a worker host (use createNodeWasmBackend in Node)`);
    this.pool = new Dispatcher(this.kernels, this.arena.memory, ctrl, opts.workerHost, module, {
      threads,
      watchdogMs: opts.watchdogMs,
      spinMicros: opts.spinMicros,
    });
    this.threads = this.pool.threads;
    this.minParallelBytes = opts.minParallelBytes ?? 128 * 1024;
    this.name = `wasm-${this.variant}${this.threads > 1 ? `-t${this.threads}` : ""}`;
  }

  /** One row per prepared weight: which kernel runs it and whether it fell back to f32. */
  listing(): readonly WasmListingRow[] {
    return this.rowsListing;
  }

  /** Pool counters (dispatches, caller-run chunks, sleeps) and its state. */
  poolStats(): { threads: number; alive: number; broken?: string; dispatches: number; callerChunks: number; waits: number } {
    return { threads: this.threads, alive: this.pool.alive, broken: this.pool.brokenReason, ...this.pool.stats };
  }

  /** Resolves when the pool's workers have started (true) or the timeout passed (false). Workers start
   * in the background while the event loop turns; until then the calling thread does all the work. */
  ready(timeoutMs = 10000): Promise<boolean> {
    return this.pool.ready(timeoutMs);
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
    const rp = REPACK[w.type];
    if (!rp) {
      const { data } = dequantizeWeight(w, name);
      return this.prepDense(name, src, rows, cols, data, `no WASM kernel for ${ggmlTypeName(w.type)}: dequantized once to f32`);
    }
    if (cols % rp.blockSize !== 0) {
      throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(w.type)} rows of ${cols} elements are not whole ${rp.blockSize}-element blocks`);
    }
    const nBlocks = n / rp.blockSize;
    if (bytes.length !== nBlocks * rp.bytesPerBlock) {
      throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(w.type)} [${shape.join(", ")}] needs ${nBlocks * rp.bytesPerBlock} bytes, got ${bytes.length}`);
    }
    const codeBytes = (n / 32) * rp.codeBytesPer32;
    const nScales = n / rp.group;
    const a = this.arena;
    const w0 = a.alloc(codeBytes, 64, `${name} codes`);
    const w1 = a.alloc(nScales * 4, 64, `${name} scales`);
    const w2 = rp.affine ? a.alloc(nScales * 4, 64, `${name} mins`) : 0;
    const buf = a.memory.buffer;
    rp.repack(bytes, nBlocks, {
      codes: new Uint8Array(buf, w0, codeBytes),
      scales: new Float32Array(buf, w1, nScales),
      mins: rp.affine ? new Float32Array(buf, w2, nScales) : undefined,
    }, this.nibbleOrder);
    const total = codeBytes + nScales * 4 * (rp.affine ? 2 : 1);
    return this.record(name, src, new WasmPrepared(rows, cols, total, rp.kind, w0, w1, w2, this));
  }

  private prepDense(name: string, source: string, rows: number, cols: number, data: Float32Array, fallback?: string): WasmPrepared {
    const off = this.arena.alloc(data.length * 4, 64, name);
    this.arena.f32.set(data, off >> 2);
    return this.record(name, source, new WasmPrepared(rows, cols, data.length * 4, K_F32, off, 0, 0, this), fallback);
  }

  private prepF16(name: string, source: string, rows: number, cols: number, data: Uint16Array): WasmPrepared {
    // the f16 kernel converts with integer ops that do not produce Inf/NaN: such matrices run as f32
    for (let i = 0; i < data.length; i++) {
      if ((data[i]! & 0x7c00) === 0x7c00) return this.prepDense(name, source, rows, cols, new Float32Array(data.length).map((_, j) => this.kernels.f16_to_f32(data[j]!)), "f16 matrix holds Inf/NaN: converted to f32");
    }
    const off = this.arena.alloc(data.length * 2, 64, name);
    new Uint16Array(this.arena.memory.buffer, off, data.length).set(data);
    return this.record(name, source, new WasmPrepared(rows, cols, data.length * 2, K_F16, off, 0, 0, this));
  }

  private record(name: string, source: string, p: WasmPrepared, fallback?: string): WasmPrepared {
    this.rowsListing.push({ name, source, kernel: KERNEL_NAMES[p.kind]!, rows: p.rows, cols: p.cols, bytes: p.bytes, fallback });
    return p;
  }

  matvec(w: PreparedWeight, x: Float32Array, out: Float32Array): void {
    this.run([{ w, x, out }], 1);
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    this.run([{ w, x, out }], n);
  }

  /** Several mat-vecs in one dispatch (e.g. Q, K, V, or gate and up); jobs sharing one `x` array quantize it once. */
  matvecMany(jobs: readonly MatvecJob[]): void {
    this.run(jobs, 1);
  }

  private slot(i: number, xElems: number, outElems: number): Slot {
    let s = this.slots[i];
    if (!s) {
      s = { xCap: 0, outCap: 0, xf: 0, x16: 0, x8: 0, xd: 0, xs: 0, out: 0, desc: this.arena.alloc(DESC_WORDS * 4, 64, "job descriptor") };
      this.slots[i] = s;
    }
    if (s.xCap < xElems) {
      const cap = Math.max(xElems, 2 * s.xCap, 4096);
      const a = this.arena;
      s.xf = a.alloc(cap * 4, 64, "activations");
      s.x16 = a.alloc(cap * 2, 64, "activations");
      s.x8 = a.alloc(cap, 64, "activations");
      s.xd = a.alloc(Math.ceil(cap / 32) * 4 + 64, 64, "activations");
      s.xs = a.alloc(Math.ceil(cap / 16) * 4 + 64, 64, "activations");
      s.xCap = cap;
    }
    if (s.outCap < outElems) {
      const cap = Math.max(outElems, 2 * s.outCap, 4096);
      s.out = this.arena.alloc(cap * 4, 64, "outputs");
      s.outCap = cap;
    }
    return s;
  }

  private run(jobs: readonly MatvecJob[], n: number): void {
    this.checkOpen();
    const poolJobs: { desc: number; rows: number }[] = [];
    const used: Slot[] = [];
    let streamed = 0;
    for (let i = 0; i < jobs.length; i++) {
      const { w, x, out } = jobs[i]!;
      const p = w as WasmPrepared;
      if (!(p instanceof WasmPrepared) || p.owner !== this) throw new QuantlabError("E_ARG", `wasm backend: weight ${i} was not prepared by this backend`);
      const { rows, cols, kind } = p;
      if (x.length < n * cols) throw new QuantlabError("E_ARG", `wasm backend: x has ${x.length} elements, need ${n}×${cols}`);
      if (out.length < n * rows) throw new QuantlabError("E_ARG", `wasm backend: out has ${out.length} elements, need ${n}×${rows}`);
      const s = this.slot(i, n * cols, n * rows);
      // jobs that share an activation array reuse the first one's quantized copy
      let src: Slot = s;
      let k = 0;
      for (; k < i; k++) {
        const prev = jobs[k]!;
        if (prev.x === x && (prev.w as WasmPrepared).cols === cols) break;
      }
      if (k < i) src = used[k]!;
      else {
        this.arena.f32.set(x.subarray(0, n * cols), s.xf >> 2);
        if (needsQ8(kind)) this.quantizeActivations(s, n, cols);
      }
      if (k < i && needsQ8(kind) && !needsQ8((jobs[k]!.w as WasmPrepared).kind)) this.quantizeActivations(src, n, cols);
      const d = this.arena.u32;
      const o = s.desc >> 2;
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
      poolJobs.push({ desc: s.desc, rows });
      streamed += p.bytes;
    }
    if (streamed < this.minParallelBytes) for (const j of poolJobs) this.kernels.run_rows(j.desc, 0, j.rows);
    else this.pool.run(poolJobs);
    const f = this.arena.f32;
    for (let i = 0; i < jobs.length; i++) {
      const { out, w } = jobs[i]!;
      const s = used[i]!;
      out.set(f.subarray(s.out >> 2, (s.out >> 2) + n * w.rows));
    }
  }

  /** Q8 codes (i16 and i8 copies), f32 scales per 32 and code sums per 16 of the n rows in slot.xf. */
  private quantizeActivations(s: Slot, n: number, cols: number): void {
    if (cols % 32 !== 0) throw new QuantlabError("E_INTERNAL", `wasm backend: quantized kernel with ${cols} columns (not a multiple of 32)`);
    const nb = cols / 32;
    for (let t = 0; t < n; t++) {
      this.kernels.quantize_act(s.xf + t * cols * 4, cols, s.x16 + t * cols * 2, s.x8 + t * cols, s.xd + t * nb * 4, s.xs + t * nb * 8);
    }
  }

  /**
   * f32 → ggml block bytes (Q8_0 or Q4_0), bit-identical to llama.cpp's quantize_row_*_ref, in WASM
   * SIMD. `src.length` must be a multiple of 32; `dst` holds src.length/32 blocks. Streams through a
   * scratch buffer in wasm memory.
   */
  quantizeGgml(type: GgmlType.Q8_0 | GgmlType.Q4_0, src: Float32Array, dst: Uint8Array): void {
    this.checkOpen();
    const bpb = type === GgmlType.Q8_0 ? 34 : type === GgmlType.Q4_0 ? 18 : 0;
    if (bpb === 0) throw new QuantlabError("E_UNSUPPORTED", `wasm quantizeGgml: ${ggmlTypeName(type)} is not implemented (Q8_0, Q4_0 are)`);
    if (src.length % 32 !== 0) throw new QuantlabError("E_ARG", `wasm quantizeGgml: ${src.length} values are not whole 32-blocks`);
    if (dst.length < (src.length / 32) * bpb) throw new QuantlabError("E_ARG", `wasm quantizeGgml: dst has ${dst.length} bytes, need ${(src.length / 32) * bpb}`);
    const chunk = 1 << 18; // values per pass (1 MiB of f32)
    if (!this.qScratch) {
      this.qScratch = { x: this.arena.alloc(chunk * 4, 64, "quantize scratch"), y: this.arena.alloc((chunk / 32) * 34, 64, "quantize scratch") };
    }
    const { x, y } = this.qScratch;
    for (let i = 0; i < src.length; i += chunk) {
      const m = Math.min(chunk, src.length - i);
      this.arena.f32.set(src.subarray(i, i + m), x >> 2);
      if (type === GgmlType.Q8_0) this.kernels.quantize_row_q8_0(x, m, y);
      else this.kernels.quantize_row_q4_0(x, m, y);
      const yb = (m / 32) * bpb;
      dst.set(this.arena.u8.subarray(y, y + yb), (i / 32) * bpb);
    }
  }
  private qScratch: { x: number; y: number } | undefined;

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pool.stop();
  }

  private checkOpen(): void {
    if (this.disposed) throw new QuantlabError("E_ARG", "wasm backend: used after dispose()");
  }
}

/** Typed view over bytes (copying when unaligned). */
function bytesAs<T>(b: Uint8Array, size: number, count: number, make: (buf: ArrayBufferLike, off: number, n: number) => T): T {
  if (b.length < size * count) throw new QuantlabError("E_FORMAT", `tensor has ${b.length} bytes, need ${size * count}`);
  if (b.byteOffset % size === 0) return make(b.buffer, b.byteOffset, count);
  const c = b.slice(0, size * count);
  return make(c.buffer, 0, count);
}
