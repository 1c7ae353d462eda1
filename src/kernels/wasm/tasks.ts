/**
 * The TypeScript tasks of the WASM worker pool (pool.ts): each runs a row range of a job on views of the
 * shared memory, in whichever thread claimed it. The caller (backend.ts) and the worker entry
 * (worker-node.ts) load this same table, so a job id means the same code everywhere. Isomorphic.
 *
 * T_GGML_ROWS encodes staged rows as ggml blocks (encoders.ts stages them): Q8_0 and Q4_0 without an
 * importance matrix or refine run the WASM SIMD quantizers in place (bit-identical with llama.cpp's
 * `quantize_row_*_ref` on finite values, test/kernels/wasm/encoders.test.ts); Q2_K … Q6_K without refine,
 * with or without an importance matrix, run the WASM f32 twins of the TS codecs (assembly/kquants.ts,
 * test/kernels/wasm/kquant-encoders.test.ts). Every other case — refine, the other types, and any row
 * range holding Inf/NaN (or an importance matrix that does) — runs ggml's TypeScript codec (codecs.ts
 * quantizeRow) on views of the staged rows, so the bytes are always the reference's.
 */
import { f16ArrayToF32 } from "../../core/f16.js";
import { KQ_SLOT_BYTES } from "../../../assembly/abi.js";
import { quantizeRow } from "../../ggml/codecs.js";
import { GgmlType } from "../../ggml/types.js";
import type { KernelExports } from "./module.js";
import { TS_TASK_BASE, type PoolShard, type TaskTable } from "./pool.js";

/** Task id: encode rows as ggml blocks (descriptor words G_*). */
export const T_GGML_ROWS = TS_TASK_BASE;

// T_GGML_ROWS descriptor: u32 words; offsets are bytes in the shard's memory, rows count from the staged chunk
export const G_TYPE = 0;
export const G_COLS = 1;
/** f32 values (rows, cols); with G_F16 also where rows are converted to before quantizing */
export const G_X = 2;
/** binary16 bits (rows, cols), or 0 for f32 input */
export const G_F16 = 3;
/** output blocks (rows, rowBytes) */
export const G_DST = 4;
/** f32 importance per column, or 0 */
export const G_IMATRIX = 5;
/** 1 = refine */
export const G_REFINE = 6;
export const G_ROW_BYTES = 7;
/** scratch of the WASM k-quant encoders: lock words, then G_KSLOTS slots of KQ_SLOT_BYTES (0 = none) */
export const G_KSCRATCH = 8;
export const G_KSLOTS = 9;
/** values the WASM encoders (rather than the TS codecs) encoded, added atomically by every thread */
export const G_WASM_VALUES = 10;
/** 1 = TypeScript codecs only (WasmGgmlEncoder wasmEncoders: false) */
export const G_NO_WASM = 11;
/** set to 1 by any thread whose rows hold an Inf/NaN (the caller then finds the first one: onNonFinite) */
export const G_SPECIAL = 12;
export const G_DESC_WORDS = 13;


/** bytes of k-quant scratch for `slots` threads: a 64-byte line of lock words per 16 slots, then the slots */
export function kquantScratchBytes(slots: number): number {
  return Math.ceil(slots / 16) * 64 + slots * KQ_SLOT_BYTES;
}

/** ggml types with a WASM SIMD reference quantizer, by type: the kernel entry that writes their blocks */
export const WASM_QUANTIZERS: Partial<Record<GgmlType, "quantize_row_q8_0" | "quantize_row_q4_0">> = {
  [GgmlType.Q8_0]: "quantize_row_q8_0",
  [GgmlType.Q4_0]: "quantize_row_q4_0",
};

/** values one pass of the task converts, checks and quantizes: 64 K f32 (256 KiB) stay in the 1 MiB L2
 * from the f16 conversion to the quantizer, as the flat quantizer's 1 MiB chunks do; a whole staged chunk
 * (4 MiB of f32) would go through L3 between the two */
const PASS_VALUES = 1 << 16;

function encodeGgmlRows(sh: PoolShard, desc: number, r0: number, r1: number): void {
  const d = new Uint32Array(sh.memory.buffer, desc, G_DESC_WORDS);
  const cols = d[G_COLS]!;
  const step = Math.max(1, Math.floor(PASS_VALUES / cols));
  for (let r = r0; r < r1; r += step) encodeRowsPass(sh, d, r, Math.min(r1, r + step));
}

