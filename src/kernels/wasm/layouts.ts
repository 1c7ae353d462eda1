/**
 * Load-time repacking of ggml blocks into the SoA layouts the WASM kernels read (kinds in assembly/abi.ts):
 * codes contiguous (int8, or 16-byte nibble groups per 32), one f32 scale (and f32 min) per 32 or 16
 * elements in separate arrays. f16 scales become f32 once here, so the kernels never convert them
 * (SIMD128 has no f16 conversion; shared/notes/kernels.md §10). Scale products are computed in f32
 * exactly as ggml-quants.c `dequantize_row_*` does (d·sc, dmin·m), so s·q − m reproduces ggml's floats.
 *
 * Because the prepared layout keeps rows contiguous and the ggml blocks are contiguous too, a whole
 * tensor is repacked as one run of blocks; row boundaries do not matter.
 */
import { f16Table32 } from "../../core/f16.js";
import { GGML_TYPES, GgmlType, blockFieldOffset, ggmlTypeName } from "../../ggml/types.js";
import { K_F32, K_F16, K_I8S32, K_Q4_0, K_N4A32, K_I8S16, K_I8A32, K_I8A16, K_Q8_0N, K_Q4_0N, K_Q4_KN, K_Q6_KN, K_Q4_0X4, K_Q8_0X4, K_U4G, K_U8G, K_LUT4G, K_LUT1G, K_LUT2G, K_LUT3G, K_LUTWG, K_LUT4Q8, K_TERN2Q8, K_Q4_KX4, K_Q5_KX4, K_Q6_KX4, K_NIB4Q8X4, K_LUT4Q8X4, K_LUT12Q8X4, K_LUT7Q8X4, K_TERN2Q8X4, K_TERN2Q8KX4, K_LUT4Q8X4E, K_I8Q8X4, K_NIB4Q8X4B, K_NIB4Q8X4BF, K_NIB4Q8X4BS, K_NIB4Q8X4BSF, K_NIB4Q8X4BZ, K_NIB4Q8X4BZF, K_I16GEMM } from "../../../assembly/abi.js";
import type { WasmVariant } from "./module.js";

/** Nibble order inside a 16-byte group of 32 weights.
 * "gguf": byte j = weight j (low nibble) | weight j+16 (high) — ggml's own order (relaxed-SIMD kernels).
 * "r16": 8 little-endian u16 lanes, lane j = w[j] | w[8+j]<<4 | w[16+j]<<8 | w[24+j]<<12 (SIMD128 kernels). */
export type NibbleOrder = "gguf" | "r16";

export interface RepackTarget {
  /** int8 codes (1 byte per weight) or nibbles (16 bytes per 32 weights) */
  codes: Uint8Array;
  /** f32 scale per group (32 or 16 weights) */
  scales: Float32Array;
  /** f32 min per group, for affine kinds */
  mins?: Float32Array;
}

export interface RepackRow {
  /** kernel layout (K_* from assembly/abi.ts) */
  kind: number;
  /** ggml elements per block and bytes per block (from the type-traits table, ggml/types.ts) */
  readonly blockSize: number;
  readonly bytesPerBlock: number;
  /** code bytes per 32 weights: 32 (int8) or 16 (nibbles) */
  codeBytesPer32: number;
  /** elements per scale: 32 or 16 */
  group: 32 | 16;
  affine: boolean;
  repack(src: Uint8Array, nBlocks: number, dst: RepackTarget, order: NibbleOrder): void;
}

const t16 = (): Float32Array => f16Table32();
const f16At = (t: Float32Array, b: Uint8Array, o: number): number => t[b[o]! | (b[o + 1]! << 8)]!;
const fr = Math.fround;

/** kvalues_iq4nl (ggml-common.h): the IQ4_NL / IQ4_XS non-linear 4-bit codebook */
const KVALUES_IQ4NL = new Int8Array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]);

