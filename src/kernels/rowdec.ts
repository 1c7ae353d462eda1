/**
 * Row decoders (issue 11, "a layout without a fast kernel runs through a generic row-at-a-time decoder,
 * never a whole-tensor copy"): a weight kept in its stored form — a QTensor's own arrays, or ggml block
 * bytes — decodes any run of rows [r0, r1) to f32, giving exactly the values `dequantizeWeight` gives for
 * those rows (bit for bit). A backend decodes a bounded chunk of rows into a reusable scratch and runs its
 * f32 kernel on it, chunk after chunk (kernels/wasm/dispatch.ts `runDecoded`, kernels/ref/backend.ts).
 *
 * QTensors of every spec decode here: scalar codes of 0..16 bits or 5-per-byte trits, every granularity
 * (none, tensor, layer, channel, ichannel, group, block2d), integer or float zero points, quantized
 * (super-block) scales — whose `StoredScales.values` are already the scales dequantization multiplies by —,
 * vector codebooks, and outlier side tables (the row's dense part, then the row's outliers written over it).
 * The arithmetic is quant/tensor.ts `QTensor.dequantize`'s, element for element: x = (levelOf(c) − z)·s in
 * f64 stored to f32, or codebook[c·d + t]·s for vector codes, outliers as their f16 values.
 *
 * The decoder captures the tensor's arrays when it is made: a lazily loaded QTensor whose cache is released
 * after `prepare` (model/llama.ts) is then held once, by the decoder, and never read from its file again.
 */
import { QuantlabError } from "../core/errors.js";
import { f16BitsToF32 } from "../core/f16.js";
import type { QuantizedTensor } from "../core/weight.js";
import { dequantizeRow, hasGgmlCodec } from "../ggml/codecs.js";
import { GGML_TYPES, ggmlTypeName, type GgmlType } from "../ggml/types.js";
import { matrixDims } from "../quant/granularity.js";
import type { Granularity } from "../quant/spec.js";
import { QTensor } from "../quant/tensor.js";

/** Writes rows [r0, r1) of a (rows, cols) weight as f32 into dst[off .. off + (r1 − r0)·cols). */
export type RowsDecoder = (r0: number, r1: number, dst: Float32Array, off: number) => void;

export interface RowDecoded {
  readonly rows: number;
  readonly cols: number;
  /** bytes of the stored form the decoder holds (what a backend lists as resident) */
  readonly storedBytes: number;
  readonly decode: RowsDecoder;
}

/** Group index of element (r, c) and the column where that group's run along the row ends. */
function groupRuns(g: Granularity, cols: number): { group: (r: number, c: number) => number; runEnd: (c: number) => number } {
  switch (g.kind) {
    case "none": case "tensor": case "layer":
      return { group: () => 0, runEnd: () => cols };
    case "channel":
      return { group: (r) => r, runEnd: () => cols };
    case "group": {
      const G = g.size, per = Math.max(1, Math.ceil(cols / G));
      return { group: (r, c) => r * per + Math.floor(c / G), runEnd: (c) => Math.min(cols, (Math.floor(c / G) + 1) * G) };
    }
    case "ichannel":
      return { group: (_r, c) => c, runEnd: (c) => c + 1 };
    case "block2d": {
      const R = g.rows, C = g.cols, bc = Math.ceil(cols / C);
      return { group: (r, c) => Math.floor(r / R) * bc + Math.floor(c / C), runEnd: (c) => Math.min(cols, (Math.floor(c / C) + 1) * C) };
    }
  }
}

/**
 * Codes first .. first + n − 1 of an LSB-first `bits`-bit stream (quant/pack.ts `pack`) into dst; the
 * stream may start inside a byte. Same codes as `unpack` over the whole stream.
 */
