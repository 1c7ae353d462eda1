// Layouts without a fast kernel (issue 11) run through the row decoder (kernels/rowdec.ts), never a whole-tensor
// f32 copy: vector codebooks, outlier side tables, ichannel and block2d granularity, trit packing, codes wider
// than 8 bits, and the ggml types with neither a native nor a repacked WASM layout (Q8_1, Q8_K). Checked: rows
// decode to QTensor.dequantize's / ggml dequantizeRow's values bit for bit (any row range, any offset; the bit
// reader against quant/pack.ts `unpack` at every start, fast-check); WASM mat-vec and mat-mat over several chunks
// (several token counts, both builds, 1 and 2 threads) equal the float64 oracle of the dequantized weights
// within float rounding and the f32 kernel on a dequantized copy; the reference backend equals its dense f32
// path bit for bit; the listing names "rowdec·f32", sets no f32 fallback, and holds the stored bytes (memory
// grows by the chunk scratch once per backend, not by an f32 copy); a tied embedding reads one row; the
// stories260K model of each such spec (and with Q8_1 linears) gives the fake-quant logits within 1e-4 on WASM
// and ref; a lazily loaded file is not read again after prepare.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../../../src/core/tensor.js";
import { isWeightLoaded, type Weight } from "../../../src/core/weight.js";
import { quantizeTensor, type QTensor } from "../../../src/quant/tensor.js";
import { quantizeLearned } from "../../../src/algos/learned.js";
import { pack, packTernary5, unpack, unpackTernary5 } from "../../../src/quant/pack.js";
import { dequantize, quantizeRow } from "../../../src/ggml/codecs.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../../../src/ggml/types.js";
import { chunkRows, quantRowDecoder, unpackCodesAt, unpackTernaryAt } from "../../../src/kernels/rowdec.js";
import { packedRuntime } from "../../../src/kernels/packed.js";
import { rowReader } from "../../../src/kernels/dequantize.js";
import { RefBackend, RefRowDecPrepared } from "../../../src/kernels/ref/backend.js";
import type { Backend } from "../../../src/kernels/types.js";
import { NATIVE, REPACK } from "../../../src/kernels/wasm/layouts.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { quantModelEntries } from "../../../src/io/quant-model.js";
import { writeSafetensors } from "../../../src/io/safetensors.js";
import { atomicWriteFile } from "../../../src/io/node/atomic.js";
import { Llama } from "../../../src/model/llama.js";
import { selectTensors } from "../../../src/algos/select.js";
import { quantizeTensors } from "../../../src/algos/methods/rtn.js";
import { noProgress } from "../../../src/core/progress.js";
import { VARIANTS, backend, disposeAll, randomF32 } from "../helpers.js";
import { TOL, eachBackend, fakeQuant, maxLogitDiff, oracle, runLogits, runPrepared, worst } from "./packed-helpers.js";

after(disposeAll);

/** spec → why it has no packed kernel (the listing's rowdec reason) */
const SPECS: [string, RegExp][] = [
  ["vq8d4:channel", /vector codebook/], ["vq6d2:g32", /vector codebook/], ["vq4d2:g16:outliers=1", /outlier/],
  ["int4:g64:outliers=1", /outlier/], ["nf4:g32:outliers=2", /outlier/],
  ["int4:ichannel", /granularity ichannel/], ["int8:ichannel:asym", /granularity ichannel/], ["int4:b4x16:asym", /granularity block2d/],
  ["ternary:channel:trits", /packing trits/], ["ternary:g64:trits", /packing trits/],
  ["int12:channel", /12-bit/], ["int10:g32:asym", /10-bit/], ["int16:channel", /16-bit/],
];

function quantize(w: Float32Array, shape: [number, number], spec: string, seed: number): QTensor {
  return spec.startsWith("vq") ? quantizeLearned(w, shape, spec, { seed }) : quantizeTensor(w, shape, spec);
}

