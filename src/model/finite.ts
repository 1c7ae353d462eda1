/**
 * Non-finite weights (NaN, ±Inf): found before anything writes or quantizes them. A NaN weight makes
 * every logit NaN, and the encoders do not agree on what to do with one (ggml's Q8_0 scale becomes NaN,
 * an f16 conversion keeps it, a clamp turns it into a finite number), so each write path and
 * `quantize()` refuses a model holding one, naming the tensor and the first bad element, unless the
 * caller says it means it (`allowNonFinite`, the CLI's `--allow-nonfinite`).
 *
 * Dense f16/bf16 tensors are scanned on their bits (exponent all ones), f32 arrays on their values,
 * ggml blocks row by row through their decoders, QuantizedTensors through their row decoders, a chunk of
 * rows at a time (kernels/rowdec.ts). A lazily
 * loaded weight read only for the check is released again.
 */
import { QuantlabError } from "../core/errors.js";
import { isWeightLoaded, releaseWeight, weightShape, type Weight } from "../core/weight.js";
import { rowReader } from "../kernels/dequantize.js";
import { chunkRows, quantRowDecoder } from "../kernels/rowdec.js";
import { BLOCK_FIELD_BYTES, GGML_TYPES, GgmlType } from "../ggml/types.js";

export interface NonFinite {
  /** flat element index (row-major) */
  index: number;
  value: number;
}

/** Largest |x| of f32 values with no NaN (for the overflow bound of io/weights-encode.ts). */
function maxAbsF32(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v > m) m = v;
    else if (-v > m) m = -v;
  }
  return m;
}

/** First index i with a non-finite a[i], or -1 (x − x is 0 for every finite x, NaN otherwise). */
export function firstNonFiniteF32(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}

/** First index whose f16 (mask 0x7c00) or bf16 (mask 0x7f80) bits have an all-ones exponent, or -1. */
function firstSpecialBits(a: Uint16Array, exponentMask: number): number {
  // two values per 32-bit word (little-endian: element 2k in the low half), then the exact index
  const n2 = a.byteOffset % 4 === 0 ? a.length >> 1 : 0;
  if (n2 > 0) {
    const w = new Uint32Array(a.buffer, a.byteOffset, n2);
    const lo = exponentMask, hi = (exponentMask << 16) >>> 0;
    for (let k = 0; k < n2; k++) {
      const v = w[k]!;
      if ((v & lo) === lo || ((v & hi) >>> 0) === hi) return (a[2 * k]! & lo) === lo ? 2 * k : 2 * k + 1;
    }
  }
  for (let i = 2 * n2; i < a.length; i++) if ((a[i]! & exponentMask) === exponentMask) return i;
  return -1;
}

/** What a scan of a weight found: the first non-finite element, or the largest magnitude. */
export interface WeightScan {
  bad?: NonFinite;
  /** max |x| when every element is finite (an upper bound for f16 and bf16: their largest finite value) */
  maxAbs: number;
}

const F16_MAX = 65504;

/**
 * Scans a weight for NaN/Inf and its largest magnitude. Reads the weight; a lazily loaded weight this
 * brought in is released again unless `keep` (a writer that reads it next anyway).
 */
export function scanWeight(w: Weight, name = "tensor", keep = false): WeightScan {
  const wasLoaded = keep || isWeightLoaded(w);
  try {
    if (w.kind === "dense") {
      const t = w.tensor;
      const d = t.data;
      if (t.dtype === "f32") {
        const i = firstNonFiniteF32(d as Float32Array);
        return i >= 0 ? { bad: { index: i, value: (d as Float32Array)[i]! }, maxAbs: Infinity } : { maxAbs: maxAbsF32(d as Float32Array) };
      }
      if (t.dtype === "f16" || t.dtype === "bf16") {
        const i = firstSpecialBits(d as Uint16Array, t.dtype === "f16" ? 0x7c00 : 0x7f80);
        // the bound without a second pass: f16 holds nothing above 65504; bf16 spans f32's range
        return i >= 0 ? { bad: { index: i, value: specialValue(d[i]!, t.dtype) }, maxAbs: Infinity } : { maxAbs: t.dtype === "f16" ? F16_MAX : 3.4e38 };
      }
      return { maxAbs: Infinity }; // integer dtypes hold no NaN; no bound claimed
    }
    if (w.kind === "quant") {
      // through the row decoder, a chunk of rows at a time (kernels/rowdec.ts): no whole-tensor f32 copy
      const D = quantRowDecoder(w.q, name);
      const step = Math.min(Math.max(D.rows, 1), chunkRows(D.cols));
      const f = new Float32Array(step * D.cols);
      let maxAbs = 0;
      for (let r0 = 0; r0 < D.rows; r0 += step) {
        const r1 = Math.min(D.rows, r0 + step), chunk = f.subarray(0, (r1 - r0) * D.cols);
        D.decode(r0, r1, chunk, 0);
        const i = firstNonFiniteF32(chunk);
        if (i >= 0) return { bad: { index: r0 * D.cols + i, value: chunk[i]! }, maxAbs: Infinity };
        maxAbs = Math.max(maxAbs, maxAbsF32(chunk));
      }
      return { maxAbs };
    }
    // ggml blocks: finite exactly when every f16 field is (see blockF16Offsets); only a bad block is decoded,
    // to name its element. No magnitude bound is claimed on this path (writers that re-encode check the output).
    const f16At = blockF16Offsets(w.type);
    if (f16At && !hasSpecialF16Field(w.data, GGML_TYPES[w.type].bytesPerBlock, f16At)) return { maxAbs: Infinity };
    const shape = weightShape(w);
    const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
    const rows = cols === 0 ? 0 : shape.reduce((a, b) => a * b, 1) / cols;
    const read = rowReader(w, name);
    const row = new Float32Array(cols);
    let maxAbs = 0;
    for (let r = 0; r < rows; r++) {
      read(r, row, 0);
      const i = firstNonFiniteF32(row);
      if (i >= 0) return { bad: { index: r * cols + i, value: row[i]! }, maxAbs: Infinity };
      maxAbs = Math.max(maxAbs, maxAbsF32(row));
    }
    return { maxAbs };
  } finally {
    if (!wasLoaded) releaseWeight(w);
  }
}

