import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { openGguf, GgufValueType, metaString, type GgufArray } from "../../src/io/gguf.js";
import { GgmlType } from "../../src/ggml/types.js";
import { FileSource } from "../../src/io/node/file.js";
import { dataPath } from "../../src/io/node/data.js";
import { BufferSource } from "../../src/io/source.js";
import { readFileSync } from "node:fs";
import { bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../../src/core/f16.js";

describe("GGUF reader on llama.cpp-written files", () => {
  test("golden-f16.gguf: header, metadata, tensors x/q/dq", async () => {
    const f = await openGguf(new FileSource(dataPath("ggml", "golden-f16.gguf")));
    try {
      assert.equal(f.version, 3);
      assert.equal(metaString(f, "golden.type"), "f16");
      assert.equal(f.metadata.get("golden.type")!.type, GgufValueType.STRING);
      assert.deepEqual(f.tensors.map((t) => t.name), ["x", "q", "dq"]);
      const [x, q, dq] = f.tensors;
      assert.deepEqual(x!.shape, [8, 1024]);
      assert.equal(x!.type, GgmlType.F32);
      assert.equal(q!.type, GgmlType.F16);
      assert.equal(dq!.type, GgmlType.F32);
      assert.equal(x!.byteLength, 8 * 1024 * 4);
      assert.equal(q!.byteLength, 8 * 1024 * 2);
      // every tensor starts on the alignment, the data section ends at the end of the file
      for (const t of f.tensors) assert.equal(t.fileOffset % f.alignment, 0);
      assert.equal(dq!.fileOffset + dq!.byteLength, f.source.size);

      const xs = new Float32Array((await f.readTensorBytes(x!)).slice().buffer);
      const qs = new Uint16Array((await f.readTensorBytes("q")).slice().buffer);
      const dqBytes = new Uint8Array(dq!.byteLength);
      await f.readTensorInto(dq!, dqBytes);
      const dqs = new Float32Array(dqBytes.buffer);
      // the data README: row 3 columns 0..255 are zero, row 5 columns 256..511 are 0.5
      for (let c = 0; c < 256; c++) assert.equal(xs[3 * 1024 + c], 0);
      for (let c = 256; c < 512; c++) assert.equal(xs[5 * 1024 + c], 0.5);
      // llama.cpp's f32→f16 (round to nearest even) agrees with ours on every element
      let diffs = 0;
      for (let i = 0; i < xs.length; i++) if (f32ToF16Bits(xs[i]!) !== qs[i]) diffs++;
      assert.equal(diffs, 0);
      // Data defect in this one golden: llama.cpp wrote `dq` as all zeros for f16 (the bf16 file has it; see below).
      // Reading it back as zeros proves we read the right bytes of a file whose neighbours are non-zero.
      assert.ok(dqs.every((v) => v === 0));
      assert.ok(xs.some((v) => v !== 0) && qs.some((v) => v !== 0));
    } finally {
      await f.close();
    }
  });

  test("golden-bf16.gguf: q is x rounded to bf16, dq is q decoded", async () => {
    const f = await openGguf(new FileSource(dataPath("ggml", "golden-bf16.gguf")));
    try {
      assert.equal(metaString(f, "golden.type"), "bf16");
      assert.equal(f.tensor("q")!.type, GgmlType.BF16);
      const xs = new Float32Array((await f.readTensorBytes("x")).slice().buffer);
      const qs = new Uint16Array((await f.readTensorBytes("q")).slice().buffer);
      const dqs = new Float32Array((await f.readTensorBytes("dq")).slice().buffer);
      for (let i = 0; i < xs.length; i++) {
        assert.equal(f32ToBf16Bits(xs[i]!), qs[i], `element ${i}`);
        assert.equal(bf16BitsToF32(qs[i]!), dqs[i], `element ${i}`);
      }
    } finally {
      await f.close();
    }
  });

  test("stories260K-F32.gguf: llama metadata and 48 tensors", async () => {
    const f = await openGguf(new FileSource(dataPath("ggml", "stories260K", "stories260K-F32.gguf")));
    try {
      assert.equal(metaString(f, "general.architecture"), "llama");
      assert.equal(f.get("llama.context_length"), 128);
      assert.equal(f.get("llama.embedding_length"), 64);
      const tok = f.tensor("token_embd.weight")!;
      assert.deepEqual(tok.shape, [512, 64]);
      assert.ok(f.tensor("output.weight"));
    } finally {
      await f.close();
    }
  });
  test("numeric arrays parsed from a Node Buffer (whose .slice is a view) hold the file's values, not bytes from its start", async () => {
    const path = dataPath("ggml", "stories260K", "stories260K-F32.gguf");
    const a = await openGguf(new FileSource(path));
    const bytes = readFileSync(path); // a Buffer, possibly a view into a larger pool
    const b = await openGguf(new BufferSource("buf.gguf", bytes));
    try {
      for (const key of ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"]) {
        const x = (a.get(key) as unknown as GgufArray).items as ArrayLike<number>, y = (b.get(key) as unknown as GgufArray).items as ArrayLike<number>;
        assert.ok(x.length > 100);
        assert.deepEqual(Array.from(y), Array.from(x), key);
      }
    } finally {
      await a.close();
      await b.close();
    }
  });
});