/** bit-for-bit equality of f32 arrays (−0 and NaN payloads included) */
function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} is ${a[i]}, want ${b[i]}`);
}

/** ggml types with a codec and no WASM kernel in any build: each row of them must run on the row decoder */
const GGML_ROWDEC = (Object.keys(GGML_TYPES).map(Number) as GgmlType[]).filter((t) => GGML_TYPES[t].codec && GGML_TYPES[t].blockSize > 1 && !REPACK[t] && !NATIVE[t]);

function ggmlWeight(type: GgmlType, rows: number, cols: number, seed: number): { weight: Weight; values: Float32Array } {
  const n = rows * cols;
  const data = new Uint8Array((n / GGML_TYPES[type].blockSize) * GGML_TYPES[type].bytesPerBlock);
  quantizeRow(type, randomF32(n, seed, 2), data, n);
  return { weight: { kind: "ggml", type, shape: [rows, cols], data }, values: dequantize(type, data, n) };
}

describe("row decoders = the dequantized values bit for bit", () => {
  test("the bit reader equals unpack at every start code, 1..16 bits (fast-check)", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 1, max: 90 }), fc.integer({ min: 1, max: 1e6 }), (bits, n, seed) => {
      const codes = new Uint16Array(n);
      let s = seed;
      for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; codes[i] = bits === 0 ? 0 : s % 2 ** bits; }
      const bytes = pack(codes, bits);
      const all = unpack(bytes, bits, n) as Uint16Array;
      for (let first = 0; first < n; first++) {
        const got = new Uint16Array(n - first);
        unpackCodesAt(bytes, bits, first, n - first, got);
        assert.deepEqual(got, all.subarray(first), `${bits} bits from code ${first}`);
      }
    }), { numRuns: 200, seed: 3 });
  });

  test("the trit reader equals unpackTernary5 at every start code (fast-check)", () => {
    fc.assert(fc.property(fc.array(fc.constantFrom(0, 1, 3), { minLength: 1, maxLength: 60 }), (codes) => {
      const bytes = packTernary5(codes);
      const all = unpackTernary5(bytes, codes.length);
      assert.deepEqual(Array.from(all), codes);
      for (let first = 0; first < codes.length; first++) {
        const got = new Uint16Array(codes.length - first);
        unpackTernaryAt(bytes, first, got.length, got);
        assert.deepEqual(Array.from(got), codes.slice(first), `from code ${first}`);
      }
    }), { numRuns: 200, seed: 5 });
  });

  test("every spec without a packed kernel: any row range at any offset", () => {
    let seed = 20;
    for (const [spec] of SPECS) {
      for (const [rows, cols] of [[9, 64], [5, 96], [13, 48]] as [number, number][]) {
        const q = quantize(randomF32(rows * cols, seed++, 3), [rows, cols], spec, seed);
        const wq = q.dequantize();
        const D = quantRowDecoder(q, spec);
        assert.equal(D.storedBytes, q.storageBits / 8, spec);
        for (const [r0, r1] of [[0, rows], [0, 1], [rows - 1, rows], [2, rows - 2], [3, 3]]) {
          const dst = new Float32Array((r1 - r0) * cols + 5).fill(NaN);
          D.decode(r0, r1, dst, 5);
          sameBits(dst.subarray(5), wq.subarray(r0 * cols, r1 * cols), `${spec} [${rows}×${cols}] rows ${r0}..${r1}`);
        }
        assert.throws(() => D.decode(0, rows + 1, new Float32Array((rows + 1) * cols), 0), /outside/);
        assert.throws(() => D.decode(0, 2, new Float32Array(cols), 0), /do not fit/);
        // the generic rowReader (embedding lookups) decodes the one row
        const read = rowReader({ kind: "quant", q });
        const row = new Float32Array(cols);
        for (let r = 0; r < rows; r++) { read(r, row, 0); sameBits(row, wq.subarray(r * cols, (r + 1) * cols), `${spec} row ${r}`); }
      }
    }
  });

  test(`ggml types with no WASM kernel (${GGML_ROWDEC.map(ggmlTypeName).join(", ")}) decode as dequantizeRow`, () => {
    assert.ok(GGML_ROWDEC.includes(GgmlType.Q8_1) && GGML_ROWDEC.includes(GgmlType.Q8_K), GGML_ROWDEC.map(ggmlTypeName).join(", "));
    const be = new RefBackend();
    for (const type of GGML_ROWDEC) {
      const cols = 2 * GGML_TYPES[type].blockSize, rows = 6;
      const { weight, values } = ggmlWeight(type, rows, cols, 3);
      const p = be.prepare(weight);
      assert.ok(p instanceof RefRowDecPrepared, ggmlTypeName(type));
      const read = be.rowReader(p)!;
      const row = new Float32Array(cols);
      for (let r = 0; r < rows; r++) { read(r, row, 0); sameBits(row, values.subarray(r * cols, (r + 1) * cols), `${ggmlTypeName(type)} row ${r}`); }
    }
  });
});

describe("row-decoded weights on the WASM backend", () => {
  // rows × cols over several 256 KiB chunks: 128 rows of 512 per chunk, 1024 of 64
  const SHAPES: [number, number][] = [[300, 512], [7, 96], [2100, 64], [3, 48]];

  for (const [spec, why] of SPECS) {
    test(`${spec}: mat-vec and mat-mat = the dequantized f32 weights`, async () => {
      let seed = 70;
      for (const [rows, cols] of SHAPES) {
        // a 256-codeword k-means fit of a large tensor is slow; the 16- and 64-codeword specs cover several chunks
        if ((spec.startsWith("vq8") && rows * cols > 4096) || (spec.startsWith("vq") && rows > 300)) continue;
        const q = quantize(randomF32(rows * cols, seed++, 2), [rows, cols], spec, seed);
        const wq = q.dequantize();
        const weight: Weight = { kind: "quant", q };
        const dense: Weight = { kind: "dense", tensor: Tensor.fromF32([rows, cols], wq) };
        for (const n of [1, 3, 9]) {
          const x = randomF32(n * cols, seed++);
          const want = oracle(wq, rows, cols, x, n);
          for await (const { b, label } of eachBackend([1, 2])) {
            const p = b.prepare(weight, spec);
            const row = b.listing().at(-1)!;
            assert.match(row.kernel, /^rowdec·f32/, spec);
            assert.equal(row.fallback, undefined, `${spec}: ${row.fallback}`);
            assert.match(row.rowdec ?? "", why, spec);
            assert.equal(row.bytes, q.storageBits / 8, spec);
            const out = runPrepared(b, p, x, n);
            const e = worst(out, want);
            assert.ok(e < TOL, `${spec} [${rows}×${cols}] n=${n} ${label}: rel err ${e}`);
            // the f32 kernel on a dequantized copy: the same values, the same kernel
            const pd = b.prepare(dense, "dense");
            const outD = runPrepared(b, pd, x, n);
            b.release(pd);
            const eD = worst(out, { out: Float64Array.from(outD), mag: want.mag });
            assert.ok(eD < TOL, `${spec} [${rows}×${cols}] n=${n} ${label}: vs the f32 copy ${eD}`);
            if (n === 1) sameBits(out, outD, `${spec} [${rows}×${cols}] ${label} mat-vec vs the f32 copy`);
            b.release(p);
          }
        }
      }
    });
  }

  test("matvecMany mixes row-decoded and packed jobs sharing x", () => {
    const b = backend(VARIANTS[0]!, 1);
    const cols = 96;
    const qa = quantizeTensor(randomF32(40 * cols, 1), [40, cols], "int4:ichannel");
    const qb = quantizeTensor(randomF32(24 * cols, 2), [24, cols], "int4:g32");
    const qc = quantizeTensor(randomF32(16 * cols, 3), [16, cols], "int12:channel");
    const ps = [qa, qb, qc].map((q) => b.prepare({ kind: "quant", q }));
    const x = randomF32(cols, 4);
    const outs = ps.map((p) => new Float32Array(p.rows));
    b.matvecMany(ps.map((w, i) => ({ w, x, out: outs[i]! })));
    [qa, qb, qc].forEach((q, i) => assert.ok(worst(outs[i]!, oracle(q.dequantize(), ps[i]!.rows, cols, x, 1)) < TOL, q.spec));
    for (const p of ps) b.release(p);
  });

  test("ggml types with no WASM kernel: mat-vec / mat-mat, the bytes held once in wasm memory", async () => {
    for (const type of GGML_ROWDEC) {
      const cols = 2 * GGML_TYPES[type].blockSize, rows = 700;
      const { weight, values } = ggmlWeight(type, rows, cols, 5);
      for (const n of [1, 4]) {
        const x = randomF32(n * cols, 6 + n);
        const want = oracle(values, rows, cols, x, n);
        for await (const { b, label } of eachBackend([1, 2])) {
          const before = b.memoryStats().shards[0]!;
          const p = b.prepare(weight, ggmlTypeName(type));
          const grown = b.memoryStats().shards[0]! - before;
          const row = b.listing().at(-1)!;
          assert.match(row.kernel, /^rowdec·f32/);
          assert.equal(row.fallback, undefined);
          assert.match(row.rowdec ?? "", new RegExp(`no WASM kernel for ${ggmlTypeName(type)}`));
          assert.equal(p.bytes, (weight as { data: Uint8Array }).data.length);
          assert.ok(grown <= p.bytes + 64, `${ggmlTypeName(type)}: memory grew ${grown} for ${p.bytes} bytes`);
          const e = worst(runPrepared(b, p, x, n), want);
          assert.ok(e < TOL, `${ggmlTypeName(type)} n=${n} ${label}: rel err ${e}`);
          // rows read back through the backend (a tied embedding) are the file's values
          const read = b.rowReader(p)!;
          const r1 = new Float32Array(cols);
          read(rows - 1, r1, 0);
          sameBits(r1, values.subarray((rows - 1) * cols), `${ggmlTypeName(type)} last row`);
          b.release(p);
        }
      }
    }
  });

  test("resident bytes = stored bytes; memory grows by the chunk scratch once per backend, never by an f32 copy", () => {
    const b = createNodeWasmBackend({ variant: VARIANTS[0]! });
    try {
      const cols = 512;
      const first = b.memoryStats().shards[0]!;
      let scratch = -1;
      for (const [spec] of SPECS) {
        const rows = spec.startsWith("vq") ? 64 : 256; // an f32 copy would be 128 or 512 KiB (k-means fits kept small)
        const q = quantize(randomF32(rows * cols, 8), [rows, cols], spec, 8);
        const before = b.memoryStats().shards[0]!;
        const p = b.prepare({ kind: "quant", q }, spec);
        assert.equal(b.memoryStats().shards[0]! - before, 0, `${spec}: prepare copies nothing into wasm memory`);
        const rt = packedRuntime(q);
        const row = b.listing().at(-1)!;
        assert.equal(row.kernel, rt.kernel, spec);
        assert.equal(p.bytes, rt.residentBytes, spec);
        assert.equal(row.rowdec, rt.rowdec, spec);
        assert.equal(p.bytes, q.storageBits / 8, spec);
        // at most 16-bit codes + their scales: at most half an f32 copy
        assert.ok(p.bytes <= (rows * cols * 4) / 2 + 4096, `${spec}: ${p.bytes} bytes is not the stored form`);
        const x = randomF32(4 * cols, 9);
        runPrepared(b, p, x, 4);
        const grown = b.memoryStats().shards[0]! - first;
        if (scratch < 0) scratch = grown;
        // the activation slots and the 256 KiB chunk scratch, made on the first run and reused after
        assert.equal(grown, scratch, `${spec}: memory grew again (${grown} vs ${scratch})`);
        assert.ok(scratch < 256 * 1024 + 128 * 1024, `scratch ${scratch}`);
        b.release(p);
      }
      assert.equal(b.listing().length, 0);
    } finally {
      b.dispose();
    }
  });

  test("chunk rows: about 256 KiB of f32, at least one row", () => {
    assert.equal(chunkRows(512), 128);
    assert.equal(chunkRows(64), 1024);
    assert.equal(chunkRows(1 << 17), 1);
  });
});

describe("the reference backend's row decoder", () => {
  test("mat-mat of every spec = its dense f32 path bit for bit (several chunks)", () => {
    const be = new RefBackend();
    let seed = 200;
    for (const [spec] of SPECS) {
      const [rows, cols] = spec.startsWith("vq") ? [70, 64] : [1100, 64];
      const q = quantize(randomF32(rows * cols, seed++, 2), [rows, cols], spec, seed);
      const p = be.prepare({ kind: "quant", q });
      assert.ok(p instanceof RefRowDecPrepared, spec);
      assert.equal(p.bytes, q.storageBits / 8);
      const d = be.prepare({ kind: "dense", tensor: Tensor.fromF32([rows, cols], q.dequantize()) });
      for (const n of [1, 3]) {
        const x = randomF32(n * cols, seed++);
        sameBits(runPrepared(be, p, x, n), runPrepared(be, d, x, n), `${spec} n=${n}`);
      }
    }
  });
});

// ------------------------------------------------------------------ stories260K

const base = await loadModel(dataPath("stories260K", "stories260K.bin"));
const names = selectTensors(base);

const TOKENS = [1, 403, 407, 261, 378, 429, 267, 302, 271, 395];

for (const spec of ["vq8d4:channel", "int4:g64:outliers=1", "int4:ichannel", "ternary:channel:trits", "int12:channel"]) {
  test(`stories260K ${spec}: row-decoded logits = fake-quant logits within 1e-4; no f32 copy listed`, async () => {
    const q = quantizeTensors(base, names, () => spec, { seed: 0, progress: noProgress }).model;
    const want = runLogits(fakeQuant(q), new RefBackend(), TOKENS);
    const backends: [string, Backend][] = [["ref", new RefBackend()]];
    for await (const { b, label } of eachBackend([1, 2])) backends.push([label, b]);
    for (const [label, be] of backends) {
      if (label !== "ref") {
        // the listing while the model is prepared: every quantized weight on the row decoder, at its stored bytes
        const wb = be as ReturnType<typeof backend>;
        const llama = new Llama(q, { contextLength: 16, backend: wb });
        const quantRows = wb.listing().filter((r) => r.source.startsWith("quant "));
        assert.ok(quantRows.length >= names.length - 1, `${quantRows.length} quantized weights for ${names.length} selected`);
        for (const r of quantRows) {
          assert.equal(r.fallback, undefined, `${r.name}: ${r.fallback}`);
          assert.match(r.kernel, /^rowdec·f32/, r.name);
          const w = q.weights.get(r.name)!;
          assert.equal(r.bytes, w.kind === "quant" ? w.q.storageBits / 8 : NaN, r.name);
        }
        llama.dispose();
      }
      const e = maxLogitDiff(runLogits(q, be, TOKENS), want);
      assert.ok(e < 1e-4, `${spec} on ${label}: max |Δlogit| ${e}`);
      console.log(`# ${spec} ${label}: max |Δlogit| vs fake-quant ${e.toExponential(2)}`);
    }
  });
}

