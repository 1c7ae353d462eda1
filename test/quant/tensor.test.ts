import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { QuantlabError } from "../../src/core/errors.js";
import { Rng } from "../../src/core/rng.js";
import { getFormat } from "../../src/formats/registry.js";
import { groupLayout } from "../../src/quant/granularity.js";
import { SpecQuantizer } from "../../src/quant/quantizer.js";
import { parseSpec } from "../../src/quant/spec.js";
import { quantizeLayer, quantizeTensor, selectOutliers, type QTensor } from "../../src/quant/tensor.js";
import { toEntries } from "../../src/quant/serialize.js";
import { errorStats } from "../../src/quant/metrics.js";

const f32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e4, max: 1e4 });

function matrix(maxRows = 6, maxCols = 40) {
  return fc.record({ rows: fc.integer({ min: 1, max: maxRows }), cols: fc.integer({ min: 1, max: maxCols }) })
    .chain(({ rows, cols }) => fc.float32Array({ minLength: rows * cols, maxLength: rows * cols, noNaN: true, noDefaultInfinity: true, min: -1e4, max: 1e4 })
      .map((w) => ({ rows, cols, w })));
}

/** Scale and zero point of every element (from its group). */
function perElement(q: QTensor): { s: Float64Array; z: Float64Array } {
  const n = q.numel;
  const g = q.layout.groupOfElement();
  const s = new Float64Array(n), z = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const p = q.groupParams(g[i]!);
    s[i] = p.scale;
    z[i] = p.zero;
  }
  return { s, z };
}

describe("affine and symmetric error bounds (property)", () => {
  const intSpecs = ["int4:g8:asym", "int3:channel:asym", "int8:tensor:asym", "int2:g5:asym", "int1:g4:asym", "int4:g8:asymf", "int5:g3:asymf",
    "int4:g8", "int8:channel", "int2:ichannel", "int6:b2x3", "int3:g7:symfull", "int12:g16:asym", "int16:channel"];
  for (const spec of intSpecs) {
    test(`${spec}: |x − x̂| ≤ scale/2 for values in the grid's range`, () => {
      fc.assert(fc.property(matrix(), ({ rows, cols, w }) => {
        const q = quantizeTensor(w, [rows, cols], spec);
        const d = q.dequantize();
        const { s, z } = perElement(q);
        const qz = new SpecQuantizer(parseSpec(spec));
        for (let i = 0; i < w.length; i++) {
          const sc = Math.abs(s[i]!);
          const lo = Math.min((qz.qmin - z[i]!) * s[i]!, (qz.qmax - z[i]!) * s[i]!);
          const hi = Math.max((qz.qmin - z[i]!) * s[i]!, (qz.qmax - z[i]!) * s[i]!);
          const x = w[i]!;
          if (x < lo || x > hi) continue; // clipped, outside the bound's premise
          const tol = sc / 2 + 4e-7 * Math.max(Math.abs(x), sc * qz.qmax); // f32 rounding of scale and product
          assert.ok(Math.abs(x - d[i]!) <= tol, `${spec} [${rows}x${cols}] x=${x} x̂=${d[i]} scale=${sc} zero=${z[i]}`);
        }
      }), { numRuns: 150, seed: 7 });
    });
  }

  test("min-max calibration leaves nothing out of range: every element obeys the bound (int4:g8:asym)", () => {
    fc.assert(fc.property(matrix(), ({ rows, cols, w }) => {
      const q = quantizeTensor(w, [rows, cols], "int4:g8:asym");
      const d = q.dequantize();
      const { s } = perElement(q);
      // f32 scales are rounded toward zero for affine grids, so the ends may sit a few f32 ulps of 15·s beyond s/2
      for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i]! - d[i]!) <= s[i]! / 2 + 4e-7 * s[i]! * 15 + 1e-30, `x=${w[i]} x̂=${d[i]} s=${s[i]}`);
    }), { numRuns: 200, seed: 3 });
  });
});

/** values as fast-check makes them, with the subnormal-scale range (0 < |w| < 1e-30) mapped to 0 */
function normalMatrix(maxRows: number, maxCols: number, minAbs = 1e-30) {
  return matrix(maxRows, maxCols).map(({ rows, cols, w }) => ({ rows, cols, w: w.map((v) => (Math.abs(v) < minAbs ? 0 : v)) }));
}

