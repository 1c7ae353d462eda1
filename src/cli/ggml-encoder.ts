/**
 * The CLI's ggml block encoder (GgmlEncoder, ggml/encoder.ts) for `convert --type` and `quantize --type`:
 * the WASM backend's pool encoder with `threads` threads (the caller included) when WebAssembly SIMD runs
 * here, else the TypeScript reference; the bytes are the same either way. QUANTLAB_WASM_QUANTIZE=0 keeps
 * the reference (for comparisons).
 */
import { refGgmlEncoder, type GgmlEncoder } from "../ggml/encoder.js";
import { wasmVariantSupported } from "../kernels/wasm/module.js";
import { createNodeWasmBackend } from "../kernels/wasm/pool-node.js";

/** Runs `fn` with an encoder, disposing its backend (and worker threads) afterwards. */
export async function withGgmlEncoder<T>(threads: number, fn: (encoder: GgmlEncoder) => Promise<T>): Promise<T> {
  if (process.env.QUANTLAB_WASM_QUANTIZE === "0" || !wasmVariantSupported("simd")) return fn(refGgmlEncoder);
  // the SIMD128 build: its quantizers are the same in both builds (no relaxed-only path)
  const backend = createNodeWasmBackend({ variant: "simd", threads });
  try {
    // workers start only while the event loop turns; until then the caller encodes alone
    if (threads > 1) await backend.ready(10000);
    return await fn(backend.ggmlEncoder());
  } finally {
    backend.dispose();
  }
}
