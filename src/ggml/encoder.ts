/**
 * Whole-tensor ggml encoding as one explicit object the writers and quantizers are handed: a
 * `GgmlEncoder` turns (rows, cols) values — f32, or the binary16 bits of an F16 tensor — into ggml blocks
 * of any codec type, with or without an importance matrix and refine. Every implementation must give
 * the bytes of `quantize` (codecs.ts) on the f32 values; rows are independent in every ggml quantizer
 * (the imatrix is per column, Q4_0…Q5_1's σ² per row), which is what lets faster ones split them.
 * `refGgmlEncoder` is the TypeScript reference on the calling thread; the WASM backend makes a threaded
 * one (kernels/wasm/encoder.ts).
 */
import { QuantlabError } from "../core/errors.js";
import { f16ArrayToF32 } from "../core/f16.js";
import { noProgress, type Progress } from "../core/progress.js";
import { ggmlUsesImatrix, hasGgmlCodec, quantizeRow } from "./codecs.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "./types.js";

export interface EncodeRowsJob {
  /** target type: any ggml type with a codec */
  type: GgmlType;
  rows: number;
  cols: number;
  /** (rows, cols) f32 values; give this or `f16` */
  x?: Float32Array;
  /** (rows, cols) binary16 bits (an F16 tensor): encoded chunk by chunk, never as a whole f32 copy */
  f16?: Uint16Array;
  /** an F16 tensor that is not in memory: puts its values start … start + dst.length (binary16 bits) into
   * dst, called chunk by chunk in order (a file read straight into the encoder's buffer) */
  f16Read?: (start: number, dst: Uint16Array) => void;
  /**
   * Called once, with the flat index and value of the first Inf/NaN input value the encoder meets (at the
   * latest once the chunk holding it is encoded); a caller refusing such weights throws from it, which
   * abandons the job. Without it non-finite values are encoded as the reference codec does.
   */
  onNonFinite?: (index: number, value: number) => void;
  /** importance per column (cols), llama.cpp imatrix; types whose quantizer ignores it ignore it */
  imatrix?: Float32Array;
  /** quantlab's refine pass after llama.cpp's search (codecs.ts QuantizeOptions.refine) */
  refine?: boolean;
  /** tensor name, for error messages */
  name?: string;
  /** ticked with rows·cols elements as rows are done */
  progress?: Progress;
  /** where to put the blocks (exactly rows · rowBytes bytes; any previous content is overwritten): a buffer
   * the caller reuses, so a long run of tensors does not fault in fresh memory for each (default: a new one) */
  out?: Uint8Array;
}

export interface GgmlEncoder {
  readonly name: string;
  /** threads that encode, the caller included */
  readonly threads: number;
  /** rows · rowBytes bytes of `type` blocks, byte-identical to `quantize(type, values, n, {imatrix, refine})` */
  encodeRows(job: EncodeRowsJob): Uint8Array;
}

export interface CheckedEncodeJob {
  rowBytes: number;
  /** the imatrix when the type's quantizer uses it, else undefined */
  imatrix: Float32Array | undefined;
  refine: boolean;
}

/** Validates a job (one-line errors naming the tensor) and resolves what the quantizer will use. */
export function checkEncodeJob(job: EncodeRowsJob): CheckedEncodeJob {
  const what = job.name ?? "encodeRows";
  const { type, rows, cols } = job;
  if (!hasGgmlCodec(type)) throw new QuantlabError("E_UNSUPPORTED", `${what}: ggml type ${ggmlTypeName(type)} has no encoder in quantlab`);
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols <= 0) {
    throw new QuantlabError("E_ARG", `${what}: shape [${rows}, ${cols}] is not a matrix of whole rows`);
  }
  const { blockSize, bytesPerBlock } = GGML_TYPES[type];
  if (cols % blockSize !== 0) throw new QuantlabError("E_ARG", `${what}: row length ${cols} is not a multiple of the ${ggmlTypeName(type)} block size ${blockSize}`);
  if ((job.x !== undefined ? 1 : 0) + (job.f16 !== undefined ? 1 : 0) + (job.f16Read !== undefined ? 1 : 0) !== 1) throw new QuantlabError("E_ARG", `${what}: give the values as exactly one of x (f32) and f16 (an array, or f16Read)`);
  const have = job.f16Read ? rows * cols : (job.x ?? job.f16)!.length;
  if (have !== rows * cols) throw new QuantlabError("E_ARG", `${what}: ${have} values for a [${rows}, ${cols}] tensor (need ${rows * cols})`);
  let imatrix = job.imatrix;
  if (imatrix && imatrix.length !== cols) throw new QuantlabError("E_ARG", `${what}: the importance matrix has ${imatrix.length} columns, the tensor ${cols}`);
  if (imatrix && !ggmlUsesImatrix(type)) imatrix = undefined;
  const rowBytes = (cols / blockSize) * bytesPerBlock;
  if (job.out && job.out.length !== rows * rowBytes) throw new QuantlabError("E_ARG", `${what}: out has ${job.out.length} bytes, the [${rows}, ${cols}] ${ggmlTypeName(type)} blocks ${rows * rowBytes}`);
  return { rowBytes, imatrix, refine: !!job.refine };
}

/** values per quantizeRow call of the reference encoder (progress moves on big tensors) */
const REF_CHUNK = 1 << 16;

/** The TypeScript reference encoder: ggml's codecs on the calling thread, chunk by chunk. */
export const refGgmlEncoder: GgmlEncoder = {
  name: "ref",
  threads: 1,
  encodeRows(job: EncodeRowsJob): Uint8Array {
    const { rowBytes, imatrix, refine } = checkEncodeJob(job);
    const { type, rows, cols } = job;
    const progress = job.progress ?? noProgress;
    const out = job.out?.fill(0) ?? new Uint8Array(rows * rowBytes); // a reused buffer starts as a new one would
    const chunkRows = Math.max(1, Math.floor(REF_CHUNK / cols));
    const scratch = job.x ? undefined : new Float32Array(Math.min(rows, chunkRows) * cols); // (chunkRows, cols)
    const bits = job.f16Read ? new Uint16Array(Math.min(rows, chunkRows) * cols) : undefined; // (chunkRows, cols)
    const opts = { imatrix, refine };
    let reported = false;
    for (let r = 0; r < rows; r += chunkRows) {
      const m = Math.min(chunkRows, rows - r);
      let x: Float32Array;
      if (job.x) x = job.x.subarray(r * cols, (r + m) * cols);
      else {
        let h: Uint16Array;
        if (job.f16Read) job.f16Read(r * cols, (h = bits!.subarray(0, m * cols)));
        else h = job.f16!.subarray(r * cols, (r + m) * cols);
        x = f16ArrayToF32(h, scratch!.subarray(0, m * cols));
      }
      if (job.onNonFinite && !reported) reported = reportNonFinite(x, r * cols, job.onNonFinite);
      quantizeRow(type, x, out.subarray(r * rowBytes, (r + m) * rowBytes), m * cols, opts);
      progress.tick(m * cols);
    }
    return out;
  },
};

/** Calls `onNonFinite(start + i, x[i])` for the first non-finite x[i] (x − x is NaN exactly then); whether there was one. */
export function reportNonFinite(x: Float32Array, start: number, onNonFinite: (index: number, value: number) => void): boolean {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) {
      onNonFinite(start + i, v);
      return true;
    }
  }
  return false;
}
