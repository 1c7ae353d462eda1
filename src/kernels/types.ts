/**
 * One kernel interface, several backends. `ref` (plain TS, kernels/ref) defines the right answer;
 * `wasm` (AssemblyScript SIMD, kernels/wasm) must agree with it within float rounding.
 * A backend first `prepare`s a Weight (it may repack it, or copy it into WebAssembly memory), then runs
 * mat-vec / mat-mat on the prepared form. Calls are synchronous (workers block the caller with Atomics).
 */
import type { RowReader } from "./dequantize.js";
import { addRmsnormRef, swigluRef } from "./ref/rows.js";
import type { Weight } from "../core/weight.js";

export interface PreparedWeight {
  /** output features */
  readonly rows: number;
  /** input features */
  readonly cols: number;
  /** bytes this prepared weight occupies (what one mat-vec streams) */
  readonly bytes: number;
}

/** One mat-vec of a batch: out = W·x. */
export interface MatvecJob {
  w: PreparedWeight;
  /** (cols) */
  x: Float32Array;
  /** (rows) */
  out: Float32Array;
}

/**
 * The attention KV cache behind a small interface, so a quantized cache (int8/fp8/… keys and values,
 * model/kv-quant.ts) or one in a backend's own memory (the WASM backend's) can replace the f32 one
 * (model/kv-cache.ts) without touching the forward pass: attention only asks for q·K scores and a
 * probability-weighted sum of V rows, which a packed cache computes on its layout — or, when the cache
 * offers it, the whole softmax attention of a chunk at once (`attend`).
 */
export interface KvCache {
  readonly nLayers: number;
  /** positions the cache holds */
  readonly capacity: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** stores position `pos`'s keys and values of one layer; k, v: (nKvHeads·headDim) */
  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void;
  /** out[t] = q[qOff..qOff+headDim) · K[layer, t, kvHead] for t < n;  out: (≥ n) */
  scores(layer: number, kvHead: number, q: Float32Array, qOff: number, n: number, out: Float32Array): void;
  /** out[outOff..outOff+headDim) = Σ_{t<n} p[t] · V[layer, t, kvHead];  p: (≥ n) */
  mix(layer: number, kvHead: number, p: Float32Array, n: number, out: Float32Array, outOff: number): void;
  /**
   * Optional fast path: causal softmax attention of n query positions pos0 … pos0+n−1 of one layer, whose
   * keys and values are stored. For position i and head h (KV head ⌊h·nKvHeads/nHeads⌋), with
   * s_t = fround(q[i,h]·K[t]) / fround(√headDim) for t ≤ pos0+i, out[i,h] = Σ_t softmax(s)_t · V[t]
   * (llama2.c run.c's order). q, out: (n, nHeads·headDim). Without it, callers run `scores`, a softmax
   * and `mix` per head.
   */
  attend?(layer: number, q: Float32Array, pos0: number, n: number, nHeads: number, out: Float32Array): void;
  /** forgets every position (a fresh sequence) */
  reset(): void;
  /** gives back memory held outside the JS heap (a backend's); the cache must not be used afterwards */
  dispose?(): void;
  /** bytes held */
  readonly bytes: number;
}

export type KvCacheFactory = (nLayers: number, capacity: number, nKvHeads: number, headDim: number) => KvCache;

/**
 * An int8 matrix held by a backend for integer-only linears (model/integer-linear.ts): `dots` sets
 * acc[r] = Σ_c W[r,c]·x[c] exactly in int32 for int8 activation codes x (cols). The caller guarantees that
 * no sum overflows int32 (cols · max|w| · max|x| < 2^31).
 */
export interface Int8Rows {
  readonly rows: number;
  readonly cols: number;
  dots(x: Int8Array, acc: Int32Array): void;
  /** gives the backend's memory back; the matrix must not be used afterwards */
  release(): void;
}