describe("RTN is idempotent (property)", () => {
  // Re-quantizing RTN output gives the same codes, and the same values up to the f32 rounding of a
  // re-derived f32 scale (fround(fround(k·s)/k) can be one ulp off s).
  const specs = ["int4:g8:asym", "int4:g8", "int8:channel", "int3:g5:symfull", "nf4:g8", "fp8_e4m3:channel", "fp4_e2m1:g8",
    "ternary:channel:minmax", "pow2_4:g8", "mxfp4", "nvfp4", "mxint8", "bfp6", "int4:g32:dq", "fp16", "bf16", "int4:g8:asymf", "int2:b3x3:asym", "int1:g4:asym",
    "int4:g8:asymf:scale=f16"];
  // (ternary's default absmean scale is not idempotent by design: zeroing small weights changes mean|w|;
  // two-level scales are idempotent only while every scale code is precise enough, see `range` below)
  for (const spec of specs) {
    test(`${spec}: quantize(dequantize(quantize(w))) has the same codes and values`, () => {
      // dynamic range of the generated weights: full for one-level scales; 10^4 for nvfp4 (E4M3 block scales);
      // 10 for u8 double quantization, whose scale codes must be ≥ ~16 for the group max to land back on 7
      // (f16 scales: magnitudes ≥ 1e-2 keep scales out of f16's subnormal range)
      const range = /nvfp4/.test(spec) ? [1e-2, 100] : /dq/.test(spec) ? [10, 100] : /scale=f16/.test(spec) ? [1e-2, 6e4] : [1e-30, Infinity];
      const gen = normalMatrix(5, 70, range[0]).map((m) => ({ ...m, w: m.w.map((v) => Math.max(-range[1]!, Math.min(range[1]!, v))) }));
      fc.assert(fc.property(gen, ({ rows, cols, w }) => {
        const shape = [rows, cols];
        const q1 = quantizeTensor(w, shape, spec);
        const once = q1.dequantize();
        const q2 = quantizeTensor(once, shape, spec);
        const twice = q2.dequantize();
        // e8m0 scales: a value rounded up to the next binade (MX INT8's −128) re-encodes one exponent higher, same value
        if (!/mx|bfp|e8m0/.test(spec)) assert.deepEqual(q2.unpackCodes(), q1.unpackCodes(), `${spec}: codes changed`);
        const g = q1.layout.groupOfElement();
        for (let i = 0; i < w.length; i++) {
          const p = q1.groupParams(g[i]!);
          const tol = 2 ** -21 * Math.max(Math.abs(once[i]!), Math.abs(p.scale) * (Math.abs(p.zero) + 16));
          assert.ok(Math.abs(twice[i]! - once[i]!) <= tol, `${spec} element ${i}: ${once[i]} → ${twice[i]} (w=${w[i]})`);
        }
      }), { numRuns: 100, seed: 11 });
    });
  }
  // with scales stored in f16/bf16/e8m0 (exact products k·s in f32), nothing changes at all
  const exact = ["int4:g8:scale=f16", "int8:channel:scale=bf16", "int4:g8:asym:scale=f16", "nf4:g8:scale=f16",
    "fp4_e2m1:g8:scale=e8m0", "mxfp4", "mxint8", "bfp6", "fp8_e4m3:channel:scale=bf16", "int3:g5:symfull:scale=f16"];
  for (const spec of exact) {
    test(`${spec}: re-quantizing changes nothing, bit for bit`, () => {
      fc.assert(fc.property(normalMatrix(5, 70, 1e-2).map(({ rows, cols, w }) => ({ rows, cols, w: w.map((v) => Math.max(-6e4, Math.min(6e4, v))) })), ({ rows, cols, w }) => {
        const once = quantizeTensor(w, [rows, cols], spec).dequantize();
        assert.deepEqual(quantizeTensor(once, [rows, cols], spec).dequantize(), once);
      }), { numRuns: 100, seed: 12 });
    });
  }
});

