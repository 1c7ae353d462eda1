/**
 * Decode lookup tables: every code's value in one typed array, for hot loops (dequantize, kernels).
 * Built on first use per format and cached; formats wider than 16 bits have no table.
 */
import { QuantlabError } from "../core/errors.js";
import type { Format } from "./types.js";

const cache64 = new WeakMap<Format, Float64Array>();
const cache32 = new WeakMap<Format, Float32Array>();

/** value of every code 0 … 2^bits − 1 (NaN for NaN/unused codes), float64 (exact) */
export function decodeLut(f: Format): Float64Array {
  let t = cache64.get(f);
  if (!t) {
    if (f.bits > 16) throw new QuantlabError("E_ARG", `decodeLut: ${f.name} has ${f.bits}-bit codes, too many for a table`);
    t = new Float64Array(2 ** f.bits);
    for (let c = 0; c < t.length; c++) t[c] = f.decode(c);
    cache64.set(f, t);
  }
  return t;
}

/** the same table rounded to f32 (exact for every float format up to fp16/bf16, every int grid to 16 bits, NF4) */
export function decodeLutF32(f: Format): Float32Array {
  let t = cache32.get(f);
  if (!t) {
    t = Float32Array.from(decodeLut(f));
    cache32.set(f, t);
  }
  return t;
}
