import { test } from "node:test";
import assert from "node:assert/strict";
import { BLOCK_FIELD_BYTES, GGML_BLOCK_LAYOUT, GGML_TYPE_SIZE, GgmlType, ggmlTypeName } from "../../src/ggml/types.js";
import { GGML_CODEC_TYPES } from "../../src/ggml/codecs.js";

test("every codec type documents its block layout, and the fields add up to bytesPerBlock", () => {
  assert.equal(GGML_CODEC_TYPES.length, 19);
  for (const t of GGML_CODEC_TYPES) {
    const layout = GGML_BLOCK_LAYOUT[t];
    assert.ok(layout, `${ggmlTypeName(t)} has no layout`);
    const bytes = layout.reduce((s, f) => s + BLOCK_FIELD_BYTES[f.type] * f.count, 0);
    assert.equal(bytes, GGML_TYPE_SIZE[t]!.bytesPerBlock, `${ggmlTypeName(t)}: fields add up to ${bytes}`);
    assert.equal(new Set(layout.map((f) => f.name)).size, layout.length, `${ggmlTypeName(t)}: duplicate field names`);
  }
});

test("block sizes follow ggml-common.h's static_asserts (bits per weight)", () => {
  // bpw = 8·bytes/blockSize, the figures quoted in ggml-common.h comments
  const bpw = (t: GgmlType): number => (8 * GGML_TYPE_SIZE[t]!.bytesPerBlock) / GGML_TYPE_SIZE[t]!.blockSize;
  assert.equal(bpw(GgmlType.Q2_K), 2.625);
  assert.equal(bpw(GgmlType.Q3_K), 3.4375);
  assert.equal(bpw(GgmlType.Q4_K), 4.5);
  assert.equal(bpw(GgmlType.Q5_K), 5.5);
  assert.equal(bpw(GgmlType.Q6_K), 6.5625);
  assert.equal(bpw(GgmlType.TQ1_0), 1.6875);
  assert.equal(bpw(GgmlType.TQ2_0), 2.0625);
  assert.equal(bpw(GgmlType.IQ4_XS), 4.25);
  assert.equal(bpw(GgmlType.Q4_0), 4.5);
  assert.equal(bpw(GgmlType.Q8_0), 8.5);
});
