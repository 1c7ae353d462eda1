/**
 * Model-level mixed precision: the mixed:<B>bpw:… grammar, the plan = the exhaustive optimum on a small
 * case, the budget holds, and on stories260K the planned model runs and lands between its candidates.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { QuantlabError } from "../../src/core/errors.js";
import { quantizeTensor } from "../../src/quant/tensor.js";
import { parseMixedSpec, planMixed, printMixedSpec, weightedError, isMixedSpec } from "../../src/algos/mixed-model.js";

describe("mixed precision spec", () => {
  test("parse / print", () => {
    const m = parseMixedSpec("mixed:3.5bpw:int2:g32:asym+int3:g32+int4:g32+int8");
    assert.deepEqual(m, { budgetBpw: 3.5, sensitivity: "hess", candidates: ["int2:g32:asym", "int3:g32", "int4:g32", "int8:channel"] });
    assert.equal(printMixedSpec(m), "mixed:3.5bpw:int2:g32:asym+int3:g32+int4:g32+int8:channel");
    assert.equal(parseMixedSpec("mixed:4bpw:kld:nf4:g64+int8").sensitivity, "kld");
    assert.ok(isMixedSpec(" Mixed:4bpw:x+y") && !isMixedSpec("int4"));
  });
  test("bad mixed specs", () => {
    const bad: [string, RegExp][] = [
      ["mixed:int4+int8", /expected mixed:<bits>bpw/],
      ["mixed:0bpw:int4+int8", /outside \(0, 32\]/],
      ["mixed:4bpw:int4", /at least two candidate/],
      ["mixed:4bpw:int4+int4:channel", /given twice/],
      ["mixed:4bpw:int4+int8:channel:a8", /quantizes activations/],
      ["mixed:4bpw:int4+int99", /int99/],
    ];
    for (const [s, re] of bad) assert.throws(() => parseMixedSpec(s), (e: unknown) => e instanceof QuantlabError && re.test(e.message), s);
  });
});

describe("planMixed", () => {
  const rng = new Rng(4);
  const tensors = [
    { name: "a", w: rng.fillNormal(new Float32Array(32 * 64), 0.02), shape: [32, 64] as const },
    { name: "b", w: rng.fillNormal(new Float32Array(64 * 64), 0.1), shape: [64, 64] as const, hDiag: Float64Array.from({ length: 64 }, (_, i) => 1 + (i % 7)) },
    { name: "c", w: rng.fillNormal(new Float32Array(64 * 32), 0.05), shape: [64, 32] as const },
  ];
  const cands = ["int2:channel", "int4:channel", "int8:channel"];

  test("the plan is the exhaustive optimum under the budget, and the QTensors are the candidates'", () => {
    for (const budget of [3, 4.5, 6, 9]) {
      const m = parseMixedSpec(`mixed:${budget}bpw:${cands.join("+")}`);
      const plan = planMixed(tensors, m);
      const opts = tensors.map((t) => cands.map((c) => {
        const q = quantizeTensor(t.w, t.shape, c);
        return { bits: q.storageBits, loss: weightedError(t.w, q.dequantize(), t.shape[1], t.hDiag) };
      }));
      const total = tensors.reduce((s, t) => s + t.w.length, 0);
      let best = Infinity, bestChoice: number[] = [];
      for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) {
        const bits = opts[0]![i]!.bits + opts[1]![j]!.bits + opts[2]![k]!.bits;
        const loss = opts[0]![i]!.loss + opts[1]![j]!.loss + opts[2]![k]!.loss;
        if (bits <= budget * total && loss < best) { best = loss; bestChoice = [i, j, k]; }
      }
      assert.deepEqual(tensors.map((t) => plan.choice.get(t.name)), bestChoice.map((i) => cands[i]), `budget ${budget}`);
      assert.ok(plan.bpw <= budget + 1e-9, `${plan.bpw} > ${budget}`);
      assert.ok(Math.abs(plan.loss - best) <= 1e-9 * best);
      for (const t of tensors) assert.equal(plan.tensors.get(t.name)!.spec, plan.choice.get(t.name));
      assert.equal(plan.sensitivity, "hessian-diag");
    }
  });

  test("a budget below every mix is an error; kld without a loss function is an error", () => {
    assert.throws(() => planMixed(tensors, parseMixedSpec("mixed:1bpw:int2:channel+int4:channel")), /below the smallest option mix/);
    assert.throws(() => planMixed(tensors, parseMixedSpec("mixed:4bpw:kld:int2:channel+int4:channel")), /kld sensitivity needs/);
  });
});