describe("zero and constant groups", () => {
  const specs = ["int4:g8:asym", "int4:g8:asymf", "int4:g8", "int4:g8:symfull", "int8:channel:mse", "int3:g8:kl", "int3:g8:p99", "nf4:g8:dq", "fp8_e4m3:g8",
    "ternary:g8", "ternary:g8:twn", "binary:g8", "mxfp4", "nvfp4", "mxint8", "bfp4", "pow2_4:g8", "zero:g8", "int4:g8:scale=e8m0", "int4:g8:scale=fp8", "int4:b2x8",
    "int4:ichannel:asym", "fp16", "int4:g8:outliers=5", "int4:g8:asym:mse"];
  for (const spec of specs) {
    test(`${spec}: no NaN; zero groups stay zero; constant groups stay finite and close`, () => {
      const rows = 4, cols = 48;
      const w = new Float32Array(rows * cols);
      for (let c = 0; c < cols; c++) { w[1 * cols + c] = 0.75; w[2 * cols + c] = -3e-3; w[3 * cols + c] = 1e-30 * (c % 2 ? 1 : -1); }
      const d = quantizeTensor(w, [rows, cols], spec).dequantize();
      for (let i = 0; i < d.length; i++) assert.ok(Number.isFinite(d[i]!), `${spec}: element ${i} is ${d[i]}`);
      for (let c = 0; c < cols; c++) assert.equal(Math.abs(d[c]!), 0, `${spec}: zero row element ${c} = ${d[c]}`);
      const e = errorStats(w.subarray(cols, 2 * cols), d.subarray(cols, 2 * cols));
      if (!spec.startsWith("binary") && !spec.startsWith("ternary")) assert.ok(e.sqnrDb > 10, `${spec}: constant row SQNR ${e.sqnrDb}`);
    });
  }
  test("all-zero tensor and empty tensor", () => {
    for (const spec of ["int4:g32:asym", "nf4:g64:dq", "nvfp4", "int8:tensor"]) {
      const q = quantizeTensor(new Float32Array(64), [2, 32], spec);
      assert.deepEqual([...q.dequantize()].map(Math.abs), new Array(64).fill(0));
      const e = quantizeTensor(new Float32Array(0), [0, 32], spec);
      assert.equal(e.dequantize().length, 0);
      assert.equal(e.storageBits, 0);
    }
  });
});

describe("granularity shapes", () => {
  test("group layout: counts, lengths, ragged last group, every element in exactly one group (property)", () => {
    const gran = fc.oneof(
      fc.constant({ kind: "tensor" as const }), fc.constant({ kind: "channel" as const }), fc.constant({ kind: "ichannel" as const }),
      fc.integer({ min: 1, max: 50 }).map((size) => ({ kind: "group" as const, size })),
      fc.record({ rows: fc.integer({ min: 1, max: 7 }), cols: fc.integer({ min: 1, max: 9 }) }).map((b) => ({ kind: "block2d" as const, ...b })),
    );
    fc.assert(fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 60 }), gran, (rows, cols, g) => {
      const L = groupLayout([rows, cols], g);
      const expected = g.kind === "tensor" ? 1 : g.kind === "channel" ? rows : g.kind === "ichannel" ? cols
        : g.kind === "group" ? rows * Math.ceil(cols / g.size) : Math.ceil(rows / g.rows) * Math.ceil(cols / g.cols);
      assert.equal(L.nGroups, expected);
      const seen = new Uint8Array(rows * cols);
      const idx = new Uint32Array(L.maxGroupLength);
      let total = 0;
      for (let gi = 0; gi < L.nGroups; gi++) {
        const k = L.indices(gi, idx);
        assert.equal(k, L.length(gi));
        assert.ok(k >= 1 && k <= L.maxGroupLength);
        for (let j = 0; j < k; j++) seen[idx[j]!]!++;
        total += k;
        if (g.kind === "group") {
          const jInRow = gi % Math.ceil(cols / g.size);
          assert.equal(k, Math.min(g.size, cols - jInRow * g.size), "ragged last group holds the remainder");
          assert.equal(L.contiguousStart(gi), Math.floor(gi / Math.ceil(cols / g.size)) * cols + jInRow * g.size);
        }
      }
      assert.equal(total, rows * cols);
      assert.ok(seen.every((v) => v === 1));
      const goe = L.groupOfElement();
      for (let gi = 0; gi < L.nGroups; gi++) {
        const k = L.indices(gi, idx);
        for (let j = 0; j < k; j++) assert.equal(goe[idx[j]!], gi);
      }
    }), { numRuns: 500, seed: 5 });
  });

  test("stories260K FFN rows (172 wide) with g32: 6 groups per row, last one 12 wide, scaled by its own max", () => {
    const rows = 3, cols = 172;
    const w = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] = c >= 160 ? 0.01 * (c - 165) : Math.sin(r + c);
    const q = quantizeTensor(w, [rows, cols], "int4:g32");
    assert.equal(q.layout.nGroups, rows * 6);
    assert.equal(q.layout.length(5), 12);
    // the ragged group's scale comes from its 12 values only: max |0.01·(c−165)| = 0.06 → 0.06/7
    assert.equal(q.groupParams(5).scale, Math.fround(0.06 / 7));
    // storage counts the ragged group as it is: 516 codes·4 bits + 18 f32 scales
    assert.equal(q.storageBits, Math.ceil((rows * cols * 4) / 8) * 8 + 18 * 32);
  });

  test("per-input-channel scales follow columns; 2-D blocks follow tiles", () => {
    const rows = 4, cols = 6;
    const w = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] = (c + 1) * (r % 2 ? -1 : 1) * (1 + r / 10);
    const qi = quantizeTensor(w, [rows, cols], "int8:ichannel");
    for (let c = 0; c < cols; c++) assert.equal(qi.groupParams(c).scale, Math.fround(((c + 1) * 1.3) / 127));
    const qb = quantizeTensor(w, [rows, cols], "int8:b3x4");
    assert.equal(qb.layout.nGroups, 4);
    assert.equal(qb.groupParams(0).scale, Math.fround((4 * 1.2) / 127)); // rows 0..2, cols 0..3 → max |w| = 4·1.2
    assert.equal(qb.groupParams(3).scale, Math.fround((6 * 1.3) / 127)); // row 3, cols 4..5
  });

  test("per-layer: tensors share one scale from their joint range", () => {
    const a = Float32Array.from([0.5, -1, 0.25, 0.1]);
    const b = Float32Array.from([3, -0.2, 0.1, 0.0, 1, 2]);
    const [qa, qb] = quantizeLayer([{ name: "a", w: a, shape: [2, 2] }, { name: "b", w: b, shape: [2, 3] }], "int8:layer");
    assert.equal(qa!.groupParams(0).scale, Math.fround(3 / 127));
    assert.equal(qb!.groupParams(0).scale, Math.fround(3 / 127));
    assert.throws(() => quantizeLayer([{ name: "a", w: a, shape: [2, 2] }], "int8:tensor"), /must have granularity layer/);
  });
});

