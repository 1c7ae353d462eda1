/**
 * Plugs the WASM SIMD Q8_0/Q4_0 quantizers (bit-identical to llama.cpp's quantize_row_*_ref; tested in
 * test/kernels/wasm/quantize-accel.test.ts) into ggml's `quantizeRow`, so every writer — `convert --type`,
 * `quantize --type`, GGUF saving — encodes those types at WASM speed (≈5–8× the TypeScript reference)
 * whenever no importance matrix or refinement is asked for. Isomorphic: the caller supplies the backend
 * (one thread is enough; it is made on first use).
 */
import { GgmlType } from "../../ggml/types.js";
import { registerBlockQuantizer } from "../../ggml/codecs.js";
import type { WasmBackend } from "./backend.js";

/** Installs the WASM quantizers; returns a function that removes them (and disposes the backend). */
export function installWasmQuantizers(makeBackend: () => WasmBackend): () => void {
  let be: WasmBackend | undefined;
  const get = (): WasmBackend => (be ??= makeBackend());
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_0] as const) {
    registerBlockQuantizer(type, (src, dst) => get().quantizeGgml(type, src, dst), (src, dst) => get().quantizeGgmlF16(type, src, dst));
  }
  return () => {
    registerBlockQuantizer(GgmlType.Q8_0, undefined);
    registerBlockQuantizer(GgmlType.Q4_0, undefined);
    be?.dispose();
    be = undefined;
  };
}
