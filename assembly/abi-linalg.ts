// ABI of the float64 dense linear-algebra kernels (assembly/linalg.ts) shared with the TypeScript host
// (src/kernels/wasm/linalg.ts). Plain numeric constants only, so this file compiles as both
// AssemblyScript and TypeScript (as abi.ts does).

/** pool task id of the f64 GEMM C ±= A·Bᵀ (entry run_k48); its rows are job rows (see L_FLAGS) */
export const K_GEMM_NT_F64 = 48;

/** pool task id of GPTQ's in-block rank-1 update (entry run_k49; rows = rows of W) */
export const K_RANK1_F64 = 49;

/** pool task id of the f32-product Gram accumulation C (f64, lower) += T·Tᵀ (entry run_k84): T is a panel of
 * tokens, channel-major f32 (L_M channels, L_LDA ≥ L_K floats apart, L_K a multiple of 4); rows = job rows of 2
 * channels (zig-zag, as LF_LOWER) */
export const K_GRAM_F32 = 84;

/** pool task id of GPTQ's in-block rank-1 update on a transposed block (entry run_k85): W1T (count, L_LDC) with
 * W1T[j·L_LDC + r] −= e[r]·u[j] for L_N ≤ j < L_K (L_C = W1T, L_A = e, L_B = u); rows = rows r of W */
export const K_RANK1T_F64 = 85;

/** pool task id of the f32-product GEMM C (f64, (L_M, L_N), L_LDC) −= A·Bᵀ (entry run_k86): A f32 (L_M, L_K),
 * B f32 (L_N, L_K), leading dimensions L_LDA / L_LDB in floats, L_K a multiple of 4; rows = job rows of 2 C rows */
export const K_GEMM_SUB_F32 = 86;

/** pool task id of the Cholesky block's rows below it (entry run_k87: L_C = a, L_LDC = n, L_N = j0, L_K = j1;
 * rows = rows below the block) */
export const K_CHOL_BELOW_F64 = 87;

// descriptor: u32 words; pointers are byte offsets; leading dimensions count f64 elements
export const L_C = 0;
export const L_LDC = 1;
export const L_A = 2;
export const L_LDA = 3;
export const L_B = 4;
export const L_LDB = 5;
/** C is (M, N); A (M, K); B (N, K) */
export const L_M = 6;
export const L_N = 7;
export const L_K = 8;
/** bit 0: subtract (C −= A·Bᵀ) instead of add; bit 1: lower only (tiles with a column above every row of
 * the tile are skipped: only C[i, j], j ≤ i, is guaranteed, as for a Gram matrix); bit 2: A is lower
 * triangular in the global sense (A[i, k] = 0 for k > i + L_ROW0 − L_K0), so a row's sum stops at its
 * diagonal */
export const L_FLAGS = 9;
/** global index of C's (and A's) row 0 and of A's column 0 (for the flags' triangles) */
export const L_ROW0 = 10;
export const L_K0 = 11;
export const L_DESC_WORDS = 12;

export const LF_SUB = 1;
export const LF_LOWER = 2;
export const LF_TRI_A = 4;
