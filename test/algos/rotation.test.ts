import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { randomOrthogonal } from "../../src/algos/linalg.js";
import { foldNormInPlace, hadamardPlan, paleyHadamard, randomizedHadamard, rotateInputsInPlace, rotateOutputsInPlace } from "../../src/algos/rotation.js";
import { gaussian } from "./helpers.js";

function maxOffIdentity(m: Float64Array, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += m[i * n + k]! * m[j * n + k]!;
    worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
  }
  return worst;
}

describe("rotation", () => {
  test("construction plans by size", () => {
    assert.deepEqual(hadamardPlan(64), { pow2: 64, b: 1, kind: "hadamard" });
    assert.equal(hadamardPlan(12).kind, "hadamard⊗paley");
    assert.deepEqual(hadamardPlan(96), { pow2: 8, b: 12, kind: "hadamard⊗paley", q: 11 });
    assert.deepEqual(hadamardPlan(172), { pow2: 4, b: 43, kind: "hadamard⊗random" });
    assert.equal(hadamardPlan(176).kind, "hadamard⊗paley"); // 4 · 44, q = 43
    assert.equal(hadamardPlan(100).kind, "hadamard⊗random"); // 4 · 25
    // Llama-7B's 11008 = 2^8·43: Paley would need a 5504-wide dense factor; the small odd factor wins
    assert.deepEqual(hadamardPlan(11008), { pow2: 256, b: 43, kind: "hadamard⊗random" });
    assert.deepEqual(hadamardPlan(14336), { pow2: 64, b: 224, kind: "hadamard⊗paley", q: 223 });
    assert.throws(() => hadamardPlan(5003), /size 5003 = 1·5003 has an odd factor above 2048/);
  });

  test("Paley matrices are ±1 Hadamard: H·Hᵀ = (q+1)·I", () => {
    for (const q of [3, 7, 11, 19, 23, 43]) {
      const h = paleyHadamard(q);
      const n = q + 1;
      for (const v of h) assert.ok(v === 1 || v === -1);
      const f = Float64Array.from(h, (v) => v / Math.sqrt(n));
      assert.ok(maxOffIdentity(f, n) < 1e-12, `q=${q}`);
    }
    assert.throws(() => paleyHadamard(13), /prime ≡ 3 mod 4/);
  });

  test("randomized rotations are orthogonal; apply/applyT match the matrix and invert each other", () => {
    const rng = new Rng(1);
    for (const n of [1, 2, 8, 64, 12, 20, 96, 172, 100, 256]) {
      const r = randomizedHadamard(n, 7);
      const m = r.matrix();
      assert.ok(maxOffIdentity(m, n) < 1e-12, `n=${n} (${r.kind}) not orthogonal`);
      const x = gaussian(rng, 3 * n);
      const y = Float64Array.from(x);
      r.apply(y, 3);
      for (let v = 0; v < 3; v++) for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += m[i * n + j]! * x[v * n + j]!;
        assert.ok(Math.abs(s - y[v * n + i]!) < 1e-10, `n=${n} apply`);
      }
      r.applyT(y, 3);
      for (let i = 0; i < 3 * n; i++) assert.ok(Math.abs(y[i]! - x[i]!) < 1e-10, `n=${n} applyT∘apply`);
      if (r.kind === "hadamard" && n > 1) for (const v of m) assert.ok(Math.abs(Math.abs(v) - 1 / Math.sqrt(n)) < 1e-12);
    }
    // different seeds give different rotations
    assert.notDeepEqual(randomizedHadamard(64, 1).matrix(), randomizedHadamard(64, 2).matrix());
  });

  test("randomOrthogonal is orthogonal", () => {
    assert.ok(maxOffIdentity(randomOrthogonal(37, new Rng(3)), 37) < 1e-12);
  });

  test("a rotated 2-layer toy network (norms folded, residual rotation, online Hadamard on FFN-down input) gives the same logits", () => {
    // Toy pre-norm network: h = E[tok]; per layer h += Wd·(silu(Wg·u) ⊙ (Wu·u)), u = rmsnorm(h)⊙g;
    // logits = Wout·(rmsnorm(h)⊙gOut). Sizes as stories260K: dim 64, hidden 172.
    const rng = new Rng(5);
    const dim = 64, hidden = 172, vocab = 40, nLayers = 2;
    const mk = (n: number, std: number) => gaussian(rng, n, std);
    const net = {
      emb: mk(vocab * dim, 1),
      layers: Array.from({ length: nLayers }, () => ({
        g: Float32Array.from(mk(dim, 0.3), (v) => 1 + v),
        wg: mk(hidden * dim, 0.15), wu: mk(hidden * dim, 0.15), wd: mk(dim * hidden, 0.1),
      })),
      gOut: Float32Array.from(mk(dim, 0.3), (v) => 1 + v),
      wOut: mk(vocab * dim, 0.2),
    };
    type Net = typeof net;
    const clone = (n: Net): Net => ({
      emb: Float32Array.from(n.emb),
      layers: n.layers.map((l) => ({ g: Float32Array.from(l.g), wg: Float32Array.from(l.wg), wu: Float32Array.from(l.wu), wd: Float32Array.from(l.wd) })),
      gOut: Float32Array.from(n.gOut), wOut: Float32Array.from(n.wOut),
    });
    const matvec = (w: Float32Array, rows: number, cols: number, x: Float32Array) => {
      const y = new Float32Array(rows);
      for (let r = 0; r < rows; r++) { let s = 0; for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!; y[r] = s; }
      return y;
    };
    const rmsnorm = (h: Float32Array, g: Float32Array) => {
      let ss = 0; for (const v of h) ss += v * v;
      const inv = 1 / Math.sqrt(ss / h.length + 1e-5);
      return Float32Array.from(h, (v, i) => v * inv * g[i]!);
    };
    const forward = (n: Net, tok: number, online?: (z: Float32Array) => void) => {
      const h = n.emb.slice(tok * dim, (tok + 1) * dim);
      for (const l of n.layers) {
        const u = rmsnorm(h, l.g);
        const a = matvec(l.wg, hidden, dim, u), b = matvec(l.wu, hidden, dim, u);
        const z = Float32Array.from(a, (v, i) => (v / (1 + Math.exp(-v))) * b[i]!);
        online?.(z);
        const d = matvec(l.wd, dim, hidden, z);
        for (let i = 0; i < dim; i++) h[i]! += d[i]!;
      }
      return matvec(n.wOut, vocab, dim, rmsnorm(h, n.gOut));
    };

    const rot = clone(net);
    const Q = randomizedHadamard(dim, 11); // residual stream
    const Hd = randomizedHadamard(hidden, 12); // FFN-down input (hadamard⊗random for 172)
    rotateInputsInPlace(rot.emb, vocab, dim, Q); // embedding rows e → Q·e
    for (const l of rot.layers) {
      foldNormInPlace(l.g, [{ w: l.wg, rows: hidden }, { w: l.wu, rows: hidden }]);
      rotateInputsInPlace(l.wg, hidden, dim, Q);
      rotateInputsInPlace(l.wu, hidden, dim, Q);
      rotateOutputsInPlace(l.wd, dim, hidden, Q);
      rotateInputsInPlace(l.wd, dim, hidden, Hd); // Wd·Hdᵀ, paired with z ← Hd·z online
    }
    foldNormInPlace(rot.gOut, [{ w: rot.wOut, rows: vocab }]);
    rotateInputsInPlace(rot.wOut, vocab, dim, Q);
    for (const l of rot.layers) for (const v of l.g) assert.equal(v, 1);

    let worst = 0, scale = 0;
    for (const tok of [0, 3, 17, 39]) {
      const a = forward(net, tok);
      const b = forward(rot, tok, (z) => Hd.apply(z));
      for (let i = 0; i < vocab; i++) { worst = Math.max(worst, Math.abs(a[i]! - b[i]!)); scale = Math.max(scale, Math.abs(a[i]!)); }
    }
    console.log(`# rotated toy network: max |Δlogit| = ${worst.toExponential(2)} (max |logit| ${scale.toFixed(2)})`);
    assert.ok(worst <= 1e-4, `max |Δlogit| = ${worst}`);
    // without the online transform the rotated network is wrong, so the check above has teeth
    const bad = forward(rot, 3);
    const good = forward(net, 3);
    assert.ok(Math.max(...bad.map((v, i) => Math.abs(v - good[i]!))) > 1e-2);
  });
});
