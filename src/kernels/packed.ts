/**
 * Packed quantlab spec layouts: which QuantizedTensors run on a fused kernel as they are stored, and the
 * one place that says how such a tensor's codes, scales and zeros are laid out for the kernels.
 *
 * Family "uniform int" (kinds K_U4G / K_U8G in assembly/abi.ts): specs whose element codes c are
 * uniform integers — levelOf(c) = c + L0 for a constant L0 (int<b> sym / symfull: L0 = −2^(b−1);
 * asym with integer zero points: L0 = 0) — at 4 or 8 bits, with channel, tensor or g<N> scales
 * (any N, the last group of a row ragged when N does not divide it; N and the row even for 4 bits, so
 * every row and group starts on a byte), any scale dtype (the stored scale values are used as f32), no
 * outliers, no integer matmul (an activation part a<b> is the model's, applied to the input). The prepared form is
 *   codes   the QTensor's own bytes, unchanged: LSB-first, rows contiguous (cols·bits/8 bytes per row)
 *   scales  f32 per (row, group), row-major, ⌈cols/group⌉ per row: the stored scale value s
 *   offsets f32 per (row, group): k = L0 − z (z the group's integer zero point, 0 for sym)
 * and a weight is w = fround((c + k)·s), which is exactly the fake-quant value quant/tensor.ts
 * `dequantize` computes (c + k is a small integer, exact in f32; the product is rounded once).
 *
 * Family "lut" (kinds K_LUT4G, K_LUT1G/2G/3G, K_LUTWG): every other scalar-code spec whose weight is
 * (levelOf(c) − z)·s per (row, group) — lookup formats (nf4, fp4_e2m1, mxfp4 with its e8m0 scales, nvfp4
 * with fp8 block scales × the tensor scale, fp8 e4m3/e5m2, fp6, pow2/logsqrt2/pow2sum, ternary/binary as
 * 2/1-bit codes, learned k-means codebooks), uniform integers of 1–8 bits (sym, symfull, asym, asymf with
 * float zeros) — with channel, tensor, layer, none or g<N> scales (any N, any row length: rows and groups
 * may start inside a byte), codes packed as bits, no outliers, no integer matmul:
 *   codes   the QTensor's own bytes, unchanged (LSB-first bit stream, b bits per code)
 *   table   f64 levelOf(c) for the 2^b codes (padded with zeros to 16 entries)
 *   scales  f32 per (row, group): the stored scale values (already f32: StoredScales.values)
 *   zeros   f32 per (row, group), affine schemes only: the stored zero point (integer or float)
 * and a weight is w = fround((table[c] − z)·s) with the difference and product in f64 — literally the
 * expression quant/tensor.ts `dequantize` evaluates (its lut is levelOf in a Float64Array), so the weight
 * is the fake-quant value bit for bit even when a level is not an f32 (nf4, logsqrt2) or z is a float.
 *
 * Everything else (vector codebooks, outliers, ichannel/block2d granularity, trit packing, codes wider
 * than 8 bits) gets `reason` and runs through the row decoder (kernels/rowdec.ts) on the f32 kernel, kept
 * in its stored form.
 */
import type { QuantizedTensor } from "../core/weight.js";
import { QTensor } from "../quant/tensor.js";
import { resolveElement } from "../quant/elements.js";
import type { QuantSpec } from "../quant/spec.js";
import { f16BitsToF32, f32ToF16Bits } from "../core/f16.js";
import { QuantlabError } from "../core/errors.js";
import { rowDecKernelName } from "./rowdec.js";

export interface UniformIntLayout {
  readonly family: "uniform-int";
  /** 4 or 8 */
  readonly bits: 4 | 8;
  readonly rows: number;
  readonly cols: number;
  /** weights per scale group along a row (cols for channel/tensor scales) */
  readonly group: number;
  /** packed codes, (rows, cols·bits/8) */
  readonly codes: Uint8Array;
  /** f32 scale per (row, group), (rows, ⌈cols/group⌉) */
  readonly scales: Float32Array;
  /** f32 code offset k = L0 − z per (row, group), (rows, ⌈cols/group⌉) */
  readonly offsets: Float32Array;
}

/** Kernel name of a layout, as listings print it: "u4·g32·f32" (codes · group · activation type). */
export function uniformIntKernelName(L: Pick<UniformIntLayout, "bits" | "group" | "cols">): string {
  return `u${L.bits}·${L.group === L.cols ? "row" : `g${L.group}`}·f32x (packed spec)`;
}

/** Bytes of the prepared form (codes + scales + offsets). */
export function uniformIntBytes(L: UniformIntLayout): number {
  return L.codes.byteLength + L.scales.byteLength + L.offsets.byteLength;
}

/**
 * Does the WASM backend keep this uniform-int tensor's scales as the stored f16 bits (exact in f32) rather
 * than as f32? Yes when the spec stores f16 scales (`…:scale=f16`). Zero points keep the file's packing
 * (uniformZeroBytes), so the prepared form is the file's codes + scale + zero codes for f32 and f16 scales.
 */
export function uniformIntCompact(q: QuantizedTensor): boolean {
  return q instanceof QTensor && q.specObject.scale.dtype === "f16";
}

/** Bytes of a prepared uniform-int form's zero points: the integer zero codes at the code width (nibbles for
 * 4 bits, bytes for 8), as the file packs them; none for symmetric specs (the offset is the constant L0). */
export function uniformZeroBytes(asym: boolean, bits: number, nG: number): number {
  return asym ? Math.ceil((nG * bits) / 8) : 0;
}

/**
 * Does the WASM backend keep a lut tensor's scales as their f32 exponent bytes (1 byte per group: mxfp4 and
 * the other e8m0-scale specs)? When the spec stores e8m0 scales and rows start on a byte; prepare then checks
 * every scale is a normal power of two or 0 (else f32 scales).
 */