export function unpackCodesAt(bytes: Uint8Array, bits: number, first: number, n: number, dst: Uint16Array): void {
  if (bits === 0) {
    dst.fill(0, 0, n);
    return;
  }
  const bit = first * bits;
  if (bit % 8 === 0 && (bits === 8 || bits === 4)) {
    // whole bytes from the start: no bit carry (the common int4 / int8 rows)
    const p0 = bit / 8;
    if (bits === 8) {
      for (let i = 0; i < n; i++) dst[i] = bytes[p0 + i]!;
      return;
    }
    const pairs = n >> 1;
    for (let i = 0; i < pairs; i++) {
      const b = bytes[p0 + i]!;
      dst[2 * i] = b & 15;
      dst[2 * i + 1] = b >> 4;
    }
    if (n & 1) dst[n - 1] = bytes[p0 + pairs]! & 15;
    return;
  }
  // any width ≤ 16: a code spans at most 3 bytes; bit positions relative to the first byte fit an int32 for a row
  const mask = (1 << bits) - 1;
  const p0 = Math.floor(bit / 8), sh0 = bit - 8 * p0, last = bytes.length - 1;
  for (let i = 0; i < n; i++) {
    const b = sh0 + i * bits, p = p0 + (b >>> 3);
    // bytes past the end read as 0 (the stream's last code needs none of them)
    const v = bytes[p]! | ((p < last ? bytes[p + 1]! : 0) << 8) | ((p + 1 < last ? bytes[p + 2]! : 0) << 16);
    dst[i] = (v >>> (b & 7)) & mask;
  }
}

const POW3 = [1, 3, 9, 27, 81] as const;

/** `ternary` codes first .. first + n − 1 of a 5-trits-per-byte stream (quant/pack.ts `unpackTernary5`). */
export function unpackTernaryAt(bytes: Uint8Array, first: number, n: number, dst: Uint16Array): void {
  const T = (TERNARY5 ??= ternaryTable());
  let p = Math.floor(first / 5), j = first - 5 * p, i = 0;
  for (; i < n && j > 0 && j < 5; i++, j++) dst[i] = T[bytes[p]! * 5 + j]!;
  if (j === 5) p++;
  // whole bytes: five codes each from the table
  for (; i + 5 <= n; i += 5, p++) {
    const t = bytes[p]! * 5;
    dst[i] = T[t]!; dst[i + 1] = T[t + 1]!; dst[i + 2] = T[t + 2]!; dst[i + 3] = T[t + 3]!; dst[i + 4] = T[t + 4]!;
  }
  for (let k = 0; i < n; i++, k++) dst[i] = T[bytes[p]! * 5 + k]!;
}

let TERNARY5: Uint16Array | undefined;

/** the five `ternary` codes of every byte, (256, 5): digit j is ⌊3·((byte·3^j) mod 256)/256⌋ (quant/pack.ts
 * unpackTrits5), and digit 0 is −1 (code 3), 1 is 0, 2 is +1 (unpackTernary5) */
function ternaryTable(): Uint16Array {
  const t = new Uint16Array(256 * 5);
  for (let b = 0; b < 256; b++) {
    for (let j = 0; j < 5; j++) {
      const d = (((b * POW3[j]!) & 0xff) * 3) >> 8;
      t[b * 5 + j] = d === 0 ? 3 : d - 1;
    }
  }
  return t;
}

/** A QTensor's stored parts as its row decoder reads them: typed arrays on the JS heap or views of wasm memory. */
export interface QuantRowParts {
  readonly rows: number;
  readonly cols: number;
  /** bits per code (0..16); ignored for trits */
  readonly bits: number;
  readonly trits: boolean;
  /** weights per code (vector codebooks: d > 1) */
  readonly dim: number;
  readonly granularity: Granularity;
  /** packed codes, (⌈codes·bits/8⌉) or (⌈n/5⌉) */
  readonly codes: Uint8Array;
  /** the scales dequantization multiplies by, (nGroups); undefined for granularity none */
  readonly scales: Float32Array | undefined;
  /** integer or float zero points, (nGroups) */
  readonly zeros: Uint16Array | Float32Array | undefined;
  /** dim > 1: the codewords, (levels·dim) */
  readonly codebook: Float32Array | undefined;
  /** dim = 1: levelOf(c) for every code, (max(1, 2^bits)) */
  readonly lut: Float64Array | undefined;
  /** outlier side table: ascending flat indices and their f16 bits, (k) each */
  readonly outlierIndices: Uint32Array | undefined;
  readonly outlierValues: Uint16Array | undefined;
}

