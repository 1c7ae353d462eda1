/**
 * quantlab's optional refine pass for the one-scale 32-element types Q4_0, Q5_0 and IQ4_NL (not in
 * llama.cpp, whose Q4_0/Q5_0 reference quantizers take d = max/−8 or max/−16 without any search).
 * For trial inverse scales ±(nmax + 0.1·k)/amax, k = −9..9, on both signs, the levels are rounded, the
 * scale refitted by weighted least squares and rounded to f16, the levels rounded again under that f16
 * scale, and the weighted squared error measured as the decoder will see it. The block is rewritten only
 * when a trial beats the bytes as they are, so it is never worse than llama.cpp's output under that error.
 */
import { fr, readF16, roundF16, writeF16 } from "./cfloat.js";
import { KVALUES_IQ4NL } from "./iq4.js";
import { bestIndexInt8 } from "./search.js";
import { GgmlType } from "./types.js";

type Refine32Type = GgmlType.Q4_0 | GgmlType.Q5_0 | GgmlType.IQ4_NL;

/** decoded multiplier of level index q, and the nearest index for a ratio x/d */
interface Levels {
  mult(q: number): number;
  nearest(r: number): number;
  /** largest |multiplier| on the side max is mapped to */
  nmax: number;
}

const LEVELS: Record<Refine32Type, Levels> = {
  [GgmlType.Q4_0]: { mult: (q) => q - 8, nearest: (r) => Math.max(0, Math.min(15, Math.round(r) + 8)), nmax: 8 },
  [GgmlType.Q5_0]: { mult: (q) => q - 16, nearest: (r) => Math.max(0, Math.min(31, Math.round(r) + 16)), nmax: 16 },
  [GgmlType.IQ4_NL]: { mult: (q) => KVALUES_IQ4NL[q]!, nearest: (r) => bestIndexInt8(16, KVALUES_IQ4NL, fr(r)), nmax: 127 },
};

function readLevels(type: Refine32Type, b: Uint8Array, o: number, out: Uint8Array): void {
  if (type === GgmlType.Q5_0) {
    const qh = b[o + 2]! | (b[o + 3]! << 8) | (b[o + 4]! << 16) | (b[o + 5]! << 24);
    for (let j = 0; j < 16; j++) {
      const q = b[o + 6 + j]!;
      out[j] = (q & 0xf) | (((qh >>> j) & 1) << 4);
      out[j + 16] = (q >> 4) | (((qh >>> (j + 16)) & 1) << 4);
    }
  } else {
    for (let j = 0; j < 16; j++) {
      out[j] = b[o + 2 + j]! & 0xf;
      out[j + 16] = b[o + 2 + j]! >> 4;
    }
  }
}

function writeLevels(type: Refine32Type, b: Uint8Array, o: number, L: Uint8Array): void {
  if (type === GgmlType.Q5_0) {
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      b[o + 6 + j] = (L[j]! & 0xf) | ((L[j + 16]! & 0xf) << 4);
      qh |= ((L[j]! >> 4) << j) | ((L[j + 16]! >> 4) << (j + 16));
    }
    b[o + 2] = qh & 0xff;
    b[o + 3] = (qh >>> 8) & 0xff;
    b[o + 4] = (qh >>> 16) & 0xff;
    b[o + 5] = (qh >>> 24) & 0xff;
  } else {
    for (let j = 0; j < 16; j++) b[o + 2 + j] = L[j]! | (L[j + 16]! << 4);
  }
}

/** Σ w·(decode − x)² for levels L under scale d (as the C decoder computes: fr(mult·d)). */
function err(lv: Levels, x: Float32Array, xo: number, w: Float64Array, d: number, L: Uint8Array): number {
  let e = 0;
  for (let j = 0; j < 32; j++) {
    const r = fr(lv.mult(L[j]!) * d) - x[xo + j]!;
    e += w[j]! * r * r;
  }
  return e;
}

/** Refines one block of `type` at dst[o] for x[xo..xo+32) in place; w: (32) error weights. */
export function refineBlock32(type: Refine32Type, x: Float32Array, xo: number, dst: Uint8Array, o: number, w: Float64Array): void {
  const lv = LEVELS[type];
  const cur = new Uint8Array(32);
  const trial = new Uint8Array(32);
  readLevels(type, dst, o, cur);
  const d0 = readF16(dst, o);
  let best = err(lv, x, xo, w, d0, cur);
  let bestD = d0;
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]!));
  if (amax === 0) return;
  let improved = false;
  for (const sign of [1, -1]) {
    for (let k = -9; k <= 9; k++) {
      const id = (sign * (lv.nmax + 0.1 * k)) / amax;
      // levels under the trial scale, then the weighted least-squares scale for them
      let sxq = 0;
      let sqq = 0;
      for (let j = 0; j < 32; j++) {
        const q = lv.mult(lv.nearest(x[xo + j]! * id));
        sxq += w[j]! * x[xo + j]! * q;
        sqq += w[j]! * q * q;
      }
      if (!(sqq > 0)) continue;
      const d = roundF16(sxq / sqq);
      if (!d) continue;
      for (let j = 0; j < 32; j++) trial[j] = lv.nearest(x[xo + j]! / d);
      const e = err(lv, x, xo, w, d, trial);
      if (e < best) {
        best = e;
        bestD = d;
        cur.set(trial);
        improved = true;
      }
    }
  }
  if (!improved) return;
  writeF16(dst, o, bestD);
  writeLevels(type, dst, o, cur);
}