/** The reference int8 row dots (plain TypeScript): what every backend's Int8Rows must equal exactly. */
export function int8RowsRef(w: Int8Array, rows: number, cols: number): Int8Rows {
  return {
    rows, cols,
    dots(x: Int8Array, acc: Int32Array): void {
      for (let r = 0; r < rows; r++) {
        let t = 0;
        for (let c = 0, o = r * cols; c < cols; c++) t += w[o + c]! * x[c]!;
        acc[r] = t;
      }
    },
    release(): void {},
  };
}

export interface Backend {
  readonly name: string;
  /**
   * True when the prepared weight never reads the weight again (`prepare` copies or repacks it into
   * memory of its own, runs bytes already placed there, or holds the arrays it read — a row decoder):
   * a lazily read weight's cache can then be let go after preparing it, so a model is not held twice.
   */
  readonly preparesCopies?: boolean;
  prepare(w: Weight, name?: string): PreparedWeight;
  /** out[r] = Σ_c W[r,c]·x[c];  x: (cols), out: (rows) */
  matvec(w: PreparedWeight, x: Float32Array, out: Float32Array): void;
  /** OUT = X·Wᵀ;  x: (n, cols) row-major, out: (n, rows) */
  matmul(w: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void;
  /**
   * Several mat-vecs at once (Q/K/V, or an FFN's gate and up): a threaded backend runs them in one
   * dispatch, and jobs that share the same `x` array quantize it once. Optional: callers fall back to
   * `matvec` per job (see `matvecMany` below).
   */
  matvecMany?(jobs: readonly MatvecJob[]): void;
  /**
   * Several matmuls of n tokens at once (Q/K/V, or gate and up, in prefill): one dispatch, and jobs that share the
   * same `x` array copy and quantize it once; each job's numbers are those of its own `matmul`. Optional: callers
   * fall back to `matmul` per job (see `matmulMany` below).
   */
  matmulMany?(jobs: readonly MatvecJob[], n: number): void;
  /**
   * Row access through a prepared weight, for backends that lay a weight's bytes out anew in place
   * (the WASM backend interleaves Q4_0/Q8_0 rows): a tied embedding table must then be read through
   * the backend, not from the file's layout. Undefined when the weight's own bytes are still valid.
   */
  rowReader?(w: PreparedWeight): RowReader | undefined;
  /**
   * Gives back what `prepare` took for this weight (the WASM backend's memory is reused by later
   * prepares); the weight must not be used afterwards. For weights prepared for a short time, such as
   * calibration's per-block f32 linears. The reference backend holds nothing beyond the JS object.
   */
  release(w: PreparedWeight): void;
  /**
   * gate[i] ← silu(gate[i])·up[i] for i < n (SwiGLU) in the backend's own kernel. Optional: callers go
   * through `swiglu` below, which falls back to the reference (kernels/ref/rows.ts).
   */
  swiglu?(gate: Float32Array, up: Float32Array, n: number): void;
  /**
   * x ← x + y (when y is given), then out = rmsnorm(x) ⊙ w for n rows of `dim` (out may be y), in the
   * backend's own kernel. Optional: callers go through `addRmsnorm` below.
   */
  addRmsnorm?(x: Float32Array, y: Float32Array | undefined, w: Float32Array, out: Float32Array, n: number, dim: number, eps: number): void;
  /**
   * A KV cache in this backend's memory whose `attend` runs there (the WASM backend: SIMD, split over its
   * worker pool), or undefined when it cannot hold one of this size. Optional: the forward pass then uses
   * the TypeScript f32 cache.
   */
  kvCache?(nLayers: number, capacity: number, nKvHeads: number, headDim: number): KvCache | undefined;
  /**
   * An int8 matrix in this backend's memory for integer-only linears (the WASM backend: SIMD int8·int8 →
   * int32). Optional: callers fall back to `int8RowsRef`.
   */
  int8Rows?(w: Int8Array, rows: number, cols: number, name: string): Int8Rows;
  /** float64 dense kernels for GPTQ's linear algebra (LinalgKernels below); optional: callers fall back
   * to the reference (algos/linalg.ts RefLinalg) */
  linalg?(): LinalgKernels;
  /**
   * The weight as an operand of an integer calibration GEMM (imatrix `--imatrix-forward int`): symmetric integer
   * codes |q| ≤ qmax per row, each token of x quantized the same way by `matmul`, products summed exactly.
   * Optional: only the WASM backend has it (kernels/ref/igemm.ts is its reference twin).
   */
  prepareCalibration?(w: Weight, name: string, qmax: number): PreparedWeight;
  /** sums[j] += Σ_i x[i, j]² in f64, rows in order (importance-matrix statistics: ImatrixAccumulator's own loop's
   * bits). Optional: the accumulator falls back to its TypeScript loop. */
  sumSquares?(x: Float32Array, n: number, width: number, sums: Float64Array): void;
  /**
   * Set when the backend's `kvCache` is part of its arithmetic (integer-only attention): the forward pass then
   * refuses a KV cache from elsewhere instead of silently running another attention. The text names why.
   */
  readonly ownsAttention?: string;
  /**
   * RoPE in the backend's own kernel, when it can run it on these arrays: rotates the first rd values of every head
   * (hd apart) of x[off .. off + width) by the angles at cos/sin[tab + j] — interleaved pairs, or NeoX halves — with
   * the bits of model/llama.ts rope / ropeNeox, and returns true; false leaves x alone (the caller rotates it).
   * Optional.
   */
  rope?(x: Float32Array, off: number, width: number, hd: number, cos: Float32Array, sin: Float32Array, tab: number, rd: number, neox: boolean): boolean;
  /**
   * A zeroed f32 array of n elements that lives in the backend's own memory (the WASM backend: shard 0), for a
   * caller's activations: the backend's entries then read and write such arrays where they are (no copy in or
   * out). Valid until `freeResident` or `dispose`. Optional: callers use ordinary arrays without it.
   */
  residentF32?(n: number, what?: string): Float32Array;
  /** Gives back an array `residentF32` made. */
  freeResident?(a: Float32Array): void;
  /** frees memory held by prepared weights and workers */
  dispose?(): void;
}

/** Runs a batch through `backend.matvecMany` when it has one, else one `matvec` per job. */
export function matvecMany(backend: Backend, jobs: readonly MatvecJob[]): void {
  if (backend.matvecMany) backend.matvecMany(jobs);
  else for (const j of jobs) backend.matvec(j.w, j.x, j.out);
}

/** Runs n-token matmuls through `backend.matmulMany` when it has one, else one `matmul` per job. */
export function matmulMany(backend: Backend, jobs: readonly MatvecJob[], n: number): void {
  if (backend.matmulMany) backend.matmulMany(jobs, n);
  else for (const j of jobs) backend.matmul(j.w, j.x, n, j.out);
}

/** SwiGLU, gate[i] ← silu(gate[i])·up[i] for i < n: `backend.swiglu` when it has one, else the reference. */
export function swiglu(backend: Backend, gate: Float32Array, up: Float32Array, n: number): void {
  if (backend.swiglu) backend.swiglu(gate, up, n);
  else swigluRef(gate, up, n);
}

/** The residual add and the RMSNorm after it (see Backend.addRmsnorm): the backend's kernel, else the reference. */
export function addRmsnorm(backend: Backend, x: Float32Array, y: Float32Array | undefined, w: Float32Array, out: Float32Array, n: number, dim: number, eps: number): void {
  if (backend.addRmsnorm) backend.addRmsnorm(x, y, w, out, n, dim, eps);
  else addRmsnormRef(x, y, w, out, n, dim, eps);
}

/**
 * Float64 dense kernels for GPTQ's linear algebra (algos/gptq.ts): the Gram accumulation H += XᵀX, the
 * upper Cholesky factor of H⁻¹ in place, and the lazy-batch update W[:, j:] −= E·U[i1:i2, j:]. Buffers
 * come from `alloc` (a backend's own memory, so the big matrices are not copied per call); the reference
 * twin (algos/linalg.ts RefLinalg) runs the reference algorithms on plain Float64Arrays, and the WASM one
 * (kernels/wasm/linalg.ts) the same algorithms blocked, on f64x2 SIMD, split over the worker pool.
 */
export interface LinalgKernels {
  readonly name: string;
  /** a zeroed f64 buffer of n values the other calls accept */
  alloc(n: number): Float64Array;
  /** gives back a buffer from `alloc` (it must not be used afterwards) */
  free(a: Float64Array): void;
  /** whether a is (a view into) a buffer from `alloc` */
  owns(a: Float64Array): boolean;
  /** acc (n, n) += xᵀx for x (nTok, n) row-major; only the lower triangle (j ≤ i) of acc is kept up to date */
  gramAddLower(x: Float32Array, nTok: number, n: number, acc: Float64Array): void;
  /**
   * As gramAddLower, with the products and each 256-token panel's sums in f32 (twice the SIMD lanes of f64) and
   * the panels added into acc in f64: tokens are taken in panels of 256 from the start of each call, and
   * panel p adds, for j ≤ i, (S0 + S2) + (S1 + S3) summed in f32, where S_l is the f32 sum, in token order,
   * of the f32 products x[s, i]·x[s, j] of the panel's tokens s ≡ l (mod 4) (counted from the panel start). Reference twin: algos/linalg.ts addGramF32 (multiply then add; a backend may fuse the
   * multiply-adds, so its bound: |error| ≤ γ₆₆·Σ|x_i x_j| per panel, γₘ = m·2⁻²⁴/(1 − m·2⁻²⁴)).
   */
  gramAddLowerF32(x: Float32Array, nTok: number, n: number, acc: Float64Array): void;
  /** copies acc's lower triangle to its upper one (acc symmetric afterwards) */
  mirrorLower(acc: Float64Array, n: number): void;
  /** a (n, n) symmetric positive definite ← U, upper triangular with A⁻¹ = UᵀU (zeros below); on failure
   * (not positive definite) a is restored and false returned (algos/linalg.ts upperCholeskyOfInverseInPlace) */
  upperCholeskyOfInverseInPlace(a: Float64Array, n: number): boolean;
  /** w (rows, cols) row-major: w[r, j] −= Σ_{k<count} e[r·count + k]·u[(i1 + k)·cols + j] for j ≥ j0
   * (GPTQ's lazy batch update of the columns after block [i1, i1 + count), u (cols, cols)) */
  lazyUpdate(w: Float64Array, rows: number, cols: number, e: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void;
  /** w (rows, cols): w[r, j] −= e[r·lde + eCol]·u[uRow·cols + j] for j0 ≤ j < j1 (GPTQ's in-block update
   * after quantizing one column; u (cols, cols)) */
  rank1Update(w: Float64Array, rows: number, cols: number, j0: number, j1: number, e: Float64Array, lde: number, eCol: number, u: Float64Array, uRow: number): void;
  /**
   * lazyUpdate with f32 products and E given transposed: w[r, j] −= Σ_k fl32(e[k·rows + r])·fl32(u[(i1 + k)·cols + j])
   * for j ≥ j0, lane l summing k ≡ l (mod 4) in f32, in k order, the lanes added in f32 as (S0 + S2) + (S1 + S3), subtracted in f64.
   * Reference twin: algos/linalg.ts lazyUpdateF32Ref (multiply then add); bound: |error| ≤ γ_{⌈count/4⌉+4}·Σ_k|e·u|.
   */
  lazyUpdateF32(w: Float64Array, rows: number, cols: number, eT: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void;
  /** bt[j·ldb + k] = a[(r0 + k)·lda + c0 + j] for k < rows, j < cols: a block of a transposed (both buffers
   * from `alloc`) */
  transposeBlock(a: Float64Array, lda: number, r0: number, c0: number, rows: number, cols: number, bt: Float64Array, ldb: number): void;
  /** wt[j·ldw + r] −= e[eOff + r]·u[uOff + j] for r < rows, j0 ≤ j < j1: rank1Update on a block held
   * transposed (column j of the block contiguous over the rows), the same multiply then subtract per element */
  rank1UpdateT(wt: Float64Array, ldw: number, rows: number, j0: number, j1: number, e: Float64Array, eOff: number, u: Float64Array, uOff: number): void;
}
