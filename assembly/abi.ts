// Kernel ABI shared by the AssemblyScript kernels (assembly/index.ts) and the TypeScript backend
// (src/kernels/wasm/). Plain numeric constants only, so this one file compiles as both AssemblyScript
// and TypeScript: keeping the table in a single place means the two sides cannot drift apart.

// ---- weight layouts ("kinds") a job descriptor can name. Each is a prepared, SIMD-friendly layout,
// rows contiguous; "SoA" means codes and f32 scales live in separate arrays (see src/kernels/wasm/layouts.ts).
/** f32 weights, (rows, cols); x is f32 */
export const K_F32 = 1;
/** f16 weights (raw binary16 bits), (rows, cols); x is f32 */
export const K_F16 = 2;
/** int8 codes (rows, cols) + one f32 scale per 32: w = s·q. Q8_0, Q5_0, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 */
export const K_I8S32 = 3;
/** Q4_0 nibbles (16 B per 32) + f32 d per 32: w = d·(q − 8) */
export const K_Q4_0 = 4;
/** unsigned nibbles (16 B per 32) + f32 scale and f32 min per 32: w = s·q − m. Q4_1, Q4_K */
export const K_N4A32 = 5;
/** int8 codes + one f32 scale per 16: w = s·q. Q6_K, Q3_K */
export const K_I8S16 = 6;
/** int8 codes + f32 scale and f32 min per 32: w = s·q − m. Q5_1, Q5_K */
export const K_I8A32 = 7;
/** int8 codes + f32 scale and f32 min per 16: w = s·q − m. Q2_K */
export const K_I8A16 = 8;
// Native kinds: the kernel reads llama.cpp's own block bytes (ggml-common.h), so a GGUF tensor can be
// read straight into wasm memory and run in place, and a mat-vec streams exactly the file's bytes
// (Q4_K 0.5625 B/weight, Q6_K 0.8203, Q8_0 1.0625, Q4_0 0.5625). f16 scales are converted in the kernel.
/** block_q8_0 (34 B per 32): d f16, qs int8[32] */
export const K_Q8_0N = 9;
/** block_q4_0 (18 B per 32): d f16, qs[16] (byte j = weight j | weight j+16 << 4) */
export const K_Q4_0N = 10;
/** block_q4_K (144 B per 256): d, dmin f16, 12 B of 6-bit scales/mins, qs[128] */
export const K_Q4_KN = 11;
/** block_q6_K (210 B per 256): ql[128], qh[64], int8 scales[16], d f16 */
export const K_Q6_KN = 12;
/** block_q4_0 bytes of 4 rows interleaved block by block (row group g at g·4·nb·18; block b of row 4g+k
 * at b·72 + k·18): the same bytes as K_Q4_0N, permuted in place at load so a decode streams one
 * sequential run per 4 rows. run_rows takes row-group indices for this kind. */
export const K_Q4_0X4 = 13;
/** block_q8_0 bytes of 4 rows interleaved (block b of row 4g+k at b·136 + k·34), as K_Q4_0X4 */
export const K_Q8_0X4 = 14;
// Packed quantlab spec layouts (src/kernels/packed.ts): uniform integer codes exactly as a QTensor stores
// them (LSB-first, rows contiguous), one scale s per group of D_GROUP weights at D_W1 (f32, or f16 bits: D_BITS
// bit 0; row-major (row, group), ⌈cols/D_GROUP⌉ per row) and the code offset k = L0 − z (L0 = D_LUT as an i32;
// D_BITS bit 1: the integer zero points z at D_W2 at the code width — nibbles LSB-first for 4 bits, bytes for 8 —
// indexed by (row, group) over the whole matrix; else z = 0); x is f32 (no activation quantization), w = fround((q + k)·s), the
// fake-quant value (quant/tensor.ts dequantize) bit for bit.
/** 4-bit codes (byte j = code 2j | code 2j+1 << 4) */
export const K_U4G = 15;
/** 8-bit codes (one byte each) */
export const K_U8G = 16;
// Packed quantlab lookup-table layouts (src/kernels/packed.ts, family "lut"): b-bit codes exactly as a QTensor
// stores them (LSB-first bit stream, every row and group starting on a byte), an f64 table of the 2^b levels
// levelOf(c) at D_LUT (16 entries at least, zero-padded), one f32 scale s per (row, group) at D_W1 (D_BITS bit 8:
// one byte per (row, group) instead, the scale's f32 exponent byte — every scale a power of two or 0 — ) and one f32
// zero z per (row, group) at D_W2 (0 = no zeros). w = fround((table[c] − z)·s) computed in f64 and rounded
// once to f32, which is the fake-quant value quant/tensor.ts dequantize computes, bit for bit. x is f32.
/** 4-bit codes: per group a 16-entry f32 table in 4 byte planes, looked up with i8x16.swizzle */
export const K_LUT4G = 17;
/** 1-, 2-, 3-bit codes (unpacked on the fly with a swizzle + multiply), then as K_LUT4G */
export const K_LUT1G = 18;
export const K_LUT2G = 19;
export const K_LUT3G = 20;
/** 5- to 8-bit codes (D_BITS): per weight an f64 table lookup (gather), 4 lanes at a time */
export const K_LUTWG = 21;
// Lookup-table specs × Q8 activations (`packedActivations: "q8"`, src/kernels/packed.ts lutQ8Layout): x is
// quantized to Q8 per 32 (D_X16, D_X8, D_XD, D_XS) as for the ggml kinds; groups are whole 32-blocks.
/** 4-bit codes in ggml nibble order per 32 (byte j = code j | code j+16 << 4, 16 B per 32), an int16 table
 * t[c] = round(A·levelOf(c)) at D_LUT as two 16-byte planes (low bytes, high bytes) read with
 * i8x16.swizzle, f32 s/A per (row, group) at D_W1 and f32 fround(s·z) per (row, group) at D_W2 (0 = none):
 * w ≈ (s/A)·t[c] − s·z. D_GROUP = weights per group (a multiple of 32). */
