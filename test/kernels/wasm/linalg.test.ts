// The WASM float64 linear-algebra kernels (src/kernels/wasm/linalg.ts) against their reference twin
// (algos/linalg.ts RefLinalg): Gram, upper Cholesky of the inverse, lazy updates, and whole
// GPTQ runs (same codes), on sizes that are not multiples of the tiles, 1 and 2 threads.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Rng } from "../../../src/core/rng.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";

import { GRAM_F32_PANEL, RefLinalg, addGram, addGramF32, lazyUpdateF32Ref, lazyUpdateRef, upperCholeskyOfInverseInPlace } from "../../../src/algos/linalg.js";
import { HessianAccumulator, gptqQuantize } from "../../../src/algos/gptq.js";
import { IntAffineQuantizer } from "../../../src/algos/quantizer.js";
import type { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { wasmVariantSupported } from "../../../src/kernels/wasm/module.js";

// both builds where the engine runs the relaxed one (its GEMM fuses multiply-adds)
const backends: WasmBackend[] = [createNodeWasmBackend({ threads: 1, variant: "simd" }), createNodeWasmBackend({ threads: 2 })];
if (wasmVariantSupported("relaxed")) backends.push(createNodeWasmBackend({ threads: 1, variant: "relaxed" }));
// the 2-thread backend's workers must be up, or the caller runs every chunk alone
before(async () => { assert.ok(await backends[1]!.ready(20000), "workers started"); });
after(() => { for (const b of backends) b.dispose(); });

function inputs(rng: Rng, nTok: number, n: number): Float32Array {
  // correlated: a rank-3 signal plus noise, and one dead channel when n > 3
  const x = new Float32Array(nTok * n);
  const basis = Array.from({ length: 3 }, () => Array.from({ length: n }, () => rng.normal()));
  for (let t = 0; t < nTok; t++) {
    const z = [rng.normal(), rng.normal(), rng.normal()];
    for (let c = 0; c < n; c++) x[t * n + c] = c === 2 && n > 3 ? 0 : 0.3 * rng.normal() + z[0]! * basis[0]![c]! + z[1]! * basis[1]![c]! + z[2]! * basis[2]![c]!;
  }
  return x;
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, scale: number): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / scale);
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

