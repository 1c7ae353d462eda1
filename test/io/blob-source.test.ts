// What the browser lab is handed — File/Blob objects — through the same readers as files on disk
// (io/blob-source.ts, io/open-model.ts): with synchronous reads (a Web Worker's FileReaderSync, faked here
// over a Blob that records its slices) weights load lazily and only headers and the touched tensors are
// read, never the whole file; without them tensors are read at load; both give the file's logits. Picked
// files are told apart as llama2.c does; a Hugging Face folder loads through BlobDir; a quantize result
// written into a BlobSink has the bytes the CLI's file has.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { isWeightLoaded } from "../../src/core/weight.js";
import { quantize } from "../../src/algos/quantize.js";
import { BlobDir, BlobSink, BlobSource } from "../../src/io/blob-source.js";
import { dataPath } from "../../src/io/node/data.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveQuantizeResult } from "../../src/io/node/quantize-output.js";
import { loadModelSource, loadPickedModel, sniffFormat, type NamedSource } from "../../src/io/open-model.js";
import { writeQuantizeResult } from "../../src/io/quantize-output.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";

const MODEL = dataPath("stories260K", "stories260K.bin");
const TOK = dataPath("stories260K", "tok512.bin");
const DIR = mkdtempSync(join(tmpdir(), "quantlab-blob-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

/** A Blob that records the byte ranges sliced from it (offsets in the original file). */
class RecordingBlob {
  constructor(readonly bytes: Uint8Array, readonly log: [number, number][], private readonly base = 0) {}
  get size(): number { return this.bytes.length; }
  slice(a: number, b: number): RecordingBlob {
    this.log.push([this.base + a, b - a]);
    return new RecordingBlob(this.bytes.subarray(a, b), this.log, this.base + a);
  }
  async arrayBuffer(): Promise<ArrayBuffer> { return this.bytes.slice().buffer; }
  async text(): Promise<string> { return new TextDecoder().decode(this.bytes); }
}

/** FileReaderSync as a Web Worker has it, over RecordingBlobs. */
class FakeFileReaderSync {
  static reads = 0;
  readAsArrayBuffer(b: RecordingBlob): ArrayBuffer {
    FakeFileReaderSync.reads++;
    return b.bytes.slice().buffer;
  }
}

const g = globalThis as { FileReaderSync?: unknown };
function withSyncReads<T>(f: () => Promise<T>): Promise<T> {
  g.FileReaderSync = FakeFileReaderSync;
  return f().finally(() => { delete g.FileReaderSync; });
}

const picked = (path: string, log: [number, number][] = []): NamedSource => {
  const name = path.split("/").pop()!;
  return { name, source: new BlobSource(name, new RecordingBlob(new Uint8Array(readFileSync(path)), log) as unknown as Blob) };
};

/** The first position's logits (BOS), through the reference kernels. */
function firstLogits(m: Model): Float32Array {
  const llama = new Llama(m, { backend: new RefBackend(), contextLength: 8 });
  return llama.forward(m.tokenizer!.bosId, 0).slice();
}

const fromDisk = await loadModel(MODEL);
const diskLogits = firstLogits(fromDisk);

describe("llama2.c .bin + tok512.bin picked as files", () => {
  test("with FileReaderSync: lazy weights, only headers read at load, one tensor's bytes on touch, never the whole file; the file's logits", async () => {
    const log: [number, number][] = [];
    await withSyncReads(async () => {
      const m = await loadPickedModel({ files: [picked(TOK), picked(MODEL, log)] });
      assert.ok(m.tokenizer, "the tokenizer beside the model was used");
      assert.equal(m.config.name, "stories260K.bin");
      assert.equal(m.source.metadata?.["llama2c.tokenizer"], "tok512.bin");
      const size = readFileSync(MODEL).length;
      assert.ok(log.every(([, n]) => n <= 256), `load read more than headers: ${JSON.stringify(log.slice(0, 5))}`);
      assert.ok([...m.weights.values()].every((w) => !isWeightLoaded(w)), "a weight was read at load");
      const before = log.length, readsBefore = FakeFileReaderSync.reads;
      const w = m.weights.get("blk.1.attn_q.weight")!;
      assert.equal(w.kind === "dense" ? w.tensor.data.length : 0, 64 * 64);
      assert.deepEqual(log.slice(before).map(([, n]) => n), [64 * 64 * 4], "touching one tensor reads exactly its bytes");
      assert.equal(FakeFileReaderSync.reads - readsBefore, 1);
      assert.deepEqual(firstLogits(m), diskLogits);
      assert.ok(log.every(([, n]) => n < size), "the whole file was read in one piece");
      await m.close?.();
    });
  });

  test("without FileReaderSync (a page's main thread): tensors read at load, the same logits", async () => {
    const m = await loadPickedModel({ files: [picked(MODEL), picked(TOK)] });
    assert.ok([...m.weights.values()].every((w) => isWeightLoaded(w)));
    assert.deepEqual(firstLogits(m), diskLogits);
  });

  test("which file is the tokenizer: llama2.c's names; clear errors for what cannot be a model", async () => {
    const tok2 = { name: "tokenizer.bin", source: picked(TOK).source };
    const m = await loadPickedModel({ files: [picked(MODEL), tok2, picked(TOK)] });
    assert.equal(m.source.metadata?.["llama2c.tokenizer"], "tok512.bin", "tok<vocab>.bin comes first, as in run.c");
    await assert.rejects(loadPickedModel({ files: [picked(TOK)] }), /tok512\.bin: only tokenizer files; pick the model file too/);
    await assert.rejects(loadPickedModel({ files: [picked(MODEL), { ...picked(MODEL), name: "other.bin" }] }), /pick one model file/);
    await assert.rejects(loadPickedModel({ files: [] }), /no file chosen/);
    const junk = { name: "notes.txt", source: new BlobSource("notes.txt", new Blob(["hello, this is no model"])) };
    await assert.rejects(sniffFormat(junk.source, junk.name), /notes\.txt: unknown model format/);
    await assert.rejects(new BlobSource("x", new Blob(["abc"])).read(2, 4), /x: truncated: need bytes 2\.\.6 but the file has 3/);
  });
});

test("a quantize result written into a BlobSink: the CLI writer's bytes, and it loads back from the Blob", async () => {
  for (const recipe of [{ target: { preset: "Q4_K_M" } }, { target: { spec: "int4:g32:asym" } }]) {
    const r = await quantize(fromDisk, recipe, { backend: new RefBackend() });
    const path = join(DIR, `q.${r.output}`);
    await saveQuantizeResult(r, path);
    const sink = new BlobSink();
    const n = await writeQuantizeResult(r, sink, "q");
    const blob = sink.toBlob();
    assert.equal(n, blob.size);
    assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), new Uint8Array(readFileSync(path)), `${r.output}: the Blob differs from the file`);
    const back = await loadModelSource({ name: `q.${r.output}`, source: new BlobSource(`q.${r.output}`, blob) });
    assert.equal(back.recipe, r.recipeJson);
    assert.deepEqual(firstLogits(back), firstLogits(await loadModel(path)));
    await assert.rejects(loadModelSource({ name: `q.${r.output}`, source: new BlobSource("q", blob) }, picked(TOK)), /a separate tokenizer file goes with a llama2\.c \.bin/);
  }
});

test("a Hugging Face folder picked with the directory picker: BlobDir loads it like the folder on disk", async () => {
  const out = join(DIR, "hf");
  await saveHfDir(fromDisk, out);
  const files = readdirSync(out).map((f) => [f, new Blob([readFileSync(join(out, f))])] as [string, Blob]);
  const m = await loadPickedModel({ files: [], dir: new BlobDir("hf", files) });
  assert.equal(m.config.name, "hf");
  assert.equal(m.source.format, "hf");
  assert.deepEqual(firstLogits(m), firstLogits(await loadModel(out)));
  await assert.rejects(new BlobDir("hf", files).readText("missing.json"), /hf\/missing\.json: no such file in the chosen folder/);
});
