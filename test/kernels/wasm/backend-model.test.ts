// The Llama forward pass on the WASM backend gives the reference backend's stories260K logits (f32
// weights: f32 kernel, no activation quantization) within 1e-4, at 1 and 2 threads, both builds; and
// each llama.cpp-written stories260K GGUF (its fall-back types inside) runs on WASM kernels with no f32 fallback.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../../../src/io/node/load.js";
import { dataPath, defaultModelPath } from "../../../src/io/node/data.js";
import { Llama } from "../../../src/model/llama.js";
import { RefBackend } from "../../../src/kernels/ref/backend.js";
import { VARIANTS, readyBackend, disposeAll } from "../helpers.js";

after(disposeAll);

const PROMPT = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];

function logitsOf(llama: Llama): Float32Array[] {
  llama.reset();
  return PROMPT.map((t, pos) => Float32Array.from(llama.forward(t, pos)));
}

test("stories260K logits: WASM backend = ref backend within 1e-4 (16 positions, decode path)", async () => {
  const model = await loadModel(defaultModelPath());
  const want = logitsOf(new Llama(model, { backend: new RefBackend() }));
  for (const variant of VARIANTS) {
    for (const threads of [1, 2]) {
      const be = await readyBackend(variant, threads);
      const got = logitsOf(new Llama(model, { backend: be }));
      let worst = 0;
      for (let p = 0; p < want.length; p++) for (let i = 0; i < want[p]!.length; i++) worst = Math.max(worst, Math.abs(got[p]![i]! - want[p]![i]!));
      assert.ok(worst <= 1e-4, `${variant} t${threads}: max |Δlogit| = ${worst}`);
    }
  }
});

for (const file of ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "TQ2_0"]) {
  test(`llama.cpp's stories260K-${file}.gguf runs on WASM kernels (no f32 fallback), logits near the ref backend`, async () => {
    const model = await loadModel(dataPath("ggml", "stories260K", `stories260K-${file}.gguf`));
    const be = await readyBackend(VARIANTS[VARIANTS.length - 1]!, 1);
    const start = be.listing().length;
    const got = logitsOf(new Llama(model, { backend: be }));
    const rows = be.listing().slice(start);
    assert.ok(rows.some((r) => r.source.startsWith("ggml Q") || r.source.startsWith("ggml TQ")), JSON.stringify(rows));
    assert.deepEqual(rows.filter((r) => r.fallback), []);
    const want = logitsOf(new Llama(model, { backend: new RefBackend() }));
    // the WASM path quantizes activations to Q8 (as llama.cpp does); the ref backend multiplies in f32
    let worst = 0, scale = 0;
    for (let p = 0; p < want.length; p++) {
      for (let i = 0; i < want[p]!.length; i++) {
        worst = Math.max(worst, Math.abs(got[p]![i]! - want[p]![i]!));
        scale = Math.max(scale, Math.abs(want[p]![i]!));
      }
    }
    assert.ok(worst < 0.02 * scale, `max |Δlogit| = ${worst} (logits up to ${scale})`);
  });
}
