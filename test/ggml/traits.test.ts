// Walks the ggml type-traits table (src/ggml/types.ts) and checks every row against the code keyed by
// it: the codecs (encode/decode sizes, layouts), the vec-dot activation types, the row-width fall-backs,
// the llama_ftype each preset records, the WASM kernel tables, and GGUF reading and writing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GGML_CODEC_TYPES, dequantize, hasGgmlCodec, quantize } from "../../src/ggml/codecs.js";
import { activationRowBytes, quantizeActivationsRow, vecDot, vecDotType } from "../../src/ggml/dot.js";
import { ggmlRowFit } from "../../src/ggml/fallback.js";
import { GGML_PRESETS } from "../../src/ggml/mix.js";
import { BLOCK_FIELD_BYTES, GGML_TYPE_IDS, GGML_TYPES, GgmlType, ggmlRowBytes, ggmlTypeName } from "../../src/ggml/types.js";
import { GgufWriter, MemorySink, openGguf } from "../../src/io/gguf.js";
import { BufferSource } from "../../src/io/source.js";
import { KERNEL_NAMES, NATIVE, REPACK } from "../../src/kernels/wasm/layouts.js";

function randomF32(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1);
}

test("codec rows: the flag matches the codec table, layouts add up, quantize/dequantize sizes follow the row", () => {
  assert.deepEqual(GGML_CODEC_TYPES, GGML_TYPE_IDS.filter((t) => GGML_TYPES[t].codec));
  for (const t of GGML_TYPE_IDS) {
    const r = GGML_TYPES[t];
    const name = ggmlTypeName(t);
    assert.equal(hasGgmlCodec(t), r.codec, name);
    if (r.layout) assert.equal(r.layout.reduce((s, f) => s + BLOCK_FIELD_BYTES[f.type] * f.count, 0), r.bytesPerBlock, `${name} layout`);
    if (!r.codec) {
      assert.throws(() => quantize(t, new Float32Array(r.blockSize)), /has no codec in quantlab/, name);
      continue;
    }
    assert.ok(r.layout, `${name}: a codec type documents its layout`);
    const n = 2 * r.blockSize;
    const x = randomF32(n, t + 1);
    const bytes = quantize(t, x);
    assert.equal(bytes.length, ggmlRowBytes(t, n), `${name} encoded size`);
    const back = dequantize(t, bytes, n);
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(back[i]! - x[i]!));
    // ternary types keep only sign/zero; everything else is within a coarse step of the values
    assert.ok(err <= (t === GgmlType.TQ1_0 || t === GgmlType.TQ2_0 ? 1.01 : 0.6), `${name}: decode of encode off by ${err}`);
  }
});

test("vec-dot rows: the activation type is a codec type, and a dot runs on rows of the weight's block size", () => {
  for (const t of GGML_TYPE_IDS) {
    const at = GGML_TYPES[t].vecDot;
    if (at === undefined) {
      assert.throws(() => vecDotType(t), /no dot product/, ggmlTypeName(t));
      continue;
    }
    assert.ok(GGML_TYPES[t].codec && GGML_TYPES[at].codec, `${ggmlTypeName(t)} × ${ggmlTypeName(at)}`);
    const n = Math.max(GGML_TYPES[t].blockSize, GGML_TYPES[at].blockSize);
    assert.equal(n % GGML_TYPES[at].blockSize, 0);
    const w = quantize(t, randomF32(n, 3));
    const a = quantizeActivationsRow(t, randomF32(n, 4), n);
    assert.equal(a.length, activationRowBytes(t, n));
    assert.ok(Number.isFinite(vecDot(t, w, a, n)), ggmlTypeName(t));
  }
});

