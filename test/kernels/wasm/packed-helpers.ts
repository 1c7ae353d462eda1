// Shared setup of the packed-spec kernel tests (packed-int, packed-lut, packed-lut-q8, packed-rowdec, packed-model): the
// float64 oracle over the fake-quant weights, the error measure and its bound, quantizing a spec (k-means
// through the learned path), the layouts, running a prepared weight on every build × thread count, and the
// stories260K fake-quant model with its logits over a prefill and decode steps.
import assert from "node:assert/strict";
import { quantizeTensor, type QTensor } from "../../../src/quant/tensor.js";
import { quantizeLearned } from "../../../src/algos/learned.js";
import { lutLayout, uniformIntLayout, type LutLayout, type UniformIntLayout } from "../../../src/kernels/packed.js";
import type { Backend, PreparedWeight } from "../../../src/kernels/types.js";
import type { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { Tensor } from "../../../src/core/tensor.js";
import type { Weight } from "../../../src/core/weight.js";
import { Llama } from "../../../src/model/llama.js";
import type { Model } from "../../../src/model/weights.js";
import { VARIANTS, backend, readyBackend } from "../helpers.js";

/** f32 sums: relative to Σ|w·x| the error stays far below this */
export const TOL = 2e-6;

/** float64 oracle: out[t, r] = Σ_c ŵ[r, c]·x[t, c] over the fake-quant weights, and Σ|terms| */
export function oracle(wq: Float32Array, rows: number, cols: number, x: Float32Array, n: number): { out: Float64Array; mag: Float64Array } {
  const out = new Float64Array(n * rows), mag = new Float64Array(n * rows);
  for (let t = 0; t < n; t++) for (let r = 0; r < rows; r++) {
    let s = 0, m = 0;
    for (let c = 0; c < cols; c++) { const v = wq[r * cols + c]! * x[t * cols + c]!; s += v; m += Math.abs(v); }
    out[t * rows + r] = s; mag[t * rows + r] = m;
  }
  return { out, mag };
}

/** largest |got − want| relative to Σ|terms| */
export function worst(got: Float32Array, want: { out: Float64Array; mag: Float64Array }): number {
  let e = 0;
  for (let i = 0; i < got.length; i++) e = Math.max(e, Math.abs(got[i]! - want.out[i]!) / Math.max(want.mag[i]!, 1e-30));
  return e;
}

/** quantizeTensor, or the learned path for k-means specs (they fit their codebook) */
export function quantize(w: Float32Array, shape: [number, number], spec: string, seed = 1): QTensor {
  return spec.startsWith("kmeans") ? quantizeLearned(w, shape, spec, { seed }) : quantizeTensor(w, shape, spec);
}

/** quantize, or undefined for a shape the spec refuses (block presets need whole blocks: refused by name) */
export function quantizeOrSkip(w: Float32Array, shape: [number, number], spec: string, seed: number): QTensor | undefined {
  try {
    return quantize(w, shape, spec, seed);
  } catch (e) {
    assert.match((e as Error).message, /block|multiple|whole|divid/i, `${spec} [${shape.join("×")}]`);
    return undefined;
  }
}

export function lutOf(q: QTensor): LutLayout {
  const L = lutLayout(q);
  if ("reason" in L) throw new Error(`${q.spec}: ${L.reason}`);
  return L;
}

export function uniformOf(q: QTensor): UniformIntLayout {
  const L = uniformIntLayout(q);
  if ("reason" in L) throw new Error(`${q.spec}: ${L.reason}`);
  return L;
}

/** out = W·x for n tokens: matvec for n = 1, else matmul */
export function runPrepared(b: Backend, p: PreparedWeight, x: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * p.rows);
  if (n === 1) b.matvec(p, x, out);
  else b.matmul(p, x, n, out);
  return out;
}

/** twin applied token by token: out (n, rows) from x (n, cols) */
export function perToken(rows: number, cols: number, x: Float32Array, n: number, twin: (x: Float32Array, out: Float32Array) => void): Float32Array {
  const out = new Float32Array(n * rows);
  for (let t = 0; t < n; t++) twin(x.subarray(t * cols, (t + 1) * cols), out.subarray(t * rows, (t + 1) * rows));
  return out;
}

/** the shared test backends of every build × thread count (threads > 1 with their workers running) */
export async function* eachBackend(threads: readonly number[]): AsyncGenerator<{ b: WasmBackend; label: string }> {
  for (const v of VARIANTS) for (const t of threads) yield { b: t > 1 ? await readyBackend(v, t) : backend(v, 1), label: `${v}/t${t}` };
}

/** one mat-vec of q on each backend (prepared and released around it) */
export function matvecEach(bs: readonly Backend[], q: QTensor, spec: string, x: Float32Array): Float32Array[] {
  return bs.map((b) => {
    const p = b.prepare({ kind: "quant", q }, spec);
    const out = runPrepared(b, p, x, 1);
    b.release?.(p);
    return out;
  });
}

/** The fake-quant model: every quantized weight dequantized to a dense f32 tensor. */
export function fakeQuant(m: Model): Model {
  const weights = new Map<string, Weight>();
  for (const [k, w] of m.weights) {
    weights.set(k, w.kind === "quant" ? { kind: "dense", tensor: Tensor.fromF32(w.q.shape, w.q.dequantize()) } : w);
  }
  return { ...m, weights };
}

/** logits of a 6-token prefill, then greedy decode steps (the same tokens fed to every model) */
export function runLogits(m: Model, be: Backend, tokens: number[]): Float32Array[] {
  const llama = new Llama(m, { contextLength: 64, backend: be });
  const out: Float32Array[] = [new Float32Array(llama.prefill(tokens.slice(0, 6), 0))];
  for (let i = 6; i < tokens.length; i++) out.push(new Float32Array(llama.forward(tokens[i]!, i)));
  llama.dispose();
  return out;
}

/** max |a − b| over every step's logits */
export function maxLogitDiff(a: Float32Array[], b: Float32Array[]): number {
  let e = 0;
  for (let s = 0; s < a.length; s++) for (let i = 0; i < a[s]!.length; i++) e = Math.max(e, Math.abs(a[s]![i]! - b[s]![i]!));
  return e;
}
