/**
 * llama-quantize presets: for every file llama.cpp's llama-quantize wrote in shared/data/ggml
 * (stories260K: 64/172-wide rows, so fall-backs everywhere; stories3M: every type fits), our mix gives
 * every tensor the type llama.cpp gave it.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { metaNumber, openGguf } from "../../src/io/gguf.js";
import { ggufConfig } from "../../src/io/gguf-model.js";
import { FileSource } from "../../src/io/node/file.js";
import { dataPath } from "../../src/io/node/data.js";
import { GGML_PRESETS, ggmlMix, parseGgmlPreset, type GgmlPreset } from "../../src/ggml/mix.js";
import { GgmlType, ggmlTypeName } from "../../src/ggml/types.js";

async function tensorsOf(path: string) {
  const f = await openGguf(new FileSource(path));
  try {
    return { config: ggufConfig(f), fileType: metaNumber(f, "general.file_type"), tensors: f.tensors.map((t) => ({ name: t.name, shape: t.shape, type: t.type })) };
  } finally {
    await f.close();
  }
}

describe("llama-quantize mixes", () => {
  for (const model of ["stories260K", "stories3M"]) {
    const files = readdirSync(dataPath("ggml", model)).filter((f) => f.endsWith(".gguf") && !f.endsWith("-F32.gguf"));
    test(`${model}: every tensor of llama.cpp's ${files.length} files gets llama.cpp's type`, async (t) => {
      const src = await tensorsOf(dataPath("ggml", model, `${model}-F32.gguf`));
      assert.ok(files.length >= 6, `${model}: only ${files.length} files`);
      for (const file of files) {
        const m = /^.*?-([A-Z0-9_]+?)(-imat)?\.gguf$/.exec(file);
        assert.ok(m, file);
        const preset = parseGgmlPreset(m[1]!);
        const q = await tensorsOf(dataPath("ggml", model, file));
        const c = src.config;
        const mix = ggmlMix(preset, src.tensors, { nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads }, { imatrix: m[2] !== undefined });
        const want = new Map(q.tensors.map((x) => [x.name, x.type]));
        assert.equal(mix.length, want.size, file);
        const wrong = mix.filter((x) => want.get(x.name) !== x.type).map((x) => `${x.name}: ours ${ggmlTypeName(x.type)}, llama.cpp ${ggmlTypeName(want.get(x.name)!)}`);
        assert.deepEqual(wrong, [], file);
        assert.equal(q.fileType, GGML_PRESETS[preset].ftype, `${file}: general.file_type`);
        const fallbacks = mix.filter((x) => x.fallback).length;
        t.diagnostic(`${file}: ${mix.length} tensors agree (${fallbacks} fall-backs)`);
      }
    });
  }

  test("stories3M Q4_K_M: attn_v and ffn_down of layers 2, 3 (use_more_bits of 4) are Q6_K, output Q6_K", () => {
    const shapes = [{ name: "token_embd.weight", shape: [512, 256] }, { name: "output.weight", shape: [512, 256] }];
    for (let l = 0; l < 4; l++) {
      shapes.push({ name: `blk.${l}.attn_v.weight`, shape: [128, 256] }, { name: `blk.${l}.ffn_down.weight`, shape: [256, 768] }, { name: `blk.${l}.attn_norm.weight`, shape: [256] });
    }
    const mix = ggmlMix("Q4_K_M", shapes, { nLayers: 4, nHeads: 8, nKvHeads: 4 });
    const got = Object.fromEntries(mix.map((x) => [x.name, ggmlTypeName(x.type)]));
    assert.equal(got["output.weight"], "Q6_K");
    assert.equal(got["token_embd.weight"], "Q4_K");
    for (let l = 0; l < 4; l++) {
      assert.equal(got[`blk.${l}.attn_v.weight`], l >= 2 ? "Q6_K" : "Q4_K");
      assert.equal(got[`blk.${l}.ffn_down.weight`], l >= 2 ? "Q6_K" : "Q4_K");
      assert.equal(got[`blk.${l}.attn_norm.weight`], "F32");
    }
  });

  test("32 layers: use_more_bits picks llama.cpp's layers; tied embedding takes the output rule", () => {
    const shapes = [{ name: "token_embd.weight", shape: [1000, 4096] }];
    for (let l = 0; l < 32; l++) shapes.push({ name: `blk.${l}.attn_v.weight`, shape: [1024, 4096] });
    const mix = ggmlMix("Q4_K_M", shapes, { nLayers: 32, nHeads: 32, nKvHeads: 8 });
    const bumped = mix.filter((x) => x.type === GgmlType.Q6_K && x.name.startsWith("blk.")).map((x) => Number(x.name.split(".")[1]));
    // i < 4, i >= 28, (i − 4) % 3 == 2
    assert.deepEqual(bumped, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    assert.equal(mix[0]!.type, GgmlType.Q6_K, "no output.weight: the embedding is the output");
  });

  test("--pure, float presets, fall-backs and refusals", () => {
    const shapes = [{ name: "output.weight", shape: [512, 64] }, { name: "blk.0.ffn_down.weight", shape: [64, 172] }, { name: "blk.0.attn_q.weight", shape: [64, 64] }, { name: "output_norm.weight", shape: [64] }];
    const info = { nLayers: 1, nHeads: 8, nKvHeads: 4 };
    const pure = ggmlMix("Q4_K_M", shapes, info, { pure: true });
    assert.deepEqual(pure.map((x) => ggmlTypeName(x.requested)), ["Q4_K", "Q4_K", "Q4_K", "F32"]);
    assert.deepEqual(pure.map((x) => ggmlTypeName(x.type)), ["Q5_0", "F16", "Q5_0", "F32"]);
    assert.match(pure[1]!.fallback!, /row width 172/);
    const q8 = ggmlMix("Q8_0", shapes, info);
    assert.deepEqual(q8.map((x) => ggmlTypeName(x.type)), ["Q8_0", "F16", "Q8_0", "F32"]);
    assert.equal(q8[1]!.llamaRefuses, true, "llama.cpp refuses Q8_0 on a 172-wide row");
    assert.equal(q8[2]!.llamaRefuses, undefined);
    const f16 = ggmlMix("F16", shapes, info);
    assert.deepEqual(f16.map((x) => ggmlTypeName(x.type)), ["F16", "F16", "F16", "F32"]);
    assert.equal(f16.filter((x) => x.fallback).length, 0);
    for (const p of Object.keys(GGML_PRESETS) as GgmlPreset[]) assert.equal(parseGgmlPreset(p.toLowerCase()), p);
    assert.throws(() => parseGgmlPreset("Q4_K_X"), /not a llama-quantize preset/);
  });
  test("imatrix-dependent choices: Q4_0 guards ffn_down of the first eighth with Q4_1, IQ4_XS bumps it to Q5_K without one", () => {
    const shapes: { name: string; shape: number[] }[] = [];
    for (let l = 0; l < 16; l++) shapes.push({ name: `blk.${l}.ffn_down.weight`, shape: [256, 768] });
    const info = { nLayers: 16, nHeads: 8, nKvHeads: 8 };
    const types = (p: GgmlPreset, imatrix: boolean) => ggmlMix(p, shapes, info, { imatrix }).map((x) => ggmlTypeName(x.type));
    assert.deepEqual(types("Q4_0", true).slice(0, 3), ["Q4_1", "Q4_1", "Q4_0"]);
    assert.deepEqual(types("Q4_0", false).slice(0, 3), ["Q4_0", "Q4_0", "Q4_0"]);
    assert.deepEqual(types("IQ4_XS", false).slice(0, 3), ["Q5_K", "Q5_K", "IQ4_XS"]);
    assert.deepEqual(types("IQ4_XS", true).slice(0, 3), ["IQ4_XS", "IQ4_XS", "IQ4_XS"]);
    // Q3_K_M: first sixteenth Q5_K, the rest Q4_K
    assert.deepEqual(types("Q3_K_M", false).slice(0, 2), ["Q5_K", "Q4_K"]);
  });
});
