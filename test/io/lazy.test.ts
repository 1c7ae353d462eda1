// Lazy loading, format by format, through a ByteSource that records every read of the real file:
// loading and `info` read headers only; touching one tensor reads exactly its bytes, once; releaseWeight
// drops them and the next touch reads them again; a closed model refuses unread tensors by name; logits
// equal those of the same file read eagerly (a source without synchronous reads, the pre-lazy path).
// Byte ranges come from the files' own headers, parsed here independently where the format allows.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../src/io/node/data.js";
import { FileSource } from "../../src/io/node/file.js";
import { LocalDir, saveHfDir, saveSafetensorsFile } from "../../src/io/node/hf-file.js";
import { loadModel } from "../../src/io/node/load.js";
import { openGguf } from "../../src/io/gguf.js";
import { readGgufModel } from "../../src/io/gguf-model.js";
import { hfNames, loadHfModel, type DirSource, type HfConfigJson } from "../../src/io/hf.js";
import { readLlama2cCheckpoint } from "../../src/io/llama2c.js";
import { openSafetensors } from "../../src/io/safetensors.js";
import { readQuantModel } from "../../src/io/quant-model.js";
import { modelInfo, ggufInfo } from "../../src/io/info.js";
import type { ByteSource } from "../../src/io/source.js";
import { isWeightLoaded, releaseWeight, weightFileBytes, weightShape, type Weight } from "../../src/core/weight.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { TensorNames } from "../../src/model/config.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { placerOf } from "../../src/io/placement.js";
import { namesMatching } from "../../src/algos/select.js";
import { weightStats } from "../../src/eval/weight-stats.js";
import { quantlab } from "../cli/helpers-cli.js";

interface Range { offset: number; length: number }

/** A real file as a ByteSource that records every read, async or sync. */
class CountingSource implements ByteSource {
  readonly reads: Range[] = [];
  private readonly file: FileSource;
  constructor(path: string) {
    this.file = new FileSource(path);
  }
  get name(): string { return this.file.name; }
  get size(): number { return this.file.size; }
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.reads.push({ offset, length });
    return this.file.read(offset, length);
  }
  async readInto(offset: number, dst: Uint8Array): Promise<void> {
    this.reads.push({ offset, length: dst.length });
    return this.file.readInto(offset, dst);
  }
  readIntoSync(offset: number, dst: Uint8Array): void {
    this.reads.push({ offset, length: dst.length });
    this.file.readIntoSync(offset, dst);
  }
  async close(): Promise<void> { await this.file.close(); }
}

/** The same file without synchronous reads (like an HTTP source): every tensor is read at load. */
function asyncOnly(path: string): ByteSource {
  const f = new FileSource(path);
  return { name: f.name, size: f.size, read: (o, l) => f.read(o, l), readInto: (o, d) => f.readInto(o, d), close: () => f.close() };
}

/** A directory whose files open as CountingSources (or async-only ones), by file name. */
class CountingDir implements DirSource {
  readonly opened = new Map<string, CountingSource>();
  private readonly dir: LocalDir;
  constructor(readonly name: string, only?: string[], private readonly eager = false) {
    this.dir = new LocalDir(name, only);
  }
  has(f: string) { return this.dir.has(f); }
  readText(f: string) { return this.dir.readText(f); }
  list() { return this.dir.list(); }
  async open(f: string): Promise<ByteSource> {
    if (this.eager) return asyncOnly(join(this.name, f));
    const s = new CountingSource(join(this.name, f));
    this.opened.set(f, s);
    return s;
  }
}

const sortRanges = (r: Range[]) => [...r].sort((a, b) => a.offset - b.offset);
const overlap = (a: Range, b: Range) => Math.max(0, Math.min(a.offset + a.length, b.offset + b.length) - Math.max(a.offset, b.offset));

