/**
 * The layer-by-layer PTQ pipeline (algos/pipeline.ts, run through quantize(model, recipe)) on stories260K: the block runner against the Llama forward pass, fused
 * transforms that must leave the float model unchanged, quantized files that load back bit-exactly,
 * and the acceptance (GPTQ and AWQ under 0.8× RTN's mean KLD at int3:g32:asym) on a shortened
 * evaluation (the full 20,440-token figures are in docs/ptq-results.md).
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlockRunner, blockWeights, calibrationWindows, matmulXWt, quantize, rmsnorm, sha256Hex } from "../../src/algos/index.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveQuantModelFile } from "../../src/io/node/quant-file.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { TensorNames } from "../../src/model/config.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import type { Backend } from "../../src/kernels/types.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import type { LinearSite } from "../../src/model/transforms.js";

const model = await loadModel(dataPath("stories260K", "stories260K.bin"));
const tok = model.tokenizer!;
const calibText = readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 120_000);
const calibTokens = tok.encode(calibText, { bos: false });
const calibRef = { name: "calib.txt", sha256: await sha256Hex(new TextEncoder().encode(calibText)) };
/** a recipe's calibration: `samples` random windows of `seq` from the calibration text (seeded by the recipe's seed) */
const calibration = (samples: number, seq: number) => ({ source: { text: calibRef }, windows: { kind: "random", samples, seq } });
const run = (recipe: Record<string, unknown>, backend?: Backend) => quantize(model, recipe, { ...(recipe.calibration ? { calibText } : {}), ...(backend ? { backend } : {}) });
const evalTokens = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 12_000), { bos: false });
// the calibration passes run on the reference backend and on the WASM backend: same pipeline results
const wasm = createNodeWasmBackend({ threads: 1 });
after(() => wasm.dispose());
const BACKENDS: [string, Backend][] = [["ref", new RefBackend()], ["wasm", wasm]];
const prompt = tok.encode("Once upon a time, there was a little girl named Lily. She liked to play with her ball in the park.", { bos: true });

function logitsOf(m: Model, ids: number[]): Float32Array[] {
  const l = new Llama(m);
  return ids.map((t, p) => l.forward(t, p).slice());
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let mx = 0;
  a.forEach((row, i) => row.forEach((v, j) => { mx = Math.max(mx, Math.abs(v - b[i]![j]!)); }));
  return mx;
}

async function meanKld(base: Model, other: Model, maxTokens: number): Promise<number> {
  const r = await kld(new ModelLogits(new Llama(base, { contextLength: 512 })), new ModelLogits(new Llama(other, { contextLength: 512 })), evalTokens, { ctx: 512, maxTokens, bosId: tok.bosId });
  return r.meanKld;
}

describe("calibration windows", () => {
  test("seeded: same seed same windows, each BOS + a contiguous run of the stream; different seeds differ", () => {
    const a = calibrationWindows(calibTokens, { samples: 6, seq: 40, seed: 7, bosId: tok.bosId });
    const b = calibrationWindows(calibTokens, { samples: 6, seq: 40, seed: 7, bosId: tok.bosId });
    const c = calibrationWindows(calibTokens, { samples: 6, seq: 40, seed: 8, bosId: tok.bosId });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const stream = Array.from(calibTokens).join(",");
    for (const w of a) {
      assert.equal(w.length, 40);
      assert.equal(w[0], tok.bosId);
      assert.ok(stream.includes(Array.from(w.subarray(1)).join(",")), "window body is a contiguous run of the calibration stream");
    }
  });
  test("a text shorter than one window is an error naming --seq", () => {
    assert.throws(() => calibrationWindows([5, 6, 7], { samples: 1, seq: 16, seed: 1, bosId: 1 }), /fewer than one window.*--seq 16/);
  });
});