function encodeRowsPass(sh: PoolShard, d: Uint32Array, r0: number, r1: number): void {
  const buf = sh.memory.buffer;
  const cols = d[G_COLS]!;
  const n = (r1 - r0) * cols;
  const x = d[G_X]! + r0 * cols * 4;
  const k: KernelExports = sh.kernels;
  let finite: boolean;
  if (d[G_F16] !== 0) {
    const h = d[G_F16]! + r0 * cols * 2;
    // Q4_0 from binary16 in one pass (conversion, Inf/NaN check and encoding; the same bytes); with Inf/NaN
    // it reports 1 and the rows take the path below
    if (d[G_TYPE] === GgmlType.Q4_0 && d[G_NO_WASM] === 0 && d[G_IMATRIX] === 0 && d[G_REFINE] === 0 && k.quantize_row_q4_0_f16(h, n, d[G_DST]! + r0 * d[G_ROW_BYTES]!) === 0) {
      Atomics.add(d, G_WASM_VALUES, n);
      return;
    }
    // the WASM conversion uses integer ops that do not make Inf/NaN: such rows convert in TS (and take the
    // TS codec below, whose handling of non-finite values is the reference)
    finite = k.f16_count_special(h, n) === 0;
    if (finite) k.f16_to_f32_row(h, n, x);
    else f16ArrayToF32(new Uint16Array(buf, h, n), new Float32Array(buf, x, n));
  } else finite = k.f32_count_special(x, n) === 0;
  if (finite) encodeF32Rows(sh, d, r0, r1, true);
  else {
    Atomics.store(d, G_SPECIAL, 1);
    if (r1 - r0 === 1) encodeF32Rows(sh, d, r0, r1);
    else for (let r = r0; r < r1; r++) encodeF32Rows(sh, d, r, r + 1); // only the rows with Inf/NaN leave WASM
  }
}

/** Rows [r0, r1) already in f32 at G_X: a WASM encoder when one fits and the values are finite, else the
 * TS codec. `finite`: the caller has checked the rows (no second pass over them). */
function encodeF32Rows(sh: PoolShard, d: Uint32Array, r0: number, r1: number, checked = false): void {
  const buf = sh.memory.buffer;
  const type = d[G_TYPE]! as GgmlType;
  const cols = d[G_COLS]!;
  const rowBytes = d[G_ROW_BYTES]!;
  const n = (r1 - r0) * cols;
  const x = d[G_X]! + r0 * cols * 4;
  const dst = d[G_DST]! + r0 * rowBytes;
  const k: KernelExports = sh.kernels;
  // the SIMD quantizers saturate where C's float → int8 casts of Inf/NaN do not, and the k-quant twins are
  // only checked on finite values: such rows take the TS codec
  const finite = d[G_NO_WASM] === 0 && (checked || k.f32_count_special(x, n) === 0);
  const wasm = d[G_IMATRIX] === 0 && d[G_REFINE] === 0 ? WASM_QUANTIZERS[type] : undefined;
  if (wasm && finite) {
    k[wasm](x, n, dst);
    Atomics.add(d, G_WASM_VALUES, n);
    return;
  }
  const qw = d[G_IMATRIX]!;
  if (finite && d[G_REFINE] === 0 && d[G_KSLOTS] !== 0 && k.kquant_supported(type) === 1 && (qw === 0 || k.f32_count_special(qw, cols) === 0)) {
    // < 0: no free scratch slot (cannot happen with one slot per thread): the TS codec below does the rows
    if (k.quantize_blocks_k(type, x, n >> 8, cols >> 8, dst, qw, d[G_KSCRATCH]!, d[G_KSLOTS]!) === 0) {
      Atomics.add(d, G_WASM_VALUES, n);
      return;
    }
  }
  const imatrix = qw !== 0 ? new Float32Array(buf, qw, cols) : undefined;
  quantizeRow(type, new Float32Array(buf, x, n), new Uint8Array(buf, dst, (r1 - r0) * rowBytes), n, { imatrix, refine: d[G_REFINE] !== 0 });
}

/** Every TypeScript task of the pool, by id. */
export const POOL_TASKS: TaskTable = {
  [T_GGML_ROWS]: encodeGgmlRows,
};
