/**
 * Row-width fall-back, as llama.cpp's llama-quant.cpp `llama_tensor_get_type` does it: a type fits a
 * tensor when its row width (GGUF ne[0]) is a multiple of the block size. When it does not, k-quants,
 * i-quants and ternary types fall back to a 32-block type (TQ1_0/TQ2_0 → Q4_0; Q2_K, Q3_K, IQ4_XS and the
 * IQ1/IQ2/IQ3 types → IQ4_NL; Q4_K → Q5_0; Q5_K → Q5_1; Q6_K → Q8_0), and to F16 when the width is not a
 * multiple of 32 either. Observed on stories260K (shared/data/README.md: 64-wide rows take the 32-block
 * fall-back, the 172-wide ffn_down stays F16). llama.cpp refuses the 32-block types themselves (Q4_0 …
 * Q8_0, IQ4_NL) on such rows ("Unsupported tensor size"); quantlab falls back to F16 and says so.
 * The first step of the chain is each type's `fallback` in the type-traits table (types.ts).
 */
import { QuantlabError } from "../core/errors.js";
import { GGML_TYPES, GgmlType, ggmlTypeName, ggmlTypeTraits } from "./types.js";

export interface RowFit {
  /** the type asked for */
  requested: GgmlType;
  /** the row width is a multiple of the requested type's block size */
  fits: boolean;
  /** the type to store: `requested` when it fits, else the fall-back */
  use: GgmlType;
  /** llama.cpp would refuse this tensor (no fall-back rule for the type); quantlab uses F16 instead */
  llamaRefuses: boolean;
  /** one line for logs and reports when the type changed */
  reason?: string;
}

/** Which type a tensor with rows of `rowWidth` elements gets when `type` is asked for (llama.cpp's rule). */
export function ggmlRowFit(type: GgmlType, rowWidth: number): RowFit {
  const size = ggmlTypeTraits(type);
  if (!size) throw new QuantlabError("E_UNSUPPORTED", `row fit: unknown ggml type ${ggmlTypeName(type)}`);
  if (!Number.isInteger(rowWidth) || rowWidth <= 0) throw new QuantlabError("E_ARG", `row fit: row width ${rowWidth} must be a positive integer`);
  if (rowWidth % size.blockSize === 0) return { requested: type, fits: true, use: type, llamaRefuses: false };
  const first = size.fallback;
  const llamaRefuses = first === undefined;
  let use = first ?? GgmlType.F16;
  if (rowWidth % GGML_TYPES[use].blockSize !== 0) use = GgmlType.F16;
  const why = `row width ${rowWidth} is not a multiple of ${size.name}'s block size ${size.blockSize}`;
  const reason = llamaRefuses
    ? `${why}: llama.cpp refuses it; using ${ggmlTypeName(use)}`
    : `${why}: using ${ggmlTypeName(use)} (llama.cpp's fall-back)`;
  return { requested: type, fits: false, use, llamaRefuses, reason };
}