export function lutE8Candidate(s: QuantSpec, shape: readonly number[]): boolean {
  return s.scale.dtype === "e8m0" && s.scale.superBlock === undefined && shape.length === 2 && (shape[1]! * s.bits) % 8 === 0;
}

/**
 * The WASM backend's prepared region of a packed spec tensor, from spec and shape alone: one allocation
 * with the QTensor's code bytes first (at offset 0, `codeBytes` long), then the parameters. A loader can
 * read the codes straight into it (WasmBackend.placeQuant) and prepare fills in the rest; undefined for
 * tensors the backend would not run packed.
 */
export function packedRegion(s: QuantSpec, shape: readonly number[]): { family: "uniform-int" | "lut"; codeBytes: number; bytes: number } | undefined {
  const a64 = (x: number) => Math.ceil(x / 64) * 64;
  if (shape.length !== 2) return undefined;
  const [rows, cols] = shape as [number, number];
  const g = s.granularity;
  if (uniformIntSpecReason(s, shape) === undefined) {
    const group = g.kind === "group" ? Math.min(g.size, cols) : cols;
    const nG = rows * Math.ceil(cols / group), cb = (rows * cols * s.bits) / 8;
    return { family: "uniform-int", codeBytes: cb, bytes: a64(cb) + a64(nG * (s.scale.dtype === "f16" ? 2 : 4)) + uniformZeroBytes(s.scheme === "asym", s.bits, nG) };
  }
  if (lutSpecReason(s, shape) === undefined) {
    const group = g.kind === "group" ? Math.min(g.size, cols) : cols;
    const nG = rows * Math.ceil(cols / group), cb = Math.ceil((rows * cols * s.bits) / 8);
    const affine = s.scheme === "asym" || s.scheme === "asymf";
    return { family: "lut", codeBytes: cb, bytes: a64(cb + 16) + a64((lutE8Candidate(s, shape) ? 1 : 4) * nG) + a64(affine ? 4 * nG : 0) + 8 * lutTableLength(s.bits) };
  }
  return undefined;
}

/**
 * How the WASM backend (default options) will run a QuantizedTensor, from its spec and shape alone (reads
 * nothing): the kernel name its listing will show and the bytes it will take in wasm memory.
 */
export function packedRuntime(q: QuantizedTensor): { kernel: string; residentBytes: number; rowdec?: string } {
  const reason = uniformIntReason(q);
  const rows = q.shape.length === 2 ? q.shape[0]! : 1, cols = q.shape.at(-1) ?? 1;
  if (reason !== undefined) {
    const lr = lutReason(q);
    if (lr === undefined) {
      const t = q as QTensor;
      const { bits, group, nG, affine } = lutShape(t);
      return { kernel: lutKernelName({ bits, group, cols }), residentBytes: t.codeBytes + ((lutE8Candidate(t.specObject, t.shape) ? 1 : 4) + (affine ? 4 : 0)) * nG + 8 * lutTableLength(bits) };
    }
    // no packed kernel: the stored form runs through the row decoder (kernels/rowdec.ts), held as it is stored
    return { kernel: rowDecKernelName(), residentBytes: q.storageBits / 8, rowdec: `no packed WASM kernel (${lr})` };
  }
  const t = q as QTensor;
  const g = t.specObject.granularity;
  const group = g.kind === "group" ? Math.min(g.size, cols) : cols;
  const bits = t.specObject.bits as 4 | 8;
  const nG = rows * Math.ceil(cols / group);
  return { kernel: uniformIntKernelName({ bits, group, cols }), residentBytes: (rows * cols * bits) / 8 + (uniformIntCompact(q) ? 2 : 4) * nG + uniformZeroBytes(t.specObject.scheme === "asym", bits, nG) };
}

/**
 * Why a QuantizedTensor cannot run on the uniform-int kernels, or undefined when it can. Reads only the
 * spec and shape (a lazily loaded tensor stays unread).
 */
export function uniformIntReason(q: QuantizedTensor): string | undefined {
  if (!(q instanceof QTensor)) return "not a quantlab QTensor";
  return uniformIntSpecReason(q.specObject, q.shape);
}

/** uniformIntReason from the spec and shape alone (what a loader knows before reading the tensor). */
export function uniformIntSpecReason(s: QuantSpec, shape: readonly number[]): string | undefined {
  if (shape.length !== 2) return `shape [${shape.join(", ")}] is not a matrix`;
  const cols = shape[1]!;
  if (s.bits !== 4 && s.bits !== 8) return `${s.bits}-bit codes (fast kernels: 4, 8)`;
  if (s.scheme !== "sym" && s.scheme !== "symfull" && s.scheme !== "asym") return `scheme ${s.scheme} (fast kernels: sym, symfull, asym with integer zeros)`;
  if (s.format !== `int${s.bits}` && s.format !== `uint${s.bits}`) return `format ${s.format} is not a uniform integer grid`;
  if (s.packing !== "bits") return `packing ${s.packing}`;
  if (s.outlierPercent !== undefined) return "outlier side table";
  // an activation part (a<b>, afp8) is applied to the linear's input by the model (inputTransforms), so the
  // weights' values, and this kernel, are the same with or without it; integer matmuls run on their own kernel
  if (s.integerMatmul) return "integer matmul (runs on the int8 kernel)";
  const g = s.granularity;
  const group = g.kind === "channel" || g.kind === "tensor" || g.kind === "layer" ? cols : g.kind === "group" ? g.size : 0;
  if (group === 0) return `granularity ${g.kind}`;
  if (s.bits === 4 && (group % 2 !== 0 || cols % 2 !== 0)) return `4-bit groups of ${group} in rows of ${cols} (fast kernels: even groups and rows, whole bytes)`;
  return undefined;
}

