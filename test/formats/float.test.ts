/**
 * Floating-point formats against their specs: an independent decode formula with the spec's special-code
 * rules written out per format, the spec tables' landmarks (max normal, min normal/subnormal, NaN codes),
 * overflow per variant, and the generic ExMy constructor.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { getFormat, listFormats } from "../../src/formats/registry.js";
import { Rng } from "../../src/core/rng.js";
import { nextDown, nextUp } from "./helpers.js";
import { Minifloat, minifloat } from "../../src/formats/float.js";
import { QuantlabError } from "../../src/core/errors.js";
import type { Format } from "../../src/formats/types.js";

interface SpecRow {
  name: string;
  e: number;
  m: number;
  bias: number;
  /** spec rule for special codes: returns NaN/±Inf or undefined for an ordinary code */
  special(code: number): number | undefined;
  max: number;
  minNormal: number;
  minSubnormal: number;
  nanCodes: number;
  infCodes: number;
  /** result of encoding 2·max with overflow "nonfinite" */
  nonfiniteOverflow: number;
}

const ieee = (e: number, m: number) => (code: number) => {
  const E = (code >> m) & ((1 << e) - 1);
  const M = code & ((1 << m) - 1);
  if (E !== (1 << e) - 1) return undefined;
  return M === 0 ? (code >> (e + m) ? -Infinity : Infinity) : NaN;
};

// Tables: OCP OFP8 rev 1.0 Table 1 (E4M3, E5M2); OCP MX v1.0 Tables 2-4 (FP6, FP4); fnuz: LLVM APFloat.
const SPECS: SpecRow[] = [
  { name: "fp8_e4m3", e: 4, m: 3, bias: 7, special: (c) => ((c & 0x7f) === 0x7f ? NaN : undefined), max: 448, minNormal: 2 ** -6, minSubnormal: 2 ** -9, nanCodes: 2, infCodes: 0, nonfiniteOverflow: NaN },
  { name: "fp8_e5m2", e: 5, m: 2, bias: 15, special: ieee(5, 2), max: 57344, minNormal: 2 ** -14, minSubnormal: 2 ** -16, nanCodes: 6, infCodes: 2, nonfiniteOverflow: Infinity },
  { name: "fp8_e4m3fnuz", e: 4, m: 3, bias: 8, special: (c) => (c === 0x80 ? NaN : undefined), max: 240, minNormal: 2 ** -7, minSubnormal: 2 ** -10, nanCodes: 1, infCodes: 0, nonfiniteOverflow: NaN },
  { name: "fp8_e5m2fnuz", e: 5, m: 2, bias: 16, special: (c) => (c === 0x80 ? NaN : undefined), max: 57344, minNormal: 2 ** -15, minSubnormal: 2 ** -17, nanCodes: 1, infCodes: 0, nonfiniteOverflow: NaN },
  { name: "fp6_e3m2", e: 3, m: 2, bias: 3, special: () => undefined, max: 28, minNormal: 0.25, minSubnormal: 0.0625, nanCodes: 0, infCodes: 0, nonfiniteOverflow: 28 },
  { name: "fp6_e2m3", e: 2, m: 3, bias: 1, special: () => undefined, max: 7.5, minNormal: 1, minSubnormal: 0.125, nanCodes: 0, infCodes: 0, nonfiniteOverflow: 7.5 },
  { name: "fp4_e2m1", e: 2, m: 1, bias: 1, special: () => undefined, max: 6, minNormal: 1, minSubnormal: 0.5, nanCodes: 0, infCodes: 0, nonfiniteOverflow: 6 },
];

/** sign·2^(E−bias)·(1 + M/2^m), subnormal sign·2^(1−bias)·(M/2^m), in float64 */
function formulaValue(code: number, e: number, m: number, bias: number): number {
  const s = (code >> (e + m)) & 1 ? -1 : 1;
  const E = (code >> m) & ((1 << e) - 1);
  const M = code & ((1 << m) - 1);
  return E === 0 ? s * Math.pow(2, 1 - bias) * (M / Math.pow(2, m)) : s * Math.pow(2, E - bias) * (1 + M / Math.pow(2, m));
}