describe("scales and values against the registry's formats", () => {
  // The documented rule (docs/quant-format.md): scale = fround(max |w| of the group / the element format's
  // largest value), codes = the format's nearest value of w/scale, x̂ = fround(level(code) · scale), with
  // level(code) = code − 2^(b−1) for integer grids and the format's decode otherwise. The registry's formats
  // are checked exhaustively in test/formats; here quantizeTensor must agree with them element by element.
  const rows = 6, cols = 70; // 70: ragged last groups for g32 and g64
  const w = new Rng(5).fillNormal(new Float32Array(rows * cols), 0.05);
  w[3] = -0.4; w[100] = 0.3; w[250] = 0; // one extreme per sign, an exact zero
  const cases: [string, string][] = [
    ["int2:channel", "int2_sym"], ["int3:channel", "int3_sym"], ["int4:g32", "int4_sym"], ["int5:g32", "int5_sym"], ["int6:channel", "int6_sym"], ["int7:channel", "int7_sym"],
    ["int8:channel", "int8_sym"], ["int8:tensor", "int8_sym"], ["int12:channel", "int12_sym"], ["int16:channel", "int16_sym"],
    ["fp8_e4m3:channel", "fp8_e4m3"], ["fp8_e4m3:tensor", "fp8_e4m3"], ["fp8_e5m2:channel", "fp8_e5m2"], ["fp6_e3m2:g32", "fp6_e3m2"], ["fp6_e2m3:g32", "fp6_e2m3"],
    ["fp4_e2m1:g32", "fp4_e2m1"], ["nf4:g64", "nf4"], ["pow2:4bit:channel", "pow2_4"], ["pow2:4bit:g32", "pow2_4"], ["logsqrt2:4bit:g32", "logsqrt2_4"],
    ["pow2sum:5bit:g32", "pow2sum_5"], ["dyadic:tensor", "dyadic"], ["q7_8:tensor", "q7_8"],
  ];
  for (const [spec, formatName] of cases) {
    test(`${spec}: scale = max|w| / ${formatName}'s largest value per group, x̂ = ${formatName}'s nearest value of w/scale, = level(code) · scale`, () => {
      const f = getFormat(formatName);
      const q = quantizeTensor(w, [rows, cols], spec);
      const goe = q.layout.groupOfElement();
      const amax = new Float64Array(q.layout.nGroups);
      for (let i = 0; i < w.length; i++) amax[goe[i]!] = Math.max(amax[goe[i]!]!, Math.abs(w[i]!));
      for (let g = 0; g < q.layout.nGroups; g++) assert.equal(q.groupParams(g).scale, Math.fround(amax[g]! / f.maxValue), `${spec} group ${g}`);
      const d = q.dequantize(), codes = q.unpackCodes();
      const intBits = /^int(\d+)_sym$/.exec(formatName)?.[1];
      for (let i = 0; i < w.length; i++) {
        const s = q.groupParams(goe[i]!).scale;
        assert.equal(d[i], Math.fround(f.decode(f.encode(w[i]! / s)) * s), `${spec} element ${i}: w = ${w[i]}`);
        const level = intBits ? codes[i]! - 2 ** (Number(intBits) - 1) : f.decode(codes[i]!);
        assert.equal(d[i]! + 0, Math.fround(level * s) + 0, `${spec} element ${i}: code ${codes[i]}`);
      }
    });
  }
  test("fp8_e4m3:none is a direct cast: scale 1, x̂ = the nearest E4M3 value", () => {
    const f = getFormat("fp8_e4m3");
    const x = Float32Array.from([0, 1, -1.0625, 300, 447, 449, 1e-3, -(2 ** -9), 2 ** -10]);
    const q = quantizeTensor(x, [1, x.length], "fp8_e4m3:none");
    assert.equal(q.groupParams(0).scale, 1);
    assert.deepEqual([...q.dequantize()], [...x].map((v) => f.decode(f.encode(v))));
    assert.deepEqual([...q.dequantize()].slice(0, 6), [0, 1, -1, 288, 448, 448]); // E4M3: 3 mantissa bits, max 448
  });
});

