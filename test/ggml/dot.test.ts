/**
 * vecDot(weights, quantized activations) against float64 dots: (a) of the two dequantized rows, within
 * float rounding (plus Q8_1's f16-rounded sum term); (b) of the dequantized weights and the original
 * activations, within the bound the activation quantization allows.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { QuantlabError } from "../../src/core/errors.js";
import { dequantize, quantize } from "../../src/ggml/codecs.js";
import { activationRowBytes, quantizeActivationsRow, vecDot, vecDotType } from "../../src/ggml/dot.js";
import { readF16, readF32 } from "../../src/ggml/cfloat.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../../src/ggml/types.js";
import { loadGolden } from "./golden-helpers.js";

const WEIGHT_TYPES = [
  GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
  GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
  GgmlType.TQ1_0, GgmlType.TQ2_0,
];

/** Per-element bound on |x − dequant(quantized x)| for the activation type, from its block scale. */
function actErrorBound(at: GgmlType, act: Uint8Array, n: number, x: Float32Array): Float64Array {
  const out = new Float64Array(n);
  const { blockSize, bytesPerBlock } = GGML_TYPES[at];
  for (let i = 0; i < n; i++) {
    const b = Math.floor(i / blockSize);
    const o = b * bytesPerBlock;
    switch (at) {
      case GgmlType.Q8_0:
      case GgmlType.Q8_1: {
        // q = roundf(x/d) with d = amax/127 in f32; decode uses f16(d): |err| ≤ d/2 + 127·|d − f16(d)|
        const d = readF16(act, o);
        out[i] = Math.abs(d) * (0.5 + 127 * 2 ** -11) * (1 + 1e-6);
        break;
      }
      case GgmlType.Q8_K:
        out[i] = (Math.abs(readF32(act, o)) / 2) * (1 + 1e-5);
        break;
      case GgmlType.F16:
        out[i] = Math.abs(x[i]!) * 2 ** -11 + 2 ** -25;
        break;
      case GgmlType.BF16:
        out[i] = Math.abs(x[i]!) * 2 ** -8 + 1e-38;
        break;
      default:
        out[i] = 0;
    }
  }
  return out;
}

function rowsFor(type: GgmlType): { w: Float32Array; x: Float32Array; n: number } {
  const rng = new Rng(99 + type);
  const n = 512;
  const w = rng.fillNormal(new Float32Array(n), 0.05);
  const x = rng.fillNormal(new Float32Array(n), 1);
  for (let i = 0; i < n; i += 37) x[i] = x[i]! * 20; // activation outliers
  return { w, x, n };
}

describe("vecDot reference", () => {
  test("vec_dot_type pairs as ggml-cpu does", () => {
    assert.equal(vecDotType(GgmlType.Q4_0), GgmlType.Q8_0);
    assert.equal(vecDotType(GgmlType.IQ4_NL), GgmlType.Q8_0);
    assert.equal(vecDotType(GgmlType.Q4_1), GgmlType.Q8_1);
    assert.equal(vecDotType(GgmlType.Q5_1), GgmlType.Q8_1);
    assert.equal(vecDotType(GgmlType.Q6_K), GgmlType.Q8_K);
    assert.equal(vecDotType(GgmlType.TQ1_0), GgmlType.Q8_K);
    assert.equal(vecDotType(GgmlType.F16), GgmlType.F16);
    assert.equal(activationRowBytes(GgmlType.Q4_K, 512), 2 * 292);
    assert.throws(() => vecDotType(GgmlType.Q8_K), (e: unknown) => e instanceof QuantlabError && /no dot product for ggml type Q8_K/.test(e.message));
  });

  for (const type of WEIGHT_TYPES) {
    const name = ggmlTypeName(type);
    test(`${name} × ${ggmlTypeName(vecDotType(type))}: equals the float64 dot of the decoded rows, and of the raw activations within the activation bound`, () => {
      const { w, x, n } = rowsFor(type);
      const at = vecDotType(type);
      const wq = quantize(type, w, n);
      const aq = quantizeActivationsRow(type, x, n);
      assert.equal(aq.length, activationRowBytes(type, n));
      const got = vecDot(type, wq, aq, n);
      const wd = dequantize(type, wq, n);
      const ad = dequantize(at, aq, n);

      // (a) decoded rows: only float rounding of the block accumulation differs (relative ~n·2^-24)
      let exact = 0;
      let mag = 0;
      for (let i = 0; i < n; i++) {
        exact += wd[i]! * ad[i]!;
        mag += Math.abs(wd[i]! * ad[i]!);
      }
      let tolA = mag * 64 * 2 ** -24 + 1e-30;
      if (at === GgmlType.Q8_1) {
        // Q4_1/Q5_1 add m·s per block where s = f16(d·Σq): its rounding (2^-11 relative) is not in ad
        const { bytesPerBlock: wb } = GGML_TYPES[type];
        for (let b = 0; b < n / 32; b++) tolA += Math.abs(readF16(wq, b * wb + 2) * readF16(aq, b * 36 + 2)) * 2 ** -11;
      }
      assert.ok(Math.abs(got - exact) <= tolA, `${name}: vecDot ${got} vs decoded dot ${exact} (tol ${tolA})`);

      // (b) raw activations: |Σ w(x − x̂)| ≤ Σ |w|·bound(x̂)
      const bound = actErrorBound(at, aq, n, x);
      let raw = 0;
      let tolB = tolA;
      for (let i = 0; i < n; i++) {
        raw += wd[i]! * x[i]!;
        tolB += Math.abs(wd[i]!) * bound[i]!;
      }
      assert.ok(Math.abs(got - raw) <= tolB, `${name}: vecDot ${got} vs raw dot ${raw} (tol ${tolB})`);
    });
  }

  test("on llama.cpp's own golden blocks (Q4_K rows × golden x rows), and with zero activations", async () => {
    const g = await loadGolden(GgmlType.Q4_K);
    const n = g.cols;
    const rowBytes = (n / 256) * 144;
    for (let r = 0; r < g.rows; r++) {
      const w = g.q.subarray(r * rowBytes, (r + 1) * rowBytes);
      const x = g.x.subarray(((r + 1) % g.rows) * n, ((r + 1) % g.rows + 1) * n);
      const aq = quantizeActivationsRow(GgmlType.Q4_K, x, n);
      const ad = dequantize(GgmlType.Q8_K, aq, n);
      const wd = g.dq.subarray(r * n, (r + 1) * n);
      let exact = 0;
      let mag = 0;
      for (let i = 0; i < n; i++) {
        exact += wd[i]! * ad[i]!;
        mag += Math.abs(wd[i]! * ad[i]!);
      }
      const got = vecDot(GgmlType.Q4_K, w, aq, n);
      assert.ok(Math.abs(got - exact) <= mag * 64 * 2 ** -24, `row ${r}: ${got} vs ${exact}`);
      assert.equal(vecDot(GgmlType.Q4_K, w, quantizeActivationsRow(GgmlType.Q4_K, new Float32Array(n), n), n), 0);
    }
  });

  test("rejects rows that are not whole blocks", () => {
    assert.throws(() => vecDot(GgmlType.Q4_0, new Uint8Array(18), new Uint8Array(34), 16), /not a multiple/);
  });
});
