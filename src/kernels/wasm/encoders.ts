/**
 * The WASM backend's block encoders.
 *
 * - `WasmGgmlEncoder` (a `GgmlEncoder`, ggml/encoder.ts): any ggml codec type, with or without an
 *   importance matrix and refine, f32 or f16 input, as the pool task T_GGML_ROWS (tasks.ts: WASM for
 *   Q8_0/Q4_0 and Q2_K … Q6_K, the TS codecs for the rest). Rows are
 *   staged through shard 0 in bounded chunks (never the whole tensor: a 128256×2048 embedding is 1 GiB
 *   in f32), the caller and the workers claim row ranges of each chunk, and the blocks are copied out.
 * - `quantizeQ8Q4` / `quantizeQ8Q4F16`: the bare WASM SIMD Q8_0/Q4_0 quantizers over a flat array on the
 *   calling thread (benchmarks and the kernel tests use them directly).
 */
import { QuantlabError } from "../../core/errors.js";
import { noProgress } from "../../core/progress.js";
import { checkEncodeJob, reportNonFinite, type EncodeRowsJob, type GgmlEncoder } from "../../ggml/encoder.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../../ggml/types.js";
import type { Shard } from "./memory.js";
import type { Dispatcher } from "./pool.js";
import { G_COLS, G_DESC_WORDS, G_DST, G_F16, G_IMATRIX, G_KSCRATCH, G_KSLOTS, G_NO_WASM, G_REFINE, G_ROW_BYTES, G_SPECIAL, G_TYPE, G_WASM_VALUES, G_X, kquantScratchBytes, T_GGML_ROWS, WASM_QUANTIZERS } from "./tasks.js";

/** values staged per chunk by default (16 MiB of f32): each staged chunk is one dispatch, i.e. one wake-up
 * of the workers and one barrier; fewer of them matter most on a loaded machine, where a worker's wake-up
 * can take a scheduler slice */
export const ENCODE_CHUNK_VALUES = 1 << 22;
/** values per claimed piece of a staged chunk (≈ 0.3–3 ms of k-quant work): small enough that a preempted
 * thread holds little of the dispatch while the others finish the rest */
const CLAIM_VALUES = 1 << 16;

/** Staging buffers in shard 0, grown on demand (old ones go back to the arena's free list). */
interface Staging {
  /** capacity in values */
  cap: number;
  x: number;
  h: number;
  /** a second f16 buffer: the next chunk is read into it while the pool encodes the current one */
  h2: number;
  dst: number;
  /** a second block buffer (with workers): chunk k's blocks are copied out while the pool encodes chunk k + 1 */
  dst2: number;
  /** importance columns the imatrix region holds */
  imCap: number;
  im: number;
  desc: number;
  /** k-quant scratch (tasks.ts kquantScratchBytes), one slot per thread */
  ks: number;
}

/** Largest bytes per value of any codec type (F32: 4), so the output region fits every type. */
const MAX_BYTES_PER_VALUE = 4;

export class WasmGgmlEncoder implements GgmlEncoder {
  readonly name: string;
  private staging: Staging | undefined;

  constructor(
    private readonly shard: Shard,
    private readonly pool: Dispatcher,
    private readonly checkOpen: () => void,
    /** values staged per chunk (tests make it small to cross chunk boundaries) */
    private readonly chunkValues = ENCODE_CHUNK_VALUES,
    /** false: the threads run only the TypeScript codecs (comparisons; the bytes are the same) */
    private readonly wasmEncoders = true,
  ) {
    this.name = wasmEncoders ? `wasm-t${pool.threads}` : `ts-pool-t${pool.threads}`;
  }

  get threads(): number {
    return this.pool.threads;
  }

  /** values of the last encodeRows that WASM encoders (not the TS codecs) encoded */
  lastWasmValues = 0;