/** The parts of a QuantizedTensor (any spec), read now, once. */
export function quantRowParts(q: QuantizedTensor, name = "tensor"): QuantRowParts {
  if (!(q instanceof QTensor)) throw new QuantlabError("E_UNSUPPORTED", `${name}: ${q.spec} is not a quantlab QTensor: no row decoder`);
  const s = q.specObject;
  const { rows, cols } = matrixDims(q.shape);
  const qz = q.quantizer, dim = qz.dim;
  if (dim > 1 && !q.codebook) throw new QuantlabError("E_FORMAT", `${name}: ${q.spec} has vector codes but no codebook`);
  let lut: Float64Array | undefined;
  if (dim === 1) {
    // the per-code factor, as QTensor.dequantize builds it: x = (lut[c] − z)·s in f64, stored to f32
    lut = new Float64Array(Math.max(1, 2 ** s.bits));
    for (let c = 0; c < lut.length; c++) lut[c] = qz.levelOf(c);
  }
  const o = q.outliers;
  return {
    rows, cols, bits: s.bits, trits: s.packing === "trits", dim, granularity: s.granularity,
    codes: q.codes, scales: q.scales?.values, zeros: q.zeros?.values, codebook: dim > 1 ? q.codebook : undefined, lut,
    outlierIndices: o && o.indices.length > 0 ? o.indices : undefined, outlierValues: o && o.indices.length > 0 ? o.valuesF16 : undefined,
  };
}

/** The row decoder of a QuantizedTensor (any spec); its arrays are read now, once. */
export function quantRowDecoder(q: QuantizedTensor, name = "tensor"): RowDecoded {
  const P = quantRowParts(q, name);
  return { rows: P.rows, cols: P.cols, storedBytes: q.storageBits / 8, decode: checked(P.rows, P.cols, partsRowDecoder(P)) };
}

/** Rows of a QTensor's parts as QTensor.dequantize computes them (no range checks: see `checked`). */
export function partsRowDecoder(P: QuantRowParts): RowsDecoder {
  const { cols, codes, scales, zeros, codebook, lut, dim: d, bits, trits } = P;
  const { group, runEnd } = groupRuns(P.granularity, cols);
  const perRow = cols / d; // vector codes never cross a row (checked at quantization)
  const rowCodes = new Uint16Array(perRow);
  const readRow = (r: number) => (trits ? unpackTernaryAt(codes, r * perRow, perRow, rowCodes) : unpackCodesAt(codes, bits, r * perRow, perRow, rowCodes));
  let decodeDense: RowsDecoder;
  if (d > 1) {
    const cb = codebook!;
    decodeDense = (r0, r1, dst, off) => {
      for (let r = r0; r < r1; r++) {
        readRow(r);
        const o = off + (r - r0) * cols;
        for (let v = 0; v < perRow;) {
          // a sub-vector takes the scale of its first element's group (QTensor.dequantize); groups hold whole
          // sub-vectors, so a group's run along the row is whole sub-vectors too
          const end = Math.ceil(runEnd(v * d) / d);
          codewords(dst, o, cb, d, rowCodes, v, end, scales ? scales[group(r, v * d)]! : 1);
          v = end;
        }
      }
    };
  } else if (P.granularity.kind === "ichannel") {
    // a group per column: the columns' scales and zeros once, as f64 (exact copies), for every row
    const sc = new Float64Array(cols).fill(1), zc = new Float64Array(cols);
    for (let c = 0; c < cols; c++) {
      if (scales) sc[c] = scales[c]!;
      if (zeros) zc[c] = zeros[c]!;
    }
    decodeDense = (r0, r1, dst, off) => {
      for (let r = r0; r < r1; r++) {
        readRow(r);
        columns(dst, off + (r - r0) * cols, lut!, rowCodes, cols, zc, sc);
      }
    };
  } else {
    decodeDense = (r0, r1, dst, off) => {
      for (let r = r0; r < r1; r++) {
        readRow(r);
        const o = off + (r - r0) * cols;
        for (let c = 0; c < cols;) {
          const g = group(r, c), end = runEnd(c);
          levels(dst, o, lut!, rowCodes, c, end, zeros ? zeros[g]! : 0, scales ? scales[g]! : 1);
          c = end;
        }
      }
    };
  }
  const indices = P.outlierIndices, values = P.outlierValues;
  if (!indices || !values) return decodeDense;
  return (r0, r1, dst, off) => {
    decodeDense(r0, r1, dst, off);
    // indices ascend: the first outlier at or past row r0, then every one before row r1
    const lo = r0 * cols, hi = r1 * cols;
    let a = 0, b = indices.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (indices[m]! < lo) a = m + 1;
      else b = m;
    }
    for (let j = a; j < indices.length && indices[j]! < hi; j++) dst[off + indices[j]! - lo] = f16BitsToF32(values[j]!);
  };
}