describe("schemes on hand-worked rows (int4)", () => {
  // row a: the extreme is positive (0.7); row b: negative (−0.8)
  const a = Float32Array.from([0.7, -0.35, 0.1, 0.05, -0.2, 0.45, 0, 0.3]);
  const b = Float32Array.from([-0.8, 0.35, 0.1, 0.05, -0.2, 0.45, 0, 0.3]);
  const run = (x: Float32Array, spec: string) => {
    const q = quantizeTensor(x, [1, 8], spec);
    return { p: q.groupParams(0), codes: [...q.unpackCodes()], d: [...q.dequantize()] };
  };
  const close = (got: number[], want: number[], what: string) => got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-6, `${what} [${i}]: ${v} vs ${want[i]}`));
  test("sym (restricted): scale = max|w|/7, q = rne(w/scale) ∈ [−7, 7], code = q + 8 (0.05/0.1 = 0.5 ties to 0)", () => {
    const r = run(a, "int4:channel");
    assert.equal(r.p.scale, Math.fround(0.1));
    assert.deepEqual(r.codes, [7, -3, 1, 0, -2, 4, 0, 3].map((q) => q + 8)); // 0.45/0.1 = 4.5 ties to 4
    close(r.d, [0.7, -0.3, 0.1, 0, -0.2, 0.4, 0, 0.3], "sym");
  });
  test("symfull: the extreme maps to −8 through a signed scale (llama.cpp Q4_0: d = max / −8), q ∈ [−8, 7]", () => {
    const r = run(a, "int4:channel:symfull");
    assert.equal(r.p.scale, Math.fround(-0.7 / 8));
    assert.deepEqual(r.codes, [-8, 4, -1, -1, 2, -5, 0, -3].map((q) => q + 8)); // 0.1/−0.0875 = −1.14 → −1, 0.45 → −5.14 → −5
    close(r.d, [0.7, -0.35, 0.0875, 0.0875, -0.175, 0.4375, 0, 0.2625], "symfull a");
    const n = run(b, "int4:channel:symfull"); // a negative extreme keeps a positive scale
    assert.equal(n.p.scale, Math.fround(0.1));
    assert.equal(n.codes[0], 0);
    close(n.d, [-0.8, 0.3, 0.1, 0, -0.2, 0.4, 0, 0.3], "symfull b");
  });
  test("asym: scale = (max − min)/15, integer zero = rne(−min/scale), code = clamp(rne(w/scale) + zero, 0, 15)", () => {
    const r = run(a, "int4:channel:asym"); // (0.7 + 0.35)/15 = 0.07, zero 5
    assert.ok(Math.abs(r.p.scale - 0.07) < 1e-8 && r.p.zero === 5, JSON.stringify(r.p));
    assert.deepEqual(r.codes, [15, 0, 6, 6, 2, 11, 5, 9]); // 0.05/0.07 = 0.71 → 1; 0.45/0.07 = 6.43 → 6
    close(r.d, [0.7, -0.35, 0.07, 0.07, -0.21, 0.42, 0, 0.28], "asym a");
    const n = run(b, "int4:channel:asym"); // (0.45 + 0.8)/15 = 0.08333, zero rne(9.6) = 10: the integer zero shifts the grid
    assert.ok(Math.abs(n.p.scale - 1.25 / 15) < 1e-8 && n.p.zero === 10, JSON.stringify(n.p));
    assert.deepEqual(n.codes, [0, 14, 11, 11, 8, 15, 10, 14]);
    close(n.d, [-10, 4, 1, 1, -2, 5, 0, 4].map((k) => (k * 1.25) / 15), "asym b");
  });
  test("asymf: float zero = −min/scale, so both ends are exact; x̂ = (code − zero) · scale", () => {
    const n = run(b, "int4:channel:asymf");
    assert.ok(Math.abs(n.p.scale - 1.25 / 15) < 1e-8 && Math.abs(n.p.zero - 9.6) < 1e-5, JSON.stringify(n.p));
    assert.deepEqual(n.codes, [0, 14, 11, 10, 7, 15, 10, 13]); // rne(w/s + 9.6): 0.05 → 10.2 → 10; −0.2 → 7.2 → 7; 0.3 → 13.2 → 13
    close(n.d, n.codes.map((c) => (c - 9.6) * (1.25 / 15)), "asymf");
    assert.ok(Math.abs(n.d[0]! + 0.8) < 1e-6 && Math.abs(n.d[5]! - 0.45) < 1e-6, "min and max are exact");
  });
});

