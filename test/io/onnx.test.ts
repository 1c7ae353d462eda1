/**
 * ONNX export (io/onnx.ts) checked against an independent runtime: onnxruntime-node 1.30.0 runs the graph
 * built from stories260K (float, and quantized by quantize() with int4/int8 specs that become
 * com.microsoft::MatMulNBits), and its logits must equal quantlab's own forward pass (reference backend)
 * on the same weights within 1e-4 — for a prefill, a second multi-token chunk and single-token decode
 * steps fed the previous run's present.* as past_key_values. MatMulNBits runs at accuracy_level 0 (float
 * activations); the session also pins ORT's QDQ fusion to level 0 so nothing quantizes activations.
 */
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { quantize } from "../../src/algos/quantize.js";
import { Llama } from "../../src/model/llama.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import type { Model } from "../../src/model/weights.js";
import { buildOnnxGraph, linearEncoding, type OnnxDtype } from "../../src/io/onnx.js";
import { decodeOnnxModel } from "../../src/io/onnx-proto.js";
import { f16BitsToF32 } from "../../src/core/f16.js";
import { QTensor } from "../../src/quant/tensor.js";
import { Tensor } from "../../src/core/tensor.js";
import { sha256Hex } from "../../src/algos/recipe.js";
import { readFileSync } from "node:fs";

const S260 = dataPath("stories260K", "stories260K.bin");
// BOS + "Once upon a time, there was a little girl named Lily." (reference.json's prompt ids)
const PROMPT = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];

const SESSION: ort.InferenceSession.SessionOptions = { extra: { session: { qdq_matmulnbits_accuracy_level: "0" } } };

function i64(v: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor("int64", BigInt64Array.from(v.map((x) => BigInt(x))), dims);
}

function toF32(t: ort.Tensor): Float32Array {
  if (t.type === "float32") return t.data as Float32Array;
  const d = t.data as Uint16Array | { length: number; [i: number]: number };
  const out = new Float32Array(d.length);
  // float16 tensors come as Uint16Array bits (or Float16Array where the engine has one)
  if (d instanceof Uint16Array) for (let i = 0; i < d.length; i++) out[i] = f16BitsToF32(d[i]!);
  else for (let i = 0; i < d.length; i++) out[i] = d[i]!;
  return out;
}

/**
 * Runs the ONNX model over `chunks` of tokens (the first with an empty cache, each next one with the
 * previous present.*) and quantlab's Llama over the same chunks; returns max |Δlogit| per chunk.
 */
async function compare(model: Model, bytes: Uint8Array, chunks: number[][], f16 = false): Promise<number[]> {
  const c = model.config;
  const s = await ort.InferenceSession.create(bytes, SESSION);
  const llama = new Llama(model, { backend: new RefBackend() });
  const floatT = f16 ? "float16" : "float32";
  let past: Record<string, ort.Tensor> = {};
  for (let l = 0; l < c.nLayers; l++) for (const kv of ["key", "value"]) past[`past_key_values.${l}.${kv}`] = new ort.Tensor(floatT, f16 ? new Uint16Array(0) : new Float32Array(0), [1, c.nKvHeads, 0, c.headDim]);
  let pos = 0;
  const worst: number[] = [];
  for (const ids of chunks) {
    const n = ids.length;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: i64(ids, [1, n]),
      attention_mask: i64(new Array(pos + n).fill(1), [1, pos + n]),
      position_ids: i64(ids.map((_, i) => pos + i), [1, n]),
      ...past,
    };
    const r = await s.run(feeds);
    assert.deepEqual(r.logits!.dims, [1, n, c.vocabSize]);
    assert.deepEqual(r["present.0.key"]!.dims, [1, c.nKvHeads, pos + n, c.headDim]);
    const got = toF32(r.logits!);
    const want = new Float32Array(n * c.vocabSize);
    llama.prefill(ids, pos, (lg, row) => want.set(lg, row * c.vocabSize));
    let m = 0;
    for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i]! - want[i]!));
    worst.push(m);
    past = {};
    for (let l = 0; l < c.nLayers; l++) for (const kv of ["key", "value"]) past[`past_key_values.${l}.${kv}`] = r[`present.${l}.${kv}`]!;
    pos += n;
  }
  await s.release();
  return worst;
}

// prefill of the whole prompt, then 3 positions at once with a cache, then single-token decode steps
const CHUNKS = [PROMPT, [338, 261, 376], [298], [315], [421]];

