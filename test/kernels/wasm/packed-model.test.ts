// stories260K quantized with packed uniform-int specs: the packed model (codes kept packed, fused kernels
// on the WASM backend at 1 and 2 threads, and the reference backend's packed twin) gives the same logits
// as the fake-quant model (every quantized weight dequantized to a dense f32 tensor, reference backend)
// within 1e-4, over a prefill and greedy decode steps; every linear runs on a packed kernel.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isWeightLoaded } from "../../../src/core/weight.js";
import { quantModelEntries } from "../../../src/io/quant-model.js";
import { writeSafetensors } from "../../../src/io/safetensors.js";
import { atomicWriteFile } from "../../../src/io/node/atomic.js";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { RefBackend } from "../../../src/kernels/ref/backend.js";
import type { Backend } from "../../../src/kernels/types.js";
import { Llama } from "../../../src/model/llama.js";
import { selectTensors } from "../../../src/algos/select.js";
import { quantizeTensors } from "../../../src/algos/methods/rtn.js";
import { noProgress } from "../../../src/core/progress.js";
import { backend, readyBackend, disposeAll, VARIANTS } from "../helpers.js";
import { fakeQuant, maxLogitDiff, runLogits as run } from "./packed-helpers.js";
import { quantize } from "../../../src/algos/quantize.js";

after(disposeAll);

const base = await loadModel(dataPath("stories260K", "stories260K.bin"));
const names = selectTensors(base);

// uniform int (K_U4G / K_U8G) and the lookup-table family (K_LUT*: nf4, mxfp4, fp8, 2/3-bit ints with groups, a
// k-means codebook)
for (const spec of ["int4:g32:asym", "int4:g32:asym:scale=f16", "int8:channel", "int4:g64", "nf4:g64", "mxfp4", "fp8_e4m3:channel", "int2:g32:asym", "int3:g32", "kmeans4:g64"]) {
  test(`stories260K ${spec}: packed logits = fake-quant logits within 1e-4`, async () => {
    const q = quantizeTensors(base, names, () => spec, { seed: 0, progress: noProgress }).model;
    const fake = fakeQuant(q);
    const tokens = [1, 403, 407, 261, 378, 429, 267, 302, 271, 395, 280, 290];
    const want = run(fake, new RefBackend(), tokens);
    const backends: [string, Backend][] = [["ref", new RefBackend()]];
    for (const v of VARIANTS) backends.push([`${v}/t1`, backend(v, 1)], [`${v}/t2`, await readyBackend(v, 2)]);
    for (const [label, be] of backends) {
      const got = run(q, be, tokens);
      let worst = 0;
      for (let s = 0; s < want.length; s++) for (let i = 0; i < want[s]!.length; i++) worst = Math.max(worst, Math.abs(got[s]![i]! - want[s]![i]!));
      assert.ok(worst < 1e-4, `${spec} on ${label}: max |Δlogit| ${worst}`);
      if (label !== "ref") {
        const rows = (be as ReturnType<typeof backend>).listing();
        assert.equal(rows.length, 0, "dispose released every prepared weight");
      }
      console.log(`# ${spec} ${label}: max |Δlogit| vs fake-quant ${worst.toExponential(2)}`);
    }
  });
}

for (const [spec, kernel] of [["nf4:g64", /^lut4·(g64|row)·swizzle/], ["mxfp4", /^lut4·(g32|row)·swizzle/], ["fp8_e4m3:channel", /^lut8·row·gather/], ["int3:g32", /^lut3·(g32|row)·swizzle/], ["kmeans4:g64", /^lut4·(g64|row)·swizzle/]] as const) {
  test(`stories260K ${spec} on WASM: every quantized weight runs on a packed lut kernel`, () => {
    const q = quantizeTensors(base, names, () => spec, { seed: 0, progress: noProgress }).model;
    const be = backend(VARIANTS[0]!, 1);
    const llama = new Llama(q, { contextLength: 16, backend: be });
    const quantRows = be.listing().filter((r) => r.source.startsWith("quant "));
    assert.ok(quantRows.length >= names.length - 1, `${quantRows.length} quantized weights prepared for ${names.length} selected`);
    for (const r of quantRows) {
      assert.equal(r.fallback, undefined, `${r.name}: ${r.fallback}`);
      // groups as wide as a row (dim 64 with g64) print as "row"
      assert.match(r.kernel, kernel, r.name);
    }
    llama.dispose();
  });
}

