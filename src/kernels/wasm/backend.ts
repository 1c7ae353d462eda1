/**
 * The WASM backend: AssemblyScript SIMD kernels (assembly/index.ts) over shared WebAssembly.Memory
 * shards, composed of three parts: memory.ts (shards, weight allocation and release, placeTensor /
 * locate), dispatch.ts (job descriptors, activation slots, Q8 activation quantization, running jobs
 * through the worker pool) and encoders.ts (ggml block encoders: the pool task for every codec type,
 * and the bare WASM Q8_0/Q4_0 quantizers). This file decides how each weight is laid out.
 *
 * `prepare` puts a weight into wasm memory once: f32/f16 and the "native" ggml types (layouts.ts NATIVE:
 * Q8_0, Q4_0 (relaxed build) by default; Q4_K, Q6_K too with `layouts: "native"`) keep their file bytes,
 * the other ggml types are repacked to a SIMD-friendly SoA layout (layouts.ts REPACK). `placeTensor`
 * tells a loader where to read a tensor so that `prepare` then uses it in place (no second copy);
 * `release` gives a weight's memory back. Each mat-vec copies x in, quantizes it once to Q8 (as ggml
 * does; not for f32/f16 weights), runs the rows (split across the worker pool when one is attached and
 * the job is big enough) and copies the output back. Isomorphic: threads come from a `WorkerHost`
 * (Node: pool-node.ts).
 *
 * quantlab QuantizedTensors of the packed uniform-int family (kernels/packed.ts: int4/int8, sym or affine,
 * channel or g16..g256 scales) keep their codes packed and run on fused dequantize-dot kernels (K_U4G,
 * K_U8G) with f32 activations; the lookup-table family (nf4, fp4/mxfp4/nvfp4, fp8, log formats, k-means,
 * ternary/binary, 1–8-bit ints the uniform kinds do not take) runs packed on the K_LUT* kernels. Layouts without
 * a WASM kernel (ggml types in neither layouts.ts NATIVE nor REPACK — Q8_1, Q8_K —; VQ codebooks, outliers,
 * ichannel/block2d, trits, codes wider than 8 bits) stay in their stored form and run through the row decoder
 * (kernels/rowdec.ts, dispatch.ts runDecoded): chunks of ~256 KiB of f32 rows decoded into one scratch and run
 * on the f32 kernel, never a whole-tensor f32 copy; `listing()` names the kernel "rowdec·f32" and says why.
 *
 * Memory (issue 11): `placeQuant` gives a loader the start of a packed tensor's whole prepared region, so its
 * codes are read from the file straight into wasm memory and `prepare` only writes the per-group parameters
 * after them (uniform-int: scales as the stored f16 bits for f16-scale specs, else f32, asym zero codes as the file packs them; lut: e8m0 scales as exponent bytes); f32/f16
 * matrices are placed as in GGUF files; `rowReader` decodes rows of f32, f16 and packed weights from wasm
 * memory, so a tied embedding is held once, as the output matrix.
 */
import { QuantlabError } from "../../core/errors.js";
import { bf16ArrayToF32, f16ArrayToF32, f16BitsToF32, f32ToF16Bits } from "../../core/f16.js";
import type { GgmlEncoder } from "../../ggml/encoder.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../../ggml/types.js";
import { hasGgmlCodec } from "../../ggml/codecs.js";
import { dequantizeWeight, type RowReader } from "../dequantize.js";
import type { Backend, Int8Rows, KvCache, MatvecJob, PreparedWeight } from "../types.js";
import { K_F32, K_F16, K_U4G, K_U8G, K_N4A32, K_I8S32, K_I8A32, K_LUT4G, K_LUT1G, K_LUT2G, K_LUT3G, K_LUTWG, K_LUT4Q8, K_TERN2Q8, K_NIB4Q8X4, K_LUT4Q8X4, K_LUT12Q8X4, K_LUT7Q8X4, K_TERN2Q8X4, K_TERN2Q8KX4, K_LUT4Q8X4E, K_I8Q8X4, K_NIB4Q8X4B, K_NIB4Q8X4BF, K_NIB4Q8X4BS, K_NIB4Q8X4BSF, K_NIB4Q8X4BZ, K_NIB4Q8X4BZF, K_I16GEMM } from "../../../assembly/abi.js";
import { dequantizeRowLut, dequantizeRowUniformInt, packedRegion, lutE8Candidate, lutKernelName, lutLayout, lutParams, lutQ8Bytes, lutQ8Layout, type LutQ8Layout, type LutParams, lutTableLength, uniformQ8Layout, uniformIntCompact, uniformIntKernelName, uniformIntLayout, uniformIntParams, uniformZeroBytes, type LutLayout, type UniformIntLayout, type UniformIntParams } from "../packed.js";
import { QTensor } from "../../quant/tensor.js";
import type { WasmArena } from "./arena.js";
import { isX4, JobDispatch, RowDecPrepared, WasmPrepared } from "./dispatch.js";
import { ggmlRowDecoder, quantRowDecoder, rowDecKernelName, type RowDecoded } from "../rowdec.js";
import { FlatQuantizers, WasmGgmlEncoder } from "./encoders.js";
import { WasmKvCache } from "./kv-cache.js";
import { WasmLinalg } from "./linalg.js";
import { KERNEL_NAMES, NATIVE, NATIVE_TYPE_OF_KIND, REPACK, packNibbles32, type NativeRow, type NibbleOrder } from "./layouts.js";
import { ShardedMemory } from "./memory.js";
import { pickVariant, wasmModule, type KernelExports, type WasmVariant } from "./module.js";
import { CTRL_BYTES, Dispatcher, type WorkerHost } from "./pool.js";
import { POOL_TASKS } from "./tasks.js";
import { weightShape, type Weight } from "../../core/weight.js";
import type { QuantSpec } from "../../quant/spec.js";

export { KERNEL_NAMES } from "./layouts.js";

/** Throws unless int32 sums of cols products of codes |q| ≤ qmax cannot overflow (K_I16GEMM). */
export function checkCalibrationQmax(cols: number, qmax: number, name: string): void {
  if (!Number.isInteger(qmax) || qmax < 1 || qmax > 32767 || cols * qmax * qmax >= 2 ** 31) throw new QuantlabError("E_ARG", `${name}: integer calibration codes up to ${qmax} over ${cols} columns could overflow int32 (need cols · qmax² < 2^31)`);
}

const LUT_KINDS = new Set([K_LUT4G, K_LUT1G, K_LUT2G, K_LUT3G, K_LUTWG]);

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
  /** packed uniform-int specs (kernels/packed.ts): "f32" (default) runs them on the fused K_U4G / K_U8G
   * kernels with f32 activations — the fake-quant numbers (logits within 1e-4); "q8" repacks those whose
   * groups are whole 32-blocks onto the ggml-style integer kernels (K_N4A32, K_I8S32, K_I8A32) with
   * activations quantized to Q8 once per row, as llama.cpp does: faster, and no longer the fake-quant
   * numbers (the Q8 activation error is added) */
  packedActivations?: "f32" | "q8";
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
  /** set when the weight was converted to an f32 copy (a dense f64/i-type tensor, an f16 matrix holding Inf/NaN) */
  fallback?: string;
  /** set when no fast kernel handles the layout, with the reason: the stored form runs through its row
   * decoder (kernel "rowdec·f32"), chunk by chunk, never as a whole-tensor f32 copy */
  rowdec?: string;
}

/** The bits of an f32 value. */
function f32Bits(v: number): number {
  F32B[0] = v;
  return U32B[0]!;
}
const F32B = new Float32Array(1), U32B = new Uint32Array(F32B.buffer);

export class WasmBackend implements Backend {
  readonly name: string;
  /** every weight is copied, repacked or placed into wasm memory (prepare below), or — a row-decoded QTensor —
   * its arrays are held by the prepared weight's decoder, which never reads the weight again */
  readonly preparesCopies = true;
  readonly variant: WasmVariant;
  readonly threads: number;
  /** kernels on shard 0 (quantizers, f16 helpers, bandwidth probe) */
  readonly kernels: KernelExports;
  private readonly memory: ShardedMemory;
  private readonly module: WebAssembly.Module;
  private readonly pool: Dispatcher;
  private readonly dispatch: JobDispatch;
  private readonly flat: FlatQuantizers;
  private encoder: WasmGgmlEncoder | undefined;
  private readonly nibbleOrder: NibbleOrder;
  private readonly layouts: "auto" | "native" | "repacked";
  private readonly packedActivations: "f32" | "q8";
  /** regions ("shard:offset") whose rows were interleaved in place (K_Q4_0X4/K_Q8_0X4) */
  private readonly interleaved = new Set<string>();
  private readonly interleaveScratch = new Map<number, { off: number; bytes: number }>();
  private readonly rowsListing: WasmListingRow[] = [];
  private readonly listed = new Map<WasmPrepared, WasmListingRow>();
  private disposed = false;

