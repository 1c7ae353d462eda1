/**
 * `quantlab convert` / `quantlab info` through the real CLI: conversions, and every bad-input case giving
 * one clear line that names the file, a non-zero exit, and no output file (nor temp file) left behind.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../../src/io/node/data.js";
import { cli, rawSafetensors, rewriteGguf, spawnCli } from "../helpers-cli.js";
import { GgufValueType, GgufWriter, MemorySink, openGguf } from "../../../src/io/gguf.js";
import { BufferSource } from "../../../src/io/source.js";
import { GgmlType } from "../../../src/ggml/types.js";
import { writeSafetensors } from "../../../src/io/safetensors.js";
import { MemorySink as Sink } from "../../../src/io/gguf.js";

const S260 = dataPath("stories260K", "stories260K.bin");
const G260 = dataPath("ggml", "stories260K", "stories260K-F32.gguf");
const G3M = dataPath("ggml", "stories3M", "stories3M-F32.gguf");

describe("quantlab convert / info (CLI)", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-cli-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("llama2.c → GGUF → HF dir → safetensors, --json, info on each", async () => {
    let r = await cli(["convert", S260, "a.gguf", "--json"], dir);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.format, "gguf");
    assert.equal(j.tensors.length, 47);
    r = await cli(["convert", "a.gguf", "hf/", "--type", "F16", "--shard-size", "300KB"], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readdirSync(join(dir, "hf")).includes("model.safetensors.index.json"));
    r = await cli(["convert", "hf", "b.safetensors"], dir);
    assert.equal(r.code, 0, r.stderr);
    for (const m of ["a.gguf", "hf", "b.safetensors"]) {
      r = await cli(["info", m, "--json"], dir);
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout);
      assert.equal(info.config.dim, 64);
      assert.equal(info.tokenizer.vocabSize, 512);
      // embedding + final norm + 5 × (2 norms + q, o (64×64) + k, v (32×64) + 3 FFN (172×64))
      assert.equal(info.totals.params, 512 * 64 + 64 + 5 * (2 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64));
    }
    r = await cli(["info", "hf"], dir);
    assert.match(r.stdout, /blk\.4\.ffn_down\.weight\s+\[64, 172\]\s+f16\s+22016\s+16\.00/);
  });

  test("convert on a non-model GGUF keeps names and metadata; F32 dequantizes", async () => {
    const r = await cli(["convert", dataPath("ggml", "golden-q8_0.gguf"), "g.gguf", "--type", "F32"], dir);

    assert.equal(r.code, 0, r.stderr);
    const out = await openGguf(new BufferSource("g.gguf", readFileSync(join(dir, "g.gguf"))));
    const orig = await openGguf(new BufferSource("o", readFileSync(dataPath("ggml", "golden-q8_0.gguf"))));
    assert.deepEqual(out.tensors.map((t) => [t.name, t.type]), [["x", GgmlType.F32], ["q", GgmlType.F32], ["dq", GgmlType.F32]]);
    assert.deepEqual([...out.metadata], [...orig.metadata]);
    // q dequantized by us equals llama.cpp's dq bit for bit
    assert.deepEqual(await out.readTensorBytes("q"), await orig.readTensorBytes("dq"));
  });

  test("--type with --threads 1 and 3 writes the TypeScript reference encoder's bytes (Q8_0: WASM quantizer; Q4_K on 64-wide rows: its Q5_0 fallback, TS codec in the pool)", async () => {
    const { convertGguf } = await import("../../../src/io/gguf-convert.js");
    const src = new Uint8Array(readFileSync(G260));
    for (const [type, id] of [["Q8_0", GgmlType.Q8_0], ["Q4_K", GgmlType.Q4_K]] as const) {
      const sink = new MemorySink();
      await convertGguf(await openGguf(new BufferSource("in.gguf", src)), sink, { type: id }, "ref.gguf");
      const want = sink.bytes();
      for (const threads of ["1", "3"]) {
        const out = `t${threads}-${type}.gguf`;
        const r = await cli(["convert", G260, out, "--type", type, "--threads", threads], dir);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(Buffer.from(readFileSync(join(dir, out))).equals(Buffer.from(want)), `${type} --threads ${threads} differs from the reference encoder`);
      }
    }
  });

  test("stories3M to Q4_K / Q6_K: the WASM k-quant encoders at 1 and 2 threads (and the TS codecs on the pool) write the TypeScript reference encoder's file byte for byte", async () => {
    const { convertGguf } = await import("../../../src/io/gguf-convert.js");
    const src = new Uint8Array(readFileSync(G3M));
    for (const [type, id] of [["Q4_K", GgmlType.Q4_K], ["Q6_K", GgmlType.Q6_K]] as const) {
      const sink = new MemorySink();
      await convertGguf(await openGguf(new BufferSource("in.gguf", src)), sink, { type: id }, "ref.gguf");
      const want = Buffer.from(sink.bytes());
      const out = await openGguf(new BufferSource("ref.gguf", want));
      assert.ok(out.tensors.filter((t) => t.type === id).length >= 25, `${type}: the reference file holds ${type} tensors`);
      for (const [threads, mode] of [["1", ""], ["2", ""], ["2", "ts-pool"]] as const) {
        const name = `s3m-t${threads}${mode}-${type}.gguf`;
        const before = process.env.QUANTLAB_WASM_QUANTIZE;
        if (mode) process.env.QUANTLAB_WASM_QUANTIZE = mode;
        try {
          const r = await cli(["convert", G3M, name, "--type", type, "--threads", threads], dir);
          assert.equal(r.code, 0, r.stderr);
        } finally {
          if (before === undefined) delete process.env.QUANTLAB_WASM_QUANTIZE;
          else process.env.QUANTLAB_WASM_QUANTIZE = before;
        }
        assert.ok(Buffer.from(readFileSync(join(dir, name))).equals(want), `${type} --threads ${threads} ${mode} differs from the reference encoder`);
      }
    }
  });

  test("the real binary: exit code and one error line, no stack trace", async () => {
    const r = await spawnCli(["convert", "nope.bin", "o.gguf"], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "quantlab: error: nope.bin: no such file or directory\n");
    assert.ok(!existsSync(join(dir, "o.gguf")));
  });

  /** [label, make args, expected message, outputs to try (GGUF → GGUF is a generic re-encode that accepts any GGUF)] */
  const ALL = ["out.gguf", "out.safetensors", "outdir/"];
  const NOT_GGUF = ["out.safetensors", "outdir/"];
  const cases: [string, () => Promise<string[]> | string[], RegExp, string[]][] = [
    ["missing file", () => ["nope.bin"], /nope\.bin: no such file/, ALL],
    ["unknown magic", () => { writeFileSync(join(dir, "junk.dat"), "GGUXjunkjunkjunk"); return ["junk.dat"]; }, /junk\.dat: unknown model format/, ALL],
    ["truncated GGUF header", () => { writeFileSync(join(dir, "th.gguf"), readFileSync(G260).subarray(0, 300)); return ["th.gguf"]; }, /th\.gguf: truncated GGUF header/, ALL],
    ["truncated tensor data", () => { const b = readFileSync(G260); writeFileSync(join(dir, "td.gguf"), b.subarray(0, b.length - 100)); return ["td.gguf"]; }, /td\.gguf: truncated tensor data: tensor "blk\.4\.ffn_up\.weight"/, ALL],
    ["tensor bytes disagree with shape (safetensors)", async () => {
      const s = new Sink();
      await writeSafetensors(s, [{ name: "model.embed_tokens.weight", dtype: "f32", shape: [4, 4], bytes: () => new Uint8Array(64) }]);
      const b = s.bytes();
      const txt = new TextDecoder().decode(b).replace('"shape":[4,4]', '"shape":[4,5]');
      writeFileSync(join(dir, "bad.safetensors"), new TextEncoder().encode(txt));
      return ["bad.safetensors"];
    }, /bad\.safetensors: tensor "model\.embed_tokens\.weight" \(F32 \[4, 5\]\) has 64 bytes of data but its shape needs 80/, ALL],
    ["unsupported architecture (GGUF)", async () => {
      writeFileSync(join(dir, "arch.gguf"), await rewriteGguf(readFileSync(G260), (md) => md.set("general.architecture", { type: GgufValueType.STRING, value: "mamba" })));
      return ["arch.gguf"];
    }, /arch\.gguf: architecture "mamba" is not supported/, NOT_GGUF],
    ["unsupported architecture (HF falcon)", () => {
      mkdirSync(join(dir, "falcon"), { recursive: true });
      writeFileSync(join(dir, "falcon", "config.json"), JSON.stringify({ model_type: "falcon", hidden_size: 8 }));
      return ["falcon"];
    }, /falcon\/config\.json: architecture "falcon" is not supported \(model_type: llama, mistral, qwen2, qwen3, granite/, ALL],
    ["unsupported dtype", async () => {
      mkdirSync(join(dir, "i64"), { recursive: true });
      // one block tensor, so num_hidden_layers = 1 is backed and the dtype is what fails
      writeFileSync(join(dir, "i64", "model.safetensors"), rawSafetensors({ "model.embed_tokens.weight": { dtype: "I64", shape: [512, 32], data_offsets: [0, 512 * 32 * 8] }, "model.layers.0.input_layernorm.weight": { dtype: "F32", shape: [32], data_offsets: [512 * 32 * 8, 512 * 32 * 8 + 128] } }, 512 * 32 * 8 + 128));
      writeFileSync(join(dir, "i64", "config.json"), JSON.stringify({ model_type: "llama", hidden_size: 32, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 512 }));
      return ["i64"];
    }, /i64\/model\.safetensors: tensor "model\.embed_tokens\.weight" has dtype I64, which quantlab does not load/, ALL],
    ["tokenizer size ≠ vocab (GGUF)", async () => {
      writeFileSync(join(dir, "tok.gguf"), await rewriteGguf(readFileSync(G260), (md) => {
        for (const [k, t] of [["tokenizer.ggml.tokens", GgufValueType.STRING], ["tokenizer.ggml.scores", GgufValueType.FLOAT32], ["tokenizer.ggml.token_type", GgufValueType.INT32]] as const) {
          const v = md.get(k)!;
          if (v.type !== GgufValueType.ARRAY) throw new Error("not an array");
          md.set(k, { type: GgufValueType.ARRAY, value: { itemType: t, items: v.value.items.slice(0, 511) as never } });
        }
      }));
      return ["tok.gguf"];
    }, /tok\.gguf: the tokenizer has 511 tokens but the model's vocabulary is 512/, NOT_GGUF],
    ["a tensor type with no decoder fails mid-write", async () => {
      const s = new MemorySink();
      const w = new GgufWriter(s);
      w.addTensor({ name: "a", shape: [2, 256], type: GgmlType.F32 });
      w.addTensor({ name: "b", shape: [2, 256], type: GgmlType.IQ2_XXS });
      await w.writeHeader();
      await w.writeTensorData("a", new Uint8Array(2048));
      await w.writeTensorData("b", new Uint8Array(2 * 66));
      writeFileSync(join(dir, "iq2.gguf"), s.bytes());
      return ["iq2.gguf", "--type", "F16"];
    }, /iq2\.gguf: b: .*IQ2_XXS/, ["out.gguf"]],
  ];

  for (const [label, make, re, outs] of cases) {
    test(`bad input: ${label}`, async () => {
      const args = await make();
      for (const out of outs) {
        const r = await cli(["convert", ...args, out], dir);
        assert.notEqual(r.code, 0);
        const lines = r.stderr.trim().split("\n");
        assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
        assert.match(lines[0]!, /^quantlab: error: /);
        assert.match(lines[0]!, re);
        assert.ok(!existsSync(join(dir, out)), `${out} must not exist`);
        assert.deepEqual(readdirSync(dir).filter((f) => f.includes(".tmp-")), [], "no temp files left");
      }
    });
  }

  test("a failed conversion leaves an existing output untouched", async () => {
    copyFileSync(G260, join(dir, "keep.gguf"));
    const before = readFileSync(join(dir, "keep.gguf"));
    writeFileSync(join(dir, "t2.gguf"), readFileSync(G260).subarray(0, 1000));
    const r = await cli(["convert", "t2.gguf", "keep.gguf"], dir);
    assert.notEqual(r.code, 0);
    assert.deepEqual(readFileSync(join(dir, "keep.gguf")), before);
  });
});
