/**
 * Running mat-vecs on the WASM backend: each job gets a descriptor (assembly/abi.ts D_*) and an
 * activation slot in its weight's shard; x is copied in and quantized once to Q8 (as ggml does; not for
 * f32/f16 weights, and jobs sharing one x array and shard share the quantized copy), the rows run
 * through the worker pool (split across threads when the jobs stream enough bytes) and the outputs are
 * copied back. Row-decoded weights (kernels/rowdec.ts) run after the others, chunk by chunk (`runDecoded`).
 */
import { QuantlabError } from "../../core/errors.js";
import type { MatvecJob, PreparedWeight } from "../types.js";
import {
  K_F32, K_F16, K_Q4_0X4, K_Q8_0X4, K_Q4_KX4, K_Q5_KX4, K_Q6_KX4, Q8K_SUM_BYTES, K_NIB4Q8X4, K_LUT4Q8X4, K_LUT12Q8X4, K_LUT7Q8X4, K_TERN2Q8X4, K_TERN2Q8KX4, K_LUT4Q8X4E, K_I8Q8X4, K_NIB4Q8X4B, K_NIB4Q8X4BF, K_NIB4Q8X4BS, K_NIB4Q8X4BSF, K_NIB4Q8X4BZ, K_NIB4Q8X4BZF, K_I16GEMM, K_U4G, K_U8G, K_LUT4G, K_LUT1G, K_LUT2G, K_LUT3G, K_LUTWG,
  D_KIND, D_ROWS, D_COLS, D_W0, D_W1, D_W2, D_XF, D_X16, D_X8, D_XD, D_XS, D_OUT, D_N, D_GROUP, D_LUT, D_BITS, DESC_WORDS,
  F16_PANEL_SLOT_BYTES,
  Q6_PANEL_SLOT_BYTES,
} from "../../../assembly/abi.js";
import type { Shard, ShardedMemory } from "./memory.js";
import { Dispatcher, runJobPart, type PoolJob } from "./pool.js";
import { POOL_TASKS } from "./tasks.js";
import { CHUNK_BYTES, chunkRows, type RowsDecoder } from "../rowdec.js";

/** A weight in wasm memory: its kernel kind and the byte offsets the kind's descriptor names. */
export class WasmPrepared implements PreparedWeight {
  /** false after `release` */
  live = true;
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly bytes: number,
    readonly kind: number,
    readonly w0: number,
    readonly w1: number,
    readonly w2: number,
    readonly owner: object,
    readonly shard: number,
    /** the region `prepare` allocated for it (freed by `release`); undefined when the bytes sit where a
     * loader placed them (placeTensor), which the loader's weight still references */
    readonly alloc: number | undefined,
    /** weights per scale group (packed spec kinds), else 0 */
    readonly group = 0,
    /** f64 level table (packed lut kinds), else 0 */
    readonly lut = 0,
    /** bits per code (packed lut kinds), else 0 */
    readonly bits = 0,
  ) {}
}

/** A row-decoded chunk's f32 kernel splits across the pool only when n × its bytes reach this many times
 * `minParallelBytes` (default: 32 tokens over a 256 KiB chunk); measured (bench/rowdec.ts) slower with the
 * pool at 1 and 16 tokens */
const ROWDEC_PARALLEL_FACTOR = 64;

/** Kind of a row-decoded weight (kernels/rowdec.ts): no WASM entry of its own, it runs as decoded f32 chunks. */
export const K_ROWDEC = 0;

/**
 * A weight with no fast kernel, kept in its stored form (a QTensor's arrays, or ggml block bytes in wasm
 * memory): each mat-vec decodes a chunk of rows at a time into a reused scratch in shard 0 and runs the f32
 * kernel on it (JobDispatch.runDecoded).
 */