  private stage(cols: number, imatrix: boolean): Staging {
    const a = this.shard.arena;
    const want = Math.max(this.chunkValues, cols);
    let s = this.staging;
    if (!s || s.cap < want) {
      if (s) for (const off of [s.x, s.h, s.h2, s.dst, s.dst2]) if (off !== 0) a.free(off);
      const desc = s?.desc ?? a.alloc(G_DESC_WORDS * 4, 64, "encoder descriptor");
      let ks = s?.ks;
      if (ks === undefined) {
        const bytes = kquantScratchBytes(this.pool.threads);
        ks = a.alloc(bytes, 64, "encoder k-quant scratch");
        a.u8.fill(0, ks, ks + bytes); // lock words start free
      }
      s = { cap: want, x: a.alloc(want * 4, 64, "encoder staging"), h: a.alloc(want * 2, 64, "encoder staging"), h2: a.alloc(want * 2, 64, "encoder staging"), dst: a.alloc(want * MAX_BYTES_PER_VALUE, 64, "encoder staging"), dst2: this.pool.threads > 1 ? a.alloc(want * MAX_BYTES_PER_VALUE, 64, "encoder staging") : 0, imCap: s?.imCap ?? 0, im: s?.im ?? 0, desc, ks };
      this.staging = s;
    }
    if (imatrix && s.imCap < cols) {
      if (s.imCap > 0) a.free(s.im);
      s.im = a.alloc(cols * 4, 64, "encoder imatrix");
      s.imCap = cols;
    }
    return s;
  }

  encodeRows(job: EncodeRowsJob): Uint8Array {
    this.checkOpen();
    const { rowBytes, imatrix, refine } = checkEncodeJob(job);
    const { type, rows, cols } = job;
    const progress = job.progress ?? noProgress;
    // every byte of out is copied from the staged blocks below, so a reused buffer needs no clearing
    const out = job.out ?? new Uint8Array(rows * rowBytes);
    if (rows === 0) return out;
    const s = this.stage(cols, imatrix !== undefined);
    const a = this.shard.arena;
    if (imatrix) a.f32.set(imatrix, s.im >>> 2);
    const d = a.u32;
    const o = s.desc >>> 2;
    d[o + G_TYPE] = type;
    d[o + G_COLS] = cols;
    d[o + G_X] = s.x;
    d[o + G_IMATRIX] = imatrix ? s.im : 0;
    d[o + G_REFINE] = refine ? 1 : 0;
    d[o + G_ROW_BYTES] = rowBytes;
    d[o + G_KSCRATCH] = s.ks;
    d[o + G_KSLOTS] = this.pool.threads;
    d[o + G_NO_WASM] = this.wasmEncoders ? 0 : 1;
    d[o + G_WASM_VALUES] = 0;
    d[o + G_SPECIAL] = 0;
    const chunkRows = Math.max(1, Math.floor(s.cap / cols));
    let reported = false;
    // with workers, the caller's serial work is done while the workers start on the next chunk (Dispatcher.run's
    // `alongside`): a file read (f16Read) of chunk k + 1 goes into the other f16 buffer, and chunk k − 1's
    // blocks, encoded into the other block buffer, are copied out — so the workers do not wait for either
    const overlap = this.pool.threads > 1;
    const prefetch = job.f16Read !== undefined && overlap;
    const hBuf = [s.h, prefetch ? s.h2 : s.h];
    const dBuf = [s.dst, overlap ? s.dst2 : s.dst];
    const readChunk = (r: number, into: number): void => job.f16Read!(r * cols, new Uint16Array(a.memory.buffer, into, Math.min(chunkRows, rows - r) * cols));
    const copyOut = (r: number, from: number): void => { out.set(a.u8.subarray(from, from + Math.min(chunkRows, rows - r) * rowBytes), r * rowBytes); };
    if (prefetch) readChunk(0, hBuf[0]!);
    let pending: { r: number; from: number } | undefined; // encoded, not yet copied out
    for (let r = 0, k = 0; r < rows; r += chunkRows, k++) {
      const m = Math.min(chunkRows, rows - r);
      const h = hBuf[k & 1]!;
      d[o + G_F16] = job.x ? 0 : h;
      d[o + G_DST] = dBuf[k & 1]!;
      if (job.x) a.f32.set(job.x.subarray(r * cols, (r + m) * cols), s.x >>> 2);
      else if (job.f16Read) {
        if (!prefetch) readChunk(r, h);
      } else new Uint16Array(a.memory.buffer, h, m * cols).set(job.f16!.subarray(r * cols, (r + m) * cols));
      const next = r + chunkRows;
      const copy = pending;
      const alongside = overlap && (copy || (prefetch && next < rows))
        ? () => { if (copy) copyOut(copy.r, copy.from); if (prefetch && next < rows) readChunk(next, hBuf[(k + 1) & 1]!); }
        : undefined;
      pending = undefined;
      try {
        this.pool.run([{ desc: s.desc, rows: m, shard: this.shard.index, task: T_GGML_ROWS, chunkRows: Math.max(1, Math.floor(CLAIM_VALUES / cols)) }], alongside);
      } catch (e) {
        if (e instanceof QuantlabError && job.name && !e.message.startsWith(job.name)) throw new QuantlabError(e.code, `${job.name}: ${e.message}`, { cause: e });
        throw e;
      }
      // the task converted every staged value to f32 at G_X (Inf/NaN included), so that is where to look
      if (job.onNonFinite && !reported && d[o + G_SPECIAL] !== 0) {
        reported = true;
        reportNonFinite(new Float32Array(a.memory.buffer, s.x, m * cols), r * cols, job.onNonFinite);
      }
      if (overlap) pending = { r, from: dBuf[k & 1]! };
      else copyOut(r, dBuf[k & 1]!);
      progress.tick(m * cols);
    }
    if (pending) copyOut(pending.r, pending.from);
    this.lastWasmValues = d[o + G_WASM_VALUES]!;
    return out;
  }
}

