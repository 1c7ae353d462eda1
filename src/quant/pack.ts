/**
 * Bit packing of element codes.
 *
 * `pack(codes, bits)`: LSB-first bit stream. Code i occupies stream bits [i·bits, (i+1)·bits), code bit j
 * at stream bit i·bits + j, and stream bit t is bit (t mod 8) of byte ⌊t/8⌋. So for bits = 4, byte 0 holds
 * code 0 in its low nibble and code 1 in its high nibble; for bits = 3, byte 0 = c0 | c1<<3 | (c2&3)<<6.
 * Output length ⌈n·bits/8⌉; unused high bits of the last byte are zero. Widths 0..16 (0 = no storage).
 *
 * `packTrits5(trits)`: 5 base-3 digits (0, 1, 2) per byte, 1.6 bits each. Digits d0..d4 form
 * v = d0·81 + d1·27 + d2·9 + d3·3 + d4 (first digit most significant, v < 243), stored as
 * byte = ⌈v·256/243⌉, the fixed-point fraction v/243 in 8 bits. Unpacking digit j needs no division:
 * t = (byte·3^j) mod 256, digit = ⌊3t/256⌋ — the trick of llama.cpp's TQ1_0 (ggml-quants.c
 * quantize_row_tq1_0_ref / dequantize_row_tq1_0), here over a plain sequential stream. A last partial
 * byte is padded with digit 0. `packTernary5` does the same for `ternary` format codes (value + 1 = digit).
 */
import { QuantlabError } from "../core/errors.js";

export type CodeArray = Uint8Array | Uint16Array;

/** bytes needed for n codes of `bits` bits */
export function packedBytes(n: number, bits: number): number {
  return Math.ceil((n * bits) / 8);
}

function checkBits(bits: number, what: string): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > 16) throw new QuantlabError("E_ARG", `${what}: bit width must be 0..16, got ${bits}`);
}

/** Packs codes (each < 2^bits) LSB-first into `dst` (allocated when omitted). */
export function pack(codes: ArrayLike<number>, bits: number, dst?: Uint8Array): Uint8Array {
  checkBits(bits, "pack");
  const n = codes.length;
  const nBytes = packedBytes(n, bits);
  const out = dst ?? new Uint8Array(nBytes);
  if (out.length < nBytes) throw new QuantlabError("E_ARG", `pack: destination has ${out.length} bytes, ${n} codes of ${bits} bits need ${nBytes}`);
  if (bits === 0) return out;
  const limit = 1 << bits;
  if (bits === 8) {
    for (let i = 0; i < n; i++) {
      const c = codes[i]!;
      if (!(c >= 0 && c < 256) || c !== (c | 0)) throw badCode(i, c, bits);
      out[i] = c;
    }
    return out;
  }
  if (bits === 4 || bits === 2 || bits === 1) {
    // whole codes per byte: no carry between bytes (same bytes as the general loop below)
    const per = 8 / bits;
    let i = 0, o = 0;
    for (; i + per <= n; o++) {
      let b = 0;
      for (let k = 0; k < 8; k += bits, i++) {
        const c = codes[i]!;
        if (!(c >= 0 && c < limit) || c !== (c | 0)) throw badCode(i, c, bits);
        b |= c << k;
      }
      out[o] = b;
    }
    if (i < n) {
      let b = 0;
      for (let k = 0; i < n; k += bits, i++) {
        const c = codes[i]!;
        if (!(c >= 0 && c < limit) || c !== (c | 0)) throw badCode(i, c, bits);
        b |= c << k;
      }
      out[o++] = b;
    }
    for (; o < nBytes; o++) out[o] = 0;
    return out;
  }
  let acc = 0; // pending bits, at most 7 + 16 = 23 wide
  let nAcc = 0;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const c = codes[i]!;
    if (!(c >= 0 && c < limit) || c !== (c | 0)) throw badCode(i, c, bits);
    acc |= c << nAcc;
    nAcc += bits;
    while (nAcc >= 8) {
      out[o++] = acc & 0xff;
      acc >>>= 8;
      nAcc -= 8;
    }
  }
  if (nAcc > 0) out[o++] = acc & 0xff;
  for (; o < nBytes; o++) out[o] = 0;
  return out;
}

function badCode(i: number, c: number, bits: number): QuantlabError {
  return new QuantlabError("E_VALUE", `pack: code ${i} is ${c}, which does not fit ${bits} bits (0..${2 ** bits - 1})`);
}

