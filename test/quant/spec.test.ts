import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { QuantlabError } from "../../src/core/errors.js";
import { canonicalSpec, parseSpec, printSpec, toSpec, type QuantSpec } from "../../src/quant/spec.js";

function specError(s: string): QuantlabError {
  try {
    parseSpec(s);
  } catch (e) {
    assert.ok(e instanceof QuantlabError, `non-QuantlabError for ${s}: ${String(e)}`);
    assert.equal(e.code, "E_SPEC");
    return e;
  }
  assert.fail(`spec "${s}" parsed but should not`);
}

describe("spec parse/print", () => {
  // [typed, canonical]
  const cases: [string, string][] = [
    ["int4:g128:asym", "int4:g128:asym"],
    ["int8:channel", "int8:channel"],
    ["int8", "int8:channel"],
    ["INT8:Channel", "int8:channel"],
    ["fp8_e4m3:channel", "fp8_e4m3:channel"],
    ["fp8:tensor", "fp8_e4m3:tensor"],
    ["nf4:g64:dq", "nf4:g64:dq"],
    ["ternary:channel", "ternary:channel"],
    ["ternary:channel:absmean", "ternary:channel"],
    ["ternary:g64:twn:trits", "ternary:g64:twn:trits"],
    ["mxfp4", "mxfp4"],
    ["mxfp4:g32", "mxfp4"],
    ["mxfp8", "mxfp8_e4m3"],
    ["mxfp6", "mxfp6_e3m2"],
    ["mxfp6_e2m3", "mxfp6_e2m3"],
    ["mxfp8_e5m2", "mxfp8_e5m2"],
    ["mxint8", "mxint8"],
    ["nvfp4", "nvfp4"],
    ["nvfp4:sr", "nvfp4:sr"],
    ["bfp8", "bfp8"],
    ["bfp4:g16", "bfp4:g16"],
    ["pow2:4bit:channel", "pow2_4:channel"],
    ["pow2:6bit:g32", "pow2_6:g32"],
    ["int3:g32:mse", "int3:g32:mse"],
    ["int3:mse:g32", "int3:g32:mse"],
    ["int4:g32:sr", "int4:g32:sr"],
    ["int4:g32:rne", "int4:g32"],
    ["int8:tensor:a8", "int8:tensor:a8"],
    ["int8:channel:a8s", "int8:channel:a8s"],
    ["int4:g128:afp8", "int4:g128:afp8"],
    ["int8:tensor:a4s", "int8:tensor:a4s"],
    ["fp16", "fp16"],
    ["bf16", "bf16"],
    ["fp16:none", "fp16"],
    ["fp16:tensor", "fp16:tensor"],
    ["int4:g32:scale=f16", "int4:g32:scale=f16"],
    ["int4:g32:scale=u8", "int4:g32:dq"],
    ["int4:g32:scale=u6:sb=8", "int4:g32:scale=u6:sb=8"],
    ["int4:g16:scale=fp8:sb=tensor", "int4:g16:scale=fp8:sb=tensor"],
    ["nf4:g64:dq:sb=128", "nf4:g64:scale=u8:sb=128"],
    ["int4:g32:scale=e8m0", "int4:g32:scale=e8m0"],
    ["int4:g32:scale=f32", "int4:g32"],
    ["int4:g64:outliers=0.5", "int4:g64:outliers=0.5"],
    ["int4:g64:outliers=1%", "int4:g64:outliers=1"],
    ["int3:channel:p99.9", "int3:channel:p99.9"],
    ["int8:channel:kl", "int8:channel:kl"],
    ["int4:b64x64", "int4:b64x64"],
    ["int4:ichannel:symfull", "int4:ichannel:symfull"],
    ["int4:layer", "int4:layer"],
    ["int4:g32:asymf:mse", "int4:g32:asymf:mse"],
    ["int1:channel:asym", "int1:channel:asym"],
    ["int16:tensor", "int16:tensor"],
    ["zero:g32", "zero:g32"],
    ["0bit:g32", "zero:g32"],
    ["binary:channel", "binary:channel"],
    ["logsqrt2:5bit:g64", "logsqrt2_5:g64"],
  ];
  for (const [typed, canonical] of cases) {
    test(`${typed} → ${canonical}`, () => {
      const s = parseSpec(typed);
      assert.equal(printSpec(s), canonical);
      assert.deepEqual(parseSpec(printSpec(s)), s); // print is a fixed point of parse
      assert.deepEqual(JSON.parse(JSON.stringify(s)), s); // plain JSON
      assert.equal(s.kind, "quantlab.quant-spec");
      assert.equal(s.version, 1);
    });
  }

  test("fields of a few specs", () => {
    const a = parseSpec("int4:g128:asym");
    assert.deepEqual(a.granularity, { kind: "group", size: 128 });
    assert.equal(a.scheme, "asym");
    assert.equal(a.bits, 4);
    const n = parseSpec("nvfp4");
    assert.equal(n.format, "fp4_e2m1");
    assert.deepEqual(n.granularity, { kind: "group", size: 16 });
    assert.deepEqual(n.scale, { dtype: "fp8", superBlock: "tensor" });
    const m = parseSpec("mxint8");
    assert.equal(m.scheme, "symfull");
    assert.deepEqual(m.scale, { dtype: "e8m0" });
    assert.deepEqual(parseSpec("nf4:g64:dq").scale, { dtype: "u8", superBlock: 256 });
    assert.deepEqual(parseSpec("int8:tensor:a8").activations, { format: "int", bits: 8, mode: "dynamic" });
    assert.deepEqual(parseSpec("int8:channel:a8s").activations, { format: "int", bits: 8, mode: "static" });
    assert.deepEqual(parseSpec("int3:g32:p99.5").calibration, { method: "percentile", percentile: 99.5 });
    assert.equal(parseSpec("pow2:4bit:channel").bits, 4);
    assert.equal(parseSpec("pow2:6bit:channel").bits, 6);
    assert.equal(parseSpec("int4:g32:sr").rounding, "stochastic");
  });

  test("toSpec accepts objects and rejects foreign ones", () => {
    const s = parseSpec("int4:g32");
    assert.equal(canonicalSpec(s), "int4:g32");
    assert.throws(() => toSpec({ ...s, kind: "other" } as unknown as QuantSpec), /expected kind "quantlab.quant-spec"/);
  });

  // every error path: [spec, message fragment]
  const errors: [string, RegExp][] = [
    ["", /empty spec; expected <format>/],
    ["int4::g32", /empty part 2/],
    ["int17", /"int17": integer formats have 1\.\.16 bits/],
    ["int0:channel", /integer formats have 1\.\.16 bits/],
    ["foo4:g32", /unknown format "foo4"; valid formats: int1\.\.int16, .*nf4.*presets: mxfp8_e4m3/],
    ["int4:g32:wat", /unknown part "wat" \(part 3\); valid parts: granularity \(none, tensor/],
    ["int4:g0", /"g0": group size must be an integer in 1\.\./],
    ["int4:b0x4", /"b0x4": block rows must be/],
    ["int4:g32:channel", /two granularity parts, "g32" and "channel"/],
    ["int4:g32:sym:asym", /two scheme parts/],
    ["int4:g32:mse:kl", /two calibration parts/],
    ["int4:g32:sr:rne", /two rounding parts/],
    ["nvfp4:g64", /"g64": nvfp4 has fixed blocks of 16 \(g16\)/],
    ["mxfp4:g16", /mxfp4 has fixed blocks of 32/],
    ["mxfp4:channel", /mxfp4 has fixed blocks of 32/],
    ["bfp8:channel", /bfp8 blocks are groups along the row; use g<N>/],
    ["bfp1", /mantissa bits must be in 2\.\.16/],
    ["mxfp4:asym", /mxfp4 fixes its scheme/],
    ["nvfp4:scale=f16", /nvfp4 fixes how its scales are stored/],
    ["mxfp4:4bit", /mxfp4 has a fixed element width/],
    ["nf4:g64:asym", /"asym": schemes sym\/symfull\/asym\/asymf apply to integer grids .* nf4 is a codebook format/],
    ["fp8_e4m3:channel:sym", /schemes .* apply to integer grids/],
    ["int1:channel", /restricted symmetric needs at least 2 bits; use int1:asym/],
    ["int4:none", /"none": int4 needs a scale/],
    ["nf4:none", /"none": nf4 needs a scale/],
    ["int4:g32:scale=f8", /unknown scale dtype "f8"; valid: f32, f16, bf16, e8m0, fp8, u8, u6, u4/],
    ["int4:g32:sb=64", /super-blocks need quantized scales/],
    ["int4:g32:scale=u8:sb=0", /super-block size .* must be an integer/],
    ["fp16:scale=f16", /granularity none has no scales to store/],
    ["fp16:mse", /granularity none has no scale to calibrate/],
    ["int4:g32:absmean", /absmean\/twn scales are for ternary and binary formats/],
    ["binary:channel:twn", /threshold calibration is for ternary formats/],
    ["int4:g32:asym:kl", /KL \(entropy\) calibration picks a symmetric \|x\| threshold; use mse/],
    ["int4:g32:p40", /percentile must be in \(50, 100\]/],
    ["int4:g32:p100.5", /percentile must be in \(50, 100\]/],
    ["int4:g32:trits", /trits.*for ternary formats/],
    ["int4:g32:a1", /activation bits must be in 2\.\.16/],
    ["int4:g32:a8:a4s", /two activations parts/],
    ["int4:g32:outliers=0", /outlier percent must be in \(0, 50\]/],
    ["int4:g32:outliers=x", /outlier percent must be in \(0, 50\]/],
    ["int4:4bit:g32", /the width of int4 is in its name/],
    ["nf4:4bit:g32", /format "nf4" has a fixed width/],
    ["pow2:12bit:g32", /pow2 comes in 2bit, 3bit, 4bit/],
    ["zero:g32:mse", /the 0-bit format has no range to calibrate/],
    ["zero:g32:scale=e8m0", /the 0-bit format stores a signed group mean/],
  ];
  for (const [s, re] of errors) {
    test(`rejects ${JSON.stringify(s)}`, () => {
      const e = specError(s);
      assert.match(e.message, re);
      assert.ok(e.message.startsWith(`spec "${s}"`), e.message);
      assert.ok(!e.message.includes("\n"), "one line");
    });
  }

  test("property: any accepted combination prints to a fixed point", () => {
    const formats = ["int2", "int3", "int4", "int8", "nf4", "fp8_e4m3", "fp4_e2m1", "ternary", "binary", "pow2_4", "mxfp4", "nvfp4", "bfp6", "fp16", "zero"];
    const parts = ["tensor", "channel", "ichannel", "layer", "g32", "g7", "b4x8", "none", "sym", "symfull", "asym", "asymf", "minmax", "mse", "kl", "p99", "absmean", "twn",
      "rne", "sr", "scale=f16", "scale=bf16", "scale=e8m0", "scale=fp8", "scale=u6", "dq", "sb=16", "sb=tensor", "a8", "a8s", "afp8", "outliers=1", "trits"];
    fc.assert(fc.property(fc.constantFrom(...formats), fc.uniqueArray(fc.constantFrom(...parts), { maxLength: 5 }), (f, ps) => {
      const text = [f, ...ps].join(":");
      let s: QuantSpec;
      try {
        s = parseSpec(text);
      } catch (e) {
        assert.ok(e instanceof QuantlabError && e.code === "E_SPEC", String(e));
        return;
      }
      const p = printSpec(s);
      assert.deepEqual(parseSpec(p), s, `${text} → ${p}`);
      assert.equal(printSpec(parseSpec(p)), p);
    }), { numRuns: 3000, seed: 42 });
  });
});