/**
 * A uniform-int QTensor's parameters as it stores them, for writing a prepared form without building
 * per-group f32 arrays: L0 (levelOf(c) = c + L0), the stored scale values (and their f16 bits when the spec
 * keeps f16 scales), the integer zero points (asym) and which stored group each (row, group) reads.
 */
export interface UniformIntParams {
  readonly bits: 4 | 8;
  readonly rows: number;
  readonly cols: number;
  readonly group: number;
  /** groups per row, ⌈cols/group⌉; the layout has rows·perRow (row, group) parameters */
  readonly perRow: number;
  readonly l0: number;
  readonly codes: Uint8Array;
  /** stored scale values, (stored groups); undefined = 1 */
  readonly scales: Float32Array | undefined;
  /** f16 bits of the stored scales (`…:scale=f16`), else undefined */
  readonly scaleF16: Uint16Array | undefined;
  /** integer zero points z < 2^bits (asym), (stored groups); the offset is k = L0 − z */
  readonly zeros: Uint16Array | undefined;
  /** the stored group that (row, group) i reads: one (tensor), one per row (channel) or one per (row, group) */
  stored(i: number): number;
}

/** The stored parameters of a uniform-int QTensor, or a reason it has no uniform-int layout. Reads the tensor's data. */
export function uniformIntParams(q: QuantizedTensor): UniformIntParams | { reason: string } {
  const reason = uniformIntReason(q);
  if (reason) return { reason };
  const t = q as QTensor;
  const [rows, cols] = t.shape as [number, number];
  const qz = t.quantizer;
  const l0 = qz.levelOf(0);
  for (let c = 1; c < 2 ** t.specObject.bits; c++) if (qz.levelOf(c) !== c + l0) return { reason: `levels of ${t.spec} are not c + ${l0}` };
  const g = t.specObject.granularity;
  const group = g.kind === "group" ? Math.min(g.size, cols) : cols;
  const perRow = Math.ceil(cols / group);
  const zeros = t.zeros;
  if (zeros && zeros.kind !== "int") return { reason: "float zero points" };
  const nStored = t.layout.nGroups;
  const sc = t.scales;
  return {
    bits: t.specObject.bits as 4 | 8, rows, cols, group, perRow, l0, codes: t.codes,
    scales: sc?.values, scaleF16: sc?.dtype === "f16" ? sc.codes : undefined, zeros: zeros?.values,
    stored: nStored === 1 ? () => 0 : nStored === rows ? (i) => Math.floor(i / perRow) : (i) => i,
  };
}

/** The uniform-int layout of a QTensor (see the file comment), or a reason it has none. Reads the tensor's data. */
export function uniformIntLayout(q: QuantizedTensor): UniformIntLayout | { reason: string } {
  const P = uniformIntParams(q);
  if ("reason" in P) return P;
  const { rows, cols, group, perRow, l0 } = P;
  const nG = rows * perRow;
  const scales = new Float32Array(nG);
  const offsets = new Float32Array(nG);
  for (let i = 0; i < nG; i++) {
    const gi = P.stored(i);
    scales[i] = P.scales ? P.scales[gi]! : 1;
    offsets[i] = l0 - (P.zeros ? P.zeros[gi]! : 0);
  }
  return { family: "uniform-int", bits: P.bits, rows, cols, group, codes: P.codes, scales, offsets };
}

/** Code c of element i of a packed 4/8-bit stream. */
function codeAt(codes: Uint8Array, bits: 4 | 8, i: number): number {
  return bits === 8 ? codes[i]! : (codes[i >> 1]! >> ((i & 1) << 2)) & 15;
}

/**
 * Scalar reference: out[r] = Σ_c fround((code + k)·s)·x[c], summed in float64 and rounded once per row,
 * as the reference backend's f32 mat-vec sums the fake-quant weights (so the two agree bit for bit).
 */
export function matvecUniformIntRef(L: UniformIntLayout, x: Float32Array, out: Float32Array): void {
  const { rows, cols, group, codes, scales, offsets, bits } = L;
  const perRow = Math.ceil(cols / group);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let j = 0; j < perRow; j++) {
      const s = scales[r * perRow + j]!, k = offsets[r * perRow + j]!;
      const c0 = j * group, len = Math.min(group, cols - c0), base = r * cols + c0;
      for (let i = 0; i < len; i++) acc += Math.fround((codeAt(codes, bits, base + i) + k) * s) * x[c0 + i]!;
    }
    out[r] = acc;
  }
}

/** Row r of the weight as f32 values into dst[off .. off + cols) (the fake-quant values). */
export function dequantizeRowUniformInt(L: UniformIntLayout, r: number, dst: Float32Array, off: number): void {
  const { cols, group, codes, scales, offsets, bits } = L;
  const perRow = Math.ceil(cols / group);
  for (let j = 0; j < perRow; j++) {
    const s = scales[r * perRow + j]!, k = offsets[r * perRow + j]!;
    const c0 = j * group, len = Math.min(group, cols - c0), base = r * cols + c0;
    for (let i = 0; i < len; i++) dst[off + c0 + i] = Math.fround((codeAt(codes, bits, base + i) + k) * s);
  }
}

// ---------------------------------------------------------------- family "lut"

export interface LutLayout {
  readonly family: "lut";
  /** bits per code, 1..8 */
  readonly bits: number;
  readonly rows: number;
  readonly cols: number;
  /** weights per scale group along a row (cols for channel/tensor/none) */
  readonly group: number;
  /** packed codes, (rows, cols·bits/8) */
  readonly codes: Uint8Array;
  /** f64 levelOf(c), (lutTableLength(bits)), zero-padded past 2^bits */
  readonly table: Float64Array;
  /** f32 scale per (row, group), (rows, ⌈cols/group⌉) */
  readonly scales: Float32Array;
  /** f32 zero point per (row, group), affine schemes only, (rows, ⌈cols/group⌉) */
  readonly zeros: Float32Array | undefined;
}

