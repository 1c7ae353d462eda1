/**
 * One registry row per ggml type quantlab encodes and decodes: `dequantizeRow` (bit-exact with llama.cpp's
 * `to_float`) and `quantizeRow` (llama.cpp's reference quantizers; with an importance matrix its `_impl`
 * quantizers). The table is typed `Record<GgmlCodecType, …>` so a missing row is a compile error.
 */
import { bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../core/f16.js";
import { QuantlabError } from "../core/errors.js";
import { readF16, writeF16 } from "./cfloat.js";
import { quantizeIq4Impl, newIq4Scratch, dequantizeIQ4_NL, dequantizeIQ4_XS, refineIQ4_XS } from "./iq4.js";
import {
  dequantizeQ2_K, dequantizeQ3_K, dequantizeQ4_K, dequantizeQ5_K, dequantizeQ6_K, dequantizeQ8_K,
  quantizeQ2_KImpl, quantizeQ2_KRef, quantizeQ3_KImpl, quantizeQ3_KRef, quantizeQ4_KImpl, quantizeQ4_KRef,
  quantizeQ5_KImpl, quantizeQ5_KRef, quantizeQ6_K, quantizeQ8_KRef, refineQ2_K, refineQ3_K, refineQ45_K, refineQ6_K,
} from "./kquants.js";
import {
  dequantizeQ4_0, dequantizeQ4_1, dequantizeQ5_0, dequantizeQ5_1, dequantizeQ8_0, dequantizeQ8_1, newScratch,
  quantizeQ4_0Impl, quantizeQ4_0Ref, quantizeQ4_1Impl, quantizeQ4_1Ref, quantizeQ5_0Impl, quantizeQ5_0Ref,
  quantizeQ5_1Impl, quantizeQ5_1Ref, quantizeQ8_0Ref, quantizeQ8_1Ref, rowSigma2, type Scratch,
} from "./legacy.js";
import { refineBlock32 } from "./refine32.js";
import { dequantizeTQ1_0, dequantizeTQ2_0, quantizeTQ1_0Ref, quantizeTQ2_0Ref } from "./ternary.js";
import { GGML_TYPES, GgmlType, ggmlTypeName, ggmlTypeTraits, type GgmlCodecType } from "./types.js";

export type { GgmlCodecType } from "./types.js";

export interface QuantizeOptions {
  /**
   * Importance per input column (llama.cpp imatrix: mean squared activation), length = row width.
   * `src` is then taken as rows of that width. Types whose llama.cpp quantizer ignores it (F32, F16,
   * BF16, Q8_0, Q8_1, Q8_K, TQ1_0, TQ2_0) ignore it too.
   */
  imatrix?: Float32Array;
  /**
   * quantlab's refine pass after llama.cpp's search: k-quants and IQ4_XS move each sub-block's stored scale
   * (and min) ±2 steps, Q4_0/Q5_0/IQ4_NL search their one scale (refine32.ts), wherever that lowers the
   * squared error, weighted by the imatrix when given.
   * Never worse than llama.cpp's bytes under that error; the bytes then differ from llama.cpp's but decode
   * in it like any block. Off by default (default output is byte-identical with llama.cpp).
   */
  refine?: boolean;
}

/** Per-call state for quantizers: scratch buffers, the imatrix and the row context the `_impl` ones need. */
interface BlockCtx {
  s: Scratch;
  iq4: ReturnType<typeof newIq4Scratch>;
  qw: Float32Array | null;
  /** offset of this block's first column in the imatrix */
  qwo: number;
  /** Σx²/rowWidth of the current row (q4_0 … q5_1 `_impl`) */
  sigma2: number;
}

interface CodecRow {
  /** decodes nb consecutive blocks from src (offset 0) into dst (offset 0) */
  dequantize(src: Uint8Array, dst: Float32Array, nb: number): void;
  /** encodes one block of x at xo into dst at o */
  quantizeBlock(x: Float32Array, xo: number, dst: Uint8Array, o: number, c: BlockCtx): void;
  /** does the quantizer use `sigma2` of the whole row (then rows are quantized one at a time) */
  rowSigma?: boolean;
  /** is the imatrix used */
  usesImatrix: boolean;
  /** llama.cpp has a to_float for it (activation types Q8_1 does not) */
  llamaDecodes: boolean;
  /** whole-row encoder for the element types (F32/F16/BF16), instead of one call per element */
  quantizeAll?: (x: Float32Array, dst: Uint8Array, n: number) => void;
  /** quantlab's refine pass on one encoded block, error weights w (one per element of the block) */
  refine?: (x: Float32Array, xo: number, dst: Uint8Array, o: number, w: Float64Array, c: BlockCtx) => void;
}

const CODECS: Record<GgmlCodecType, CodecRow> = {
  [GgmlType.F32]: {
    dequantize: (src, dst, nb) => new Uint8Array(dst.buffer, dst.byteOffset, nb * 4).set(src.subarray(0, nb * 4)),
    quantizeBlock: (x, xo, dst, o) => dst.set(new Uint8Array(x.buffer, x.byteOffset + xo * 4, 4), o),
    quantizeAll: (x, dst, n) => dst.set(new Uint8Array(x.buffer, x.byteOffset, n * 4)),
    usesImatrix: false,
    llamaDecodes: true,
  },
  [GgmlType.F16]: {
    dequantize: (src, dst, nb) => {
      for (let i = 0; i < nb; i++) dst[i] = readF16(src, 2 * i);
    },
    quantizeBlock: (x, xo, dst, o) => void writeF16(dst, o, x[xo]!),
    quantizeAll: (x, dst, n) => {
      for (let i = 0; i < n; i++) {
        const h = f32ToF16Bits(x[i]!);
        dst[2 * i] = h & 0xff;
        dst[2 * i + 1] = h >>> 8;
      }
    },
    usesImatrix: false,
    llamaDecodes: true,
  },
  [GgmlType.BF16]: {
    dequantize: (src, dst, nb) => {
      for (let i = 0; i < nb; i++) dst[i] = bf16BitsToF32(src[2 * i]! | (src[2 * i + 1]! << 8));
    },
    quantizeBlock: (x, xo, dst, o) => {
      const h = f32ToBf16Bits(x[xo]!);
      dst[o] = h & 0xff;
      dst[o + 1] = h >>> 8;
    },
    quantizeAll: (x, dst, n) => {
      for (let i = 0; i < n; i++) {
        const h = f32ToBf16Bits(x[i]!);
        dst[2 * i] = h & 0xff;
        dst[2 * i + 1] = h >>> 8;
      }
    },
    usesImatrix: false,
    llamaDecodes: true,
  },
  [GgmlType.Q4_0]: {
    dequantize: dequantizeQ4_0,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ4_0Impl(x, xo, dst, o, c.qw, c.qwo, c.sigma2, c.s) : quantizeQ4_0Ref(x, xo, dst, o)),
    rowSigma: true,
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w) => refineBlock32(GgmlType.Q4_0, x, xo, dst, o, w),
  },
  [GgmlType.Q4_1]: {
    dequantize: dequantizeQ4_1,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ4_1Impl(x, xo, dst, o, c.qw, c.qwo, c.sigma2, c.s) : quantizeQ4_1Ref(x, xo, dst, o)),
    rowSigma: true,
    usesImatrix: true,
    llamaDecodes: true,
  },
  [GgmlType.Q5_0]: {
    dequantize: dequantizeQ5_0,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ5_0Impl(x, xo, dst, o, c.qw, c.qwo, c.sigma2, c.s) : quantizeQ5_0Ref(x, xo, dst, o)),
    rowSigma: true,
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w) => refineBlock32(GgmlType.Q5_0, x, xo, dst, o, w),
  },
  [GgmlType.Q5_1]: {
    dequantize: dequantizeQ5_1,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ5_1Impl(x, xo, dst, o, c.qw, c.qwo, c.sigma2, c.s) : quantizeQ5_1Ref(x, xo, dst, o)),
    rowSigma: true,
    usesImatrix: true,
    llamaDecodes: true,
  },
  [GgmlType.Q8_0]: { dequantize: dequantizeQ8_0, quantizeBlock: (x, xo, dst, o) => quantizeQ8_0Ref(x, xo, dst, o), usesImatrix: false, llamaDecodes: true },
  [GgmlType.Q8_1]: { dequantize: dequantizeQ8_1, quantizeBlock: (x, xo, dst, o) => quantizeQ8_1Ref(x, xo, dst, o), usesImatrix: false, llamaDecodes: false },
  [GgmlType.Q2_K]: {
    dequantize: dequantizeQ2_K,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ2_KImpl(x, xo, dst, o, c.qw, c.qwo, c.s) : quantizeQ2_KRef(x, xo, dst, o, c.s)),
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w, c) => refineQ2_K(x, xo, dst, o, w, c.s),
  },
  [GgmlType.Q3_K]: {
    dequantize: dequantizeQ3_K,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ3_KImpl(x, xo, dst, o, c.qw, c.qwo, c.s) : quantizeQ3_KRef(x, xo, dst, o, c.s)),
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w, c) => refineQ3_K(x, xo, dst, o, w, c.s),
  },
  [GgmlType.Q4_K]: {
    dequantize: dequantizeQ4_K,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ4_KImpl(x, xo, dst, o, c.qw, c.qwo, c.s) : quantizeQ4_KRef(x, xo, dst, o, c.s)),
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w, c) => refineQ45_K(x, xo, dst, o, w, c.s, 15),
  },
  [GgmlType.Q5_K]: {
    dequantize: dequantizeQ5_K,
    quantizeBlock: (x, xo, dst, o, c) => (c.qw ? quantizeQ5_KImpl(x, xo, dst, o, c.qw, c.qwo, c.s) : quantizeQ5_KRef(x, xo, dst, o, c.s)),
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w, c) => refineQ45_K(x, xo, dst, o, w, c.s, 31),
  },
  [GgmlType.Q6_K]: {
    dequantize: dequantizeQ6_K,
    quantizeBlock: (x, xo, dst, o, c) => quantizeQ6_K(x, xo, dst, o, c.qw, c.qwo, c.s),
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w, c) => refineQ6_K(x, xo, dst, o, w, c.s),
  },
  [GgmlType.Q8_K]: { dequantize: dequantizeQ8_K, quantizeBlock: (x, xo, dst, o) => quantizeQ8_KRef(x, xo, dst, o), usesImatrix: false, llamaDecodes: true },
  [GgmlType.IQ4_NL]: {
    dequantize: dequantizeIQ4_NL,
    quantizeBlock: (x, xo, dst, o, c) => quantizeIq4Impl(32, x, xo, dst, o, o + 2, 0, 0, c.qw, c.qwo, 7, c.iq4),
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w) => refineBlock32(GgmlType.IQ4_NL, x, xo, dst, o, w),
  },
  [GgmlType.IQ4_XS]: {
    dequantize: dequantizeIQ4_XS,
    quantizeBlock: (x, xo, dst, o, c) => quantizeIq4Impl(256, x, xo, dst, o, o + 8, o + 2, o + 4, c.qw, c.qwo, 7, c.iq4),
    usesImatrix: true,
    llamaDecodes: true,
    refine: (x, xo, dst, o, w) => refineIQ4_XS(x, xo, dst, o, w),
  },
  [GgmlType.TQ1_0]: { dequantize: dequantizeTQ1_0, quantizeBlock: (x, xo, dst, o) => quantizeTQ1_0Ref(x, xo, dst, o), usesImatrix: false, llamaDecodes: true },
  [GgmlType.TQ2_0]: { dequantize: dequantizeTQ2_0, quantizeBlock: (x, xo, dst, o) => quantizeTQ2_0Ref(x, xo, dst, o), usesImatrix: false, llamaDecodes: true },
};

