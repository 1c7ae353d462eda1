/** The training pass (model/train.ts): its logits are the inference pass's (and run.c's), sequences in a batch stay apart, gradients equal finite differences. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dataPath } from "../../src/io/node/data.js";
import { loadLlama2cFile } from "../../src/io/node/llama2c-file.js";
import { Llama } from "../../src/model/llama.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { ARCHITECTURES, ARCH_TRAITS, TensorNames, type ModelConfig } from "../../src/model/config.js";
import { LlamaTrainer, checkTrainedTraits, crossEntropyGrad, distillGrad, paramsFromModel, zerosLike, type ParamMap } from "../../src/model/train.js";
import { Rng } from "../../src/core/rng.js";
import { config, randomModel } from "./synthetic.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8"));
const m260K = await loadLlama2cFile(dataPath("stories260K", "stories260K.bin"), {});

/** Loss of the trainer at parameters w: cross-entropy on targets, or KL to fixed teacher logits. */
function lossAt(tr: LlamaTrainer, w: ParamMap, inputs: Int32Array, targets: Int32Array, V: number, teacher?: Float64Array): number {
  const lg = tr.forward(w, inputs);
  const d = new Float64Array(lg.length);
  return teacher ? distillGrad(lg, teacher, inputs.length, V, d) : crossEntropyGrad(lg, targets, V, d);
}

describe("training forward/backward (model/train.ts)", () => {
  test("logits equal the inference pass (ref backend) on stories260K within 1e-4, and run.c's", () => {
    const ids: number[] = ref.logits.token_ids;
    const tr = new LlamaTrainer(m260K.config, 1, ids.length);
    const lg = tr.forward(paramsFromModel(m260K), ids);
    const llama = new Llama(m260K, { backend: new RefBackend() });
    const V = m260K.config.vocabSize;
    let worst = 0, worstRunC = 0;
    llama.prefill(ids, 0, (out, row, n) => {
      for (let i = 0; i < n * V; i++) worst = Math.max(worst, Math.abs(out[i]! - lg[row * V + i]!));
    });
    for (let p = 0; p < ids.length; p++) for (let j = 0; j < V; j++) worstRunC = Math.max(worstRunC, Math.abs(ref.logits.values[p][j] - lg[p * V + j]!));
    assert.ok(worst < 1e-4, `max |Δlogit| vs Llama ${worst}`);
    assert.ok(worstRunC < 1e-4, `max |Δlogit| vs run.c ${worstRunC}`);
  });

  test("two sequences in one batch give each sequence's own logits (no attention across sequences)", () => {
    const m = randomModel(config({ nLayers: 1 }), 3);
    const w = paramsFromModel(m);
    const a = [1, 5, 7, 9, 2], b = [3, 3, 8, 1, 0];
    const both = new LlamaTrainer(m.config, 2, 5).forward(w, [...a, ...b]).slice();
    const one = new LlamaTrainer(m.config, 1, 5);
    const V = m.config.vocabSize;
    const la = one.forward(w, a).slice();
    const lb = one.forward(w, b).slice();
    for (let i = 0; i < 5 * V; i++) {
      assert.ok(Math.abs(both[i]! - la[i]!) < 1e-12);
      assert.ok(Math.abs(both[5 * V + i]! - lb[i]!) < 1e-12);
    }
  });

  // tiny GQA config with an untied classifier and one tied, every tensor kind checked
  for (const tied of [true, false]) {
    for (const kind of ["ce", "kd"] as const) {
      test(`gradients equal central finite differences (tied ${tied}, ${kind} loss)`, () => {
        const c = config({ dim: 16, hiddenDim: 12, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 19, seqLen: 8, tiedEmbeddings: tied });
        const m = randomModel(c, 7);
        const w = paramsFromModel(m);
        // make the norms and weights non-trivial so every path matters
        const rng = new Rng(11);
        const nSeq = 2, T = 5, V = c.vocabSize;
        const inputs = Int32Array.from({ length: nSeq * T }, () => rng.int(V));
        const targets = Int32Array.from({ length: nSeq * T }, () => rng.int(V));
        const tr = new LlamaTrainer(c, nSeq, T);
        let teacher: Float64Array | undefined;
        if (kind === "kd") {
          const tw = paramsFromModel(randomModel(c, 8));
          teacher = tr.forward(tw, inputs).slice();
        }
        const lg = tr.forward(w, inputs);
        const d = new Float64Array(lg.length);
        if (teacher) distillGrad(lg, teacher, nSeq * T, V, d);
        else crossEntropyGrad(lg, targets, V, d);
        const grads = zerosLike(w);
        tr.backward(w, d, grads);
        const h = 1e-5;
        let checked = 0;
        for (const [name, p] of w) {
          // a few coordinates per tensor (all of small ones), including the embedding rows that were used
          const picks = p.length <= 24 ? [...p.keys()] : Array.from({ length: 6 }, () => rng.int(p.length));
          if (name === TensorNames.tokenEmbd) picks.push(inputs[0]! * c.dim, inputs[3]! * c.dim + 5);
          for (const i of picks) {
            const orig = p[i]!;
            p[i] = orig + h;
            const lp = lossAt(tr, w, inputs, targets, V, teacher);
            p[i] = orig - h;
            const lm = lossAt(tr, w, inputs, targets, V, teacher);
            p[i] = orig;
            const fd = (lp - lm) / (2 * h);
            const an = grads.get(name)![i]!;
            assert.ok(Math.abs(fd - an) <= 1e-6 + 1e-5 * Math.abs(fd), `${name}[${i}]: analytic ${an}, finite difference ${fd}`);
            checked++;
          }
        }
        assert.ok(checked > 100);
      });
    }
  }
});

