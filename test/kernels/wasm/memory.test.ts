// Transient weights: the arena's free list never hands out overlapping or misaligned regions and gives all
// memory back (fast-check over random alloc/free sequences); `release` returns a prepared weight's memory
// (prepare/release cycles do not grow wasm memory), drops its listing row, refuses reuse, keeps placed
// tensors' bytes, and a weight prepared later at a released offset is laid out anew (4-row interleave).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { GgmlType } from "../../../src/ggml/types.js";
import { RefBackend } from "../../../src/kernels/ref/backend.js";
import { WasmArena } from "../../../src/kernels/wasm/arena.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { VARIANTS, denseWeight, ggmlWeight, oracle, randomF32, worstRelError } from "../helpers.js";

const made: WasmBackend[] = [];
function make(opts: Parameters<typeof createNodeWasmBackend>[0] = {}): WasmBackend {
  const b = createNodeWasmBackend({ variant: VARIANTS[0], ...opts });
  made.push(b);
  return b;
}
after(() => { for (const b of made) b.dispose(); });

test("arena free list: random alloc/free sequences never overlap, respect alignment, and free everything back", () => {
  const base = 1000;
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 5000 }), fc.constantFrom(1, 4, 16, 64, 256), fc.nat()), { minLength: 1, maxLength: 60 }),
      (ops) => {
        const a = new WasmArena(base, { maxPages: 16 });
        const start = a.used;
        const live = new Map<number, number>(); // off → bytes
        for (const [doFree, bytes, alignment, pick] of ops) {
          if (doFree && live.size > 0) {
            const offs = [...live.keys()];
            const off = offs[pick % offs.length]!;
            a.free(off);
            live.delete(off);
            continue;
          }
          const off = a.alloc(bytes, alignment);
          assert.equal(off % alignment, 0, "misaligned");
          assert.ok(off >= base && off + bytes <= a.used, "outside the arena");
          for (const [o, b] of live) assert.ok(off + Math.max(bytes, 1) <= o || o + Math.max(b, 1) <= off, `[${off}, +${bytes}) overlaps [${o}, +${b})`);
          live.set(off, bytes);
        }
        for (const off of live.keys()) a.free(off);
        assert.equal(a.used, start, "freeing everything lowers the top back to the start");
        assert.equal(a.freeBytes, 0);
      },
    ),
    { numRuns: 300, seed: 7 },
  );
  const a = new WasmArena(base, { maxPages: 16 });
  const off = a.alloc(100);
  a.free(off);
  assert.throws(() => a.free(off), /free of offset \d+, which is not a live allocation/);
});

test("prepare/release cycles reuse the same memory and give the same results; listing rows go with the weight", () => {
  const be = make();
  const x = randomF32(256, 3);
  const want = new Float32Array(96);
  let top = -1;
  const rowsBefore = be.listing().length;
  for (let it = 0; it < 20; it++) {
    // a calibration-like block: f32 linears (changed every run) plus a repacked and a native ggml weight
    const f = denseWeight("f32", 96, 256, randomF32(96 * 256, 10 + it));
    const q = ggmlWeight(GgmlType.Q4_K, 96, 256, randomF32(96 * 256, 50 + it));
    const n = ggmlWeight(GgmlType.Q8_0, 96, 256, randomF32(96 * 256, 90 + it));
    const ps = [f, q, n].map((w) => be.prepare(w.weight, w.label));
    assert.equal(be.listing().length, rowsBefore + 3);
    for (const [i, w] of [f, q, n].entries()) {
      be.matvec(ps[i]!, x, want);
      const { err } = worstRelError(want, oracle(w, x, 1, ps[i]!));
      assert.ok(err <= 2e-6, `${w.label} run ${it}: ${err}`);
    }
    for (const p of ps) be.release(p);
    assert.equal(be.listing().length, rowsBefore);
    const used = be.memoryStats().shards[0]!;
    if (it === 1) top = used;
    if (it > 1) assert.equal(used, top, `run ${it}: memory grew from ${top} to ${used}`);
  }
});

test("a weight prepared at a released offset is interleaved anew (4-row Q8_0), and released weights are refused", () => {
  const be = make({ layouts: "auto" });
  const x = randomF32(128, 1);
  for (let it = 0; it < 4; it++) {
    const w = ggmlWeight(GgmlType.Q8_0, 16, 128, randomF32(16 * 128, 200 + it));
    const p = be.prepare(w.weight, "q8");
    assert.match(be.listing().at(-1)!.kernel, /4 rows interleaved/);
    const out = new Float32Array(16);
    be.matvec(p, x, out);
    const { err } = worstRelError(out, oracle(w, x, 1, p));
    assert.ok(err <= 2e-6, `run ${it}: ${err}`);
    be.release(p);
    assert.throws(() => be.matvec(p, x, out), /was released/);
    assert.throws(() => be.release(p), /released twice/);
  }
  const other = make();
  const p = other.prepare(denseWeight("f32", 2, 32, randomF32(64, 1)).weight);
  assert.throws(() => be.release(p), /did not prepare/);
  new RefBackend().release(new RefBackend().prepare(denseWeight("f32", 2, 32, randomF32(64, 1)).weight)); // a no-op
});

test("releasing a weight that runs in place where a loader put it keeps the loader's bytes", () => {
  const be = make();
  const w = denseWeight("f32", 8, 64, randomF32(512, 4));
  const view = be.placeTensor(GgmlType.F32, [8, 64], "placed")!;
  const src = w.weight.kind === "dense" ? new Uint8Array(w.weight.tensor.data.buffer) : new Uint8Array(0);
  view.set(src);
  const f32 = new Float32Array(view.buffer, view.byteOffset, 512);
  const p = be.prepare({ kind: "ggml", type: GgmlType.F32, shape: [8, 64], data: view }, "placed");
  assert.equal(be.listing().at(-1)!.inPlace, true);
  be.release(p);
  // another prepare may reuse freed memory; the placed bytes must be untouched
  be.prepare(denseWeight("f32", 8, 64, randomF32(512, 5)).weight);
  assert.deepEqual(new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength), src);
});
