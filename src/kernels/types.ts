/**
 * One kernel interface, several backends. `ref` (plain TS, kernels/ref) defines the right answer;
 * `wasm` (AssemblyScript SIMD, kernels/wasm) must agree with it within float rounding.
 * A backend first `prepare`s a Weight (it may repack it, or copy it into WebAssembly memory), then runs
 * mat-vec / mat-mat on the prepared form. Calls are synchronous (workers block the caller with Atomics).
 */
import type { RowReader } from "./dequantize.js";
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

export interface Backend {
  readonly name: string;
  /**
   * True when `prepare` keeps no reference to the weight's own arrays (it copies or repacks them into
   * memory of its own, or runs bytes already placed there): a lazily read weight can then be let go
   * after preparing it, so a model is not held twice.
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
  /** frees memory held by prepared weights and workers */
  dispose?(): void;
}

/** Runs a batch through `backend.matvecMany` when it has one, else one `matvec` per job. */
export function matvecMany(backend: Backend, jobs: readonly MatvecJob[]): void {
  if (backend.matvecMany) backend.matvecMany(jobs);
  else for (const j of jobs) backend.matvec(j.w, j.x, j.out);
}