describe("OCP fp8/fp6/fp4 against the spec formula and tables", () => {
  for (const s of SPECS) {
    const f = getFormat(s.name);
    test(`${s.name}: every code decodes to the spec value`, () => {
      const bits = 1 + s.e + s.m;
      assert.equal(f.bits, bits);
      let nans = 0;
      let infs = 0;
      for (let c = 0; c < 2 ** bits; c++) {
        const sp = s.special(c);
        const want = sp === undefined ? formulaValue(c, s.e, s.m, s.bias) : sp;
        const got = f.decode(c);
        if (Number.isNaN(want)) nans++;
        if (Math.abs(want) === Infinity) infs++;
        assert.ok(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)), `${s.name} code 0x${c.toString(16)}: ${got}, spec ${want}`);
      }
      assert.equal(nans, s.nanCodes);
      assert.equal(infs, s.infCodes);
    });

    test(`${s.name}: landmarks max ${s.max}, min normal, min subnormal`, () => {
      assert.equal(f.maxValue, s.max);
      assert.equal(f.minPositive, s.minSubnormal);
      const vals = f.values()!;
      assert.equal(vals[vals.length - 1], s.max);
      assert.equal(vals[0], -s.max);
      assert.ok(vals.includes(s.minNormal));
      assert.ok(!vals.some((v) => v > 0 && v < s.minSubnormal));
      // the first positive value above min subnormal … up to min normal are multiples of min subnormal
      for (const v of vals) if (v > 0 && v < s.minNormal) assert.ok(Number.isInteger(v / s.minSubnormal));
    });

    test(`${s.name}: overflow saturates by default, NaN/Inf with overflow: nonfinite`, () => {
      const vals = f.values()!;
      const below = vals[vals.length - 2]!;
      const ulpTop = s.max - below; // spacing in the top binade
      // just past max but nearer max → max in both modes
      assert.equal(f.decode(f.encode(s.max + ulpTop * 0.25, { overflow: "nonfinite" })), s.max);
      for (const x of [s.max * 2, 1e30, Infinity]) {
        assert.equal(f.decode(f.encode(x)), s.max, `${s.name}: saturate ${x}`);
        assert.equal(f.decode(f.encode(-x)), -s.max, `${s.name}: saturate −${x}`);
        const nf = f.decode(f.encode(x, { overflow: "nonfinite" }));
        assert.ok(Object.is(nf, s.nonfiniteOverflow) || (Number.isNaN(nf) && Number.isNaN(s.nonfiniteOverflow)), `${s.name}: nonfinite ${x} → ${nf}`);
      }
    });
  }

  test("fp8_e4m3: 464 (midpoint of 448 and the NaN slot 480) rounds to even 448; above it is NaN when not saturating (OFP8)", () => {
    const f = getFormat("fp8_e4m3");
    assert.equal(f.encode(464, { overflow: "nonfinite" }), 0x7e);
    assert.equal(f.encode(464.0001, { overflow: "nonfinite" }), 0x7f);
    assert.equal(f.encode(-464.0001, { overflow: "nonfinite" }), 0xff);
    assert.equal(f.encode(464.0001), 0x7e);
    assert.equal(f.encode(NaN), 0x7f);
  });

  test("fp8_e5m2: 61440 (midpoint of max 57344 and 2^16) overflows to Inf: max has an odd mantissa", () => {
    const f = getFormat("fp8_e5m2");
    assert.equal(f.encode(61440, { overflow: "nonfinite" }), 0x7c);
    assert.equal(f.encode(61439.99, { overflow: "nonfinite" }), 0x7b);
    assert.equal(f.encode(61440), 0x7b);
    assert.equal(f.encode(-Infinity, { overflow: "nonfinite" }), 0xfc);
  });

  test("fp4_e2m1 is exactly {0, 0.5, 1, 1.5, 2, 3, 4, 6} with signs (MX v1.0 Table 4)", () => {
    const f = getFormat("fp4_e2m1");
    const pos = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
    for (let c = 0; c < 8; c++) {
      assert.equal(f.decode(c), pos[c]);
      assert.ok(Object.is(f.decode(c | 8), -pos[c]!));
    }
    // ties: 2.5 between 2 (0b100) and 3 (0b101) → 2; 5 between 4 and 6 → 4; 0.25 between 0 and 0.5 → 0
    assert.equal(f.decode(f.encode(2.5)), 2);
    assert.equal(f.decode(f.encode(5)), 4);
    assert.equal(f.decode(f.encode(0.25)), 0);
    assert.equal(f.decode(f.encode(0.75)), 1);
    assert.ok(Object.is(f.decode(f.encode(-0.1)), -0));
  });

  test("signed zero survives encode for every signed format except fnuz (no −0)", () => {
    for (const s of SPECS) {
      const f = getFormat(s.name);
      const c = f.encode(-0);
      if (s.name.endsWith("fnuz")) assert.equal(c, 0);
      else assert.equal(c, 1 << (s.e + s.m));
    }
  });
});

