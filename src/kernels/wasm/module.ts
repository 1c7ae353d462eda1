/**
 * The embedded kernel binaries (built from assembly/ by scripts/build-wasm.mjs) and the choice between
 * them: the relaxed-SIMD build when the engine validates it (Node ≥ 22, or Node 20 with
 * --experimental-wasm-relaxed-simd), else the baseline SIMD128 build. Isomorphic: no file access.
 */
import { QuantlabError } from "../../core/errors.js";
import { wasmBase64 as simdB64 } from "./generated/simd.js";
import { wasmBase64 as relaxedB64 } from "./generated/relaxed.js";

export type WasmVariant = "simd" | "relaxed";

const bytesCache = new Map<WasmVariant, Uint8Array>();
const moduleCache = new Map<WasmVariant, WebAssembly.Module>();

function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function wasmBytes(v: WasmVariant): Uint8Array {
  let b = bytesCache.get(v);
  if (!b) {
    const s = v === "simd" ? simdB64 : relaxedB64;
    if (s.length === 0) throw new QuantlabError("E_INTERNAL", `wasm kernels (${v}) were not built: run \`npm run build:wasm\``);
    b = decodeBase64(s);
    bytesCache.set(v, b);
  }
  return b;
}

/** Whether this engine accepts the given build (SIMD128 everywhere we target; relaxed SIMD is newer). */
export function wasmVariantSupported(v: WasmVariant): boolean {
  try {
    return WebAssembly.validate(wasmBytes(v) as Uint8Array<ArrayBuffer>);
  } catch {
    return false;
  }
}

/** "auto" picks relaxed when supported, else simd. Throws when a forced variant is not supported. */
export function pickVariant(want: WasmVariant | "auto" = "auto"): WasmVariant {
  if (want === "auto") return wasmVariantSupported("relaxed") ? "relaxed" : "simd";
  if (!wasmVariantSupported(want)) {
    const hint = want === "relaxed" ? " (Node 20 needs --experimental-wasm-relaxed-simd; Node ≥ 22 has it on)" : "";
    throw new QuantlabError("E_UNSUPPORTED", `wasm kernels: this engine does not support the ${want} build${hint}`);
  }
  return want;
}

/** Compiled module (synchronous compile: the binary is a few KB). */
export function wasmModule(v: WasmVariant): WebAssembly.Module {
  let m = moduleCache.get(v);
  if (!m) {
    m = new WebAssembly.Module(wasmBytes(v) as Uint8Array<ArrayBuffer>);
    moduleCache.set(v, m);
  }
  return m;
}

/** The functions the kernel module exports (assembly/index.ts). Pointers are byte offsets. */
export interface KernelExports {
  heap_base(): number;
  variant(): number;
  /** `run_k<kind>(desc, r0, r1)`: rows [r0, r1) of a job of that kernel kind (abi.ts K_*); for the
   * interleaved kinds (K_Q4_0X4, K_Q8_0X4) r0, r1 count groups of 4 rows */
  [entry: `run_k${number}`]: (desc: number, r0: number, r1: number) => void;
  interleave_rows4(p: number, groups: number, nb: number, bs: number, tmp: number): void;
  quantize_act(x: number, n: number, x16: number, x8: number, xd: number, xs: number): void;
  /** Q8_K activations (assembly/kdecode.ts): int8 codes, f32 scale per 256, code-sum records (abi.ts Q8K_SUM_BYTES) */
  quantize_act_q8k(x: number, n: number, x8: number, xd: number, xs: number): void;
  /** xs = x·2^112 (n f32) for the F16 decode kernel; 1 when exact for every value (all |x| < 2^16), else 0 */
  scale_act_f16(x: number, n: number, xs: number): number;
  quantize_row_q8_0(x: number, n: number, y: number): void;
  quantize_row_q4_0(x: number, n: number, y: number): void;
  /** Q4_0 from binary16 bits, converted in registers; 0, or 1 (Inf/NaN present: take the f32 path) */
  quantize_row_q4_0_f16(h: number, n: number, y: number): number;
  /** 1 if quantize_blocks_k encodes this ggml type (Q2_K … Q6_K), else 0 (assembly/kquants.ts) */
  kquant_supported(type: number): number;
  /** nb 256-blocks of f32 at x → ggml k-quant blocks at dst, importance qw (0 = none) of one row of blocksPerRow
   * blocks; per-call scratch claimed from `slots` slots at `scratch`; 0, or < 0 when it did nothing */
  quantize_blocks_k(type: number, x: number, nb: number, blocksPerRow: number, dst: number, qw: number, scratch: number, slots: number): number;
  stream_sum(x: number, n: number): number;
  /** register-only throughput probes (assembly/probe.ts): iters steps of 12 chains; a lane sum (−1: SIMD128 build) */
  probe_dot_i8(iters: number, b: number): number;
  probe_dot_i16(iters: number, b: number): number;
  probe_madd_f32(iters: number, b: number): number;
  /** y[i] = e^x[i], the vector exp of the forward-pass kernels (assembly/vmath.ts v_exp; with nonpos ≠ 0
   * v_exp_nonpos, the softmax's, for x ≤ 0) */
  exp_f32_row(x: number, n: number, y: number, nonpos: number): void;
  /** g[i] ← silu(g[i])·u[i] (assembly/rows.ts) */
  swiglu_f32(g: number, u: number, n: number): void;
  /** x ← x + y (y ≠ 0), out = rmsnorm(x) ⊙ w per row (assembly/rows.ts) */
  add_rmsnorm_f32(x: number, y: number, w: number, out: number, n: number, dim: number, eps: number): void;
  /** RoPE of the heads of x[0 .. width) by cos/sin (assembly/rows.ts; model/llama.ts rope / ropeNeox's bits) */
  rope_f32(x: number, width: number, hd: number, cos: number, sin: number, rd: number, neox: number): void;
  /** one position's K and V rows into the cache (assembly/rows.ts) */
  kv_store_f32(kd: number, vd: number, k: number, v: number, heads: number, hd: number, stride: number): void;
  /** s[j] += x[i, j]² in f64, rows in order (assembly/rows.ts; ImatrixAccumulator's sums) */
  sumsq_cols_f64(x: number, n: number, width: number, s: number): void;
  f16_count_special(p: number, n: number): number;
  f32_count_special(p: number, n: number): number;
  f16_to_f32_row(h: number, n: number, x: number): void;
  f32_to_f16(x: number): number;
  f16_to_f32(h: number): number;
  /** acc[r] = Σ_c w[r,c]·x[c] for rows [r0, r1) of int8 codes, exact int32 (assembly/intmm.ts) */
  i8_rows_dot(w: number, x: number, cols: number, acc: number, r0: number, r1: number): void;
  /** symmetric i16 codes + one f32 scale per row of n rows of f32 (assembly/igemm.ts); returns rows with Inf/NaN */
  quantize_rows_i16(x: number, n: number, cols: number, qmax: number, codes: number, scales: number): number;
}

export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const inst = new WebAssembly.Instance(module, { env: { memory } });
  return inst.exports as unknown as KernelExports;
}
