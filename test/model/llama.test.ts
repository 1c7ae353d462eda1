import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dataPath } from "../../src/io/node/data.js";
import { loadLlama2cFile } from "../../src/io/node/llama2c-file.js";
import { Llama, ropeInvFreq, ROPE_FREQS } from "../../src/model/llama.js";
import { generate } from "../../src/model/generate.js";
import { TensorNames, type ModelConfig } from "../../src/model/config.js";
import { F32KvCache } from "../../src/model/kv-cache.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { Tensor } from "../../src/core/tensor.js";
import type { Model } from "../../src/model/weights.js";
import { config, f32, randomModel } from "./synthetic.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8"));
const ref3M = JSON.parse(readFileSync(dataPath("stories3M", "reference.json"), "utf8"));
const m260K = await loadLlama2cFile(dataPath("stories260K", "stories260K.bin"), {});

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Every position's logits through prefill (chunks of maxBatch), as (positions) rows. */
function prefillAll(llama: Llama, ids: number[]): Float32Array[] {
  const v = llama.config.vocabSize;
  const rows: Float32Array[] = [];
  llama.reset();
  llama.prefill(ids, 0, (lg, row, n) => {
    for (let i = 0; i < n; i++) rows[row + i] = lg.slice(i * v, (i + 1) * v);
  });
  return rows;
}

describe("stories260K against llama2.c run.c (reference.json)", () => {
  test("logits at all 16 positions within 1e-4, token by token and batched", () => {
    const ids: number[] = ref.logits.token_ids;
    const llama = new Llama(m260K);
    let worst = 0;
    const decoded: Float32Array[] = [];
    for (let i = 0; i < ids.length; i++) {
      const lg = llama.forward(ids[i]!, i);
      decoded.push(lg.slice());
      worst = Math.max(worst, maxAbs(lg, ref.logits.values[i]));
      let am = 0;
      for (let j = 1; j < lg.length; j++) if (lg[j]! > lg[am]!) am = j;
      assert.equal(am, ref.logits.argmax[i]);
    }
    assert.ok(worst <= 1e-4, `decode max abs diff ${worst}`);
    // prefill in chunks of 5 (chunk boundaries inside the prompt) gives the same numbers
    const batched = prefillAll(new Llama(m260K, { maxBatch: 5 }), ids);
    for (let i = 0; i < ids.length; i++) assert.ok(maxAbs(batched[i]!, decoded[i]!) <= 1e-6, `position ${i}`);
  });

  test("greedy generation of both reference prompts: token ids and printed text", () => {
    const llama = new Llama(m260K);
    for (const g of ref.greedy) {
      let streamed = "";
      const r = generate(llama, m260K.tokenizer!, { prompt: g.prompt, steps: g.steps, temperature: 0, onText: (s) => (streamed += s) });
      assert.deepEqual(r.tokenIds, g.token_ids);
      assert.equal(r.text, g.stdout);
      assert.equal(streamed, g.stdout);
    }
  });

  test("run.c step semantics: steps counts prompt positions; 0 or too many means the whole context", () => {
    const llama = new Llama(m260K, { contextLength: 24 });
    const r3 = generate(llama, m260K.tokenizer!, { prompt: "Once upon a time", steps: 3, temperature: 0 });
    assert.deepEqual(r3.tokenIds, [1, 403, 407, 261]);
    assert.equal(r3.text, "Once upon a\n");
    const all = generate(llama, m260K.tokenizer!, { prompt: "Once upon a time", steps: 0, temperature: 0 });
    assert.equal(all.tokenIds.length, 25);
    assert.deepEqual(all.tokenIds, ref.greedy[0].token_ids.slice(0, 25));
    const empty = generate(llama, m260K.tokenizer!, { prompt: "", steps: 5, temperature: 0 });
    assert.equal(empty.tokenIds[0], 1);
    assert.equal(empty.tokenIds.length, 6);
  });

  test("generation stops when BOS is sampled, printing nothing for it", () => {
    const v = 512;
    const fake = {
      capacity: 64,
      reset() {},
      prefill() { return new Float32Array(v); },
      forward(_t: number, pos: number) {
        const l = new Float32Array(v);
        l[pos < 6 ? 300 : 1] = 10; // "he" a few times, then BOS
        return l;
      },
    } as unknown as Llama;
    const r = generate(fake, m260K.tokenizer!, { prompt: "Hi", steps: 50, temperature: 0 });
    assert.equal(r.tokenIds.at(-1), 300);
    assert.ok(!r.tokenIds.slice(1).includes(1));
    assert.ok(r.text.endsWith(" ha\n"));
  });

  test("EOS is printed like any token (run.c) unless stopAtEos", () => {
    const fake = {
      capacity: 16,
      reset() {},
      prefill() { return new Float32Array(512); },
      forward(_t: number, pos: number) {
        const l = new Float32Array(512);
        l[pos === 2 ? 2 : 300] = 10; // EOS at position 2
        return l;
      },
    } as unknown as Llama;
    const runc = generate(fake, m260K.tokenizer!, { prompt: "Hi", steps: 5, temperature: 0 });
    assert.ok(runc.tokenIds.includes(2));
    assert.ok(runc.text.includes("\n</s>\n"));
    const chat = generate(fake, m260K.tokenizer!, { prompt: "Hi", steps: 5, temperature: 0, stopAtEos: true });
    assert.deepEqual(chat.tokenIds, m260K.tokenizer!.encode("Hi", { bos: true })); // the prompt fills pos 0..2
    assert.equal(chat.text, "Hi\n");
  });
});

