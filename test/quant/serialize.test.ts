/** QTensor ↔ safetensors entries (quant/serialize.ts): round trips for every kind of spec, entry names and dtypes, hostile entries. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { QuantlabError } from "../../src/core/errors.js";
import { Rng } from "../../src/core/rng.js";
import { fromEntries, isQuantEntryName, quantizedNames, toEntries, type TensorEntry } from "../../src/quant/serialize.js";
import { quantizeTensor } from "../../src/quant/tensor.js";

const SPECS = ["int4:g128:asym", "int8:channel", "fp8_e4m3:channel", "nf4:g64:dq", "ternary:channel", "ternary:g64:trits", "mxfp4", "nvfp4", "pow2:4bit:channel",
  "int3:g32:mse", "int4:g32:sr", "mxint8", "mxfp6_e2m3", "bfp8:g16", "fp16", "bf16", "zero:g32", "binary:channel", "int4:g32:asymf", "int4:g32:asymf:scale=f16",
  "int4:b8x8:scale=bf16", "int4:ichannel:scale=e8m0", "int4:g32:scale=u6:sb=8", "int4:g32:scale=u4:sb=tensor", "int4:g64:outliers=1", "int5:g32:asym:dq", "int16:channel"];

describe("safetensors entries", () => {
  const rng = new Rng(12);
  const w = rng.fillNormal(new Float32Array(24 * 172), 0.05);
  for (const spec of SPECS) {
    test(`${spec}: toEntries → fromEntries gives the same tensor`, () => {
      const q = quantizeTensor(w, [24, 172], spec, { seed: 3 });
      const { tensors, metadata } = toEntries("blk.0.ffn_down.weight", q);
      assert.deepEqual(quantizedNames(metadata), ["blk.0.ffn_down.weight"]);
      assert.deepEqual(JSON.parse(metadata["quantlab.quant.blk.0.ffn_down.weight"]!), { spec: q.spec, shape: [24, 172], layout: 1 });
      for (const name of Object.keys(tensors)) assert.ok(isQuantEntryName(name), name);
      // copy the bytes, as a file round trip would
      const copy = new Map(Object.entries(tensors).map(([k, e]) => [k, { ...e, bytes: e.bytes.slice() }]));
      const back = fromEntries("blk.0.ffn_down.weight", (n) => copy.get(n), metadata);
      assert.equal(back.spec, q.spec);
      assert.equal(back.storageBits, q.storageBits);
      assert.deepEqual(back.dequantize(), q.dequantize());
    });
  }

  test("entry names, dtypes and shapes for int4:g32:asym on 172-wide rows", () => {
    const q = quantizeTensor(w, [24, 172], "int4:g32:asym");
    const { tensors } = toEntries("w", q);
    const shapes = Object.fromEntries(Object.entries(tensors).map(([k, e]) => [k, [e.dtype, e.shape]]));
    assert.deepEqual(shapes, { "w.qcodes": ["u8", [(24 * 172) / 2]], "w.qscale": ["f32", [24 * 6]], "w.qzero": ["u8", [(24 * 6) / 2]] });
    const n = quantizeTensor(w, [24, 172], "nf4:g64:dq");
    const nt = toEntries("w", n).tensors;
    assert.deepEqual(Object.fromEntries(Object.entries(nt).map(([k, e]) => [k, [e.dtype, e.shape]])),
      { "w.qcodes": ["u8", [(24 * 172) / 2]], "w.qscale": ["u8", [72]], "w.qsuper": ["f32", [1]] });
  });

  test("hostile entries: every inconsistency is an E_FORMAT naming the tensor", () => {
    const q = quantizeTensor(w, [24, 172], "int4:g32:asym");
    const { tensors, metadata } = toEntries("w", q);
    const get = (over: Record<string, TensorEntry | undefined>) => (n: string) => (n in over ? over[n] : tensors[n]);
    const expectErr = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof QuantlabError && re.test(e.message));
    expectErr(() => fromEntries("w", get({ "w.qcodes": undefined }), metadata), /w: missing tensor w\.qcodes for spec int4:g32:asym/);
    expectErr(() => fromEntries("w", get({ "w.qcodes": { dtype: "u8", shape: [3], bytes: new Uint8Array(3) } }), metadata), /w\.qcodes: 3 elements, expected 2064/);
    expectErr(() => fromEntries("w", get({ "w.qscale": { dtype: "f16", shape: [144], bytes: new Uint8Array(288) } }), metadata), /w\.qscale: dtype f16, expected f32/);
    expectErr(() => fromEntries("w", get({ "w.qzero": { dtype: "u8", shape: [1], bytes: new Uint8Array(1) } }), metadata), /w\.qzero: 1 elements, expected 72/);
    expectErr(() => fromEntries("w", get({}), { "quantlab.quant.w": "{not json" }), /w: quant metadata is not JSON/);
    expectErr(() => fromEntries("w", get({}), { "quantlab.quant.w": JSON.stringify({ spec: "int4:g32:asym", shape: [24, 172], layout: 9 }) }), /w: quant layout 9/);
    expectErr(() => fromEntries("w", get({}), { "quantlab.quant.w": JSON.stringify({ spec: "int4:g32:asym", shape: [24, -1], layout: 1 }) }), /w: bad shape/);
    expectErr(() => fromEntries("w", get({}), { "quantlab.quant.w": JSON.stringify({ spec: "int17:g32", shape: [24, 172], layout: 1 }) }), /int17/);
    expectErr(() => fromEntries("v", get({}), metadata), /v: no "quantlab\.quant\.v" metadata/);
    const mx = quantizeTensor(w, [24, 172], "mxfp4");
    const mxe = toEntries("m", mx);
    const bad = { ...mxe.tensors["m.qscale"]!, bytes: mxe.tensors["m.qscale"]!.bytes.slice() };
    bad.bytes[0] = 0xff;
    expectErr(() => fromEntries("m", (n) => (n === "m.qscale" ? bad : mxe.tensors[n]), mxe.metadata), /e8m0 NaN/);
    const o = quantizeTensor(w, [24, 172], "int4:g64:outliers=1");
    const oe = toEntries("o", o);
    const idx = new Int32Array(oe.tensors["o.qoutidx"]!.bytes.slice().buffer);
    idx[0] = 99999;
    expectErr(() => fromEntries("o", (n) => (n === "o.qoutidx" ? { ...oe.tensors[n]!, bytes: new Uint8Array(idx.buffer) } : oe.tensors[n]), oe.metadata), /o\.qoutidx: index 99999 outside 4128 elements/);
  });
});
