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
import fc from "fast-check";

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

/** The KIVI options: channel keys over groups of G tokens, a float window of the R most recent positions. */
describe("KIVI: channel keys and a float window", () => {
  const G = 4;
  /** quantizeTensor on one head's (headDim, G) key block, one scale per channel: the scalar reference of a channel-key group */
  const refKeyGroup = (ks: Float32Array[], h: number, g: number, spec: string): Float32Array[] => {
    const block = new Float32Array(HD * G);
    for (let i = 0; i < HD; i++) for (let j = 0; j < G; j++) block[i * G + j] = ks[g * G + j]![h * HD + i]!;
    const d = quantizeTensor(block, [HD, G], spec).dequantize();
    return Array.from({ length: G }, (_, j) => Float32Array.from({ length: HD }, (_, i) => d[i * G + j]!));
  };

  for (const [spec, channelSpec] of [["int2:g4:asym", "int2:channel:asym"], ["int4:g4", "int4:channel"], ["int2:g4:asym:scale=f16", "int2:channel:asym:scale=f16"], ["nf4:g4", "nf4:channel"], ["int3:g4:asymf", "int3:channel:asymf"]] as const) {
    test(`${spec}: every complete key group equals quantizeTensor of its (headDim, G) block per channel (${channelSpec}); values per token as without the option; codes bit-packed`, () => {
      const rng = new Rng(3);
      const cap = 3 * G + 2; // a last, incomplete group
      const c = new QuantKvCache(spec, L, cap, H, HD, { keys: "channel" });
      const plain = new QuantKvCache(spec, L, cap, H, HD);
      const ks: Float32Array[][] = [[], []], vs: Float32Array[][] = [[], []];
      for (let p = 0; p < cap; p++) for (let l = 0; l < L; l++) {
        const k = tile(rng), v = tile(rng);
        ks[l]!.push(k); vs[l]!.push(v);
        c.store(l, p, k, v); plain.store(l, p, k, v);
      }
      for (let l = 0; l < L; l++) {
        for (let g = 0; g < 3; g++) {
          for (let h = 0; h < H; h++) {
            const want = refKeyGroup(ks[l]!, h, g, channelSpec);
            for (let j = 0; j < G; j++) assert.deepEqual(c.dequantizeTile("k", l, g * G + j).subarray(h * HD, (h + 1) * HD), want[j], `layer ${l} group ${g} head ${h} token ${j}`);
          }
        }
        for (let p = 0; p < cap; p++) assert.deepEqual(c.dequantizeTile("v", l, p), plain.dequantizeTile("v", l, p));
        // the incomplete last group is read in f32
        for (const p of [3 * G, 3 * G + 1]) assert.deepEqual(c.dequantizeTile("k", l, p, undefined, cap), ks[l]![p]);
      }
      const bits = Number(/^(?:int|nf)(\d)?/.exec(spec)![1] ?? 4);
      // codes: ⌈headDim·bits/8⌉ bytes per (layer, head, position) row, K and V
      const codeBytes = 2 * (L * H * cap * Math.ceil((HD * bits) / 8) + 1);
      // + f32 scales and zeros (V per token group, K per channel and token group) + the f32 ring of recent rows
      const ring = L * (G + 16) * (2 * H * HD * 4 + 4);
      assert.ok(c.residentBytes >= codeBytes + ring && c.residentBytes <= codeBytes + ring + 2 * 4 * 2 * L * H * cap * HD, `resident ${c.residentBytes} vs codes ${codeBytes} + ring ${ring}`);
      assert.equal(plain.residentBytes <= codeBytes + 2 * 4 * 2 * L * H * cap * HD, true);
    });
  }

  test("reads depend only on how many positions they cover: f32 for t ≥ min(n − R, ⌊n/G⌋·G) (keys) and t ≥ n − R (values), whatever the chunking (fast-check)", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 6 }), fc.constantFrom(2, 3, 4), fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 1000 }), (R, g, chunks, seed) => {
      const cap = 24;
      const spec = `int2:g${g}:asym`;
      const rng = new Rng(seed);
      const c = new QuantKvCache(spec, 1, cap, H, HD, { keys: "channel", window: R });
      const ref = new QuantKvCache(spec, 1, cap, H, HD, { keys: "channel" }); // the quantized rows, fed one by one
      const ks: Float32Array[] = [], vs: Float32Array[] = [];
      let pos = 0;
      const q = rng.fillNormal(new Float32Array(HD));
      for (const len of chunks) {
        const n1 = Math.min(cap, pos + len);
        for (let p = pos; p < n1; p++) {
          ks.push(tile(rng)); vs.push(tile(rng));
          c.store(0, p, ks[p]!, vs[p]!); ref.store(0, p, ks[p]!, vs[p]!);
        }
        // the chunk's reads, every position of it, as attention runs them
        for (let n = pos + 1; n <= n1; n++) {
          const kFrom = Math.min(n - R, Math.floor(n / g) * g), vFrom = n - R;
          for (let t = 0; t < n; t++) {
            const wantK = t >= kFrom ? ks[t]! : ref.dequantizeTile("k", 0, t);
            const wantV = t >= vFrom ? vs[t]! : ref.dequantizeTile("v", 0, t);
            if (!c.dequantizeTile("k", 0, t, undefined, n).every((x, i) => x === wantK[i])) return false;
            if (!c.dequantizeTile("v", 0, t, undefined, n).every((x, i) => x === wantV[i])) return false;
          }
          const sc = new Float32Array(n);
          c.scores(0, 1, q, 0, n, sc);
          for (let t = 0; t < n; t++) {
            const row = (t >= kFrom ? ks[t]! : ref.dequantizeTile("k", 0, t)).subarray(HD, 2 * HD);
            let s = 0;
            for (let i = 0; i < HD; i++) s += q[i]! * row[i]!;
            if (Math.abs(sc[t]! - s) > 1e-5 * (1 + Math.abs(s))) return false;
          }
        }
        pos = n1;
        if (pos >= cap) break;
      }
      return true;
    }), { numRuns: 60, seed: 11 });
  });

  test("errors: channel keys need g<G>; a window does not let a sequence step back except to position 0", async () => {
    assert.throws(() => new QuantKvCache("int4:channel", 1, 8, H, HD, { keys: "channel" }), /KV-cache spec "int4:channel": channel keys \(KIVI\) quantize each channel over groups of G tokens: give the group as g<G>/);
    assert.throws(() => quantKvCacheFactory("int4:channel", { keys: "channel" }), /channel keys \(KIVI\)/);
    assert.throws(() => new QuantKvCache("int4:g4", 1, 8, H, HD, { window: -1 }), /window must be a non-negative integer/);
    const c = new QuantKvCache("int4:g4", 1, 16, H, HD, { window: 2 });
    const rng = new Rng(1);
    for (let p = 0; p < 8; p++) c.store(0, p, tile(rng), tile(rng));
    c.scores(0, 0, new Float32Array(HD), 0, 8, new Float32Array(8));
    assert.throws(() => c.store(0, 3, tile(rng), tile(rng)), /position 3 of layer 0 fed again after reads up to 6; start the sequence again from position 0/);
    c.store(0, 0, tile(rng), tile(rng)); // a new sequence
  });
});