test("stories3M logits match stories3M/reference.json within 1e-4", async () => {
  const m = await loadLlama2cFile(dataPath("stories3M", "stories3M.bin"), { tokenizer: dataPath("stories260K", "tok512.bin") });
  assert.deepEqual(m.tokenizer!.encode(ref3M.logits.prompt, { bos: true }), ref3M.logits.token_ids);
  const rows = prefillAll(new Llama(m), ref3M.logits.token_ids);
  let worst = 0;
  for (let i = 0; i < rows.length; i++) worst = Math.max(worst, maxAbs(rows[i]!, ref3M.logits.values[i]));
  assert.ok(worst <= 1e-4, `max abs diff ${worst}`);
});

/**
 * Scalar float64 reference of the Llama forward pass, written position by position straight from the
 * definitions (interleaved-pair RoPE, query head h uses KV head ⌊h·nKv/nH⌋, SwiGLU, RMSNorm).
 */
function forwardRef(m: Model, ids: number[]): Float64Array[] {
  const c = m.config;
  const W = (n: string) => f32(m, n);
  const hd = c.headDim;
  const matvec = (w: Float32Array, x: Float64Array, rows: number) => {
    const cols = x.length;
    const o = new Float64Array(rows);
    for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) o[r] += w[r * cols + j]! * x[j]!;
    return o;
  };
  const rms = (x: Float64Array, w: Float32Array) => {
    const ms = x.reduce((a, b) => a + b * b, 0) / x.length;
    return x.map((v, i) => (v / Math.sqrt(ms + c.normEps)) * w[i]!);
  };
  // RoPE frequencies, with Llama 3's rule written out (HF _compute_llama3_parameters) or a factors tensor
  const freqs: number[] = [];
  for (let j = 0; j < hd / 2; j++) {
    let f = 1 / Math.pow(c.ropeTheta, (2 * j) / hd);
    const s = c.ropeScaling;
    if (m.weights.has(ROPE_FREQS)) f /= f32(m, ROPE_FREQS)[j]!;
    else if (s) {
      const wl = (2 * Math.PI) / f;
      const lo = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const hi = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      if (wl > lo) f = f / s.factor;
      else if (wl >= hi) {
        const t = (s.originalMaxPositionEmbeddings / wl - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f = (1 - t) * (f / s.factor) + t * f;
      }
    }
    freqs.push(f);
  }
  const rope = (x: Float64Array, pos: number) => {
    for (let h = 0; h < x.length; h += hd) {
      for (let j = 0; j < hd / 2; j++) {
        const a = x[h + 2 * j]!, b = x[h + 2 * j + 1]!;
        const th = pos * freqs[j]!;
        x[h + 2 * j] = a * Math.cos(th) - b * Math.sin(th);
        x[h + 2 * j + 1] = a * Math.sin(th) + b * Math.cos(th);
      }
    }
  };
  const K: Float64Array[][] = [...Array(c.nLayers)].map(() => []);
  const V: Float64Array[][] = [...Array(c.nLayers)].map(() => []);
  const out: Float64Array[] = [];
  const emb = W(TensorNames.tokenEmbd);
  const outW = m.weights.has(TensorNames.output) ? W(TensorNames.output) : emb;
  ids.forEach((tok, pos) => {
    let x = Float64Array.from(emb.subarray(tok * c.dim, (tok + 1) * c.dim));
    for (let l = 0; l < c.nLayers; l++) {
      const xn = rms(x, W(TensorNames.attnNorm(l)));
      const q = matvec(W(TensorNames.attnQ(l)), xn, c.nHeads * hd);
      const k = matvec(W(TensorNames.attnK(l)), xn, c.nKvHeads * hd);
      const v = matvec(W(TensorNames.attnV(l)), xn, c.nKvHeads * hd);
      rope(q, pos);
      rope(k, pos);
      K[l]!.push(k);
      V[l]!.push(v);
      const att = new Float64Array(c.nHeads * hd);
      for (let h = 0; h < c.nHeads; h++) {
        const kh = Math.floor((h * c.nKvHeads) / c.nHeads);
        const s = K[l]!.map((kt) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[h * hd + i]! * kt[kh * hd + i]!;
          return d / Math.sqrt(hd);
        });
        const mx = Math.max(...s);
        const e = s.map((z) => Math.exp(z - mx));
        const sum = e.reduce((a, b) => a + b, 0);
        e.forEach((p, t) => {
          for (let i = 0; i < hd; i++) att[h * hd + i] += (p / sum) * V[l]![t]![kh * hd + i]!;
        });
      }
      const o = matvec(W(TensorNames.attnOutput(l)), att, c.dim);
      x = x.map((a, i) => a + o[i]!);
      const xf = rms(x, W(TensorNames.ffnNorm(l)));
      const g = matvec(W(TensorNames.ffnGate(l)), xf, c.hiddenDim);
      const u = matvec(W(TensorNames.ffnUp(l)), xf, c.hiddenDim);
      const hsw = g.map((a, i) => (a / (1 + Math.exp(-a))) * u[i]!);
      const d = matvec(W(TensorNames.ffnDown(l)), hsw, c.dim);
      x = x.map((a, i) => a + d[i]!);
    }
    out.push(matvec(outW, rms(x, W(TensorNames.outputNorm)), c.vocabSize));
  });
  return out;
}

