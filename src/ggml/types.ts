/**
 * ggml tensor types: numeric ids as in ggml.h `enum ggml_type` (ids are file format: never renumber),
 * block sizes and bytes per block as in ggml-common.h. QK_K = 256.
 */
export { GgmlType } from "../core/ggml-type.js";
import { GgmlType } from "../core/ggml-type.js";

export const QK_K = 256;

export interface GgmlTypeSize {
  name: string;
  /** elements per block */
  blockSize: number;
  /** bytes per block */
  bytesPerBlock: number;
}

/** Sizes for every type id we can read or skip over in a GGUF. From ggml-common.h block structs. */
export const GGML_TYPE_SIZE: Partial<Record<GgmlType, GgmlTypeSize>> = {
  [GgmlType.F32]: { name: "F32", blockSize: 1, bytesPerBlock: 4 },
  [GgmlType.F16]: { name: "F16", blockSize: 1, bytesPerBlock: 2 },
  [GgmlType.BF16]: { name: "BF16", blockSize: 1, bytesPerBlock: 2 },
  [GgmlType.F64]: { name: "F64", blockSize: 1, bytesPerBlock: 8 },
  [GgmlType.I8]: { name: "I8", blockSize: 1, bytesPerBlock: 1 },
  [GgmlType.I16]: { name: "I16", blockSize: 1, bytesPerBlock: 2 },
  [GgmlType.I32]: { name: "I32", blockSize: 1, bytesPerBlock: 4 },
  [GgmlType.I64]: { name: "I64", blockSize: 1, bytesPerBlock: 8 },
  [GgmlType.Q4_0]: { name: "Q4_0", blockSize: 32, bytesPerBlock: 18 }, // d f16 + 16 B nibbles
  [GgmlType.Q4_1]: { name: "Q4_1", blockSize: 32, bytesPerBlock: 20 }, // d, m f16 + 16 B
  [GgmlType.Q5_0]: { name: "Q5_0", blockSize: 32, bytesPerBlock: 22 }, // d + qh[4] + 16 B
  [GgmlType.Q5_1]: { name: "Q5_1", blockSize: 32, bytesPerBlock: 24 }, // d, m + qh[4] + 16 B
  [GgmlType.Q8_0]: { name: "Q8_0", blockSize: 32, bytesPerBlock: 34 }, // d + 32 int8
  [GgmlType.Q8_1]: { name: "Q8_1", blockSize: 32, bytesPerBlock: 36 }, // d, s f16 + 32 int8
  [GgmlType.Q2_K]: { name: "Q2_K", blockSize: 256, bytesPerBlock: 84 }, // scales[16] qs[64] d dmin
  [GgmlType.Q3_K]: { name: "Q3_K", blockSize: 256, bytesPerBlock: 110 }, // hmask[32] qs[64] scales[12] d
  [GgmlType.Q4_K]: { name: "Q4_K", blockSize: 256, bytesPerBlock: 144 }, // d dmin scales[12] qs[128]
  [GgmlType.Q5_K]: { name: "Q5_K", blockSize: 256, bytesPerBlock: 176 }, // d dmin scales[12] qh[32] qs[128]
  [GgmlType.Q6_K]: { name: "Q6_K", blockSize: 256, bytesPerBlock: 210 }, // ql[128] qh[64] scales[16] d
  [GgmlType.Q8_K]: { name: "Q8_K", blockSize: 256, bytesPerBlock: 292 }, // d f32, qs[256], bsums i16[16]
  [GgmlType.IQ4_NL]: { name: "IQ4_NL", blockSize: 32, bytesPerBlock: 18 }, // d + 16 B
  [GgmlType.IQ4_XS]: { name: "IQ4_XS", blockSize: 256, bytesPerBlock: 136 }, // d scales_h scales_l[4] qs[128]
  [GgmlType.TQ1_0]: { name: "TQ1_0", blockSize: 256, bytesPerBlock: 54 }, // qs[48] qh[4] d
  [GgmlType.TQ2_0]: { name: "TQ2_0", blockSize: 256, bytesPerBlock: 66 }, // qs[64] d
  [GgmlType.IQ2_XXS]: { name: "IQ2_XXS", blockSize: 256, bytesPerBlock: 66 },
  [GgmlType.IQ2_XS]: { name: "IQ2_XS", blockSize: 256, bytesPerBlock: 74 },
  [GgmlType.IQ2_S]: { name: "IQ2_S", blockSize: 256, bytesPerBlock: 82 },
  [GgmlType.IQ3_XXS]: { name: "IQ3_XXS", blockSize: 256, bytesPerBlock: 98 },
  [GgmlType.IQ3_S]: { name: "IQ3_S", blockSize: 256, bytesPerBlock: 110 },
  [GgmlType.IQ1_S]: { name: "IQ1_S", blockSize: 256, bytesPerBlock: 50 },
  [GgmlType.IQ1_M]: { name: "IQ1_M", blockSize: 256, bytesPerBlock: 56 },
};