describe("E8M0 (OCP MX v1.0 §5.4, scale type)", () => {
  const f = getFormat("e8m0");
  test("every code is 2^(E−127), 0xFF is NaN; no zero, no sign", () => {
    for (let c = 0; c < 255; c++) assert.equal(f.decode(c), Math.pow(2, c - 127));
    assert.ok(Number.isNaN(f.decode(255)));
    assert.equal(f.decode(127), 1);
    assert.equal(f.bits, 8);
  });
  test("encode: powers of two exactly, ties to the even exponent code, clamps below 2^-127 and at negatives", () => {
    for (let c = 0; c < 255; c++) assert.equal(f.encode(Math.pow(2, c - 127)), c);
    assert.equal(f.encode(1.5), 128); // tie between 1 (127, odd) and 2 (128, even)
    assert.equal(f.encode(3), 128); // tie between 2 (128) and 4 (129)
    assert.equal(f.encode(1.49), 127);
    assert.equal(f.encode(0), 0);
    assert.equal(f.encode(-5), 0);
    assert.equal(f.encode(1e-50), 0);
    assert.equal(f.encode(1e300), 254);
    assert.equal(f.encode(NaN), 255);
  });
});

describe("generic ExMy minifloat", () => {
  test("the arithmetic encoder and the level-table shortcut agree on every midpoint, its neighbours and random inputs", () => {
    const rng = new Rng(31);
    const rows = listFormats().filter((f): f is Minifloat => f instanceof Minifloat && f.bits <= 12);
    rows.push(minifloat({ e: 3, m: 4, bias: 5, special: "none" }), minifloat({ e: 2, m: 2, special: "fn" }), minifloat({ e: 4, m: 3, special: "fnuz", bias: 8 }));
    for (const f of rows) {
      const vals = f.values()!;
      const xs: number[] = [];
      for (let i = 0; i + 1 < vals.length; i++) {
        const mid = vals[i]! / 2 + vals[i + 1]! / 2;
        xs.push(mid, nextUp(mid), nextDown(mid), vals[i]!);
      }
      for (let k = 0; k < 2000; k++) xs.push((rng.next() * 2.2 - 1.1) * f.maxValue, (rng.next() - 0.5) * f.minPositive * 8);
      xs.push(-0, 0, f.maxValue, -f.maxValue);
      for (const x of xs) {
        for (const overflow of ["saturate", "nonfinite"] as const) {
          const a = f.encodeArithmetic(x, { overflow });
          const b = f.encode(x, { overflow });
          if (a !== b) assert.fail(`${f.name}: encode(${x}, ${overflow}) table ${b} vs arithmetic ${a}`);
        }
      }
    }
  });

  test("named rows are instances with the spec parameters", () => {
    const e4m3 = getFormat("fp8_e4m3") as Minifloat;
    assert.ok(e4m3 instanceof Minifloat);
    assert.deepEqual([e4m3.e, e4m3.m, e4m3.bias, e4m3.special], [4, 3, 7, "fn"]);
  });

  test("configurable bias scales every value by 2^(default − bias)", () => {
    const a = minifloat({ e: 3, m: 2, special: "none" });
    const b = minifloat({ e: 3, m: 2, bias: 5, special: "none" });
    for (let c = 0; c < 64; c++) assert.equal(b.decode(c), a.decode(c) * 2 ** (3 - 5));
    for (let c = 0; c < 64; c++) assert.equal(b.encode(b.decode(c)), c);
  });

  test("subnormals off flushes: exponent field 0 decodes to ±0, tiny values round to 0 or min normal", () => {
    const f = minifloat({ e: 4, m: 3, bias: 7, special: "fn", subnormals: false });
    for (let c = 0; c < 8; c++) assert.equal(f.decode(c), 0);
    const minNormal = 2 ** -6;
    assert.equal(f.minPositive, minNormal);
    assert.equal(f.decode(f.encode(minNormal * 0.51)), minNormal);
    assert.equal(f.decode(f.encode(minNormal * 0.49)), 0);
    assert.equal(f.decode(f.encode(minNormal * 0.5)), 0);
    assert.equal(f.valueCount, 2 * (126 - 8 + 1) + 1);
  });

  test("IEEE E4M3 (with Inf, max 240) differs from OCP E4M3 only in the top binade", () => {
    const f = minifloat({ e: 4, m: 3 }); // IEEE-style: bias 7, Inf at 0x78
    assert.equal(f.maxValue, 240);
    assert.equal(f.decode(0x78), Infinity);
    const ocp = getFormat("fp8_e4m3");
    for (let c = 0; c < 0x78; c++) assert.equal(f.decode(c), ocp.decode(c));
  });

  test("invalid parameters are E_SPEC errors", () => {
    assert.throws(() => minifloat({ e: 0, m: 3 }), (e: unknown) => e instanceof QuantlabError && e.code === "E_SPEC");
    assert.throws(() => minifloat({ e: 4, m: 0, special: "ieee" }), (e: unknown) => e instanceof QuantlabError && e.code === "E_SPEC");
  });
});

export type { Format };
