/**
 * Quantized KV cache: what it stores is exactly quantize→dequantize of the float K/V (quantizeTensor on
 * the (nKvHeads, headDim) tile is the scalar reference), attention reads agree with float64 sums over the
 * dequantized rows, and on stories260K an fp16 cache is the float model while int8 beats int4.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Rng } from "../../src/core/rng.js";
import { QuantlabError } from "../../src/core/errors.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { Llama } from "../../src/model/llama.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { QuantKvCache, parseKvSpec, quantKvCacheFactory } from "../../src/model/kv-quant.js";
import { quantizeTensor } from "../../src/quant/tensor.js";

const L = 2, CAP = 5, H = 3, HD = 8;

/** K/V-like tiles: Gaussian with a few large channels (keys have outlier channels). */
function tile(rng: Rng): Float32Array {
  const x = rng.fillNormal(new Float32Array(H * HD), 1.5);
  for (let h = 0; h < H; h++) x[h * HD + ((h * 3) % HD)]! *= 9;
  return x;
}

const SPECS = [
  "int8", "int8:asym", "int4:g4:asym", "int4:asymf", "int4:g4:asymf:scale=f16", "int3:g3", "int8:tensor", "int8:ichannel",
  "fp8_e4m3:none", "fp8_e5m2:none", "fp8_e4m3:channel", "fp16", "bf16", "nf4:channel", "nf4:g4:scale=f16",
  "mxfp4", "mxint8", "nvfp4", "bfp6:g4", "int4:channel:dq", "int8:channel:scale=e8m0", "ternary:channel", "ternary:channel:twn",
  "pow2:4bit:channel", "fp4_e2m1:g4", "int4:channel:mse", "zero:g4",
];

