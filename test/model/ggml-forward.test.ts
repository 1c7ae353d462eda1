/**
 * GgmlForward (llama.cpp's CPU arithmetic, src/model/ggml-forward.ts) on its own: with F32 weights it is
 * the same model as run.c — logits within float rounding of reference.json and of our Llama — and with
 * quantized weights it differs from the f32-activation forward pass only by the activation rounding
 * ggml does. Agreement with llama.cpp itself is tested in test/algos/ggml-quant-llamacpp.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dataPath } from "../../src/io/node/data.js";
import { loadLlama2cFile } from "../../src/io/node/llama2c-file.js";
import { GgmlForward } from "../../src/model/ggml-forward.js";
import { Llama } from "../../src/model/llama.js";
import { quantizeModelToGgml } from "../../src/algos/ggml-quant.js";
import { QuantlabError } from "../../src/core/errors.js";
import { config, randomModel } from "./synthetic.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8")) as { logits: { token_ids: number[]; values: number[][] } };
const m260K = await loadLlama2cFile(dataPath("stories260K", "stories260K.bin"), {});

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe("GgmlForward", () => {
  for (const simd of ["avx512", "avx2"] as const) {
    for (const kvType of ["f32", "f16"] as const) {
      test(`stories260K F32, ${simd}, ${kvType} KV: logits = run.c's reference within rounding`, () => {
        const g = new GgmlForward(m260K, { simd, kvType });
        let d = 0;
        ref.logits.token_ids.forEach((t, pos) => { d = Math.max(d, maxAbs(g.forward(t, pos), ref.logits.values[pos]!)); });
        // f32 KV: only summation order and exp/silu approximations differ (measured 5.7e-6);
        // an f16 cache rounds q, K, V and the attention weights (measured ≈1e-3 on logits of ±15)
        assert.ok(d < (kvType === "f32" ? 1e-4 : 1e-2), `max |Δlogit| ${d}`);
        if (kvType === "f16") assert.ok(d > 1e-5, "an f16 cache must change the logits");
      });
    }
  }

  test("quantized weights: ggml rounds matmul inputs, so it differs from the f32-input forward pass by quantization noise only", () => {
    const q = quantizeModelToGgml(m260K, { type: "Q4_0" });
    const g = new GgmlForward(q.model, { kvType: "f32" });
    const l = new Llama(q.model);
    let d = 0, dSame = 0;
    const g2 = new GgmlForward(q.model, { kvType: "f32" });
    ref.logits.token_ids.forEach((t, pos) => {
      const a = g.forward(t, pos).slice();
      d = Math.max(d, maxAbs(a, l.forward(t, pos)));
      dSame = Math.max(dSame, maxAbs(a, g2.forward(t, pos)));
    });
    assert.equal(dSame, 0, "deterministic");
    // Q8_0 inputs (≈0.4 % relative rounding) move logits by hundredths, never by whole units
    assert.ok(d > 1e-4 && d < 0.5, `max |Δlogit| ${d}`);
  });

  test("GQA with 64-wide heads (sgemm lane order) matches our Llama on F32 weights", () => {
    const m = randomModel(config({ dim: 128, hiddenDim: 192, nHeads: 2, nKvHeads: 1, headDim: 64, vocabSize: 50, seqLen: 40, tiedEmbeddings: false }), 3);
    const g = new GgmlForward(m, { kvType: "f32" });
    const l = new Llama(m);
    let d = 0;
    for (let pos = 0; pos < 40; pos++) d = Math.max(d, maxAbs(g.forward((pos * 7) % 50, pos), l.forward((pos * 7) % 50, pos)));
    assert.ok(d < 1e-4, `max |Δlogit| ${d}`);
  });

  test("bad token or position: E_ARG", () => {
    const g = new GgmlForward(m260K, { contextLength: 4 });
    assert.throws(() => g.forward(512, 0), (e: unknown) => e instanceof QuantlabError && e.code === "E_ARG" && /token id 512/.test(e.message));
    assert.throws(() => g.forward(1, 4), (e: unknown) => e instanceof QuantlabError && e.code === "E_ARG" && /position 4/.test(e.message));
  });
});

test("GgmlForward is a CausalLM: perplexity() on stories260K F32 equals Llama's within rounding", async () => {
  const { perplexity } = await import("../../src/eval/perplexity.js");
  const ids = Array.from({ length: 200 }, (_, i) => 3 + ((i * 37) % 500));
  const opts = { ctx: 48, bosId: 1 };
  const a = await perplexity(new GgmlForward(m260K, { kvType: "f32", contextLength: 48 }), ids, opts);
  const b = await perplexity(new Llama(m260K, { contextLength: 48 }), ids, opts);
  assert.equal(a.tokens, b.tokens);
  assert.ok(Math.abs(a.nll - b.nll) < 1e-6 * b.nll, `${a.nll} vs ${b.nll}`);
  assert.ok(a.windows === 5 && a.windowNll.length === 5);
});
