/**
 * Non-finite weights (NaN, ±Inf): found before anything writes or quantizes them. A NaN weight makes
 * every logit NaN, and the encoders do not agree on what to do with one (ggml's Q8_0 scale becomes NaN,
 * an f16 conversion keeps it, a clamp turns it into a finite number), so each write path and
 * `quantize()` refuses a model holding one, naming the tensor and the first bad element, unless the
 * caller says it means it (`allowNonFinite`, the CLI's `--allow-nonfinite`).
 *
 * Dense f16/bf16 tensors are scanned on their bits (exponent all ones), f32 arrays on their values,
 * ggml blocks row by row through their decoders, QuantizedTensors through `dequantize()`. A lazily
 * loaded weight read only for the check is released again.
 */
import { QuantlabError } from "../core/errors.js";
import { isWeightLoaded, releaseWeight, weightShape, type Weight } from "../core/weight.js";
import { rowReader } from "../kernels/dequantize.js";

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
      const f = w.q.dequantize();
      const i = firstNonFiniteF32(f);
      return i >= 0 ? { bad: { index: i, value: f[i]! }, maxAbs: Infinity } : { maxAbs: maxAbsF32(f) };
    }
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