/** Table entries the kernels read: 16 at least (the 4-bit swizzle planes), else 2^bits. */
export function lutTableLength(bits: number): number {
  return Math.max(16, 2 ** bits);
}

/** Kernel name of a lut layout, as listings print it. */
export function lutKernelName(L: Pick<LutLayout, "bits" | "group" | "cols">): string {
  const grp = L.group === L.cols ? "row" : `g${L.group}`;
  return L.bits <= 4 ? `lut${L.bits}·${grp}·swizzle·f32x (packed spec)` : `lut${L.bits}·${grp}·gather·f32x (packed spec)`;
}

/** Bytes of the prepared form (codes + scales + zeros + table). */
export function lutBytes(L: LutLayout): number {
  return L.codes.byteLength + L.scales.byteLength + (L.zeros?.byteLength ?? 0) + L.table.byteLength;
}

function lutShape(t: QTensor): { bits: number; group: number; perRow: number; nG: number; affine: boolean } {
  const s = t.specObject;
  const [rows, cols] = t.shape as [number, number];
  const g = s.granularity;
  const group = g.kind === "group" ? Math.min(g.size, cols) : cols;
  const perRow = Math.ceil(cols / group);
  return { bits: s.bits, group, perRow, nG: rows * perRow, affine: s.scheme === "asym" || s.scheme === "asymf" };
}

/**
 * Why a QuantizedTensor cannot run on the lookup-table kernels, or undefined when it can (the uniform-int
 * family, checked first by the callers, takes the int4/int8 specs it covers). Reads only the spec and shape.
 */
export function lutReason(q: QuantizedTensor): string | undefined {
  if (!(q instanceof QTensor)) return "not a quantlab QTensor";
  return lutSpecReason(q.specObject, q.shape);
}

/** lutReason from the spec and shape alone. */
export function lutSpecReason(s: QuantSpec, shape: readonly number[]): string | undefined {
  if (shape.length !== 2) return `shape [${shape.join(", ")}] is not a matrix`;
  const cols = shape[1]!;
  if (s.outlierPercent !== undefined) return "outlier side table";
  // an activation part (a<b>, afp8) is applied to the linear's input by the model (inputTransforms), so the
  // weights' values, and this kernel, are the same with or without it; integer matmuls run on their own kernel
  if (s.integerMatmul) return "integer matmul (runs on the int8 kernel)";
  if (s.packing !== "bits") return `packing ${s.packing}`;
  if (s.scheme === "mean") return "0-bit group means";
  if (!(s.bits >= 1 && s.bits <= 8)) return `${s.bits}-bit codes (table kernels: 1..8)`;
  const el = resolveElement(s.format, s.bits);
  if (el?.kind === "learned" && el.dim > 1) return `vector codebook (${el.dim} weights per code)`;
  const g = s.granularity;
  const group = g.kind === "channel" || g.kind === "tensor" || g.kind === "layer" || g.kind === "none" ? cols : g.kind === "group" ? Math.min(g.size, cols) : 0;
  if (group === 0) return `granularity ${g.kind}`;
  return undefined;
}

/** A lut QTensor's parameters as it stores them (see UniformIntParams): the f64 level table, stored scale and
 * zero values, and which stored group each (row, group) reads. */
export interface LutParams {
  readonly bits: number;
  readonly rows: number;
  readonly cols: number;
  readonly group: number;
  readonly perRow: number;
  readonly codes: Uint8Array;
  readonly table: Float64Array;
  /** stored scale values (f32), (stored groups); undefined = 1 */
  readonly scales: Float32Array | undefined;
  /** stored zero points (affine schemes), (stored groups) */
  readonly zeros: ArrayLike<number> | undefined;
  stored(i: number): number;
}

/** The stored parameters of a lut QTensor, or a reason it has no lut layout. Reads the tensor's data. */
export function lutParams(q: QuantizedTensor): LutParams | { reason: string } {
  const reason = lutReason(q);
  if (reason) return { reason };
  const t = q as QTensor;
  const [rows, cols] = t.shape as [number, number];
  const { bits, group, perRow, affine } = lutShape(t);
  const qz = t.quantizer;
  // the decode table of QTensor.dequantize: levelOf(c), kept in f64
  const table = new Float64Array(lutTableLength(bits));
  for (let c = 0; c < 2 ** bits; c++) table[c] = qz.levelOf(c);
  const nStored = t.layout.nGroups;
  // stored groups: none/one (tensor, layer), one per row (channel) or one per (row, group), in that order
  const stored = nStored <= 1 ? () => 0 : nStored === rows ? (i: number) => Math.floor(i / perRow) : (i: number) => i;
  return { bits, rows, cols, group, perRow, codes: t.codes, table, scales: t.scales?.values, zeros: affine ? (t.zeros?.values ?? new Float32Array(Math.max(1, nStored))) : undefined, stored };
}

/** The lut layout of a QTensor (see the file comment), or a reason it has none. Reads the tensor's data. */
export function lutLayout(q: QuantizedTensor): LutLayout | { reason: string } {
  const P = lutParams(q);
  if ("reason" in P) return P;
  const { bits, rows, cols, group, perRow, table } = P;
  const nG = rows * perRow;
  const scales = new Float32Array(nG);
  const zeros = P.zeros ? new Float32Array(nG) : undefined;
  for (let i = 0; i < nG; i++) {
    const gi = P.stored(i);
    const scale = P.scales ? P.scales[gi]! : 1, zero = P.zeros ? P.zeros[gi]! : 0;
    scales[i] = scale;
    if (zeros) zeros[i] = zero;
    if (scales[i] !== scale || (zeros && zeros[i] !== zero)) return { reason: `group ${gi}: scale or zero is not an f32` };
  }
  return { family: "lut", bits, rows, cols, group, codes: P.codes, table, scales, zeros };
}