test("stories260K with its linears as ggml Q8_1 (no WASM kernel): row-decoded logits = the dequantized model's within 1e-4", async () => {
  // Q8_1 blocks hold 32 weights: the linears whose rows are whole blocks (all but ffn_down's 172)
  const weights = new Map(base.weights);
  const dense = new Map(base.weights);
  let n = 0;
  for (const name of names) {
    const w = base.weights.get(name)!;
    if (w.kind !== "dense" || w.tensor.shape.length !== 2 || w.tensor.shape[1]! % 32 !== 0) continue;
    const v = w.tensor.toF32(), data = new Uint8Array((v.length / 32) * GGML_TYPES[GgmlType.Q8_1].bytesPerBlock);
    quantizeRow(GgmlType.Q8_1, v, data, v.length);
    weights.set(name, { kind: "ggml", type: GgmlType.Q8_1, shape: w.tensor.shape, data });
    dense.set(name, { kind: "dense", tensor: Tensor.fromF32(w.tensor.shape, dequantize(GgmlType.Q8_1, data, v.length)) });
    n++;
  }
  assert.ok(n >= 20, `${n} Q8_1 linears`);
  const want = runLogits({ ...base, weights: dense }, new RefBackend(), TOKENS);
  const backends: [string, Backend][] = [["ref", new RefBackend()]];
  for await (const { b, label } of eachBackend([1, 2])) backends.push([label, b]);
  for (const [label, be] of backends) {
    const e = maxLogitDiff(runLogits({ ...base, weights }, be, TOKENS), want);
    assert.ok(e < 1e-4, `Q8_1 on ${label}: max |Δlogit| ${e}`);
    console.log(`# Q8_1 ${label}: max |Δlogit| vs the dequantized model ${e.toExponential(2)}`);
  }
});

