// WasmBackend.residentF32 (issue 11's per-token overhead): activations that live in shard 0 are read and written
// in place by matvec / matvecMany / matmul, addRmsnorm, swiglu, the KV cache's attend and store, and RoPE — and every
// result is bit-identical to the same call on ordinary arrays (which the entries copy in and out). Outputs that
// overlap an input fall back to the copy (same bits too). Both builds, 1 and 2 threads.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { GgmlType } from "../../../src/ggml/types.js";
import { VARIANTS, backend, readyBackend, disposeAll, randomF32, denseWeight, ggmlWeight } from "../helpers.js";
import { quantize } from "./packed-helpers.js";
import type { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import { rope, ropeNeox } from "../../../src/model/llama.js";

const owned: WasmBackend[] = [];
after(() => { disposeAll(); for (const b of owned) b.dispose(); });

function resident(be: WasmBackend, a: Float32Array): Float32Array {
  const r = be.residentF32(a.length);
  r.set(a);
  return r;
}

function sameBits(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  const g = new Uint32Array(got.buffer.slice(got.byteOffset, got.byteOffset + got.byteLength));
  const w = new Uint32Array(want.buffer.slice(want.byteOffset, want.byteOffset + want.byteLength));
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i]) assert.fail(`${what}: element ${i} ${got[i]} ≠ ${want[i]}`);
}