/** Code of element i of an LSB-first b-bit stream. */
export function bitCodeAt(codes: Uint8Array, bits: number, i: number): number {
  const bit = i * bits, o = bit >>> 3, sh = bit & 7;
  const v = codes[o]! | ((codes[o + 1] ?? 0) << 8);
  return (v >>> sh) & ((1 << bits) - 1);
}

/**
 * Scalar reference: out[r] = Σ_c fround((table[code] − z)·s)·x[c], summed in float64 and rounded once per
 * row, as the reference backend's f32 mat-vec sums the fake-quant weights (the two agree bit for bit).
 */
export function matvecLutRef(L: LutLayout, x: Float32Array, out: Float32Array): void {
  const { rows, cols } = L;
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    dequantizeRowLut(L, r, row, 0);
    let acc = 0;
    for (let c = 0; c < cols; c++) acc += row[c]! * x[c]!;
    out[r] = acc;
  }
}

/** Row r of the weight as f32 values into dst[off .. off + cols) (the fake-quant values). */
export function dequantizeRowLut(L: LutLayout, r: number, dst: Float32Array, off: number): void {
  const { cols, group, codes, scales, zeros, table, bits } = L;
  const perRow = Math.ceil(cols / group);
  for (let j = 0; j < perRow; j++) {
    const s = scales[r * perRow + j]!, z = zeros ? zeros[r * perRow + j]! : 0;
    const c0 = j * group, len = Math.min(group, cols - c0), base = r * cols + c0;
    for (let i = 0; i < len; i++) dst[off + c0 + i] = (table[bitCodeAt(codes, bits, base + i)]! - z) * s;
  }
}

// ---------------------------------------------------------------- family "lut" × Q8 activations

/**
 * The integer form a lut layout takes with `packedActivations: "q8"` (WASM kinds K_LUT4Q8 / K_TERN2Q8),
 * groups whole 32-blocks, x quantized to Q8 per 32 as ggml does:
 * - "lut4" (any 4-bit table of finite levels: nf4, fp4_e2m1 / mxfp4 / nvfp4 when their groups are 32-multiples,
 *   k-means, int4 asymf …; also the uniform int4 specs, uniformQ8Lut): codes re-ordered per 32 as ggml nibbles
 *   (byte j = code j | code j+16 << 4), an integer table t[c] = round(A·levelOf(c)) with an unsigned form
 *   u[c] = t[c] + tableOffset in 0..4095 (the kernels dot u with the activation codes and subtract
 *   tableOffset·Σx, exact), scales s/A and mins fround(s·z) (affine only) per (row, group); a weight stands
 *   for (s/A)·t[c] − fround(s·z). A is the smallest power of two (≤ 4096) making every A·level an integer
 *   when the u span then fits 0..4095 — the table is exact (fp4 e2m1 / mxfp4: levels are halves, A = 2;
 *   integer levels, A = 1) — else A = 127 / (level span), the 7-bit grid: nf4's irrational levels (A = 63.5)
 *   are off by at most 0.5/63.5 = 7.9e-3 (tableError), i.e. |Δw| ≤ 7.9e-3·|s| per weight — 1/10 of nf4's
 *   smallest level spacing (0.0796), the same relative resolution (1/254 of the range) as the Q8 activations
 *   and 2× IQ4_NL's int8 grid step.
 *   tableBits says which kernel the u range allows: 4 (u[c] = c: the nibbles are the table), 6 (u ≤ 63: one
 *   swizzle plane, pmaddubsw as Q4_0's nibbles), 7 (u ≤ 127: one plane, each pmaddubsw widened alone),
 *   12 (u ≤ 4095: two 6-bit planes).
 * - "tern2" (ternary: levels 0, +a, unused, −a): the QTensor's 2-bit codes as they are, scales fround(a·s),
 *   exact; the kernel has no multiply on the weight side.
 * - "tern2x4" (the same, rows % 4 = 0): the same codes and scales; the WASM backend re-packs them 4 rows
 *   interleaved as u = w + 1 (K_TERN2Q8X4, pmaddubsw on the 2-bit planes), whose f32 order is lut4's.
 * - "tern2x4k" (the same, rows % 4 = 0 and rows and groups whole 256-blocks: per channel, g256, g512 …): the same codes
 *   and scales against Q8_K activations (one f32 scale per 256, as llama.cpp's TQ2_0 × Q8_K dot), K_TERN2Q8KX4; its
 *   scalar twin is matvecTernQ8KRef, not matvecLutQ8Ref.
 */
export interface LutQ8Layout {
  readonly kind: "lut4" | "tern2" | "tern2x4" | "tern2x4k" | "i8x4";
  readonly rows: number;
  readonly cols: number;
  /** weights per scale group, a multiple of 32 (the last group of a row may be shorter, whole 32-blocks) */
  readonly group: number;
  /** lut4: 16 bytes per 32 weights in ggml nibble order; tern2: the QTensor's codes (8 bytes per 32) */
  readonly codes: Uint8Array;
  /** lut4: t[c] = round(A·levelOf(c)), 16 entries */
  readonly table: Int16Array | undefined;
  /** A (lut4), 1 (tern2) */
  readonly tableScale: number;
  /** lut4: u[c] = t[c] + tableOffset lies in 0..2^tableBits − 1 (tern2: 0) */
  readonly tableOffset: number;
  /** lut4: 4 when u[c] = c, else 6, 7 or 12: the width of u (tern2: 0) */
  readonly tableBits: 0 | 4 | 6 | 7 | 12;
  /** max over codes of |t[c]/A − levelOf(c)| (0: the weight side is exact) */
  readonly tableError: number;
  /** f32 per (row, group): lut4 fround(s/A), tern2 fround(a·s) */
  readonly scales: Float32Array;
  /** f32 fround(s·z) per (row, group), affine lut4 only */
  readonly mins: Float32Array | undefined;
  /** integer zero points per (row, group) subtracted in the integer dot instead of mins (uniformQ8Layout), or undefined */
  readonly zeroCodes?: Int8Array;
}