export class RowDecPrepared extends WasmPrepared {
  constructor(rows: number, cols: number, bytes: number, owner: object, shard: number, alloc: number | undefined, readonly decode: RowsDecoder) {
    super(rows, cols, bytes, K_ROWDEC, 0, 0, 0, owner, shard, alloc);
  }
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
  /** K_F16 decode: x·2^112 (f32, assembly/index.ts scale_act_f16), and whether that copy is exact */
  xh: number;
  xhOk: boolean;
  /** Q8_K copy (k-quant X4 kinds): int8 codes, f32 scale per 256, code-sum records */
  k8: number;
  kd: number;
  ks: number;
  out: number;
  desc: number;
}

/** kinds that read f32 activations (no Q8 copy) */
const F32_ACTIVATIONS = new Set([K_F32, K_F16, K_U4G, K_U8G, K_LUT4G, K_LUT1G, K_LUT2G, K_LUT3G, K_LUTWG]);
/** kinds that read Q8_K activations (one scale per 256) instead of Q8_0 */
const Q8K_ACTIVATIONS = new Set([K_Q4_KX4, K_Q5_KX4, K_Q6_KX4, K_TERN2Q8KX4]);
/** the activation copy a kind reads: f32 only, Q8_0 (per 32) or Q8_K (per 256) */
export type ActivationForm = "f32" | "q8" | "q8k" | "i16";
export const activationForm = (kind: number): ActivationForm => F32_ACTIVATIONS.has(kind) ? "f32" : Q8K_ACTIVATIONS.has(kind) ? "q8k" : kind === K_I16GEMM ? "i16" : "q8";
export const needsQ8 = (kind: number): boolean => activationForm(kind) === "q8";
export const isX4 = (kind: number): boolean => kind === K_Q4_0X4 || kind === K_Q8_0X4 || kind === K_Q4_KX4 || kind === K_Q5_KX4 || kind === K_Q6_KX4;
/** kinds whose entries take groups of 4 interleaved rows: the ggml X4 kinds and the packed lut4 Q8 X4 kinds */
export const byRowGroups = (kind: number): boolean => isX4(kind) || kind === K_NIB4Q8X4 || kind === K_LUT4Q8X4 || kind === K_LUT12Q8X4 || kind === K_LUT7Q8X4 || kind === K_TERN2Q8X4 || kind === K_TERN2Q8KX4 || kind === K_LUT4Q8X4E || kind === K_I8Q8X4 || kind === K_NIB4Q8X4B || kind === K_NIB4Q8X4BF || kind === K_NIB4Q8X4BS || kind === K_NIB4Q8X4BSF || kind === K_NIB4Q8X4BZ || kind === K_NIB4Q8X4BZF;

export class JobDispatch {
  /** jobs streaming fewer weight bytes run on the calling thread alone (Infinity = never dispatch) */
  minParallelBytes: number;
  /** decode (n = 1): weight bytes per claimed chunk on matrices large enough for more than the pool's
   * default threads × 4 chunks (issue 15); Infinity = the default split only */
  chunkBytes = 256 * 1024;
  /** slots by shard index, one per job position of a dispatch */
  private readonly slots = new Map<number, Slot[]>();

  constructor(private readonly memory: ShardedMemory, private readonly pool: Dispatcher, private readonly owner: object, minParallelBytes: number) {
    this.minParallelBytes = minParallelBytes;
  }