describe("resident activations: the same bits as ordinary arrays", () => {
  for (const variant of VARIANTS) {
    for (const [threads, act] of [[1, "f32"], [2, "f32"], [1, "q8"], [2, "q8"]] as const) {
      test(`${variant}/t${threads}, packed activations ${act}`, async () => {
        // q8: the ternary weight runs on the Q8_K kind (K_TERN2Q8KX4), as in the packed bench
        const be = act === "f32" ? await readyBackend(variant, threads) : createNodeWasmBackend({ variant, threads, minParallelBytes: 0, packedActivations: "q8" });
        if (act === "q8") { owned.push(be); assert.ok(await be.ready(20000)); }
        const rows = 64, cols = 256, n = 3;
        const ws = [
          denseWeight("f32", rows, cols, randomF32(rows * cols, 1)),
          ggmlWeight(GgmlType.Q8_0, rows, cols, randomF32(rows * cols, 2)),
        ].map((t) => be.prepare(t.weight, t.label));
        const tern = be.prepare({ kind: "quant", q: quantize(randomF32(rows * cols, 3, 0.05), [rows, cols], "ternary:channel") }, "ternary");
        const kernel = be.listing().find((r) => r.name === "ternary")!.kernel;
        assert.match(kernel, act === "q8" ? /^tern2·row·q8kx·4 rows/ : /^lut2·row·swizzle·f32x/, "the ternary weight's kernel");
        for (const w of [...ws, tern]) {
          const x = randomF32(n * cols, 7);
          const want1 = new Float32Array(rows), wantN = new Float32Array(n * rows);
          be.matvec(w, x, want1);
          be.matmul(w, x, n, wantN);
          const xr = resident(be, x), o1 = be.residentF32(rows), oN = be.residentF32(n * rows);
          be.matvec(w, xr.subarray(0, cols), o1);
          be.matmul(w, xr, n, oN);
          sameBits(o1, want1, "matvec");
          sameBits(oN, wantN, "matmul");
          // two jobs on one resident x, one output in place and one ordinary
          const a = be.residentF32(rows), b = new Float32Array(rows);
          be.matvecMany([{ w, x: xr.subarray(0, cols), out: a }, { w, x: xr.subarray(0, cols), out: b }]);
          sameBits(a, want1, "matvecMany (resident out)");
          sameBits(b, want1, "matvecMany (ordinary out)");
          // an output that overlaps the input: the copy path, the same result
          const ov = be.residentF32(Math.max(cols, rows) + rows);
          ov.set(x.subarray(0, cols));
          be.matvec(w, ov.subarray(0, cols), ov.subarray(cols / 2, cols / 2 + rows));
          sameBits(ov.subarray(cols / 2, cols / 2 + rows), want1, "matvec with out overlapping x");
          for (const r of [xr, o1, oN, a, ov]) be.freeResident(r);
        }
        for (const w of [...ws, tern]) be.release(w);

        // addRmsnorm (with and without y, out = y) and swiglu
        const dim = 96, m = 2;
        const x = randomF32(m * dim, 11), y = randomF32(m * dim, 12), g = randomF32(dim, 13);
        const wx = Float32Array.from(x), wy = Float32Array.from(y), wo = new Float32Array(m * dim);
        be.addRmsnorm(wx, wy, g, wo, m, dim, 1e-5);
        const rx = resident(be, x), ry = resident(be, y), rg = resident(be, g), ro = be.residentF32(m * dim);
        be.addRmsnorm(rx, ry, rg, ro, m, dim, 1e-5);
        sameBits(rx, wx, "addRmsnorm x");
        sameBits(ro, wo, "addRmsnorm out");
        const wx2 = Float32Array.from(wx), wyy = Float32Array.from(wy);
        be.addRmsnorm(wx2, wyy, g, wyy, m, dim, 1e-5);
        be.addRmsnorm(rx, ry, rg, ry, m, dim, 1e-5);
        sameBits(ry, wyy, "addRmsnorm out = y");
        be.addRmsnorm(wx2, undefined, g, wo, m, dim, 1e-5);
        be.addRmsnorm(rx, undefined, rg, ro, m, dim, 1e-5);
        sameBits(ro, wo, "rmsnorm without y");
        const gate = randomF32(1003, 14, 6), up = randomF32(1003, 15);
        const wg = Float32Array.from(gate);
        be.swiglu(wg, up, 1003);
        const rgate = resident(be, gate), rup = resident(be, up);
        be.swiglu(rgate, rup, 1003);
        sameBits(rgate, wg, "swiglu");

        // RoPE: the backend's kernel = the TypeScript rotation (interleaved and NeoX, partial rotary)
        for (const [neox, fn] of [[false, rope], [true, ropeNeox]] as const) {
          const hd = 16, width = 4 * hd, rd = 12;
          const v = randomF32(2 * width, 16, 3), cos = randomF32(2 * (rd / 2), 17), sin = randomF32(2 * (rd / 2), 18);
          const want = Float32Array.from(v);
          fn(want, width, width, hd, cos, sin, rd / 2, rd);
          const rv = resident(be, v), rc = resident(be, cos), rs = resident(be, sin);
          assert.ok(be.rope!(rv, width, width, hd, rc, rs, rd / 2, rd, neox), "resident arrays rotate in WASM");
          sameBits(rv, want, `rope neox=${neox}`);
          assert.equal(be.rope!(Float32Array.from(v), width, width, hd, cos, sin, rd / 2, rd, neox), false, "ordinary arrays are left to the caller");
        }

        // the KV cache: store then attend, resident q/out/k/v against ordinary arrays
        const nKv = 2, hd = 32, nHeads = 4, cap = 8;
        const c1 = be.kvCache(1, cap, nKv, hd)!, c2 = be.kvCache(1, cap, nKv, hd)!;
        for (let p = 0; p < 5; p++) {
          const k = randomF32(nKv * hd, 20 + p), v = randomF32(nKv * hd, 40 + p);
          c1.store(0, p, k, v);
          c2.store(0, p, resident(be, k), resident(be, v));
        }
        const q = randomF32(2 * nHeads * hd, 60);
        const out1 = new Float32Array(2 * nHeads * hd);
        c1.attend!(0, q, 3, 2, nHeads, out1);
        const rq = resident(be, q), rout = be.residentF32(2 * nHeads * hd);
        c2.attend!(0, rq, 3, 2, nHeads, rout);
        sameBits(rout, out1, "attend");
        c1.dispose!(); c2.dispose!();
      });
    }
  }

  test("freeResident refuses arrays it did not make", () => {
    const be = backend(VARIANTS[0]!, 1);
    const a = be.residentF32(10);
    be.freeResident(a);
    assert.throws(() => be.freeResident(a), /freeResident/);
    assert.throws(() => be.freeResident(new Float32Array(4)), /freeResident/);
  });
});
