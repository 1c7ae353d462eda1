// The compare tables' library (eval/compare.ts), which `quantlab compare`, `quantlab report` and the browser
// lab share: a spec row is the KLD of `quantize()`'s model against the float one on the same windows; a
// preset row's size is the GGUF `quantize` writes and its SQNR is measured on the blocks; block-linear bits
// per weight put specs and presets on one footing; a row restricted to one layer quantizes that layer only;
// a shorter row replays a prefix of the float logits; `--specs` items are told apart and checked early.
import { test } from "node:test";
import assert from "node:assert/strict";
import { weightShape } from "../../src/core/weight.js";
import { quantize } from "../../src/algos/quantize.js";
import { CompareSession, parseCompareTargets } from "../../src/eval/compare.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { BlobSink } from "../../src/io/blob-source.js";
import { writeQuantizeResult } from "../../src/io/quantize-output.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { Llama } from "../../src/model/llama.js";
import { sqnrDb } from "../../src/quant/metrics.js";
import { config, randomModel } from "../model/synthetic.js";

// 256-wide rows so that k-quant blocks fit (a preset row keeps its own types)
const c = config({ dim: 256, hiddenDim: 512, nLayers: 2, nHeads: 4, nKvHeads: 4, vocabSize: 96, seqLen: 32 });
const model = randomModel(c, 5);
const tokens = Array.from({ length: 90 }, (_, i) => (i * 13 + 5) % c.vocabSize);
const backend = new RefBackend();
const CTX = 16;

test("a spec row is quantize() + kld() on the same windows; the preset row's size is the GGUF it writes", async () => {
  const s = new CompareSession(model, { tokens, bosId: 1, ctx: CTX, backend });
  const [spec, preset] = parseCompareTargets(["int4:g32:asym", "Q4_K_M"]);
  const a = await s.measure(spec!);
  const q = await quantize(model, { target: { spec: "int4:g32:asym" } }, { backend });
  const direct = await kld(new ModelLogits(new Llama(model, { backend, contextLength: CTX })), new ModelLogits(new Llama(q.model, { backend, contextLength: CTX })), tokens, { ctx: CTX, bosId: 1 });
  assert.equal(a.row.meanKld, direct.meanKld);
  assert.equal(a.row.ppl, direct.pplOther);
  assert.equal(s.basePpl, direct.pplBase);
  assert.equal(a.row.bpw, q.bpw);
  assert.equal(a.row.linearBpw, q.bpw, "a spec over every block linear: the two bit counts agree");
  assert.deepEqual(a.tensors.map((t) => t.sqnrDb), q.tensors!.map((t) => t.sqnrDb));
  assert.ok(a.row.meanKld > 0);

  let kept: Awaited<ReturnType<typeof quantize>> | undefined;
  const b = await s.measure(preset!, { keep: (r) => { kept = r; } });
  assert.equal(b.row.spec, "Q4_K_M");
  assert.equal(b.row.preset, "Q4_K_M");
  const sink = new BlobSink();
  await writeQuantizeResult(kept!, sink, "x.gguf");
  assert.equal(b.row.sizeBytes, sink.bytes);
  // bits over the block linears: their stored bytes over their weights (the GGUF's tensor table)
  const lin = kept!.ggml!.tensors.filter((t) => /^blk\.\d+\./.test(t.name) && t.shape.length === 2);
  const bits = lin.reduce((x, t) => x + 8 * t.bytes, 0), n = lin.reduce((x, t) => x + t.shape[0]! * t.shape[1]!, 0);
  assert.equal(b.row.linearBpw, bits / n);
  const t0 = b.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!;
  assert.equal(t0.sqnrDb, sqnrDb(dequantizeWeight(model.weights.get(t0.name)!).data, dequantizeWeight(kept!.model.weights.get(t0.name)!).data));
  assert.equal(b.row.worstSqnrDb, Math.min(...b.tensors.map((t) => t.sqnrDb)));
});

test("one layer only: the other layers stay float; fewer tokens replay a prefix of the float logits", async () => {
  const s = new CompareSession(model, { tokens, bosId: 1, ctx: CTX, maxTokens: 60, backend });
  const [t] = parseCompareTargets(["int3:g32:asym"]);
  await assert.rejects(s.measure(t!, { maxTokens: 30 }), /only after a full row was measured/);
  const full = await s.measure(t!);
  let q: Awaited<ReturnType<typeof quantize>> | undefined;
  const layer1 = s.names.filter((n) => n.startsWith("blk.1."));
  assert.equal(layer1.length, 7, "the block's seven linears");
  const one = await s.measure(t!, { tensors: { only: layer1 }, maxTokens: 30, keep: (r) => { q = r; } });
  assert.deepEqual(one.tensors.map((x) => x.name).sort(), [...layer1].sort());
  assert.equal(q!.model.weights.get("blk.0.attn_q.weight"), model.weights.get("blk.0.attn_q.weight"));
  assert.equal(one.kld!.tokens, 30);
  assert.equal(full.kld!.tokens, 60);
  const direct = await kld(new ModelLogits(new Llama(model, { backend, contextLength: CTX })), new ModelLogits(new Llama(q!.model, { backend, contextLength: CTX })), tokens, { ctx: CTX, maxTokens: 30, bosId: 1 });
  assert.equal(one.row.meanKld, direct.meanKld);
  assert.equal(s.tokens, 60, "the session's token count is the full rows'");
  // a preset restricted to layer 0: the others kept in float
  const others = [...model.weights].filter(([n, w]) => !n.startsWith("blk.0.") && weightShape(w).length === 2).map(([n]) => n);
  const p = await s.measure(parseCompareTargets(["Q8_0"])[0]!, { tensors: { keepFloat: others }, maxTokens: 30 });
  assert.ok(p.tensors.every((x) => x.name.startsWith("blk.0.")), p.tensors.map((x) => x.name).join(", "));
});

test("--specs items: presets by name, specs canonical, KV rows; bad ones fail before any work", () => {
  assert.deepEqual(parseCompareTargets(["int4:g32", "q4_k_m", "fp16"], ["int8"]), [{ spec: "int4:g32", kv: undefined }, { preset: "Q4_K_M", kv: undefined }, { spec: "fp16", kv: undefined }, { kv: "int8:channel" }]);
  assert.throws(() => parseCompareTargets(["int4:g7x"]), /int4:g7x/);
  assert.throws(() => parseCompareTargets(["int4"], ["nope"]), /nope/);
  const s = new CompareSession(model, { bosId: 1, ctx: CTX, backend, calib: { text: "x", ref: { name: "c.txt", sha256: "0".repeat(64) } } });
  assert.throws(() => s.checkRecipes(parseCompareTargets(["int4:g32"])), /option --calib: no spec in --specs reads calibration data/);
});

test("without a text: rows are quantized and sized, not evaluated", async () => {
  const s = new CompareSession(model, { bosId: 1, ctx: CTX, backend });
  const m = await s.measure(parseCompareTargets(["nf4:g64"])[0]!);
  assert.ok(Number.isNaN(m.row.meanKld) && Number.isNaN(m.row.ppl));
  assert.equal(m.kld, undefined);
  assert.ok(m.row.sizeBytes > 0 && m.row.sizeBytes < s.floatSizeBytes());
});