  private slot(sh: Shard, i: number, xElems: number, outElems: number): Slot {
    let list = this.slots.get(sh.index);
    if (!list) this.slots.set(sh.index, (list = []));
    let s = list[i];
    const a = sh.arena;
    if (!s) {
      s = { xCap: 0, outCap: 0, xf: 0, x16: 0, x8: 0, xd: 0, xs: 0, xh: 0, xhOk: false, k8: 0, kd: 0, ks: 0, out: 0, desc: a.alloc(DESC_WORDS * 4, 64, "job descriptor") };
      list[i] = s;
    }
    if (s.xCap < xElems) {
      // the smaller activation buffers go back to the arena's free list
      if (s.xCap > 0) for (const off of [s.xf, s.x16, s.x8, s.xd, s.xs, s.xh, s.k8, s.kd, s.ks]) a.free(off);
      const cap = Math.max(xElems, 2 * s.xCap, 4096);
      s.xf = a.alloc(cap * 4, 64, "activations");
      s.x16 = a.alloc(cap * 2, 64, "activations");
      s.x8 = a.alloc(cap, 64, "activations");
      s.xd = a.alloc(Math.ceil(cap / 32) * 4 + 64, 64, "activations");
      s.xs = a.alloc(Math.ceil(cap / 16) * 4 + 64, 64, "activations");
      s.xh = a.alloc(cap * 4, 64, "activations");
      s.k8 = a.alloc(cap, 64, "activations");
      s.kd = a.alloc(Math.ceil(cap / 256) * 4 + 64, 64, "activations");
      s.ks = a.alloc(Math.ceil(cap / 256) * Q8K_SUM_BYTES + 64, 64, "activations");
      s.xCap = cap;
    }
    if (s.outCap < outElems) {
      if (s.outCap > 0) a.free(s.out);
      const cap = Math.max(outElems, 2 * s.outCap, 4096);
      s.out = a.alloc(cap * 4, 64, "outputs");
      s.outCap = cap;
    }
    return s;
  }

  /** F16 and Q6_K prefill panels by kind and shard index (assembly/abi.ts F16_PANEL_SLOT_BYTES,
   * Q6_PANEL_SLOT_BYTES): lock words, then one slot per thread */
  private readonly panels = new Map<string, number>();

  /** The shard's F16 or Q6_K prefill panel scratch, made on first use (pool.threads slots, lock words free). */
  private panel(sh: Shard, kind: number): number {
    const key = `${kind}:${sh.index}`;
    let off = this.panels.get(key);
    if (off === undefined) {
      const slots = this.pool.threads;
      const lock = Math.ceil(slots / 16) * 64;
      const bytes = kind === K_F16 ? F16_PANEL_SLOT_BYTES : Q6_PANEL_SLOT_BYTES;
      off = sh.arena.alloc(lock + slots * bytes, 64, kind === K_F16 ? "f16 prefill panels" : "q6_k prefill panels");
      sh.arena.u8.fill(0, off, off + lock);
      this.panels.set(key, off);
    }
    return off;
  }

  /** f32 chunk scratch of the row-decoded weights, in shard 0: one per backend, grown to the widest chunk */
  private decodeScratch: { off: number; bytes: number } | undefined;