/** Writes 32 unsigned nibble values q[0..31] as 16 bytes in the given order. */
export function packNibbles32(q: ArrayLike<number>, dst: Uint8Array, o: number, order: NibbleOrder): void {
  if (order === "gguf") {
    for (let j = 0; j < 16; j++) dst[o + j] = q[j]! | (q[j + 16]! << 4);
  } else {
    for (let j = 0; j < 8; j++) {
      const lane = q[j]! | (q[8 + j]! << 4) | (q[16 + j]! << 8) | (q[24 + j]! << 12);
      dst[o + 2 * j] = lane & 0xff;
      dst[o + 2 * j + 1] = lane >>> 8;
    }
  }
}

/** Reads 32 nibble values back (inverse of packNibbles32). */
export function unpackNibbles32(src: Uint8Array, o: number, order: NibbleOrder, q: Uint8Array): void {
  if (order === "gguf") {
    for (let j = 0; j < 16; j++) {
      q[j] = src[o + j]! & 15;
      q[j + 16] = src[o + j]! >> 4;
    }
  } else {
    for (let j = 0; j < 8; j++) {
      const lane = src[o + 2 * j]! | (src[o + 2 * j + 1]! << 8);
      q[j] = lane & 15;
      q[8 + j] = (lane >> 4) & 15;
      q[16 + j] = (lane >> 8) & 15;
      q[24 + j] = lane >> 12;
    }
  }
}

/** ggml `get_scale_min_k4`: 6-bit (scale, min) pair j of the 12-byte Q4_K/Q5_K scales field at o. */
function scaleMinK4(b: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [b[o + j]! & 63, b[o + j + 4]! & 63];
  return [(b[o + j + 4]! & 0xf) | ((b[o + j - 4]! >> 6) << 4), (b[o + j + 4]! >> 4) | ((b[o + j]! >> 6) << 4)];
}

/** Q3_K's 16 signed 6-bit scales from its 12-byte field (ggml `dequantize_row_q3_K`, kmask1/kmask2 unpack). */
function q3kScales(b: Uint8Array, o: number, out: Int8Array): void {
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? b[o + j]! & 0xf : b[o + j - 8]! >> 4;
    const high = (b[o + 8 + (j & 3)]! >> (2 * (j >> 2))) & 3;
    out[j] = (low | (high << 4)) - 32;
  }
}

const bpb = (t: GgmlType): number => GGML_TYPES[t].bytesPerBlock;

const q32 = new Uint8Array(32);
const sc16 = new Int8Array(16);

