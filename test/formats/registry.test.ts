/**
 * Walks the registry: every format with a listable code space (≤ 16 bits) is checked exhaustively —
 * decode of every code, encode(decode(c)) = c, every midpoint between neighbours, random inputs against a
 * brute-force nearest reference, stochastic rounding lands on a neighbour and is unbiased.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { FORMAT_IDS, type FormatName } from "../../src/formats/ids.js";
import { formatById, formatInfo, getFormat, listFormats } from "../../src/formats/registry.js";
import type { Format } from "../../src/formats/types.js";
import { Rng } from "../../src/core/rng.js";
import { decodeLut, decodeLutF32 } from "../../src/formats/lut.js";
import { floatFormats } from "../../src/formats/float.js";
import { QuantlabError } from "../../src/core/errors.js";
import { codeTable, floorIndex, nearestRef, nextDown, nextUp } from "./helpers.js";

const all = listFormats();
const listable = all.filter((f) => f.bits <= 16);
/** formats with more than one code for a value by design */
const redundant = new Set(["dyadic"]);

describe("registry", () => {
  test("every id in FORMAT_IDS has a row with that id and name, ids unique", () => {
    const names = Object.keys(FORMAT_IDS) as FormatName[];
    assert.equal(all.length, names.length);
    for (const n of names) {
      const f = getFormat(n);
      assert.equal(f.name, n);
      assert.equal(f.id, FORMAT_IDS[n]);
      assert.equal(formatById(f.id), f);
    }
    assert.equal(new Set(all.map((f) => f.id)).size, all.length);
  });

  test("type level: a registry without every family's rows does not compile", () => {
    // @ts-expect-error rows of the int, codebook, ternary, log and zero families are missing
    const partial: Record<FormatName, Format> = { ...floatFormats };
    assert.ok(partial);
    // @ts-expect-error an unknown name is not a FormatName
    const bad: FormatName = "int17";
    assert.ok(bad);
  });

  test("the issue's integer widths and the survey's families are all present", () => {
    for (let b = 1; b <= 16; b++) {
      assert.equal(getFormat(`int${b}`).bits, b);
      assert.equal(getFormat(`uint${b}`).bits, b);
      if (b >= 2) assert.equal(getFormat(`int${b}_sym`).bits, b);
    }
    const families = new Set(all.map((f) => f.family));
    for (const fam of ["float", "int", "codebook", "ternary", "binary", "log", "zero"]) assert.ok(families.has(fam as never), fam);
  });

  test("aliases and case resolve; unknown names fail with E_SPEC listing the valid ones", () => {
    assert.equal(getFormat("E4M3").name, "fp8_e4m3");
    assert.equal(getFormat("pow2").name, "pow2_4");
    assert.throws(() => getFormat("int17"), (e: unknown) => e instanceof QuantlabError && e.code === "E_SPEC" && /unknown format "int17".*int16/.test(e.message));
  });

  test("formatInfo facts agree with the enumerated value set", () => {
    for (const f of listable) {
      const info = formatInfo(f);
      const vals = f.values()!;
      assert.equal(info.valueCount, vals.length, f.name);
      assert.equal(info.min, vals[0], f.name);
      assert.equal(info.max, vals[vals.length - 1], f.name); // the top of the grid (int4: 7), what absmax maps to
      const pos = [...vals].filter((v) => v > 0);
      assert.equal(info.minPositive, pos.length ? pos[0] : 0, f.name);
      assert.ok(info.description.length > 5);
    }
  });
});

