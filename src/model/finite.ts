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
  for (let i = 0; i < a.length; i++) if ((a[i]! & exponentMask) === exponentMask) return i;
  return -1;
}

/**
 * The first non-finite element of a weight, or undefined. Reads the weight; a lazily loaded weight this
 * brought in is released again unless `keep` (a writer that reads it next anyway).
 */
export function findNonFinite(w: Weight, name = "tensor", keep = false): NonFinite | undefined {
  const wasLoaded = keep || isWeightLoaded(w);
  try {
    if (w.kind === "dense") {
      const t = w.tensor;
      const d = t.data;
      let i = -1;
      if (t.dtype === "f32") i = firstNonFiniteF32(d as Float32Array);
      else if (t.dtype === "f16") i = firstSpecialBits(d as Uint16Array, 0x7c00);
      else if (t.dtype === "bf16") i = firstSpecialBits(d as Uint16Array, 0x7f80);
      else return undefined; // integer dtypes hold no NaN
      if (i < 0) return undefined;
      return { index: i, value: t.dtype === "f32" ? (d as Float32Array)[i]! : specialValue(d[i]!, t.dtype) };
    }
    if (w.kind === "quant") {
      const f = w.q.dequantize();
      const i = firstNonFiniteF32(f);
      return i < 0 ? undefined : { index: i, value: f[i]! };
    }
    const shape = weightShape(w);
    const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
    const rows = cols === 0 ? 0 : shape.reduce((a, b) => a * b, 1) / cols;
    const read = rowReader(w, name);
    const row = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      read(r, row, 0);
      const i = firstNonFiniteF32(row);
      if (i >= 0) return { index: r * cols + i, value: row[i]! };
    }
    return undefined;
  } finally {
    if (!wasLoaded) releaseWeight(w);
  }
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
 * (row r, column c) is NaN; …`. `what` says what was refused (e.g. "refusing to write it").
 */
export function checkFiniteWeight(w: Weight, name: string, where: string, what: string, keep = false): void {
  const bad = findNonFinite(w, name, keep);
  if (!bad) return;
  throw new QuantlabError(
    "E_VALUE",
    `${where}: ${describeElement(name, weightShape(w), bad.index)} is ${bad.value}; ${what} (--allow-nonfinite / allowNonFinite: true to go ahead anyway)`,
  );
}
