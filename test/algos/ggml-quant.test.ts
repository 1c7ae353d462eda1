/**
 * Whole-model GGUF quantization (algos/ggml-quant.ts): re-quantizing llama.cpp's stories260K / stories3M
 * F32 GGUFs with a preset gives, tensor for tensor, the bytes of the file llama-quantize wrote for that
 * preset; the report lists fall-backs, refusals and bits per weight.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { openGgufFile } from "../../src/io/node/gguf-file.js";
import { quantizeModelToGgml } from "../../src/algos/ggml-quant.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import type { Model } from "../../src/model/weights.js";
import { ggmlTypeName } from "../../src/ggml/types.js";
import { refGgmlEncoder, type GgmlEncoder } from "../../src/ggml/encoder.js";
import { isWeightLoaded, releaseWeight } from "../../src/core/weight.js";

async function sameBytesAsLlamaCpp(model: Model, dir: string, file: string, preset: string, deferEncoding = false): Promise<string[]> {
  const r = quantizeModelToGgml(model, { type: preset, deferEncoding });
  const f = await openGgufFile(dataPath("ggml", dir, file));
  const wrong: string[] = [];
  try {
    for (const t of f.tensors) {
      const w = r.model.weights.get(t.name)!;
      const ours = w.kind === "ggml" ? w.data : w.kind === "dense" ? new Uint8Array(w.tensor.data.buffer, w.tensor.data.byteOffset, w.tensor.data.byteLength) : undefined;
      const theirs = await f.readTensorBytes(t);
      if (ggmlTypeName(t.type) !== r.tensors.find((x) => x.name === t.name)!.type) wrong.push(`${t.name}: type`);
      else if (!ours || ours.length !== theirs.length || ours.some((b, i) => b !== theirs[i])) wrong.push(`${t.name}: bytes`);
    }
  } finally {
    await f.close();
  }
  return wrong;
}

describe("quantizeModelToGgml", () => {
  test("stories260K F32 GGUF → every llama-quantize preset in shared/data: llama.cpp's bytes, fall-backs included", async () => {
    const m = await loadModel(dataPath("ggml", "stories260K", "stories260K-F32.gguf"));
    for (const preset of ["F16", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "TQ2_0"]) {
      assert.deepEqual(await sameBytesAsLlamaCpp(m, "stories260K", `stories260K-${preset}.gguf`, preset), [], preset);
    }
  });

  test("stories3M F32 GGUF → Q8_0 and Q4_0 (output Q6_K): llama.cpp's bytes", async () => {
    const m = await loadModel(dataPath("ggml", "stories3M", "stories3M-F32.gguf"));
    for (const preset of ["Q8_0", "Q4_0"]) {
      assert.deepEqual(await sameBytesAsLlamaCpp(m, "stories3M", `stories3M-${preset}.gguf`, preset), [], preset);
    }
  });

  test("deferEncoding: each block tensor is encoded when its bytes are first read, to llama.cpp's bytes, into a pooled buffer that a release gives back (a later read encodes again); the report's sizes need no encoding", async () => {
    const m = await loadModel(dataPath("ggml", "stories3M", "stories3M-F32.gguf"));
    const eager = quantizeModelToGgml(m, { type: "Q4_0" });
    let encoded = 0;
    const outs: (ArrayBufferLike | undefined)[] = [];
    const counting: GgmlEncoder = { name: "counting", threads: 1, encodeRows: (job) => { encoded++; outs.push(job.out?.buffer); return refGgmlEncoder.encodeRows(job); } };
    const r = quantizeModelToGgml(m, { type: "Q4_0", deferEncoding: true, encoder: counting });
    assert.equal(encoded, 0, "nothing encoded before a read");
    assert.deepEqual(r.tensors, eager.tensors);
    assert.equal(r.bytes, eager.bytes);
    const q = r.model.weights.get("blk.0.attn_q.weight")!;
    assert.equal(isWeightLoaded(q), false);
    assert.ok(q.kind === "ggml" && q.data.length === eager.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.bytes);
    assert.equal(encoded, 1);
    const want = eager.model.weights.get("blk.0.attn_q.weight")!;
    assert.ok(want.kind === "ggml" && q.kind === "ggml");
    const first = q.data;
    assert.deepEqual(first, want.data);
    assert.equal(q.data, first, "read twice, encoded once");
    assert.equal(encoded, 1);
    // a release (the writer's, once the bytes are written) gives the buffer back: the next tensor's encode
    // gets it (dirty: the encoder overwrites every byte), and reading q again encodes it again, same bytes
    assert.equal(releaseWeight(q), true);
    const k = r.model.weights.get("blk.0.attn_output.weight")!;
    assert.ok(k.kind === "ggml");
    assert.deepEqual(k.data, (eager.model.weights.get("blk.0.attn_output.weight") as { data: Uint8Array }).data);
    assert.equal(outs[1], first.buffer, "the released buffer is reused");
    assert.deepEqual(q.data, want.data);
    assert.equal(encoded, 3);
    assert.deepEqual(await sameBytesAsLlamaCpp(m, "stories3M", "stories3M-Q4_0.gguf", "Q4_0", true), []);
  });

  test("report: fall-backs per tensor, llama.cpp refusals, bits per weight; the input model is untouched", async () => {
    const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const before = dequantizeWeight(m.weights.get("blk.0.ffn_down.weight")!).data.slice();
    const r = quantizeModelToGgml(m, { type: "Q4_0" });
    const down = r.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!;
    assert.equal(down.type, "F16");
    assert.equal(down.requested, "Q4_0");
    assert.equal(down.llamaRefuses, true);
    assert.match(down.fallback!, /row width 172 is not a multiple of Q4_0's block size 32: llama\.cpp refuses it; using F16/);
    // tied model: the embedding is the output, Q6_K → Q8_0 on 64-wide rows
    assert.equal(r.tensors.find((t) => t.name === "token_embd.weight")!.type, "Q8_0");
    assert.equal(r.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.type, "Q4_0");
    assert.equal(r.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!.type, "F32");
    const bytes = r.tensors.reduce((a, t) => a + t.bytes, 0);
    assert.equal(bytes, r.bytes);
    assert.ok(Math.abs(r.bitsPerWeight - (8 * r.bytes) / r.params) < 1e-12);
    assert.deepEqual(dequantizeWeight(m.weights.get("blk.0.ffn_down.weight")!).data, before);
    assert.throws(() => quantizeModelToGgml(m, { type: "Q4_K_X" }), /not a llama-quantize preset/);
  });
});
