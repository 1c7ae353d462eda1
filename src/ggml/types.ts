/**
 * ggml's type-traits table: one row per `enum ggml_type` id (ids in core/ggml-type.ts, file format: never
 * renumber) with everything quantlab knows about the type: block size and bytes per block (ggml-common.h),
 * the block's byte layout, whether quantlab has a codec for it (ggml/codecs.ts), the activation type
 * ggml's CPU backend quantizes a row to before a dot with it (ggml-cpu type_traits_cpu `vec_dot_type`),
 * llama.cpp's fall-back for rows that are not whole blocks (llama-quant.cpp `llama_tensor_get_type`),
 * and the llama_ftype a file whose big tensors all have this type records. Typed
 * `Record<GgmlType, …>`, so a new id without a row does not compile; the codec table, the WASM kernel
 * tables (kernels/wasm/layouts.ts) and GGUF reading all key by it. QK_K = 256.
 */
export { GgmlType } from "../core/ggml-type.js";
import { QuantlabError } from "../core/errors.js";
import { GgmlType } from "../core/ggml-type.js";

export const QK_K = 256;

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

export interface GgmlTypeTraits {
  /** ggml's type name (ggml.c type_traits `type_name`, upper case) */
  name: string;
  /** elements per block */
  blockSize: number;
  /** bytes per block */
  bytesPerBlock: number;
  /** quantlab encodes and decodes it (a row of ggml/codecs.ts CODECS; the compiler checks both agree) */
  codec: boolean;
  /** the activation type of ggml's CPU dot with this type (absent: no dot product here) */
  vecDot?: GgmlType;
  /** llama.cpp's type for rows that are not whole blocks of this one (absent: llama.cpp refuses such rows) */
  fallback?: GgmlType;
  /** llama.h `enum llama_ftype` (`general.file_type`) of a file whose 2-D tensors are mostly this type */
  ftype?: number;
  /**
   * Byte layout of one block, field by field in memory order, as the C structs in ggml-common.h (no
   * padding: every struct there is static_assert-ed to its packed size). All multi-byte fields are
   * little-endian. Every codec type has one; tests check that the fields add up to `bytesPerBlock`.
   */
  layout?: readonly BlockField[];
}

