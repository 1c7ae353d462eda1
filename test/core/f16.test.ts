/**
 * fp16 and bf16 bit-exact: core/f16.ts conversions and the registry rows against independent references
 * (exhaustive decode vs the IEEE formula; encode vs a nearest-value search over the sorted value table with
 * exact tie handling, and for bf16 a DataView truncate-and-compare reference) on every code, every midpoint
 * and millions of random f32 and float64 inputs.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  bf16ArrayToF32, bf16BitsToF32, bitsToF32, f16ArrayToF32, f16BitsToF32, f16Table32, f32ArrayToBf16, f32ArrayToF16, f32Bits, f32ToBf16Bits, f32ToF16Bits,
} from "../../src/core/f16.js";
import { Rng } from "../../src/core/rng.js";
import { getFormat } from "../../src/formats/registry.js";

/**
 * Positive values of a format whose positive codes 0..maxCode increase monotonically with the code
 * (true for IEEE layouts), plus a virtual next value (the overflow threshold partner) standing for Inf.
 */
function positiveTable(decode: (c: number) => number, infCode: number, virtualNext: number): Float64Array {
  const t = new Float64Array(infCode + 1);
  for (let c = 0; c < infCode; c++) t[c] = decode(c);
  t[infCode] = virtualNext;
  return t;
}

/** nearest code by magnitude search, ties to the even code, Inf when nearer the virtual value (unbounded exponent rounding) */
function refEncode(x: number, pos: Float64Array, signBit: number, nanCode: number): number {
  if (Number.isNaN(x)) return nanCode;
  const s = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  const top = pos.length - 1;
  if (a >= pos[top]!) return s | top;
  let lo = 0;
  let hi = top; // pos[lo] ≤ a < pos[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (pos[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dlo = a - pos[lo]!; // exact: a and pos[lo] within a factor of two, or pos[lo] = 0
  const dhi = pos[hi]! - a;
  const c = dlo < dhi ? lo : dhi < dlo ? hi : lo % 2 === 0 ? lo : hi;
  return s | c;
}

const F16_POS = positiveTable((c) => (c < 1024 ? c * 2 ** -24 : 2 ** ((c >> 10) - 15) * (1 + (c & 1023) / 1024)), 0x7c00, 65536);
const BF16_POS = positiveTable((c) => bitsToF32(c << 16), 0x7f80, 2 ** 128);
const refF16 = (x: number) => refEncode(x, F16_POS, 0x8000, 0x7e00);
const refBf16 = (x: number) => refEncode(x, BF16_POS, 0x8000, 0x7fc0);

const dv = new DataView(new ArrayBuffer(4));
/** bf16 via DataView: truncate the f32 bits, compare both candidates' distances exactly in float64 */
function refBf16DataView(x32: number): number {
  dv.setFloat32(0, x32);
  const b = dv.getUint32(0);
  if ((b & 0x7fffffff) > 0x7f800000) return -1; // NaN: checked separately
  const sign = b & 0x80000000 ? 0x8000 : 0;
  const mag = b & 0x7fffffff;
  const loBits = mag & 0x7fff0000;
  dv.setUint32(0, loBits);
  const lo = dv.getFloat32(0);
  const hiBits = loBits + 0x10000;
  dv.setUint32(0, hiBits);
  const hi = hiBits === 0x7f800000 ? 2 ** 128 : dv.getFloat32(0);
  const a = Math.abs(x32);
  if (mag === 0x7f800000) return sign | 0x7f80;
  const dlo = a - lo;
  const dhi = hi - a;
  const pick = dlo < dhi ? loBits : dhi < dlo ? hiBits : ((loBits >>> 16) & 1) === 0 ? loBits : hiBits;
  return sign | (pick >>> 16);
}