  /** out = W·x for every job, x holding n rows (n = 1: mat-vec). */
  run(jobs: readonly MatvecJob[], n: number): void {
    let rowdec = false;
    for (let i = 0; i < jobs.length; i++) if (jobs[i]!.w instanceof RowDecPrepared) rowdec = true;
    if (rowdec) {
      // row-decoded weights run after the others, chunk by chunk, each reusing slot 0 of shard 0
      const rest = jobs.filter((j) => !(j.w instanceof RowDecPrepared));
      if (rest.length > 0) this.run(rest, n);
      for (const j of jobs) if (j.w instanceof RowDecPrepared) this.runDecoded(j.w, j.x, j.out, n);
      return;
    }
    const poolJobs: (PoolJob & { shard: number })[] = [];
    const used: Slot[] = [];
    /** per job: the f32 activations' byte offset (the slot's copy, or x itself when x lies in the job's shard) and
     * whether the kernel writes straight into `out` (it lies in the shard, clear of every job's x) */
    const xfs: number[] = [];
    const direct: boolean[] = [];
    let streamed = 0;
    for (let i = 0; i < jobs.length; i++) {
      const { w, x, out } = jobs[i]!;
      const p = w as WasmPrepared;
      if (!(p instanceof WasmPrepared) || p.owner !== this.owner) throw new QuantlabError("E_ARG", `wasm backend: weight ${i} was not prepared by this backend`);
      if (!p.live) throw new QuantlabError("E_ARG", `wasm backend: weight ${i} was released`);
      const { rows, cols, kind } = p;
      if (x.length < n * cols) throw new QuantlabError("E_ARG", `wasm backend: x has ${x.length} elements, need ${n}×${cols}`);
      if (out.length < n * rows) throw new QuantlabError("E_ARG", `wasm backend: out has ${out.length} elements, need ${n}×${rows}`);
      const sh = this.memory.shards[p.shard]!;
      const s = this.slot(sh, i, n * cols, n * rows);
      // jobs that share an activation array (in the same shard) reuse the first one's quantized copies;
      // each form (Q8_0, Q8_K) is made once, by the first job that needs it
      let src: Slot = s;
      let k = 0;
      for (; k < i; k++) {
        const prev = jobs[k]!.w as WasmPrepared;
        if (jobs[k]!.x === x && prev.cols === cols && prev.shard === p.shard) break;
      }
      const form = activationForm(kind);
      const xIn = sh.arena.owns(x.buffer);
      let xf: number;
      if (k < i) { src = used[k]!; xf = xfs[k]!; }
      else if (xIn) xf = x.byteOffset;
      else { xf = s.xf; sh.arena.f32.set(x.subarray(0, n * cols), s.xf >>> 2); }
      xfs.push(xf);
      const outDirect = sh.arena.owns(out.buffer) && clearOfInputs(out, n * rows, jobs, n);
      direct.push(outDirect);
      let made = false;
      for (let j = k; j < i && !made; j++) {
        const pj = jobs[j]!.w as WasmPrepared;
        made = jobs[j]!.x === x && pj.cols === cols && pj.shard === p.shard && activationForm(pj.kind) === form;
      }
      if (!made && form === "q8") quantizeActivations(sh, xf, src, n, cols);
      if (!made && form === "q8k") quantizeActivationsQ8K(sh, xf, src, n, cols);
      if (!made && form === "i16") quantizeActivationsI16(sh, xf, src, n, cols, p.bits);
      if (form === "i16" || form === "q8") {
        // both write the x16 copy: one shared x cannot feed both forms in a dispatch
        for (let j = k; j < i; j++) {
          const pj = jobs[j]!.w as WasmPrepared;
          const fj = activationForm(pj.kind);
          if (jobs[j]!.x === x && pj.shard === p.shard && fj !== form && (fj === "i16" || fj === "q8")) throw new QuantlabError("E_INTERNAL", "wasm backend: one activation array feeds both a Q8 and an i16 calibration kernel in one dispatch");
        }
      }
      // F16 decode reads x·2^112 (made once per x, by the first F16 job on it)
      const f16s = kind === K_F16 && n === 1;
      if (f16s) {
        let scaled = false;
        for (let j = k; j < i && !scaled; j++) {
          const pj = jobs[j]!.w as WasmPrepared;
          scaled = jobs[j]!.x === x && pj.cols === cols && pj.shard === p.shard && pj.kind === K_F16;
        }
        if (!scaled) src.xhOk = sh.kernels.scale_act_f16(xf, cols, src.xh) === 1;
      }
      const d = sh.arena.u32;
      const o = s.desc >>> 2;
      d[o + D_KIND] = kind;
      d[o + D_ROWS] = rows;
      d[o + D_COLS] = cols;
      d[o + D_W0] = p.w0;
      // F16 prefill: the panel scratch (one f32 row tile per thread) at D_W1, its slot count at D_GROUP
      const f16p = kind === K_F16 && n > 1;
      d[o + D_W1] = f16p ? this.panel(sh, K_F16) : p.w1;
      // Q6_K prefill (relaxed build): the panel scratch at D_W2, its slot count at D_GROUP (kdecode.ts q6Panel)
      const q6p = kind === K_Q6_KX4 && n > 1;
      d[o + D_W2] = q6p ? this.panel(sh, K_Q6_KX4) : p.w2;
      d[o + D_XF] = xf;
      d[o + D_X16] = f16s ? (src.xhOk ? src.xh : 0) : src.x16;
      const q8k = form === "q8k";
      d[o + D_X8] = q8k ? src.k8 : src.x8;
      d[o + D_XD] = q8k ? src.kd : src.xd;
      d[o + D_XS] = q8k ? src.ks : src.xs;
      d[o + D_OUT] = outDirect ? out.byteOffset : s.out;
      d[o + D_N] = n;
      d[o + D_GROUP] = f16p || q6p ? this.pool.threads : p.group;
      d[o + D_LUT] = p.lut;
      d[o + D_BITS] = p.bits;
      used.push(s);
      // interleaved kinds run groups of 4 rows: the pool splits (and run_k13/14/24/25/26, run_k40…47, run_k50, run_k51 take) group indices
      const units = byRowGroups(kind) ? rows / 4 : rows;
      // decode: chunks of about chunkBytes of weights on large matrices (the pool's default is threads × 4
      // chunks per job): a thread that starts late (wake-up) or is preempted leaves a tail of one chunk
      const parts = n === 1 ? Math.ceil(p.bytes / this.chunkBytes) : 0;
      const chunkRows = parts > this.pool.threads * 4 ? Math.ceil(units / parts) : undefined;
      poolJobs.push({ desc: s.desc, rows: units, shard: p.shard, task: kind, chunkRows });
      streamed += p.bytes;
    }
    if (streamed < this.minParallelBytes) {
      for (const j of poolJobs) runJobPart(this.memory.shards[j.shard]!.pool, POOL_TASKS, j.task, j.desc, 0, j.rows);
    } else this.pool.run(poolJobs);
    for (let i = 0; i < jobs.length; i++) {
      if (direct[i]) continue;
      const { out, w } = jobs[i]!;
      const s = used[i]!;
      const f = this.memory.shards[poolJobs[i]!.shard]!.arena.f32;
      out.set(f.subarray(s.out >>> 2, (s.out >>> 2) + n * w.rows));
    }
  }