describe("ONNX export of stories260K vs quantlab's forward (onnxruntime-node)", () => {
  let base: Model;
  before(async () => { base = await loadModel(S260); });

  test("fp32: logits within 1e-4 at prefill, chunked prefill and decode steps", async (t) => {
    const g = buildOnnxGraph(base, { dtype: "fp32" });
    assert.equal(g.file, "model.onnx");
    assert.deepEqual(g.notes, []);
    assert.equal(g.matMulNBits.length, 0);
    const worst = await compare(base, g.model, CHUNKS);
    t.diagnostic(`fp32: max |Δlogit| per chunk ${worst.map((w) => w.toExponential(2)).join(" ")}`);
    for (const w of worst) assert.ok(w < 1e-4, `max |Δlogit| ${worst}`);
  });

  test("an untied classifier (llama.cpp's stories260K-F32.gguf carries output.weight): logits within 1e-4", async () => {
    const m = await loadModel(dataPath("ggml", "stories260K", "stories260K-F32.gguf"));
    assert.ok(m.weights.has("output.weight"));
    const g = buildOnnxGraph(m, { dtype: "fp32" });
    assert.ok(g.float.includes("output.weight"));
    const worst = await compare(m, g.model, CHUNKS.slice(0, 3));
    for (const w of worst) assert.ok(w < 1e-4, `untied: ${worst}`);
  });

  const quantCases: [string, OnnxDtype, 4 | 8][] = [
    ["int4:g32", "q4", 4],
    ["int4:g32:asym", "q4", 4],
    ["int4:g16:symfull", "q4", 4],
    ["int8:g32", "q8", 8],
    ["int8:channel:asym", "q8", 8], // K = 64 → block 64; ffn_down K = 172 → one padded block of 256
  ];
  for (const [spec, dtype, bits] of quantCases) {
    test(`${spec} as MatMulNBits (${dtype}): codes carried, logits equal quantlab's on the same quantized weights within 1e-4`, async (t) => {
      const r = await quantize(base, { target: { spec }, method: "rtn" });
      const g = buildOnnxGraph(r.model, { dtype });
      // every block linear is a MatMulNBits with the spec's bits; the (float) tied classifier stays MatMul
      assert.equal(g.matMulNBits.length, 5 * 7);
      assert.deepEqual(g.float, ["token_embd.weight"]);
      assert.deepEqual(g.notes, []);
      const proto = decodeOnnxModel(g.model) as { graph: { node: { opType: string; domain?: string; attribute: { name: string; i?: number }[] }[] } };
      const mm = proto.graph.node.filter((n) => n.opType === "MatMulNBits");
      assert.equal(mm.length, 35);
      for (const n of mm) {
        assert.equal(n.domain, "com.microsoft");
        const a = Object.fromEntries(n.attribute.map((x) => [x.name, x.i]));
        assert.equal(a.bits, bits);
        assert.equal(a.accuracy_level ?? 0, 0);
      }
      const worst = await compare(r.model, g.model, CHUNKS);
      t.diagnostic(`${spec} (${dtype}): max |Δlogit| per chunk ${worst.map((w) => w.toExponential(2)).join(" ")}`);
      for (const w of worst) assert.ok(w < 1e-4, `${spec}: max |Δlogit| ${worst}`);
    });
  }

  test("a GPTQ result keeps its codes: MatMulNBits bytes unpack to the QTensor's codes, scales and zero points; logits within 1e-4", async (t) => {
    const calibText = readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 40_000);
    const calibRef = { name: "calib.txt", sha256: await sha256Hex(new TextEncoder().encode(calibText)) };
    const r = await quantize(base, { target: { spec: "int4:g32:asym" }, method: "gptq", calibration: { source: { text: calibRef }, windows: { kind: "random", samples: 8, seq: 64 } } }, { calibText, backend: new RefBackend() });
    const g = buildOnnxGraph(r.model, { dtype: "q4" });
    assert.equal(g.matMulNBits.length, 35);
    const proto = decodeOnnxModel(g.model) as { graph: { initializer: { name: string; dims: number[]; rawData: number[] }[] } };
    const init = new Map(proto.graph.initializer.map((x) => [x.name, x]));
    for (const name of ["blk.0.attn_q.weight", "blk.4.ffn_down.weight"]) {
      const w = r.model.weights.get(name)!;
      assert.ok(w.kind === "quant" && w.q instanceof QTensor);
      const q = w.q;
      const [N, K] = q.shape as [number, number];
      const B = Uint8Array.from(init.get(`${name}.qweight`)!.rawData);
      const blocks = Math.ceil(K / 32);
      assert.deepEqual(init.get(`${name}.qweight`)!.dims, [N, blocks, 16]);
      const codes = q.unpackCodes();
      // ONNX Runtime contrib spec: element k of row n sits in byte (n·blocks + k/32)·16 + (k%32)/2, low nibble first
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
        const byte = B[(n * blocks + Math.floor(k / 32)) * 16 + ((k % 32) >> 1)]!;
        assert.equal((byte >> ((k & 1) * 4)) & 15, codes[n * K + k], `${name}[${n}, ${k}]`);
      }
      const sc = new Float32Array(Uint8Array.from(init.get(`${name}.scales`)!.rawData).buffer);
      assert.deepEqual(Array.from(sc), Array.from(q.scales!.values));
      const zp = Uint8Array.from(init.get(`${name}.qzeros`)!.rawData);
      const perRow = Math.ceil(blocks / 2);
      const z = q.zeros!.values;
      for (let n = 0; n < N; n++) for (let j = 0; j < blocks; j++) assert.equal((zp[n * perRow + (j >> 1)]! >> ((j & 1) * 4)) & 15, z[n * blocks + j]);
    }
    const worst = await compare(r.model, g.model, CHUNKS);
    t.diagnostic(`gptq int4:g32:asym (q4): max |Δlogit| per chunk ${worst.map((w) => w.toExponential(2)).join(" ")}`);
    for (const w of worst) assert.ok(w < 1e-4, `gptq: ${worst}`);
  });

  test("fp16 and q4f16 run with float16 inputs/outputs, close to quantlab's float/int4 logits", async (t) => {
    const g16 = buildOnnxGraph(base, { dtype: "fp16" });
    const w16 = await compare(base, g16.model, CHUNKS, true);
    const r = await quantize(base, { target: { spec: "int4:g32:scale=f16" }, method: "rtn" });
    const g4 = buildOnnxGraph(r.model, { dtype: "q4f16" });
    assert.deepEqual(g4.notes, []); // f16 scales: carried exactly
    const w4 = await compare(r.model, g4.model, CHUNKS, true);
    t.diagnostic(`fp16: max |Δlogit| ${w16.map((w) => w.toExponential(2)).join(" ")}; q4f16: ${w4.map((w) => w.toExponential(2)).join(" ")}`);
    // float16 activations: rounding at every op (logits are O(10)); a loose bound that still catches a wrong graph
    for (const w of [...w16, ...w4]) assert.ok(w < 0.15, `fp16 ${w16} / q4f16 ${w4}`);
  });

  test("formats with no ONNX equivalent are exported as exact dequantized float, with a note naming why", async () => {
    const r = await quantize(base, { target: { spec: "nf4:g32" }, method: "rtn" });
    const w = r.model.weights.get("blk.0.attn_q.weight")!;
    const e = linearEncoding(w, "blk.0.attn_q.weight");
    assert.ok(e.kind === "float" && /nf4:g32: nf4 levels are not integers and not an ONNX float8 type/.test(e.why), JSON.stringify(e));
    const g = buildOnnxGraph(r.model, { dtype: "fp32" });
    assert.equal(g.notes.length, 1);
    assert.match(g.notes[0]!, /^35 tensors written as exact dequantized float32, not as their codes — nf4:g32: nf4 levels are not integers/);
    const worst = await compare(r.model, g.model, CHUNKS.slice(0, 2));
    for (const x of worst) assert.ok(x < 1e-4, `nf4 dequantized: ${worst}`);
  });

  // codes carried by MatMulNBits (2/4/8-bit containers, power-of-two blocks) or by DequantizeLinear-21 (any
  // block, per tensor / per input channel, 4/8/16-bit integer containers, float8): the graph's node counts, the
  // element type of each DequantizeLinear's codes, and ORT's logits vs quantlab's on the same weights
  const codedCases: { spec: string; dtype: OnnxDtype; nbits?: number; dq?: number }[] = [
    { spec: "int2:g32:asym", dtype: "q2", nbits: 2 },
    { spec: "ternary:channel", dtype: "q2", nbits: 2 }, // levels −1, 0, 1 → codes 0…2, zero point 1
    { spec: "binary:channel", dtype: "q2", nbits: 2 }, // levels ±1 → codes 0, 2, zero point 1
    { spec: "int3:g32:asym", dtype: "q4", nbits: 4 },
    { spec: "int6:g16", dtype: "q8", nbits: 8 },
    { spec: "int4:g24:asym", dtype: "q4", dq: 21 }, // not a power of two: blocked DequantizeLinear of uint4
    { spec: "int4:ichannel", dtype: "q4", dq: 21 },
    { spec: "int8:tensor", dtype: "q8", dq: 2 },
    { spec: "int12:channel", dtype: "fp32", dq: 4 }, // uint16 codes
    { spec: "fp8_e4m3:channel", dtype: "q8", dq: 17 },
    { spec: "mxfp8_e5m2", dtype: "q8", dq: 19 },
    { spec: "fp8_e4m3fnuz:g32", dtype: "q8", dq: 18 },
  ];
  for (const { spec, dtype, nbits, dq } of codedCases) {
    test(`${spec} (${dtype}) as ${nbits ? `${nbits}-bit MatMulNBits` : `DequantizeLinear of element type ${dq}`}: logits equal quantlab's within 1e-4`, async (t) => {
      const r = await quantize(base, { target: { spec }, method: "rtn" });
      const g = buildOnnxGraph(r.model, { dtype });
      assert.deepEqual(g.notes, []);
      assert.deepEqual(g.float, ["token_embd.weight"]);
      const proto = decodeOnnxModel(g.model) as { graph: { node: { opType: string; input: string[]; attribute: { name: string; i?: number }[] }[]; initializer: { name: string; dataType: number }[] } };
      const types = new Map(proto.graph.initializer.map((x) => [x.name, x.dataType]));
      if (nbits) {
        assert.equal(g.matMulNBits.length, 35);
        for (const n of proto.graph.node.filter((n) => n.opType === "MatMulNBits")) assert.equal(n.attribute.find((a) => a.name === "bits")!.i, nbits);
      } else {
        assert.equal(g.dequantizeLinear.length, 35);
        const nodes = proto.graph.node.filter((n) => n.opType === "DequantizeLinear");
        assert.equal(nodes.length, 35);
        for (const n of nodes) assert.equal(types.get(n.input[0]!), dq);
      }
      const worst = await compare(r.model, g.model, CHUNKS);
      t.diagnostic(`${spec} (${dtype}): max |Δlogit| per chunk ${worst.map((w) => w.toExponential(2)).join(" ")}`);
      for (const w of worst) assert.ok(w < 1e-4, `${spec}: max |Δlogit| ${worst}`);
    });
  }

  test("llama.cpp's own Q4_0 / Q8_0 / Q6_K files (stories3M) as MatMulNBits (4-bit codes − 8, 8-bit q + 128, Q6_K's d·sc per 16 with q − 32), logits within 1e-4", async (t) => {
    for (const [type, dtype, bits] of [["Q4_0", "q8", 4], ["Q8_0", "q8", 8], ["Q6_K", "q8", 8]] as const) {
      const m = await loadModel(dataPath("ggml", "stories3M", `stories3M-${type}.gguf`));
      const g = buildOnnxGraph(m, { dtype });
      t.diagnostic(`${type}: ${g.matMulNBits.length} MatMulNBits, ${g.dequantizeLinear.length} DequantizeLinear, float ${g.float.join(", ")}; notes ${g.notes.join(" | ")}`);
      // every block linear and the untied classifier carry their codes, and the embedding's rows are gathered
      // from its codes (GatherBlockQuantized): nothing is written as float
      assert.equal(g.matMulNBits.length, m.config.nLayers * 7 + 1);
      assert.deepEqual(g.float, []);
      assert.deepEqual(g.gatherBlockQuantized, ["token_embd.weight"]);
      assert.deepEqual(g.notes, []);
      const proto = decodeOnnxModel(g.model) as { graph: { node: { opType: string; name: string; input: string[]; attribute: { name: string; i?: number }[] }[] } };
      const blk = proto.graph.node.filter((n) => n.opType === "MatMulNBits" && n.input[1]!.startsWith("blk."));
      for (const n of blk) assert.equal(n.attribute.find((a) => a.name === "bits")!.i, bits, n.input[1]);
      const worst = await compare(m, g.model, CHUNKS.slice(0, 3));
      t.diagnostic(`${type}: max |Δlogit| ${worst.map((w) => w.toExponential(2)).join(" ")}`);
      for (const w of worst) assert.ok(w < 1e-4, `${type}: ${worst}`);
    }
  });

  test("a quantized tied embedding: GatherBlockQuantized rows and the classifier's MatMulNBits share one copy of the codes", async (t) => {
    const only = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].map((l) => `blk.*.${l}.weight`).concat("token_embd.weight");
    for (const spec of ["int4:g32:asym", "int8:g64"]) {
      const r = await quantize(base, { target: { spec }, method: "rtn", tensors: { only } });
      assert.equal(r.model.weights.get("token_embd.weight")!.kind, "quant");
      const g = buildOnnxGraph(r.model, { dtype: spec.startsWith("int4") ? "q4" : "q8" });
      assert.deepEqual(g.gatherBlockQuantized, ["token_embd.weight"]);
      assert.deepEqual(g.float, []);
      assert.deepEqual(g.notes, []);
      const proto = decodeOnnxModel(g.model) as { graph: { node: { opType: string; input: string[] }[]; initializer: { name: string }[] } };
      assert.equal(proto.graph.initializer.filter((i) => i.name === "token_embd.weight.qweight").length, 1, "one copy of the codes");
      const users = proto.graph.node.filter((n) => n.input.includes("token_embd.weight.qweight")).map((n) => n.opType).sort();
      assert.deepEqual(users, ["GatherBlockQuantized", "MatMulNBits"]);
      const worst = await compare(r.model, g.model, CHUNKS);
      t.diagnostic(`${spec} with the embedding: max |Δlogit| ${worst.map((w) => w.toExponential(2)).join(" ")}`);
      for (const w of worst) assert.ok(w < 1e-4, `${spec}: ${worst}`);
    }
  });

  test("a mixed-precision result (int4:g32 and int8:g32 tensors side by side): each linear keeps its own codes", async (t) => {
    const r = await quantize(base, { target: { spec: "mixed:6bpw:mse:int4:g32+int8:g32" }, method: "mixed" });
    const specs = new Set([...r.model.weights.values()].filter((w) => w.kind === "quant").map((w) => (w as { q: { spec: string } }).q.spec));
    assert.deepEqual([...specs].sort(), ["int4:g32", "int8:g32"], "the budget picks both candidates");
    const g = buildOnnxGraph(r.model, { dtype: "q8" });
    assert.equal(g.matMulNBits.length, 35);
    assert.deepEqual(g.notes, []);
    const proto = decodeOnnxModel(g.model) as { graph: { node: { opType: string; attribute: { name: string; i?: number }[] }[] } };
    const bits = proto.graph.node.filter((n) => n.opType === "MatMulNBits").map((n) => n.attribute.find((a) => a.name === "bits")!.i);
    assert.deepEqual([...new Set(bits)].sort(), [4, 8]);
    const worst = await compare(r.model, g.model, CHUNKS);
    t.diagnostic(`mixed: max |Δlogit| ${worst.map((w) => w.toExponential(2)).join(" ")}`);
    for (const w of worst) assert.ok(w < 1e-4, `mixed: ${worst}`);
  });

  test("NaN weights are refused, naming the tensor and element, unless allowNonFinite", () => {
    const name = "blk.1.ffn_up.weight";
    const w = base.weights.get(name)!;
    assert.ok(w.kind === "dense");
    const data = new Float32Array(w.tensor.data as Float32Array);
    data[1234] = NaN;
    const bad: Model = { ...base, weights: new Map(base.weights).set(name, { kind: "dense", tensor: Tensor.fromF32(w.tensor.shape, data) }) };
    assert.throws(() => buildOnnxGraph(bad, { dtype: "fp32", name: "out/" }), /blk\.1\.ffn_up\.weight.*is NaN; refusing to write out\//);
    assert.ok(buildOnnxGraph(bad, { dtype: "fp32", allowNonFinite: true }).model.length > 0);
  });

  test("external data: initializers past the threshold go to <file>_data, and ORT loads them", async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const g = buildOnnxGraph(base, { dtype: "fp32", externalDataThreshold: 1000 });
    assert.ok(g.external);
    assert.equal(g.external.file, "model.onnx_data");
    assert.ok(g.model.length < 100_000, `${g.model.length} bytes left inline`);
    const dir = mkdtempSync(join(tmpdir(), "ql-onnx-ext-"));
    try {
      writeFileSync(join(dir, "model.onnx"), g.model);
      writeFileSync(join(dir, "model.onnx_data"), Buffer.concat(g.external.bytes));
      const s = await ort.InferenceSession.create(join(dir, "model.onnx"), SESSION);
      const c = base.config;
      const feeds: Record<string, ort.Tensor> = { input_ids: i64(PROMPT, [1, PROMPT.length]), attention_mask: i64(PROMPT.map(() => 1), [1, PROMPT.length]), position_ids: i64(PROMPT.map((_, i) => i), [1, PROMPT.length]) };
      for (let l = 0; l < c.nLayers; l++) for (const kv of ["key", "value"]) feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor("float32", new Float32Array(0), [1, c.nKvHeads, 0, c.headDim]);
      const out = await s.run(feeds);
      const inline = await ort.InferenceSession.create(buildOnnxGraph(base, { dtype: "fp32" }).model, SESSION);
      const ref = await inline.run(feeds);
      assert.deepEqual(Array.from(out.logits!.data as Float32Array), Array.from(ref.logits!.data as Float32Array));
      await s.release();
      await inline.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