function isF16NaN(h: number): boolean {
  return (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
}

describe("fp16 (IEEE binary16)", () => {
  test("exhaustive decode of all 65536 codes: formula, table, registry row", () => {
    const table = f16Table32();
    const fmt = getFormat("fp16");
    let nans = 0;
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const E = (h >> 10) & 31;
      const M = h & 1023;
      const want = E === 31 ? (M === 0 ? s * Infinity : NaN) : E === 0 ? s * Math.pow(2, -14) * (M / 1024) : s * Math.pow(2, E - 15) * (1 + M / 1024);
      if (Number.isNaN(want)) {
        nans++;
        assert.ok(Number.isNaN(f16BitsToF32(h)) && Number.isNaN(table[h]!) && Number.isNaN(fmt.decode(h)));
        continue;
      }
      assert.ok(Object.is(f16BitsToF32(h), want), `f16BitsToF32(0x${h.toString(16)})`);
      assert.ok(Object.is(table[h], want));
      assert.ok(Object.is(fmt.decode(h), want));
    }
    assert.equal(nans, 2046);
    assert.equal(f16BitsToF32(0x7bff), 65504);
    assert.equal(f16BitsToF32(0x0001), 2 ** -24);
    assert.equal(f16BitsToF32(0x0400), 2 ** -14);
  });

  test("f32ToF16Bits: every f16 value, every midpoint and its f32 neighbours", () => {
    let n = 0;
    for (let h = 0; h < 0x7c00; h++) {
      for (const s of [0, 0x8000]) {
        const v = f16BitsToF32(h | s);
        assert.equal(f32ToF16Bits(v), h | s);
        if (h + 1 <= 0x7c00) {
          const next = h + 1 === 0x7c00 ? 65536 : f16BitsToF32(h + 1);
          const mid = (Math.abs(v) + next) / 2; // exact in f32 (12 significant bits)
          const sg = s ? -1 : 1;
          const mb = f32Bits(mid);
          for (const x of [mid, bitsToF32(mb - 1), bitsToF32(mb + 1)]) {
            assert.equal(f32ToF16Bits(sg * x), refF16(sg * x), `f32ToF16Bits(${sg * x})`);
            n++;
          }
        }
      }
    }
    assert.ok(n > 180000);
  });

  test("f32ToF16Bits on 2M random f32 bit patterns (half of them with f16-range exponents) vs reference", () => {
    const rng = new Rng(2024);
    for (let i = 0; i < 2_000_000; i++) {
      let b = rng.nextU32();
      if (i & 1) b = (b & 0x807fffff) | (((b >>> 23) % 46) + 97) << 23; // exponents 2^-30 … 2^15
      const x = bitsToF32(b);
      const got = f32ToF16Bits(x);
      if (Number.isNaN(x)) {
        assert.ok(isF16NaN(got), `NaN pattern 0x${b.toString(16)} → 0x${got.toString(16)}`);
        continue;
      }
      if (got !== refF16(x)) assert.fail(`f32ToF16Bits(${x} = 0x${b.toString(16)}) = 0x${got.toString(16)}, reference 0x${refF16(x).toString(16)}`);
    }
  });

  test("registry fp16 encodes float64 inputs exactly (no double rounding through f32), 300k random", () => {
    const f = getFormat("fp16");
    const rng = new Rng(99);
    // 1 + 2^-11 + 2^-40: rounding to f32 first would land on the f16 midpoint and round down to even
    assert.equal(f.encode(1 + 2 ** -11 + 2 ** -40), 0x3c01);
    assert.equal(f32ToF16Bits(1 + 2 ** -11 + 2 ** -40), 0x3c00); // the f32-input API rounds its f32 first (documented)
    for (let i = 0; i < 300_000; i++) {
      const x = (rng.next() < 0.5 ? -1 : 1) * 2 ** (rng.next() * 44 - 28) * (1 + rng.next());
      const got = f.encode(x);
      if (got !== refF16(x)) assert.fail(`fp16.encode(${x}) = 0x${got.toString(16)}, reference 0x${refF16(x).toString(16)}`);
    }
    assert.equal(f.encode(65520), 0x7c00);
    assert.equal(f.encode(65519.99), 0x7bff);
    assert.equal(f.encode(70000, { overflow: "saturate" }), 0x7bff);
    assert.equal(f.encode(-Infinity), 0xfc00);
  });

  test("array conversions agree with the scalar ones", () => {
    const rng = new Rng(5);
    const src = new Float32Array(10000);
    rng.fillNormal(src, 1000);
    const h = f32ArrayToF16(src);
    const back = f16ArrayToF32(h);
    for (let i = 0; i < src.length; i++) {
      assert.equal(h[i], f32ToF16Bits(src[i]!));
      assert.equal(back[i], f16BitsToF32(h[i]!));
    }
  });
});