/** Raw bytes a weight's first access produces (dense elements, ggml blocks, dequantized values). */
function touch(w: Weight): Uint8Array {
  if (w.kind === "dense") { const d = w.tensor.data; return new Uint8Array(d.buffer, d.byteOffset, d.byteLength); }
  if (w.kind === "ggml") return w.data;
  const f = w.q.dequantize();
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

/** safetensors header, parsed here: tensor name → absolute byte range. */
function safetensorsRanges(path: string): Map<string, Range> {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const json = JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Record<string, { data_offsets?: [number, number] }>;
  const out = new Map<string, Range>();
  for (const [k, v] of Object.entries(json)) if (v.data_offsets) out.set(k, { offset: 8 + n + v.data_offsets[0], length: v.data_offsets[1] - v.data_offsets[0] });
  return out;
}

function logits(m: Model, ids = [1, 403, 407, 261, 378, 432]): Float32Array[] {
  const llama = new Llama(m);
  return ids.map((t, pos) => llama.forward(t, pos).slice());
}

function sameBits(a: Float32Array[], b: Float32Array[]): boolean {
  return a.length === b.length && a.every((x, i) => {
    const u = new Uint32Array(x.buffer, x.byteOffset, x.length), v = new Uint32Array(b[i]!.buffer, b[i]!.byteOffset, b[i]!.length);
    return u.length === v.length && u.every((y, j) => y === v[j]);
  });
}

interface Case {
  model: Model;
  /** the sources the model reads (one per file) */
  sources: CountingSource[];
  /** the tensor's byte ranges in the files (from the header), and which source holds them */
  rangesOf(name: string): { src: CountingSource; ranges: Range[] };
  /** bytes of tensor data the header read may run into (GGUF: the first prefix read, see openGguf) */
  headerOvershoot?: number;
  /** the tensor's name inside its file, when it differs from ours (HF names) */
  fileName?(name: string): string;
}

/**
 * The shared checks: headers only at load and for `info`; one tensor read exactly, once; release and
 * re-read; a read after close names file and tensor. Returns the bytes of `name` as first read.
 */
async function checkLazy(c: Case, name: string, unreadAfterClose: string): Promise<void> {
  const { model, sources } = c;
  const tensorBytes = (src: CountingSource) => [...model.weights.keys()].flatMap((n) => { const r = c.rangesOf(n); return r.src === src ? r.ranges : []; });
  const touchedData = () => sources.reduce((a, s) => a + s.reads.reduce((b, r) => b + tensorBytes(s).reduce((x, t) => x + overlap(r, t), 0), 0), 0);
  // 1. after load: every weight exists with its shape, none loaded, no tensor byte read
  for (const [n, w] of model.weights) {
    assert.equal(isWeightLoaded(w), false, `${n} loaded at open`);
    assert.ok(weightShape(w).length >= 1, n);
  }
  assert.ok(touchedData() <= (c.headerOvershoot ?? 0), `load read ${touchedData()} bytes of tensor data`);
  // 2. info reads nothing more
  const marks = sources.map((s) => s.reads.length);
  const info = modelInfo(model);
  assert.equal(info.tensors.length, model.weights.size);
  assert.deepEqual(sources.map((s) => s.reads.length), marks, "info read from the file");
  const infoRow = info.tensors.find((t) => t.name === name)!;
  // 3. one tensor: exactly its ranges, once
  const w = model.weights.get(name)!;
  const { src, ranges } = c.rangesOf(name);
  assert.equal(weightFileBytes(w), ranges.reduce((a, r) => a + r.length, 0));
  let mark = src.reads.length;
  const first = touch(w).slice();
  assert.deepEqual(sortRanges(src.reads.slice(mark)), sortRanges(ranges), `${name}: reads`);
  assert.deepEqual(sources.filter((s) => s !== src).map((s) => s.reads.length), marks.filter((_, i) => sources[i] !== src), "other files read");
  assert.equal(isWeightLoaded(w), true);
  mark = src.reads.length;
  touch(w);
  assert.equal(src.reads.length, mark, `${name}: read twice`);
  assert.ok(infoRow.bytes > 0);
  // 4. release: dropped, then read again with the same bytes
  assert.equal(releaseWeight(w), true);
  assert.equal(isWeightLoaded(w), false);
  assert.equal(releaseWeight(w), false, "nothing left to release");
  touch(w);
  assert.deepEqual(sortRanges(src.reads.slice(mark)), sortRanges(ranges), `${name}: reads after release`);
  assert.deepEqual(touch(w), first);
  // 5. close: loaded tensors stay, unread ones fail naming file and tensor
  await model.close!();
  assert.deepEqual(touch(w), first);
  const u = model.weights.get(unreadAfterClose)!;
  assert.equal(isWeightLoaded(u), false);
  const file = c.rangesOf(unreadAfterClose).src.name;
  const inFile = c.fileName?.(unreadAfterClose) ?? unreadAfterClose;
  assert.throws(() => touch(u), (e: Error & { code?: string }) => e.code === "E_IO" && e.message === `${file}: tensor "${inFile}" read after the model was closed`);
}

const dir = mkdtempSync(join(tmpdir(), "ql-lazy-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const s260 = dataPath("stories260K", "stories260K.bin");

describe("lazy loading", () => {
  test("GGUF (llama.cpp's stories260K Q4_K_M: F32, F16 and block types): header only, one tensor exactly, release, close", async () => {
    const path = dataPath("ggml", "stories260K", "stories260K-Q4_K_M.gguf");
    const src = new CountingSource(path);
    const f = await openGguf(src);
    const gi = ggufInfo(f);
    assert.equal(src.reads.length, 1, "one header read");
    assert.ok(src.reads[0]!.length <= 65536, `header read ${src.reads[0]!.length} of ${src.size} bytes`);
    const model = await readGgufModel(f);
    // the same table from the weights as from the header (dense dtypes are lower-case there)
    assert.deepEqual(modelInfo(model).tensors.map((t) => [t.name, t.type.toUpperCase(), t.bytes]), gi.tensors.map((t) => [t.name, t.type.toUpperCase(), t.bytes]));
    const rangesOf = (n: string) => { const t = f.tensor(n)!; return { src, ranges: [{ offset: t.fileOffset, length: t.byteLength }] }; };
    const kinds = new Set([...model.weights.values()].map((w) => (w.kind === "dense" ? w.tensor.dtype : w.kind)));
    assert.deepEqual([...kinds].sort(), ["f16", "f32", "ggml"]);
    const raw = readFileSync(path);
    const down = f.tensor("blk.1.ffn_down.weight")!;
    await checkLazy({ model, sources: [src], rangesOf, headerOvershoot: 65536 - f.dataOffset }, "blk.2.attn_q.weight", "blk.4.ffn_up.weight");
    // a ggml block tensor's bytes are the file's (read before close, through a fresh model)
    const m2 = await readGgufModel(await openGguf(new CountingSource(path)));
    const w = m2.weights.get("blk.1.ffn_down.weight")!;
    assert.deepEqual(touch(w), new Uint8Array(raw.subarray(down.fileOffset, down.fileOffset + down.byteLength)));
    await m2.close!();
  });

  test("GGUF: lazily loaded logits equal the eagerly read file's bit for bit; placed into WASM memory on first read, held once", async () => {
    const path = dataPath("ggml", "stories260K", "stories260K-F32.gguf");
    const lazy = await readGgufModel(await openGguf(new CountingSource(path)));
    const eager = await readGgufModel(await openGguf(asyncOnly(path)));
    for (const [n, w] of eager.weights) assert.equal(isWeightLoaded(w), true, n);
    assert.equal(releaseWeight(eager.weights.get("blk.0.attn_q.weight")!), false, "eager bytes cannot be read again: kept");
    assert.ok(sameBits(logits(lazy), logits(eager)));
    await lazy.close!();
    await eager.close!();

    const be = createNodeWasmBackend({ layouts: "native" });
    try {
      const src = new CountingSource(path);
      const m = await readGgufModel(await openGguf(src), { place: placerOf(be) });
      const used = () => be.memoryStats().shards.reduce((a, b) => a + b, 0);
      const before = used();
      assert.equal(src.reads.length, 1, "nothing read at load");
      assert.equal(be.listing().length, 0);
      const llama = new Llama(m, { backend: be });
      const rows = be.listing().filter((r) => r.rows > 1);
      assert.ok(rows.length >= 36 && rows.every((r) => r.inPlace), rows.filter((r) => !r.inPlace).map((r) => r.name).join(", "));
      const q = m.weights.get("blk.0.attn_q.weight")!;
      assert.equal(isWeightLoaded(q), true);
      assert.equal(releaseWeight(q), false, "placed bytes belong to the backend");
      // held once: the placed matrices are in wasm memory and nowhere else; memory grew by about their bytes
      const placed = rows.reduce((a, r) => a + r.bytes, 0);
      assert.ok(used() - before < placed + (1 << 20), `${used() - before} bytes for ${placed} placed`);
      const want = logits(m);
      const got = [1, 403, 407, 261, 378, 432].map((t, pos) => llama.forward(t, pos).slice());
      let d = 0;
      got.forEach((g, i) => g.forEach((x, j) => { d = Math.max(d, Math.abs(x - want[i]![j]!)); }));
      assert.ok(d < 1e-4, `wasm vs ref ${d}`);
      await m.close!();
    } finally {
      be.dispose();
    }
    // weights the backend copies or repacks (Q5_0, F16 rows in llama.cpp's Q4_K_M file) are let go once
    // prepared, placed ones stay where they were read: either way the model is held once
    const be2 = createNodeWasmBackend();
    try {
      const m = await readGgufModel(await openGguf(new CountingSource(dataPath("ggml", "stories260K", "stories260K-Q4_K_M.gguf"))), { place: placerOf(be2) });
      const llama = new Llama(m, { backend: be2 });
      const rows = be2.listing();
      assert.ok(rows.some((r) => !r.inPlace) && rows.length === 36, rows.map((r) => `${r.name} ${r.inPlace}`).join(", "));
      for (const r of rows) assert.equal(isWeightLoaded(m.weights.get(r.name)!), r.inPlace, r.name);
      // the same bits as the eagerly read file on a backend of its own
      const eager = await readGgufModel(await openGguf(asyncOnly(dataPath("ggml", "stories260K", "stories260K-Q4_K_M.gguf"))));
      const be3 = createNodeWasmBackend();
      try {
        const other = new Llama(eager, { backend: be3 });
        const ids = [1, 403, 407, 261];
        assert.ok(sameBits(ids.map((t, pos) => llama.forward(t, pos).slice()), ids.map((t, pos) => other.forward(t, pos).slice())));
      } finally {
        be3.dispose();
      }
      await m.close!();
      await eager.close!();
    } finally {
      be2.dispose();
    }
  });

  test("llama2.c .bin (stories260K): 28 header bytes, then each tensor's own slice; logits bit for bit", async () => {
    const src = new CountingSource(s260);
    const ck = await readLlama2cCheckpoint(src);
    assert.deepEqual(src.reads, [{ offset: 0, length: 28 }]);
    const model: Model = { config: ck.config, weights: ck.weights, source: { path: s260, format: "llama2c" }, close: ck.close };
    // file order (run.c read_checkpoint): offsets computed here from the header alone
    const { dim, hiddenDim: hid, nLayers: L, vocabSize: V } = ck.config;
    const kv = (dim / ck.config.nHeads) * ck.config.nKvHeads;
    const arrays: [string, number][] = [["tok", V * dim], ["rms_att", dim], ["wq", dim * dim], ["wk", kv * dim], ["wv", kv * dim], ["wo", dim * dim], ["rms_ffn", dim], ["w1", hid * dim], ["w2", dim * hid], ["w3", hid * dim], ["rms_final", dim]];
    const names: Record<string, (l: number) => string> = { rms_att: TensorNames.attnNorm, wq: TensorNames.attnQ, wk: TensorNames.attnK, wv: TensorNames.attnV, wo: TensorNames.attnOutput, rms_ffn: TensorNames.ffnNorm, w1: TensorNames.ffnGate, w2: TensorNames.ffnDown, w3: TensorNames.ffnUp };
    const where = new Map<string, Range>();
    let o = 28;
    for (const [a, n] of arrays) {
      if (a === "tok" || a === "rms_final") where.set(a === "tok" ? TensorNames.tokenEmbd : TensorNames.outputNorm, { offset: o, length: 4 * n });
      else for (let l = 0; l < L; l++) where.set(names[a]!(l), { offset: o + 4 * n * l, length: 4 * n });
      o += 4 * n * (a === "tok" || a === "rms_final" ? 1 : L);
    }
    assert.equal(where.size, model.weights.size);
    await checkLazy({ model, sources: [src], rangesOf: (n) => ({ src, ranges: [where.get(n)!] }) }, "blk.3.ffn_gate.weight", "blk.4.attn_v.weight");

    const lazy = await loadModel(s260);
    // every tensor is the file's bytes at the offsets computed above
    const raw = readFileSync(s260);
    for (const [n, r] of where) assert.deepEqual(touch(lazy.weights.get(n)!), new Uint8Array(raw.subarray(r.offset, r.offset + r.length)), n);
    const eagerCk = await readLlama2cCheckpoint(asyncOnly(s260));
    assert.ok(sameBits(logits(lazy), logits({ ...lazy, weights: eagerCk.weights })));
    await lazy.close!();
    await eagerCk.close();
  });

  test("llama2.c version-2 Q8 export: a tensor reads its int8 codes and scales, dequantized then", async () => {
    const path = dataPath("stories260K", "stories260K-q8.bin");
    const src = new CountingSource(path);
    const ck = await readLlama2cCheckpoint(src);
    assert.deepEqual(src.reads, [{ offset: 0, length: 28 }, { offset: 0, length: 256 }]);
    // header 256, f32 norms (rms_att 5×64, rms_ffn 5×64, rms_final 64), token embedding codes + scales (group 8), then wq of layer 0
    const wq0 = 256 + 4 * (5 * 64 + 5 * 64 + 64) + (512 * 64 + 4 * (512 * 64) / 8);
    const n = 64 * 64;
    const w = ck.weights.get("blk.0.attn_q.weight")! as Extract<Weight, { kind: "dense" }>;
    const got = w.tensor.data as Float32Array;
    assert.deepEqual(src.reads.slice(2), [{ offset: wq0, length: n + (4 * n) / 8 }]);
    const raw = readFileSync(path);
    for (const i of [0, 7, 8, 4095]) assert.equal(got[i], Math.fround(raw.readInt8(wq0 + i) * raw.readFloatLE(wq0 + n + 4 * Math.floor(i / 8))), `element ${i}`);
    await ck.close();
  });

  test("HF directory with two shards: header reads only, Q/K permuted on first read, logits bit for bit", async () => {
    const base = await loadModel(s260);
    const out = join(dir, "hf");
    const r = await saveHfDir(base, out, { maxShardBytes: 600_000 });
    const shards = r.files.filter((f) => f.endsWith(".safetensors"));
    assert.equal(shards.length, 2);
    const cd = new CountingDir(out);
    const model = await loadHfModel(cd);
    const sources = shards.map((s) => cd.opened.get(s)!);
    const hf = new Map(hfNames(model.config));
    const ranges = new Map(shards.map((s) => [s, safetensorsRanges(join(out, s))]));
    const rangesOf = (n: string) => {
      const h = hf.get(n)!;
      const s = shards.find((f) => ranges.get(f)!.has(h))!;
      return { src: cd.opened.get(s)!, ranges: [ranges.get(s)!.get(h)!] };
    };
    for (const s of sources) assert.ok(s.reads.length === 2 && s.reads[0]!.offset === 0 && s.reads[0]!.length === 8, `${s.name}: ${JSON.stringify(s.reads)}`);
    await checkLazy({ model, sources, rangesOf, fileName: (n) => hf.get(n)! }, "blk.4.attn_k.weight", "token_embd.weight");

    const lazy = await loadHfModel(new CountingDir(out));
    // Q and K come back in our interleaved RoPE order: equal to the llama2.c original, as every tensor
    for (const [n, w] of base.weights) assert.deepEqual(touch(lazy.weights.get(n)!), touch(w), n);
    const eager = await loadHfModel(new CountingDir(out, undefined, true));
    assert.ok(sameBits(logits(lazy), logits(eager)));
    assert.ok(sameBits(logits(lazy), logits(base)));
    for (const m of [lazy, eager, base]) await m.close!();
  });

  test("single .safetensors (config in its metadata): header reads only, one tensor exactly, release, close", async () => {
    const base = await loadModel(s260);
    const path = join(dir, "one.safetensors");
    await saveSafetensorsFile(base, path);
    const md = JSON.parse(readFileSync(path).subarray(8, 8 + Number(readFileSync(path).readBigUInt64LE(0))).toString("utf8")).__metadata__ as Record<string, string>;
    const config = JSON.parse(md["quantlab.config"]!) as HfConfigJson;
    const cd = new CountingDir(dir, ["one.safetensors"]);
    const model = await loadHfModel(cd, { config });
    const src = cd.opened.get("one.safetensors")!;
    const hf = new Map(hfNames(model.config));
    const ranges = safetensorsRanges(path);
    await checkLazy({ model, sources: [src], rangesOf: (n) => ({ src, ranges: [ranges.get(hf.get(n)!)!] }), fileName: (n) => hf.get(n)! }, "blk.2.ffn_down.weight", "blk.3.attn_norm.weight");
    await base.close!();
  });

  test("quantlab quantized safetensors (quantize --spec int4:g32): a QTensor reads exactly its side entries; storageBits from the header", async () => {
    const path = join(dir, "q.safetensors");
    const r = quantlab("quantize", s260, "--spec", "int4:g32", "-o", path, "--json");
    assert.equal(r.status, 0, r.stderr);
    const src = new CountingSource(path);
    const model = await readQuantModel(await openSafetensors(src));
    const ranges = safetensorsRanges(path);
    // a quantized tensor is its .q* side entries; a dense one its own entry
    const rangesOf = (n: string) => ({ src, ranges: ranges.has(n) ? [ranges.get(n)!] : [...ranges].filter(([k]) => k.startsWith(`${n}.q`)).map(([, v]) => v) });
    const name = "blk.1.attn_output.weight";
    assert.equal(model.weights.get(name)!.kind, "quant");
    assert.deepEqual(rangesOf(name).ranges.length, 2, "codes and scales");
    const eager = await readQuantModel(await openSafetensors(asyncOnly(path)));
    for (const [n, w] of model.weights) {
      const e = eager.weights.get(n)!;
      if (w.kind === "quant" && e.kind === "quant") assert.equal(w.q.storageBits, e.q.storageBits, n);
    }
    assert.equal(src.reads.length, 2, "length + header JSON");
    assert.ok(sameBits(logits(model), logits(eager)));
    await model.close!();
    const src2 = new CountingSource(path);
    const again = await readQuantModel(await openSafetensors(src2));
    await checkLazy({ model: again, sources: [src2], rangesOf: (n) => ({ ...rangesOf(n), src: src2 }) }, name, "blk.3.ffn_up.weight");
    await eager.close!();
  });

  test("inspect --only 'blk.0.*' reads exactly those tensors and lets them go again", async () => {
    const path = dataPath("ggml", "stories260K", "stories260K-Q4_K_M.gguf");
    const src = new CountingSource(path);
    const f = await openGguf(src);
    const model = await readGgufModel(f);
    const names = namesMatching([...model.weights.keys()], "blk.0.*", "--only");
    assert.equal(names.length, 9);
    const mark = src.reads.length;
    const rows = weightStats(model, names);
    assert.deepEqual(rows.map((r) => r.name), names);
    assert.deepEqual(sortRanges(src.reads.slice(mark)), sortRanges(names.map((n) => ({ offset: f.tensor(n)!.fileOffset, length: f.tensor(n)!.byteLength }))));
    for (const n of names) assert.equal(isWeightLoaded(model.weights.get(n)!), false, `${n} kept`);
    assert.throws(() => namesMatching([...model.weights.keys()], "blk.0.*,blk.9.*", "--only"), /^QuantlabError: option --only: "blk\.9\.\*" matches no tensor/);
    await model.close!();
  });

  test("a tensor whose bytes vanish after open (file truncated) fails on first read naming file and tensor", async () => {
    const path = join(dir, "cut.bin");
    copyFileSync(s260, path);
    const m = await loadModel(path, { tokenizer: dataPath("stories260K", "tok512.bin") });
    touch(m.weights.get("token_embd.weight")!);
    truncateSync(path, 200_000);
    assert.throws(() => touch(m.weights.get("blk.4.ffn_up.weight")!), (e: Error & { code?: string }) =>
      e.code === "E_FORMAT" && new RegExp(`^${path.replace(/[.]/g, "\\.")}: tensor "blk\\.4\\.ffn_up\\.weight": truncated: short read at byte \\d+$`).test(e.message));
    await m.close!();
  });
});

test("LazyData onRelease: called once when release drops the value, never for pinned or filled values; BlockBufferPool reuses what is given back", async () => {
  const { LazyData } = await import("../../src/core/lazy.js");
  const { BlockBufferPool } = await import("../../src/algos/ggml-quant.js");
  let given = 0;
  const l = new LazyData(4, () => ({ value: new Uint8Array(4), onRelease: () => given++ }));
  l.get();
  assert.equal(l.release(), true);
  assert.equal(given, 1);
  assert.equal(l.release(), false, "nothing left to drop");
  assert.equal(given, 1);
  l.get();
  l.fill(new Uint8Array(4), false); // a filled value has no give-back of its own
  assert.equal(l.release(), true);
  assert.equal(given, 1);
  const pinned = new LazyData(4, () => ({ value: new Uint8Array(4), pinned: true, onRelease: () => given++ }));
  pinned.get();
  assert.equal(pinned.release(), false);
  assert.equal(given, 1);
  const pool = new BlockBufferPool();
  const a = pool.take(100), b = pool.take(40);
  assert.notEqual(a.buffer, b.buffer);
  pool.give(a);
  pool.give(b);
  pool.give(b); // twice: still one entry
  assert.equal(pool.size, 2);
  const c = pool.take(30); // the smallest that fits: b's
  assert.equal(c.buffer, b.buffer);
  assert.equal(c.length, 30);
  const d = pool.take(60); // a's
  assert.equal(d.buffer, a.buffer);
  const e = pool.take(10); // none free: a new one
  assert.ok(e.buffer !== a.buffer && e.buffer !== b.buffer);
  assert.equal(pool.size, 0);
});
