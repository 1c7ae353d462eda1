/** Activation fake-quantization (quant/activations.ts): per-token dynamic int8, per-token groups, the activation spec of a weight spec. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { activationQuantSpec, fakeQuantPerToken } from "../../src/quant/activations.js";
import { errorStats } from "../../src/quant/metrics.js";
import { parseSpec } from "../../src/quant/spec.js";

describe("activation fake-quantization", () => {
  test("per-token dynamic int8: each token scaled by its own absmax", () => {
    const x = Float32Array.from([1, -2, 0.5, 4, /* token 2 */ 100, 50, -25, 0]);
    const d = fakeQuantPerToken(x, 4, activationQuantSpec({ format: "int", bits: 8, mode: "dynamic" }));
    const s0 = Math.fround(4 / 127), s1 = Math.fround(100 / 127);
    const ref = [1, -2, 0.5, 4].map((v) => Math.fround(Math.round(v / s0) * s0)).concat([100, 50, -25, 0].map((v) => Math.fround(Math.round(v / s1) * s1)));
    assert.deepEqual([...d], ref);
  });
  test("per-token groups (g2) and in-place operation", () => {
    const x = Float32Array.from([1, 0.1, 8, 0.2]);
    const d = fakeQuantPerToken(x, 4, "int2:g2");
    assert.deepEqual([...d], [1, 0, 8, 0]);
    fakeQuantPerToken(x, 4, "int2:g2", x);
    assert.deepEqual([...x], [1, 0, 8, 0]);
  });
  test("activation spec of a weight spec; fp8 per token; errors", () => {
    assert.equal(activationQuantSpec(parseSpec("int8:tensor:a8").activations!).granularity.kind, "channel");
    assert.equal(activationQuantSpec(parseSpec("int8:tensor:a8s").activations!).granularity.kind, "tensor");
    const x = new Rng(1).fillNormal(new Float32Array(64 * 32));
    const e = errorStats(x, fakeQuantPerToken(x, 32, activationQuantSpec({ format: "fp8_e4m3", bits: 8, mode: "dynamic" }))).sqnrDb;
    assert.ok(e > 30 && e < 35, `fp8 per-token SQNR ${e}`); // E4M3: 3 mantissa bits ≈ 31 dB
    assert.throws(() => fakeQuantPerToken(x, 33, "int8:channel"), /not a whole number of 33-wide tokens/);
    assert.throws(() => fakeQuantPerToken(x, 32, "int8:ichannel"), /needs channel, g<N>, tensor or none/);
  });
});