/** Every type with a codec, in id order. */
export const GGML_CODEC_TYPES: readonly GgmlCodecType[] = (Object.keys(CODECS).map(Number) as GgmlCodecType[]).sort((a, b) => a - b);

/** Does quantlab encode and decode this type (its traits row says so; CODECS has a row for exactly those). */
export function hasGgmlCodec(t: GgmlType): t is GgmlCodecType {
  return ggmlTypeTraits(t)?.codec === true;
}

/** Does llama.cpp's quantizer for this type use an importance matrix (quantlab's does the same). */
export function ggmlUsesImatrix(t: GgmlCodecType): boolean {
  return CODECS[t].usesImatrix;
}

function codecOf(t: GgmlType, what: string): CodecRow {
  if (!hasGgmlCodec(t)) throw new QuantlabError("E_UNSUPPORTED", `${what}: ggml type ${ggmlTypeName(t)} has no codec in quantlab`);
  return CODECS[t];
}

function checkCount(t: GgmlType, n: number, what: string): { blockSize: number; bytesPerBlock: number; nb: number } {
  const size = GGML_TYPES[t];
  if (!Number.isInteger(n) || n < 0 || n % size.blockSize !== 0) {
    throw new QuantlabError("E_ARG", `${what}: ${n} elements is not a multiple of the ${size.name} block size ${size.blockSize}`);
  }
  return { blockSize: size.blockSize, bytesPerBlock: size.bytesPerBlock, nb: n / size.blockSize };
}