/** Why a lut layout has no Q8-activation form, or undefined. */
export function lutQ8Reason(L: Pick<LutLayout, "bits" | "cols" | "group" | "table" | "zeros">): string | undefined {
  if (L.cols % 32 !== 0) return `rows of ${L.cols} (Q8 activations: multiples of 32)`;
  if (L.group % 32 !== 0) return `groups of ${L.group} (Q8 activations: multiples of 32)`;
  if (L.bits === 4) {
    for (let c = 0; c < 16; c++) if (!Number.isFinite(L.table[c]!)) return `level ${c} is not finite`;
    return undefined;
  }
  if (L.bits === 2 && isTernaryTable(L.table) && !L.zeros) return undefined;
  return `${L.bits}-bit codes (Q8 activations: 4-bit tables, ternary)`;
}

function isTernaryTable(t: Float64Array): boolean {
  return t[0] === 0 && t[1]! > 0 && Number.isFinite(t[1]!) && t[3] === -t[1]!;
}

/** The Q8-activation form of a lut layout (see LutQ8Layout), or a reason it has none. */
export function lutQ8Layout(L: LutLayout): LutQ8Layout | { reason: string } {
  const reason = lutQ8Reason(L);
  if (reason) return { reason };
  const { rows, cols, group } = L;
  if (L.bits === 2) {
    // code 2 has no level (NaN in the fake-quant weights); the masks would read it as 0
    // a byte holding a code 2 has a 2-bit field 0b10: bit 1 set with bit 0 clear (rows·cols is a multiple of 32: whole bytes)
    for (let o = 0; o < (rows * cols) / 4; o++) {
      const v = L.codes[o]!;
      if ((v & ~(v << 1) & 0xaa) !== 0) {
        for (let i = 4 * o; i < 4 * o + 4; i++) if (bitCodeAt(L.codes, 2, i) === 2) return { reason: `code 2 (no ternary level) at element ${i}` };
      }
    }
    const a = L.table[1]!;
    const scales = new Float32Array(L.scales.length);
    for (let i = 0; i < scales.length; i++) scales[i] = a * L.scales[i]!;
    // Q8_K activations (one scale per 256) when every group is whole super-blocks, as llama.cpp's TQ2_0 dot
    const kind = rows % 4 !== 0 ? "tern2" : cols % 256 === 0 && group % 256 === 0 ? "tern2x4k" : "tern2x4";
    return { kind, rows, cols, group, codes: L.codes, table: undefined, tableScale: 1, tableOffset: 0, tableBits: 0, tableError: 0, scales, mins: undefined };
  }
  const { table, A, tableOffset, tableBits, tableError } = lut4Table(L.table);
  const n = rows * cols;
  const codes = new Uint8Array(n / 2);
  for (let b = 0; b < n / 32; b++) {
    for (let j = 0; j < 16; j++) codes[b * 16 + j] = bitCodeAt(L.codes, 4, b * 32 + j) | (bitCodeAt(L.codes, 4, b * 32 + j + 16) << 4);
  }
  const scales = new Float32Array(L.scales.length);
  for (let i = 0; i < scales.length; i++) scales[i] = L.scales[i]! / A;
  let mins: Float32Array | undefined;
  if (L.zeros) {
    mins = new Float32Array(L.zeros.length);
    for (let i = 0; i < mins.length; i++) mins[i] = L.scales[i]! * L.zeros[i]!;
  }
  return { kind: "lut4", rows, cols, group, codes, table, tableScale: A, tableOffset, tableBits, tableError, scales, mins };
}

/** U_MAX + 1 = 2^12: the widest unsigned table the kernels take (two 6-bit swizzle planes) */
const U_MAX = 4095;

/** The integer table of 16 finite levels (see LutQ8Layout "lut4"): exact with the smallest dyadic A when
 * its span fits 0..4095, else rounded to the 7-bit grid A = 127 / (level span). */
function lut4Table(levels: Float64Array): { table: Int16Array; A: number; tableOffset: number; tableBits: 4 | 6 | 7 | 12; tableError: number } {
  const lv = Array.from(levels.subarray(0, 16));
  const span = (A: number) => { const t = lv.map((l) => Math.round(l * A)); return Math.max(...t) - Math.min(...t); };
  let A = 0;
  for (let a = 1; a <= 4096; a *= 2) {
    if (lv.every((l) => Number.isInteger(l * a))) { if (span(a) <= U_MAX) A = a; break; }
  }
  // not dyadic (nf4, k-means, logsqrt2): the levels' span over 127 steps, the resolution of the Q8
  // activations (1/254 of ±amax), so one swizzle plane and two pmaddubsw per 32 (K_LUT7Q8X4); A need not
  // be a power of two (the scales s/A are rounded to f32 once). The 12-bit planes at A = 1024 would keep nf4
  // within 4.9e-4 but measured 0.58× Q4_0's decode speed against 0.95× (docs/kernels.md).
  if (A === 0) {
    const sp = Math.max(...lv) - Math.min(...lv);
    // a constant table (sp = 0, not 0 itself: that is dyadic) keeps 7 bits of its one level
    A = sp > 0 ? 127 / sp : 127 / Math.max(...lv.map(Math.abs));
    // ties of Math.round at both ends could reach 128 steps: a hair less then
    if (span(A) > 127) A = 126 / sp;
  }
  const table = new Int16Array(16);
  let tableError = 0;
  for (let c = 0; c < 16; c++) {
    table[c] = Math.round(lv[c]! * A);
    tableError = Math.max(tableError, Math.abs(table[c]! / A - lv[c]!));
  }
  const tableOffset = -Math.min(...table);
  const u = Array.from(table, (t) => t + tableOffset);
  const tableBits = u.every((v, c) => v === c) ? 4 : Math.max(...u) <= 63 ? 6 : Math.max(...u) <= 127 ? 7 : 12;
  return { table, A, tableOffset, tableBits, tableError };
}