describe("wasm linalg vs reference", () => {
  test("Gram (lower accumulation, mirrored) equals addGram over chunks, tiles not dividing n", () => {
    const rng = new Rng(5);
    for (const be of backends) {
      const K = be.linalg();
      for (const [n, nTok] of [[1, 3], [5, 7], [67, 300], [130, 513]] as const) {
        const x = inputs(rng, nTok, n);
        const ref = new Float64Array(n * n);
        addGram(x, nTok, n, ref);
        const acc = K.alloc(n * n);
        // two calls (as a calibration hook streams windows)
        const cut = Math.floor(nTok / 3);
        K.gramAddLower(x.subarray(0, cut * n), cut, n, acc);
        K.gramAddLower(x.subarray(cut * n), nTok - cut, n, acc);
        K.mirrorLower(acc, n);
        assert.ok(maxRelDiff(acc, ref, maxAbs(ref)) < 1e-13, `gram n=${n} ${K.name}`);
        for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(acc[i * n + j], acc[j * n + i]);
        K.free(acc);
      }
    }
  });

  test("Gram with f32 products: the SIMD128 build gives addGramF32's bits, every build is within the f32 bound of the f64 Gram, thread splits give the same bits", () => {
    // Bound: a product is rounded once to f32 (unit u = 2⁻²⁴) and then sits in a lane chain of at most
    // ⌈256/4⌉ = 64 f32 additions plus the f32 pair sum, so per panel |fl − exact| ≤ γ₆₆·Σ_panel|x_i x_j|
    // (Higham, Accuracy and Stability, §3.1: γₘ = m·u/(1 − m·u)); fusing a multiply-add only removes a
    // rounding. The f64 sides (reference and the panels' accumulation) add ≤ 1e-13 of the scale.
    const u = 2 ** -24, m = GRAM_F32_PANEL / 4 + 2, gamma = (m * u) / (1 - m * u);
    const rng = new Rng(6);
    const [simd1] = backends;
    for (const [n, nTok] of [[1, 3], [5, 7], [67, 300], [130, 513]] as const) {
      const x = inputs(rng, nTok, n);
      // the same two calls everywhere (panels restart at each call)
      const cut = Math.floor(nTok / 3);
      const twin = new Float64Array(n * n);
      addGramF32(x.subarray(0, cut * n), cut, n, twin);
      addGramF32(x.subarray(cut * n), nTok - cut, n, twin);
      const exact = new Float64Array(n * n);
      addGram(x, nTok, n, exact);
      const absSum = new Float64Array(n * n);
      for (let t = 0; t < nTok; t++) for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) absSum[i * n + j] += Math.abs(x[t * n + i]! * x[t * n + j]!);
      const bits = new Map<string, Float64Array>();
      for (const be of backends) {
        const K = be.linalg();
        const acc = K.alloc(n * n);
        K.gramAddLowerF32(x.subarray(0, cut * n), cut, n, acc);
        K.gramAddLowerF32(x.subarray(cut * n), nTok - cut, n, acc);
        let worst = 0;
        for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) {
          const k = i * n + j;
          const err = Math.abs(acc[k]! - exact[k]!);
          assert.ok(err <= gamma * absSum[k]! + 1e-13 * absSum[k]!, `f32 gram n=${n} ${K.name} ${be.variant} [${i},${j}]: ${err} > bound ${gamma * absSum[k]!}`);
          if (absSum[k]! > 0) worst = Math.max(worst, err / absSum[k]!);
        }
        if (be === simd1) for (let k = 0; k < n * n; k++) if (k % n <= Math.floor(k / n)) assert.equal(acc[k], twin[k], `simd f32 gram = twin n=${n} at ${k}`);
        // one build's bits do not depend on the thread count
        const prev = bits.get(be.variant);
        if (prev) for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) assert.equal(acc[i * n + j], prev[i * n + j], `${be.variant} threads n=${n}`);
        else bits.set(be.variant, new Float64Array(acc));
        if (n >= 67) assert.ok(worst > 0, "f32 products do round on these inputs");
        K.free(acc);
      }
    }
  });

  test("upper Cholesky of the inverse equals the reference; UᵀU·A = I; failure restores A", () => {
    const rng = new Rng(9);
    for (const be of backends) {
      const K = be.linalg();
      for (const n of [1, 2, 63, 64, 65, 150, 300]) {
        const x = inputs(rng, 2 * n + 5, n);
        const a = new Float64Array(n * n);
        addGram(x, 2 * n + 5, n, a);
        for (let i = 0; i < n; i++) a[i * n + i] += 0.01 * (1 + a[i * n + i]!);
        const ref = new Float64Array(a);
        assert.ok(upperCholeskyOfInverseInPlace(ref, n));
        const w = K.alloc(n * n);
        w.set(a);
        assert.ok(K.upperCholeskyOfInverseInPlace(w, n), `n=${n}`);
        assert.ok(maxRelDiff(w, ref, maxAbs(ref)) < 1e-10, `U n=${n} ${K.name}: ${maxRelDiff(w, ref, maxAbs(ref))}`);
        for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(w[i * n + j], 0);
        if (n <= 65) {
          // (UᵀU)·A = I independently of the reference
          for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
            let s = 0;
            for (let k = 0; k < n; k++) {
              let inv = 0;
              for (let q = 0; q <= Math.min(i, k); q++) inv += w[q * n + i]! * w[q * n + k]!;
              s += inv * a[k * n + j]!;
            }
            assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-7, `UᵀU·A n=${n}`);
          }
        }
        // not positive definite (a negative pivot late in the reversed order = early in A): restored
        const bad = K.alloc(n * n);
        bad.set(a);
        bad[0] = -1;
        const before = new Float64Array(bad);
        assert.equal(K.upperCholeskyOfInverseInPlace(bad, n), false);
        assert.deepEqual(Array.from(bad), Array.from(before));
        K.free(bad);
        K.free(w);
      }
    }
  });

  test("lazy update equals the reference loop (block sizes 1, 5, 128; widths off the tiles)", () => {
    const rng = new Rng(13);
    for (const be of backends) {
      const K = be.linalg();
      for (const [rows, cols, i1, count] of [[3, 9, 2, 1], [37, 70, 10, 5], [65, 300, 0, 128], [5, 260, 128, 128]] as const) {
        const w = K.alloc(rows * cols), e = K.alloc(rows * count), u = K.alloc(cols * cols);
        for (let i = 0; i < w.length; i++) w[i] = rng.normal();
        for (let i = 0; i < e.length; i++) e[i] = rng.normal();
        for (let i = 0; i < u.length; i++) u[i] = rng.normal();
        const ref = new Float64Array(w);
        const j0 = i1 + count;
        lazyUpdateRef(ref, rows, cols, e, count, u, i1, j0);
        K.lazyUpdate(w, rows, cols, e, count, u, i1, j0);
        assert.ok(maxRelDiff(w, ref, 1 + maxAbs(ref)) < 1e-13, `lazy ${rows}×${cols} ${K.name}`);
        K.free(w); K.free(e); K.free(u);
      }
    }
  });

  test("transposed-block rank-1 update and block transpose equal the reference twin bit for bit (row counts off the vectors, 1 and 2 threads)", () => {
    const rng = new Rng(17);
    const ref = new RefLinalg();
    for (const be of backends) {
      const K = be.linalg();
      for (const [rows, count, j0, j1] of [[1, 3, 1, 3], [7, 5, 0, 5], [37, 16, 3, 16], [2049, 40, 1, 40]] as const) {
        const wt = K.alloc(count * rows), e = K.alloc(count * rows), u = K.alloc(3 * count + 5);
        for (let i = 0; i < wt.length; i++) wt[i] = rng.normal();
        for (let i = 0; i < e.length; i++) e[i] = i % 11 === 0 ? 0 : rng.normal();
        for (let i = 0; i < u.length; i++) u[i] = rng.normal();
        const want = new Float64Array(wt);
        const eOff = 2 * rows, uOff = count + 5;
        ref.rank1UpdateT(want, rows, rows, j0, j1, e, eOff, u, uOff);
        K.rank1UpdateT(wt, rows, rows, j0, j1, e, eOff, u, uOff);
        assert.deepEqual(Array.from(wt), Array.from(want), `rank1T ${rows}×${count} ${K.name}`);
        // the block back out: a (rows, cols) matrix's columns [c0, c0 + count) ← wt's rows, then compared with the twin
        const cols = count + 9, c0 = 4;
        const a = K.alloc(rows * cols), bt = K.alloc(count * rows), btRef = new Float64Array(count * rows);
        for (let i = 0; i < a.length; i++) a[i] = rng.normal();
        K.transposeBlock(a, cols, 0, c0, rows, count, bt, rows);
        ref.transposeBlock(a, cols, 0, c0, rows, count, btRef, rows);
        assert.deepEqual(Array.from(bt), Array.from(btRef));
        if (rows > 1) assert.equal(bt[rows + 1], a[cols + c0 + 1]);
        K.free(a); K.free(bt); K.free(wt); K.free(e); K.free(u);
      }
    }
  });

  test("lazy update with f32 products: SIMD128 build = lazyUpdateF32Ref bit for bit, every build within γ_{⌈count/4⌉+4}·Σ|e·u| of the f64 update, thread splits same bits", () => {
    // Bound: e and u are each rounded to f32 (2 roundings), the product once, then ≤ ⌈count/4⌉ lane additions
    // and the pair sum: ≤ ⌈count/4⌉ + 4 roundings of u = 2⁻²⁴ per term (Higham §3.1); fusing only removes one.
    const rng = new Rng(23);
    const u32 = 2 ** -24;
    for (const [rows, cols, i1, count] of [[3, 9, 2, 1], [37, 70, 10, 5], [65, 300, 0, 128], [5, 260, 128, 128]] as const) {
      const w0 = new Float64Array(rows * cols), eT = new Float64Array(count * rows), u = new Float64Array(cols * cols);
      for (let i = 0; i < w0.length; i++) w0[i] = rng.normal();
      for (let i = 0; i < eT.length; i++) eT[i] = rng.normal();
      for (let i = 0; i < u.length; i++) u[i] = rng.normal();
      const j0 = i1 + count;
      const e = new Float64Array(rows * count);
      for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) e[r * count + k] = eT[k * rows + r]!;
      const exact = new Float64Array(w0);
      lazyUpdateRef(exact, rows, cols, e, count, u, i1, j0);
      const twin = new Float64Array(w0);
      lazyUpdateF32Ref(twin, rows, cols, eT, count, u, i1, j0);
      const m = Math.ceil(count / 4) + 4, gamma = (m * u32) / (1 - m * u32);
      const bits = new Map<string, Float64Array>();
      for (const be of backends) {
        const K = be.linalg();
        const w = K.alloc(rows * cols), ek = K.alloc(count * rows), uk = K.alloc(cols * cols);
        w.set(w0); ek.set(eT); uk.set(u);
        K.lazyUpdateF32(w, rows, cols, ek, count, uk, i1, j0);
        for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) {
          const at = r * cols + j;
          if (j < j0) { assert.equal(w[at], w0[at]); continue; }
          let abs = 0;
          for (let k = 0; k < count; k++) abs += Math.abs(e[r * count + k]! * u[(i1 + k) * cols + j]!);
          const err = Math.abs(w[at]! - exact[at]!);
          assert.ok(err <= gamma * abs + 1e-14 * (1 + Math.abs(exact[at]!)), `lazy f32 ${rows}×${cols} ${K.name} ${be.variant} [${r},${j}]: ${err} > ${gamma * abs}`);
        }
        if (be === backends[0]) assert.deepEqual(Array.from(w), Array.from(twin), `simd lazy f32 = twin ${rows}×${cols}`);
        const prev = bits.get(be.variant);
        if (prev) assert.deepEqual(Array.from(w), Array.from(prev), `${be.variant} threads ${rows}×${cols}`);
        else bits.set(be.variant, new Float64Array(w));
        K.free(w); K.free(ek); K.free(uk);
      }
      if (count >= 5) assert.notDeepEqual(Array.from(twin), Array.from(exact), "f32 products do round here");
    }
  });

  test("GPTQ with the WASM kernels gives the reference's codes (groups, act-order, damping, blocks off the tiles)", () => {
    const rng = new Rng(21);
    const cases = [
      { rows: 17, cols: 70, group: 16, actOrder: false, percDamp: 0.01, blockSize: 32 },
      { rows: 33, cols: 129, group: 32, actOrder: true, percDamp: 0.1, blockSize: 128 },
      { rows: 8, cols: 200, group: 0, actOrder: false, percDamp: 0.001, blockSize: 7 },
    ];
    for (const be of backends) {
      const K = be.linalg();
      for (const c of cases) {
        const nTok = 3 * c.cols;
        const x = inputs(rng, nTok, c.cols);
        const w = new Float32Array(c.rows * c.cols);
        for (let i = 0; i < w.length; i++) w[i] = 0.05 * rng.normal();
        const refAcc = new HessianAccumulator(c.cols);
        refAcc.add(x, nTok);
        const acc = new HessianAccumulator(c.cols, K);
        acc.add(x.subarray(0, 100 * c.cols), 100);
        acc.add(x.subarray(100 * c.cols), nTok - 100);
        // a copy out (as collectImatrix takes it) equals the in-place Hessian
        const copy = acc.hessian();
        const href = refAcc.takeHessian();
        const h = acc.takeHessian();
        assert.deepEqual(Array.from(copy), Array.from(h));
        assert.ok(maxRelDiff(h, href, maxAbs(href)) < 1e-13);
        const quant = new IntAffineQuantizer({ bits: 4, groupSize: c.group });
        const opts = { actOrder: c.actOrder, percDamp: c.percDamp, blockSize: c.blockSize };
        const r0 = gptqQuantize(w, c.rows, c.cols, href, quant, opts);
        const r1 = gptqQuantize(w, c.rows, c.cols, h, quant, { ...opts, kernels: K, overwriteHessian: true });
        let differ = 0;
        for (let i = 0; i < r0.q.length; i++) if (r0.q[i] !== r1.q[i]) differ++;
        assert.equal(differ, 0, `codes differ in ${differ} of ${r0.q.length} (${JSON.stringify(c)}, ${K.name})`);
        assert.ok(Math.abs(r0.loss - r1.loss) <= 1e-9 * r0.loss);
        assert.deepEqual(Array.from(r0.perm), Array.from(r1.perm));
        K.free(h);
        // the f32 path (f32 products in the Hessian and the lazy updates): codes may move (GPTQ carries every
        // moved code on), the proxy loss may not — measured ≤ 1.5·10⁻⁶ relative on these layers
        const acc32 = new HessianAccumulator(c.cols, K, "f32");
        acc32.add(x.subarray(0, 100 * c.cols), 100);
        acc32.add(x.subarray(100 * c.cols), nTok - 100);
        const h32 = acc32.takeHessian();
        assert.ok(maxRelDiff(h32, href, maxAbs(href)) < 1e-5, "f32-product Hessian near the f64 one");
        const r2 = gptqQuantize(w, c.rows, c.cols, h32, quant, { ...opts, kernels: K, overwriteHessian: true, updates: "f32" });
        assert.ok(Math.abs(r2.loss - r0.loss) <= 1e-4 * r0.loss, `f32 path loss ${r2.loss} vs ${r0.loss}`);
        K.free(h32);
      }
    }
  });

  test("property: random SPD sizes, Cholesky of the inverse and lazy updates match the reference twin", () => {
    const be = backends[1]!;
    const K = be.linalg();
    const ref = new RefLinalg();
    fc.assert(fc.property(fc.integer({ min: 1, max: 90 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 1e6 }), (n, rows, seed) => {
      const rng = new Rng(seed);
      const x = inputs(rng, n + 4, n);
      const a = ref.alloc(n * n);
      ref.gramAddLower(x, n + 4, n, a);
      const g = K.alloc(n * n);
      K.gramAddLower(x, n + 4, n, g);
      K.mirrorLower(g, n);
      if (maxRelDiff(g, a, maxAbs(a) + 1e-300) > 1e-13) return false;
      for (let i = 0; i < n; i++) { a[i * n + i] += 0.1 + 0.01 * a[i * n + i]!; g[i * n + i] = a[i * n + i]!; }
      for (let i = 0; i < n * n; i++) g[i] = a[i]!;
      const okR = ref.upperCholeskyOfInverseInPlace(a, n), okW = K.upperCholeskyOfInverseInPlace(g, n);
      if (okR !== okW) return false;
      const close = maxRelDiff(g, a, maxAbs(a)) < 1e-10;
      const i1 = Math.floor(n / 3), count = Math.max(1, Math.min(n - i1, 1 + (seed % 9)));
      const w = K.alloc(rows * n), e = K.alloc(rows * count);
      for (let i = 0; i < w.length; i++) w[i] = rng.normal();
      for (let i = 0; i < e.length; i++) e[i] = rng.normal();
      const wr = new Float64Array(w);
      ref.lazyUpdate(wr, rows, n, e, count, a, i1, i1 + count);
      K.lazyUpdate(w, rows, n, e, count, g, i1, i1 + count);
      const closeW = maxRelDiff(w, wr, 1 + maxAbs(wr)) < 1e-10;
      K.free(e); K.free(w); K.free(g);
      return close && closeW;
    }), { numRuns: 40 });
  });

  test("buffers not from alloc are refused with a clear error", () => {
    const K = backends[0]!.linalg();
    assert.throws(() => K.upperCholeskyOfInverseInPlace(new Float64Array(4), 2), /not allocated by this backend/);
    // the f32 paths exist only on kernels, and an unknown precision is named
    assert.throws(() => new HessianAccumulator(4, undefined, "f32"), /products "f32" needs a backend's linalg kernels/);
    assert.throws(() => new HessianAccumulator(4, K, "f16" as "f32"), /products must be "f64" or "f32", got f16/);
    const q4 = new IntAffineQuantizer({ bits: 4, groupSize: 0 });
    assert.throws(() => gptqQuantize(new Float32Array(4), 2, 2, new Float64Array([1, 0, 0, 1]), q4, { updates: "f32" }), /updates "f32" needs a backend's linalg kernels/);
    // buffers allocated across a memory grow stay usable (the arena knows every buffer object)
    const small = K.alloc(4);
    const big = K.alloc(1 << 22); // 32 MiB: grows the memory
    small.set([4, 2, 2, 3]);
    assert.ok(K.upperCholeskyOfInverseInPlace(small, 2));
    assert.ok(K.owns(big));
    K.free(big);
    K.free(small);
  });
});
