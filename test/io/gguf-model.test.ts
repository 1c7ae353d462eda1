import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync, mkdtempSync, rmSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../src/io/node/data.js";
import { loadGgufFile, saveGgufFile, openGgufFile } from "../../src/io/node/gguf-file.js";
import { loadModel } from "../../src/io/node/load.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { GgmlType } from "../../src/ggml/types.js";
import { f16BitsToF32, f32ToF16Bits } from "../../src/core/f16.js";
import { metaString, GgufValueType } from "../../src/io/gguf.js";
import { TensorNames } from "../../src/model/config.js";

interface Ref { logits: { prompt: string; token_ids: number[]; values: number[][] } }
const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8")) as Ref;

function logitsOf(m: Model, ids: number[]): Float32Array[] {
  const llama = new Llama(m);
  return ids.map((t, pos) => new Float32Array(llama.forward(t, pos)));
}
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe("GGUF models", () => {
  test("llama.cpp's stories260K-F32.gguf loads, tokenizes like llama2.c and reproduces run.c's logits", async () => {
    const m = await loadGgufFile(dataPath("ggml", "stories260K", "stories260K-F32.gguf"));
    const c = m.config;
    assert.deepEqual([c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, c.seqLen], [64, 172, 5, 8, 4, 8, 512, 128]);
    assert.equal(c.tiedEmbeddings, false); // llama.cpp's converter writes output.weight
    assert.equal(c.ropeTheta, 10000);
    assert.equal(c.normEps, Math.fround(1e-5));
    const ids = m.tokenizer!.encode(ref.logits.prompt, { bos: true });
    assert.deepEqual(ids, ref.logits.token_ids);
    assert.equal(m.tokenizer!.decode(ids), ref.logits.prompt);
    const logits = logitsOf(m, ids);
    let worst = 0;
    for (let i = 0; i < ids.length; i++) worst = Math.max(worst, maxAbs(logits[i]!, ref.logits.values[i]!));
    assert.ok(worst <= 1e-4, `max abs diff ${worst}`);
  });

  test("llama2.c → GGUF F32 → load: identical tensors, vocabulary and logits; llama.cpp's own conversion agrees", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-gguf-"));
    try {
      const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
      const out = join(dir, "s.gguf");
      const rep = await saveGgufFile(src, out);
      assert.equal(rep.tensors.length, 2 + 5 * 9); // tied: no output.weight
      const back = await loadGgufFile(out);
      assert.deepEqual(back.config, { ...src.config, normEps: Math.fround(src.config.normEps), ropeTheta: Math.fround(src.config.ropeTheta) });
      for (const [name, w] of src.weights) {
        const b = back.weights.get(name)!;
        assert.equal(b.kind, "dense");
        assert.deepEqual((b as { tensor: { data: unknown } }).tensor.data, (w as { tensor: { data: unknown } }).tensor.data, name);
      }
      // the vocabulary we write is llama.cpp's own (tokens, scores, types), pieces spelled with ▁ and <0xNN>
      const ours = await openGgufFile(out);
      const theirs = await openGgufFile(dataPath("ggml", "stories260K", "stories260K-F32.gguf"));
      try {
        for (const k of ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.model"]) {
          assert.deepEqual(ours.metadata.get(k), theirs.metadata.get(k), k);
        }
        assert.equal(metaString(ours, "general.architecture"), "llama");
        assert.equal(ours.metadata.get("llama.context_length")!.type, GgufValueType.UINT32);
      } finally {
        await ours.close();
        await theirs.close();
      }
      const ids = ref.logits.token_ids;
      assert.deepEqual(back.tokenizer!.encode(ref.logits.prompt, { bos: true }), ids);
      const a = logitsOf(src, ids);
      const b = logitsOf(back, ids);
      for (let i = 0; i < ids.length; i++) assert.deepEqual(b[i], a[i], `position ${i}`);
      assert.deepEqual(readdirSync(dir), ["s.gguf"]); // no temp files left
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("GGUF F16: 2-D tensors F16, norms F32, logits within f16 rounding", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-gguf-"));
    try {
      const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
      const out = join(dir, "s16.gguf");
      await saveGgufFile(src, out, { type: GgmlType.F16 });
      const f = await openGgufFile(out);
      try {
        assert.equal(f.tensor(TensorNames.attnQ(0))!.type, GgmlType.F16);
        assert.equal(f.tensor(TensorNames.attnNorm(0))!.type, GgmlType.F32);
        assert.equal(f.get("general.file_type"), 1); // LLAMA_FTYPE_MOSTLY_F16
      } finally {
        await f.close();
      }
      const back = await loadGgufFile(out);
      // every weight is exactly the f16 rounding of the original
      for (const [name, w] of src.weights) {
        const orig = (w as { tensor: { toF32(): Float32Array } }).tensor.toF32();
        const b = back.weights.get(name)!;
        const got = (b as { tensor: { toF32(): Float32Array } }).tensor.toF32();
        for (let i = 0; i < orig.length; i++) {
          const want = name.endsWith("norm.weight") ? orig[i]! : f16BitsToF32(f32ToF16Bits(orig[i]!));
          if (got[i] !== want) assert.fail(`${name}[${i}]: ${got[i]} != ${want}`);
        }
      }
      const ids = ref.logits.token_ids;
      const a = logitsOf(src, ids);
      const b = logitsOf(back, ids);
      let worst = 0;
      for (let i = 0; i < ids.length; i++) worst = Math.max(worst, maxAbs(a[i]!, b[i]!));
      // f16 keeps 11 significant bits: relative weight error ≤ 2^-11; logits here span ±15
      assert.ok(worst < 0.05 && worst > 0, `F16 logits max abs diff ${worst}`);
      console.log(`# GGUF F16 vs F32 logits: max abs diff ${worst.toExponential(3)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
