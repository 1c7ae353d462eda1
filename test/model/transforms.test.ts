import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { randomizedHadamard } from "../../src/algos/rotation.js";
import { fakeQuantPerToken, fakeQuantStatic } from "../../src/quant/activations.js";
import { applyOnlineRotation, checkInputTransforms, fakeQuantInputs, inputTransformsFromJson, inputTransformsToJson, type InputTransforms } from "../../src/model/transforms.js";

test("online rotation from factors equals the algos Rotation it came from (Sylvester, ⊗Paley, ⊗random sizes)", () => {
  for (const n of [64, 172, 48, 96, 20]) {
    const r = randomizedHadamard(n, 5);
    const rng = new Rng(n);
    const x = rng.fillNormal(new Float32Array(3 * n));
    const ref = Float64Array.from(x);
    r.apply(ref, 3);
    const got = new Float32Array(x);
    applyOnlineRotation(r.factors(), got, 3);
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-5, `n ${n} (${r.kind}), element ${i}: ${got[i]} vs ${ref[i]}`);
  }
});

test("activation fake-quantization equals quant's per-token and static helpers bit for bit", () => {
  const rng = new Rng(2);
  const dim = 40, n = 7;
  const x = rng.fillNormal(new Float32Array(n * dim), 3);
  x[5] = 80; // an outlier channel value
  x.fill(0, dim, 2 * dim); // an all-zero token
  for (const bits of [8, 4]) {
    const ours = new Float32Array(x);
    fakeQuantInputs(ours, n, dim, bits);
    assert.deepEqual(ours, fakeQuantPerToken(x, dim, `int${bits}:channel`), `int${bits} per token`);
    const scale = Math.fround(10 / (2 ** (bits - 1) - 1));
    const st = new Float32Array(x);
    fakeQuantInputs(st, n, dim, bits, scale);
    assert.deepEqual(st, fakeQuantStatic(x, { scale, zero: 0 }, `int${bits}:tensor`), `int${bits} static`);
  }
});

test("input transforms survive a JSON round trip exactly; malformed ones are rejected naming the file", () => {
  const r = randomizedHadamard(172, 9).factors();
  const t: InputTransforms = { ffnDownRotation: r, activations: { bits: 8, mode: "static", scales: { "0.attn_in": Math.fround(0.0123), "4.ffn_down_in": Math.fround(3.5) } } };
  const back = inputTransformsFromJson(inputTransformsToJson(t), "f.safetensors");
  assert.deepEqual(back, t);
  checkInputTransforms(back, 172, "f.safetensors");
  assert.throws(() => checkInputTransforms(back, 256, "f.safetensors"), /f\.safetensors: online FFN-down rotation has size 172, the model's hidden size is 256/);
  assert.throws(() => inputTransformsFromJson("{", "f.safetensors"), /f\.safetensors: "quantlab.input_transforms" is not valid JSON/);
  assert.throws(() => inputTransformsFromJson('{"version":2}', "f.safetensors"), /version 2/);
  assert.throws(() => inputTransformsFromJson('{"version":1,"activations":{"bits":8,"mode":"sometimes"}}', "f.safetensors"), /activation mode "sometimes"/);
});
