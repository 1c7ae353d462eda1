/**
 * The CLI's ggml block encoder (GgmlEncoder, ggml/encoder.ts) from the one `--backend`/`--threads`
 * definition (cli/model-options.ts): the WASM backend's pool encoder with its threads (the caller
 * included), or the TypeScript reference for `--backend ref`; the bytes are the same either way.
 * QUANTLAB_WASM_QUANTIZE=0 keeps the reference (for comparisons); QUANTLAB_WASM_QUANTIZE=ts-pool runs the
 * TypeScript codecs on the pool's threads without the WASM encoders (how k-quants ran before issue 15).
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
    return await fn(poolEncoder(backend));
  } finally {
    backend.dispose?.();
  }
}

/** The backend's pool encoder, or with QUANTLAB_WASM_QUANTIZE=ts-pool its TypeScript-codecs-only twin. */
export function poolEncoder(backend: WasmBackend): GgmlEncoder {
  return backend.ggmlEncoder(undefined, { wasmEncoders: process.env.QUANTLAB_WASM_QUANTIZE !== "ts-pool" });
}