/** Scalar type of one field in a block struct (ggml-common.h). */
export type BlockFieldType = "f16" | "f32" | "u8" | "i8" | "u16" | "i16";

export const BLOCK_FIELD_BYTES: Record<BlockFieldType, number> = { f16: 2, f32: 4, u8: 1, i8: 1, u16: 2, i16: 2 };

export interface BlockField {
  name: string;
  type: BlockFieldType;
  count: number;
  /** what the field holds and how it is packed */
  doc: string;
}

/**
 * Byte layout of one block, field by field in memory order, as the C structs in ggml-common.h (no
 * padding: every struct there is static_assert-ed to its packed size). All multi-byte fields are
 * little-endian. Tests check that the fields add up to `bytesPerBlock`.
 */
export const GGML_BLOCK_LAYOUT: Partial<Record<GgmlType, readonly BlockField[]>> = {
  [GgmlType.F32]: [{ name: "v", type: "f32", count: 1, doc: "IEEE binary32" }],
  [GgmlType.F16]: [{ name: "v", type: "f16", count: 1, doc: "IEEE binary16" }],
  [GgmlType.BF16]: [{ name: "v", type: "u16", count: 1, doc: "bfloat16: the top 16 bits of an f32" }],
  [GgmlType.Q4_0]: [
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·(q − 8)" },
    { name: "qs", type: "u8", count: 16, doc: "4-bit q: element j in the low nibble of qs[j], element j+16 in the high nibble" },
  ],
  [GgmlType.Q4_1]: [
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·q + m" },
    { name: "m", type: "f16", count: 1, doc: "min" },
    { name: "qs", type: "u8", count: 16, doc: "4-bit q, nibble order as Q4_0" },
  ],
  [GgmlType.Q5_0]: [
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·(q − 16)" },
    { name: "qh", type: "u8", count: 4, doc: "bit 4 of q: u32 LE, bit j for element j (0..31)" },
    { name: "qs", type: "u8", count: 16, doc: "low 4 bits of q, nibble order as Q4_0" },
  ],
  [GgmlType.Q5_1]: [
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·q + m" },
    { name: "m", type: "f16", count: 1, doc: "min" },
    { name: "qh", type: "u8", count: 4, doc: "bit 4 of q, as Q5_0" },
    { name: "qs", type: "u8", count: 16, doc: "low 4 bits of q, as Q5_0" },
  ],
  [GgmlType.Q8_0]: [
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·q" },
    { name: "qs", type: "i8", count: 32, doc: "q in element order" },
  ],
  [GgmlType.Q8_1]: [
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·q" },
    { name: "s", type: "f16", count: 1, doc: "d·Σq (lets Q4_1/Q5_1 dots add their min term)" },
    { name: "qs", type: "i8", count: 32, doc: "q in element order" },
  ],
  [GgmlType.Q2_K]: [
    { name: "scales", type: "u8", count: 16, doc: "per 16-element sub-block: low nibble scale, high nibble min" },
    { name: "qs", type: "u8", count: 64, doc: "2-bit q: for half h (128 elements), element 32·s + l at qs[32h + l] bits 2s..2s+1" },
    { name: "d", type: "f16", count: 1, doc: "super-scale of the scales; x = d·sc·q − dmin·m" },
    { name: "dmin", type: "f16", count: 1, doc: "super-scale of the mins" },
  ],
  [GgmlType.Q3_K]: [
    { name: "hmask", type: "u8", count: 32, doc: "bit 2 of q (set = no −4): element 32·k + l at hmask[l] bit k" },
    { name: "qs", type: "u8", count: 64, doc: "low 2 bits of q, packed as Q2_K" },
    { name: "scales", type: "u8", count: 12, doc: "16 signed 6-bit scales (+32): low nibbles in bytes 0..7 (j<8 low, j≥8 high nibble of j−8), top 2 bits in bytes 8..11 (byte 8 + j%4, bits 2·⌊j/4⌋)" },
    { name: "d", type: "f16", count: 1, doc: "super-scale; x = d·(sc − 32)·(q − 4)" },
  ],
  [GgmlType.Q4_K]: [
    { name: "d", type: "f16", count: 1, doc: "super-scale of the scales; x = d·sc·q − dmin·m" },
    { name: "dmin", type: "f16", count: 1, doc: "super-scale of the mins" },
    { name: "scales", type: "u8", count: 12, doc: "8 × (6-bit scale, 6-bit min), ggml get_scale_min_k4 packing" },
    { name: "qs", type: "u8", count: 128, doc: "4-bit q: for chunk c (64 elements), element 64c + l at qs[32c + l] low nibble, 64c + 32 + l high nibble" },
  ],
  [GgmlType.Q5_K]: [
    { name: "d", type: "f16", count: 1, doc: "as Q4_K" },
    { name: "dmin", type: "f16", count: 1, doc: "as Q4_K" },
    { name: "scales", type: "u8", count: 12, doc: "as Q4_K" },
    { name: "qh", type: "u8", count: 32, doc: "bit 4 of q: element 32·k + l at qh[l] bit k" },
    { name: "qs", type: "u8", count: 128, doc: "low 4 bits of q, as Q4_K" },
  ],
  [GgmlType.Q6_K]: [
    { name: "ql", type: "u8", count: 128, doc: "low 4 bits of q: per 128-half, ql[l] low/high nibble = elements l, l+64; ql[l+32] = l+32, l+96" },
    { name: "qh", type: "u8", count: 64, doc: "high 2 bits of q: per 128-half, qh[l] bits 0-1,2-3,4-5,6-7 = elements l, l+32, l+64, l+96" },
    { name: "scales", type: "i8", count: 16, doc: "signed 8-bit scale per 16 elements" },
    { name: "d", type: "f16", count: 1, doc: "super-scale; x = d·sc·(q − 32)" },
  ],
  [GgmlType.Q8_K]: [
    { name: "d", type: "f32", count: 1, doc: "scale; x = d·q" },
    { name: "qs", type: "i8", count: 256, doc: "q in element order" },
    { name: "bsums", type: "i16", count: 16, doc: "Σq per 16 elements (for the min terms of k-quant dots)" },
  ],
  [GgmlType.IQ4_NL]: [
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·kvalues_iq4nl[q]" },
    { name: "qs", type: "u8", count: 16, doc: "4-bit indices, nibble order as Q4_0" },
  ],
  [GgmlType.IQ4_XS]: [
    { name: "d", type: "f16", count: 1, doc: "super-scale; x = d·(ls − 32)·kvalues_iq4nl[q]" },
    { name: "scales_h", type: "u16", count: 1, doc: "top 2 bits of the 6-bit ls of sub-block ib at bits 2ib..2ib+1" },
    { name: "scales_l", type: "u8", count: 4, doc: "low 4 bits of ls: sub-block ib in byte ib/2, low nibble if ib even" },
    { name: "qs", type: "u8", count: 128, doc: "4-bit indices, per 32-element sub-block as IQ4_NL" },
  ],
  [GgmlType.TQ1_0]: [
    { name: "qs", type: "u8", count: 48, doc: "5 trits per byte, stored as ⌈t·256/243⌉ (t base-3, first element most significant); bytes 0..31: elements 32n + m, bytes 32..47: 160 + 16n + m" },
    { name: "qh", type: "u8", count: 4, doc: "4 trits per byte (then ×3), elements 240 + 4n + j" },
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·(t − 1)" },
  ],
  [GgmlType.TQ2_0]: [
    { name: "qs", type: "u8", count: 64, doc: "2-bit q ∈ {0,1,2}: element 128h + 32l + m at qs[32h + m] bits 2l..2l+1" },
    { name: "d", type: "f16", count: 1, doc: "scale; x = d·(q − 1)" },
  ],
};

export function ggmlTypeName(t: GgmlType): string {
  return GGML_TYPE_SIZE[t]?.name ?? `type#${t}`;
}

export function ggmlTypeByName(name: string): GgmlType | undefined {
  const up = name.toUpperCase();
  for (const [id, s] of Object.entries(GGML_TYPE_SIZE)) if (s!.name === up) return Number(id) as GgmlType;
  return undefined;
}

/** Bytes of one row of `n` elements, or undefined if n is not a multiple of the block size. */
export function ggmlRowBytes(t: GgmlType, n: number): number | undefined {
  const s = GGML_TYPE_SIZE[t];
  if (!s || n % s.blockSize !== 0) return undefined;
  return (n / s.blockSize) * s.bytesPerBlock;
}
