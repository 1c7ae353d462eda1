// Shared helpers for the kernel tests: backends under test, weights in every type, the scalar oracle.
import { setFlagsFromString } from "node:v8";
import { readFileSync } from "node:fs";
// Node 20 keeps relaxed SIMD behind a flag; V8 flags are process-wide, so set it before any wasm compiles
// (workers share the process flags). On Node ≥ 22 it is on already.
setFlagsFromString("--experimental-wasm-relaxed-simd");

import { Tensor } from "../../src/core/tensor.js";
import { f32ToF16Bits } from "../../src/core/f16.js";
import { GgmlType, ggmlTypeName } from "../../src/ggml/types.js";
import { dequantizeRow, quantizeRow } from "../../src/ggml/codecs.js";
import { dataPath } from "../../src/io/node/data.js";
import { dequantizeActivationsQ8, quantizeActivationsQ8Ref } from "../../src/kernels/ref/q8act.js";
import { wasmVariantSupported, type WasmVariant } from "../../src/kernels/wasm/module.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../../src/kernels/wasm/backend.js";
import { REPACK } from "../../src/kernels/wasm/layouts.js";
import { WasmPrepared, activationForm } from "../../src/kernels/wasm/dispatch.js";
import { quantizeQ8_KRef } from "../../src/ggml/kquants.js";
import type { PreparedWeight } from "../../src/kernels/types.js";
import type { Weight } from "../../src/core/weight.js";

export const VARIANTS: WasmVariant[] = (["simd", "relaxed"] as WasmVariant[]).filter((v) => wasmVariantSupported(v));

/** ggml types with a WASM kernel (every row of REPACK) */
export const QUANT_TYPES: GgmlType[] = Object.keys(REPACK).map(Number) as GgmlType[];

const cache = new Map<string, WasmBackend>();
/** One backend per (variant, threads), shared across a test file; dispatches even tiny jobs. */
export function backend(variant: WasmVariant, threads: number): WasmBackend {
  const key = `${variant}/${threads}`;
  let b = cache.get(key);
  if (!b) {
    b = createNodeWasmBackend({ variant, threads, minParallelBytes: 0, watchdogMs: 20000 });
    cache.set(key, b);
  }
  return b;
}

/** The backend with all its workers running (so the threaded path is really exercised). */
export async function readyBackend(variant: WasmVariant, threads: number): Promise<WasmBackend> {
  const b = backend(variant, threads);
  if (!(await b.ready(20000))) throw new Error(`workers of ${variant}/${threads} did not start within 20 s`);
  return b;
}

export function disposeAll(): void {
  for (const b of cache.values()) b.dispose();
  cache.clear();
}

/** Deterministic uniform floats in [-1, 1) (xorshift32). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

let stories: Float32Array | undefined;
/** stories260K's f32 weights (llama2.c file: 28-byte header, then f32 weights). */
export function storiesWeights(): Float32Array {
  if (!stories) {
    const b = readFileSync(dataPath("stories260K", "stories260K.bin"));
    stories = new Float32Array(b.buffer.slice(b.byteOffset + 28, b.byteOffset + b.length - ((b.length - 28) % 4)));
  }
  return stories;
}

export interface TestWeight {
  label: string;
  weight: Weight;
  rows: number;
  cols: number;
  /** the f32 values the weight stands for (ggml dequantizeRow for ggml types) */
  values: Float32Array;
  /** whether the kernel quantizes activations to Q8 */
  q8: boolean;
}

export function denseWeight(dtype: "f32" | "f16", rows: number, cols: number, values: Float32Array): TestWeight {
  if (dtype === "f32") return { label: `f32 ${rows}×${cols}`, weight: { kind: "dense", tensor: Tensor.fromF32([rows, cols], values) }, rows, cols, values, q8: false };
  const h = new Uint16Array(values.length);
  for (let i = 0; i < h.length; i++) h[i] = f32ToF16Bits(values[i]!);
  const t = new Tensor("f16", [rows, cols], h);
  return { label: `f16 ${rows}×${cols}`, weight: { kind: "dense", tensor: t }, rows, cols, values: t.toF32(), q8: false };
}

export function ggmlWeight(type: GgmlType, rows: number, cols: number, src: Float32Array): TestWeight {
  const n = rows * cols;
  const rp = REPACK[type]!;
  const data = new Uint8Array((n / rp.blockSize) * rp.bytesPerBlock);
  quantizeRow(type, src, data, n);
  const values = new Float32Array(n);
  dequantizeRow(type, data, values, n);
  return { label: `${ggmlTypeName(type)} ${rows}×${cols}`, weight: { kind: "ggml", type, shape: [rows, cols], data }, rows, cols, values, q8: true };
}

/** x as the Q8_K activations the k-quant X4 kernels read (quantize_row_q8_K_ref), decoded */
function q8kRoundTrip(x: Float32Array): Float32Array {
  const n = x.length;
  const b = new Uint8Array((n / 256) * 292);
  for (let s = 0; s < n / 256; s++) quantizeQ8_KRef(x, 256 * s, b, 292 * s);
  const out = new Float32Array(n);
  dequantizeRow(GgmlType.Q8_K, b, out, n);
  return out;
}

/** Oracle: out[t·rows + r] = Σ_c W[r,c]·x̂[t,c] in float64, x̂ = x quantized as the kernel quantizes it —
 * Q8_0 per 32 for quantized kernels (the scalar reference of kernels/ref), Q8_K per 256 for the kinds that
 * read Q8_K (`prepared`'s kind: dispatch.ts activationForm) — plus Σ|terms| per output for the tolerance. */
export function oracle(w: TestWeight, x: Float32Array, n: number, prepared?: PreparedWeight): { out: Float64Array; mag: Float64Array } {
  const { rows, cols, values } = w;
  const out = new Float64Array(n * rows);
  const mag = new Float64Array(n * rows);
  const q8k = prepared instanceof WasmPrepared && activationForm(prepared.kind) === "q8k";
  for (let t = 0; t < n; t++) {
    let xr = x.subarray(t * cols, (t + 1) * cols);
    if (q8k) xr = q8kRoundTrip(xr);
    else if (w.q8) xr = dequantizeActivationsQ8(quantizeActivationsQ8Ref(xr));
    for (let r = 0; r < rows; r++) {
      let s = 0, m = 0;
      for (let c = 0; c < cols; c++) {
        const p = values[r * cols + c]! * xr[c]!;
        s += p;
        m += Math.abs(p);
      }
      out[t * rows + r] = s;
      mag[t * rows + r] = m;
    }
  }
  return { out, mag };
}

/** Largest |got − want| / (Σ|terms| + tiny) over all outputs, with where it happened. */
export function worstRelError(got: Float32Array, want: { out: Float64Array; mag: Float64Array }): { err: number; at: number } {
  let err = 0, at = -1;
  for (let i = 0; i < want.out.length; i++) {
    const e = Math.abs(got[i]! - want.out[i]!) / (want.mag[i]! + 1e-30);
    if (!(e <= err)) { err = e; at = i; }
  }
  return { err, at };
}
