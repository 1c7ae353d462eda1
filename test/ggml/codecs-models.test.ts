/**
 * Real model files written by llama.cpp's llama-quantize (shared/data/ggml/stories260K and stories3M, no
 * importance matrix): re-quantizing each tensor of the F32 source with the type llama-quantize chose gives
 * the same bytes, and decoding gives values near the F32 weights.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { openGguf, type GgufFile } from "../../src/io/gguf.js";
import { FileSource } from "../../src/io/node/file.js";
import { dataPath } from "../../src/io/node/data.js";
import { dequantize, hasGgmlCodec, quantize } from "../../src/ggml/codecs.js";
import { GgmlType, ggmlTypeName } from "../../src/ggml/types.js";

const FILES: [string, string][] = [
  ["stories260K", "F16"], ["stories260K", "Q2_K"], ["stories260K", "Q3_K_M"], ["stories260K", "Q4_K_M"],
  ["stories260K", "Q5_K_M"], ["stories260K", "Q6_K"], ["stories260K", "TQ2_0"],
  ["stories3M", "Q8_0"], ["stories3M", "Q6_K"], ["stories3M", "Q4_K_M"], ["stories3M", "Q4_0"],
  ["stories3M", "Q3_K_M"], ["stories3M", "Q2_K"],
];

async function open(model: string, kind: string): Promise<GgufFile> {
  return openGguf(new FileSource(dataPath("ggml", model, `${model}-${kind}.gguf`)));
}

describe("llama-quantize outputs", () => {
  for (const [model, kind] of FILES) {
    test(`${model}-${kind}: every tensor re-quantizes to llama.cpp's bytes and decodes near F32`, async (t) => {
      const src = await open(model, "F32");
      const q = await open(model, kind);
      try {
        const types = new Map<string, number>();
        for (const ti of q.tensors) {
          const si = src.tensor(ti.name);
          assert.ok(si, `${ti.name} missing from the F32 file`);
          assert.deepEqual(ti.shape, si.shape, ti.name);
          if (ti.type === GgmlType.F32) continue;
          assert.ok(hasGgmlCodec(ti.type), `${ti.name}: ${ggmlTypeName(ti.type)}`);
          types.set(ggmlTypeName(ti.type), (types.get(ggmlTypeName(ti.type)) ?? 0) + 1);
          const x = new Float32Array((await src.readTensorBytes(si)).slice().buffer);
          const want = await q.readTensorBytes(ti);
          const got = quantize(ti.type, x, x.length);
          let first = -1;
          for (let i = 0; i < got.length && first < 0; i++) if (got[i] !== want[i]) first = i;
          assert.equal(first, -1, `${ti.name} (${ggmlTypeName(ti.type)} ${ti.shape.join("×")}): first differing byte ${first}`);
          const y = dequantize(ti.type, want, x.length);
          let se = 0;
          let sx = 0;
          for (let i = 0; i < x.length; i++) {
            se += (y[i]! - x[i]!) ** 2;
            sx += x[i]! ** 2;
          }
          // relative RMSE: ternary TQ2_0 on non-ternary weights is coarse; 2-bit and up stay below 0.6
          const limit = ti.type === GgmlType.TQ2_0 ? 1.2 : 0.6;
          assert.ok(Math.sqrt(se / sx) < limit, `${ti.name}: relative RMSE ${Math.sqrt(se / sx)}`);
        }
        t.diagnostic(`${model}-${kind}: ${[...types].map(([k, v]) => `${v}×${k}`).join(", ")}`);
      } finally {
        await src.close();
        await q.close();
      }
    });
  }
});