test("fall-back rows: a 32-block (or F16) type used for rows that are not whole blocks; presets record each row's ftype", () => {
  for (const t of GGML_TYPE_IDS) {
    const r = GGML_TYPES[t];
    if (r.blockSize === 1) {
      assert.equal(r.fallback, undefined);
      continue;
    }
    const fit = ggmlRowFit(t, 96 + (r.blockSize === 32 ? 16 : 0)); // 96: whole 32-blocks, no whole 256-block; 112: neither
    assert.equal(fit.fits, false);
    if (r.fallback === undefined) assert.ok(fit.llamaRefuses && fit.use === GgmlType.F16, ggmlTypeName(t));
    else {
      assert.equal(GGML_TYPES[r.fallback].blockSize, 32, `${ggmlTypeName(t)} falls back to a 32-block type`);
      assert.ok(GGML_TYPES[r.fallback].codec);
      assert.equal(fit.use, r.fallback);
      assert.equal(ggmlRowFit(t, 112).use, GgmlType.F16, "no whole 32-block either: F16");
    }
  }
  for (const t of GGML_TYPE_IDS) {
    const ft = GGML_TYPES[t].ftype;
    if (ft === undefined) continue;
    const preset = Object.values(GGML_PRESETS).find((p) => p.ftype === ft);
    assert.ok(preset && preset.base === t, `${ggmlTypeName(t)}: ftype ${ft} is the preset of that base type`);
  }
});

test("kernel rows: every REPACK and NATIVE type is a codec type with the table's sizes, and every kind has a name", () => {
  for (const table of [REPACK, NATIVE]) {
    for (const [k, row] of Object.entries(table)) {
      const t = Number(k) as GgmlType;
      assert.ok(GGML_TYPES[t].codec, ggmlTypeName(t));
      assert.equal(row!.blockSize, GGML_TYPES[t].blockSize);
      assert.equal(row!.bytesPerBlock, GGML_TYPES[t].bytesPerBlock);
      const kinds = [row!.kind, (row as { interleave4?: number }).interleave4].filter((x) => x !== undefined);
      assert.ok(kinds.length > 0, `${ggmlTypeName(t)}: a row names a kernel`);
      for (const kind of kinds) assert.ok(KERNEL_NAMES[kind!], `kind ${kind}`);
    }
  }
  for (const row of Object.values(NATIVE)) if (row!.interleave4 !== undefined) assert.match(KERNEL_NAMES[row!.interleave4]!, /4 rows interleaved/);
  // a type with only an interleaved kernel must have a repack for its other matrices
  for (const [k, row] of Object.entries(NATIVE)) if (row!.kind === undefined) assert.ok(REPACK[Number(k) as GgmlType], `${ggmlTypeName(Number(k) as GgmlType)}: repack row`);
  assert.equal(KERNEL_NAMES[NATIVE[GgmlType.Q6_K]!.kind!], "q6_k (ggml blocks)");
});

test("GGUF rows: a file with one tensor of every type in the table reads back with the row's byte sizes", async () => {
  const sink = new MemorySink();
  const w = new GgufWriter(sink, "all-types.gguf");
  const tensors = GGML_TYPE_IDS.map((t) => {
    const shape = [3, 2 * GGML_TYPES[t].blockSize];
    const bytes = 3 * ggmlRowBytes(t, shape[1]!)!;
    return { name: `t${t}`, shape, type: t, data: Uint8Array.from({ length: bytes }, (_, i) => (i * 31 + t) & 0xff) };
  });
  for (const t of tensors) w.addTensor(t);
  await w.writeHeader();
  for (const t of tensors) await w.writeTensorData(t.name, t.data);
  w.finish();
  const f = await openGguf(new BufferSource("all-types.gguf", sink.bytes()));
  assert.equal(f.tensors.length, GGML_TYPE_IDS.length);
  for (const t of tensors) {
    const info = f.tensor(t.name)!;
    assert.equal(info.type, t.type);
    assert.equal(info.byteLength, t.data.length, ggmlTypeName(t.type));
    assert.deepEqual(await f.readTensorBytes(info), t.data);
  }
});
