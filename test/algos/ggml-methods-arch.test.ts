/**
 * The GGUF folds (algos/ggml-transform.ts) on the architectures beyond Llama's block (model/config.ts ARCH_TRAITS):
 * Phi-3 (fused qkv / gate_up, partial rotary, LongRoPE), Gemma 2 / 3 ((1 + w) norms held in GGUF form, sandwich
 * norms, GeGLU, soft-caps, sliding layers), OLMo 2 (post-norms only). Each fold must leave the float model's logits
 * unchanged (the reference forward pass, ≤ 1e-4), visibly move the tensors it folds into, skip — and list — the
 * sites it cannot fold (OLMo 2's attn_in / ffn_in, v → o under GQA), and refuse the residual rotation where a
 * post-branch norm blocks it. The llama.cpp side (the files these folds write, run in llama.cpp) is in
 * test/io/architectures-gemma-llamacpp.test.ts and test/io/phi3-llamacpp.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { transformForGgml } from "../../src/algos/ggml-transform.js";
import { quantize } from "../../src/algos/quantize.js";
import { GgmlType } from "../../src/ggml/types.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { loadModel } from "../../src/io/node/load.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { TensorNames, type ModelConfig } from "../../src/model/config.js";
import type { Model } from "../../src/model/weights.js";
import { TINY_VOCAB as VOCAB, logitsOf, randomWeights, tinyTokenizer } from "../helpers/tiny-arch.js";

const ROT = 24;
const CONFIGS: ModelConfig[] = [
  { arch: "phi3", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 32, vocabSize: VOCAB, seqLen: 256, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, rotaryDim: ROT,
    longRope: { shortFactor: Array.from({ length: ROT / 2 }, (_, j) => 1 + 0.05 * j), longFactor: Array.from({ length: ROT / 2 }, (_, j) => 1 + 0.075 * j * j), originalMaxPositionEmbeddings: 64, attentionFactor: 1.16 }, name: "tiny-phi" },
  // multi-head (no GQA): v → o folds too
  { arch: "gemma2", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 4, headDim: 48, vocabSize: VOCAB, seqLen: 256, ropeTheta: 10000, normEps: 1e-6, tiedEmbeddings: true, name: "tiny-gemma2",
    slidingWindow: 6, slidingLayers: [true, false], attnSoftcap: 2, finalSoftcap: 30 },
  { arch: "gemma3", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 1, headDim: 32, vocabSize: VOCAB, seqLen: 256, ropeTheta: 1000000, normEps: 1e-6, tiedEmbeddings: true, name: "tiny-gemma3",
    slidingWindow: 6, slidingLayers: [true, false], ropeThetaLocal: 10000, ropeLinearFactor: 4 },
  { arch: "olmo2", dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 4, headDim: 32, vocabSize: VOCAB, seqLen: 256, ropeTheta: 500000, normEps: 1e-6, tiedEmbeddings: false, name: "tiny-olmo2" },
];

const model = (cfg: ModelConfig): Model => ({ config: cfg, weights: randomWeights(cfg, 5, cfg.arch.startsWith("gemma") ? 0.1 : 0.3), tokenizer: tinyTokenizer(), source: { path: cfg.name!, format: "memory" } });
const f32 = (m: Model, n: string) => dequantizeWeight(m.weights.get(n)!, n).data;
const ids = Array.from({ length: 24 }, (_, i) => 3 + ((i * 37 + 11) % 250));
const windows = Array.from({ length: 6 }, (_, w) => Int32Array.from({ length: 48 }, (_, i) => 3 + ((i * 53 + w * 101 + (i * i) % 7) % 500)));
// ffn_down reads 256-wide rows: Q4_0 everywhere (a block type at every site, so every group is searched)
const typeOf = () => GgmlType.Q4_0;

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i]!.length; j++) m = Math.max(m, Math.abs(a[i]![j]! - b[i]![j]!));
  return m;
}
function moved(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe("GGUF folds on phi3 / gemma2 / gemma3 / olmo2 leave the float model unchanged", () => {
  for (const cfg of CONFIGS) {
    for (const method of ["awq", "smoothquant"] as const) {
      test(`${cfg.arch} ${method}: max |Δlogit| ≤ 1e-4; the folded tensors moved; the skipped sites are listed`, (t) => {
        const m = model(cfg);
        const ref = logitsOf(m, ids);
        const r = transformForGgml(m, { ...(method === "awq" ? { awq: { grid: 6, clip: false } } : { smooth: { alpha: 0.5 } }), typeOf, windows });
        const d = maxDiff(ref, logitsOf(r.model, ids));
        t.diagnostic(`${cfg.arch} ${method}: max |Δlogit| ${d.toExponential(2)}, skipped ${r.skipped.map((s) => s.site).join(", ") || "none"}`);
        assert.ok(d <= 1e-4, `max |Δlogit| ${d}`);
        const post = cfg.arch === "olmo2";
        if (!post) {
          // the pre-norms took 1/s (Gemma: the stored 1 + w divided, as the norm multiplies by it)
          assert.ok(moved(f32(m, TensorNames.attnNorm(1)), f32(r.model, TensorNames.attnNorm(1))) > 1e-3, "attn_norm unchanged");
          assert.ok(moved(f32(m, TensorNames.ffnNorm(0)), f32(r.model, TensorNames.ffnNorm(0))) > 1e-3, "ffn_norm unchanged");
        }
        // up → down always; v → o without GQA
        assert.ok(moved(f32(m, TensorNames.ffnUp(0)), f32(r.model, TensorNames.ffnUp(0))) > 1e-4, "up rows not divided");
        const mha = cfg.nHeads === cfg.nKvHeads;
        if (mha) assert.ok(moved(f32(m, TensorNames.attnV(0)), f32(r.model, TensorNames.attnV(0))) > 1e-4, "v rows not divided");
        // the post-branch norms are carried unchanged
        if (cfg.arch !== "phi3") assert.deepEqual(f32(r.model, TensorNames.postFfnNorm(1)), f32(m, TensorNames.postFfnNorm(1)));
        const want = [...Array(cfg.nLayers).keys()].flatMap((l) => [...(post ? [`blk.${l}.attn_in`] : []), ...(mha ? [] : [`blk.${l}.attn_out_in`]), ...(post ? [`blk.${l}.ffn_in`] : [])]);
        assert.deepEqual(r.skipped.map((s) => s.site), want);
        for (const s of r.skipped) assert.match(s.reason, s.site.endsWith("attn_out_in") ? /grouped-query attention/ : /no norm before the branch \(olmo2: post-norms only\)/);
        if (post) assert.deepEqual(r.skipped[0]!.linears, ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"]);
      });
    }
  }

  test("phi3: the residual rotation (partial rotary and LongRoPE untouched: they act inside a head) with and without AWQ: max |Δlogit| ≤ 1e-4, head untied", () => {
    const m = model(CONFIGS[0]!);
    const ref = logitsOf(m, ids);
    for (const opts of [{}, { awq: { grid: 6, clip: false }, typeOf, windows }]) {
      const r = transformForGgml(m, { rotate: { seed: 4, mode: "residual" }, ...opts });
      assert.equal(r.model.config.tiedEmbeddings, false);
      // the norm went into the linears (ones); AWQ then divides those ones by its scales
      if (!("awq" in opts)) assert.ok(f32(r.model, TensorNames.attnNorm(0)).every((v) => v === 1), "norm folded into the linears");
      assert.ok(moved(f32(m, TensorNames.attnQ(0)), f32(r.model, TensorNames.attnQ(0))) > 1e-2, "q not rotated");
      const d = maxDiff(ref, logitsOf(r.model, ids));
      assert.ok(d <= 1e-4, `${"awq" in opts ? "rotate + awq" : "rotate"}: max |Δlogit| ${d}`);
    }
  });

  test("gemma2 / gemma3 / olmo2: the residual rotation is refused, naming the post-branch norms", () => {
    for (const cfg of CONFIGS.slice(1)) {
      const m = model(cfg);
      assert.throws(() => transformForGgml(m, { rotate: { seed: 0, mode: "residual" } }), cfg.arch === "olmo2"
        ? /olmo2's post-norms \(no norm before its branches\) do not commute with a residual rotation/
        : new RegExp(`${cfg.arch}'s post-branch norms \\(post_attention_norm, post_ffw_norm\\) do not commute with a residual rotation`));
    }
  });

  test("Gemma: the AWQ-folded (1 + w) norms round-trip through the HF writer (w = stored − 1) and loader (+ 1): same logits", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-gg-arch-"));
    try {
      for (const cfg of CONFIGS.slice(1, 3)) {
        const r = transformForGgml(model(cfg), { awq: { grid: 6, clip: false }, typeOf, windows });
        await saveHfDir(r.model, join(dir, cfg.arch));
        const back = await loadModel(join(dir, cfg.arch));
        const n = TensorNames.attnNorm(1);
        const a = f32(r.model, n), b = f32(back, n);
        for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 2 ** -23 * Math.max(1, Math.abs(a[i]!)) * 2, `${n}[${i}] ${a[i]} → ${b[i]}`);
        const d = maxDiff(logitsOf(r.model, ids), logitsOf(back, ids));
        assert.ok(d <= 1e-5, `${cfg.arch}: HF round trip max |Δlogit| ${d}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("quantize --rotate residual on a spec target (phi3)", () => {
  test("every linear kept float: no online transform, the float logits unchanged (≤ 2e-5); quantized int8 differs", async (t) => {
    const m = model(CONFIGS[0]!);
    const ref = logitsOf(m, ids);
    const r = await quantize(m, { target: { spec: "int8:channel" }, rotate: { seed: 2, mode: "residual" }, tensors: { keepFloat: ["blk.*"] } });
    assert.equal(r.model.inputTransforms, undefined);
    assert.ok(moved(f32(m, TensorNames.attnQ(0)), f32(r.model, TensorNames.attnQ(0))) > 1e-2, "q not rotated");
    const d = maxDiff(ref, logitsOf(r.model, ids));
    assert.ok(d <= 2e-5, `rotated float: max |Δlogit| ${d}`);
    const q = await quantize(m, { target: { spec: "int8:channel" }, rotate: { seed: 2, mode: "residual" } });
    const dq = maxDiff(ref, logitsOf(q.model, ids));
    t.diagnostic(`phi3 rotated float max |Δlogit| ${d.toExponential(2)}, rotated int8:channel ${dq.toExponential(2)}`);
    assert.ok(dq > 10 * d && dq < 1, `rotated int8: max |Δlogit| ${dq}`);
  });
});