const REPACK_ROWS: Partial<Record<GgmlType, RepackSpec>> = {
  // block_q8_0: d f16 @0, qs int8[32] @2
  [GgmlType.Q8_0]: {
    kind: K_I8S32, codeBytesPer32: 32, group: 32, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.Q8_0);
      for (let i = 0; i < nb; i++) {
        scales[i] = f16At(t, src, i * B);
        codes.set(src.subarray(i * B + 2, i * B + B), i * 32);
      }
    },
  },
  // block_q4_0: d f16 @0, qs[16] @2; w = d·(q − 8)
  [GgmlType.Q4_0]: {
    kind: K_Q4_0, codeBytesPer32: 16, group: 32, affine: false,
    repack(src, nb, { codes, scales }, order) {
      const t = t16();
      const B = bpb(GgmlType.Q4_0);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        scales[i] = f16At(t, src, o);
        if (order === "gguf") codes.set(src.subarray(o + 2, o + B), i * 16);
        else {
          unpackNibbles32(src, o + 2, "gguf", q32);
          packNibbles32(q32, codes, i * 16, order);
        }
      }
    },
  },
  // block_q4_1: d f16 @0, m f16 @2, qs[16] @4; w = d·q + m
  [GgmlType.Q4_1]: {
    kind: K_N4A32, codeBytesPer32: 16, group: 32, affine: true,
    repack(src, nb, { codes, scales, mins }, order) {
      const t = t16();
      const B = bpb(GgmlType.Q4_1);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        scales[i] = f16At(t, src, o);
        mins![i] = -f16At(t, src, o + 2);
        unpackNibbles32(src, o + 4, "gguf", q32);
        packNibbles32(q32, codes, i * 16, order);
      }
    },
  },
  // block_q5_0: d f16 @0, qh u32 @2, qs[16] @6; w = d·(q − 16), q = nibble | high bit << 4
  [GgmlType.Q5_0]: {
    kind: K_I8S32, codeBytesPer32: 32, group: 32, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.Q5_0);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        scales[i] = f16At(t, src, o);
        const qh = (src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const b = src[o + 6 + j]!;
          codes[i * 32 + j] = (((b & 15) | (((qh >>> j) & 1) << 4)) - 16) & 0xff;
          codes[i * 32 + j + 16] = (((b >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) & 0xff;
        }
      }
    },
  },
  // block_q5_1: d f16 @0, m f16 @2, qh u32 @4, qs[16] @8; w = d·q + m
  [GgmlType.Q5_1]: {
    kind: K_I8A32, codeBytesPer32: 32, group: 32, affine: true,
    repack(src, nb, { codes, scales, mins }) {
      const t = t16();
      const B = bpb(GgmlType.Q5_1);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        scales[i] = f16At(t, src, o);
        mins![i] = -f16At(t, src, o + 2);
        const qh = (src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const b = src[o + 8 + j]!;
          codes[i * 32 + j] = (b & 15) | (((qh >>> j) & 1) << 4);
          codes[i * 32 + j + 16] = (b >> 4) | (((qh >>> (j + 16)) & 1) << 4);
        }
      }
    },
  },
  // block_iq4_nl: d f16 @0, qs[16] @2; w = d·kvalues[q]
  [GgmlType.IQ4_NL]: {
    kind: K_I8S32, codeBytesPer32: 32, group: 32, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.IQ4_NL);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        scales[i] = f16At(t, src, o);
        for (let j = 0; j < 16; j++) {
          const b = src[o + 2 + j]!;
          codes[i * 32 + j] = KVALUES_IQ4NL[b & 15]! & 0xff;
          codes[i * 32 + j + 16] = KVALUES_IQ4NL[b >> 4]! & 0xff;
        }
      }
    },
  },
  // block_q4_K: d f16 @0, dmin f16 @2, scales[12] @4, qs[128] @16. Sub-block 2k = low nibbles of
  // qs[32k..32k+31], 2k+1 = their high nibbles; w = (d·sc)·q − dmin·m
  [GgmlType.Q4_K]: {
    kind: K_N4A32, codeBytesPer32: 16, group: 32, affine: true,
    repack(src, nb, { codes, scales, mins }, order) {
      const t = t16();
      const B = bpb(GgmlType.Q4_K);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o);
        const dmin = f16At(t, src, o + 2);
        for (let k = 0; k < 4; k++) {
          for (let h = 0; h < 2; h++) {
            const sb = 2 * k + h;
            const [sc, m] = scaleMinK4(src, o + 4, sb);
            scales[i * 8 + sb] = fr(d * sc);
            mins![i * 8 + sb] = fr(dmin * m);
            for (let l = 0; l < 32; l++) {
              const b = src[o + 16 + 32 * k + l]!;
              q32[l] = h === 0 ? b & 15 : b >> 4;
            }
            packNibbles32(q32, codes, (i * 8 + sb) * 16, order);
          }
        }
      }
    },
  },
  // block_q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48; high bit of sub-block sb is bit sb of qh[l]
  [GgmlType.Q5_K]: {
    kind: K_I8A32, codeBytesPer32: 32, group: 32, affine: true,
    repack(src, nb, { codes, scales, mins }) {
      const t = t16();
      const B = bpb(GgmlType.Q5_K);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o);
        const dmin = f16At(t, src, o + 2);
        for (let k = 0; k < 4; k++) {
          for (let h = 0; h < 2; h++) {
            const sb = 2 * k + h;
            const [sc, m] = scaleMinK4(src, o + 4, sb);
            scales[i * 8 + sb] = fr(d * sc);
            mins![i * 8 + sb] = fr(dmin * m);
            for (let l = 0; l < 32; l++) {
              const b = src[o + 48 + 32 * k + l]!;
              const hb = (src[o + 16 + l]! >> sb) & 1;
              codes[i * 256 + sb * 32 + l] = (h === 0 ? b & 15 : b >> 4) | (hb << 4);
            }
          }
        }
      }
    },
  },
  // block_q6_K: ql[128] @0, qh[64] @128, scales int8[16] @192, d f16 @208; w = (d·sc)·(q − 32), one scale per 16
  [GgmlType.Q6_K]: {
    kind: K_I8S16, codeBytesPer32: 32, group: 16, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.Q6_K);
      const D = blockFieldOffset(GgmlType.Q6_K, "d");
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o + D);
        for (let g = 0; g < 16; g++) scales[i * 16 + g] = fr(d * ((src[o + 192 + g]! << 24) >> 24));
        for (let n = 0; n < 2; n++) {
          const ql = o + 64 * n;
          const qh = o + 128 + 32 * n;
          const y = i * 256 + 128 * n;
          for (let l = 0; l < 32; l++) {
            const h = src[qh + l]!;
            codes[y + l] = (((src[ql + l]! & 15) | ((h & 3) << 4)) - 32) & 0xff;
            codes[y + l + 32] = (((src[ql + l + 32]! & 15) | (((h >> 2) & 3) << 4)) - 32) & 0xff;
            codes[y + l + 64] = (((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32) & 0xff;
            codes[y + l + 96] = (((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32) & 0xff;
          }
        }
      }
    },
  },
  // block_q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d f16 @108; w = (d·sc)·(q − (hbit ? 0 : 4))
  [GgmlType.Q3_K]: {
    kind: K_I8S16, codeBytesPer32: 32, group: 16, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.Q3_K);
      const D = blockFieldOffset(GgmlType.Q3_K, "d");
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o + D);
        q3kScales(src, o + 96, sc16);
        for (let g = 0; g < 16; g++) scales[i * 16 + g] = fr(d * sc16[g]!);
        let y = i * 256;
        let m = 1;
        for (let n = 0; n < 2; n++) {
          const q = o + 32 + 32 * n;
          for (let j = 0; j < 4; j++) {
            const shift = 2 * j;
            for (let l = 0; l < 32; l++) {
              const v = ((src[q + l]! >> shift) & 3) - ((src[o + l]! & m) !== 0 ? 0 : 4);
              codes[y + l] = v & 0xff;
            }
            y += 32;
            m <<= 1;
          }
        }
      }
    },
  },
  // block_q2_K: scales[16] @0 (low nibble scale, high nibble min), qs[64] @16, d f16 @80, dmin f16 @82
  [GgmlType.Q2_K]: {
    kind: K_I8A16, codeBytesPer32: 32, group: 16, affine: true,
    repack(src, nb, { codes, scales, mins }) {
      const t = t16();
      const B = bpb(GgmlType.Q2_K);
      const D = blockFieldOffset(GgmlType.Q2_K, "d"); // dmin follows d
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o + D);
        const dmin = f16At(t, src, o + D + 2);
        for (let g = 0; g < 16; g++) {
          const sc = src[o + g]!;
          scales[i * 16 + g] = fr(d * (sc & 15));
          mins![i * 16 + g] = fr(dmin * (sc >> 4));
        }
        let y = i * 256;
        for (let n = 0; n < 2; n++) {
          const q = o + 16 + 32 * n;
          for (let j = 0; j < 4; j++) {
            for (let l = 0; l < 32; l++) codes[y + l] = (src[q + l]! >> (2 * j)) & 3;
            y += 32;
          }
        }
      }
    },
  },
  // block_iq4_xs: d f16 @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8; w = (d·(ls − 32))·kvalues[q]
  [GgmlType.IQ4_XS]: {
    kind: K_I8S32, codeBytesPer32: 32, group: 32, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.IQ4_XS);
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o);
        const sh = src[o + 2]! | (src[o + 3]! << 8);
        for (let ib = 0; ib < 8; ib++) {
          const ls = ((src[o + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
          scales[i * 8 + ib] = fr(d * (ls - 32));
          for (let j = 0; j < 16; j++) {
            const b = src[o + 8 + 16 * ib + j]!;
            codes[i * 256 + ib * 32 + j] = KVALUES_IQ4NL[b & 15]! & 0xff;
            codes[i * 256 + ib * 32 + j + 16] = KVALUES_IQ4NL[b >> 4]! & 0xff;
          }
        }
      }
    },
  },
  // block_tq2_0: qs[64] @0, d f16 @64; element 128n + 32l + m = ((qs[32n + m] >> 2l) & 3) − 1
  [GgmlType.TQ2_0]: {
    kind: K_I8S32, codeBytesPer32: 32, group: 32, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.TQ2_0);
      const D = blockFieldOffset(GgmlType.TQ2_0, "d");
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o + D);
        for (let g = 0; g < 8; g++) scales[i * 8 + g] = d;
        let y = i * 256;
        for (let n = 0; n < 2; n++) {
          for (let l = 0; l < 4; l++) {
            for (let m = 0; m < 32; m++) codes[y++] = (((src[o + 32 * n + m]! >> (2 * l)) & 3) - 1) & 0xff;
          }
        }
      }
    },
  },
  // block_tq1_0: qs[48] @0 (5 trits per byte), qh[4] @48 (4 trits per byte), d f16 @52. A trit is read
  // as ((u8)(q·3^n) · 3) >> 8 (ggml `dequantize_row_tq1_0`).
  [GgmlType.TQ1_0]: {
    kind: K_I8S32, codeBytesPer32: 32, group: 32, affine: false,
    repack(src, nb, { codes, scales }) {
      const t = t16();
      const B = bpb(GgmlType.TQ1_0);
      const D = blockFieldOffset(GgmlType.TQ1_0, "d");
      const pow3 = [1, 3, 9, 27, 81];
      for (let i = 0; i < nb; i++) {
        const o = i * B;
        const d = f16At(t, src, o + D);
        for (let g = 0; g < 8; g++) scales[i * 8 + g] = d;
        let y = i * 256;
        const put = (b: number, n: number): void => {
          const q = (b * pow3[n]!) & 0xff;
          codes[y++] = (((q * 3) >> 8) - 1) & 0xff;
        };
        for (let n = 0; n < 5; n++) for (let m = 0; m < 32; m++) put(src[o + m]!, n);
        for (let n = 0; n < 5; n++) for (let m = 0; m < 16; m++) put(src[o + 32 + m]!, n);
        for (let n = 0; n < 4; n++) for (let j = 0; j < 4; j++) put(src[o + 48 + j]!, n);
      }
    },
  },
};