export const K_LUT4Q8 = 22;
/** ternary 2-bit codes as the QTensor stores them (0 → 0, 1 → +1, 3 → −1; 8 B per 32), f32 scale per
 * (row, group) at D_W1: no multiplies on the weight side — code-bit masks select +x, −x or 0 from the int8
 * activation codes, summed with integer adds */
export const K_TERN2Q8 = 23;
// The same Q8-activation 4-bit forms with 4 rows interleaved (rows % 4 = 0; ids 40…47, 50, 51: 24…26 are the k-quant X4
// kinds, 32 attention's, 48 and 49 abi-linalg.ts's), the layout of K_Q4_0X4: row group
// g (rows 4g..4g+3) holds its 32-blocks in order, block b of row 4g+k at D_W0 + (g·nb + b)·64 + k·16 (16 B of
// ggml-order nibbles each), so a decode streams one run per 4 rows and loads each activation block once for
// them; scales (and mins) as 4 f32 per (row group, group) at D_W1 (D_W2, 0 = none), row k in lane k. The
// table is unsigned, u[c] = t[c] + D_BITS (the offset: Σ t·x = Σ u·x − off·Σx, exact), w ≈ (s/A)·t[c] − s·z.
// Same integers and the same f32 operations per row as K_LUT4Q8 (src/kernels/packed.ts matvecLutQ8Ref).
/** u[c] = c: the nibbles are the table (uniform int4 specs) */
export const K_NIB4Q8X4 = 40;
/** u[c] ≤ 63 from one 16-byte swizzle plane at D_LUT (exact small tables: fp4 e2m1 / mxfp4, integer levels) */
export const K_LUT4Q8X4 = 41;
/** u[c] ≤ 4095 from two swizzle planes at D_LUT: relaxed build u & 63, u >> 6 (16 B each), SIMD128 build
 * (at D_LUT + 32) the low and high bytes of u (nf4, other tables of non-dyadic levels) */
export const K_LUT12Q8X4 = 42;
/** u[c] ≤ 127 from one swizzle plane at D_LUT (the rounded 7-bit tables) */
export const K_LUT7Q8X4 = 43;
/** ternary, 4 rows interleaved: u = w + 1 ∈ {0, 1, 2} as 2-bit codes, 32 bytes per 32-block of 4 rows (row k's
 * 8 bytes at k·8; byte j holds elements j, j+8, j+16, j+24 at bits 0, 2, 4, 6), D_BITS = 1; f32 scales as above */
export const K_TERN2Q8X4 = 44;
// 45, 46: retired (K_NIB4Q8X4H / K_NIB4Q8X4Z, uniform int4 on this 16-byte interleave), replaced by K_NIB4Q8X4B* (52…55)
/** K_LUT4Q8X4 with every scale a power of two (mxfp4's e8m0 scales / A): each as its f32 exponent byte, 4 per (row
 * group, group) at D_W1 (the kernel shifts it back into place: exact); no mins */
export const K_LUT4Q8X4E = 47;
/** uniform int8 specs (src/kernels/packed.ts uniformQ8Layout, kind "i8x4"), 4 rows interleaved: int8 codes t = c − 128,
 * 128 bytes per block step (row k's 32 at k·32), f32 scales as K_LUT4Q8X4's, int8 zero codes at D_W2 (0 = none)
 * subtracted in the integer dot */