test("a lazily loaded int4:ichannel file runs row-decoded: its bytes are let go after prepare and never read again", async () => {
  const dir = mkdtempSync(join(tmpdir(), "quantlab-rowdec-"));
  try {
    const q = quantizeTensors(base, names, () => "int4:ichannel", { seed: 0, progress: noProgress }).model;
    const path = join(dir, "s260-ichannel.safetensors");
    const { entries, metadata } = quantModelEntries(q);
    await atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata));
    const loaded = await loadModel(path);
    const lazyQuant = [...loaded.weights].filter(([, w]) => w.kind === "quant");
    assert.ok(lazyQuant.length >= names.length - 1);
    const be = backend(VARIANTS[0]!, 1);
    const want = runLogits(fakeQuant(q), new RefBackend(), TOKENS);
    const llama = new Llama(loaded, { contextLength: 64, backend: be });
    const out: Float32Array[] = [new Float32Array(llama.prefill(TOKENS.slice(0, 6), 0))];
    for (let i = 6; i < TOKENS.length; i++) out.push(new Float32Array(llama.forward(TOKENS[i]!, i)));
    for (const [name, w] of lazyQuant) {
      if (name === "token_embd.weight") continue;
      // released after prepare, and the decoder holds the arrays it captured: running did not read the file
      assert.equal(isWeightLoaded(w), false, `${name}: read again after prepare`);
    }
    llama.dispose();
    const e = maxLogitDiff(out, want);
    assert.ok(e < 1e-4, `max |Δlogit| ${e}`);
    await loaded.close?.();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
