import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Llama } from "../../src/model/llama.js";
import { perplexity } from "../../src/eval/perplexity.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { encodeLogitsHeader, SavedLogits } from "../../src/eval/logits-file.js";
import { planWindows, scoredTokens } from "../../src/eval/windows.js";
import { BufferSource } from "../../src/io/source.js";
import { Tensor } from "../../src/core/tensor.js";
import { Rng } from "../../src/core/rng.js";
import { TensorNames } from "../../src/model/config.js";
import type { Model } from "../../src/model/weights.js";
import { config, f32, randomModel } from "../model/synthetic.js";

const c = config({ seqLen: 16 });
const base = randomModel(c, 31);
const tokens = Array.from({ length: 40 }, (_, i) => (i * 7 + 3) % c.vocabSize);

/** The same model with noise (σ = 0.02·|w|-ish) on the FFN down projections. */
function perturbed(m: Model, seed: number): Model {
  const rng = new Rng(seed);
  const w = new Map(m.weights);
  for (let l = 0; l < m.config.nLayers; l++) {
    const d = f32(m, TensorNames.ffnDown(l)).map((x) => x + 0.05 * rng.normal());
    w.set(TensorNames.ffnDown(l), { kind: "dense", tensor: new Tensor("f32", [c.dim, c.hiddenDim], d) });
  }
  return { ...m, weights: w };
}

/** Direct float64 KLD/top-1/Δp from token-by-token logits of both models. */
function kldRef(a: Model, b: Model, ctx: number) {
  const la = new Llama(a), lb = new Llama(b);
  let kl = 0, agree = 0, dp = 0, n = 0;
  const logp = (l: Float32Array) => {
    const m = Math.max(...l);
    const lse = m + Math.log(l.reduce((s, x) => s + Math.exp(x - m), 0));
    return Array.from(l, (x) => x - lse);
  };
  for (const w of planWindows(tokens.length, ctx)) {
    const inputs = [1, ...tokens.slice(w.start, w.start + w.length - 1)];
    inputs.forEach((t, pos) => {
      const pa = logp(la.forward(t, pos)), pb = logp(lb.forward(t, pos));
      kl += pa.reduce((s, x, i) => s + Math.exp(x) * (x - pb[i]!), 0);
      if (pa.indexOf(Math.max(...pa)) === pb.indexOf(Math.max(...pb))) agree++;
      const target = tokens[w.start + pos]!;
      dp += Math.abs(Math.exp(pa[target]!) - Math.exp(pb[target]!));
      n++;
    });
  }
  return { meanKld: kl / n, top1: agree / n, meanAbsDeltaP: dp / n, tokens: n };
}

describe("KL divergence", () => {
  test("a model against itself: zero KLD, full agreement, same perplexity as eval", async () => {
    const r = await kld(new ModelLogits(new Llama(base)), new ModelLogits(new Llama(base)), tokens, { ctx: 9, bosId: 1 });
    const p = await perplexity(new Llama(base), tokens, { ctx: 9, bosId: 1 });
    assert.equal(r.meanKld, 0);
    assert.equal(r.maxKld, 0);
    assert.equal(r.top1, 1);
    assert.equal(r.meanAbsDeltaP, 0);
    assert.equal(r.tokens, 40);
    assert.equal(r.windows, 5);
    assert.ok(Math.abs(r.pplBase / p.ppl - 1) < 1e-12);
  });

  test("against a perturbed model: matches a direct float64 computation", async () => {
    const other = perturbed(base, 2);
    const r = await kld(new ModelLogits(new Llama(base, { maxBatch: 3 })), new ModelLogits(new Llama(other, { maxBatch: 5 })), tokens, { ctx: 9, bosId: 1 });
    const want = kldRef(base, other, 9);
    assert.ok(r.meanKld > 1e-4, `the perturbation shows (${r.meanKld})`);
    assert.ok(Math.abs(r.meanKld - want.meanKld) < 1e-6 * Math.max(1, want.meanKld), `${r.meanKld} vs ${want.meanKld}`);
    assert.equal(r.top1, want.top1);
    assert.ok(Math.abs(r.meanAbsDeltaP - want.meanAbsDeltaP) < 1e-6);
    assert.ok(r.medianKld <= r.p99Kld && r.p99Kld <= r.maxKld);
  });

  test("saved reference logits (QLGT) give the same result as the live base model", async () => {
    const ctx = 9;
    const n = scoredTokens(planWindows(tokens.length, ctx, 20));
    const chunks: Uint8Array[] = [encodeLogitsHeader({ vocabSize: c.vocabSize, ctx, nTokens: n, bosId: 1 }, Int32Array.from(tokens.slice(0, n)))];
    await perplexity(new Llama(base, { maxBatch: 4 }), tokens, {
      ctx, maxTokens: 20, bosId: 1,
      onLogits: (l) => chunks.push(new Uint8Array(l.buffer, l.byteOffset, l.byteLength).slice()),
    });
    const file = new Uint8Array(chunks.reduce((a, b) => a + b.length, 0));
    let o = 0;
    for (const ch of chunks) { file.set(ch, o); o += ch.length; }
    const saved = await SavedLogits.open(new BufferSource("base.qlgt", file));
    assert.deepEqual([...saved.targets], tokens.slice(0, n));
    const other = perturbed(base, 3);
    const fromFile = await kld(saved, new ModelLogits(new Llama(other)), saved.targets, { ctx, bosId: 1 });
    const live = await kld(new ModelLogits(new Llama(base)), new ModelLogits(new Llama(other)), tokens, { ctx, maxTokens: 20, bosId: 1 });
    assert.deepEqual({ ...fromFile, seconds: 0 }, { ...live, seconds: 0 });
  });

  test("bad logits files and mismatched vocabularies", async () => {
    const h = encodeLogitsHeader({ vocabSize: 4, ctx: 3, nTokens: 2, bosId: 1 }, Int32Array.from([2, 3]));
    const full = new Uint8Array(h.length + 2 * 4 * 4);
    full.set(h);
    await SavedLogits.open(new BufferSource("ok.qlgt", full));
    await assert.rejects(SavedLogits.open(new BufferSource("t.qlgt", full.subarray(0, full.length - 4))), { message: "t.qlgt: truncated: the header implies 64 bytes but the file has 60" });
    const badMagic = full.slice();
    badMagic[0] = 0x58;
    await assert.rejects(SavedLogits.open(new BufferSource("m.qlgt", badMagic)), /m\.qlgt: not a quantlab logits file/);
    const badTarget = full.slice();
    new DataView(badTarget.buffer).setInt32(24, 9, true);
    await assert.rejects(SavedLogits.open(new BufferSource("b.qlgt", badTarget)), /b\.qlgt: target 0 = 9 is outside the vocabulary/);
    const small = randomModel(config({ vocabSize: 30 }), 1);
    await assert.rejects(kld(new ModelLogits(new Llama(base)), new ModelLogits(new Llama(small)), tokens, { ctx: 9, bosId: 1 }), /different vocabularies \(40 vs 30 tokens\)/);
  });
});