/** dst[o + c] = (lut[codes[c]] − z)·s for c in [c0, end): one group's run of a row (its own function, so the
 * loop compiles on its own, monomorphic: measured ~2× faster than the loop inlined in the row loop) */
function levels(dst: Float32Array, o: number, lut: Float64Array, codes: Uint16Array, c0: number, end: number, z: number, s: number): void {
  for (let c = c0; c < end; c++) dst[o + c] = (lut[codes[c]!]! - z) * s;
}

/** ichannel rows: dst[o + c] = (lut[codes[c]] − z[c])·s[c] for c < cols */
function columns(dst: Float32Array, o: number, lut: Float64Array, codes: Uint16Array, cols: number, z: Float64Array, s: Float64Array): void {
  for (let c = 0; c < cols; c++) dst[o + c] = (lut[codes[c]!]! - z[c]!) * s[c]!;
}

/** vector codes v in [v0, v1) of a row at one scale: dst[o + v·d + t] = codebook[codes[v]·d + t]·s */
function codewords(dst: Float32Array, o: number, codebook: Float32Array, d: number, codes: Uint16Array, v0: number, v1: number, s: number): void {
  for (let v = v0; v < v1; v++) {
    const c = codes[v]! * d, e = o + v * d;
    for (let t = 0; t < d; t++) dst[e + t] = codebook[c + t]! * s;
  }
}

/** The row decoder of ggml block bytes (rows of whole blocks), through ggml's codecs (llama.cpp's to_float). */
export function ggmlRowDecoder(type: GgmlType, shape: readonly number[], bytes: () => Uint8Array, name = "tensor"): RowDecoded {
  if (!hasGgmlCodec(type)) throw new QuantlabError("E_UNSUPPORTED", `${name}: ggml type ${ggmlTypeName(type)} has no decoder in quantlab`);
  const { rows, cols } = matrixDims(shape);
  const { blockSize, bytesPerBlock } = GGML_TYPES[type];
  if (cols % blockSize !== 0) throw new QuantlabError("E_FORMAT", `${name}: ${ggmlTypeName(type)} rows of ${cols} elements are not whole ${blockSize}-element blocks`);
  const rowBytes = (cols / blockSize) * bytesPerBlock;
  const decode: RowsDecoder = (r0, r1, dst, off) => {
    const n = (r1 - r0) * cols;
    dequantizeRow(type, bytes().subarray(r0 * rowBytes, r1 * rowBytes), dst.subarray(off, off + n), n);
  };
  return { rows, cols, storedBytes: rows * rowBytes, decode: checked(rows, cols, decode) };
}

function checked(rows: number, cols: number, decode: RowsDecoder): RowsDecoder {
  return (r0, r1, dst, off) => {
    if (!Number.isInteger(r0) || !Number.isInteger(r1) || r0 < 0 || r1 > rows || r0 > r1) throw new QuantlabError("E_ARG", `rows ${r0}..${r1} are outside 0..${rows}`);
    if (off < 0 || off + (r1 - r0) * cols > dst.length) throw new QuantlabError("E_ARG", `rows ${r0}..${r1} of ${cols} do not fit a destination of ${dst.length} at ${off}`);
    decode(r0, r1, dst, off);
  };
}

/** The kernel name listings print for a row-decoded weight (WASM listing, kernels/packed.ts packedRuntime). */
export function rowDecKernelName(): string {
  return `rowdec·f32 (row decoder, ${CHUNK_BYTES / 1024} KiB f32 chunks)`;
}

/** f32 bytes of one decoded chunk: a chunk stays in L2 between its decode and the f32 kernel */
export const CHUNK_BYTES = 256 * 1024;

/** Rows per chunk so that a chunk's f32 values take about `bytes` (at least one row). */
export function chunkRows(cols: number, bytes = CHUNK_BYTES): number {
  return Math.max(1, Math.floor(bytes / (4 * Math.max(1, cols))));
}