  /**
   * out = W·x for a row-decoded weight: x is copied in once; then rows [r0, r0 + step) are decoded into the
   * chunk scratch (about 256 KiB of f32, kernels/rowdec.ts chunkRows) on the calling thread and the f32 kernel
   * (K_F32, split across the pool from about 32 tokens on: ROWDEC_PARALLEL_FACTOR) runs them for all n tokens,
   * chunk after chunk.
   * The values are dequantizeWeight's, so the results are those of the f32 kernel on a dequantized copy.
   */
  private runDecoded(p: RowDecPrepared, x: Float32Array, out: Float32Array, n: number): void {
    if (p.owner !== this.owner) throw new QuantlabError("E_ARG", "wasm backend: weight was not prepared by this backend");
    if (!p.live) throw new QuantlabError("E_ARG", "wasm backend: weight was released");
    const { rows, cols } = p;
    if (x.length < n * cols) throw new QuantlabError("E_ARG", `wasm backend: x has ${x.length} elements, need ${n}×${cols}`);
    if (out.length < n * rows) throw new QuantlabError("E_ARG", `wasm backend: out has ${out.length} elements, need ${n}×${rows}`);
    if (rows === 0 || n === 0) return;
    const sh = this.memory.first;
    const step = Math.min(rows, chunkRows(cols));
    const need = step * cols * 4;
    if (!this.decodeScratch || this.decodeScratch.bytes < need) {
      if (this.decodeScratch) sh.arena.free(this.decodeScratch.off);
      const bytes = Math.max(need, CHUNK_BYTES);
      this.decodeScratch = { off: sh.arena.alloc(bytes, 64, "row decoder scratch"), bytes };
    }
    const w0 = this.decodeScratch.off;
    const s = this.slot(sh, 0, n * cols, n * step);
    sh.arena.f32.set(x.subarray(0, n * cols), s.xf >>> 2);
    const o = s.desc >>> 2;
    const d = sh.arena.u32;
    d.fill(0, o, o + DESC_WORDS);
    d[o + D_KIND] = K_F32;
    d[o + D_COLS] = cols;
    d[o + D_W0] = w0;
    d[o + D_XF] = s.xf;
    d[o + D_OUT] = s.out;
    d[o + D_N] = n;
    const poolShard = this.memory.shards[0]!.pool;
    for (let r0 = 0; r0 < rows; r0 += step) {
      const r1 = Math.min(rows, r0 + step), cr = r1 - r0;
      p.decode(r0, r1, sh.arena.f32, w0 >>> 2);
      sh.arena.u32[o + D_ROWS] = cr;
      // the decode (calling thread) costs far more than the f32 kernel on its chunk: the pool only pays for the
      // kernel when many tokens share the chunk (prefill), else waking it per chunk costs more than it saves
      if (n * cr * cols * 4 < ROWDEC_PARALLEL_FACTOR * this.minParallelBytes) runJobPart(poolShard, POOL_TASKS, K_F32, s.desc, 0, cr);
      else this.pool.run([{ desc: s.desc, rows: cr, shard: 0, task: K_F32 }]);
      const f = sh.arena.f32, base = s.out >>> 2;
      for (let t = 0; t < n; t++) out.set(f.subarray(base + t * cr, base + (t + 1) * cr), t * rows + r0);
    }
  }
}