describe("QuantKvCache stores quantize→dequantize of K and V", () => {
  for (const spec of SPECS) {
    test(spec, () => {
      const rng = new Rng(7);
      const cache = new QuantKvCache(spec, L, CAP, H, HD);
      const ks: Float32Array[][] = [], vs: Float32Array[][] = [];
      for (let l = 0; l < L; l++) {
        ks.push([]); vs.push([]);
        for (let p = 0; p < CAP; p++) {
          const k = tile(rng), v = tile(rng);
          ks[l]!.push(k); vs[l]!.push(v);
          cache.store(l, p, k, v);
        }
      }
      for (let l = 0; l < L; l++) {
        for (let p = 0; p < CAP; p++) {
          const refK = quantizeTensor(ks[l]![p]!, [H, HD], spec).dequantize();
          const refV = quantizeTensor(vs[l]![p]!, [H, HD], spec).dequantize();
          assert.deepEqual(cache.dequantizeTile("k", l, p), refK, `K layer ${l} pos ${p}`);
          assert.deepEqual(cache.dequantizeTile("v", l, p), refV, `V layer ${l} pos ${p}`);
        }
      }
      // attention reads: q·K and p-weighted sums of V over the dequantized rows, in float64
      const q = rng.fillNormal(new Float32Array(HD + 3));
      const probs = rng.fillUniform(new Float32Array(CAP));
      for (let l = 0; l < L; l++) {
        for (let h = 0; h < H; h++) {
          const sc = new Float32Array(CAP);
          cache.scores(l, h, q, 3, CAP, sc);
          const mixed = new Float32Array(HD + 2);
          cache.mix(l, h, probs, CAP, mixed, 2);
          const want = new Float64Array(HD);
          for (let t = 0; t < CAP; t++) {
            const kt = cache.dequantizeTile("k", l, t).subarray(h * HD, (h + 1) * HD);
            const vt = cache.dequantizeTile("v", l, t).subarray(h * HD, (h + 1) * HD);
            let s = 0;
            for (let i = 0; i < HD; i++) { s += q[3 + i]! * kt[i]!; want[i] += probs[t]! * vt[i]!; }
            assert.ok(Math.abs(sc[t]! - s) <= 1e-5 * (1 + Math.abs(s)), `score t=${t}: ${sc[t]} vs ${s}`);
          }
          for (let i = 0; i < HD; i++) assert.ok(Math.abs(mixed[2 + i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `mix ${i}`);
        }
      }
    });
  }

  test("storage: int8 per (token, head) with f32 scales is 8 + 32/headDim bits per element; bytes count K and V", () => {
    const c = new QuantKvCache("int8:channel", L, CAP, H, HD);
    assert.equal(c.bitsPerElement, 8 + 32 / HD);
    assert.equal(c.bytes, (2 * L * CAP * H * HD * (8 + 32 / HD)) / 8);
    const a = new QuantKvCache("int4:g4:asym:scale=f16", L, CAP, H, HD);
    assert.equal(a.bitsPerElement, 4 + 16 / 4 + 4 / 4); // codes + f16 scale + 4-bit zero per group of 4
    assert.equal(new QuantKvCache("fp16", L, CAP, H, HD).bitsPerElement, 16);
  });

  test("stochastic rounding is seeded (same seed, same cache), stochastic (other seeds differ) and unbiased (the mean over seeds is the float K)", () => {
    const rng = new Rng(3);
    const k = tile(rng), v = tile(rng);
    const a = new QuantKvCache("int4:sr", 1, 1, H, HD, { seed: 5 }), b = new QuantKvCache("int4:sr", 1, 1, H, HD, { seed: 5 });
    a.store(0, 0, k, v); b.store(0, 0, k, v);
    assert.deepEqual(a.dequantizeTile("k", 0, 0), b.dequantizeTile("k", 0, 0));
    // and it is stochastic and unbiased: other seeds give other caches, and over many seeds the mean is the
    // float K (a draw between two grid points of step s = max |k| of the head / 7 has a mean within s/(2√N))
    const N = 400;
    const sum = new Float64Array(H * HD);
    let differs = 0;
    const near = new QuantKvCache("int4", 1, 1, H, HD);
    near.store(0, 0, k, v);
    const rne = near.dequantizeTile("k", 0, 0);
    for (let seed = 0; seed < N; seed++) {
      const c = new QuantKvCache("int4:sr", 1, 1, H, HD, { seed });
      c.store(0, 0, k, v);
      const d = c.dequantizeTile("k", 0, 0);
      for (let i = 0; i < d.length; i++) { sum[i] += d[i]!; if (d[i] !== rne[i]) differs++; }
    }
    assert.ok(differs > N, `stochastic rounding left ${differs} of ${N * H * HD} draws at the nearest value`);
    for (let h = 0; h < H; h++) {
      let amax = 0;
      for (let i = 0; i < HD; i++) amax = Math.max(amax, Math.abs(k[h * HD + i]!));
      const step = amax / 7;
      for (let i = 0; i < HD; i++) {
        const j = h * HD + i;
        assert.ok(Math.abs(sum[j]! / N - k[j]!) < (5 * step) / (2 * Math.sqrt(N)) + 1e-6, `head ${h} element ${i}: mean ${sum[j]! / N} vs ${k[j]}`);
      }
    }
  });

  test("bad KV specs and values give one-line errors", () => {
    assert.throws(() => parseKvSpec("int4:layer"), (e: unknown) => e instanceof QuantlabError && /KV-cache spec "int4:layer": layer granularity/.test(e.message));
    assert.throws(() => parseKvSpec("int8:channel:a8"), /activation parts/);
    assert.throws(() => parseKvSpec("int4:g64:outliers=1"), /outliers/);
    assert.throws(() => quantKvCacheFactory("int99"), /int99/);
    const c = new QuantKvCache("int8", 1, 1, H, HD);
    const k = new Float32Array(H * HD); k[5] = NaN;
    assert.throws(() => c.store(0, 0, k, new Float32Array(H * HD)), /KV cache: K of layer 0 position 0 element 5 is NaN/);
    const big = new Float32Array(H * HD).fill(1e6);
    assert.throws(() => new QuantKvCache("fp16", 1, 1, H, HD).store(0, 0, big, big), /overflows fp16/);
  });
});

describe("quantized KV cache on stories260K", async () => {
  const model = await loadModel(dataPath("stories260K", "stories260K.bin"));
  const tok = model.tokenizer!;
  const tokens = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 6000), { bos: false });
  const ctx = 256, maxTokens = 3 * 255; // 3 windows
  const measure = async (kv: string | undefined) => {
    const base = new ModelLogits(new Llama(model, { contextLength: ctx }));
    const other = new ModelLogits(new Llama(model, { contextLength: ctx, ...(kv ? { kvCache: quantKvCacheFactory(kv) } : {}) }));
    return kld(base, other, tokens, { ctx, maxTokens, bosId: tok.bosId });
  };

  test("fp16 KV gives the float perplexity (within 0.02 %), int8 beats int4, int4 per group of 4 beats per head", async () => {
    const f16 = await measure("fp16");
    assert.ok(Math.abs(f16.pplOther / f16.pplBase - 1) < 2e-4, `fp16 KV ppl ${f16.pplOther} vs float ${f16.pplBase}`);
    assert.ok(f16.meanKld < 1e-4, `fp16 KV KLD ${f16.meanKld}`);
    const i8 = await measure("int8:channel");
    const i4 = await measure("int4:channel:asym");
    const i4g = await measure("int4:g4:asym");
    assert.ok(i8.meanKld < 0.01 && Math.abs(i8.pplOther / i8.pplBase - 1) < 0.01, `int8 KV: KLD ${i8.meanKld}, ppl ${i8.pplOther} vs ${i8.pplBase}`);
    assert.ok(i8.meanKld < i4.meanKld / 20 && i8.pplOther < i4.pplOther, `int8 KV KLD ${i8.meanKld} vs int4 ${i4.meanKld}`);
    assert.ok(i4g.meanKld < i4.meanKld, `int4 g4 KLD ${i4g.meanKld} vs per head ${i4.meanKld}`);
  });
});