  constructor(opts: WasmBackendOptions = {}) {
    this.variant = pickVariant(opts.variant ?? "auto");
    this.module = wasmModule(this.variant);
    this.memory = new ShardedMemory(this.module, opts);
    const first = this.memory.first;
    this.kernels = first.kernels;
    this.nibbleOrder = this.kernels.variant() === 1 ? "gguf" : "r16";
    this.layouts = opts.layouts ?? "auto";
    this.packedActivations = opts.packedActivations ?? "f32";
    const ctrl = first.arena.alloc(CTRL_BYTES, 64, "worker control block");
    const threads = Math.max(1, Math.floor(opts.threads ?? 1));
    if (threads > 1 && !opts.workerHost) throw new QuantlabError("E_ARG", `wasm backend: threads=${threads} needs a worker host (use createNodeWasmBackend in Node)`);
    this.pool = new Dispatcher(this.kernels, first.arena.memory, ctrl, opts.workerHost, this.module, {
      threads,
      watchdogMs: opts.watchdogMs,
      spinMicros: opts.spinMicros,
      tasks: POOL_TASKS,
    });
    this.memory.onNewShard = (sh) => this.pool.addShard(sh.arena.memory, sh.kernels);
    this.threads = this.pool.threads;
    this.dispatch = new JobDispatch(this.memory, this.pool, this, opts.minParallelBytes ?? 128 * 1024);
    this.flat = new FlatQuantizers(first, () => this.checkOpen());
    this.name = `wasm-${this.variant}${this.threads > 1 ? `-t${this.threads}` : ""}`;
  }

  /** shard 0's memory (encoder scratch, the bandwidth probe, tests) */
  get arena(): WasmArena {
    return this.memory.first.arena;
  }

  /** jobs streaming fewer weight bytes run on the calling thread alone (Infinity = never dispatch) */
  get minParallelBytes(): number {
    return this.dispatch.minParallelBytes;
  }

  set minParallelBytes(v: number) {
    this.dispatch.minParallelBytes = v;
  }

  /** decode mat-vecs: weight bytes per chunk a thread claims on large matrices (Infinity = threads × 4 chunks per job) */
  get chunkBytes(): number {
    return this.dispatch.chunkBytes;
  }

  set chunkBytes(v: number) {
    if (!(v > 0)) throw new QuantlabError("E_ARG", `wasm backend: chunkBytes must be > 0, got ${v}`);
    this.dispatch.chunkBytes = v;
  }

  /** Memory use per shard (top of each arena, weights included), free bytes per shard, and the weight limit of one shard. */
  memoryStats(): { shards: number[]; free: number[]; weightLimit: number } {
    return this.memory.stats();
  }