/** Does out's first `len` elements' byte range miss every job's x (n·cols elements)? A kernel may then write
 * straight into it while the dispatch's kernels read their inputs. */
function clearOfInputs(out: Float32Array, len: number, jobs: readonly MatvecJob[], n: number): boolean {
  const o0 = out.byteOffset, o1 = o0 + len * 4;
  for (const j of jobs) {
    if (j.x.buffer !== out.buffer && !sameMemory(j.x, out)) continue;
    const x0 = j.x.byteOffset, x1 = x0 + n * j.w.cols * 4;
    if (x0 < o1 && o0 < x1) return false;
  }
  return true;
}

/** Two views of one shared memory may sit on different buffer objects (one per length it grew to). */
function sameMemory(a: Float32Array, b: Float32Array): boolean {
  return a.buffer instanceof SharedArrayBuffer && b.buffer instanceof SharedArrayBuffer;
}

/** Q8 codes (i16 and i8 copies), f32 scales per 32 and code sums per 16 of the n rows in slot.xf. */
function quantizeActivations(sh: Shard, xf: number, s: Slot, n: number, cols: number): void {
  if (cols % 32 !== 0) throw new QuantlabError("E_INTERNAL", `wasm backend: quantized kernel with ${cols} columns (not a multiple of 32)`);
  const nb = cols / 32;
  for (let t = 0; t < n; t++) {
    sh.kernels.quantize_act(xf + t * cols * 4, cols, s.x16 + t * cols * 2, s.x8 + t * cols, s.xd + t * nb * 4, s.xs + t * nb * 8);
  }
}

/** i16 codes (symmetric, |q| ≤ qmax) and one f32 scale per token of the n rows in slot.xf (K_I16GEMM). */
function quantizeActivationsI16(sh: Shard, xf: number, s: Slot, n: number, cols: number, qmax: number): void {
  if (cols % 32 !== 0) throw new QuantlabError("E_INTERNAL", `wasm backend: i16 calibration kernel with ${cols} columns (not a multiple of 32)`);
  const bad = sh.kernels.quantize_rows_i16(xf, n, cols, qmax, s.x16, s.xd);
  if (bad !== 0) throw new QuantlabError("E_VALUE", `wasm backend: ${bad} of ${n} activation rows hold Inf/NaN (integer calibration forward)`);
}

/** Q8_K codes, f32 scales per 256 and code-sum records of the n rows in slot.xf (k-quant X4 kinds). */
function quantizeActivationsQ8K(sh: Shard, xf: number, s: Slot, n: number, cols: number): void {
  if (cols % 256 !== 0) throw new QuantlabError("E_INTERNAL", `wasm backend: Q8_K activations for ${cols} columns (not a multiple of 256)`);
  const nsb = cols / 256;
  for (let t = 0; t < n; t++) {
    sh.kernels.quantize_act_q8k(xf + t * cols * 4, cols, s.k8 + t * cols, s.kd + t * nsb * 4, s.ks + t * nsb * Q8K_SUM_BYTES);
  }
}