describe("every listable format, exhaustively", () => {
  for (const f of listable) {
    test(`${f.name}: decode of every code, values(), encode(decode(c)) = c`, () => {
      const vals = f.values()!;
      const set = new Set<number>();
      let nonCanonical = 0;
      for (let c = 0; c < 2 ** f.bits; c++) {
        const v = f.decode(c);
        if (Number.isNaN(v)) {
          assert.ok(f.hasNaN || true);
          continue;
        }
        if (Math.abs(v) === Infinity) {
          assert.ok(f.hasInf, `${f.name}: code ${c} is Inf but hasInf is false`);
          assert.equal(f.encode(v, { overflow: "nonfinite" }), c, `${f.name}: Inf code ${c}`);
          if (f.overflow === "saturate") assert.equal(f.decode(f.encode(v)), Math.sign(v) * f.maxValue, `${f.name}: saturating Inf`);
          continue;
        }
        set.add(v === 0 ? 0 : v);
        const r = f.encode(v);
        assert.ok(Object.is(f.decode(r), v), `${f.name}: decode(encode(decode(${c}))) = ${f.decode(r)}, expected ${v}`);
        if (r !== c) nonCanonical++;
      }
      if (!redundant.has(f.name)) assert.equal(nonCanonical, 0, `${f.name}: ${nonCanonical} codes did not round-trip`);
      assert.deepEqual([...set].sort((a, b) => a - b), Array.from(vals), `${f.name}: values()`);
      assert.equal(f.valueCount, vals.length);
    });

    test(`${f.name}: every midpoint goes to the even code, values beside it to the right side`, () => {
      const { values, codes } = codeTable(f);
      let ties = 0;
      for (let i = 0; i + 1 < values.length; i++) {
        const a = values[i]!;
        const b = values[i + 1]!;
        const mid = a / 2 + b / 2;
        if (mid - a === b - mid && mid > a && mid < b) {
          ties++;
          let even: number;
          if (f.name === "dyadic") {
            // redundant codes: the tie goes to the even numerator on the finest common grid 2^−K
            let K = 0;
            while (!Number.isInteger(a * 2 ** K) || !Number.isInteger(b * 2 ** K)) K++;
            even = (a * 2 ** K) % 2 === 0 ? a : b;
          } else {
            even = (codes[i]! & 1) === 0 ? a : b;
            assert.ok(((codes[i]! ^ codes[i + 1]!) & 1) === 1, `${f.name}: neighbours ${a}, ${b} have codes of equal parity`);
          }
          // === on purpose: a negative input that rounds to zero may give −0
          assert.ok(f.decode(f.encode(mid)) === even, `${f.name}: tie ${mid} between ${a} and ${b}`);
          assert.ok(f.decode(f.encode(nextUp(mid))) === b, `${f.name}: just above ${mid}`);
          assert.ok(f.decode(f.encode(nextDown(mid))) === a, `${f.name}: just below ${mid}`);
        } else {
          assert.ok(f.decode(f.encode(a + (b - a) * 0.25)) === a, `${f.name}: quarter above ${a}`);
          assert.ok(f.decode(f.encode(b - (b - a) * 0.25)) === b, `${f.name}: quarter below ${b}`);
        }
      }
      if (!f.name.startsWith("logsqrt2")) assert.equal(ties, values.length - 1, `${f.name}: every midpoint should be exact`);
    });

    test(`${f.name}: random inputs match a brute-force nearest reference`, () => {
      const { values, codes } = codeTable(f);
      const rng = new Rng(f.id);
      const lo = values[0]!;
      const hi = values[values.length - 1]!;
      const span = Math.max(Math.abs(lo), Math.abs(hi));
      const minPos = values.filter((v) => v > 0)[0] ?? -values.filter((v) => v < 0).pop()!;
      const small = values.length <= 512;
      for (let k = 0; k < 3000; k++) {
        let x: number;
        if (k % 2 === 0) x = lo + (hi - lo) * (rng.next() * 1.2 - 0.1);
        else x = (rng.next() < 0.5 ? -1 : 1) * minPos * (span / minPos) ** (rng.next() * 1.1 - 0.05);
        if (f.overflow === "nonfinite" && Math.abs(x) > span) continue; // IEEE overflow: float tests
        let i: number;
        if (small) i = nearestRef(x, values, codes);
        else {
          const j = floorIndex(x, values);
          if (j < 0) i = 0;
          else if (j >= values.length - 1) i = values.length - 1;
          else {
            const da = x - values[j]!;
            const db = values[j + 1]! - x;
            i = da < db ? j : db < da ? j + 1 : (codes[j]! & 1) === 0 ? j : j + 1;
          }
        }
        const got = f.decode(f.encode(x));
        assert.ok(got === values[i], `${f.name}: encode(${x}) decodes to ${got}, reference ${values[i]}`);
      }
    });
  }
});