/**
 * A uniform int4 layout (groups and rows whole 32-blocks) as a lut layout, so `packedActivations: "q8"` runs
 * it on the lut4 Q8 kernels: w = (c + k)·s per group is (level(c) − z)·s with levels c + k0 and no zeros
 * when every group has the same offset k0 (sym, symfull: the table's unsigned form is the nibbles), else
 * levels c and zeros z = −k (asym with per-group integer zero points; the mins fround(s·z) are the
 * K_N4A32 repack's fround(−k·s)).
 */
/**
 * The Q8 form `packedActivations: "q8"` runs a uniform int4 layout on (WASM K_NIB4Q8X4*, rows % 4 = 0): the lut4 form
 * of uniformAsLut with the table u[c] = c, the scales rounded to f16 as Q4_0 keeps its d when every scale is 0 or
 * an f16 normal (|s| in 2^-14 … 65504: a scale then moves by at most 2^-11 relative; `f16` says whether it did),
 * and integer zero points (asym) as zeroCodes subtracted in the integer dot — w = s·(c − z) exactly, no mins.
 */
export function uniformQ8Layout(L: UniformIntLayout): { q8: LutQ8Layout; lut: LutLayout; f16: boolean } | { reason: string } {
  if (L.bits === 8) return uniformQ8Layout8(L);
  let T = uniformAsLut(L);
  const f16 = L.scales.every((v) => v === 0 || (Math.abs(v) >= 2 ** -14 && Math.abs(v) <= 65504));
  if (f16) T = { ...T, scales: Float32Array.from(L.scales, (v) => f16BitsToF32(f32ToF16Bits(v))) };
  const Q = lutQ8Layout(T);
  if ("reason" in Q) return Q;
  if (Q.tableBits !== 4 || Q.tableScale !== 1) return { reason: `${L.bits}-bit levels are not the nibbles` };
  if (!T.zeros) return { q8: Q, lut: T, f16 };
  if (!T.zeros.every((z) => Number.isInteger(z) && z >= -128 && z <= 127)) return { reason: "zero points are not int8" };
  return { q8: { ...Q, mins: undefined, zeroCodes: Int8Array.from(T.zeros) }, lut: T, f16 };
}

/**
 * int8 (rows % 4 = 0, 32-multiple groups) as kind "i8x4" (WASM K_I8Q8X4): codes t = c − 128 as int8, the f32 scales as
 * stored, and the zero code z' = −k − 128 per group (w = s·(c + k) = s·(t − z'), in −128…127 for k in −255…0)
 * subtracted in the integer dot, or none when every k is −128 (sym). Exact: w is the fake-quant weight.
 */
function uniformQ8Layout8(L: UniformIntLayout): { q8: LutQ8Layout; lut: LutLayout; f16: boolean } | { reason: string } {
  const { rows, cols, group } = L;
  if (cols % 32 !== 0 || group % 32 !== 0) return { reason: `groups of ${group} in rows of ${cols} (Q8 activations: multiples of 32)` };
  if (!L.offsets.every((k) => Number.isInteger(k) && k >= -255 && k <= 0)) return { reason: "offsets outside −255…0" };
  const codes = new Uint8Array(rows * cols);
  for (let i = 0; i < codes.length; i++) codes[i] = (L.codes[i]! - 128) & 0xff;
  const sym = L.offsets.every((k) => k === -128);
  const zeroCodes = sym ? undefined : Int8Array.from(L.offsets, (k) => -k - 128);
  const table = new Float64Array(16);
  const lut: LutLayout = { family: "lut", bits: 8, rows, cols, group, codes: L.codes, table, scales: L.scales, zeros: undefined };
  const q8: LutQ8Layout = { kind: "i8x4", rows, cols, group, codes, table: undefined, tableScale: 1, tableOffset: 0, tableBits: 0, tableError: 0, scales: L.scales, mins: undefined, zeroCodes };
  return { q8, lut, f16: false };
}

export function uniformAsLut(L: UniformIntLayout): LutLayout {
  const k0 = L.offsets[0] ?? 0;
  const same = L.offsets.every((k) => k === k0);
  const table = new Float64Array(16);
  for (let c = 0; c < 16; c++) table[c] = c + (same ? k0 : 0);
  return {
    family: "lut", bits: 4, rows: L.rows, cols: L.cols, group: L.group, codes: L.codes, table,
    scales: L.scales, zeros: same ? undefined : Float32Array.from(L.offsets, (k) => -k),
  };
}

/** Bytes of the prepared Q8 form (codes + scales + mins + the table's four 16-byte swizzle planes). */
export function lutQ8Bytes(Q: LutQ8Layout): number {
  return Q.codes.byteLength + Q.scales.byteLength + (Q.mins?.byteLength ?? 0) + (Q.table ? 64 : 0);
}

/** Integer weight (t[c], or −1/0/+1) of element e (row-major) of a Q8 form. */
export function lutQ8WeightCode(Q: LutQ8Layout, e: number): number {
  if (Q.kind === "i8x4") return (Q.codes[e]! << 24) >> 24;
  if (Q.kind !== "lut4") {
    const c = bitCodeAt(Q.codes, 2, e);
    return c === 0 ? 0 : c === 1 ? 1 : -1;
  }
  const b = e >> 5, j = e & 31;
  const byte = Q.codes[b * 16 + (j & 15)]!;
  return Q.table![j < 16 ? byte & 15 : byte >> 4]!;
}