/** Unpacks n codes of `bits` bits (layout of `pack`) into `dst` (a Uint16Array when omitted). */
export function unpack(bytes: Uint8Array, bits: number, n: number, dst?: CodeArray): CodeArray {
  checkBits(bits, "unpack");
  const need = packedBytes(n, bits);
  if (bytes.length < need) throw new QuantlabError("E_FORMAT", `unpack: ${n} codes of ${bits} bits need ${need} bytes, got ${bytes.length}`);
  const out = dst ?? new Uint16Array(n);
  if (out.length < n) throw new QuantlabError("E_ARG", `unpack: destination holds ${out.length} codes, need ${n}`);
  if (dst instanceof Uint8Array && bits > 8) throw new QuantlabError("E_ARG", `unpack: a Uint8Array cannot hold ${bits}-bit codes`);
  if (bits === 0) {
    out.fill(0, 0, n);
    return out;
  }
  const mask = (1 << bits) - 1;
  let acc = 0;
  let nAcc = 0;
  let p = 0;
  for (let i = 0; i < n; i++) {
    while (nAcc < bits) {
      acc |= bytes[p++]! << nAcc;
      nAcc += 8;
    }
    out[i] = acc & mask;
    acc >>>= bits;
    nAcc -= bits;
  }
  return out;
}

const POW3 = [1, 3, 9, 27, 81] as const;

/** bytes needed for n trits at 5 per byte */
export function packedTritBytes(n: number): number {
  return Math.ceil(n / 5);
}

/** Packs base-3 digits (0, 1, 2) five per byte (see the file comment). */
export function packTrits5(trits: ArrayLike<number>, dst?: Uint8Array): Uint8Array {
  const n = trits.length;
  const nBytes = packedTritBytes(n);
  const out = dst ?? new Uint8Array(nBytes);
  if (out.length < nBytes) throw new QuantlabError("E_ARG", `packTrits5: destination has ${out.length} bytes, ${n} trits need ${nBytes}`);
  for (let b = 0; b < nBytes; b++) {
    let v = 0;
    for (let j = 0; j < 5; j++) {
      const i = b * 5 + j;
      const d = i < n ? trits[i]! : 0;
      if (!(d === 0 || d === 1 || d === 2)) throw new QuantlabError("E_VALUE", `packTrits5: trit ${i} is ${d} (must be 0, 1 or 2)`);
      v = v * 3 + d;
    }
    out[b] = Math.floor((v * 256 + 242) / 243); // ⌈v·256/243⌉ ≤ 255 for v ≤ 242
  }
  return out;
}

/** Unpacks n base-3 digits packed by `packTrits5`. */
export function unpackTrits5(bytes: Uint8Array, n: number, dst?: Uint8Array): Uint8Array {
  const need = packedTritBytes(n);
  if (bytes.length < need) throw new QuantlabError("E_FORMAT", `unpackTrits5: ${n} trits need ${need} bytes, got ${bytes.length}`);
  const out = dst ?? new Uint8Array(n);
  if (out.length < n) throw new QuantlabError("E_ARG", `unpackTrits5: destination holds ${out.length}, need ${n}`);
  for (let i = 0; i < n; i++) {
    const b = bytes[(i / 5) | 0]!;
    const t = (b * POW3[i % 5]!) & 0xff;
    out[i] = (t * 3) >> 8;
  }
  return out;
}

/** `ternary` format codes (0 → 0, 1 → +1, 3 → −1) packed 5 per byte as digits value + 1. */
export function packTernary5(codes: ArrayLike<number>, dst?: Uint8Array): Uint8Array {
  const digits = new Uint8Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!;
    if (c === 0) digits[i] = 1;
    else if (c === 1) digits[i] = 2;
    else if (c === 3) digits[i] = 0;
    else throw new QuantlabError("E_VALUE", `packTernary5: code ${i} is ${c}, not a ternary code (0, 1, 3)`);
  }
  return packTrits5(digits, dst);
}

/** Inverse of `packTernary5`: ternary format codes. */
export function unpackTernary5(bytes: Uint8Array, n: number, dst?: Uint8Array): Uint8Array {
  const out = unpackTrits5(bytes, n, dst);
  for (let i = 0; i < n; i++) out[i] = out[i] === 0 ? 3 : out[i]! - 1;
  return out;
}