describe("synthetic Llama models against a float64 scalar reference", () => {
  const cases: [string, Partial<ModelConfig>][] = [
    ["tied, MHA", { nKvHeads: 4 }],
    ["untied, GQA 4:1, rope_theta 500000", { tiedEmbeddings: false, nKvHeads: 1, ropeTheta: 500000 }],
    ["Llama 3 rope_scaling, GQA 2:1, headDim 16", {
      // headDim 16, θ 10000: pair 0 keeps its frequency, pair 1 is in the smooth band, pairs 2+ are divided by 8
      dim: 32, nHeads: 2, nKvHeads: 1, seqLen: 40,
      ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 },
    }],
  ];
  const ids = [1, 5, 9, 33, 2, 7, 7, 19, 38, 0, 11, 24, 3, 30, 6, 1, 4, 22];
  for (const [name, over] of cases) {
    test(name, () => {
      const m = randomModel(config(over), 11);
      const want = forwardRef(m, ids);
      const llama = new Llama(m, { maxBatch: 7 });
      const got = prefillAll(llama, ids);
      let worst = 0;
      for (let i = 0; i < ids.length; i++) worst = Math.max(worst, maxAbs(got[i]!, want[i]!));
      assert.ok(worst < 2e-4, `prefill vs reference ${worst}`);
      llama.reset();
      for (let i = 0; i < ids.length; i++) assert.ok(maxAbs(llama.forward(ids[i]!, i), got[i]!) < 1e-5, `decode vs prefill at ${i}`);
    });
  }

  test("Llama 3 scaling actually changes low frequencies (and a rope_freqs.weight tensor is honoured)", () => {
    const s = { type: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 };
    const c = config({ dim: 32, nHeads: 2, nKvHeads: 1, ropeScaling: s });
    const plain = ropeInvFreq({ ...c, ropeScaling: undefined });
    const scaled = ropeInvFreq(c);
    assert.equal(scaled[0], plain[0]); // wavelength 2π < 32/4: untouched
    assert.ok(scaled[1]! < plain[1]! && scaled[1]! > plain[1]! / 8); // wavelength 19.9 in [8, 32]: smooth band
    for (let j = 2; j < 8; j++) assert.ok(Math.abs(scaled[j]! - plain[j]! / 8) < 1e-15); // > 32: divided by factor
    // the same scaling as llama.cpp's per-frequency divisors gives the same logits
    const m = randomModel(c, 4);
    const factors = Float32Array.from(plain, (f, j) => f / scaled[j]!);
    const m2: Model = { ...m, config: { ...c, ropeScaling: undefined }, weights: new Map(m.weights) };
    m2.weights.set(ROPE_FREQS, { kind: "dense", tensor: new Tensor("f32", [factors.length], factors) });
    const a = prefillAll(new Llama(m), ids);
    const b = prefillAll(new Llama(m2), ids);
    for (let i = 0; i < ids.length; i++) assert.ok(maxAbs(a[i]!, b[i]!) < 1e-5);
    const want = forwardRef(m2, ids);
    for (let i = 0; i < ids.length; i++) assert.ok(maxAbs(b[i]!, want[i]!) < 2e-4);
  });
});