/**
 * Scalar twin of the K_LUT4Q8 / K_TERN2Q8 kernels for one activation row given as Q8 (q codes, f16-rounded
 * scales d per 32, code sums per 16: kernels/ref/q8act.ts): the same exact integer dots (K_TERN2Q8: split
 * into the kernel's four i32 lanes) and the same f32 operations in the same order (assembly/lut.ts
 * dot_lut4q8 / dot_tern2q8; the 4-row interleaved kernels runLutQ8X4 repeat dot_lut4q8's per row, tern2x4
 * included), so the result is the kernel's bit for bit, on either build.
 */
export function matvecLutQ8Ref(Q: LutQ8Layout, xq: { q: Int8Array; d: Float32Array; sums16: Int32Array }, out: Float32Array): void {
  const fr = Math.fround;
  const { rows, cols, group } = Q;
  if (Q.kind === "tern2x4k") throw new QuantlabError("E_INTERNAL", "matvecLutQ8Ref: kind tern2x4k reads Q8_K activations (matvecTernQ8KRef)");
  const nb = cols / 32, gb = group / 32, nG = Math.ceil(cols / group);
  // tern: K_TERN2Q8's four f32 lanes; everything else (tern2x4 too) one scalar f32 chain per row
  const tern = Q.kind === "tern2";
  const dot = [0, 0, 0, 0], acc4 = [0, 0, 0, 0], gi4 = [0, 0, 0, 0];
  for (let r = 0; r < rows; r++) {
    acc4.fill(0);
    let acc = 0, accm = 0;
    for (let j = 0, b = 0; b < nb; j++) {
      const be = Math.min(nb, b + gb);
      gi4.fill(0);
      let gi = 0, gm = 0;
      for (; b < be; b++) {
        dot.fill(0);
        // tern2 lanes: element e of a block in i32 lane (e & 15) >> 2 (assembly/lut.ts t2dot32)
        for (let e = 0; e < 32; e++) dot[tern ? (e & 15) >> 2 : 0]! += lutQ8WeightCode(Q, r * cols + b * 32 + e) * xq.q[b * 32 + e]!;
        // zero codes: Σ (t − z)·x = Σ t·x − z·Σx, still one exact integer
        if (Q.zeroCodes) dot[0]! -= Q.zeroCodes[r * nG + j]! * (xq.sums16[2 * b]! + xq.sums16[2 * b + 1]!);
        const d = xq.d[b]!;
        if (tern) for (let k = 0; k < 4; k++) gi4[k] = fr(gi4[k]! + fr(fr(dot[k]!) * d));
        else {
          gi = fr(gi + fr(fr(dot[0]!) * d));
          if (Q.mins) gm = fr(gm + fr(d * fr(xq.sums16[2 * b]! + xq.sums16[2 * b + 1]!)));
        }
      }
      const s = Q.scales[r * nG + j]!;
      if (tern) for (let k = 0; k < 4; k++) acc4[k] = fr(acc4[k]! + fr(gi4[k]! * s));
      else {
        acc = fr(acc + fr(gi * s));
        if (Q.mins) accm = fr(accm + fr(Q.mins[r * nG + j]! * gm));
      }
    }
    out[r] = tern ? fr(fr(acc4[0]! + acc4[1]!) + fr(acc4[2]! + acc4[3]!)) : fr(acc - accm);
  }
}

/** bytes of one ggml block_q8_K: d f32 @0, qs int8[256] @4, bsums int16[16] @260 (ggml-common.h) */
const Q8K_BLOCK_BYTES = 292;

/**
 * Scalar twin of K_TERN2Q8KX4 (assembly/lut.ts runTernQ8KX4) for one activation row given as ggml block_q8_K bytes
 * (cols/256 blocks, as ggml/kquants.ts quantizeQ8_KRef writes them and the WASM quantize_act_q8k reproduces): per row
 * and super-block one exact integer dot Σ w·x (the kernel's Σ (w + 1)·x − Σx), then per group gi += f32(dot)·d per
 * super-block and acc += gi·s, all rounded to f32 in the kernel's order, so the result is the kernel's bit for bit.
 */
export function matvecTernQ8KRef(Q: LutQ8Layout, xk: Uint8Array, out: Float32Array): void {
  const fr = Math.fround;
  const { rows, cols, group } = Q;
  if (Q.kind !== "tern2x4k") throw new QuantlabError("E_INTERNAL", `matvecTernQ8KRef: kind ${Q.kind} (tern2x4k only)`);
  const nsb = cols / 256, gs = group / 256, nG = Math.ceil(cols / group);
  if (xk.length < nsb * Q8K_BLOCK_BYTES) throw new QuantlabError("E_INTERNAL", `matvecTernQ8KRef: ${xk.length} bytes of Q8_K for ${cols} columns`);
  const dv = new DataView(xk.buffer, xk.byteOffset, xk.byteLength);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let j = 0, sb = 0; sb < nsb; j++) {
      const se = Math.min(nsb, sb + gs);
      let gi = 0;
      for (; sb < se; sb++) {
        const o = sb * Q8K_BLOCK_BYTES;
        let dot = 0;
        for (let e = 0; e < 256; e++) dot += lutQ8WeightCode(Q, r * cols + sb * 256 + e) * ((xk[o + 4 + e]! << 24) >> 24);
        gi = fr(gi + fr(fr(dot) * dv.getFloat32(o, true)));
      }
      acc = fr(acc + fr(gi * Q.scales[r * nG + j]!));
    }
    out[r] = acc;
  }
}
