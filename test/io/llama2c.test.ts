import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../src/io/node/data.js";
import { BufferSource } from "../../src/io/source.js";
import { parseLlama2cHeader, readLlama2cCheckpoint, readLlama2cTokenizer } from "../../src/io/llama2c.js";
import { loadLlama2cFile } from "../../src/io/node/llama2c-file.js";
import { TensorNames, expectedShapes } from "../../src/model/config.js";
import { ropeInvFreq } from "../../src/model/llama.js";
import { config, f32, randomModel, toLlama2c, tokBin } from "../model/synthetic.js";
import type { Weight } from "../../src/core/weight.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8"));
const bytes260K = new Uint8Array(readFileSync(dataPath("stories260K", "stories260K.bin")));
const data = (w: Weight) => {
  assert.equal(w.kind, "dense");
  return (w as Extract<Weight, { kind: "dense" }>).tensor.data as Float32Array;
};

describe("llama2.c checkpoints", () => {
  test("stories260K: header as reference.json, tied, freq_cis present, each tensor read into its own buffer", async () => {
    const ck = await readLlama2cCheckpoint(new BufferSource("stories260K.bin", bytes260K));
    const h = ref.model.header;
    assert.deepEqual(
      [ck.config.dim, ck.config.hiddenDim, ck.config.nLayers, ck.config.nHeads, ck.config.nKvHeads, ck.config.vocabSize, ck.config.seqLen],
      [h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len],
    );
    assert.equal(ck.config.headDim, ref.model.head_size);
    assert.equal(ck.config.tiedEmbeddings, true);
    // shared/data's README says "no freq_cis tables", but the file holds 4096 floats more than the
    // weights: the two (512, 4) cos/sin tables, checked against our RoPE angles below
    assert.equal(ck.layout.hasFreqCis, true);
    assert.equal(ck.weights.has(TensorNames.output), false);
    // read lazily, tensor by tensor: each buffer holds its own tensor and nothing more (no whole-file copy)
    const buffers = new Set([...ck.weights.values()].map((w) => data(w).buffer));
    assert.equal(buffers.size, ck.weights.size, "one buffer per tensor");
    for (const [name, w] of ck.weights) assert.equal(data(w).buffer.byteLength, data(w).length * 4, name);
    let floats = 0;
    for (const [name, shape] of expectedShapes(ck.config)) {
      assert.deepEqual((ck.weights.get(name)! as Extract<Weight, { kind: "dense" }>).tensor.shape, shape, name);
      floats += shape.reduce((a, b) => a * b, 1);
    }
    assert.equal(floats + 2 * 512 * 4, 264128); // shared/data README: 264,128 float32 values after the header
    // spot values straight from the file: first embedding float, and the last float (rms_final[63])
    const dv = new DataView(bytes260K.buffer, bytes260K.byteOffset);
    assert.equal(data(ck.weights.get(TensorNames.tokenEmbd)!)[0], dv.getFloat32(28, true));
    const fc = ck.layout.offsets.freq_cis;
    assert.equal(data(ck.weights.get(TensorNames.outputNorm)!)[63], dv.getFloat32(fc - 4, true));
    const inv = ropeInvFreq(ck.config);
    let worst = 0;
    for (let pos = 0; pos < 512; pos++) {
      for (let j = 0; j < 4; j++) {
        worst = Math.max(worst, Math.abs(dv.getFloat32(fc + 4 * (pos * 4 + j), true) - Math.cos(pos * inv[j]!)));
        worst = Math.max(worst, Math.abs(dv.getFloat32(fc + 4 * (2048 + pos * 4 + j), true) - Math.sin(pos * inv[j]!)));
      }
    }
    assert.ok(worst < 1e-4, `freq_cis vs our RoPE angles: ${worst}`);
    // w2 of layer 1 is ffn_down (dim, hidden)
    const w2Off = 28 + 4 * (512 * 64 + 5 * 64 + 5 * 64 * 64 * 2 + 5 * 32 * 64 * 2 + 5 * 64 + 5 * 172 * 64 + 64 * 172);
    assert.equal(data(ck.weights.get(TensorNames.ffnDown(1))!)[0], dv.getFloat32(w2Off, true));
  });

  test("stories3M: legacy exporter file with freq_cis tables, decided from the size", async () => {
    const m = await loadLlama2cFile(dataPath("stories3M", "stories3M.bin"), { tokenizer: dataPath("stories260K", "tok512.bin") });
    assert.equal(m.source.metadata!["llama2c.freq_cis"], true);
    assert.deepEqual([m.config.dim, m.config.nLayers, m.config.nHeads, m.config.nKvHeads, m.config.hiddenDim, m.config.seqLen], [256, 4, 8, 4, 768, 256]);
    assert.equal(m.tokenizer!.vocabSize, 512);
  });

  for (const freqCis of [false, true]) {
    test(`synthetic untied GQA model round-trips bit for bit (freq_cis ${freqCis})`, async () => {
      const src = randomModel(config({ tiedEmbeddings: false, nHeads: 4, nKvHeads: 1 }), 5);
      const ck = await readLlama2cCheckpoint(new BufferSource("syn.bin", toLlama2c(src, { freqCis })));
      assert.equal(ck.config.tiedEmbeddings, false);
      assert.equal(ck.layout.hasFreqCis, freqCis);
      assert.deepEqual([...ck.weights.keys()].sort(), [...src.weights.keys()].sort());
      for (const name of src.weights.keys()) assert.deepEqual(data(ck.weights.get(name)!), f32(src, name), name);
    });
  }

  test("stories260K-q8.bin (ak42 version 2, Q8_0 group 8): each weight within half a step of the f32 file", async () => {
    const q8 = await readLlama2cCheckpoint(new BufferSource("stories260K-q8.bin", new Uint8Array(readFileSync(dataPath("stories260K", "stories260K-q8.bin")))));
    const f = await readLlama2cCheckpoint(new BufferSource("stories260K.bin", bytes260K));
    assert.equal(q8.header.version, 2);
    assert.equal(q8.header.groupSize, 8);
    assert.equal(q8.config.tiedEmbeddings, true);
    for (const [name, w] of f.weights) {
      const a = data(w);
      const b = data(q8.weights.get(name)!);
      assert.equal(b.length, a.length, name);
      if (name.endsWith("norm.weight")) {
        assert.deepEqual(b, a, name); // kept in f32 by the exporter
        continue;
      }
      let worst = 0;
      for (let g = 0; g < a.length; g += 8) {
        let amax = 0;
        for (let i = g; i < g + 8; i++) amax = Math.max(amax, Math.abs(a[i]!));
        const half = amax / 127 / 2;
        for (let i = g; i < g + 8; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (half + 1e-12));
      }
      assert.ok(worst <= 1.0001, `${name}: error ${worst} half-steps`);
    }
  });
});