test("stories260K int4:g32:asym on WASM: every quantized linear runs on a packed kernel, resident ≈ packed", () => {
  const q = quantizeTensors(base, names, () => "int4:g32:asym", { seed: 0, progress: noProgress }).model;
  const be = backend(VARIANTS[0]!, 1);
  const llama = new Llama(q, { contextLength: 16, backend: be });
  const quantRows = be.listing().filter((r) => r.source.startsWith("quant "));
  assert.ok(quantRows.length >= names.length - 1, `${quantRows.length} quantized weights prepared for ${names.length} selected`);
  let packed = 0, resident = 0;
  for (const r of quantRows) {
    assert.equal(r.fallback, undefined, `${r.name}: ${r.fallback}`);
    assert.match(r.kernel, /^u4·g32/);
    resident += r.bytes;
    const w = q.weights.get(r.name);
    if (w?.kind === "quant") packed += w.q.storageBits / 8;
  }
  assert.ok(resident <= packed * 1.35, `resident ${resident} vs packed ${packed}`);
  llama.dispose();
});

test("a quantized safetensors file loads lazily, runs packed on WASM, and its file bytes are let go after prepare", async () => {
  const dir = mkdtempSync(join(tmpdir(), "quantlab-packed-"));
  try {
    const q = quantizeTensors(base, names, () => "int4:g32:asym", { seed: 0, progress: noProgress }).model;
    const path = join(dir, "s260-int4.safetensors");
    const { entries, metadata } = quantModelEntries(q);
    await atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, metadata));
    const loaded = await loadModel(path);
    const lazyQuant = [...loaded.weights].filter(([, w]) => w.kind === "quant");
    assert.ok(lazyQuant.length >= names.length - 1);
    for (const [, w] of lazyQuant) assert.equal(isWeightLoaded(w), false, "nothing read before prepare");
    const be = backend(VARIANTS[0]!, 1);
    const tokens = [1, 403, 407, 261, 378, 429, 267, 302];
    const want = run(fakeQuant(q), new RefBackend(), tokens);
    const llama = new Llama(loaded, { contextLength: 64, backend: be });
    for (const [name, w] of lazyQuant) {
      if (name === "token_embd.weight") continue;
      assert.equal(isWeightLoaded(w), false, `${name}: copied into wasm memory and released`);
    }
    assert.deepEqual(be.listing().filter((r) => r.source.startsWith("quant ") && r.fallback), []);
    llama.dispose();
    const got = run(loaded, be, tokens);
    let worst = 0;
    for (let s = 0; s < want.length; s++) for (let i = 0; i < want[s]!.length; i++) worst = Math.max(worst, Math.abs(got[s]![i]! - want[s]![i]!));
    assert.ok(worst < 1e-4, `loaded file: max |Δlogit| ${worst}`);
    await loaded.close?.();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A spec's activation part (a<b>: per-token dynamic fake quantization of each linear's input) is applied by the
// model (inputTransforms), not by the weight: such weights run on the same packed kernels, and the packed model's
// logits equal the fake-quant model's (same activation transform, dequantized weights) within 1e-4.
for (const [spec, kernel] of [["int4:g32:asym:a8", /^u4·g32/], ["nf4:g64:a8", /^lut4·(g64|row)·swizzle/]] as const) {
  test(`stories260K ${spec}: weights on the packed kernel, logits = fake-quant logits within 1e-4`, async () => {
    const q = (await quantize(base, { target: { spec }, method: "rtn" }, { progress: noProgress })).model;
    assert.ok(q.inputTransforms?.activations, "the activation part is the model's input transform");
    const tokens = [1, 403, 407, 261, 378, 429, 267, 302, 271, 395, 280, 290];
    const want = run(fakeQuant(q), new RefBackend(), tokens);
    for (const v of VARIANTS) {
      const be = backend(v, 1);
      const llama = new Llama(q, { contextLength: 16, backend: be });
      const quantRows = be.listing().filter((r) => r.source.startsWith("quant "));
      assert.ok(quantRows.length >= names.length - 1, `${quantRows.length} quantized weights prepared`);
      for (const r of quantRows) {
        assert.equal(r.fallback, undefined, `${r.name}: ${r.fallback}`);
        assert.equal(r.rowdec, undefined, `${r.name}: row-decoded (${r.rowdec})`);
        assert.match(r.kernel, kernel, r.name);
      }
      llama.dispose();
      const worst = maxLogitDiff(run(q, be, tokens), want);
      assert.ok(worst < 1e-4, `${spec} on ${v}: max |Δlogit| ${worst}`);
      console.log(`# ${spec} ${v}: max |Δlogit| vs fake-quant ${worst.toExponential(2)}`);
    }
  });
}