/** A repack row's own part; block size and bytes per block come from the type-traits table. */
type RepackSpec = Omit<RepackRow, "blockSize" | "bytesPerBlock">;

/** One row per ggml type with a repacked WASM kernel, keyed by ggml type (sizes from GGML_TYPES). */
export const REPACK: Partial<Record<GgmlType, RepackRow>> = withSizes(REPACK_ROWS);

function withSizes<R extends object>(rows: Partial<Record<GgmlType, R>>): Partial<Record<GgmlType, R & { readonly blockSize: number; readonly bytesPerBlock: number }>> {
  const out: Partial<Record<GgmlType, R & { blockSize: number; bytesPerBlock: number }>> = {};
  for (const [k, r] of Object.entries(rows) as [string, R][]) {
    const t = Number(k) as GgmlType;
    out[t] = { ...r, blockSize: GGML_TYPES[t].blockSize, bytesPerBlock: GGML_TYPES[t].bytesPerBlock };
  }
  return out;
}

/** Reference inverse of a repack: the f32 values a prepared layout stands for (s·q − m, in f32). */
export function unpackToF32(row: RepackRow, src: RepackTarget, n: number, order: NibbleOrder): Float32Array {
  const out = new Float32Array(n);
  const q = new Uint8Array(32);
  const signedCodes = new Int8Array(src.codes.buffer, src.codes.byteOffset, src.codes.length);
  for (let b = 0; b < n / 32; b++) {
    if (row.codeBytesPer32 === 16) unpackNibbles32(src.codes, b * 16, order, q);
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      const g = row.group === 32 ? b : i >> 4;
      const code = row.codeBytesPer32 === 16 ? q[j]! - (row.kind === K_Q4_0 ? 8 : 0) : signedCodes[i]!;
      const v = fr(src.scales[g]! * code);
      out[i] = row.affine ? fr(v - src.mins![g]!) : v;
    }
  }
  return out;
}