/** values per pass of the flat Q8_0/Q4_0 quantizers (1 MiB of f32) */
const FLAT_CHUNK = 1 << 18;

/** The bare WASM Q8_0/Q4_0 quantizers over flat arrays on the calling thread, with their own scratch. */
export class FlatQuantizers {
  private qScratch: { x: number; y: number } | undefined;
  private hScratch: number | undefined;

  constructor(private readonly shard: Shard, private readonly checkOpen: () => void) {}

  /** f32 → Q8_0 / Q4_0 blocks; see WasmBackend.quantizeGgml. */
  quantize(type: GgmlType.Q8_0 | GgmlType.Q4_0, src: Float32Array, dst: Uint8Array): void {
    const arena = this.shard.arena;
    this.encode("quantizeGgml", type, src.length, dst, (i, m, x) => arena.f32.set(src.subarray(i, i + m), x >>> 2));
  }

  /** f16 bits → Q8_0 / Q4_0 blocks, converted in WASM; Inf/NaN throw E_VALUE. See WasmBackend.quantizeGgmlF16. */
  quantizeF16(type: GgmlType.Q8_0 | GgmlType.Q4_0, src: Uint16Array, dst: Uint8Array): void {
    const arena = this.shard.arena;
    const k = this.shard.kernels;
    this.encode("quantizeGgmlF16", type, src.length, dst, (i, m, x) => {
      const h = (this.hScratch ??= arena.alloc(FLAT_CHUNK * 2, 64, "quantize scratch"));
      new Uint16Array(arena.memory.buffer, h, m).set(src.subarray(i, i + m));
      if (k.f16_count_special(h, m) !== 0) throw new QuantlabError("E_VALUE", `wasm quantizeGgmlF16: Inf/NaN among values ${i}..${i + m - 1}`);
      k.f16_to_f32_row(h, m, x);
    });
  }

  /** n values → blocks in chunks: `fill(i, m, x)` puts values i..i+m as f32 at x in wasm memory. */
  private encode(what: string, type: GgmlType, n: number, dst: Uint8Array, fill: (i: number, m: number, x: number) => void): void {
    this.checkOpen();
    const entry = WASM_QUANTIZERS[type];
    if (!entry) throw new QuantlabError("E_UNSUPPORTED", `wasm ${what}: ${ggmlTypeName(type)} has no WASM quantizer (only ${Object.keys(WASM_QUANTIZERS).map((t) => ggmlTypeName(Number(t))).join(" and ")} do)`);
    const { blockSize, bytesPerBlock: bpb } = GGML_TYPES[type];
    if (n % blockSize !== 0) throw new QuantlabError("E_ARG", `wasm ${what}: ${n} values are not whole ${blockSize}-blocks`);
    if (dst.length < (n / blockSize) * bpb) throw new QuantlabError("E_ARG", `wasm ${what}: dst has ${dst.length} bytes, need ${(n / blockSize) * bpb}`);
    const arena = this.shard.arena;
    this.qScratch ??= { x: arena.alloc(FLAT_CHUNK * 4, 64, "quantize scratch"), y: arena.alloc(FLAT_CHUNK * MAX_BYTES_PER_VALUE, 64, "quantize scratch") };
    const { x, y } = this.qScratch;
    for (let i = 0; i < n; i += FLAT_CHUNK) {
      const m = Math.min(FLAT_CHUNK, n - i);
      fill(i, m, x);
      this.shard.kernels[entry](x, m, y);
      const yb = (m / blockSize) * bpb;
      dst.set(arena.u8.subarray(y, y + yb), (i / blockSize) * bpb);
    }
  }
}
