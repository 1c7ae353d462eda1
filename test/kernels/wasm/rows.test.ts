// WasmBackend.swiglu (assembly/rows.ts) against the reference swigluRef (kernels/ref/rows.ts): every tail
// length of the 8/4/1 loop, values across silu's range (large negative gates, where e^(−g) overflows, and
// large positive ones), both builds; within a few ulp of |result| (the vector exp is within 2 ulp, the
// division and products round once each; results under 2^−100 may flush to 0). And the `swiglu` helper's fallback on a backend without one.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { VARIANTS, readyBackend, disposeAll, randomF32 } from "../helpers.js";
import { addRmsnormRef, swigluRef } from "../../../src/kernels/ref/rows.js";
import { addRmsnorm, swiglu } from "../../../src/kernels/types.js";
import { RefBackend } from "../../../src/kernels/ref/backend.js";

after(disposeAll);

const EPS = 2 ** -24;

describe("swiglu: WASM = swigluRef within a few ulp", () => {
  for (const variant of VARIANTS) {
    test(variant, async () => {
      const be = await readyBackend(variant, 1);
      let worst = 0;
      for (const n of [0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 15, 16, 17, 31, 1000, 4099]) {
        const g = randomF32(n, n + 1, 12), u = randomF32(n, n + 7, 3);
        if (n > 4) { g[0] = -100; g[1] = 100; g[2] = -88.9; g[3] = 0; g[4] = -30; }
        const want = Float32Array.from(g), got = Float32Array.from(g);
        swigluRef(want, u, n);
        be.swiglu(got, u, n);
        for (let i = 0; i < n; i++) {
          // ulp of the result, or units of 2^−100 for results that small (they may flush to 0: the exp flushes below 2^−126)
          const e = Math.abs(got[i]! - want[i]!) / Math.max(EPS * Math.abs(want[i]!), 2 ** -100);
          worst = Math.max(worst, e);
        }
        if (process.env.ATTN_DEBUG) console.log(variant, n, worst.toFixed(2));
        assert.ok(worst <= 8, `${variant} n = ${n}: ${worst.toFixed(2)} ulp`);
      }
    });
  }

  test("a backend without its own swiglu runs the reference", () => {
    const g = randomF32(37, 3, 5), u = randomF32(37, 4), want = Float32Array.from(g);
    swigluRef(want, u, 37);
    swiglu(new RefBackend(), g, u, 37);
    assert.deepEqual(g, want);
  });

  test("bad call: arrays shorter than n", async () => {
    const be = await readyBackend(VARIANTS[0]!, 1);
    assert.throws(() => be.swiglu(new Float32Array(3), new Float32Array(4), 4), /swiglu of 4 values/);
  });
});

describe("addRmsnorm: WASM = addRmsnormRef", () => {
  for (const variant of VARIANTS) {
    test(variant, async () => {
      const be = await readyBackend(variant, 1);
      let worst = 0;
      for (const dim of [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 64, 260]) {
        for (const n of [1, 3]) {
          for (const mode of ["none", "y", "out=y"] as const) {
            const x0 = randomF32(n * dim, dim + n, 4), y0 = randomF32(n * dim, 3 * dim + n, 2), w = randomF32(dim, dim, 1.5);
            const xa = Float32Array.from(x0), xb = Float32Array.from(x0);
            const ya = mode === "none" ? undefined : Float32Array.from(y0), yb = mode === "none" ? undefined : Float32Array.from(y0);
            const oa = mode === "out=y" ? ya! : new Float32Array(n * dim), ob = mode === "out=y" ? yb! : new Float32Array(n * dim);
            addRmsnormRef(xa, ya, w, oa, n, dim, 1e-5);
            be.addRmsnorm(xb, yb, w, ob, n, dim, 1e-5);
            assert.deepEqual(xb, xa, `${variant} ${n}×${dim} ${mode}: x after the add`);
            for (let i = 0; i < n * dim; i++) worst = Math.max(worst, Math.abs(ob[i]! - oa[i]!) / Math.max(EPS * Math.abs(oa[i]!), 2 ** -126));
            assert.ok(worst <= 8, `${variant} ${n}×${dim} ${mode}: ${worst.toFixed(2)} units of 2^-24·|out|`);
          }
        }
      }
      if (process.env.ATTN_DEBUG) console.log(variant, "addRmsnorm worst", worst.toFixed(2));
    });
  }

  test("a backend without its own addRmsnorm runs the reference", () => {
    const x = randomF32(40, 1), y = randomF32(40, 2), w = randomF32(20, 3);
    const xr = Float32Array.from(x), out = new Float32Array(40), outR = new Float32Array(40);
    addRmsnormRef(xr, y, w, outR, 2, 20, 1e-6);
    addRmsnorm(new RefBackend(), x, y, w, out, 2, 20, 1e-6);
    assert.deepEqual(x, xr);
    assert.deepEqual(out, outR);
  });
});
