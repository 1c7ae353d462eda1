/**
 * glibc's expf / tanhf / expm1f emulated bit for bit (src/ggml/glibc-math.ts) against values recorded from this
 * machine's libm (glibc 2.36, x86-64 FMA build; fixtures/glibc-float-math.json, written with python ctypes): half of
 * the inputs are ones where glibc is not correctly rounded, so Math.exp / Math.tanh rounded to f32 fail there —
 * checked too, so the fixture cannot pass a correctly rounded stand-in. The double fma the FMA build needs is checked
 * against exact BigInt arithmetic.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import fc from "fast-check";
import { fma64, glibcExpf, glibcExpm1f, glibcTanhf } from "../../src/ggml/glibc-math.js";
import { expf } from "../../src/ggml/simd-math.js";

// dist/test/ggml → test/ggml/fixtures
const fixture = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "test", "ggml", "fixtures", "glibc-float-math.json");
const rec = JSON.parse(readFileSync(fixture, "utf8")) as { x: number[]; expf: number[]; tanhf: number[]; expm1f: number[] };

const fb = new Float32Array(1);
const ub = new Uint32Array(fb.buffer);
const fromBits = (b: number) => { ub[0] = b; return fb[0]!; };
const bitsOf = (x: number) => { fb[0] = x; return ub[0]!; };

test(`glibc expf, tanhf, expm1f: every recorded value bit for bit (${rec.x.length} inputs); correctly rounded exp/tanh miss some`, () => {
  let crExp = 0, crTanh = 0;
  for (let i = 0; i < rec.x.length; i++) {
    const x = fromBits(rec.x[i]!);
    for (const [name, f, want] of [["expf", glibcExpf, rec.expf[i]!], ["tanhf", glibcTanhf, rec.tanhf[i]!], ["expm1f", glibcExpm1f, rec.expm1f[i]!]] as const) {
      const got = bitsOf(f(x));
      assert.equal(got.toString(16), want.toString(16), `${name}(${x}): 0x${got.toString(16)}, glibc 0x${want.toString(16)}`);
    }
    assert.equal(expf(x), glibcExpf(x), "simd-math expf is glibc's");
    if (bitsOf(Math.fround(Math.exp(x))) !== rec.expf[i]) crExp++;
    if (bitsOf(Math.fround(Math.tanh(x))) !== rec.tanhf[i]) crTanh++;
  }
  assert.ok(crExp >= 100 && crTanh >= 100, `the fixture must hold inputs where glibc differs from correct rounding (exp ${crExp}, tanh ${crTanh})`);
});

test("glibc-math special values: NaN, ±∞, overflow and underflow of expf, tanhf's ±1 and tiny inputs", () => {
  assert.ok(Number.isNaN(glibcExpf(NaN)) && Number.isNaN(glibcTanhf(NaN)));
  assert.equal(glibcExpf(Infinity), Infinity);
  assert.equal(glibcExpf(-Infinity), 0);
  assert.equal(glibcExpf(89), Infinity);
  assert.equal(glibcExpf(-110), 0);
  assert.equal(glibcExpf(0), 1);
  assert.equal(glibcTanhf(Infinity), 1);
  assert.equal(glibcTanhf(-30), -1);
  assert.equal(glibcTanhf(1e-30), Math.fround(1e-30));
  assert.ok(Object.is(glibcTanhf(-0), -0));
});

/** a finite double as m·2^e */
function split64(x: number): [bigint, number] {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  const hi = dv.getUint32(0), lo = dv.getUint32(4), ex = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (ex) m |= 1n << 52n;
  return [hi >>> 31 ? -m : m, ex ? ex - 1075 : -1074];
}

test("fma64 = a·b + c rounded once (exact BigInt comparison: the result is the double nearest the exact value)", () => {
  fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }), fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }), fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e12, max: 1e12 }), (a, b, c) => {
    const r = fma64(a, b, c);
    const [ma, ea] = split64(a), [mb, eb] = split64(b), [mc, ec] = split64(c), [mr, er] = split64(r);
    const e = Math.min(ea + eb, ec, er);
    const exact = ((ma * mb) << BigInt(ea + eb - e)) + (mc << BigInt(ec - e));
    const err = exact - (mr << BigInt(er - e));
    // |exact − r| ≤ half an ulp of r (an ulp of r is 2^(er) when r's significand is normalized to 53 bits)
    const ulpExp = (r === 0 ? -1074 : Math.max(-1074, Math.floor(Math.log2(Math.abs(r))) - 52)) - e;
    const half = ulpExp > 0 ? 1n << BigInt(ulpExp - 1) : 0n;
    return (err < 0n ? -err : err) <= half;
  }), { numRuns: 2000 });
  // the case double rounding gets wrong: a·b + c on a midpoint only in the low part
  assert.equal(fma64(1 + 2 ** -30, 1 + 2 ** -30, -1), 2 ** -29 + 2 ** -60);
});
