import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { assignBits, hessianWeightedError, type TensorOptions } from "../../src/algos/mixed.js";
import { IntAffineQuantizer } from "../../src/algos/quantizer.js";
import { gaussian } from "./helpers.js";

function bruteForce(tensors: TensorOptions[], budget: number) {
  const total = tensors.reduce((s, t) => s + t.numel, 0);
  let best = { loss: Infinity, choice: [] as number[] };
  const rec = (i: number, choice: number[], bits: number, loss: number) => {
    if (bits > budget * total + 1e-6) return;
    if (i === tensors.length) { if (loss < best.loss) best = { loss, choice: [...choice] }; return; }
    tensors[i]!.options.forEach((o, oi) => rec(i + 1, [...choice, oi], bits + o.bitsPerWeight * tensors[i]!.numel, loss + o.loss));
  };
  rec(0, [], 0, 0);
  return best;
}

describe("mixed precision", () => {
  test("DP assignment equals brute-force enumeration under the budget", () => {
    const rng = new Rng(51);
    for (let trial = 0; trial < 20; trial++) {
      const tensors: TensorOptions[] = Array.from({ length: 5 }, (_, i) => {
        const numel = 64 * (1 + rng.int(8));
        const sens = 0.1 + 10 * rng.next();
        return { name: `t${i}`, numel, options: [2, 3, 4.5, 8].map((b) => ({ bitsPerWeight: b, loss: sens * numel * 2 ** (-2 * b) })) };
      });
      for (const budget of [2, 3, 3.25, 4, 5.5, 8]) {
        const dp = assignBits(tensors, budget);
        const bf = bruteForce(tensors, budget);
        assert.ok(Math.abs(dp.totalLoss - bf.loss) <= 1e-9 * bf.loss, `trial ${trial} budget ${budget}: ${dp.totalLoss} vs ${bf.loss}`);
        assert.ok(dp.bitsPerWeight <= budget + 1e-9);
      }
    }
  });

  test("sensitive tensors get more bits than a uniform assignment, lowering the total proxy error", () => {
    const rng = new Rng(52);
    const shapes = [[32, 64], [32, 64], [64, 32], [16, 64]] as const;
    // the second tensor's inputs are 30× more active: its Hessian diagonal is large
    const tensors: TensorOptions[] = shapes.map(([rows, cols], i) => {
      const w = gaussian(rng, rows * cols, 0.05);
      const h = new Float64Array(cols).fill(i === 1 ? 30 : 1);
      return {
        name: `t${i}`, numel: rows * cols,
        options: [2, 3, 4, 6].map((bits) => ({ bitsPerWeight: bits, loss: hessianWeightedError(w, rows, cols, new IntAffineQuantizer({ bits, groupSize: 0 }), h) })),
      };
    });
    const mixed = assignBits(tensors, 3.5);
    const uniform3 = tensors.reduce((s, t) => s + t.options[1]!.loss, 0);
    console.log(`# mixed precision at 3.5 bits/weight: choice ${mixed.choice.map((c) => [2, 3, 4, 6][c]).join("/")}, proxy loss vs uniform int3 = ${(mixed.totalLoss / uniform3).toFixed(3)}`);
    assert.ok(mixed.totalLoss < uniform3);
    assert.equal(Math.max(...mixed.choice), mixed.choice[1], "the sensitive tensor gets the widest option");
    assert.throws(() => assignBits(tensors, 1.5), /below the smallest option mix \(2\.000\)/);
  });

  test("weight error proxy equals the direct sum", () => {
    const w = Float64Array.of(0.1, -0.7, 0.35, 1);
    const q = new IntAffineQuantizer({ bits: 2, symmetric: true }); // levels −s, 0, s per row
    // row 0: s = 0.7 → 0, −0.7;   row 1: s = 1 → 0, 1
    const expected = 2 * 0.1 ** 2 + 3 * 0 + 2 * 0.35 ** 2 + 3 * 0;
    assert.ok(Math.abs(hessianWeightedError(w, 2, 2, q, [2, 3]) - expected) < 1e-12);
  });
});