const TRAITS = {
  [GgmlType.F32]: { name: "F32", blockSize: 1, bytesPerBlock: 4, codec: true, vecDot: GgmlType.F32, ftype: 0,
    layout: [{ name: "v", type: "f32", count: 1, doc: "IEEE binary32" }],
  },
  [GgmlType.F16]: { name: "F16", blockSize: 1, bytesPerBlock: 2, codec: true, vecDot: GgmlType.F16, ftype: 1,
    layout: [{ name: "v", type: "f16", count: 1, doc: "IEEE binary16" }],
  },
  [GgmlType.Q4_0]: { name: "Q4_0", blockSize: 32, bytesPerBlock: 18, codec: true, vecDot: GgmlType.Q8_0, ftype: 2,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·(q − 8)" },
      { name: "qs", type: "u8", count: 16, doc: "4-bit q: element j in the low nibble of qs[j], element j+16 in the high nibble" },
    ],
  },
  [GgmlType.Q4_1]: { name: "Q4_1", blockSize: 32, bytesPerBlock: 20, codec: true, vecDot: GgmlType.Q8_1, ftype: 3,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·q + m" },
      { name: "m", type: "f16", count: 1, doc: "min" },
      { name: "qs", type: "u8", count: 16, doc: "4-bit q, nibble order as Q4_0" },
    ],
  },
  [GgmlType.Q5_0]: { name: "Q5_0", blockSize: 32, bytesPerBlock: 22, codec: true, vecDot: GgmlType.Q8_0, ftype: 8,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·(q − 16)" },
      { name: "qh", type: "u8", count: 4, doc: "bit 4 of q: u32 LE, bit j for element j (0..31)" },
      { name: "qs", type: "u8", count: 16, doc: "low 4 bits of q, nibble order as Q4_0" },
    ],
  },
  [GgmlType.Q5_1]: { name: "Q5_1", blockSize: 32, bytesPerBlock: 24, codec: true, vecDot: GgmlType.Q8_1, ftype: 9,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·q + m" },
      { name: "m", type: "f16", count: 1, doc: "min" },
      { name: "qh", type: "u8", count: 4, doc: "bit 4 of q, as Q5_0" },
      { name: "qs", type: "u8", count: 16, doc: "low 4 bits of q, as Q5_0" },
    ],
  },
  [GgmlType.Q8_0]: { name: "Q8_0", blockSize: 32, bytesPerBlock: 34, codec: true, vecDot: GgmlType.Q8_0, ftype: 7,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·q" },
      { name: "qs", type: "i8", count: 32, doc: "q in element order" },
    ],
  },
  [GgmlType.Q8_1]: { name: "Q8_1", blockSize: 32, bytesPerBlock: 36, codec: true,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·q" },
      { name: "s", type: "f16", count: 1, doc: "d·Σq (lets Q4_1/Q5_1 dots add their min term)" },
      { name: "qs", type: "i8", count: 32, doc: "q in element order" },
    ],
  },
  [GgmlType.Q2_K]: { name: "Q2_K", blockSize: 256, bytesPerBlock: 84, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.IQ4_NL, ftype: 10,
    layout: [
      { name: "scales", type: "u8", count: 16, doc: "per 16-element sub-block: low nibble scale, high nibble min" },
      { name: "qs", type: "u8", count: 64, doc: "2-bit q: for half h (128 elements), element 32·s + l at qs[32h + l] bits 2s..2s+1" },
      { name: "d", type: "f16", count: 1, doc: "super-scale of the scales; x = d·sc·q − dmin·m" },
      { name: "dmin", type: "f16", count: 1, doc: "super-scale of the mins" },
    ],
  },
  [GgmlType.Q3_K]: { name: "Q3_K", blockSize: 256, bytesPerBlock: 110, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.IQ4_NL, ftype: 12,
    layout: [
      { name: "hmask", type: "u8", count: 32, doc: "bit 2 of q (set = no −4): element 32·k + l at hmask[l] bit k" },
      { name: "qs", type: "u8", count: 64, doc: "low 2 bits of q, packed as Q2_K" },
      { name: "scales", type: "u8", count: 12, doc: "16 signed 6-bit scales (+32): low nibbles in bytes 0..7 (j<8 low, j≥8 high nibble of j−8), top 2 bits in bytes 8..11 (byte 8 + j%4, bits 2·⌊j/4⌋)" },
      { name: "d", type: "f16", count: 1, doc: "super-scale; x = d·(sc − 32)·(q − 4)" },
    ],
  },
  [GgmlType.Q4_K]: { name: "Q4_K", blockSize: 256, bytesPerBlock: 144, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.Q5_0, ftype: 15,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "super-scale of the scales; x = d·sc·q − dmin·m" },
      { name: "dmin", type: "f16", count: 1, doc: "super-scale of the mins" },
      { name: "scales", type: "u8", count: 12, doc: "8 × (6-bit scale, 6-bit min), ggml get_scale_min_k4 packing" },
      { name: "qs", type: "u8", count: 128, doc: "4-bit q: for chunk c (64 elements), element 64c + l at qs[32c + l] low nibble, 64c + 32 + l high nibble" },
    ],
  },
  [GgmlType.Q5_K]: { name: "Q5_K", blockSize: 256, bytesPerBlock: 176, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.Q5_1, ftype: 17,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "as Q4_K" },
      { name: "dmin", type: "f16", count: 1, doc: "as Q4_K" },
      { name: "scales", type: "u8", count: 12, doc: "as Q4_K" },
      { name: "qh", type: "u8", count: 32, doc: "bit 4 of q: element 32·k + l at qh[l] bit k" },
      { name: "qs", type: "u8", count: 128, doc: "low 4 bits of q, as Q4_K" },
    ],
  },
  [GgmlType.Q6_K]: { name: "Q6_K", blockSize: 256, bytesPerBlock: 210, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.Q8_0, ftype: 18,
    layout: [
      { name: "ql", type: "u8", count: 128, doc: "low 4 bits of q: per 128-half, ql[l] low/high nibble = elements l, l+64; ql[l+32] = l+32, l+96" },
      { name: "qh", type: "u8", count: 64, doc: "high 2 bits of q: per 128-half, qh[l] bits 0-1,2-3,4-5,6-7 = elements l, l+32, l+64, l+96" },
      { name: "scales", type: "i8", count: 16, doc: "signed 8-bit scale per 16 elements" },
      { name: "d", type: "f16", count: 1, doc: "super-scale; x = d·sc·(q − 32)" },
    ],
  },
  [GgmlType.Q8_K]: { name: "Q8_K", blockSize: 256, bytesPerBlock: 292, codec: true,
    layout: [
      { name: "d", type: "f32", count: 1, doc: "scale; x = d·q" },
      { name: "qs", type: "i8", count: 256, doc: "q in element order" },
      { name: "bsums", type: "i16", count: 16, doc: "Σq per 16 elements (for the min terms of k-quant dots)" },
    ],
  },
  [GgmlType.IQ2_XXS]: { name: "IQ2_XXS", blockSize: 256, bytesPerBlock: 66, codec: false, fallback: GgmlType.IQ4_NL }, // d f16 + qs u16[32]
  [GgmlType.IQ2_XS]: { name: "IQ2_XS", blockSize: 256, bytesPerBlock: 74, codec: false, fallback: GgmlType.IQ4_NL }, // d + qs u16[32] + scales[8]
  [GgmlType.IQ3_XXS]: { name: "IQ3_XXS", blockSize: 256, bytesPerBlock: 98, codec: false, fallback: GgmlType.IQ4_NL }, // d + qs[96]
  [GgmlType.IQ1_S]: { name: "IQ1_S", blockSize: 256, bytesPerBlock: 50, codec: false, fallback: GgmlType.IQ4_NL }, // d + qs[32] + qh u16[8]
  [GgmlType.IQ4_NL]: { name: "IQ4_NL", blockSize: 32, bytesPerBlock: 18, codec: true, vecDot: GgmlType.Q8_0, ftype: 25,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·kvalues_iq4nl[q]" },
      { name: "qs", type: "u8", count: 16, doc: "4-bit indices, nibble order as Q4_0" },
    ],
  },
  [GgmlType.IQ3_S]: { name: "IQ3_S", blockSize: 256, bytesPerBlock: 110, codec: false, fallback: GgmlType.IQ4_NL }, // d + qs[64] + qh[8] + signs[32] + scales[4]
  [GgmlType.IQ2_S]: { name: "IQ2_S", blockSize: 256, bytesPerBlock: 82, codec: false, fallback: GgmlType.IQ4_NL }, // d + qs[64] + qh[8] + scales[8]
  [GgmlType.IQ4_XS]: { name: "IQ4_XS", blockSize: 256, bytesPerBlock: 136, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.IQ4_NL, ftype: 30,
    layout: [
      { name: "d", type: "f16", count: 1, doc: "super-scale; x = d·(ls − 32)·kvalues_iq4nl[q]" },
      { name: "scales_h", type: "u16", count: 1, doc: "top 2 bits of the 6-bit ls of sub-block ib at bits 2ib..2ib+1" },
      { name: "scales_l", type: "u8", count: 4, doc: "low 4 bits of ls: sub-block ib in byte ib/2, low nibble if ib even" },
      { name: "qs", type: "u8", count: 128, doc: "4-bit indices, per 32-element sub-block as IQ4_NL" },
    ],
  },
  [GgmlType.I8]: { name: "I8", blockSize: 1, bytesPerBlock: 1, codec: false },
  [GgmlType.I16]: { name: "I16", blockSize: 1, bytesPerBlock: 2, codec: false },
  [GgmlType.I32]: { name: "I32", blockSize: 1, bytesPerBlock: 4, codec: false },
  [GgmlType.I64]: { name: "I64", blockSize: 1, bytesPerBlock: 8, codec: false },
  [GgmlType.F64]: { name: "F64", blockSize: 1, bytesPerBlock: 8, codec: false },
  [GgmlType.IQ1_M]: { name: "IQ1_M", blockSize: 256, bytesPerBlock: 56, codec: false, fallback: GgmlType.IQ4_NL }, // qs[32] + qh[16] + scales[8]
  [GgmlType.BF16]: { name: "BF16", blockSize: 1, bytesPerBlock: 2, codec: true, vecDot: GgmlType.BF16, ftype: 32,
    layout: [{ name: "v", type: "u16", count: 1, doc: "bfloat16: the top 16 bits of an f32" }],
  },
  [GgmlType.TQ1_0]: { name: "TQ1_0", blockSize: 256, bytesPerBlock: 54, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.Q4_0, ftype: 36,
    layout: [
      { name: "qs", type: "u8", count: 48, doc: "5 trits per byte, stored as ⌈t·256/243⌉ (t base-3, first element most significant); bytes 0..31: elements 32n + m, bytes 32..47: 160 + 16n + m" },
      { name: "qh", type: "u8", count: 4, doc: "4 trits per byte (then ×3), elements 240 + 4n + j" },
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·(t − 1)" },
    ],
  },
  [GgmlType.TQ2_0]: { name: "TQ2_0", blockSize: 256, bytesPerBlock: 66, codec: true, vecDot: GgmlType.Q8_K, fallback: GgmlType.Q4_0, ftype: 37,
    layout: [
      { name: "qs", type: "u8", count: 64, doc: "2-bit q ∈ {0,1,2}: element 128h + 32l + m at qs[32h + m] bits 2l..2l+1" },
      { name: "d", type: "f16", count: 1, doc: "scale; x = d·(q − 1)" },
    ],
  },
} as const satisfies Record<GgmlType, GgmlTypeTraits>;