describe("storageBits arithmetic", () => {
  const cases: [string, number, number, (r: number, c: number) => number][] = [
    ["int4:g32", 5, 172, (r, c) => 8 * Math.ceil((r * c * 4) / 8) + r * Math.ceil(c / 32) * 32],
    ["int4:g32:asym", 5, 172, (r, c) => 8 * Math.ceil((r * c * 4) / 8) + r * 6 * 32 + 8 * Math.ceil((r * 6 * 4) / 8)],
    ["int3:g128:asymf:scale=f16", 3, 300, (r, c) => 8 * Math.ceil((r * c * 3) / 8) + r * 3 * (16 + 16)],
    ["int8:channel", 7, 64, (r, c) => r * c * 8 + r * 32],
    ["nf4:g64:dq", 10, 172, (r, c) => 8 * Math.ceil((r * c * 4) / 8) + r * 3 * 8 + Math.ceil((r * 3) / 256) * 32],
    ["int4:g32:scale=u6:sb=8", 9, 100, (r, c) => 8 * Math.ceil((r * c * 4) / 8) + 8 * Math.ceil((r * 4 * 6) / 8) + Math.ceil((r * 4) / 8) * 32],
    ["mxfp4", 4, 64, (r, c) => r * c * 4 + r * 2 * 8],
    ["nvfp4", 4, 64, (r, c) => r * c * 4 + r * 4 * 8 + 32],
    ["ternary:g64:trits", 3, 100, (r, c) => 8 * Math.ceil((r * c) / 5) + r * 2 * 32],
    ["zero:g16", 2, 40, (r, c) => r * Math.ceil(c / 16) * 32],
    ["fp16", 3, 5, (r, c) => r * c * 16],
    ["int4:b4x4", 6, 10, (r, c) => 8 * Math.ceil((r * c * 4) / 8) + Math.ceil(r / 4) * Math.ceil(c / 4) * 32],
  ];
  for (const [spec, rows, cols, expect] of cases) {
    test(`${spec} on [${rows}, ${cols}]`, () => {
      const w = new Rng(1).fillNormal(new Float32Array(rows * cols));
      const q = quantizeTensor(w, [rows, cols], spec);
      assert.equal(q.storageBits, expect(rows, cols));
      const { tensors } = toEntries("w", q);
      const bytes = Object.values(tensors).reduce((s, e) => s + e.bytes.length, 0);
      assert.equal(q.storageBits, 8 * bytes, "storageBits = the bytes written");
    });
  }
  test("outliers add 48 bits each", () => {
    const w = new Rng(2).fillNormal(new Float32Array(1000));
    const base = quantizeTensor(w, [10, 100], "int4:g32").storageBits;
    const q = quantizeTensor(w, [10, 100], "int4:g32:outliers=1");
    assert.equal(q.outliers!.indices.length, 10);
    assert.equal(q.storageBits, base + 10 * 48);
  });
});

describe("outliers", () => {
  test("the largest |w| are kept exactly (to f16) and removed from the scale", () => {
    const rng = new Rng(3);
    const w = rng.fillNormal(new Float32Array(8 * 64), 0.02);
    w[5] = 3; w[100] = -2.5; w[300] = 1.25;
    const q = quantizeTensor(w, [8, 64], "int4:g64:outliers=0.58"); // ⌈0.58% · 512⌉ = 3
    assert.deepEqual([...q.outliers!.indices], [5, 100, 300]);
    const d = q.dequantize();
    assert.equal(d[5], 3); assert.equal(d[100], -2.5); assert.equal(d[300], 1.25);
    const plain = quantizeTensor(w, [8, 64], "int4:g64").dequantize();
    const keep = (a: Float32Array) => a.filter((_, i) => i !== 5 && i !== 100 && i !== 300);
    assert.ok(errorStats(keep(w), keep(d)).sqnrDb > errorStats(keep(w), keep(plain)).sqnrDb + 10);
    assert.deepEqual([...selectOutliers(Float32Array.from([1, -5, 5, 2]), 50)], [1, 2]);
  });
});