/** A ggml type whose WASM kernel reads llama.cpp's block bytes as they are (no repack): the tensor can be
 * read from the file straight into wasm memory, and a mat-vec streams exactly the file's bytes. */
export interface NativeRow {
  /** the kernel on the blocks as they are; undefined when the type has only the interleaved kernel (then
   * other matrices run on its REPACK row) */
  kind?: number;
  /** from the type-traits table */
  readonly blockSize: number;
  readonly bytesPerBlock: number;
  /** kernel builds that can run this type natively (`layouts: "native"`) */
  variants: readonly WasmVariant[];
  /** builds where native is the default (`layouts: "auto"`); elsewhere the REPACK row runs it */
  byDefault: readonly WasmVariant[];
  /** with `layouts: "auto"`, matrices of a multiple of 4 rows have their blocks interleaved 4 rows at a
   * time, in place (same bytes, permuted): decode reads one sequential stream per 4 rows and loads each
   * activation block once for them (measured +17…22 % GB/s from RAM on Q4_0, +10 % on Q8_0) */
  interleave4?: number;
}

// Defaults follow measurements on the target machine (docs/kernels.md). Q8_0/Q4_0 native run as fast as
// their repacks and stay native (held once: file bytes = streamed bytes). The k-quants' first native
// kernels (one row at a time against Q8_0 activations) needed more instructions than their expanded
// repacks; the 4-row interleaved kernels against Q8_K activations (assembly/kdecode.ts: the super-block
// dot in integers, one f32 step per 256 weights and 4 rows) stream the GGUF blocks 1.1–1.5× faster than
// the repacks run (4096² mat-vec, 1 thread), so Q4_K/Q5_K/Q6_K matrices of 4k rows run on them by
// default in the relaxed build; other row counts (and `layouts: "native"`) keep the one-row native kernel
// (Q4_K, Q6_K) or the repack (Q5_K).
const NATIVE_ROWS: Partial<Record<GgmlType, Omit<NativeRow, "blockSize" | "bytesPerBlock">>> = {
  [GgmlType.Q8_0]: { kind: K_Q8_0N, variants: ["simd", "relaxed"], byDefault: ["simd", "relaxed"], interleave4: K_Q8_0X4 },
  // SIMD128 has no 8-bit multiply: its Q4_0 kernel is faster on the r16 repack (shared/notes/kernels.md)
  [GgmlType.Q4_0]: { kind: K_Q4_0N, variants: ["relaxed"], byDefault: ["relaxed"], interleave4: K_Q4_0X4 },
  // SIMD128 (no pmaddubsw) runs the k-quants much slower on the GGUF blocks: not offered there. In the
  // relaxed build the 4-row interleaved kernels against Q8_K activations (assembly/kdecode.ts) stream
  // the file's bytes faster than the repacks stream their larger SoA copies (docs/kernels.md)
  [GgmlType.Q4_K]: { kind: K_Q4_KN, variants: ["relaxed"], byDefault: ["relaxed"], interleave4: K_Q4_KX4 },
  [GgmlType.Q6_K]: { kind: K_Q6_KN, variants: ["relaxed"], byDefault: ["relaxed"], interleave4: K_Q6_KX4 },
  [GgmlType.Q5_K]: { variants: ["relaxed"], byDefault: ["relaxed"], interleave4: K_Q5_KX4 },
};

