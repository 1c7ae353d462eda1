import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Rng } from "../../src/core/rng.js";
import { QuantlabError } from "../../src/core/errors.js";
import { GGML_CODEC_TYPES, dequantize, dequantizeRow, ggmlUsesImatrix, quantize, quantizeRow } from "../../src/ggml/codecs.js";
import { nearestInt, roundf } from "../../src/ggml/cfloat.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../../src/ggml/types.js";
import { loadGolden } from "./golden-helpers.js";

const sizeOf = (t: GgmlType) => GGML_TYPES[t];

describe("C rounding helpers", () => {
  test("nearestInt rounds half to even, roundf half away from zero", () => {
    const cases: [number, number, number][] = [
      [0.5, 0, 1], [1.5, 2, 2], [2.5, 2, 3], [-0.5, 0, -1], [-1.5, -2, -2], [-2.5, -2, -3],
      [0.49999997, 0, 0], [3.7, 4, 4], [-3.7, -4, -4], [4194303, 4194303, 4194303],
    ];
    for (const [x, even, away] of cases) {
      assert.equal(nearestInt(Math.fround(x)), even, `nearestInt(${x})`);
      assert.equal(roundf(Math.fround(x)), away, `roundf(${x})`);
    }
  });
});

describe("every codec type", () => {
  for (const t of GGML_CODEC_TYPES) {
    const name = ggmlTypeName(t);
    const { blockSize, bytesPerBlock } = sizeOf(t);
    const n = blockSize === 1 ? 256 : blockSize * 3;

    test(`${name}: random bytes decode without throwing (NaN/Inf scales allowed)`, () => {
      const rng = new Rng(1234 + t);
      const bytes = new Uint8Array((n / blockSize) * bytesPerBlock);
      for (let k = 0; k < 20; k++) {
        for (let i = 0; i < bytes.length; i++) bytes[i] = rng.nextU32() & 0xff;
        // decode over two different fills: equal results mean every element was written
        const a = new Float32Array(n).fill(12345);
        const b = new Float32Array(n).fill(-0.75);
        dequantizeRow(t, bytes, a, n);
        dequantizeRow(t, bytes, b, n);
        for (let i = 0; i < n; i++) assert.ok(Object.is(a[i], b[i]), `element ${i}: ${a[i]} vs ${b[i]}`);
      }
    });

    test(`${name}: an all-zero block decodes to zeros`, () => {
      const out = dequantize(t, new Uint8Array((n / blockSize) * bytesPerBlock), n);
      for (const v of out) assert.ok(v === 0, `${v}`); // −0 allowed: C computes (0 − 8)·0
    });

    test(`${name}: zero and constant input quantize without NaN and decode back closely`, () => {
      for (const c of [0, 0.5, -0.25]) {
        const x = new Float32Array(n).fill(c);
        const got = dequantize(t, quantize(t, x), n);
        for (const v of got) {
          assert.ok(Number.isFinite(v), `${name} const ${c}: ${v}`);
          // every type represents a constant block to within 1/15 of it (4-bit and finer), ternary exactly
          assert.ok(Math.abs(v - c) <= Math.abs(c) / 15 + 1e-7, `${name} const ${c}: decoded ${v}`);
        }
      }
    });

    test(`${name}: bad lengths are refused with one clear line`, () => {
      if (blockSize > 1) {
        assert.throws(() => quantize(t, new Float32Array(blockSize + 1)), (e: unknown) => e instanceof QuantlabError && e.code === "E_ARG" && /not a multiple/.test(e.message));
      }
      assert.throws(() => dequantizeRow(t, new Uint8Array(0), new Float32Array(n), n), (e: unknown) => e instanceof QuantlabError && /needs \d+ bytes/.test(e.message));
    });
  }
});

describe("quantizer properties", () => {
  test("Q8_0/Q4_0/Q5_0/TQ2_0 (RTN with one scale): error within half a step, re-quantizing changes nothing", () => {
    // [type, levels per sign, steps of error allowed]: Q4_0/Q5_0 put max on −8/−16 and clamp the other sign
    // at +7/+15, so values of the opposite sign may be off by one whole step
    const steps: [GgmlType, number, number][] = [[GgmlType.Q8_0, 127, 0.5], [GgmlType.Q4_0, 8, 1], [GgmlType.Q5_0, 16, 1], [GgmlType.TQ2_0, 1, 0.5]];
    for (const [t, levels, allowed] of steps) {
      const bs = sizeOf(t).blockSize;
      fc.assert(
        fc.property(fc.array(fc.float({ min: -4, max: 4, noNaN: true, noDefaultInfinity: true }), { minLength: bs, maxLength: bs }), (arr) => {
          const x = Float32Array.from(arr);
          const q = quantize(t, x);
          const y = dequantize(t, q, bs);
          let amax = 0;
          for (const v of x) amax = Math.max(amax, Math.abs(v));
          const step = amax / levels;
          // d is stored as f16: allow its relative rounding (2^-11) on the largest level
          for (let i = 0; i < bs; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= step * allowed + amax * 2 ** -10 + 1e-30, `${ggmlTypeName(t)} [${i}] ${x[i]} → ${y[i]}`);
          if (t !== GgmlType.TQ2_0) assert.deepEqual(quantize(t, y), q, `${ggmlTypeName(t)} idempotent`);
        }),
        { numRuns: 100, seed: 42 },
      );
    }
  });

  test("imatrix: weighted error on the golden rows drops for every type that uses it", async () => {
    const g = await loadGolden(GgmlType.Q4_K);
    const rng = new Rng(7);
    const cols = g.cols;
    // importance: a few columns matter a lot, as with real activations
    const imatrix = new Float32Array(cols);
    for (let c = 0; c < cols; c++) imatrix[c] = rng.next() < 0.1 ? 50 + 50 * rng.next() : 0.1 + rng.next();
    const werr = (y: Float32Array): number => {
      let s = 0;
      for (let i = 0; i < y.length; i++) s += imatrix[i % cols]! * (y[i]! - g.x[i]!) ** 2;
      return s;
    };
    const n = g.rows * cols;
    for (const t of GGML_CODEC_TYPES) {
      if (!ggmlUsesImatrix(t)) continue;
      const plain = werr(dequantize(t, quantize(t, g.x, n), n));
      const q = new Uint8Array((n / sizeOf(t).blockSize) * sizeOf(t).bytesPerBlock);
      quantizeRow(t, g.x, q, n, { imatrix });
      const weighted = werr(dequantize(t, q, n));
      assert.ok(weighted < plain, `${ggmlTypeName(t)}: weighted error with imatrix ${weighted} vs without ${plain}`);
    }
  });

  test("imatrix must divide the input into rows of whole blocks", () => {
    assert.throws(() => quantizeRow(GgmlType.Q4_K, new Float32Array(512), new Uint8Array(288), 512, { imatrix: new Float32Array(100) }), /imatrix length 100/);
  });
});