describe("stochastic rounding (fast-check, seeded)", () => {
  const rng = new Rng(7);
  test("lands on one of the two neighbours; representable values are unchanged by either rounding", () => {
    const arbFormat = fc.constantFrom(...listable.filter((f) => f.bits > 0));
    fc.assert(
      fc.property(arbFormat, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: -1.05, max: 1.05, noNaN: true }), (f, t, u) => {
        const vals = f.values()!;
        // an in-range point and an exactly representable one
        const x = vals[0]! + (vals[vals.length - 1]! - vals[0]!) * t;
        const c = f.encode(x, { rounding: "stochastic", rng });
        const v = f.decode(c);
        const j = floorIndex(x, vals);
        const ok = v === vals[j] || v === vals[Math.min(j + 1, vals.length - 1)];
        const r = vals[Math.min(vals.length - 1, Math.max(0, Math.floor(((u + 1.05) / 2.1) * vals.length)))]!;
        const same = f.decode(f.encode(r, { rounding: "stochastic", rng })) === r && f.decode(f.encode(r)) === r;
        return ok && same;
      }),
      { seed: 42, numRuns: 3000 },
    );
  });

  test("unbiased: the mean of many draws is within 5 standard errors of x", () => {
    const r = new Rng(123);
    for (const f of listable.filter((g) => g.bits > 0)) {
      const vals = f.values()!;
      for (let k = 0; k < 3; k++) {
        const j = Math.min(vals.length - 2, Math.floor(r.next() * (vals.length - 1)));
        const a = vals[j]!;
        const b = vals[j + 1]!;
        const p = 0.1 + 0.8 * r.next();
        const x = a + (b - a) * p;
        const N = 3000;
        let sum = 0;
        for (let i = 0; i < N; i++) sum += f.decode(f.encode(x, { rounding: "stochastic", rng: r }));
        const mean = sum / N;
        const pe = (x - a) / (b - a);
        const se = ((b - a) * Math.sqrt(pe * (1 - pe))) / Math.sqrt(N);
        assert.ok(Math.abs(mean - x) <= 5 * se + 1e-12 * Math.abs(x), `${f.name}: mean ${mean} vs ${x} (se ${se})`);
      }
    }
  });

  test("stochastic without an rng is an E_ARG error", () => {
    assert.throws(() => getFormat("int4").encode(0.3, { rounding: "stochastic" }), (e: unknown) => e instanceof QuantlabError && e.code === "E_ARG");
  });
});

describe("decode tables", () => {
  test("decodeLut matches decode for every code; the f32 table is exact for fp16/bf16/int16/nf4", () => {
    for (const f of listable) {
      const t = decodeLut(f);
      assert.equal(t.length, 2 ** f.bits);
      for (let c = 0; c < t.length; c++) assert.ok(Object.is(t[c], f.decode(c)), `${f.name} code ${c}`);
      assert.equal(decodeLut(f), t); // cached
    }
    for (const n of ["fp16", "bf16", "int16", "uint16", "nf4", "fp8_e5m2"]) {
      const f = getFormat(n);
      const t32 = decodeLutF32(f);
      const t64 = decodeLut(f);
      for (let c = 0; c < t32.length; c++) assert.ok(Object.is(t32[c], t64[c]) || Number.isNaN(t64[c]!), `${n} code ${c}`);
    }
  });
});

describe("NaN inputs", () => {
  test("formats with a NaN code return it; the others refuse with E_VALUE", () => {
    for (const f of all) {
      if (f.hasNaN) assert.ok(Number.isNaN(f.decode(f.encode(NaN))), f.name);
      else assert.throws(() => f.encode(NaN), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE" && e.message.includes(f.name), f.name);
    }
  });
});

export type { Format };