test("BlockRunner: embedding → every block → norm → head reproduces Llama's logits (≤ 1e-4)", () => {
  const seq = 24;
  const windows = calibrationWindows(calibTokens, { samples: 2, seq, seed: 3, bosId: tok.bosId });
  const c = model.config;
  const runner = new BlockRunner(model, seq);
  const emb = dequantizeWeight(model.weights.get(TensorNames.tokenEmbd)!).data;
  const x = runner.embed(emb, windows);
  for (let l = 0; l < c.nLayers; l++) runner.run(l, blockWeights(model, l), x);
  const T = 2 * seq;
  const xn = new Float32Array(T * c.dim);
  rmsnorm(xn, x, dequantizeWeight(model.weights.get(TensorNames.outputNorm)!).data, T, c.dim, c.normEps);
  const logits = new Float32Array(T * c.vocabSize);
  matmulXWt(xn, T, emb, c.vocabSize, c.dim, logits);
  let mx = 0;
  windows.forEach((w, wi) => {
    const ref = logitsOf(model, Array.from(w));
    for (let p = 0; p < seq; p++) for (let v = 0; v < c.vocabSize; v++) mx = Math.max(mx, Math.abs(ref[p]![v]! - logits[(wi * seq + p) * c.vocabSize + v]!));
  });
  assert.ok(mx <= 1e-4, `max |Δlogit| ${mx}`);
});

test("BlockRunner on the WASM backend matches the TS path within 1e-4 relative (site inputs and block outputs); its linears are released", () => {
  const seq = 32;
  const windows = calibrationWindows(calibTokens, { samples: 3, seq, seed: 5, bosId: tok.bosId });
  const ts = new BlockRunner(model, seq);
  const wa = new BlockRunner(model, seq, wasm);
  const emb = dequantizeWeight(model.weights.get(TensorNames.tokenEmbd)!).data;
  const xa = ts.embed(emb, windows), xb = wa.embed(emb, windows);
  const rel = (a: Float32Array, b: Float32Array): number => {
    let d = 0, m = 0;
    for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); m = Math.max(m, Math.abs(a[i]!)); }
    return d / m;
  };
  const listed = wasm.listing().length;
  let worst = 0;
  let top = -1;
  for (let l = 0; l < model.config.nLayers; l++) {
    const sites = new Map<LinearSite, Float32Array>();
    ts.run(l, blockWeights(model, l), xa, { hook: (s, x) => sites.set(s, x.slice()) });
    let n = 0;
    wa.run(l, blockWeights(model, l), xb, {
      hook: (s, x) => {
        n++;
        worst = Math.max(worst, rel(sites.get(s)!, x));
      },
    });
    assert.equal(n, 4, "every site's hook ran");
    worst = Math.max(worst, rel(xa, xb));
    assert.equal(wasm.listing().length, listed, `block ${l}: the linears were released`);
    if (l === 1) top = wasm.memoryStats().shards[0]!;
    if (l > 1) assert.equal(wasm.memoryStats().shards[0], top, `block ${l}: wasm memory grew`);
  }
  assert.ok(worst <= 1e-4 && worst > 0, `worst relative difference ${worst}`);
  // stopping after a site releases what the run prepared, too
  wa.run(0, blockWeights(model, 0), xb.slice(), { stopAfter: "attn_out_in" });
  assert.equal(wasm.listing().length, listed);
});

