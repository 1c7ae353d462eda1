// The WASM attention (assembly/attention.ts through WasmKvCache.attend) against the reference
// (F32KvCache + attendRef, model/kv-cache.ts): same q/k/v, lengths 1… that hit every SIMD tail of the
// scores (8, 4, 1 keys), the exp (8, 4, 1) and the mix (32, 16, 4, 1 columns), head dims that are not
// multiples of 4, GQA ratios 1/2/4, several layers, 1–3 threads, both builds. Tolerance: a few ulp of
// Σ_t |p_t·v_t| per output element (p the softmax weights), the scale of the rounding error any
// order of summation makes. Also the vector exp against Math.exp, and Llama on the WASM backend (its own
// cache) against Llama on the ref backend, prefill, stories260K and stories3M.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { VARIANTS, readyBackend, disposeAll, randomF32 } from "../helpers.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import { Tensor } from "../../../src/core/tensor.js";
import { F32KvCache, attendRef } from "../../../src/model/kv-cache.js";
import { WasmKvCache } from "../../../src/kernels/wasm/kv-cache.js";
import { RefBackend } from "../../../src/kernels/ref/backend.js";
import { Llama } from "../../../src/model/llama.js";
import { loadModel } from "../../../src/io/node/load.js";
import { dataPath } from "../../../src/io/node/data.js";
import type { KvCache } from "../../../src/kernels/types.js";

after(disposeAll);

const EPS = 2 ** -24;