describe("KIVI on stories260K", async () => {
  const model = await loadModel(dataPath("stories260K", "stories260K.bin"));
  const tok = model.tokenizer!;
  const tokens = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 6000), { bos: false });
  const ctx = 256, maxTokens = 3 * 255;
  const measure = async (spec: string, opts: { keys?: "channel"; window?: number }) => {
    const base = new ModelLogits(new Llama(model, { contextLength: ctx }));
    const other = new ModelLogits(new Llama(model, { contextLength: ctx, kvCache: quantKvCacheFactory(spec, opts) }));
    return (await kld(base, other, tokens, { ctx, maxTokens, bosId: tok.bosId })).meanKld;
  };

  test("prefill = decode with channel keys and a window; int2 KLD: channel keys < per token, and a window of 32 lowers it further", async () => {
    const f = quantKvCacheFactory("int2:g8:asym", { keys: "channel", window: 5 });
    const ids = tokens.slice(0, 40);
    const pre: Float32Array[] = [];
    new Llama(model, { contextLength: 64, kvCache: f }).prefill(ids, 0, (lg, _row, n) => { for (let i = 0; i < n; i++) pre.push(lg.slice(i * model.config.vocabSize, (i + 1) * model.config.vocabSize)); });
    const dec = new Llama(model, { contextLength: 64, kvCache: f });
    let d = 0;
    ids.forEach((t, p) => { const lg = dec.forward(t, p); for (let j = 0; j < lg.length; j++) d = Math.max(d, Math.abs(lg[j]! - pre[p]![j]!)); });
    assert.ok(d <= 1e-4, `prefill vs decode: ${d}`);
    const perToken = await measure("int2:g8:asym", {});
    const channel = await measure("int2:g8:asym", { keys: "channel" });
    const windowed = await measure("int2:g8:asym", { keys: "channel", window: 32 });
    assert.ok(channel < perToken && windowed < channel, `int2 KV KLD: per token ${perToken}, channel keys ${channel}, + window 32 ${windowed}`);
  });
});