describe("ternary, binary, 0-bit", () => {
  test("ternary absmean (BitNet b1.58): scale = mean|w|, codes = round-clip(w/scale)", () => {
    const w = Float32Array.from([0.1, -0.4, 0.05, 0.9, -0.02, 0.3, 0, -1.2]);
    const q = quantizeTensor(w, [1, 8], "ternary:channel");
    const gamma = w.reduce((s, v) => s + Math.abs(v), 0) / 8;
    assert.equal(q.groupParams(0).scale, Math.fround(gamma));
    const expectSign = [...w].map((v) => Math.max(-1, Math.min(1, Math.round(v / gamma))));
    assert.deepEqual([...q.dequantize()], expectSign.map((t) => (t === 0 ? 0 : Math.fround(t * Math.fround(gamma)))));
  });
  test("ternary TWN: Δ = 0.7·mean|w|, α = mean |w| above Δ", () => {
    const w = Float32Array.from([0.1, -0.4, 0.05, 0.9, -0.02, 0.3, 0, -1.2]);
    const q = quantizeTensor(w, [1, 8], "ternary:channel:twn");
    const m = w.reduce((s, v) => s + Math.abs(v), 0) / 8;
    const delta = 0.7 * m;
    const big = [...w].filter((v) => Math.abs(v) > delta);
    const alpha = Math.fround(big.reduce((s, v) => s + Math.abs(v), 0) / big.length);
    assert.equal(q.groupParams(0).scale, alpha);
    assert.deepEqual([...q.dequantize()], [...w].map((v) => (Math.abs(v) > delta ? Math.sign(v) * alpha : 0)));
  });
  test("trits packing gives the same values as 2-bit codes at 1.6 bits", () => {
    const w = new Rng(4).fillNormal(new Float32Array(3 * 101));
    const a = quantizeTensor(w, [3, 101], "ternary:channel");
    const b = quantizeTensor(w, [3, 101], "ternary:channel:trits");
    assert.deepEqual(b.dequantize(), a.dequantize());
    assert.equal(b.codes.length, Math.ceil(303 / 5));
  });
  test("binary: ±mean|w| (XNOR-Net's optimal α)", () => {
    const w = Float32Array.from([0.5, -1, 2, -0.25]);
    const d = quantizeTensor(w, [1, 4], "binary:channel").dequantize();
    assert.deepEqual([...d], [0.9375, -0.9375, 0.9375, -0.9375]);
  });
  test("0-bit: each group becomes its mean", () => {
    const w = Float32Array.from([1, 2, 3, 10, 20, 30, 40]);
    const q = quantizeTensor(w, [1, 7], "zero:g3");
    assert.deepEqual([...q.dequantize()], [2, 2, 2, 20, 20, 20, 40]);
    assert.equal(q.codes.length, 0);
  });
});

describe("rounding", () => {
  test("stochastic rounding is seeded and unbiased: the mean of many draws approaches the value", () => {
    const x = Float32Array.from([0.3, -0.77, 1.0, 0.123, -0.5, 0.999, 0.0101, -0.33]);
    // scale = 1/7 (int4 sym, absmax 1)
    const N = 4000;
    const sum = new Float64Array(x.length);
    const rng = new Rng(99);
    for (let k = 0; k < N; k++) {
      const d = quantizeTensor(x, [1, 8], "int4:channel:sr", { rng }).dequantize();
      for (let i = 0; i < x.length; i++) sum[i]! += d[i]!;
    }
    const s = 1 / 7;
    for (let i = 0; i < x.length; i++) {
      const mean = sum[i]! / N;
      // a Bernoulli between two grid points: std of the mean ≤ s/(2√N); allow 5σ
      assert.ok(Math.abs(mean - x[i]!) < (5 * s) / (2 * Math.sqrt(N)) + 1e-6, `x=${x[i]} mean=${mean}`);
    }
    const a = quantizeTensor(x, [1, 8], "int4:channel:sr", { seed: 5 }).dequantize();
    const b = quantizeTensor(x, [1, 8], "int4:channel:sr", { seed: 5 }).dequantize();
    assert.deepEqual(a, b, "same seed, same result");
  });
  test("stochastic rounding through a registry format (nf4) is unbiased too", () => {
    const x = Float32Array.from([1, 0.3, -0.41, 0.05]);
    const N = 3000, sum = new Float64Array(4), rng = new Rng(1);
    for (let k = 0; k < N; k++) {
      const d = quantizeTensor(x, [1, 4], "nf4:channel:sr", { rng }).dequantize();
      for (let i = 0; i < 4; i++) sum[i]! += d[i]!;
    }
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(sum[i]! / N - x[i]!) < 0.01, `x=${x[i]} mean=${sum[i]! / N}`);
  });
  test("nearest rounding breaks ties to even", () => {
    // int4 sym, scale = 7/7 = 1: 0.5 → 0, 1.5 → 2, 2.5 → 2, -0.5 → 0, -1.5 → -2
    const d = quantizeTensor(Float32Array.from([7, 0.5, 1.5, 2.5, -0.5, -1.5]), [1, 6], "int4:channel").dequantize();
    assert.deepEqual([...d].map((v) => v + 0), [7, 0, 2, 2, 0, -2]);
  });
});