export const K_I8Q8X4 = 50;
/** ternary × Q8_K activations, 4 rows interleaved (groups and rows whole 256-blocks): u = w + 1 as 2-bit codes element-major
 * over a row group (byte e of row group g at D_W0 + g·cols + e holds element e of rows 4g…4g+3 at bits 0, 2, 4, 6), f32 scales as 4 per (row group, group) at D_W1; x as the k-quant X4 kinds' Q8_K copy
 * (D_X8 int8 codes, D_XD one f32 scale per 256, D_XS the code-sum records): per super-block one exact integer dot per
 * row, Σ u·x − Σx, accumulated in i16 over the super-block (as llama.cpp's ggml_vec_dot_tq2_0_q8_K: one float step per 256) */
export const K_TERN2Q8KX4 = 51;
/** integer calibration GEMM (assembly/igemm.ts, src/kernels/wasm/igemm.ts): symmetric integer weight codes as i16
 * (rows, cols) at D_W0, one f32 scale per row at D_W1; activations quantized per token to i16 codes at D_X16 with
 * one f32 scale per token at D_XD; D_BITS = the code bound qmax (cols · qmax² < 2^31: exact int32 sums).
 * cols % 32 = 0. Not a weight format: only `prepareCalibration` makes it (imatrix --imatrix-forward int). */
export const K_I16GEMM = 68;

// Uniform int4 specs × Q8 activations, 4 rows byte-interleaved (assembly/nib4.ts, src/kernels/wasm/backend.ts
// prepNib4X4): row group g (rows 4g…4g+3) is one stream at D_W0 + g·(nb·64 + nG·S); per group of gb = D_GROUP/32 blocks,
// the gb 32-blocks (64 bytes each: 4-byte piece i of row k's 16 ggml-order nibble bytes at 16·i + 4·k), then the 4 rows'
// scales (4 f16 bits or 4 f32) and, with zero codes, the 4 rows' z (w = s·(c − z)): as nibbles in 2 bytes (row k at bits
// 4k…4k+3 of the little-endian u16; K_NIB4Q8X4BZ*, every z in 0…15 as int4 asym's) or as 4 int8 (K_NIB4Q8X4B / BF, any
// other integer zero points); S = the bytes of that tail (f16: 10, 12 or 8; f32: 18, 20 or 16). Without zero codes
// D_BITS is the offset z of every group (symmetric: 8). The int8-zero kinds have 16 bytes of padding at the end.
/** f16 scales, int8 zero codes */
export const K_NIB4Q8X4B = 52;
/** f32 scales, int8 zero codes */
export const K_NIB4Q8X4BF = 53;
/** f16 scales, one offset D_BITS */
export const K_NIB4Q8X4BS = 54;
/** f32 scales, one offset D_BITS */
export const K_NIB4Q8X4BSF = 55;
/** f16 scales, zero codes as nibbles (74 bytes per 4 rows × 32 at g32) */
export const K_NIB4Q8X4BZ = 60;
/** f32 scales, zero codes as nibbles */
export const K_NIB4Q8X4BZF = 61;

// k-quants on their GGUF blocks, 4 rows interleaved (as K_Q4_0X4), against Q8_K activations (assembly/kdecode.ts):
// D_X8 = int8 codes (n, cols), D_XD = f32 scale per 256 (n, cols/256), D_XS = per 256 a 64-byte record of
// i16 code sums per 16 and per 32 (n, cols/256); D_W1 = the f16 table. Relaxed build only.
/** block_q4_K bytes of 4 rows interleaved (super-block s of row 4g+k at s·576 + k·144) */
export const K_Q4_KX4 = 24;
/** block_q6_K bytes of 4 rows interleaved (super-block s of row 4g+k at s·840 + k·210) */
export const K_Q6_KX4 = 25;
/** block_q5_K bytes of 4 rows interleaved (super-block s of row 4g+k at s·704 + k·176) */
export const K_Q5_KX4 = 26;
/** bytes of the Q8_K code-sum record per 256 activations: i16 sums per 16 (16 of them) @0, per 32 (8) @32 */
export const Q8K_SUM_BYTES = 64;

