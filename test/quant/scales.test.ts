/**
 * Block formats against hand-computed examples from their definitions:
 * OCP MX v1.0 §6.3: X = floor(log2(max|V|)) − emax_elem, P_i = quantize_elem(V_i / 2^X) (saturating,
 * round-to-nearest-even), scale stored as E8M0 byte X + 127. emax_elem: E2M1 2, E4M3 8, E5M2 15, E3M2 4,
 * E2M3 2, INT8 0 (elements ×2^-6). NVFP4: tensor scale = amax/(6·448) (f32), block scale = E4M3(block
 * amax / 6 / tensor scale), elements E2M1 of x / (block scale · tensor scale).
 * Expected values below are written out by hand from those rules, not computed by the library.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Rng } from "../../src/core/rng.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { toEntries } from "../../src/quant/serialize.js";
import { storeScales } from "../../src/quant/scales.js";
import { errorStats } from "../../src/quant/metrics.js";
import { getFormat } from "../../src/formats/registry.js";

function row(len: number, set: Record<number, number>): number[] {
  const r = new Array<number>(len).fill(0);
  for (const [i, v] of Object.entries(set)) r[Number(i)] = v;
  return r;
}

function scaleBytes(q: ReturnType<typeof quantizeTensor>): number[] {
  return [...toEntries("t", q).tensors["t.qscale"]!.bytes];
}

describe("MX (OCP Microscaling v1.0)", () => {
  test("MXFP4: shared exponent, E8M0 bytes, E2M1 nearest-even with saturation, ragged last block", () => {
    const cols = 100; // blocks of 32, 32, 32, 4
    const w = Float32Array.from([
      ...row(32, { 0: 5.5, 1: -0.3, 2: 5.0, 3: 1.25, 4: -0.25, 5: 2.5 }),
      ...row(32, { 0: 100, 1: -37, 2: 0.1 }),
      ...row(32, {}),
      ...row(4, { 0: 0.75, 1: -0.01 }),
    ]);
    const q = quantizeTensor(w, [1, cols], "mxfp4");
    // absmax 5.5 → X = 2 − 2 = 0; absmax 100 → X = 6 − 2 = 4; zero block → X = −127; absmax 0.75 → X = −1 − 2 = −3
    assert.deepEqual(scaleBytes(q), [127, 131, 0, 124]);
    const d = [...q.dequantize()].map((v) => v + 0); // −0 → 0 for comparison
    // 5.5 → 6 (nearer); −0.3 → −0.5; 5.0 tie 4|6 → 4 (even mantissa); 1.25 tie 1|1.5 → 1; −0.25 tie 0|0.5 → 0; 2.5 tie 2|3 → 2
    assert.deepEqual(d.slice(0, 6), [6, -0.5, 4, 1, 0, 2]);
    // 100/16 = 6.25 → saturates to 6 → 96; −37/16 = −2.3125 → −2 → −32; 0.1/16 → 0
    assert.deepEqual(d.slice(32, 35), [96, -32, 0]);
    assert.ok(d.slice(64, 96).every((v) => v === 0));
    // 0.75/0.125 = 6 → 0.75; −0.01/0.125 = −0.08 → 0
    assert.deepEqual(d.slice(96), [0.75, 0, 0, 0]);
    assert.equal(q.storageBits, 100 * 4 + 4 * 8);
  });

  test("MXFP8 E4M3/E5M2 and MXFP6 E3M2/E2M3 on a block with absmax 1000", () => {
    const w = Float32Array.from(row(32, { 0: 1000, 1: 3.3, 2: -0.02 }));
    const cases: [string, number, number[]][] = [
      // X = 9 − 8 = 1, scale 2: 1000/2 = 500 → 448 (max) → 896; 3.3/2 = 1.65 → 1.625 → 3.25; −0.01 → E4M3 −0.009765625 (2^-7·1.25) → −0.01953125
      ["mxfp8_e4m3", 128, [896, 3.25, -0.01953125]],
      // X = 9 − 15 = −6, scale 2^-6: 64000 → 57344 → 896; 211.2 → 224 (E5M2 step 32 in [128, 256)) → 3.5; −1.28 → −1.25 → −0.01953125
      ["mxfp8_e5m2", 121, [896, 3.5, -0.01953125]],
      // X = 9 − 4 = 5, scale 32: 31.25 → 28 → 896; 0.103125 → E3M2 subnormals step 1/16: 0.125 (nearer than 0.0625) → 4; −0.000625 → 0
      ["mxfp6_e3m2", 132, [896, 4, 0]],
      // X = 9 − 2 = 7, scale 128: 7.8125 → 7.5 → 960; 0.02578 → E2M3 0 (subnormal step 0.125) → 0; → 0
      ["mxfp6_e2m3", 134, [960, 0, 0]],
    ];
    for (const [spec, byte, expect] of cases) {
      const q = quantizeTensor(w, [1, 32], spec);
      assert.deepEqual(scaleBytes(q), [byte], spec);
      assert.deepEqual([...q.dequantize()].slice(0, 3).map((v) => v + 0), expect, spec);
    }
  });

  test("MXINT8: X = floor(log2 absmax), codes round(x / 2^X · 64) in two's complement [−128, 127]", () => {
    const w = Float32Array.from([...row(32, { 0: 3.0, 1: 1 / 64, 2: 3 / 64, 3: -3.0, 4: 1.99 }), ...row(32, { 0: -3.99, 1: 3.9 })]);
    const q = quantizeTensor(w, [1, 64], "mxint8");
    assert.deepEqual(scaleBytes(q), [128, 128]); // X = 1 for both blocks
    const d = [...q.dequantize()].map((v) => v + 0);
    // codes 96, 0.5→0, 1.5→2, −96, 63.68→64 → values code/32
    assert.deepEqual(d.slice(0, 5), [3, 0, 0.0625, -3, 2]);
    // −3.99·32 = −127.68 → −128 (the spec's −2 × 2^X); 3.9·32 = 124.8 → 125
    assert.deepEqual(d.slice(32, 34), [-4, 125 / 32]);
  });

  test("block floating point: bfp4 = shared E8M0 exponent, 4-bit sign-magnitude mantissas", () => {
    const w = Float32Array.from(row(32, { 0: 3.7, 1: 2.9, 2: 0.3, 3: -3.7, 4: 0.2 }));
    const q = quantizeTensor(w, [1, 32], "bfp4");
    assert.deepEqual(scaleBytes(q), [128]); // X = floor(log2 3.7) = 1
    // per-integer step 2^(1 − 2) = 0.5, mantissas in [−7, 7]: 7.4→7, 5.8→6, 0.6→1, −7.4→−7, 0.4→0
    assert.deepEqual([...q.dequantize()].slice(0, 5).map((v) => v + 0), [3.5, 3, 0.5, -3.5, 0]);
    const q16 = quantizeTensor(new Float32Array(40), [1, 40], "bfp8:g16");
    assert.equal(q16.layout.nGroups, 3);
  });

  test("MX scale exponent is clamped to the E8M0 range", () => {
    const tiny = quantizeTensor(Float32Array.from(row(32, { 0: 2 ** -140 })), [1, 32], "mxfp4");
    assert.deepEqual(scaleBytes(tiny), [0]); // X = −142 − … clamps to −127
    const huge = quantizeTensor(Float32Array.from(row(32, { 0: 3e38 })), [1, 32], "mxfp8_e5m2");
    assert.deepEqual(scaleBytes(huge), [127 + 127 - 15]); // X = 127 − 15 = 112 (in range)
  });
});

describe("NVFP4", () => {
  test("two blocks: E4M3 block scales under one f32 tensor scale", () => {
    const w = Float32Array.from([...row(16, { 0: 6, 1: 3, 2: -1.5, 3: 0.7 }), ...row(16, { 0: 0.6, 1: -0.3, 2: 0.05 })]);
    const q = quantizeTensor(w, [1, 32], "nvfp4");
    const t = Math.fround(6 / (6 * 448)); // tensor scale amax/(6·448)
    assert.deepEqual([...q.scales!.superScales!], [t]);
    // block 0: 1/t = 448 → E4M3 448; block 1: 0.1/t = 44.8 → E4M3 44 (step 4 in [32, 64))
    const e4m3 = getFormat("fp8_e4m3");
    assert.deepEqual([...q.scales!.codes!], [e4m3.encode(448), e4m3.encode(44)]);
    const s0 = Math.fround(448 * t), s1 = Math.fround(44 * t);
    const d = q.dequantize();
    // block 0: 6 → 6, 3 → 3, −1.5 → −1.5, 0.7 → 0.5 (E2M1)
    assert.deepEqual([...d.slice(0, 4)], [6, 3, -1.5, 0.5].map((v) => Math.fround(v * s0)));
    // block 1: 0.6/s1 = 6.11 → 6, −0.3/s1 = −3.05 → −3, 0.05/s1 = 0.51 → 0.5
    assert.deepEqual([...d.slice(16, 19)], [6, -3, 0.5].map((v) => Math.fround(v * s1)));
    assert.equal(q.storageBits, 32 * 4 + 2 * 8 + 32);
  });
});

describe("double quantization", () => {
  test("u8/u6/u4 scale codes: |ŝ − s| ≤ super/2 with super = max s / (2^k − 1) per super-block (property)", () => {
    fc.assert(fc.property(fc.float32Array({ minLength: 1, maxLength: 600, noNaN: true, noDefaultInfinity: true, min: 0, max: 1e6 }),
      fc.constantFrom<"u8" | "u6" | "u4">("u8", "u6", "u4"), fc.integer({ min: 1, max: 300 }), (raw, dtype, sb) => {
        const st = storeScales(raw, dtype, sb);
        const k = dtype === "u8" ? 255 : dtype === "u6" ? 63 : 15;
        for (let i = 0; i < raw.length; i++) {
          const b = Math.floor(i / sb);
          let m = 0;
          for (let j = b * sb; j < Math.min(raw.length, (b + 1) * sb); j++) m = Math.max(m, raw[j]!);
          const sup = st.superScales![b]!;
          assert.equal(sup, Math.fround(m / k));
          assert.ok(Math.abs(st.values[i]! - raw[i]!) <= sup / 2 + 1e-6 * raw[i]! + 1e-38, `dtype ${dtype} s=${raw[i]} ŝ=${st.values[i]} super=${sup}`);
        }
      }), { numRuns: 300, seed: 21 });
  });

  test("fp8 scale codes: relative error ≤ 2^-4 in E4M3's normal range (property)", () => {
    fc.assert(fc.property(fc.float32Array({ minLength: 1, maxLength: 300, noNaN: true, noDefaultInfinity: true, min: Math.fround(1e-3), max: 1e3 }), (raw) => {
      const st = storeScales(raw, "fp8", "tensor");
      const sup = st.superScales![0]!;
      for (let i = 0; i < raw.length; i++) {
        if (raw[i]! / sup < 2 ** -6) continue; // E4M3 subnormals: absolute error ≤ 2^-10·super instead
        assert.ok(Math.abs(st.values[i]! - raw[i]!) <= 2 ** -4 * raw[i]! * (1 + 1e-6), `s=${raw[i]} ŝ=${st.values[i]}`);
      }
    }), { numRuns: 200, seed: 22 });
  });

  test("element error with double-quantized scales: ≤ ŝ/2 + 3.5·super for int4 (clipping by a rounded-down scale included)", () => {
    const rng = new Rng(5);
    const rows = 16, cols = 256;
    const w = rng.fillNormal(new Float32Array(rows * cols));
    for (let i = 0; i < w.length; i += 37) w[i] = w[i]! * 8; // uneven group maxima
    const q = quantizeTensor(w, [rows, cols], "int4:g32:scale=u8:sb=16");
    const d = q.dequantize();
    const goe = q.layout.groupOfElement();
    for (let i = 0; i < w.length; i++) {
      const g = goe[i]!;
      const sup = q.scales!.superScales![Math.floor(g / 16)]!;
      const s = q.scales!.values[g]!;
      assert.ok(Math.abs(w[i]! - d[i]!) <= s / 2 + 3.5 * sup + 1e-6, `element ${i}`);
    }
  });

  test("double quantization costs little accuracy and saves bits (Gaussian weights, 64×1024)", () => {
    const rng = new Rng(6);
    const w = rng.fillNormal(new Float32Array(64 * 1024), 0.02);
    const m = (spec: string) => {
      const q = quantizeTensor(w, [64, 1024], spec);
      return { db: errorStats(w, q.dequantize()).sqnrDb, bpw: q.bitsPerWeight };
    };
    const nf4 = m("nf4:g64"), nf4dq = m("nf4:g64:dq"), i4 = m("int4:g32"), i4fp8 = m("int4:g32:scale=fp8"), i4u6 = m("int4:g32:scale=u6:sb=8");
    assert.equal(nf4.bpw, 4.5);
    assert.equal(nf4dq.bpw, 4 + 8 / 64 + 32 / (64 * 256));
    assert.ok(nf4.db - nf4dq.db < 0.05, `nf4:g64 ${nf4.db} dB vs dq ${nf4dq.db} dB`);
    assert.ok(i4.db - i4fp8.db < 0.3, `int4:g32 ${i4.db} vs fp8 scales ${i4fp8.db}`);
    assert.ok(i4.db - i4u6.db < 0.3, `int4:g32 ${i4.db} vs u6 scales ${i4u6.db}`);
  });
});