/**
 * The architecture traits with a backward (Qwen2 biases, Qwen3 q/k norms with headDim ≠ dim/heads, NeoX RoPE, Granite's
 * multipliers, a sliding window; Phi-3's partial rotary and LongRoPE; Gemma 2/3's sandwich norms, GeGLU, √dim, query
 * scale, soft-caps, per-layer windows and RoPE bases; OLMo 2's post-branch norms and whole-projection q/k norms).
 */
describe("training pass on every trained architecture trait", () => {
  const CASES: [string, Partial<ModelConfig>][] = [
    ["qwen2 (q/k/v biases, NeoX)", { arch: "qwen2" }],
    ["qwen3 (per-head q/k norms, headDim 6 ≠ dim/heads)", { arch: "qwen3", headDim: 6 }],
    ["granite (four multipliers)", { arch: "granite", multipliers: { embedding: 3, residual: 0.5, attention: 0.3, logits: 2.5 } }],
    ["llama with a sliding window of 3", { slidingWindow: 3 }],
    // Phi-3: partial rotary (4 of 8 values per head) with LongRoPE: the long factors (seqLen 8 > 4) and the short ones
    ["phi3 (partial rotary, LongRoPE long factors, attention factor)", { arch: "phi3", headDim: 8, rotaryDim: 4, longRope: { shortFactor: [1.1, 1.7], longFactor: [1.5, 3.2], originalMaxPositionEmbeddings: 4, attentionFactor: 1.19 } }],
    ["phi3 (LongRoPE short factors)", { arch: "phi3", headDim: 8, rotaryDim: 4, longRope: { shortFactor: [1.1, 1.7], longFactor: [1.5, 3.2], originalMaxPositionEmbeddings: 16, attentionFactor: 1.19 } }],
    // Gemma 2: sandwich (1 + w) norms, GeGLU, √dim embeddings, query scale, both soft-caps, a window on alternate layers
    ["gemma2 (sandwich norms, GeGLU, √dim, query scale, soft-caps, alternating window)", { arch: "gemma2", headDim: 8, attnScale: 0.3, attnSoftcap: 2.5, finalSoftcap: 8, slidingWindow: 3, slidingLayers: [true, false] }],
    // Gemma 3: per-head q/k norms, local RoPE base on the sliding layer, linear RoPE scaling on the global one
    ["gemma3 (per-head q/k norms, local RoPE base, linear scaling, query scale)", { arch: "gemma3", headDim: 8, attnScale: 0.25, slidingWindow: 3, slidingLayers: [true, false], ropeThetaLocal: 10, ropeLinearFactor: 4 }],
    // OLMo 2: norms after each branch only, q/k norms over the whole projection
    ["olmo2 (post-branch norms, whole-projection q/k norms)", { arch: "olmo2" }],
  ];
  for (const [label, over] of CASES) {
    test(`${label}: logits equal the inference pass; gradients equal central finite differences`, (t) => {
      const c = config({ dim: 16, hiddenDim: 12, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 19, seqLen: 8, tiedEmbeddings: false, ...over });
      const m = randomModel(c, 5);
      // an untied head × 4: peaky next-token distributions (max |logit| ≈ 10), where a wrong trait shows
      const head = m.weights.get(TensorNames.output)!;
      if (head.kind === "dense") for (let i = 0; i < head.tensor.data.length; i++) (head.tensor.data as Float32Array)[i]! *= 4;
      const w = paramsFromModel(m);
      const T = 6, V = c.vocabSize;
      const rng = new Rng(2);
      const inputs = Int32Array.from({ length: 2 * T }, () => rng.int(V));
      const targets = Int32Array.from({ length: 2 * T }, () => rng.int(V));
      const tr = new LlamaTrainer(c, 2, T);
      const lg = tr.forward(w, inputs).slice();
      // sequence 2 through the inference pass, one position at a time
      const llama = new Llama(m, { backend: new RefBackend() });
      let worst = 0, scale = 0;
      for (let p = 0; p < T; p++) {
        const out = llama.forward(inputs[T + p]!, p);
        for (let j = 0; j < V; j++) { worst = Math.max(worst, Math.abs(out[j]! - lg[(T + p) * V + j]!)); scale = Math.max(scale, Math.abs(out[j]!)); }
      }
      t.diagnostic(`${label}: max |Δlogit| vs Llama ${worst.toExponential(2)} (max |logit| ${scale.toFixed(2)})`);
      assert.ok(worst <= 1e-5, `${label}: max |Δlogit| vs Llama ${worst}`);
      const d = new Float64Array(lg.length);
      crossEntropyGrad(tr.forward(w, inputs), targets, V, d);
      const grads = zerosLike(w);
      tr.backward(w, d, grads);
      const h = 1e-5;
      const traitTensors = [...w.keys()].filter((n) => /bias|_norm\.weight$/.test(n) && !/attn_norm|ffn_norm/.test(n));
      if (over.arch && over.arch !== "granite" && over.arch !== "phi3") assert.ok(traitTensors.length > 0, "the trait tensors are trained");
      let checked = 0;
      for (const [name, p] of w) {
        const picks = p.length <= 24 ? [...p.keys()] : Array.from({ length: 5 }, () => rng.int(p.length));
        for (const i of picks) {
          const orig = p[i]!;
          p[i] = orig + h;
          const lp = lossAt(tr, w, inputs, targets, V);
          p[i] = orig - h;
          const lm = lossAt(tr, w, inputs, targets, V);
          p[i] = orig;
          const fd = (lp - lm) / (2 * h);
          const an = grads.get(name)![i]!;
          assert.ok(Math.abs(fd - an) <= 1e-6 + 1e-5 * Math.abs(fd), `${label} ${name}[${i}]: analytic ${an}, finite difference ${fd}`);
          checked++;
        }
      }
      assert.ok(checked > 100);
    });
  }

  test("a trait or config field without a backward is refused by name", () => {
    const c = config({ dim: 16, hiddenDim: 12, nLayers: 1, nHeads: 4, nKvHeads: 2, vocabSize: 19, seqLen: 8 });
    assert.throws(() => new LlamaTrainer({ ...c, ...({ ropeYarn: 4 } as object) } as ModelConfig, 1, 4), /QAT: the model's config field ropeYarn is not in the training pass yet/);
    assert.throws(() => new LlamaTrainer({ ...c, arch: "gemma9" as "llama" }, 1, 4), /QAT: unknown architecture "gemma9"/);
    // a trait the training pass does not know (one added to ARCH_TRAITS later), or a known one, unchanged
    assert.throws(() => checkTrainedTraits("future", { ...ARCH_TRAITS.gemma3, ...({ parallelBlock: true } as object) }), /QAT: architecture "future": its parallelBlock \(true\) has no backward in the training pass yet/);
    for (const a of ARCHITECTURES) assert.doesNotThrow(() => checkTrainedTraits(a, ARCH_TRAITS[a]));
  });
});