export const NATIVE: Partial<Record<GgmlType, NativeRow>> = withSizes(NATIVE_ROWS);

/** The ggml type whose file bytes a native kind (or its 4-row interleave) runs on, by kernel kind. */
export const NATIVE_TYPE_OF_KIND: ReadonlyMap<number, GgmlType> = new Map(
  (Object.entries(NATIVE) as [string, NativeRow][]).flatMap(([t, r]) => {
    const type = Number(t) as GgmlType;
    return [r.kind, r.interleave4].filter((k) => k !== undefined).map((k) => [k!, type] as [number, GgmlType]);
  }),
);

/** Kernel names for listings: the SoA repack layouts by kind, the native kinds by the ggml type they read. */
export const KERNEL_NAMES: Readonly<Record<number, string>> = {
  [K_F32]: "f32",
  [K_F16]: "f16",
  [K_I8S32]: "i8·s32",
  [K_Q4_0]: "q4_0",
  [K_N4A32]: "n4·s32·m32",
  [K_I8S16]: "i8·s16",
  [K_I8A32]: "i8·s32·m32",
  [K_I8A16]: "i8·s16·m16",
  [K_U4G]: "u4·group·f32x (packed spec)",
  [K_U8G]: "u8·group·f32x (packed spec)",
  [K_LUT4G]: "lut4·group·swizzle·f32x (packed spec)",
  [K_LUT1G]: "lut1·group·swizzle·f32x (packed spec)",
  [K_LUT2G]: "lut2·group·swizzle·f32x (packed spec)",
  [K_LUT3G]: "lut3·group·swizzle·f32x (packed spec)",
  [K_LUTWG]: "lut·group·gather·f32x (packed spec)",
  [K_LUT4Q8]: "lut4·group·i16-swizzle·q8x",
  [K_TERN2Q8]: "tern2·group·masks·q8x",
  [K_NIB4Q8X4]: "nib4·group·q8x·4 rows interleaved",
  [K_LUT4Q8X4]: "lut4·group·u6-swizzle·q8x·4 rows interleaved",
  [K_LUT12Q8X4]: "lut4·group·u12-swizzle·q8x·4 rows interleaved",
  [K_LUT7Q8X4]: "lut4·group·u7-swizzle·q8x·4 rows interleaved",
  [K_TERN2Q8X4]: "tern2·group·q8x·4 rows interleaved",
  [K_TERN2Q8KX4]: "tern2·group·q8kx·4 rows interleaved",
  [K_NIB4Q8X4B]: "nib4·group·f16 scales·i8 zeros·q8x·4 rows byte-interleaved",
  [K_NIB4Q8X4BF]: "nib4·group·f32 scales·i8 zeros·q8x·4 rows byte-interleaved",
  [K_NIB4Q8X4BS]: "nib4·group·f16 scales·q8x·4 rows byte-interleaved",
  [K_NIB4Q8X4BSF]: "nib4·group·f32 scales·q8x·4 rows byte-interleaved",
  [K_NIB4Q8X4BZ]: "nib4·group·f16 scales·u4 zeros·q8x·4 rows byte-interleaved",
  [K_NIB4Q8X4BZF]: "nib4·group·f32 scales·u4 zeros·q8x·4 rows byte-interleaved",
  [K_LUT4Q8X4E]: "lut4·group·u6-swizzle·e8 scales·q8x·4 rows interleaved",
  [K_I8Q8X4]: "i8·group·q8x·4 rows interleaved",
  [K_I16GEMM]: "i16 codes·row·i16x·token (calibration)",
  ...Object.fromEntries((Object.entries(NATIVE) as [string, NativeRow][]).flatMap(([t, r]) => {
    const name = ggmlTypeName(Number(t) as GgmlType).toLowerCase();
    const rows: [number, string][] = r.kind !== undefined ? [[r.kind, `${name} (ggml blocks)`]] : [];
    if (r.interleave4 !== undefined) rows.push([r.interleave4, `${name} (ggml blocks, 4 rows interleaved)`]);
    return rows;
  })),
};