// ---- job descriptor: DESC_WORDS little-endian u32 words in wasm memory; all pointers are byte offsets.
export const D_KIND = 0;
export const D_ROWS = 1;
export const D_COLS = 2;
/** codes / f32 / f16 weights */
export const D_W0 = 3;
/** f32 scales (SoA) */
export const D_W1 = 4;
/** f32 mins (SoA) */
export const D_W2 = 5;
/** activations as f32, (n, cols) */
export const D_XF = 6;
/** activations as Q8 codes widened to i16, (n, cols); K_F16 decode (n = 1): x·2^112 as f32, or 0 (x unscaled) */
export const D_X16 = 7;
/** activations as Q8 int8 codes, (n, cols) */
export const D_X8 = 8;
/** activation f32 scale per 32 (the f16-rounded d, as ggml's block_q8_0 stores it), (n, cols/32) */
export const D_XD = 9;
/** activation i32 code sums per 16, (n, cols/16) */
export const D_XS = 10;
/** output f32, (n, rows) */
export const D_OUT = 11;
/** number of activation rows (1 for a mat-vec) */
export const D_N = 12;
/** weights per scale group along a row (K_U4G, K_U8G; the last group of a row may be shorter; even for K_U4G) */
export const D_GROUP = 13;
/** f64 level table (K_LUT* kinds); K_U4G / K_U8G: L0 as an i32 */
export const D_LUT = 14;
/** bits per code (K_LUT* kinds, bits 0–7; bit 8 = scales as exponent bytes); K_U4G / K_U8G: bit 0 = f16 scale bits, bit 1 = zero codes at D_W2 */
export const D_BITS = 15;
export const DESC_WORDS = 16;

// ---- causal attention over an f32 KV cache (assembly/attention.ts, src/kernels/wasm/kv-cache.ts). A pool
// task id below 256 names the entry `run_k<id>`; attention's sits apart from the weight kinds above.
/** one layer's attention for a chunk of query positions; its rows are (position, head) items */
export const K_ATTN_F32 = 32;
/** queries f32 (n, nHeads·hd), RoPE applied */
export const A_Q = 0;
/** output f32 (n, nHeads·hd) */
export const A_OUT = 1;
/** this layer's keys / values f32 (nKvHeads, capacity, hd) */
export const A_K = 2;
export const A_V = 3;
/** query positions pos0 … pos0+n−1; position i sees keys 0 … pos0+i */
export const A_N = 4;
export const A_POS0 = 5;
export const A_NHEADS = 6;
/** query heads per KV head (GQA): head h reads KV head ⌊h / kvMul⌋ */
export const A_KVMUL = 7;
export const A_HD = 8;
export const A_CAP = 9;
/** f32 bits of the score divisor, fround(sqrt(hd)) */
export const A_SCALE = 10;
/** A_NSLOTS score rows of capacity f32 each, and one i32 busy flag per row */
export const A_SCRATCH = 11;
export const A_SLOTS = 12;
export const A_NSLOTS = 13;
export const ATTN_DESC_WORDS = 16;

// ---- k-quant encoders (assembly/kquants.ts quantize_blocks_k, src/kernels/wasm/tasks.ts)
/** bytes per scratch slot; the host allocates one slot per thread after a 64-byte line of lock words per 16 slots */
export const KQ_SLOT_BYTES = 4096;

// ---- F16 prefill panels (assembly/index.ts gemmRowsF16Panel, src/kernels/wasm/dispatch.ts): a K_F16 job with
// n > 1 may carry at D_W1 a scratch of D_GROUP slots (one per pool thread; a 64-byte line of i32 lock words per 16
// slots, then the slots), each holding one row tile's weights of a column block converted to f32; D_W1 = 0 runs
// the f16 tile without it (the same bits).
/** bytes per F16 panel slot: 4 rows (F32_R) × 4096 columns (GEMM_KC) of f32 */
export const F16_PANEL_SLOT_BYTES = 4 * 4096 * 4;

// ---- Q6_K prefill panels (assembly/kdecode.ts q6Panel, src/kernels/wasm/dispatch.ts): a K_Q6_KX4 job with n > 1
// may carry at D_W2 a scratch of D_GROUP slots laid out as the F16 panels' (lock words, then the slots); each slot
// holds one row group's codes unpacked to bytes with their scales broadcast, Q6_PANEL_SB_BYTES per super-block.
// D_W2 = 0, or a row longer than Q6_PANEL_MAX_SB super-blocks, runs the 4 × 4 tile instead (the same bits).
/** bytes of one super-block in a Q6_K panel: the 4 rows' f32 d (16), then per row 4 slices of 64 code bytes +
 * 4 (sc, sc) i16 pairs (80 each) and the 16 scales as i16 (32) */
export const Q6_PANEL_SB_BYTES = 16 + 4 * (4 * 80 + 32);
/** super-blocks per Q6_K panel slot (16384 columns) */
export const Q6_PANEL_MAX_SB = 64;
export const Q6_PANEL_SLOT_BYTES = Q6_PANEL_SB_BYTES * Q6_PANEL_MAX_SB;
