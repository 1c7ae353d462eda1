import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Sampler, argmax } from "../../src/model/sampler.js";

const softmax = (l: number[], t = 1) => {
  const m = Math.max(...l);
  const e = l.map((x) => Math.exp((x - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};
function histogram(s: Sampler, logits: number[], n: number): number[] {
  const h = new Array(logits.length).fill(0);
  const l = Float32Array.from(logits);
  for (let i = 0; i < n; i++) h[s.sample(l)]++;
  return h.map((x) => x / n);
}

describe("sampler", () => {
  test("temperature 0 is argmax, first maximum on ties", () => {
    const s = new Sampler({ temperature: 0 });
    assert.equal(s.sample(Float32Array.from([0.1, 3, -1, 3])), 1);
    assert.equal(argmax(Float32Array.from([-5, -5, -7])), 0);
  });

  test("plain sampling follows softmax(logits / T)", () => {
    const logits = [1, 0.5, -0.3, 2, 0];
    for (const t of [1, 0.5]) {
      const got = histogram(new Sampler({ temperature: t, topP: 1, seed: 42 }), logits, 40000);
      softmax(logits, t).forEach((p, i) => assert.ok(Math.abs(got[i]! - p) < 0.01, `T ${t} token ${i}: ${got[i]} vs ${p}`));
    }
  });

  test("top-p keeps the smallest prefix whose mass exceeds p, renormalized", () => {
    const logits = [0.4, 0.3, 0.2, 0.1].map(Math.log);
    const got = histogram(new Sampler({ temperature: 1, topP: 0.5, seed: 3 }), logits, 30000);
    assert.equal(got[2], 0);
    assert.equal(got[3], 0);
    assert.ok(Math.abs(got[0]! - 4 / 7) < 0.01 && Math.abs(got[1]! - 3 / 7) < 0.01, String(got));
  });

  test("top-k keeps the k most likely, renormalized; k = 1 is greedy at any temperature", () => {
    const logits = [0.1, 0.2, 0.3, 0.4].map(Math.log);
    const got = histogram(new Sampler({ temperature: 1, topP: 1, topK: 2, seed: 9 }), logits, 30000);
    assert.deepEqual(got.slice(0, 2), [0, 0]);
    assert.ok(Math.abs(got[3]! - 4 / 7) < 0.01, String(got));
    const g = new Sampler({ temperature: 2, topK: 1, seed: 1 });
    for (let i = 0; i < 50; i++) assert.equal(g.sample(Float32Array.from([0, 1, 0.99, -1])), 1);
  });

  test("same seed, same draws; another seed, other draws", () => {
    const l = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const draw = (seed: number) => {
      const s = new Sampler({ temperature: 1, seed });
      return Array.from({ length: 40 }, () => s.sample(l));
    };
    assert.deepEqual(draw(5), draw(5));
    assert.notDeepEqual(draw(5), draw(6));
  });

  test("bad options", () => {
    assert.throws(() => new Sampler({ temperature: -1 }), { code: "E_ARG" });
    assert.throws(() => new Sampler({ topK: 1.5 }), /top-k 1\.5/);
  });
});
