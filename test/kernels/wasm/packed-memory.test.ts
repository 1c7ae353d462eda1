// Issue 11 memory: a packed model is held once, in wasm memory. (1) The backend decodes rows of its prepared
// weights (f32, f16, packed uniform-int with f32 or f16 scales, packed lut) exactly as the weight's own row
// reader (kernels/dequantize.ts) does, so a tied embedding needs no second copy. (2) A quantized-model
// safetensors file loaded with the backend's placer reads codes and f16/f32 matrices straight into wasm
// memory (listing: in place), leaves no JS copy of any matrix loaded, holds the tied table once, and gives
// the same logits bit for bit as the same file loaded without placement; `info`'s resident bytes
// (packedRuntime) are what the backend holds.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../../../src/core/tensor.js";
import { isWeightLoaded, type Weight } from "../../../src/core/weight.js";
import { quantModelEntries } from "../../../src/io/quant-model.js";
import { writeSafetensors } from "../../../src/io/safetensors.js";
import { atomicWriteFile } from "../../../src/io/node/atomic.js";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { modelInfo } from "../../../src/io/info.js";
import { placerOf } from "../../../src/io/placement.js";
import { rowReader } from "../../../src/kernels/dequantize.js";
import { Llama } from "../../../src/model/llama.js";
import { TensorNames } from "../../../src/model/config.js";
import type { Model } from "../../../src/model/weights.js";
import { selectTensors } from "../../../src/algos/select.js";
import { quantizeTensors } from "../../../src/algos/methods/rtn.js";
import { noProgress } from "../../../src/core/progress.js";
import { quantizeTensor } from "../../../src/quant/tensor.js";
import { f32ToF16Bits } from "../../../src/core/f16.js";
import { backend, disposeAll, randomF32, VARIANTS } from "../helpers.js";

function f16Tensor(shape: readonly number[], v: Float32Array): Tensor {
  const h = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) h[i] = f32ToF16Bits(v[i]!);
  return new Tensor("f16", shape, h);
}

after(disposeAll);
const dir = mkdtempSync(join(tmpdir(), "ql-packed-mem-"));
// at exit: the root after() hook may run before the tests registered after the top-level await below
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

test("backend rowReader = the weight's rowReader, bit for bit (f32, f16, packed specs)", () => {
  for (const v of VARIANTS) {
    const be = backend(v, 1);
    let seed = 3;
    for (const [rows, cols] of [[7, 256], [37, 90], [5, 172]] as [number, number][]) {
      const w = randomF32(rows * cols, seed++, 2);
      const weights: [string, Weight][] = [
        ["dense f32", { kind: "dense", tensor: Tensor.fromF32([rows, cols], w) }],
        ["dense f16", { kind: "dense", tensor: f16Tensor([rows, cols], w) }],
      ];
      for (const spec of ["int4:g32:asym", "int4:g32:asym:scale=f16", "int8:channel", "int8:g64:asym:scale=f16", "nf4:g64", "mxfp4", "int3:g32"]) {
        if (spec === "mxfp4" && cols % 32 !== 0) continue;
        weights.push([spec, { kind: "quant", q: quantizeTensor(w, [rows, cols], spec) }]);
      }
      for (const [label, wt] of weights) {
        const p = be.prepare(wt, label);
        const read = be.rowReader(p);
        assert.ok(read, `${label}: the backend reads rows of its prepared copy`);
        const want = rowReader(wt, label);
        const a = new Float32Array(cols + 3), b = new Float32Array(cols + 3);
        for (let r = 0; r < rows; r++) {
          read(r, a, 3);
          want(r, b, 3);
          assert.deepEqual(a, b, `${v} ${label} [${rows}×${cols}] row ${r}`);
        }
        assert.throws(() => read(rows, a, 0), /outside/);
        be.release(p);
        assert.throws(() => read(0, a, 0), /released/);
      }
    }
  }
});

const base = await loadModel(dataPath("stories260K", "stories260K.bin"));
const names = selectTensors(base);

async function save(m: Model, name: string): Promise<string> {
  const path = join(dir, name);
  const { entries, metadata } = quantModelEntries(m);
  await atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata));
  return path;
}

function logits(m: Model, be: ReturnType<typeof backend>): Float32Array[] {
  const llama = new Llama(m, { contextLength: 32, backend: be });
  const tokens = [1, 403, 407, 261, 378, 429, 267, 302];
  const out = [new Float32Array(llama.prefill(tokens.slice(0, 4), 0))];
  for (let i = 4; i < tokens.length; i++) out.push(new Float32Array(llama.forward(tokens[i]!, i)));
  llama.dispose();
  return out;
}

// the tied table as the file keeps it: f16 (dense, placed as K_F16) or quantized with the spec (packed)
for (const [spec, emb] of [["int4:g32:asym", "f16"], ["int4:g32:asym:scale=f16", "spec"], ["nf4:g64", "spec"], ["mxfp4", "f16"]] as const) {
  test(`stories260K ${spec}, tied embedding ${emb}: loaded into wasm memory in place, held once, same logits`, async () => {
    assert.ok(base.config.tiedEmbeddings, "stories260K is tied");
    const q = quantizeTensors(base, names, () => spec, { seed: 0, progress: noProgress }).model;
    const e = q.weights.get(TensorNames.tokenEmbd)!;
    assert.equal(e.kind, "dense");
    const table = (e as Extract<Weight, { kind: "dense" }>).tensor;
    q.weights.set(TensorNames.tokenEmbd, emb === "f16"
      ? { kind: "dense", tensor: f16Tensor(table.shape, table.toF32()) }
      : { kind: "quant", q: quantizeTensor(table.toF32(), table.shape, spec, { name: TensorNames.tokenEmbd }) });
    const path = await save(q, `${spec.replace(/:/g, "_")}-${emb}.safetensors`);
    for (const v of VARIANTS) {
      // reference: the same file loaded without placement (tensors read into JS, copied by prepare)
      const plain = await loadModel(path);
      const want = logits(plain, backend(v, 1));
      await plain.close?.();
      const be = backend(v, 1);
      const m = await loadModel(path, { place: placerOf(be) });
      const llama = new Llama(m, { contextLength: 32, backend: be });
      const rows = be.listing();
      const mats = rows.filter((r) => r.rows > 1);
      for (const r of mats) assert.ok(r.inPlace, `${v} ${r.name} (${r.source}, ${r.kernel}) was read into wasm memory in place`);
      assert.equal(rows.filter((r) => r.name === TensorNames.tokenEmbd).length, 1, "the tied table is prepared once");
      assert.match(rows.find((r) => r.name === TensorNames.tokenEmbd)!.source, emb === "f16" ? /^dense f16/ : /^quant /);
      // no JS copy of a quantized matrix stays loaded (placed f16 tables are the wasm bytes themselves)
      for (const [name, w] of m.weights) if (w.kind === "quant") assert.equal(isWeightLoaded(w), false, `${name} left loaded in JS`);
      // info's resident bytes (packedRuntime) = what the backend holds
      const info = modelInfo(m);
      for (const t of info.tensors) {
        if (t.residentBytes === undefined) continue;
        const r = rows.find((x) => x.name === t.name);
        assert.ok(r, `${t.name} prepared`);
        assert.equal(r.bytes, t.residentBytes, `${t.name}: info says ${t.residentBytes} resident bytes, the backend holds ${r.bytes}`);
      }
      llama.dispose();
      const got = logits(m, be);
      assert.deepEqual(got, want, `${v}: placed logits = unplaced logits`);
      await m.close?.();
    }
  });
}