/**
 * Decodes n elements of ggml type `type` from `src` into `dst`, bit-exact with llama.cpp's to_float.
 * n must be a multiple of the block size; src must hold the n/blockSize blocks.
 */
export function dequantizeRow(type: GgmlType, src: Uint8Array, dst: Float32Array, n: number): void {
  const c = codecOf(type, "dequantizeRow");
  const { bytesPerBlock, nb } = checkCount(type, n, "dequantizeRow");
  if (src.length < nb * bytesPerBlock) {
    throw new QuantlabError("E_ARG", `dequantizeRow: ${ggmlTypeName(type)} needs ${nb * bytesPerBlock} bytes for ${n} elements, got ${src.length}`);
  }
  if (dst.length < n) throw new QuantlabError("E_ARG", `dequantizeRow: dst holds ${dst.length} floats, need ${n}`);
  c.dequantize(src, dst, nb);
}

/** Allocating form of dequantizeRow. */
export function dequantize(type: GgmlType, src: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  dequantizeRow(type, src, out, n);
  return out;
}

/**
 * Encodes n floats of `src` as ggml type `type` into `dst` (n/blockSize blocks). Without an imatrix the
 * bytes equal llama.cpp's `ggml_quantize_chunk` with no importance matrix; with one, src is rows of
 * imatrix.length columns and the `_impl` quantizers weigh each column. This is the reference every
 * faster encoder (kernels/wasm/encoder.ts) must match byte for byte.
 */
