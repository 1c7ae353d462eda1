/**
 * LLM.int8() (Dettmers, Lewis, Belkada, Zettlemoyer 2022, "LLM.int8(): 8-bit Matrix Multiplication for
 * Transformers at Scale", arXiv:2208.07339). Vector-wise quantization: each row of X (a token) and
 * each output channel of W gets its own absmax scale, so Y = diag(s_x) · (X_i8 W_i8ᵀ) · diag(s_w).
 * Mixed-precision decomposition: the few input feature dimensions where any |x| exceeds a threshold
 * (6.0 in the paper, §3.2) are taken out and multiplied in f16, the rest runs in int8:
 *     Y ≈ X_O W_Oᵀ (f16) + s_x ⊙ (X_Ō,i8 W_Ō,i8ᵀ) ⊙ s_w
 * so the outliers no longer blow up the per-token scales.
 */
import { f16BitsToF32, f32ToF16Bits } from "../core/f16.js";
import { checkMatrix } from "./rtn.js";
import { int8Matmul, quantizeRowsInt8 } from "./int8.js";

export interface LlmInt8Options {
  /** |x| above which an input feature is an outlier dimension (paper: 6.0) */
  threshold?: number;
}

export interface LlmInt8Result {
  /** (nTok, rows) */
  y: Float32Array;
  /** input features handled in f16 */
  outlierCols: number[];
}

const toF16 = (v: number): number => f16BitsToF32(f32ToF16Bits(v));

/** Vector-wise int8 matmul without decomposition (the paper's baseline "vector-wise" row). */
export function int8MatmulVectorwise(x: ArrayLike<number>, nTok: number, w: ArrayLike<number>, rows: number, cols: number): Float32Array {
  checkMatrix(x, nTok, cols, "int8 matmul input");
  checkMatrix(w, rows, cols, "int8 matmul weight");
  return int8Matmul(quantizeRowsInt8(x, nTok, cols), nTok, quantizeRowsInt8(w, rows, cols), rows, cols);
}

/** LLM.int8() mixed decomposition for one batch x (nTok, cols) through w (rows, cols). */
export function llmInt8Matmul(x: ArrayLike<number>, nTok: number, w: ArrayLike<number>, rows: number, cols: number, opts: LlmInt8Options = {}): LlmInt8Result {
  checkMatrix(x, nTok, cols, "llm.int8 input");
  checkMatrix(w, rows, cols, "llm.int8 weight");
  const threshold = opts.threshold ?? 6;
  const outlier = new Uint8Array(cols);
  for (let t = 0; t < nTok; t++) for (let c = 0; c < cols; c++) if (Math.abs(x[t * cols + c]!) > threshold) outlier[c] = 1;
  const outlierCols: number[] = [];
  for (let c = 0; c < cols; c++) if (outlier[c]) outlierCols.push(c);
  // int8 part over the regular features: activation scales and codes leave the outlier columns out
  // (their codes are 0); the weight is quantized once over whole rows, as stored offline
  const y = int8Matmul(quantizeRowsInt8(x, nTok, cols, outlier), nTok, quantizeRowsInt8(w, rows, cols), rows, cols);
  if (outlierCols.length > 0) {
    // f16 part: operands rounded to f16, products accumulated in f32 as an f16 GEMM with f32 accumulation does
    for (let t = 0; t < nTok; t++) {
      for (let r = 0; r < rows; r++) {
        let acc = 0;
        for (const c of outlierCols) acc = Math.fround(acc + Math.fround(toF16(x[t * cols + c]!) * toF16(w[r * cols + c]!)));
        y[t * rows + r]! += acc;
      }
    }
  }
  return { y, outlierCols };
}