describe("llama2.c bad input", () => {
  const good = toLlama2c(randomModel(config(), 2));
  const withHeader = (ints: number[]) => {
    const b = good.slice();
    const dv = new DataView(b.buffer);
    ints.forEach((v, i) => dv.setInt32(4 * i, v, true));
    return b;
  };
  const read = (b: Uint8Array) => readLlama2cCheckpoint(new BufferSource("bad.bin", b));

  test("truncated tensor data names the file and the sizes", async () => {
    await assert.rejects(read(bytes260K.subarray(0, 1_000_000)), {
      code: "E_FORMAT",
      message: "bad.bin: truncated: the llama2.c header implies at least 1040156 bytes but the file has 1000000",
    });
  });

  test("truncated header", async () => {
    await assert.rejects(read(good.subarray(0, 20)), /bad\.bin: truncated: 20 bytes, a llama2\.c header needs 28/);
  });

  test("impossible header values", async () => {
    const c = config();
    const base = [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.seqLen];
    const cases: [number, number, RegExp][] = [
      [0, 0, /bad\.bin: bad llama2\.c header: dim = 0 \(expected 1\.\.131072; model width\)/], // core/limits.ts MAX_DIM
      [3, 0, /n_heads = 0/],
      [4, 8, /n_kv_heads = 8 \(expected 1\.\.4/],
      [3, 3, /dim 32 is not a multiple of n_heads 3/],
      [4, 3, /n_heads 4 is not a multiple of n_kv_heads 3/],
      [5, -(1 << 30), /\|vocab_size\| = 1073741824/],
      [1, -5, /hidden_dim = -5/],
    ];
    for (const [i, v, re] of cases) {
      const ints = base.slice();
      ints[i] = v;
      await assert.rejects(read(withHeader(ints)), re, `header[${i}] = ${v}`);
    }
    assert.throws(() => parseLlama2cHeader(withHeader([...base.slice(0, 6), 0]), "x.bin"), /seq_len = 0/);
  });

  test("a size that matches no layout (trailing bytes, or a random file)", async () => {
    const extra = new Uint8Array(good.length + 12);
    extra.set(good);
    await assert.rejects(read(extra), /bad\.bin: size \d+ bytes does not match the llama2\.c header \(expected \d+ or \d+\)/);
  });

  test("unsupported ak42 version", async () => {
    const b = new Uint8Array(256);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, 0x616b3432, true);
    dv.setInt32(4, 3, true);
    await assert.rejects(read(b), { code: "E_UNSUPPORTED", message: /bad\.bin: llama2\.c "ak42" export version 3 is not supported/ });
  });

  test("tokenizer: vocab mismatch names both files; truncated entries", async () => {
    const tok = new BufferSource("tok512.bin", new Uint8Array(readFileSync(dataPath("stories260K", "tok512.bin"))));
    await assert.rejects(readLlama2cTokenizer(tok, { size: 40, model: "model.bin" }), {
      message: "tokenizer tok512.bin has 512 tokens but model model.bin has vocab_size 40",
    });
    const t = tokBin(["<unk>", "\n<s>\n", "\n</s>\n", "a", "bb"]);
    await assert.rejects(readLlama2cTokenizer(new BufferSource("t.bin", t.subarray(0, t.length - 1))), /t\.bin: truncated: token 4 needs 2 bytes/);
    await assert.rejects(readLlama2cTokenizer(new BufferSource("t.bin", t.subarray(0, t.length - 5))), /t\.bin: truncated: token 4 header/);
    const bad = t.slice();
    new DataView(bad.buffer).setInt32(4 + 8 + 5 + 4, -3, true); // token 1 length
    await assert.rejects(readLlama2cTokenizer(new BufferSource("t.bin", bad)), /t\.bin: bad llama2\.c tokenizer: token 1 has length -3/);
    const ok = await readLlama2cTokenizer(new BufferSource("t.bin", t), { size: 5, model: "m" });
    assert.equal(ok.vocabSize, 5);
  });

  test("tokenizer found beside the model: tok<vocab>.bin, then tokenizer.bin; a mismatch is an error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-l2c-"));
    const m = randomModel(config({ vocabSize: 6 }), 3);
    writeFileSync(join(dir, "m.bin"), toLlama2c(m));
    const none = await loadLlama2cFile(join(dir, "m.bin"), {});
    assert.equal(none.tokenizer, undefined);
    writeFileSync(join(dir, "tokenizer.bin"), tokBin(["<unk>", "\n<s>\n", "\n</s>\n", "a", "b", "c", "d"]));
    await assert.rejects(loadLlama2cFile(join(dir, "m.bin"), {}), new RegExp(`tokenizer ${dir}/tokenizer\\.bin has 7 tokens but model ${dir}/m\\.bin has vocab_size 6`));
    writeFileSync(join(dir, "tok6.bin"), tokBin(["<unk>", "\n<s>\n", "\n</s>\n", "a", "b", " "]));
    const found = await loadLlama2cFile(join(dir, "m.bin"), {});
    assert.equal(found.tokenizer!.vocabSize, 6);
    assert.equal(found.source.metadata!["llama2c.tokenizer"], join(dir, "tok6.bin"));
  });
});