export function quantizeRow(type: GgmlType, src: Float32Array, dst: Uint8Array, n: number, opts: QuantizeOptions = {}): void {
  const c = codecOf(type, "quantizeRow");
  const { blockSize, bytesPerBlock, nb } = checkCount(type, n, "quantizeRow");
  if (src.length < n) throw new QuantlabError("E_ARG", `quantizeRow: src holds ${src.length} floats, need ${n}`);
  if (dst.length < nb * bytesPerBlock) {
    throw new QuantlabError("E_ARG", `quantizeRow: ${ggmlTypeName(type)} needs ${nb * bytesPerBlock} bytes for ${n} elements, dst has ${dst.length}`);
  }
  if (c.quantizeAll) {
    c.quantizeAll(src, dst, n);
    return;
  }
  const qw = c.usesImatrix && opts.imatrix ? opts.imatrix : null;
  const rowWidth = qw ? qw.length : n;
  if (qw && (rowWidth === 0 || rowWidth % blockSize !== 0 || n % rowWidth !== 0)) {
    throw new QuantlabError("E_ARG", `quantizeRow: imatrix length ${rowWidth} must be a multiple of ${blockSize} dividing ${n}`);
  }
  const ctx: BlockCtx = { s: newScratch(), iq4: newIq4Scratch(), qw, qwo: 0, sigma2: 0 };
  const blocksPerRow = rowWidth / blockSize;
  const refine = opts.refine ? c.refine : undefined;
  const w = refine ? new Float64Array(blockSize).fill(1) : undefined; // (blockSize) error weights
  for (let b = 0; b < nb; b++) {
    const xo = b * blockSize;
    const inRow = b % blocksPerRow;
    if (qw) {
      ctx.qwo = inRow * blockSize;
      if (c.rowSigma && inRow === 0) ctx.sigma2 = rowSigma2(src, xo, rowWidth);
    }
    c.quantizeBlock(src, xo, dst, b * bytesPerBlock, ctx);
    if (refine) {
      if (qw) for (let j = 0; j < blockSize; j++) w![j] = qw[ctx.qwo + j]!;
      refine(src, xo, dst, b * bytesPerBlock, w!, ctx);
    }
  }
}

/** Allocating form of quantizeRow. */
export function quantize(type: GgmlType, src: Float32Array, n: number = src.length, opts: QuantizeOptions = {}): Uint8Array {
  const { bytesPerBlock, nb } = checkCount(type, n, "quantize");
  const out = new Uint8Array(nb * bytesPerBlock);
  quantizeRow(type, src, out, n, opts);
  return out;
}

/** Does llama.cpp itself have a to_float for this type (false for the activation-only Q8_1). */
export function llamaCppDecodes(t: GgmlCodecType): boolean {
  return CODECS[t].llamaDecodes;
}