/**
 * Byte offsets of the f16 fields inside one block of `t`, when the block's values are finite exactly when
 * these fields are: every ggml block type whose only float fields are f16 decodes as f16 scale(s)/min(s)
 * times small integers (ggml-quants.c dequantize_row_*: codes ≤ 8 bits, sub-scales ≤ 8 bits), so a finite
 * scale gives at most 65504 · 2⁸ · 2⁸ — far inside f32 — and a NaN/Inf scale makes its elements non-finite
 * (the one exception, a code or sub-scale of 0 times an infinite scale, gives NaN: still non-finite, as the
 * decoded scan finds). F16 itself is one f16 field. Undefined for types with f32 fields (Q8_K), BF16 and F32,
 * and types without a layout; those are decoded.
 */
export function blockF16Offsets(t: GgmlType): number[] | undefined {
  if (t === GgmlType.BF16 || t === GgmlType.F32) return undefined;
  const layout = GGML_TYPES[t]?.layout;
  if (!layout) return undefined;
  const out: number[] = [];
  let o = 0;
  for (const f of layout) {
    if (f.type === "f32") return undefined;
    if (f.type === "f16") for (let i = 0; i < f.count; i++) out.push(o + 2 * i);
    o += BLOCK_FIELD_BYTES[f.type] * f.count;
  }
  return out.length > 0 ? out : undefined;
}

/** Whether any block's f16 field at `offsets` has an all-ones exponent (Inf or NaN). */
function hasSpecialF16Field(data: Uint8Array, bytesPerBlock: number, offsets: readonly number[]): boolean {
  const n = data.length - (data.length % bytesPerBlock);
  for (const o of offsets) {
    // the high byte of a little-endian f16 holds the exponent's 5 bits at 0x7c
    for (let b = o + 1; b < n; b += bytesPerBlock) if ((data[b]! & 0x7c) === 0x7c) return true;
  }
  return false;
}

/** The first non-finite element of a weight, or undefined (scanWeight). */
export function findNonFinite(w: Weight, name = "tensor", keep = false): NonFinite | undefined {
  return scanWeight(w, name, keep).bad;
}

function specialValue(bits: number, dtype: "f16" | "bf16"): number {
  const mantissa = dtype === "f16" ? bits & 0x3ff : bits & 0x7f;
  if (mantissa !== 0) return NaN;
  return bits & 0x8000 ? -Infinity : Infinity;
}

/** `blk.0.attn_q.weight` element 1234 (row 19, column 18) */
export function describeElement(name: string, shape: readonly number[], index: number): string {
  if (shape.length < 2) return `tensor "${name}" element ${index}`;
  const cols = shape[shape.length - 1]!;
  return `tensor "${name}" element ${index} (row ${Math.floor(index / cols)}, column ${index % cols})`;
}

/**
 * Throws E_VALUE when the weight holds a NaN or an infinity: `<where>: tensor "<name>" element i
 * (row r, column c) is NaN; …`. `what` says what was refused (e.g. "refusing to write it"). Returns the
 * weight's largest magnitude (WeightScan.maxAbs).
 */
export function checkFiniteWeight(w: Weight, name: string, where: string, what: string, keep = false): number {
  const { bad, maxAbs } = scanWeight(w, name, keep);
  if (!bad) return maxAbs;
  throw new QuantlabError(
    "E_VALUE",
    `${where}: ${describeElement(name, weightShape(w), bad.index)} is ${bad.value}; ${what} (--allow-nonfinite / allowNonFinite: true to go ahead anyway)`,
  );
}
