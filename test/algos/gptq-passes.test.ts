/**
 * GPTQ's streamed calibration passes (pipeline.ts streamPasses, calib.ts BlockPassCache and chunked
 * BlockRunner runs) against the whole-batch passes that recompute every site from the block input: the
 * same codes and scales for every linear of stories260K, on the TypeScript path and on the WASM backend;
 * and a cache that must not resume after a weight it was computed from was replaced.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { BlockPassCache, BlockRunner, alignedChunkWindows, attendWindows, blockWeights, calibrationWindows, normalizeRecipe, runLayerwise } from "../../src/algos/index.js";
import { gptqLayerwise } from "../../src/algos/methods/gptq.js";
import { newLayerwiseTimings } from "../../src/algos/methods/types.js";
import { linearWeightNames } from "../../src/algos/select.js";
import { noProgress } from "../../src/core/progress.js";
import { refGgmlEncoder } from "../../src/ggml/encoder.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { TensorNames } from "../../src/model/config.js";
import type { Backend } from "../../src/kernels/types.js";
import type { LinearSite } from "../../src/model/transforms.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { Rng } from "../../src/core/rng.js";

const model = await loadModel(dataPath("stories260K", "stories260K.bin"));
const tok = model.tokenizer!;
const calibTokens = tok.encode(readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 60_000), { bos: false });
const wasm = createNodeWasmBackend({ threads: 2 });
after(() => wasm.dispose());

/** every linear's codes, as its quantized bytes' dequantized values and the packed size */
async function codes(stream: boolean | number, backend: Backend | undefined, windows: Int32Array[], ffnCacheBytes = 0): Promise<Map<string, Float32Array>> {
  const recipe = normalizeRecipe({ target: { spec: "int4:g32:asym" }, method: "gptq" });
  const kernels = backend?.linalg?.();
  const out = new Map<string, Float32Array>();
  const timings = newLayerwiseTimings();
  await runLayerwise({
    model, recipe, names: linearWeightNames(model), specOf: () => "int4:g32:asym", progress: noProgress, encoder: refGgmlEncoder, timings, ffnCacheBytes,
    ...(backend ? { backend } : {}),
    calib: { bosId: tok.bosId, windows: () => windows },
    onTensor: (name, w) => { if (w.kind === "quant") out.set(name, new Float32Array(w.q.dequantize())); },
  }, { ...gptqLayerwise(recipe.options, kernels), streamPasses: stream });
  for (const s of ["attn_in", "attn_out_in", "ffn_in", "ffn_down_in"]) assert.ok((timings.hookMs[s] ?? -1) >= 0, `${s} was captured`);
  return out;
}

describe("GPTQ's streamed passes give the whole-batch passes' codes (stories260K, int4:g32:asym)", () => {
  // 12 windows of 64: chunks of 4 windows (256 tokens), so three chunks per pass
  const windows = calibrationWindows(calibTokens, { samples: 12, seq: 64, seed: 3, bosId: tok.bosId });
  assert.equal(alignedChunkWindows(64, 12, 256), 4);
  for (const [name, be] of [["TypeScript", undefined], ["WASM, 2 threads", wasm]] as const) {
    test(name, async () => {
      const old = await codes(false, be, windows);
      const streamed = await codes(256, be, windows);
      assert.equal(old.size, 35);
      assert.equal(streamed.size, 35);
      for (const [n, q] of old) assert.deepEqual(streamed.get(n), q, `${n}: same codes`);
      // the FFN-down input of two of the three chunks kept for the last pass, and of all of them
      for (const chunks of [2, 3]) {
        const kept = await codes(256, be, windows, chunks * 256 * model.config.hiddenDim * 4);
        for (const [n, q] of old) assert.deepEqual(kept.get(n), q, `${n}: same codes with ${chunks} chunks of the FFN-down input kept`);
      }
    });
  }
});

test("alignedChunkWindows: whole windows, a multiple of 256 tokens, at least minTokens, at most all", () => {
  assert.equal(alignedChunkWindows(256, 128), 4);
  assert.equal(alignedChunkWindows(256, 128, 2048), 8);
  assert.equal(alignedChunkWindows(128, 4), 4);
  assert.equal(alignedChunkWindows(100, 1000, 2048), 64 * 1); // 256/gcd(100,256) = 64 windows = 6400 tokens
  assert.equal(alignedChunkWindows(512, 10, 100), 1);
});

