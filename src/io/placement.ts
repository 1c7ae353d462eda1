/**
 * Where a loader should read tensors for a kernel backend: the WASM backend offers views into its own
 * WebAssembly memory (`WasmBackend.placeTensor`), so a GGUF's tensors are read straight into the memory
 * the kernels run on and the model is held once; other backends take tensors anywhere.
 */
import type { Backend } from "../kernels/types.js";
import { WasmBackend } from "../kernels/wasm/backend.js";
import type { TensorPlacer } from "./gguf-model.js";

export function placerOf(backend: Backend): TensorPlacer | undefined {
  if (!(backend instanceof WasmBackend)) return undefined;
  const place: TensorPlacer = (type, shape, name) => backend.placeTensor(type, shape, name);
  place.quant = (spec, shape, name) => backend.placeQuant(spec, shape, name);
  return place;
}