/** the f32 neighbour distance at |x| */
function ulpOf(x: number): number {
  const a = Math.abs(Math.fround(x));
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

describe("vector exp (assembly/vmath.ts v_exp)", () => {
  test("≤ 2 ulp of Math.exp on [−87.3, 88.7], every tail length, special values", async () => {
    const be = await readyBackend(VARIANTS[0]!, 1);
    const k = be.kernels;
    const N = 1 << 16;
    const x = be.arena.alloc(N * 4), y = be.arena.alloc(N * 4);
    try {
      let worst = 0, at = 0;
      for (const [lo, hi] of [[-87.3, 0], [0, 88.7], [-1, 1], [-1e-3, 1e-3]] as const) {
        const f = be.arena.f32;
        for (let i = 0; i < N; i++) f[(x >>> 2) + i] = Math.fround(lo + ((hi - lo) * (i + 0.5)) / N);
        k.exp_f32_row(x, N, y, 0);
        for (let i = 0; i < N; i++) {
          const xi = f[(x >>> 2) + i]!;
          const err = Math.abs(f[(y >>> 2) + i]! - Math.exp(xi)) / ulpOf(Math.exp(xi));
          if (err > worst) { worst = err; at = xi; }
        }
      }
      assert.ok(worst <= 2, `worst ${worst.toFixed(3)} ulp at x = ${at}`);
      // the scalar tail runs the vector code on one lane: the same value whatever the position
      const vals = [-3.25, 0.5, 7.75, -0.001, 12, -50, 1, 0, 2.5];
      const f = be.arena.f32;
      f.set(vals, x >>> 2);
      k.exp_f32_row(x, vals.length, y, 0);
      const full = Array.from(f.subarray(y >>> 2, (y >>> 2) + vals.length));
      for (let n = 1; n <= vals.length; n++) {
        k.exp_f32_row(x, n, y, 0);
        assert.deepEqual(Array.from(be.arena.f32.subarray(y >>> 2, (y >>> 2) + n)), full.slice(0, n), `n = ${n}`);
      }
      const special: [number, number][] = [[0, 1], [-0, 1], [-Infinity, 0], [Infinity, Infinity], [89, Infinity], [-88, 0], [-1000, 0]];
      f.set(special.map((s) => s[0]), x >>> 2);
      f[(x >>> 2) + special.length] = NaN;
      k.exp_f32_row(x, special.length + 1, y, 0);
      special.forEach(([xi, want], i) => assert.equal(be.arena.f32[(y >>> 2) + i], want, `exp(${xi})`));
      assert.ok(Number.isNaN(be.arena.f32[(y >>> 2) + special.length]!), "exp(NaN)");
      // from 88.38 to ln(FLT_MAX), n = 128: finite results through the doubling
      f[x >>> 2] = 88.5;
      k.exp_f32_row(x, 1, y, 0);
      assert.ok(Math.abs(be.arena.f32[y >>> 2]! - Math.exp(88.5)) <= 2 * ulpOf(Math.exp(88.5)), `exp(88.5) = ${be.arena.f32[y >>> 2]}`);
    } finally {
      be.arena.free(x);
      be.arena.free(y);
    }
  });

  test("the softmax's exp (x ≤ 0, no overflow end) is bit for bit the full one, every tail length", async () => {
    for (const variant of VARIANTS) {
      const be = await readyBackend(variant, 1);
      const N = 4099;
      const x = be.arena.alloc(N * 4), y = be.arena.alloc(N * 4), z = be.arena.alloc(N * 4);
      const f = be.arena.f32;
      for (let i = 0; i < N; i++) f[(x >>> 2) + i] = i === 0 ? -Infinity : -((i * 7.31) % 95);
      for (const n of [N, 1, 2, 3, 5, 6, 7]) {
        be.kernels.exp_f32_row(x, n, y, 0);
        be.kernels.exp_f32_row(x, n, z, 1);
        const a = new Uint32Array(be.arena.f32.buffer, y, n), b = new Uint32Array(be.arena.f32.buffer, z, n);
        assert.deepEqual(Array.from(b), Array.from(a), `${variant} n = ${n}`);
      }
      for (const o of [x, y, z]) be.arena.free(o);
    }
  });
});

interface Case {
  hd: number;
  nKv: number;
  kvMul: number;
  layers: number;
  /** prefill chunks (pos0 follows on), each stored then attended */
  chunks: number[];
}

/** Stores random K/V into both caches, then attends every chunk; returns the worst error in units of
 * ε·Σ|p·v| (against float64 from the same inputs) of the WASM cache and of the reference. */
function runCase(c: Case, wasm: KvCache, seed: number): { wasm: number; ref: number } {
  const { hd, nKv, kvMul, layers } = c;
  const nHeads = nKv * kvMul, qDim = nHeads * hd, kvDim = nKv * hd;
  const cap = c.chunks.reduce((a, b) => a + b, 0);
  const ref = new F32KvCache(layers, cap, nKv, hd);
  const att = new Float32Array(cap);
  const K: Float32Array[][] = [], V: Float32Array[][] = []; // [layer][pos] (kvDim)
  for (let l = 0; l < layers; l++) { K.push([]); V.push([]); }
  let worstW = 0, worstR = 0;
  let pos0 = 0;
  for (const n of c.chunks) {
    for (let l = 0; l < layers; l++) {
      for (let i = 0; i < n; i++) {
        // scores of a few units: peaked and flat softmaxes both occur
        const k = randomF32(kvDim, seed++, 1.5), v = randomF32(kvDim, seed++, 2);
        K[l]![pos0 + i] = k;
        V[l]![pos0 + i] = v;
        ref.store(l, pos0 + i, k, v);
        wasm.store(l, pos0 + i, k, v);
      }
      const q = randomF32(n * qDim, seed++, 1.5);
      const got = new Float32Array(n * qDim).fill(NaN), want = new Float32Array(n * qDim).fill(NaN);
      wasm.attend!(l, q, pos0, n, nHeads, got);
      attendRef(ref, l, q, pos0, n, nHeads, want, att);
      for (let i = 0; i < n; i++) {
        const len = pos0 + i + 1;
        for (let h = 0; h < nHeads; h++) {
          const g = Math.floor(h / kvMul);
          const off = i * qDim + h * hd;
          const p = new Float64Array(len);
          for (let t = 0; t < len; t++) {
            let d = 0;
            for (let j = 0; j < hd; j++) d += q[off + j]! * K[l]![t]![g * hd + j]!;
            p[t] = d / Math.sqrt(hd);
          }
          const m = Math.max(...p);
          let sum = 0;
          for (let t = 0; t < len; t++) sum += (p[t] = Math.exp(p[t]! - m));
          for (let j = 0; j < hd; j++) {
            let exact = 0, mag = 0;
            for (let t = 0; t < len; t++) {
              const pv = (p[t]! / sum) * V[l]![t]![g * hd + j]!;
              exact += pv;
              mag += Math.abs(pv);
            }
            const scale = EPS * mag + 2 ** -140;
            const e = Math.abs(got[off + j]! - exact) / scale;
            worstW = Number.isNaN(e) ? Infinity : Math.max(worstW, e);
            worstR = Math.max(worstR, Math.abs(want[off + j]! - exact) / scale);
          }
        }
      }
    }
    pos0 += n;
  }
  return { wasm: worstW, ref: worstR };
}

const CASES: Case[] = [
  { hd: 32, nKv: 4, kvMul: 2, layers: 2, chunks: [1, 19, 1, 1] }, // stories3M's shape; decode steps after a prefill
  { hd: 8, nKv: 4, kvMul: 2, layers: 1, chunks: [13, 1] }, // stories260K's
  { hd: 1, nKv: 1, kvMul: 1, layers: 1, chunks: [10] },
  { hd: 3, nKv: 2, kvMul: 4, layers: 1, chunks: [9] },
  { hd: 6, nKv: 1, kvMul: 2, layers: 2, chunks: [5, 6] },
  { hd: 18, nKv: 2, kvMul: 1, layers: 1, chunks: [11] },
  { hd: 36, nKv: 1, kvMul: 4, layers: 1, chunks: [17] },
  { hd: 52, nKv: 2, kvMul: 2, layers: 1, chunks: [9] }, // 32 + 16 + 4 column blocks
  { hd: 64, nKv: 1, kvMul: 1, layers: 1, chunks: [40] },
  { hd: 35, nKv: 1, kvMul: 2, layers: 1, chunks: [1, 1, 1, 6] },
  { hd: 32, nKv: 2, kvMul: 2, layers: 1, chunks: [128, 128, 1] }, // calibration's chunks: sums of 257 terms
];

// measured worst: well under 4 for the WASM kernel at these sizes; the reference itself is of the same order
const TOL = 8;

describe("WasmKvCache.attend = attendRef(F32KvCache) within a few ulp of Σ|p·v|", () => {
  for (const variant of VARIANTS) {
    for (const threads of [1, 2, 3]) {
      test(`${variant}, ${threads} thread(s)`, async () => {
        const be = await readyBackend(variant, threads);
        let seed = 1;
        for (const c of CASES) {
          const cap = c.chunks.reduce((a, b) => a + b, 0);
          const kv = be.kvCache(c.layers, cap, c.nKv, c.hd)!;
          assert.ok(kv instanceof WasmKvCache);
          try {
            const e = runCase(c, kv, seed);
            seed += 1000;
            if (process.env.ATTN_DEBUG) console.log(variant, threads, JSON.stringify(c), e.wasm.toFixed(2), e.ref.toFixed(2));
            assert.ok(e.wasm <= TOL, `${JSON.stringify(c)}: wasm ${e.wasm.toFixed(2)} ε·Σ|p·v| (ref ${e.ref.toFixed(2)})`);
          } finally {
            kv.dispose!();
          }
        }
      });
    }
  }

  test("per-head scores and mix on the WASM cache match the reference cache's", async () => {
    const be = await readyBackend(VARIANTS[0]!, 1);
    const L = 2, CAP = 7, H = 3, HD = 5;
    const w = be.kvCache(L, CAP, H, HD)!, r = new F32KvCache(L, CAP, H, HD);
    for (let l = 0; l < L; l++) {
      for (let t = 0; t < CAP; t++) {
        const k = randomF32(H * HD, 100 + t + 10 * l), v = randomF32(H * HD, 200 + t + 10 * l);
        w.store(l, t, k, v);
        r.store(l, t, k, v);
      }
    }
    const q = randomF32(2 * HD, 9), p = randomF32(CAP, 10);
    for (let l = 0; l < L; l++) {
      for (let g = 0; g < H; g++) {
        const a = new Float32Array(CAP), b = new Float32Array(CAP);
        w.scores(l, g, q, HD, CAP, a);
        r.scores(l, g, q, HD, CAP, b);
        for (let t = 0; t < CAP; t++) assert.ok(Math.abs(a[t]! - b[t]!) <= 1e-6, `scores ${l}/${g}/${t}`);
        const ma = new Float32Array(HD + 2), mb = new Float32Array(HD + 2);
        w.mix(l, g, p, CAP, ma, 2);
        r.mix(l, g, p, CAP, mb, 2);
        for (let j = 0; j < HD + 2; j++) assert.ok(Math.abs(ma[j]! - mb[j]!) <= 1e-6, `mix ${l}/${g}/${j}`);
      }
    }
    w.dispose!();
  });

  test("bad calls: positions past the capacity, heads not a multiple of the KV heads, use after dispose", async () => {
    const be = await readyBackend(VARIANTS[0]!, 1);
    const kv = be.kvCache(1, 4, 2, 4)!;
    const q = new Float32Array(5 * 16), out = new Float32Array(5 * 16);
    assert.throws(() => kv.attend!(0, q, 2, 3, 4, out), /positions 2\.\.4 are outside 0\.\.3/);
    assert.throws(() => kv.attend!(0, q, 0, 1, 3, out), /3 query heads is not a multiple of 2 KV heads/);
    assert.throws(() => kv.attend!(1, q, 0, 1, 4, out), /layer 1 is outside 0\.\.0/);
    kv.dispose!();
    assert.throws(() => kv.attend!(0, q, 0, 1, 4, out), /after dispose/);
  });

  test("the cache's memory is given back on dispose", async () => {
    const be = await readyBackend(VARIANTS[0]!, 1);
    const before = be.memoryStats();
    for (let i = 0; i < 5; i++) be.kvCache(4, 256, 4, 32)!.dispose!();
    const kv = be.kvCache(4, 256, 4, 32)!;
    kv.dispose!();
    const afterStats = be.memoryStats();
    assert.equal(afterStats.shards[0]! - afterStats.free[0]!, before.shards[0]! - before.free[0]!);
  });
});

test("a cache in a later shard (added after the workers started) gives the one-memory bits; one too big for any memory is undefined", async () => {
  const variant = VARIANTS[VARIANTS.length - 1]!;
  const one = await readyBackend(variant, 1);
  // 2 MiB memories, 512 KiB kept for scratch: a 1.2 MB weight fills shard 0, the 512 KiB cache takes shard 1
  const small = createNodeWasmBackend({ variant, threads: 2, maxPages: 32, scratchReserveBytes: 512 * 1024, minParallelBytes: 0, watchdogMs: 20000 });
  try {
    assert.ok(await small.ready(20000), "workers did not start");
    small.prepare({ kind: "dense", tensor: Tensor.fromF32([300, 1000], randomF32(300000, 5)) }, "filler");
    const L = 4, CAP = 128, H = 4, HD = 32, nHeads = 8;
    const a = small.kvCache(L, CAP, H, HD)!, b = one.kvCache(L, CAP, H, HD)!;
    assert.equal(small.memoryStats().shards.length, 2);
    for (let t = 0; t < CAP; t++) {
      const k = randomF32(H * HD, 2 * t + 1), v = randomF32(H * HD, 2 * t + 2);
      a.store(3, t, k, v);
      b.store(3, t, k, v);
    }
    const q = randomF32(CAP * nHeads * HD, 99);
    for (const minBytes of [Infinity, 0]) {
      small.minParallelBytes = minBytes;
      const before = small.poolStats();
      for (let it = 0; it < 20; it++) {
        const oa = new Float32Array(q.length), ob = new Float32Array(q.length);
        a.attend!(3, q, 0, CAP, nHeads, oa);
        b.attend!(3, q, 0, CAP, nHeads, ob);
        assert.deepEqual(new Uint32Array(oa.buffer), new Uint32Array(ob.buffer), `minParallelBytes ${minBytes}`);
      }
      if (minBytes === 0) {
        const st = small.poolStats();
        assert.ok(st.dispatches > before.dispatches && st.callerChunks - before.callerChunks < st.chunks - before.chunks, "the worker ran part of the attention");
      }
    }
    a.dispose!();
    b.dispose!();
    // K and V of 2·4·4·1024·32·4 B = 4 MiB: more than a memory takes
    assert.equal(small.kvCache(L, 8 * CAP, H, HD), undefined);
  } finally {
    small.dispose();
  }
});

describe("Llama on the WASM backend (WASM KV cache) = Llama on the ref backend", () => {
  const ids = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : (i * 7919 + 13) % vocab));

  function prefillLogits(llama: Llama, tokens: number[]): Float32Array {
    const v = llama.config.vocabSize;
    const out = new Float32Array(tokens.length * v);
    llama.reset();
    llama.prefill(tokens, 0, (lg, row, n) => out.set(lg.subarray(0, n * v), row * v));
    return out;
  }

  test("a context too long for the backend's memory keeps the TypeScript cache", async () => {
    const be = createNodeWasmBackend({ maxPages: 64, scratchReserveBytes: 1 << 20 });
    try {
      const model = await loadModel(dataPath("stories260K", "stories260K.bin"));
      const llama = new Llama(model, { backend: be, contextLength: 100000 }); // K/V: 12.8 MB, memories of 4 MiB
      assert.ok(llama.kv instanceof F32KvCache);
      llama.prefill([1, 2, 3], 0);
      llama.dispose();
    } finally {
      be.dispose();
    }
  });

  for (const [name, path, n] of [["stories260K", dataPath("stories260K", "stories260K.bin"), 300], ["stories3M", dataPath("stories3M", "stories3M.bin"), 160]] as const) {
    test(`${name}: prefill logits of ${n} positions within 1e-4, 1 and 2 threads; the same bits in both builds and at any thread count`, async () => {
      const model = await loadModel(path, { tokenizer: dataPath("stories260K", "tok512.bin") });
      const tokens = ids(n, model.config.vocabSize);
      const want = prefillLogits(new Llama(model, { backend: new RefBackend(), contextLength: n }), tokens);
      let first: Float32Array | undefined;
      for (const variant of VARIANTS) {
        for (const threads of [1, 2]) {
          const be = await readyBackend(variant, threads);
          const llama = new Llama(model, { backend: be, contextLength: n, maxBatch: 64 });
          assert.ok(llama.kv instanceof WasmKvCache, "the backend's cache is the default");
          const got = prefillLogits(llama, tokens);
          llama.dispose();
          let worst = 0;
          for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
          assert.ok(worst <= 1e-4, `${variant} t${threads}: max |Δlogit| = ${worst}`);
          // calibration on any engine and thread count must give the same numbers (recipes reproduce files)
          first ??= got;
          const i = got.findIndex((v, k) => !Object.is(v, first![k]));
          assert.equal(i, -1, `${variant} t${threads}: logit ${i} differs from the first build/thread count`);
        }
      }
    });
  }
});