describe("errors", () => {
  test("NaN/Inf in weights name the tensor", () => {
    const w = Float32Array.from([1, 2, NaN, 4]);
    assert.throws(() => quantizeTensor(w, [2, 2], "int4:channel", { name: "blk.0.attn_q.weight" }),
      (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE" && /tensor blk\.0\.attn_q\.weight: element 2 is NaN/.test(e.message));
    assert.throws(() => quantizeTensor(Float32Array.from([Infinity]), [1, 1], "nf4:channel", { name: "x" }), /tensor x: element 0 is Infinity/);
  });
  test("shape mismatch, fp16 overflow, zero point that does not fit", () => {
    assert.throws(() => quantizeTensor(new Float32Array(5), [2, 3], "int4:g2", { name: "w" }), /tensor w: 5 values but shape \[2, 3\] needs 6/);
    assert.throws(() => quantizeTensor(Float32Array.from([1e6]), [1, 1], "fp16", { name: "big" }), /tensor big: element 0 = 1000000 overflows fp16; use a scaled granularity/);
    assert.throws(() => quantizeTensor(Float32Array.from([1, 2]), [1, 2], "int2:channel:asym", { params: [{ scale: 1, zero: 9 }] }), /zero point 9 of group 0 does not fit 2 bits/);
  });
});

describe("lower-level API for algorithms", () => {
  test("fit/fakeQuant agree with quantizeTensor; params round-trip through quantizeTensor", () => {
    const rng = new Rng(8);
    const rows = 6, cols = 50;
    const w = rng.fillNormal(new Float32Array(rows * cols));
    for (const spec of ["int4:g16:asym", "int3:g16:mse", "nf4:g16", "int4:g16:asymf:scale=f16", "int4:channel:scale=e8m0", "fp4_e2m1:g16:scale=bf16"]) {
      const q = new SpecQuantizer(parseSpec(spec));
      const G = q.groupSize === 0 ? cols : q.groupSize;
      const params = [];
      const fq = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c0 = 0; c0 < cols; c0 += G) {
        const seg = w.subarray(r * cols + c0, r * cols + Math.min(cols, c0 + G));
        const p = q.fit(seg);
        params.push(p);
        for (let i = 0; i < seg.length; i++) fq[r * cols + c0 + i] = q.fakeQuant(seg[i]!, p);
      }
      const ref = quantizeTensor(w, [rows, cols], spec).dequantize();
      assert.deepEqual(fq, ref, `${spec}: fit+fakeQuant = quantizeTensor`);
      const fromParams = quantizeTensor(fq, [rows, cols], spec, { params }).dequantize();
      assert.deepEqual(fromParams, fq, `${spec}: codes from given params reproduce the fake-quantized values`);
    }
    assert.throws(() => new SpecQuantizer(parseSpec("int4:tensor")).groupSize, /need channel or g<N> granularity, not tensor/);
  });

  test("learned codebook: nearest level, stored and counted", () => {
    const w = Float32Array.from([0.1, 0.9, -0.5, 0.45, -1, 0.3]);
    const codebook = Float32Array.from([-1, -0.5, 0, 0.4, 1]);
    const q = quantizeTensor(w, [1, 6], "nf4:tensor", { codebook });
    // scale = absmax / max|level| = 1
    assert.deepEqual([...q.dequantize()], [0, 1, -0.5, 0.4, -1, 0.4].map(Math.fround));
    assert.equal(q.storageBits, 6 * 4 + 32 + 5 * 32);
  });

  test("nf4 and fp4 values come from the registry's exact codecs", () => {
    const nf4 = getFormat("nf4");
    const w = Float32Array.from([1, 0.33, -0.2, 0.07]);
    const d = quantizeTensor(w, [1, 4], "nf4:channel").dequantize();
    for (let i = 0; i < 4; i++) assert.equal(d[i], Math.fround(nf4.decode(nf4.encode(w[i]!))));
  });
});