describe("fused transforms leave the float model unchanged", () => {
  const float = logitsOf(model, prompt);

  test("rotation (residual Hadamard fused + online FFN-down rotation), nothing quantized: max |Δlogit| ≤ 1e-4; through a file too", async () => {
    const r = await run({ target: { spec: "int4:g32" }, method: "rtn", rotate: { seed: 0 }, tensors: { keepFloat: ["*"] } });
    assert.ok(r.model.inputTransforms?.ffnDownRotation, "online rotation recorded");
    assert.equal(r.model.config.tiedEmbeddings, false, "output head untied");
    const d = maxAbsDiff(float, logitsOf(r.model, prompt));
    assert.ok(d <= 1e-4, `rotated float model: max |Δlogit| ${d}`);
    // without the online rotation the model is wrong: the transform matters
    const broken: Model = { ...r.model, inputTransforms: {} };
    assert.ok(maxAbsDiff(float, logitsOf(broken, prompt)) > 0.1);
    const dir = mkdtempSync(join(tmpdir(), "ptq-"));
    try {
      const f = join(dir, "rot.safetensors");
      await saveQuantModelFile(r.model, f);
      const back = await loadModel(f);
      const d2 = maxAbsDiff(float, logitsOf(back, prompt));
      assert.ok(d2 <= 1e-4, `rotated model loaded from file: max |Δlogit| ${d2}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // int16 per-channel weights are near-lossless, so what remains is the folding: a wrong fold moves logits by O(1)
  const folds = [["awq", "int16:channel"], ["awq+gptq", "int16:channel"], ["smoothquant", "int16:channel:a16"]] as const;
  for (const [bname, backend] of BACKENDS) for (const [method, spec] of folds) {
    test(`${method} scales folded into norms / previous linears: logits within 2e-3 of float at ${spec} (${bname} calibration)`, async () => {
      const r = await run({ target: { spec }, method, seed: 1, calibration: calibration(8, 64), options: method === "smoothquant" ? {} : { grid: 5 } }, backend);
      const d = maxAbsDiff(float, logitsOf(r.model, prompt));
      assert.ok(d <= 2e-3, `${method}: max |Δlogit| ${d}`);
      const changed = [0, 1, 2, 3, 4].some((l) => {
        const a = dequantizeWeight(r.model.weights.get(TensorNames.ffnNorm(l))!).data;
        const b = dequantizeWeight(model.weights.get(TensorNames.ffnNorm(l))!).data;
        return a.some((v, i) => Math.abs(v - b[i]!) > 1e-6 * Math.abs(b[i]!));
      });
      assert.ok(changed, `${method} folded its scales into the RMSNorm weights`);
    });
  }
});

for (const [bname, backend] of BACKENDS) test(`a quantized model (GPTQ + rotation + W8A8 static activations, ${bname} calibration) written and loaded back gives bit-identical logits`, async () => {
  const r = await run({ target: { spec: "int4:g32:asym:a8s" }, method: "gptq", rotate: { seed: 0 }, seed: 2, calibration: calibration(4, 64) }, backend);
  assert.equal(r.model.inputTransforms?.activations?.mode, "static");
  assert.equal(Object.keys(r.model.inputTransforms!.activations!.scales!).length, 4 * model.config.nLayers);
  const dir = mkdtempSync(join(tmpdir(), "ptq-"));
  try {
    const f = join(dir, "q.safetensors");
    await saveQuantModelFile(r.model, f);
    const back = await loadModel(f);
    assert.equal(back.weights.get(TensorNames.attnQ(0))!.kind, "quant");
    assert.deepEqual(logitsOf(back, prompt.slice(0, 12)), logitsOf(r.model, prompt.slice(0, 12)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("acceptance on stories260K (shortened: 32 calibration windows of 128, 2 eval windows of ctx 512; WASM calibration)", () => {
  const calib = calibration(32, 128);
  const spec = "int3:g32:asym";
  const kl: Record<string, number> = {};
  const score = async (name: string, o: Record<string, unknown>) => {
    const r = await run({ target: { spec }, seed: 1, ...o }, wasm);
    kl[name] = await meanKld(model, r.model, 1022);
    return kl[name]!;
  };

  test(`GPTQ and AWQ bring mean KLD under 0.8× RTN at ${spec}`, async () => {
    const rtn = await score("rtn", { method: "rtn" });
    const gptq = await score("gptq", { method: "gptq", calibration: calib });
    const awq = await score("awq", { method: "awq", calibration: calib });
    assert.ok(rtn > 0.05, `RTN int3 should hurt: KLD ${rtn}`);
    assert.ok(gptq < 0.8 * rtn, `GPTQ KLD ${gptq} vs RTN ${rtn} (×${(gptq / rtn).toFixed(3)})`);
    assert.ok(awq < 0.8 * rtn, `AWQ KLD ${awq} vs RTN ${rtn} (×${(awq / rtn).toFixed(3)})`);
  });

  test("W8A8 with static per-tensor activations: SmoothQuant lowers mean KLD vs plain W8A8", async () => {
    const plain = await score("w8a8", { method: "rtn", target: { spec: "int8:channel:a8s" }, calibration: calib });
    const smooth = await score("w8a8-sq", { method: "smoothquant", target: { spec: "int8:channel:a8s" }, calibration: calib });
    assert.ok(smooth < 0.8 * plain, `SmoothQuant KLD ${smooth} vs plain ${plain}`);
  });
});

test("errors: calibration methods without calibration data, smoothquant without an activation part", async () => {
  await assert.rejects(run({ target: { spec: "int4:g32" }, method: "gptq" }), /needs calibration data \(--calib/);
  await assert.rejects(run({ target: { spec: "int8:channel" }, method: "smoothquant", calibration: calibration(1, 8) }), /add an activation part/);
  await assert.rejects(run({ target: { spec: "int4:tensor" }, method: "gptq", calibration: calibration(1, 8) }), /channel or g<N>/);
});
