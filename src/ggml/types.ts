/**
 * ggml tensor types: numeric ids as in ggml.h `enum ggml_type` (ids are file format: never renumber),
 * block sizes and bytes per block as in ggml-common.h. QK_K = 256.
 */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
}

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
