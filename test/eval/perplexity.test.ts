import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dataPath } from "../../src/io/node/data.js";
import { loadLlama2cFile } from "../../src/io/node/llama2c-file.js";
import { Llama } from "../../src/model/llama.js";
import { perplexity } from "../../src/eval/perplexity.js";
import { planWindows, windowInputs } from "../../src/eval/windows.js";
import { config, randomModel } from "../model/synthetic.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8"));

describe("eval windows", () => {
  test("non-overlapping windows of ctx-1 scored tokens, short last window, whole windows under max-tokens", () => {
    const starts = (n: number, ctx: number, max?: number) => planWindows(n, ctx, max).map((w) => [w.start, w.length]);
    assert.deepEqual(starts(10, 4), [[0, 3], [3, 3], [6, 3], [9, 1]]);
    assert.deepEqual(starts(10, 4, 5), [[0, 3], [3, 3]]);
    assert.deepEqual(starts(10, 4, 6), [[0, 3], [3, 3]]);
    assert.deepEqual(starts(10, 4, 7), [[0, 3], [3, 3], [6, 3]]);
    assert.deepEqual(starts(0, 4), []);
    assert.equal(planWindows(21896, 512, 20440).length, ref.eval.n_windows);
    assert.throws(() => planWindows(10, 1), { code: "E_ARG" });
    assert.throws(() => planWindows(10, 4, 0), /max-tokens 0/);
    assert.deepEqual([...windowInputs([7, 8, 9, 10, 11], { index: 1, start: 3, length: 2 }, 1)], [1, 10]);
  });
});

describe("perplexity", () => {
  test("synthetic model: equals token-by-token NLL with a fresh cache per window (partial last window)", async () => {
    const m = randomModel(config({ seqLen: 8 }), 21);
    const tokens = [5, 9, 3, 33, 2, 7, 7, 19, 38, 0, 11, 24, 3];
    const r = await perplexity(new Llama(m, { contextLength: 5 }), tokens, { ctx: 5, bosId: 1 });
    const llama = new Llama(m);
    const sums: number[] = [];
    for (let w = 0; w * 4 < tokens.length; w++) {
      const win = tokens.slice(w * 4, w * 4 + 4);
      const inputs = [1, ...win.slice(0, -1)];
      let s = 0;
      inputs.forEach((t, pos) => {
        const l = Array.from(llama.forward(t, pos));
        const lse = Math.log(l.reduce((a, x) => a + Math.exp(x), 0));
        s += lse - l[win[pos]!]!;
      });
      sums.push(s);
    }
    assert.equal(r.windows, 4);
    assert.equal(r.tokens, 13);
    r.windowNll.forEach((s, i) => assert.ok(Math.abs(s - sums[i]!) < 1e-9, `window ${i}`));
    const mean = sums.reduce((a, b) => a + b, 0) / 13;
    assert.ok(Math.abs(r.nll - mean) < 1e-12);
    assert.equal(r.ppl, Math.exp(r.nll));
  });

  test("ctx beyond the KV cache is refused", async () => {
    const m = randomModel(config(), 1);
    await assert.rejects(perplexity(new Llama(m, { contextLength: 8 }), [1, 2, 3], { ctx: 9, bosId: 1 }), /ctx 9 is larger than the model's KV cache \(8 positions\)/);
  });

  test("stories260K on tinystories/eval.txt, ctx 512, 20440 tokens: reference PPL 4.25730 and per-window sums", async () => {
    const m = await loadLlama2cFile(dataPath("stories260K", "stories260K.bin"), {});
    const tokens = m.tokenizer!.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8"), { bos: false });
    const r = await perplexity(new Llama(m, { contextLength: 512 }), tokens, { ctx: 512, maxTokens: 20440, bosId: 1 });
    assert.equal(r.tokens, 20440);
    assert.equal(r.windows, 40);
    assert.ok(Math.abs(r.ppl / 4.2573 - 1) < 1e-3, `ppl ${r.ppl}`); // the acceptance tolerance (0.1%)
    assert.ok(Math.abs(r.ppl / ref.eval.perplexity - 1) < 1e-6, `ppl ${r.ppl} vs ${ref.eval.perplexity}`);
    r.windowNll.forEach((s, i) => assert.ok(Math.abs(s - ref.eval.window_nll_sums[i]) < 2e-3, `window ${i}: ${s} vs ${ref.eval.window_nll_sums[i]}`));
    assert.ok(Math.abs(r.nll * r.tokens - ref.eval.total_nll) < 5e-3);
    console.log(`# stories260K eval: ${r.tokensPerSecond.toFixed(0)} tok/s (ref backend)`);
  });

  // 20,400 scored tokens of stories3M take about two minutes on the reference backend: opt in.
  test("stories3M on tinystories/eval.txt, ctx 256: reference PPL 5.7884", { skip: process.env.QUANTLAB_SLOW_TESTS ? false : "set QUANTLAB_SLOW_TESTS=1" }, async () => {
    const ref3M = JSON.parse(readFileSync(dataPath("stories3M", "reference.json"), "utf8"));
    const m = await loadLlama2cFile(dataPath("stories3M", "stories3M.bin"), { tokenizer: dataPath("stories260K", "tok512.bin") });
    const text = readFileSync(dataPath("tinystories", "eval.txt")).subarray(0, ref3M.eval.text_prefix_bytes).toString("utf8");
    const tokens = m.tokenizer!.encode(text, { bos: false });
    const r = await perplexity(new Llama(m, { contextLength: 256 }), tokens, { ctx: 256, maxTokens: ref3M.eval.n_predicted_tokens, bosId: 1 });
    assert.equal(r.tokens, 20400);
    assert.ok(Math.abs(r.ppl / ref3M.eval.perplexity - 1) < 1e-4, `ppl ${r.ppl} vs ${ref3M.eval.perplexity}`);
  });
});