describe("forward pass guards and KV cache plumbing", () => {
  test("positions past the cache, bad tokens, missing or misshapen tensors", () => {
    const m = randomModel(config(), 3);
    const llama = new Llama(m, { contextLength: 4 });
    assert.throws(() => llama.forward(1, 4), { code: "E_ARG", message: "position 4 is beyond the context length 4" });
    assert.throws(() => llama.prefill([1, 2, 3, 4, 5], 0), /position 4 is beyond the context length 4/);
    assert.throws(() => llama.forward(40, 0), /token id 40 is outside the vocabulary \(0\.\.39\)/);
    const missing: Model = { ...m, weights: new Map(m.weights) };
    missing.weights.delete(TensorNames.ffnUp(1));
    assert.throws(() => new Llama(missing), { code: "E_FORMAT", message: "synthetic: missing tensor blk.1.ffn_up.weight" });
    const bad: Model = { ...m, weights: new Map(m.weights) };
    bad.weights.set(TensorNames.attnK(0), { kind: "dense", tensor: new Tensor("f32", [8, 32]) });
    assert.throws(() => new Llama(bad), /synthetic: tensor blk\.0\.attn_k\.weight has shape \[8, 32\], expected \[16, 32\]/);
  });

  test("the KV cache is pluggable: a cache that rounds keys and values to bf16 is used and perturbs logits slightly", () => {
    class RoundingCache extends F32KvCache {
      stores = 0;
      override store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
        this.stores++;
        const r = (a: Float32Array) => a.map((x) => new Float32Array(new Uint32Array([new Uint32Array(new Float32Array([x]).buffer)[0]! & 0xffff0000]).buffer)[0]!);
        super.store(layer, pos, r(k), r(v));
      }
    }
    const m = randomModel(config(), 8);
    let cache: RoundingCache | undefined;
    const llama = new Llama(m, { kvCache: (l, c, h, d) => (cache = new RoundingCache(l, c, h, d)) });
    const base = prefillAll(new Llama(m), ids6);
    const got = prefillAll(llama, ids6);
    assert.equal(cache!.stores, ids6.length * m.config.nLayers);
    const d = maxAbs(got.at(-1)!, base.at(-1)!);
    assert.ok(d > 0 && d < 0.1, `perturbation ${d}`);
  });
});
const ids6 = [1, 2, 3, 4, 5, 6];

describe("hooksOnly: a forward pass for its input hooks alone", () => {
  test("the hooks see the same inputs bit for bit; no logits, and the last FFN down projection is not run", () => {
    const ids = Array.from({ length: 40 }, (_, i) => (i * 37 + 1) % 512);
    const calls = { matmul: 0, matvec: 0 };
    let depth = 0; // RefBackend's matmul and matvec call each other: count the forward pass's calls only
    class Counting extends RefBackend {
      override matmul(...a: Parameters<RefBackend["matmul"]>): void { if (depth++ === 0) calls.matmul++; try { super.matmul(...a); } finally { depth--; } }
      override matvec(...a: Parameters<RefBackend["matvec"]>): void { if (depth++ === 0) calls.matvec++; try { super.matvec(...a); } finally { depth--; } }
    }
    const capture = (hooksOnly: boolean) => {
      const seen: string[] = [];
      const xs: Float32Array[] = [];
      const l = new Llama(m260K, { backend: new Counting(), contextLength: 64, maxBatch: 16, hooksOnly, inputHook: (layer, site, x, n, w) => { seen.push(`${layer}.${site}.${n}.${w}`); xs.push(x.slice()); } });
      calls.matmul = calls.matvec = 0;
      l.reset();
      const out = l.prefill(ids, 0);
      return { seen, xs, out, calls: { ...calls }, l };
    };
    const full = capture(false), only = capture(true);
    const L = m260K.config.nLayers;
    assert.deepEqual(only.seen, full.seen);
    assert.equal(only.seen.length, 3 * 4 * L); // 3 chunks (16, 16, 8) × 4 sites × layers
    for (let i = 0; i < full.xs.length; i++) assert.deepEqual(only.xs[i], full.xs[i], `hook call ${only.seen[i]}`);
    // 7 linears per layer per chunk; the full pass adds the last position's logits (one mat-vec)
    assert.deepEqual(full.calls, { matmul: 3 * 7 * L, matvec: 1 });
    assert.deepEqual(only.calls, { matmul: 3 * (7 * L - 1), matvec: 0 });
    assert.equal(full.out.length, m260K.config.vocabSize);
    assert.equal(only.out.length, 0);
    assert.throws(() => only.l.prefill(ids, 0, () => {}), /hooksOnly/);
    assert.throws(() => only.l.forward(1, 0), /hooksOnly/);
  });
});