describe("bf16", () => {
  test("exhaustive decode: bf16 bits are the top half of f32", () => {
    const fmt = getFormat("bf16");
    const u16 = new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) u16[h] = h;
    const arr = bf16ArrayToF32(u16);
    for (let h = 0; h < 65536; h++) {
      dv.setUint32(0, h * 65536);
      const want = dv.getFloat32(0);
      const got = bf16BitsToF32(h);
      assert.ok(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)));
      assert.ok(Object.is(arr[h], got) || (Number.isNaN(got) && Number.isNaN(arr[h]!)));
      assert.ok(Object.is(fmt.decode(h), got) || (Number.isNaN(got) && Number.isNaN(fmt.decode(h))));
    }
  });

  test("f32ToBf16Bits on 2M random f32 patterns and edge cases vs the DataView reference", () => {
    const rng = new Rng(77);
    const edges = [0, 0x80000000, 0x7f7fffff, 0x7f7f7fff, 0x7f7f8000, 0x7f800000, 0xff800000, 0x00000001, 0x00008000, 0x00018000, 0x3f808000, 0x3f818000, 0x7fc00000, 0x7f800001];
    for (let i = 0; i < 2_000_000 + edges.length; i++) {
      const b = i < edges.length ? edges[i]! : rng.nextU32();
      const x = bitsToF32(b);
      const got = f32ToBf16Bits(x);
      if (Number.isNaN(x)) {
        assert.ok((got & 0x7f80) === 0x7f80 && (got & 0x7f) !== 0, `NaN 0x${b.toString(16)} → 0x${got.toString(16)}`);
        continue;
      }
      const want = refBf16DataView(x);
      if (got !== want) assert.fail(`f32ToBf16Bits(0x${b.toString(16)}) = 0x${got.toString(16)}, reference 0x${want.toString(16)}`);
      if (i % 16 === 0 && refBf16(x) !== want) assert.fail(`the two references disagree on 0x${b.toString(16)}`);
    }
    assert.equal(f32ToBf16Bits(bitsToF32(0x7f7f8000)), 0x7f80); // midpoint of max and 2^128 → Inf (max is odd)
    const arr = f32ArrayToBf16(Float32Array.of(1, -2.5, 3.14159));
    assert.deepEqual(Array.from(arr), [0x3f80, 0xc020, 0x4049]);
  });

  test("registry bf16 encodes float64 inputs exactly, 300k random", () => {
    const f = getFormat("bf16");
    const rng = new Rng(3);
    assert.equal(f.encode(1 + 2 ** -8 + 2 ** -40), 0x3f81); // f32 first would give the midpoint → 0x3f80
    for (let i = 0; i < 300_000; i++) {
      const x = (rng.next() < 0.5 ? -1 : 1) * 2 ** (rng.next() * 300 - 150) * (1 + rng.next());
      const got = f.encode(x);
      if (got !== refBf16(x)) assert.fail(`bf16.encode(${x}) = 0x${got.toString(16)}, reference 0x${refBf16(x).toString(16)}`);
    }
  });
});

describe("fp32 row", () => {
  test("encode of float64 inputs equals Math.fround (correctly rounded), incl. subnormals and overflow; decode is the f32 value", () => {
    const f = getFormat("fp32");
    const rng = new Rng(17);
    for (let i = 0; i < 300_000; i++) {
      const x = (rng.next() < 0.5 ? -1 : 1) * 2 ** (rng.next() * 290 - 160) * (1 + rng.next());
      const want = f32Bits(Math.fround(x));
      const got = f.encode(x);
      if (got !== want) assert.fail(`fp32.encode(${x}) = 0x${got.toString(16)}, fround 0x${want.toString(16)}`);
      // x is float64 (generic exact path); its f32 rounding takes the fast path and must give the same code
      if (i % 8 === 0 && f.encode(Math.fround(x)) !== want) assert.fail(`fp32 fast path at ${Math.fround(x)}`);
      if (i % 64 === 0) assert.equal(f.decode(want), Math.fround(x));
    }
  });
});