  /** One row per prepared (and not released) weight: which kernel runs it, where it lives, whether it fell back to f32. */
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
   * This backend's ggml block encoder: every codec type, with or without imatrix and refine, its rows
   * split across the pool's threads (ggml/encoder.ts GgmlEncoder). One per backend; `chunkValues` (for
   * tests) gives a separate encoder that stages that many values per chunk; `wasmEncoders: false` a separate
   * one whose threads run only the TypeScript codecs (the pre-issue-15 pool, for comparisons; same bytes).
   */
  ggmlEncoder(chunkValues?: number, opts: { wasmEncoders?: boolean } = {}): GgmlEncoder {
    this.checkOpen();
    if (chunkValues !== undefined || opts.wasmEncoders === false) return new WasmGgmlEncoder(this.memory.first, this.pool, () => this.checkOpen(), chunkValues, opts.wasmEncoders ?? true);
    return (this.encoder ??= new WasmGgmlEncoder(this.memory.first, this.pool, () => this.checkOpen()));
  }

  /** This backend's float64 linear-algebra kernels (GPTQ: Gram, Cholesky of H⁻¹, lazy updates; linalg.ts),
   * on shard 0 and the worker pool. One per backend. */
  linalg(): WasmLinalg {
    this.checkOpen();
    return (this.linalgKernels ??= new WasmLinalg(this.memory.first.arena, this.memory.first.kernels, this.pool, () => this.checkOpen()));
  }

  private linalgKernels: WasmLinalg | undefined;

  /** Does `prepare` run a ggml type (a matrix of this shape) on its file bytes (no repack) in this build?
   * Types with only an interleaved kernel (no `kind`) do so for `layouts: "auto"` matrices of 4k rows. */
  private nativeRow(type: GgmlType, shape: readonly number[]): NativeRow | undefined {
    const row = NATIVE[type];
    if (!row || this.layouts === "repacked") return undefined;
    if (!(this.layouts === "native" ? row.variants : row.byDefault).includes(this.variant)) return undefined;
    return row.kind !== undefined || this.x4Kind(row, shape) !== undefined ? row : undefined;
  }

  /** The 4-row interleaved kind a native matrix runs on (`layouts: "auto"`, 2-D, rows a multiple of 4). */
  private x4Kind(nat: NativeRow, shape: readonly number[]): number | undefined {
    return this.layouts === "auto" && nat.interleave4 !== undefined && shape.length === 2 && shape[0]! % 4 === 0 ? nat.interleave4 : undefined;
  }

  /**
   * Where a loader should read a tensor of this type and shape so that `prepare` uses the bytes in place:
   * a view into wasm memory of exactly the tensor's byte length, or undefined when this backend would
   * convert or repack it anyway (then read it anywhere and `prepare` copies). Only matrices (2-D) are placed.
   */
  placeTensor(type: GgmlType, shape: readonly number[], name = "tensor"): Uint8Array | undefined {
    this.checkOpen();
    return this.memory.placeTensor(type, shape, name, (t) => this.nativeRow(t, shape));
  }

  /** regions placeQuant handed out ("shard:offset" of the codes → family and region bytes) */
  private readonly placedQuant = new Map<string, { family: "uniform-int" | "lut"; bytes: number }>();

  /**
   * Where a loader should read a quantized tensor's code bytes (its `.qcodes` entry) so that `prepare` runs
   * them in place: a view of exactly those bytes at the start of the tensor's whole prepared region
   * (kernels/packed.ts packedRegion), whose parameters prepare then writes after them. Undefined when the
   * tensor would not run packed, or not on its own codes (packedActivations "q8" repacks).
   */
  placeQuant(spec: QuantSpec, shape: readonly number[], name = "tensor"): Uint8Array | undefined {
    this.checkOpen();
    const R = packedRegion(spec, shape);
    if (!R || (R.family === "uniform-int" && this.packedActivations === "q8")) return undefined;
    const { shard, off } = this.memory.allocWeight(R.bytes, name);
    this.placedQuant.set(`${shard.index}:${off}`, { family: R.family, bytes: R.bytes });
    return shard.arena.view(off, R.codeBytes);
  }

  /** The region a placed tensor's codes start (placeQuant), if `codes` are those bytes and the family matches. */
  private placedRegion(codes: Uint8Array, family: "uniform-int" | "lut", bytes: number): { shard: ReturnType<ShardedMemory["allocWeight"]>["shard"]; off: number } | undefined {
    const at = this.memory.locate(codes);
    if (!at) return undefined;
    const key = `${at.shard.index}:${at.off}`;
    const r = this.placedQuant.get(key);
    if (!r || r.family !== family || r.bytes !== bytes) return undefined;
    this.placedQuant.delete(key); // prepared once: a second prepare of the same weight copies
    return at;
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
      const src = `quant ${w.q.spec}`;
      // f32 activations: the parameters written from the QTensor's own arrays (no per-group f32 copies)
      const U = uniformIntParams(w.q);
      if (!("reason" in U)) {
        const L = this.packedActivations === "q8" && U.group % 32 === 0 && U.cols % 32 === 0 ? uniformIntLayout(w.q) : undefined;
        return L && !("reason" in L) ? this.prepUniformQ8(name, src, L) : this.prepUniform(name, src, U, uniformIntCompact(w.q), (w.q as QTensor).specObject.scheme === "asym");
      }
      const T = lutParams(w.q);
      if (!("reason" in T)) {
        if (this.packedActivations === "q8") {
          const L = lutLayout(w.q);
          const Q = "reason" in L ? L : lutQ8Layout(L);
          if (!("reason" in Q)) return this.prepLutQ8(name, src, Q);
        }
        return this.prepLut(name, src, T, lutE8Candidate((w.q as QTensor).specObject, shape));
      }
      return this.prepRowDec(name, src, quantRowDecoder(w.q, name), `no packed WASM kernel (${T.reason})`);
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
    const nat = this.nativeRow(w.type, shape);
    const rp = REPACK[w.type];
    if (!nat && !rp) return this.prepGgmlRowDec(name, src, w.type, shape, bytes);
    const { blockSize, bytesPerBlock } = GGML_TYPES[w.type];
    if (cols % blockSize !== 0) {
      throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(w.type)} rows of ${cols} elements are not whole ${blockSize}-element blocks`);
    }
    const nBlocks = n / blockSize;
    if (bytes.length !== nBlocks * bytesPerBlock) {
      throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(w.type)} [${shape.join(", ")}] needs ${nBlocks * bytesPerBlock} bytes, got ${bytes.length}`);
    }
    if (nat) {
      const x4 = this.x4Kind(nat, shape);
      let at = this.memory.locate(bytes);
      const inPlace = at !== undefined;
      if (!at) {
        at = this.memory.allocWeight(bytes.length, name);
        at.shard.arena.u8.set(bytes, at.off);
      }
      const alloc = inPlace ? undefined : at.off;
      if (x4 !== undefined) {
        // the permutation happens once per region: preparing the same placed tensor again reuses it
        const key = `${at.shard.index}:${at.off}`;
        if (!this.interleaved.has(key)) {
          const nb = cols / blockSize;
          const tmpBytes = 4 * nb * bytesPerBlock;
          let tmp = this.interleaveScratch.get(at.shard.index);
          if (!tmp || tmp.bytes < tmpBytes) {
            if (tmp) at.shard.arena.free(tmp.off);
            tmp = { off: at.shard.arena.alloc(tmpBytes, 64, "interleave scratch"), bytes: tmpBytes };
            this.interleaveScratch.set(at.shard.index, tmp);
          }
          at.shard.kernels.interleave_rows4(at.off, rows / 4, nb, bytesPerBlock, tmp.off);
          this.interleaved.add(key);
        }
        return this.record(name, src, new WasmPrepared(rows, cols, bytes.length, x4, at.off, this.memory.lut(at.shard), 0, this, at.shard.index, alloc), undefined, inPlace);
      }
      return this.record(name, src, new WasmPrepared(rows, cols, bytes.length, nat.kind!, at.off, this.memory.lut(at.shard), 0, this, at.shard.index, alloc), undefined, inPlace);
    }
    const r = rp!;
    const codeBytes = (n / 32) * r.codeBytesPer32;
    const nScales = n / r.group;
    const scaleBytes = nScales * 4;
    const total = codeBytes + scaleBytes * (r.affine ? 2 : 1);
    // codes, scales and mins in one allocation (one shard), each part 64-byte aligned
    const a64 = (x: number) => Math.ceil(x / 64) * 64;
    const { shard, off } = this.memory.allocWeight(a64(codeBytes) + a64(scaleBytes) + (r.affine ? scaleBytes : 0), name);
    const w0 = off, w1 = off + a64(codeBytes), w2 = r.affine ? w1 + a64(scaleBytes) : 0;
    const buf = shard.arena.memory.buffer;
    r.repack(bytes, nBlocks, {
      codes: new Uint8Array(buf, w0, codeBytes),
      scales: new Float32Array(buf, w1, nScales),
      mins: r.affine ? new Float32Array(buf, w2, nScales) : undefined,
    }, this.nibbleOrder);
    return this.record(name, src, new WasmPrepared(rows, cols, total, r.kind, w0, w1, w2, this, shard.index, off));
  }

  /**
   * The weight as an operand of the integer calibration GEMM (K_I16GEMM, assembly/igemm.ts): dequantized to f32,
   * then symmetric i16 codes |q| ≤ qmax with one f32 scale per row; `matmul` on it quantizes each token of x the
   * same way and sums the products exactly in int32. cols must be a multiple of 32 and cols · qmax² < 2^31.
   */
  prepareCalibration(w: Weight, name: string, qmax: number): PreparedWeight {
    this.checkOpen();
    const f = dequantizeWeight(w, name);
    const { rows, cols } = f;
    if (cols % 32 !== 0) throw new QuantlabError("E_UNSUPPORTED", `${name}: the integer calibration forward needs rows of a multiple of 32 columns, got ${cols} (use --imatrix-forward exact)`);
    checkCalibrationQmax(cols, qmax, name);
    const codeBytes = rows * cols * 2;
    const { shard, off } = this.memory.allocWeight(codeBytes + rows * 4, name);
    // staged as f32 in a scratch region, quantized into the weight's region, dropped
    const tmp = shard.arena.alloc(rows * cols * 4, 64, "calibration staging");
    shard.arena.f32.set(f.data, tmp >>> 2);
    const bad = shard.kernels.quantize_rows_i16(tmp, rows, cols, qmax, off, off + codeBytes);
    shard.arena.free(tmp);
    if (bad !== 0) {
      shard.arena.free(off);
      throw new QuantlabError("E_VALUE", `${name}: ${bad} rows hold Inf/NaN (integer calibration forward)`);
    }
    return this.record(name, `dense → i16 calibration codes (qmax ${qmax})`, new WasmPrepared(rows, cols, codeBytes + rows * 4, K_I16GEMM, off, off + codeBytes, 0, this, shard.index, off, 0, 0, qmax));
  }

  /**
   * A packed uniform-int spec (kernels/packed.ts): the QTensor's codes as they are, then the scales (the stored
   * f16 bits when the spec keeps f16 scales, else f32) and, for asym specs, the integer zero codes at the code
   * width (nibbles / bytes, as the file packs them; the kernel's offset is k = L0 − z, L0 in the descriptor),
   * in one allocation (each part 64-byte aligned), written straight from the QTensor's arrays; the fused kernel
   * (K_U4G / K_U8G) decodes while it multiplies, so no f32 copy of the weight exists.
   */
  private prepUniform(name: string, source: string, P: UniformIntParams, compact: boolean, asym: boolean): WasmPrepared {
    const a64 = (x: number) => Math.ceil(x / 64) * 64;
    const nG = P.rows * P.perRow;
    const sb = nG * (compact ? 2 : 4), kb = uniformZeroBytes(asym, P.bits, nG);
    if (asym && !P.zeros) throw new QuantlabError("E_INTERNAL", `${name}: asym spec without zero points`);
    const cb = P.codes.byteLength;
    const total = a64(cb) + a64(sb) + kb;
    // codes the loader read into this region (placeQuant) stay where they are
    const placed = this.placedRegion(P.codes, "uniform-int", total);
    const { shard, off } = placed ?? this.memory.allocWeight(total, name);
    const w0 = off, w1 = off + a64(cb), w2 = w1 + a64(sb);
    const buf = shard.arena.memory.buffer;
    if (!placed) new Uint8Array(buf, w0, cb).set(P.codes);
    if (compact) {
      const s16 = new Uint16Array(buf, w1, nG);
      for (let i = 0; i < nG; i++) {
        const gi = P.stored(i), s = P.scales![gi]!, h = P.scaleF16 ? P.scaleF16[gi]! : f32ToF16Bits(s);
        if (!Object.is(f16BitsToF32(h), s)) throw new QuantlabError("E_INTERNAL", `${name}: group ${i}: scale ${s} is not an f16 value`);
        s16[i] = h;
      }
    } else {
      const f = new Float32Array(buf, w1, nG);
      for (let i = 0; i < nG; i++) f[i] = P.scales ? P.scales[P.stored(i)]! : 1;
    }
    if (asym) {
      const z8 = new Uint8Array(buf, w2, kb), zs = P.zeros!;
      if (P.bits === 8) for (let i = 0; i < nG; i++) z8[i] = zs[P.stored(i)]!;
      else {
        z8.fill(0);
        for (let i = 0; i < nG; i++) z8[i >> 1]! |= zs[P.stored(i)]! << ((i & 1) << 2);
      }
    }
    const kind = P.bits === 4 ? K_U4G : K_U8G;
    // D_BITS flags (assembly/abi.ts): bit 0 f16 scales, bit 1 zero codes; D_LUT carries L0
    const p = new WasmPrepared(P.rows, P.cols, cb + sb + kb, kind, w0, w1, asym ? w2 : 0, this, shard.index, placed ? undefined : off, P.group, P.l0 >>> 0, (compact ? 1 : 0) | (asym ? 2 : 0));
    this.record(name, source, p, undefined, placed !== undefined);
    this.listed.get(p)!.kernel = uniformIntKernelName(P);
    return p;
  }

  /**
   * A packed lookup-table spec (kernels/packed.ts family "lut"): the QTensor's codes as they are (+16 bytes
   * of padding: the kernels read 8 bytes per 16 codes and 2 bytes per scalar code), the scales — as their f32
   * exponent bytes when `e8` (e8m0 specs, every scale a normal power of two or 0: exact), else f32 —, f32 zeros
   * (affine only) and the f64 level table, in one allocation, each part 64-byte aligned, written straight from
   * the QTensor's arrays.
   */
  private prepLut(name: string, source: string, P: LutParams, e8Candidate: boolean): WasmPrepared {
    const a64 = (x: number) => Math.ceil(x / 64) * 64;
    const nG = P.rows * P.perRow;
    const scaleAt = (i: number) => (P.scales ? P.scales[P.stored(i)]! : 1);
    let e8 = e8Candidate;
    for (let i = 0; e8 && i < nG; i++) {
      const v = f32Bits(scaleAt(i));
      if ((v & 0x807fffff) !== 0 || v >>> 23 === 255) e8 = false;
    }
    const cb = P.codes.byteLength, sb = nG * (e8 ? 1 : 4), zb = P.zeros ? 4 * nG : 0, tb = P.table.byteLength;
    const total = a64(cb + 16) + a64(sb) + a64(zb) + tb;
    const placed = this.placedRegion(P.codes, "lut", total);
    const { shard, off } = placed ?? this.memory.allocWeight(total, name);
    const w0 = off, w1 = off + a64(cb + 16), w2 = w1 + a64(sb), lut = w2 + a64(zb);
    const buf = shard.arena.memory.buffer;
    if (placed) new Uint8Array(buf, w0 + cb, a64(cb + 16) - cb).fill(0); // the padding after codes read in place
    else new Uint8Array(buf, w0, a64(cb + 16)).fill(0).set(P.codes);
    if (e8) {
      const d = new Uint8Array(buf, w1, nG);
      for (let i = 0; i < nG; i++) d[i] = f32Bits(scaleAt(i)) >>> 23;
    } else {
      const d = new Float32Array(buf, w1, nG);
      for (let i = 0; i < nG; i++) d[i] = scaleAt(i);
    }
    if (P.zeros) {
      const d = new Float32Array(buf, w2, nG);
      for (let i = 0; i < nG; i++) {
        const z = P.zeros[P.stored(i)]!;
        d[i] = z;
        if (d[i] !== z) throw new QuantlabError("E_INTERNAL", `${name}: group ${i}: zero ${z} is not an f32`);
      }
    }
    new Float64Array(buf, lut, P.table.length).set(P.table);
    const kind = P.bits === 4 ? K_LUT4G : P.bits === 3 ? K_LUT3G : P.bits === 2 ? K_LUT2G : P.bits === 1 ? K_LUT1G : K_LUTWG;
    // D_BITS: bits per code, bit 8 = scales as exponent bytes (assembly/abi.ts)
    const p = new WasmPrepared(P.rows, P.cols, cb + sb + zb + tb, kind, w0, w1, P.zeros ? w2 : 0, this, shard.index, placed ? undefined : off, P.group, lut, P.bits | (e8 ? 256 : 0));
    this.record(name, source, p, undefined, placed !== undefined);
    this.listed.get(p)!.kernel = lutKernelName(P);
    return p;
  }

  /**
   * `packedActivations: "q8"`: a uniform-int layout with 32-multiple groups repacked onto the SoA integer
   * kernels (layouts.ts kinds) — 4-bit: nibbles in this build's order, w = s·q − m with m = fround(−k·s)
   * (K_N4A32); 8-bit: int8 codes q − 128, w = s·(q − 128) for symmetric codes (K_I8S32, k = −128), else
   * s·(q − 128) − m with m = fround(−(k + 128)·s) (K_I8A32). One f32 scale (and min) per 32 (a larger
   * group's repeated), so an 8-bit spec takes 1 + 8/32 bytes per weight (+ 4/32 affine).
   */
  private prepUniformQ8(name: string, source: string, L: UniformIntLayout): WasmPrepared {
    if (L.bits === 4 && L.rows % 4 === 0) {
      // int4 as the table u[c] = c on the 4-row interleaved lut4 kernel (one stream per 4 rows, as Q4_0's)
      // scales as f16 when in range, integer zero points as i8 subtracted in the integer dot (kernels/packed.ts
      // uniformQ8Layout): at g32 0.59 B/weight (0.66 with f32 scales) instead of 0.75 with f32 scales and mins
      const U = uniformQ8Layout(L);
      if (!("reason" in U)) return this.prepNib4X4(name, source, U.q8, U.f16);
    }
    if (L.bits === 8 && L.rows % 4 === 0) {
      // int8 as int8 codes t = c − 128, 4 rows interleaved (K_I8Q8X4), zero codes in the integer dot: 1 B/weight + scales
      const U = uniformQ8Layout(L);
      if (!("reason" in U)) return this.prepLutQ8(name, source, U.q8, { f16: false });
    }
    const { rows, cols, bits, group, codes } = L;
    const n = rows * cols, nb = n / 32, perRow = Math.ceil(cols / group);
    const sym8 = bits === 8 && L.offsets.every((k) => k === -128);
    const affine = !sym8;
    const kind = bits === 4 ? K_N4A32 : sym8 ? K_I8S32 : K_I8A32;
    const codeBytes = bits === 4 ? nb * 16 : n;
    const a64 = (x: number) => Math.ceil(x / 64) * 64;
    const { shard, off } = this.memory.allocWeight(a64(codeBytes) + a64(nb * 4) + (affine ? nb * 4 : 0), name);
    const w0 = off, w1 = off + a64(codeBytes), w2 = affine ? w1 + a64(nb * 4) : 0;
    const buf = shard.arena.memory.buffer;
    const dc = new Uint8Array(buf, w0, codeBytes), ds = new Float32Array(buf, w1, nb), dm = affine ? new Float32Array(buf, w2, nb) : undefined;
    const q32 = new Uint8Array(32);
    for (let b = 0; b < nb; b++) {
      const r = Math.floor((b * 32) / cols), j = Math.floor(((b * 32) % cols) / group);
      const gi = r * perRow + j;
      const sc = L.scales[gi]!, k = L.offsets[gi]!;
      ds[b] = sc;
      if (bits === 4) {
        for (let i = 0; i < 16; i++) { const v = codes[b * 16 + i]!; q32[2 * i] = v & 15; q32[2 * i + 1] = v >> 4; }
        packNibbles32(q32, dc, b * 16, this.nibbleOrder);
        dm![b] = Math.fround(-k * sc);
      } else {
        for (let i = 0; i < 32; i++) dc[b * 32 + i] = (codes[b * 32 + i]! - 128) & 0xff;
        if (dm) dm[b] = Math.fround(-(k + 128) * sc);
      }
    }
    const p = new WasmPrepared(rows, cols, codeBytes + nb * 4 * (affine ? 2 : 1), kind, w0, w1, w2, this, shard.index, off);
    this.record(name, source, p);
    this.listed.get(p)!.kernel = `${KERNEL_NAMES[kind]} (packed spec, Q8 activations)`;
    return p;
  }

  /**
   * `packedActivations: "q8"`, uniform int4 with rows % 4 = 0 and 32-multiple groups (kernels/packed.ts uniformQ8Layout:
   * the nibble table u = c, integer zero codes or one offset): 4 rows byte-interleaved in one stream per row group, each
   * group's 4 scales (f16 bits when every scale is an f16 normal or 0, else f32) and 4 zero codes after its blocks
   * (abi.ts K_NIB4Q8X4B*, assembly/nib4.ts): as nibbles when every zero code is in 0…15 (int4 asym: z in [0, 15]),
   * else as int8 (K_NIB4Q8X4B / BF, named "i8 zeros" in the listing). At g32 with f16 scales: 74 bytes per 4 rows × 32
   * weights (0.578 B/weight; int8 zeros 76; Q4_0X4 72).
   */
  private prepNib4X4(name: string, source: string, Q: LutQ8Layout, f16: boolean): WasmPrepared {
    const { rows, cols, group, codes, zeroCodes } = Q;
    const zc = zeroCodes !== undefined;
    const z4 = zc && zeroCodes.every((z) => z >= 0 && z <= 15);
    // the kernel reads the nibbles as the integer weights: t[c] = c − offset (zero codes: offset 0)
    for (let c = 0; c < 16; c++) if (Q.kind !== "lut4" || Q.table![c]! + Q.tableOffset !== c || (zc && Q.tableOffset !== 0) || rows % 4 !== 0) throw new QuantlabError("E_INTERNAL", `${name}: the int4 x4 layout needs the nibble table`);
    const nb = cols / 32, gb = group / 32, nG = Math.ceil(nb / gb);
    const so = f16 ? 8 : 16;
    const sb = so + (zc ? (z4 ? 2 : 4) : 0);
    const rgBytes = nb * 64 + nG * sb;
    // int8 zero codes are read 8 bytes at a time: 16 bytes of padding (the nibble and symmetric kinds read within their bytes)
    const pad = zc && !z4 ? 16 : 0;
    const total = (rows / 4) * rgBytes + pad;
    const { shard, off } = this.memory.allocWeight(total, name);
    const buf = shard.arena.memory.buffer;
    const dst = new Uint8Array(buf, off, total);
    const dv = new DataView(buf, off, total);
    dst.fill(0, total - pad);
    for (let g = 0; g < rows / 4; g++) {
      let p = g * rgBytes;
      for (let j = 0; j < nG; j++) {
        const b1 = Math.min(nb, (j + 1) * gb);
        for (let b = j * gb; b < b1; b++, p += 64) {
          // 4-byte piece i of row 4g+k's block at 16·i + 4·k
          for (let k = 0; k < 4; k++) {
            const src = ((4 * g + k) * nb + b) * 16;
            for (let i = 0; i < 4; i++) dst.set(codes.subarray(src + 4 * i, src + 4 * i + 4), p + 16 * i + 4 * k);
          }
        }
        let zn = 0;
        for (let k = 0; k < 4; k++) {
          const gi = (4 * g + k) * nG + j;
          if (f16) dv.setUint16(p + 2 * k, f32ToF16Bits(Q.scales[gi]!), true);
          else dv.setFloat32(p + 4 * k, Q.scales[gi]!, true);
          // nibbles: row k at bits 4k…4k+3 of the u16 after the scales
          if (z4) zn |= zeroCodes[gi]! << (4 * k);
          else if (zc) dv.setInt8(p + so + k, zeroCodes[gi]!);
        }
        if (z4) dv.setUint16(p + so, zn, true);
        p += sb;
      }
    }
    const kind = z4 ? (f16 ? K_NIB4Q8X4BZ : K_NIB4Q8X4BZF) : zc ? (f16 ? K_NIB4Q8X4B : K_NIB4Q8X4BF) : f16 ? K_NIB4Q8X4BS : K_NIB4Q8X4BSF;
    const p = new WasmPrepared(rows, cols, total - pad, kind, off, 0, 0, this, shard.index, off, group, 0, zc ? 0 : Q.tableOffset);
    this.record(name, source, p);
    const grp = group === cols ? "row" : `g${group}`;
    this.listed.get(p)!.kernel = `${KERNEL_NAMES[kind]!.replace("·group", `·${grp}`)} (packed spec, Q8 activations)`;
    return p;
  }

  /**
   * `packedActivations: "q8"`: a lut layout in its integer form (kernels/packed.ts lutQ8Layout), Q8 activations;
   * codes, scales, mins (or int8 zero codes) and the table's 64 bytes of planes in one allocation, each part 64-byte
   * aligned. rows % 4 = 0: 4 rows interleaved (abi.ts K_*Q8X4: the unsigned table's swizzle planes, ternary as
   * u = w + 1 planes); other rows: K_LUT4Q8 (int16 byte planes) / K_TERN2Q8 (sign/zero masks). Layouts without an
   * integer form keep the f32 kernel.
   */
  private prepLutQ8(name: string, source: string, Q: LutQ8Layout, compact?: { f16: boolean }): WasmPrepared {
    const a64 = (x: number) => Math.ceil(x / 64) * 64;
    if (compact && (Q.kind !== "i8x4" || Q.rows % 4 !== 0)) throw new QuantlabError("E_INTERNAL", `${name}: compact parameters are the int8 x4 form's`);
    // compact (K_I8Q8X4, uniform int8): the zero codes as i8 (uniform int4 runs prepNib4X4)
    // e8: a 6-bit table whose scales are all powers of two (or 0; mxfp4) keeps each as its f32 exponent byte
    const e8 = !compact && Q.kind === "lut4" && Q.rows % 4 === 0 && Q.tableBits === 6 && !Q.mins && Q.scales.every((v) => (f32Bits(v) & 0x807fffff) === 0 && f32Bits(v) >>> 23 !== 255);
    const cb = Q.codes.byteLength, sb = Q.scales.length * (compact?.f16 ? 2 : e8 ? 1 : 4), mb = compact ? (Q.zeroCodes?.length ?? 0) : Q.mins?.byteLength ?? 0;
    const { shard, off } = this.memory.allocWeight(a64(cb) + a64(sb) + a64(mb) + 64, name);
    const w0 = off, w1 = off + a64(cb), w2 = w1 + a64(sb), lut = w2 + a64(mb);
    const buf = shard.arena.memory.buffer;
    // lut4 with rows % 4 = 0: 4 rows interleaved (abi.ts K_*Q8X4): block b of row 4g+k at (g·nb + b)·64 + k·16,
    // scales and mins as 4 f32 per (row group, group), lane k = row 4g+k
    // tern2x4: u = w + 1 as 2-bit codes, 8 bytes per row and block (abi.ts K_TERN2Q8X4), 4 rows per 32 bytes
    // tern2x4k: the same codes, run against Q8_K activations (K_TERN2Q8KX4)
    const tern4 = Q.kind === "tern2x4" || Q.kind === "tern2x4k";
    const x4 = (Q.kind === "lut4" && Q.rows % 4 === 0) || tern4 || Q.kind === "i8x4";
    const bpb = Q.kind === "i8x4" ? 32 : 16; // code bytes per row and 32-block (lut4, i8x4)
    if (x4) {
      const nb = Q.cols / 32, nG = Q.scales.length / Q.rows;
      const dc = new Uint8Array(buf, w0, cb);
      if (tern4) dc.fill(0);
      for (let g = 0; g < Q.rows / 4; g++) {
        for (let k = 0; k < 4; k++) {
          const r = 4 * g + k;
          if (Q.kind === "tern2x4k") {
            // element-major (abi.ts K_TERN2Q8KX4): byte e of row group g holds u = w + 1 of element e of row 4g+k at bits 2k
            const U = [1, 2, 0, 0];
            for (let e = 0, i = r * Q.cols; e < Q.cols; e++, i++) dc[g * Q.cols + e]! |= U[(Q.codes[i >> 2]! >> ((i & 3) << 1)) & 3]! << (2 * k);
            continue;
          }
          if (tern4) {
            // the QTensor's codes (0 → 0, 1 → +1, 3 → −1; 4 per byte, LSB first; rows start on a byte) → u = w + 1
            const U = [1, 2, 0, 0];
            for (let e = 0, i = r * Q.cols; e < Q.cols; e++, i++) {
              const u = U[(Q.codes[i >> 2]! >> ((i & 3) << 1)) & 3]!, j = e & 31;
              dc[(g * nb + (e >> 5)) * 32 + k * 8 + (j & 7)]! |= u << ((j >> 3) << 1);
            }
            continue;
          }
          const src8 = r * nb * bpb;
          for (let b = 0; b < nb; b++) dc.set(Q.codes.subarray(src8 + b * bpb, src8 + b * bpb + bpb), (g * nb + b) * 4 * bpb + k * bpb);
        }
      }
      const il = (v: Float32Array, at: number) => {
        const d = new Float32Array(buf, at, v.length);
        for (let g = 0; g < Q.rows / 4; g++) for (let j = 0; j < nG; j++) for (let k = 0; k < 4; k++) d[(g * nG + j) * 4 + k] = v[(4 * g + k) * nG + j]!;
      };
      if (e8) {
        const d = new Uint8Array(buf, w1, Q.scales.length);
        for (let g = 0; g < Q.rows / 4; g++) for (let j = 0; j < nG; j++) for (let k = 0; k < 4; k++) d[(g * nG + j) * 4 + k] = f32Bits(Q.scales[(4 * g + k) * nG + j]!) >>> 23;
      } else if (compact) {
        const s16 = compact.f16 ? new Uint16Array(buf, w1, Q.scales.length) : undefined, z8 = new Int8Array(buf, w2, mb);
        if (!s16) il(Q.scales, w1);
        for (let g = 0; g < Q.rows / 4; g++) for (let j = 0; j < nG; j++) for (let k = 0; k < 4; k++) {
          if (s16) s16[(g * nG + j) * 4 + k] = f32ToF16Bits(Q.scales[(4 * g + k) * nG + j]!);
          if (Q.zeroCodes) z8[(g * nG + j) * 4 + k] = Q.zeroCodes[(4 * g + k) * nG + j]!;
        }
      } else {
        il(Q.scales, w1);
        if (Q.mins) il(Q.mins, w2);
      }
    } else {
      new Uint8Array(buf, w0, cb).set(Q.codes);
      new Float32Array(buf, w1, Q.scales.length).set(Q.scales);
      if (Q.mins) new Float32Array(buf, w2, Q.mins.length).set(Q.mins);
    }
    if (Q.table) {
      const t = new Uint8Array(buf, lut, 64);
      for (let c = 0; c < 16; c++) {
        const v = Q.table[c]!, u = v + Q.tableOffset;
        // x4 planes: u (6-bit table), or u & 63 / u >> 6 (12-bit, relaxed build) and the low / high bytes of u (SIMD128);
        // K_LUT4Q8 planes: low / high bytes of t (SIMD128 build), t & 127 / (t >> 7) + 64 (relaxed build)
        if (x4) { t[c] = Q.tableBits === 12 ? u & 63 : u; t[16 + c] = u >> 6; t[32 + c] = u & 0xff; t[48 + c] = u >> 8; }
        else { t[c] = v & 0xff; t[16 + c] = (v >> 8) & 0xff; t[32 + c] = v & 127; t[48 + c] = (v >> 7) + 64; }
      }
    }
    const kind = Q.kind === "i8x4" ? K_I8Q8X4 : e8 ? K_LUT4Q8X4E : Q.kind === "tern2" ? K_TERN2Q8 : Q.kind === "tern2x4" ? K_TERN2Q8X4 : Q.kind === "tern2x4k" ? K_TERN2Q8KX4 : !x4 ? K_LUT4Q8 : Q.tableBits === 4 ? K_NIB4Q8X4 : Q.tableBits === 6 ? K_LUT4Q8X4 : Q.tableBits === 7 ? K_LUT7Q8X4 : K_LUT12Q8X4;
    const p = new WasmPrepared(Q.rows, Q.cols, compact || e8 ? cb + sb + mb : lutQ8Bytes(Q), kind, w0, w1, Q.mins || Q.zeroCodes ? w2 : 0, this, shard.index, off, Q.group, lut, tern4 ? 1 : x4 ? Q.tableOffset : 0);
    this.record(name, source, p);
    const grp = Q.group === Q.cols ? "row" : `g${Q.group}`;
    this.listed.get(p)!.kernel = `${KERNEL_NAMES[kind]!.replace("·group", `·${grp}`)} (packed spec, Q8 activations)`;
    return p;
  }

  /**
   * A weight with no WASM kernel, kept in its stored form and run through its row decoder (kernels/rowdec.ts;
   * dispatch.ts runDecoded): chunks of rows are decoded into one f32 scratch per backend and run on the f32
   * kernel. A QTensor's arrays stay where they are (the decoder holds them; nothing is copied), so the
   * listing's bytes are the stored bytes.
   */
  private prepRowDec(name: string, source: string, D: RowDecoded, reason: string, alloc?: { shard: number; off: number; inPlace: boolean }): WasmPrepared {
    const p = new RowDecPrepared(D.rows, D.cols, D.storedBytes, this, alloc?.shard ?? 0, alloc && !alloc.inPlace ? alloc.off : undefined, D.decode);
    this.record(name, source, p, undefined, alloc?.inPlace ?? false);
    const row = this.listed.get(p)!;
    row.kernel = rowDecKernelName();
    row.rowdec = reason;
    return p;
  }

  /** ggml blocks of a type with no WASM kernel (e.g. Q8_1, Q8_K): the bytes in wasm memory (in place when a
   * loader put them there), decoded by rows through ggml's codecs. */
  private prepGgmlRowDec(name: string, source: string, type: GgmlType, shape: readonly number[], bytes: Uint8Array): WasmPrepared {
    // a type quantlab cannot decode fails here, before any memory is taken
    if (!hasGgmlCodec(type)) throw new QuantlabError("E_UNSUPPORTED", `${name}: ggml type ${ggmlTypeName(type)} has no decoder in quantlab`);
    const { blockSize, bytesPerBlock } = GGML_TYPES[type];
    let n = 1;
    for (const d of shape) n *= d;
    if (n % blockSize !== 0 || bytes.length !== (n / blockSize) * bytesPerBlock) {
      throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(type)} [${shape.join(", ")}] needs ${Math.ceil(n / blockSize) * bytesPerBlock} bytes, got ${bytes.length}`);
    }
    let at = this.memory.locate(bytes);
    const inPlace = at !== undefined;
    if (!at) {
      at = this.memory.allocWeight(bytes.length, name);
      at.shard.arena.u8.set(bytes, at.off);
    }
    const sh = at.shard, off = at.off, len = bytes.length;
    const D = ggmlRowDecoder(type, shape, () => new Uint8Array(sh.arena.memory.buffer, off, len), name);
    return this.prepRowDec(name, source, D, `no WASM kernel for ${ggmlTypeName(type)}`, { shard: sh.index, off, inPlace });
  }

  private prepDense(name: string, source: string, rows: number, cols: number, data: Float32Array, fallback?: string): WasmPrepared {
    const at = this.memory.locate(data);
    if (at && at.off % 4 === 0) return this.record(name, source, new WasmPrepared(rows, cols, data.length * 4, K_F32, at.off, 0, 0, this, at.shard.index, undefined), fallback, true);
    const { shard, off } = this.memory.allocWeight(data.length * 4, name);
    shard.arena.f32.set(data, off >>> 2);
    return this.record(name, source, new WasmPrepared(rows, cols, data.length * 4, K_F32, off, 0, 0, this, shard.index, off), fallback);
  }

  private prepF16(name: string, source: string, rows: number, cols: number, data: Uint16Array): WasmPrepared {
    let at = this.memory.locate(data);
    let alloc: number | undefined;
    if (!at || at.off % 2 !== 0) {
      at = this.memory.allocWeight(data.length * 2, name);
      alloc = at.off;
      new Uint16Array(at.shard.arena.memory.buffer, at.off, data.length).set(data);
    }
    // the f16 kernel converts with integer ops that do not produce Inf/NaN: such matrices run as f32
    if (at.shard.kernels.f16_count_special(at.off, data.length) !== 0) {
      const f = new Float32Array(data.length);
      for (let j = 0; j < data.length; j++) f[j] = this.kernels.f16_to_f32(data[j]!);
      if (alloc !== undefined) at.shard.arena.free(alloc); // the f16 copy is not used
      return this.prepDense(name, source, rows, cols, f, "f16 matrix holds Inf/NaN: converted to f32");
    }
    return this.record(name, source, new WasmPrepared(rows, cols, data.length * 2, K_F16, at.off, 0, 0, this, at.shard.index, alloc), undefined, alloc === undefined);
  }

  private record(name: string, source: string, p: WasmPrepared, fallback?: string, inPlace = false): WasmPrepared {
    const row: WasmListingRow = { name, source, kernel: KERNEL_NAMES[p.kind]!, rows: p.rows, cols: p.cols, bytes: p.bytes, shard: p.shard, inPlace, fallback };
    this.rowsListing.push(row);
    this.listed.set(p, row);
    return p;
  }

  /**
   * Gives a prepared weight's memory back (its region is reused by later `prepare`s) and drops its
   * listing row; the weight must not be used again. Weights that run in place where a loader put them
   * (placeTensor) keep their bytes: the loader's weight still points at them.
   */
  release(w: PreparedWeight): void {
    const p = w as WasmPrepared;
    if (!(p instanceof WasmPrepared) || p.owner !== this) throw new QuantlabError("E_ARG", "wasm backend: release of a weight this backend did not prepare");
    if (!p.live) throw new QuantlabError("E_ARG", "wasm backend: weight released twice");
    p.live = false;
    if (p.alloc !== undefined) {
      this.memory.free(p.shard, p.alloc);
      // a later weight at the same offset is new bytes: not interleaved yet
      this.interleaved.delete(`${p.shard}:${p.alloc}`);
    }
    const row = this.listed.get(p);
    this.listed.delete(p);
    if (row) this.rowsListing.splice(this.rowsListing.indexOf(row), 1);
  }

  /**
   * Rows of a prepared weight decoded one at a time from the bytes the kernels read (a tied embedding
   * table is then held once, as the output matrix): f32 and f16 matrices, the packed spec kinds (the
   * fake-quant values, as kernels/packed.ts dequantizeRow* gives them) and ggml blocks interleaved in
   * place. Undefined for the SoA repacks (their f32 scale products are not the file's values).
   */
  rowReader(w: PreparedWeight): RowReader | undefined {
    const p = w as WasmPrepared;
    if (!(p instanceof WasmPrepared) || p.owner !== this) return undefined;
    const { rows, cols } = p;
    const check = (r: number) => {
      if (!p.live) throw new QuantlabError("E_ARG", "wasm backend: rows of a released weight");
      if (!Number.isInteger(r) || r < 0 || r >= rows) throw new QuantlabError("E_ARG", `row ${r} is outside 0..${rows - 1}`);
    };
    const buf = () => this.memory.shards[p.shard]!.arena.memory.buffer;
    if (p instanceof RowDecPrepared) return (r, dst, off) => { check(r); p.decode(r, r + 1, dst, off); };
    if (p.kind === K_F32) return (r, dst, off) => { check(r); dst.set(new Float32Array(buf(), p.w0 + r * cols * 4, cols), off); };
    if (p.kind === K_F16) return (r, dst, off) => { check(r); f16ArrayToF32(new Uint16Array(buf(), p.w0 + r * cols * 2, cols), dst.subarray(off, off + cols)); };
    if (p.kind === K_U4G || p.kind === K_U8G) {
      // one row as a 1-row layout (rows start on a byte: kernels/packed.ts uniformIntReason), its parameters as f32
      const bits = p.kind === K_U4G ? 4 : 8, nG = Math.ceil(cols / p.group), rowBytes = (cols * bits) / 8;
      const scales = new Float32Array(nG), offsets = new Float32Array(nG);
      const l0 = p.lut | 0;
      return (r, dst, off) => {
        check(r);
        const b = buf();
        // flags as the kernel reads them (assembly/abi.ts D_BITS): bit 0 f16 scales, bit 1 zero codes (k = L0 − z), L0 at D_LUT
        if (p.bits & 1) { const s16 = new Uint16Array(b, p.w1 + r * nG * 2, nG); for (let j = 0; j < nG; j++) scales[j] = f16BitsToF32(s16[j]!); }
        else scales.set(new Float32Array(b, p.w1 + r * nG * 4, nG));
        if (p.bits & 2) {
          const z8 = new Uint8Array(b, p.w2);
          for (let j = 0, gi = r * nG; j < nG; j++, gi++) offsets[j] = l0 - (bits === 8 ? z8[gi]! : (z8[gi >> 1]! >> ((gi & 1) << 2)) & 15);
        } else offsets.fill(l0);
        const L: UniformIntLayout = { family: "uniform-int", bits, rows: 1, cols, group: p.group, codes: new Uint8Array(b, p.w0 + r * rowBytes, rowBytes), scales, offsets };
        dequantizeRowUniformInt(L, 0, dst, off);
      };
    }
    if (LUT_KINDS.has(p.kind)) {
      const nG = Math.ceil(cols / p.group), bits = p.bits & 255, e8 = (p.bits & 256) !== 0;
      // e8 scales (rows start on a byte: lutE8Candidate): one row as a 1-row layout, its scales widened to f32
      const rowScales = e8 ? new Float32Array(nG) : undefined, rowBits = new Uint32Array(rowScales?.buffer ?? new ArrayBuffer(0));
      return (r, dst, off) => {
        check(r);
        const b = buf();
        const table = new Float64Array(b, p.lut, lutTableLength(bits));
        const zeros = p.w2 ? new Float32Array(b, p.w2, rows * nG) : undefined;
        if (rowScales) {
          const e = new Uint8Array(b, p.w1 + r * nG, nG);
          for (let j = 0; j < nG; j++) rowBits[j] = e[j]! << 23;
          const rowBytes = (cols * bits) / 8;
          const L: LutLayout = {
            family: "lut", bits, rows: 1, cols, group: p.group, codes: new Uint8Array(b, p.w0 + r * rowBytes, rowBytes + 1),
            table, scales: rowScales, zeros: zeros?.subarray(r * nG, (r + 1) * nG),
          };
          dequantizeRowLut(L, 0, dst, off);
          return;
        }
        const L: LutLayout = {
          family: "lut", bits, rows, cols, group: p.group,
          codes: new Uint8Array(b, p.w0, Math.ceil((rows * cols * bits) / 8)),
          table, scales: new Float32Array(b, p.w1, rows * nG), zeros,
        };
        dequantizeRowLut(L, r, dst, off);
      };
    }
    if (!isX4(p.kind)) return undefined;
    const type = NATIVE_TYPE_OF_KIND.get(p.kind)!;
    const { blockSize, bytesPerBlock: bs } = GGML_TYPES[type];
    const nb = p.cols / blockSize;
    const row = new Uint8Array(nb * bs);
    const shape = [1, p.cols];
    return (r, dst, off) => {
      if (!Number.isInteger(r) || r < 0 || r >= p.rows) throw new QuantlabError("E_ARG", `row ${r} is outside 0..${p.rows - 1}`);
      const u8 = this.memory.shards[p.shard]!.arena.u8;
      // group r>>2 holds rows 4g..4g+3; block b of row 4g+k sits at b·4·bs + k·bs
      const base = p.w0 + (r >> 2) * 4 * nb * bs + (r & 3) * bs;
      for (let b = 0; b < nb; b++) row.set(u8.subarray(base + b * 4 * bs, base + b * 4 * bs + bs), b * bs);
      dst.set(dequantizeWeight({ kind: "ggml", type, shape, data: row }).data, off);
    };
  }

  matvec(w: PreparedWeight, x: Float32Array, out: Float32Array): void {
    this.checkOpen();
    this.dispatch.run([{ w, x, out }], 1);
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    this.checkOpen();
    this.dispatch.run([{ w, x, out }], n);
  }

  /** Several matmuls of n tokens in one dispatch (the pool chunks each job's rows as `matmul` does: the same bits). */
  matmulMany(jobs: readonly MatvecJob[], n: number): void {
    this.checkOpen();
    this.dispatch.run(jobs, n);
  }

  /** Several mat-vecs in one dispatch (e.g. Q, K, V, or gate and up); jobs sharing one `x` array (and shard) quantize it once. */
  matvecMany(jobs: readonly MatvecJob[]): void {
    this.checkOpen();
    this.dispatch.run(jobs, 1);
  }

  /**
   * gate[i] ← silu(gate[i])·up[i] for i < n in WASM SIMD on the calling thread (assembly/rows.ts; the
   * vector exp is within 2 ulp, so results are within a few ulp of kernels/ref/rows.ts swigluRef), through
   * a scratch region of shard 0 that is reused from call to call.
   */
  swiglu(gate: Float32Array, up: Float32Array, n: number): void {
    this.checkOpen();
    if (gate.length < n || up.length < n) throw new QuantlabError("E_ARG", `wasm backend: swiglu of ${n} values on arrays of ${gate.length} and ${up.length}`);
    const sh = this.memory.first;
    // arrays in shard 0 (residentF32) run where they are
    const gr = this.resident(gate), ur = this.resident(up);
    if (gr >= 0 && ur >= 0) return sh.kernels.swiglu_f32(gr, ur, n);
    const g = this.rowScratch(2 * n * 4), u = g + n * 4;
    const f = sh.arena.f32;
    f.set(gate.subarray(0, n), g >>> 2);
    f.set(up.subarray(0, n), u >>> 2);
    sh.kernels.swiglu_f32(g, u, n);
    gate.set(sh.arena.f32.subarray(g >>> 2, (g >>> 2) + n));
  }

  /**
   * x ← x + y (when y is given), then out = rmsnorm(x) ⊙ w for n rows of `dim`, in WASM SIMD on the calling
   * thread (assembly/rows.ts; f32 sums, within a few ulp of kernels/ref/rows.ts addRmsnormRef). out may be y.
   */
  addRmsnorm(x: Float32Array, y: Float32Array | undefined, w: Float32Array, out: Float32Array, n: number, dim: number, eps: number): void {
    this.checkOpen();
    const m = n * dim;
    if (x.length < m || out.length < m || (y && y.length < m) || w.length < dim) throw new QuantlabError("E_ARG", `wasm backend: addRmsnorm of ${n}×${dim} on arrays that are too short`);
    const sh = this.memory.first;
    // arrays in shard 0 (residentF32) run where they are (the kernel allows out = y, and out = x)
    const xr = this.resident(x), yr = y ? this.resident(y) : 0, wr = this.resident(w), or = this.resident(out);
    if (xr >= 0 && yr >= 0 && wr >= 0 && or >= 0) return sh.kernels.add_rmsnorm_f32(xr, yr, wr, or, n, dim, eps);
    const xo = this.rowScratch((3 * m + dim) * 4), yo = xo + m * 4, oo = yo + m * 4, wo = oo + m * 4;
    const f = sh.arena.f32;
    f.set(x.subarray(0, m), xo >>> 2);
    if (y) f.set(y.subarray(0, m), yo >>> 2);
    f.set(w.subarray(0, dim), wo >>> 2);
    sh.kernels.add_rmsnorm_f32(xo, y ? yo : 0, wo, oo, n, dim, eps);
    const g = sh.arena.f32;
    if (y) x.set(g.subarray(xo >>> 2, (xo >>> 2) + m));
    out.set(g.subarray(oo >>> 2, (oo >>> 2) + m));
  }

  /**
   * sums[j] += Σ_i x[i, j]² in f64 over n rows of `width` (importance-matrix statistics), in WASM SIMD on the calling
   * thread: the TypeScript loop's operations in its order (assembly/rows.ts sumsq_cols_f64), so the same bits.
   */
  sumSquares(x: Float32Array, n: number, width: number, sums: Float64Array): void {
    this.checkOpen();
    const m = n * width;
    if (x.length < m || sums.length < width) throw new QuantlabError("E_ARG", `wasm backend: sumSquares of ${n}×${width} on arrays that are too short`);
    const so = this.rowScratch(width * 8 + m * 4), xo = so + width * 8;
    const sh = this.memory.first;
    new Float64Array(sh.arena.memory.buffer, so, width).set(sums.subarray(0, width));
    sh.arena.f32.set(x.subarray(0, m), xo >>> 2);
    sh.kernels.sumsq_cols_f64(xo, n, width, so);
    sums.set(new Float64Array(sh.arena.memory.buffer, so, width));
  }

  /**
   * RoPE in WASM (assembly/rows.ts rope_f32, f64 products and sum: model/llama.ts rope / ropeNeox's bits) when x,
   * cos and sin lie in shard 0 (residentF32); false otherwise (the caller rotates in TypeScript: a copy in and out
   * would cost more than the rotation).
   */
  rope(x: Float32Array, off: number, width: number, hd: number, cos: Float32Array, sin: Float32Array, tab: number, rd: number, neox: boolean): boolean {
    const xr = this.resident(x), cr = this.resident(cos), sr = this.resident(sin);
    if (xr < 0 || cr < 0 || sr < 0) return false;
    this.checkOpen();
    if (hd % 2 !== 0 || rd % 2 !== 0 || rd > hd || width % hd !== 0 || off + width > x.length || tab + rd / 2 > Math.min(cos.length, sin.length)) {
      throw new QuantlabError("E_ARG", `wasm backend: rope of ${width} values from ${off} (heads of ${hd}, ${rd} rotated) on arrays that do not fit`);
    }
    this.memory.first.kernels.rope_f32(xr + off * 4, width, hd, cr + tab * 4, sr + tab * 4, rd, neox ? 1 : 0);
    return true;
  }

  /** Byte offset of an array that lies in shard 0's memory (made by `residentF32`, or a view of one), else −1. */
  private resident(a: Float32Array): number {
    return this.memory.first.arena.owns(a.buffer) ? a.byteOffset : -1;
  }

  /** regions `residentF32` handed out, by their arrays */
  private readonly residents = new Map<Float32Array, number>();

  /**
   * A zeroed f32 array in shard 0 (64-byte aligned) for a caller's activations: `matvec`/`matmul` and the
   * `…Many` forms read x from it and write out into it in place when the weight lives in shard 0 too, as do
   * `addRmsnorm`, `swiglu` and the KV cache's `attend` (no copies in or out). The view stays valid when the memory
   * grows (a shared memory's old buffers keep aliasing it).
   */
  residentF32(n: number, what = "activations"): Float32Array {
    this.checkOpen();
    if (!Number.isInteger(n) || n < 1) throw new QuantlabError("E_ARG", `wasm backend: resident array of ${n} elements`);
    const a = this.memory.first.arena;
    const off = a.alloc(n * 4, 64, what);
    const v = new Float32Array(a.f32.buffer, off, n);
    v.fill(0);
    this.residents.set(v, off);
    return v;
  }

  /** Gives back an array `residentF32` made. */
  freeResident(v: Float32Array): void {
    const off = this.residents.get(v);
    if (off === undefined) throw new QuantlabError("E_ARG", "wasm backend: freeResident of an array residentF32 did not make (or freed twice)");
    this.residents.delete(v);
    if (!this.disposed) this.memory.first.arena.free(off);
  }

  private rows: { off: number; bytes: number } | undefined;

  /** A scratch region of at least `bytes` in shard 0 for the row kernels (grown, never shrunk). */
  private rowScratch(bytes: number): number {
    if (!this.rows || this.rows.bytes < bytes) {
      const a = this.memory.first.arena;
      if (this.rows) a.free(this.rows.off);
      const size = Math.max(bytes, 2 * (this.rows?.bytes ?? 0), 65536);
      this.rows = { off: a.alloc(size, 64, "row kernel scratch"), bytes: size };
    }
    return this.rows.off;
  }

  /**
   * An f32 KV cache in wasm memory whose `attend` runs a chunk's causal attention in SIMD, split across
   * the pool (kv-cache.ts); undefined when no memory of this backend can hold it (the forward pass then
   * keeps the TypeScript cache). `dispose()` the cache (Llama.dispose does) to give its memory back.
   */
  kvCache(nLayers: number, capacity: number, nKvHeads: number, headDim: number): KvCache | undefined {
    this.checkOpen();
    const host = {
      memory: this.memory,
      pool: this.pool,
      minParallelBytes: () => this.dispatch.minParallelBytes,
      checkOpen: () => this.checkOpen(),
    };
    return WasmKvCache.create(host, nLayers, capacity, nKvHeads, headDim, this.threads);
  }

  /**
   * An int8 matrix in shard 0 for integer-only linears: `dots` runs assembly/intmm.ts (exact int32 sums of
   * int8 products, SIMD) on the calling thread. Equal to int8RowsRef by construction (integer arithmetic);
   * test/kernels/wasm/int8-rows.test.ts checks it.
   */
  int8Rows(w: Int8Array, rows: number, cols: number, name: string): Int8Rows {
    this.checkOpen();
    if (w.length !== rows * cols) throw new QuantlabError("E_INTERNAL", `${name}: ${w.length} int8 codes for ${rows}×${cols}`);
    const sh = this.memory.first;
    const a = sh.arena;
    const wOff = a.alloc(rows * cols, 64, `${name} int8 codes`);
    const xOff = a.alloc(cols, 64, `${name} int8 input`);
    const accOff = a.alloc(rows * 4, 64, `${name} int32 sums`);
    new Int8Array(a.memory.buffer, wOff, rows * cols).set(w);
    const row: WasmListingRow = { name, source: "quant intmm (int8 codes)", kernel: "i8 rows (assembly/intmm.ts)", rows, cols, bytes: rows * cols, shard: sh.index, inPlace: false };
    this.rowsListing.push(row);
    let live = true;
    return {
      rows, cols,
      dots: (x: Int8Array, acc: Int32Array) => {
        if (!live) throw new QuantlabError("E_INTERNAL", `${name}: int8 rows used after release`);
        this.checkOpen();
        new Int8Array(a.memory.buffer, xOff, cols).set(x.subarray(0, cols));
        sh.kernels.i8_rows_dot(wOff, xOff, cols, accOff, 0, rows);
        acc.set(new Int32Array(a.memory.buffer, accOff, rows));
      },
      release: () => {
        if (!live || this.disposed) return;
        live = false;
        a.free(accOff); a.free(xOff); a.free(wOff);
        this.rowsListing.splice(this.rowsListing.indexOf(row), 1);
      },
    };
  }

  /**
   * f32 → ggml block bytes (Q8_0 or Q4_0), bit-identical to llama.cpp's quantize_row_*_ref, in WASM
   * SIMD on the calling thread. `src.length` must be a multiple of 32; `dst` holds src.length/32 blocks.
   * Streams through a scratch buffer in wasm memory. (Whole tensors of any type: `ggmlEncoder()`.)
   */
  quantizeGgml(type: GgmlType.Q8_0 | GgmlType.Q4_0, src: Float32Array, dst: Uint8Array): void {
    this.flat.quantize(type, src, dst);
  }

  /**
   * f16 (binary16 bits, e.g. an F16 GGUF tensor) → Q8_0 / Q4_0 block bytes, as `quantizeGgml` on the f32
   * values: the f16 → f32 conversion runs in WASM on a reused scratch buffer, so no f32 copy of the tensor
   * is ever made. Values must be finite (an Inf/NaN f16 input throws E_VALUE).
   */
  quantizeGgmlF16(type: GgmlType.Q8_0 | GgmlType.Q4_0, src: Uint16Array, dst: Uint8Array): void {
    this.flat.quantizeF16(type, src, dst);
  }

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