test("BlockPassCache: resumes after the cached attention / residual only while their weights are the same arrays", () => {
  const seq = 32;
  const windows = calibrationWindows(calibTokens, { samples: 8, seq, seed: 9, bosId: tok.bosId });
  const rn = new BlockRunner(model, seq, wasm);
  const emb = dequantizeWeight(model.weights.get(TensorNames.tokenEmbd)!).data;
  const x = rn.embed(emb, windows);
  const capture = (bw: ReturnType<typeof blockWeights>, site: LinearSite, cache?: BlockPassCache): Float32Array => {
    const parts: Float32Array[] = [];
    rn.run(1, bw, x, { stopAfter: site, hookSites: [site], hook: (s, b) => { if (s === site) parts.push(b.slice()); }, ...(cache ? { cache, chunkWindows: 2 } : {}) });
    const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) { all.set(p, o); o += p.length; }
    return all;
  };
  const bw = blockWeights(model, 1);
  const cache = new BlockPassCache();
  assert.deepEqual(capture(bw, "attn_out_in", cache), capture(bw, "attn_out_in"));
  assert.ok(cache.att && !cache.x1, "the attention output is kept");
  // v replaced (as setQuant does): the cached attention is stale and must not be used
  bw.wv = bw.wv.map((v) => v * 0.5);
  const fresh = capture(bw, "ffn_in");
  assert.deepEqual(capture(bw, "ffn_in", cache), fresh);
  assert.ok(cache.x1 && !cache.att, "the residual after attention replaces it");
  // from the cached residual: the FFN-down input, then the block output, as without a cache
  assert.deepEqual(capture(bw, "ffn_down_in", cache), capture(bw, "ffn_down_in"));
  // overwriteInput: the residual after attention replaces the block input; the block output is the same, and a
  // run that would read the block input again is refused
  const x2 = x.slice(), yo = x.slice();
  rn.run(1, bw, yo, {});
  // ffnBytes: the FFN-down input of the first two of four chunks is kept for the last pass
  const hidden = model.config.hiddenDim;
  const c2 = new BlockPassCache(true, 2 * 2 * seq * hidden * 4);
  rn.run(1, bw, x2, { stopAfter: "ffn_in", cache: c2, chunkWindows: 2 });
  assert.notDeepEqual(x2, x, "x now holds the residual after attention");
  assert.throws(() => rn.run(1, bw, x2, { stopAfter: "attn_out_in", hookSites: ["attn_out_in"], hook: () => {}, cache: c2 }), /overwritten/);
  rn.run(1, bw, x2, { stopAfter: "ffn_down_in", cache: c2, chunkWindows: 2 });
  assert.equal(c2.hb?.length, 2 * 2 * seq * hidden);
  assert.ok(c2.hb!.some((v) => v !== 0));
  rn.run(1, bw, x2, { cache: c2, chunkWindows: 2 });
  assert.deepEqual(x2, yo);
  const y = x.slice();
  rn.run(1, bw, y, {});
  assert.notDeepEqual(y, x);
  rn.run(1, bw, x, { cache, chunkWindows: 2 });
  assert.deepEqual(x, y);
  assert.ok(!cache.x1 && !cache.att, "a run that writes the block input leaves nothing cached");
});

/** the block runner's attention as it was before attendWindows: one query head at a time (reference twin) */
function attendPerHead(q: Float32Array, k: Float32Array, v: Float32Array, att: Float32Array, nWin: number, L: number, nHeads: number, nKvHeads: number, hd: number, window?: number, cap?: number): void {
  const qDim = nHeads * hd, kvDim = nKvHeads * hd;
  const scores = new Float32Array(L);
  const kvMul = nHeads / nKvHeads;
  const scale = Math.fround(Math.sqrt(hd));
  for (let w = 0; w < nWin; w++) {
    const t0 = w * L;
    for (let i = 0; i < L; i++) {
      const ti = t0 + i;
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / kvMul);
        const qo = ti * qDim + h * hd;
        let max = -Infinity;
        const j0 = window !== undefined ? Math.max(0, i + 1 - window) : 0;
        for (let j = 0; j < j0; j++) scores[j] = -Infinity;
        for (let j = j0; j <= i; j++) {
          const ko = (t0 + j) * kvDim + kvh * hd;
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[qo + d]! * k[ko + d]!;
          let sc = Math.fround(s) / scale;
          if (cap !== undefined) sc = cap * Math.tanh(sc / cap);
          scores[j] = sc;
          if (sc > max) max = sc;
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) { const e = Math.exp(scores[j]! - max); scores[j] = e; sum += e; }
        for (let j = 0; j <= i; j++) {
          const a = scores[j]! / sum;
          const vo = (t0 + j) * kvDim + kvh * hd;
          for (let d = 0; d < hd; d++) att[qo + d] += a * v[vo + d]!;
        }
      }
    }
  }
}

test("attendWindows: the per-head loop's values bit for bit (GQA groups of 4, 3 and 1, sliding window, soft-cap)", () => {
  const rng = new Rng(21);
  for (const [nHeads, nKv, window, cap] of [[8, 2, undefined, undefined], [6, 2, undefined, undefined], [4, 4, 5, undefined], [8, 1, undefined, 3], [12, 3, 7, 2]] as const) {
    const nWin = 3, L = 19, hd = 16, T = nWin * L;
    const q = rng.fillNormal(new Float32Array(T * nHeads * hd), 2), k = rng.fillNormal(new Float32Array(T * nKv * hd), 2), v = rng.fillNormal(new Float32Array(T * nKv * hd), 1);
    const a = new Float32Array(q.length), b = new Float32Array(q.length);
    attendPerHead(q, k, v, a, nWin, L, nHeads, nKv, hd, window, cap);
    attendWindows(q, k, v, b, nWin, L, nHeads, nKv, hd, window, cap);
    assert.ok(a.some((x) => x !== 0));
    assert.deepEqual(b, a, `${nHeads}/${nKv} heads, window ${window}, cap ${cap}`);
  }
});
