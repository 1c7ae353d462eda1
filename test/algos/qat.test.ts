import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { accuracy, trainSoftmaxRegression } from "../../src/algos/qat.js";
import { IntAffineQuantizer } from "../../src/algos/quantizer.js";
import { rtnQuantize } from "../../src/algos/rtn.js";

/** Classes from a teacher on latent factors z; the model sees x = z·A/√K + noise (correlated features). */
function task(seed: number, D = 32, C = 4, K = 8) {
  const rng = new Rng(seed);
  const A = rng.fillNormal(new Float32Array(K * D));
  const T = rng.fillNormal(new Float32Array(C * K));
  const draw = (n: number) => {
    const x = new Float32Array(n * D), y = new Int32Array(n), z = new Float32Array(K);
    for (let i = 0; i < n; i++) {
      rng.fillNormal(z);
      for (let j = 0; j < D; j++) { let s = 0; for (let k = 0; k < K; k++) s += z[k]! * A[k * D + j]!; x[i * D + j] = s / Math.sqrt(K) + 0.1 * rng.normal(); }
      let best = -Infinity;
      for (let c = 0; c < C; c++) { let s = 0; for (let k = 0; k < K; k++) s += T[c * K + k]! * z[k]!; if (s > best) { best = s; y[i] = c; } }
    }
    return { x, y };
  };
  return { C, train: draw(2000), test: draw(1000) };
}

describe("qat", () => {
  test("one STE step: the gradient is taken at fq(W) and applied to the latent W", () => {
    const q = new IntAffineQuantizer({ bits: 2 });
    const init = { classes: 2, dim: 3, w: Float32Array.of(0.3, -0.8, 0.1, 0.5, 0.2, -0.4), b: Float32Array.of(0.1, -0.1) };
    const x = Float32Array.of(1, 2, -1), y = Int32Array.of(1);
    const m = trainSoftmaxRegression(x, y, 2, { epochs: 1, lr: 0.5, batch: 1, quantizer: q, init });
    const wq = rtnQuantize(init.w, 2, 3, q).q;
    const z = [0, 1].map((c) => init.b[c]! + wq[c * 3]! * 1 + wq[c * 3 + 1]! * 2 + wq[c * 3 + 2]! * -1);
    const p1 = Math.exp(z[1]!) / (Math.exp(z[0]!) + Math.exp(z[1]!));
    const g = [1 - p1, p1 - 1]; // ∂L/∂z = softmax − onehot(1) = [p0, p1 − 1], p0 = 1 − p1
    for (let c = 0; c < 2; c++) for (let j = 0; j < 3; j++) {
      const expected = init.w[c * 3 + j]! - 0.5 * g[c]! * x[j]!;
      assert.ok(Math.abs(m.w[c * 3 + j]! - expected) < 1e-6, `w[${c},${j}]`);
    }
  });

  test("QAT recovers at 2 bits the accuracy that PTQ loses (per-channel int2 asym)", () => {
    const { C, train, test: ev } = task(61);
    const float = trainSoftmaxRegression(train.x, train.y, C, { epochs: 30, lr: 0.2, seed: 1 });
    const accFloat = accuracy(float, ev.x, ev.y);
    const report: string[] = [];
    for (const bits of [2, 3]) {
      const q = new IntAffineQuantizer({ bits });
      const accPtq = accuracy(float, ev.x, ev.y, q);
      const qat = trainSoftmaxRegression(train.x, train.y, C, { epochs: 20, lr: 0.05, seed: 2, quantizer: q, init: float, freezeParams: true });
      const accQat = accuracy(qat, ev.x, ev.y, q);
      report.push(`int${bits}: PTQ ${accPtq.toFixed(3)}, QAT ${accQat.toFixed(3)}`);
      if (bits === 2) {
        assert.ok(accPtq < accFloat - 0.05, `PTQ should lose accuracy at 2 bits: ${accPtq} vs float ${accFloat}`);
        assert.ok(accQat > accPtq + 0.05, `QAT ${accQat} should beat PTQ ${accPtq}`);
        assert.ok(accFloat - accQat < (accFloat - accPtq) / 2, "QAT recovers more than half of the loss");
      }
    }
    console.log(`# qat (softmax regression, correlated features): float ${accFloat.toFixed(3)}; ${report.join("; ")}`);
  });
});
