/**
 * The CLI's (and its quantize workers') ggml Q8_0/Q4_0 encoders run in WASM SIMD when this machine runs
 * WebAssembly SIMD (same bytes as the TypeScript reference, ≈5–8× faster). QUANTLAB_WASM_QUANTIZE=0 keeps
 * the TypeScript reference (for comparisons).
 */
import { createNodeWasmBackend } from "../kernels/wasm/pool-node.js";
import { installWasmQuantizers } from "../kernels/wasm/quantize-accel.js";
import { wasmVariantSupported } from "../kernels/wasm/module.js";

let installed = false;

export function useWasmQuantizers(): void {
  if (installed || process.env.QUANTLAB_WASM_QUANTIZE === "0" || !wasmVariantSupported("simd")) return;
  installed = true;
  // the SIMD128 build: its quantizers are the same in both builds (no relaxed-only path)
  installWasmQuantizers(() => createNodeWasmBackend({ variant: "simd", threads: 1 }));
}