/** Every ggml type id with its traits. */
export const GGML_TYPES: Readonly<Record<GgmlType, GgmlTypeTraits>> = TRAITS;

type Traits = typeof TRAITS;
/** The ggml types with a codec in quantlab (storage types plus the activation types Q8_1 and Q8_K). */
export type GgmlCodecType = { [K in keyof Traits]: Traits[K]["codec"] extends true ? K : never }[keyof Traits];

/** Every ggml type id, in id order. */
export const GGML_TYPE_IDS: readonly GgmlType[] = (Object.keys(TRAITS).map(Number) as GgmlType[]).sort((a, b) => a - b);

/** Traits of a type id read from a file (undefined for an id ggml does not define, such as the retired 4 and 5). */
export function ggmlTypeTraits(id: number): GgmlTypeTraits | undefined {
  return Object.prototype.hasOwnProperty.call(TRAITS, id) ? GGML_TYPES[id as GgmlType] : undefined;
}

export function ggmlTypeName(t: GgmlType): string {
  return ggmlTypeTraits(t)?.name ?? `type#${t}`;
}

export function ggmlTypeByName(name: string): GgmlType | undefined {
  const up = name.toUpperCase();
  return GGML_TYPE_IDS.find((t) => GGML_TYPES[t].name === up);
}

/** Byte offset of field `name` inside one block of `t` (from its layout); throws when there is no such field. */
export function blockFieldOffset(t: GgmlType, name: string): number {
  let o = 0;
  for (const f of GGML_TYPES[t].layout ?? []) {
    if (f.name === name) return o;
    o += BLOCK_FIELD_BYTES[f.type] * f.count;
  }
  throw new QuantlabError("E_INTERNAL", `ggml ${ggmlTypeName(t)}: no block field "${name}" in its layout`);
}

/** Bytes of one row of `n` elements, or undefined if n is not a multiple of the block size. */
export function ggmlRowBytes(t: GgmlType, n: number): number | undefined {
  const s = ggmlTypeTraits(t);
  if (!s || n % s.blockSize !== 0) return undefined;
  return (n / s.blockSize) * s.bytesPerBlock;
}
