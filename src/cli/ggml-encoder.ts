/**
 * The CLI's ggml block encoder (GgmlEncoder, ggml/encoder.ts) from the one `--backend`/`--threads`
 * definition (cli/model-options.ts): the WASM backend's pool encoder with its threads (the caller
 * included), or the TypeScript reference for `--backend ref`; the bytes are the same either way.
 * QUANTLAB_WASM_QUANTIZE=0 keeps the reference (for comparisons).
 */
import { refGgmlEncoder, type GgmlEncoder } from "../ggml/encoder.js";
import { WasmBackend } from "../kernels/wasm/backend.js";
import { backendFromOptions, backendReady, type BackendOptions } from "./model-options.js";

/** Runs `fn` with an encoder, disposing its backend (and worker threads) afterwards. */
export async function withGgmlEncoder<T>(o: BackendOptions, fn: (encoder: GgmlEncoder) => Promise<T>): Promise<T> {
  const backend = backendFromOptions(o);
  try {
    if (process.env.QUANTLAB_WASM_QUANTIZE === "0" || !(backend instanceof WasmBackend)) return await fn(refGgmlEncoder);
    // workers start only while the event loop turns; until then the caller encodes alone
    await backendReady(backend);
    return await fn(backend.ggmlEncoder());
  } finally {
    backend.dispose?.();
  }
}
