import { test } from "node:test";
import assert from "node:assert/strict";
import { BLOCK_FIELD_BYTES, GGML_TYPE_IDS, GGML_TYPES, GgmlType, blockFieldOffset, ggmlTypeByName, ggmlTypeName, ggmlTypeTraits } from "../../src/ggml/types.js";
import { GGML_CODEC_TYPES } from "../../src/ggml/codecs.js";

test("every codec type documents its block layout, and the fields add up to bytesPerBlock", () => {
  assert.equal(GGML_CODEC_TYPES.length, 19);
  for (const t of GGML_CODEC_TYPES) {
    const layout = GGML_TYPES[t].layout;
    assert.ok(layout, `${ggmlTypeName(t)} has no layout`);
    const bytes = layout.reduce((s, f) => s + BLOCK_FIELD_BYTES[f.type] * f.count, 0);
    assert.equal(bytes, GGML_TYPES[t].bytesPerBlock, `${ggmlTypeName(t)}: fields add up to ${bytes}`);
    assert.equal(new Set(layout.map((f) => f.name)).size, layout.length, `${ggmlTypeName(t)}: duplicate field names`);
  }
  // field offsets follow from the layout (ggml-common.h: block_q6_K's d after ql[128] qh[64] scales[16])
  assert.equal(blockFieldOffset(GgmlType.Q6_K, "d"), 208);
  assert.equal(blockFieldOffset(GgmlType.Q4_K, "qs"), 16);
  assert.throws(() => blockFieldOffset(GgmlType.Q4_0, "dmin"), /Q4_0: no block field "dmin"/);
});

test("block sizes follow ggml-common.h's static_asserts (bits per weight)", () => {
  // bpw = 8·bytes/blockSize, the figures quoted in ggml-common.h comments
  const bpw = (t: GgmlType): number => (8 * GGML_TYPES[t].bytesPerBlock) / GGML_TYPES[t].blockSize;
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
  assert.equal(bpw(GgmlType.IQ2_XXS), 2.0625);
  assert.equal(bpw(GgmlType.IQ1_S), 1.5625);
});

test("names and ids: every row's name maps back to its id, unknown ids have no traits", () => {
  assert.equal(GGML_TYPE_IDS.length, 31);
  for (const t of GGML_TYPE_IDS) {
    assert.equal(ggmlTypeByName(GGML_TYPES[t].name.toLowerCase()), t);
    assert.equal(GgmlType[t], GGML_TYPES[t].name, "the row's name is the enum member's");
  }
  for (const id of [4, 5, 31, 32, 33, 36, 1000]) assert.equal(ggmlTypeTraits(id), undefined, `id ${id}`);
  assert.equal(ggmlTypeName(4 as GgmlType), "type#4");
});
