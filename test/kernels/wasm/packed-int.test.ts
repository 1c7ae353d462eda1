// Packed uniform-int spec layouts (kernels/packed.ts) on the WASM backend: the fused K_U4G / K_U8G kernels
// against the scalar reference twin (matvecUniformIntRef) and against an independent float64 dot of the
// fake-quant weights (QTensor.dequantize), for every bit width / group / scheme / scale dtype the fast
// path supports, both builds, 1–3 threads (bit-identical across thread counts and builds), ragged
// shapes, mat-mat, fast-check properties; and prepared bytes ≈ packed bytes (no f32 copy).
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { quantizeTensor } from "../../../src/quant/tensor.js";
import { dequantizeRowLut, matvecLutQ8Ref, matvecUniformIntRef, uniformQ8Layout, uniformIntLayout, type UniformIntLayout } from "../../../src/kernels/packed.js";
import type { Weight } from "../../../src/core/weight.js";
import { VARIANTS, backend, readyBackend, disposeAll, randomF32 } from "../helpers.js";
import { TOL, eachBackend, matvecEach, oracle, perToken, runPrepared, uniformOf as layoutOf, worst } from "./packed-helpers.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import { dequantizeActivationsQ8, quantizeActivationsQ8Ref } from "../../../src/kernels/ref/q8act.js";

after(disposeAll);

const SPECS = [
  "int4:g16:asym", "int4:g32:asym", "int4:g64", "int4:g128:asym", "int4:g256", "int4:channel", "int4:channel:asym",
  "int8:g32", "int8:g64:asym", "int8:channel", "int8:channel:asym", "int8:g128",
  "int4:g32:asym:scale=f32", "int4:g32:asym:scale=f16", "int8:g64:asym:scale=f16", "int4:g64:scale=bf16", "int8:channel:scale=f32", "int4:tensor", "int4:g32:dq", "int8:g32:scale=e8m0",
];

// ragged: rows of 80, 90 and 172 leave a short last group (and SIMD tails) for most group sizes
const SHAPES: [number, number][] = [[1, 256], [7, 256], [37, 512], [5, 768], [3, 80], [6, 172], [2, 90]];

describe("packed uniform-int kernels vs the reference", () => {
  for (const spec of SPECS) {
    test(spec, async () => {
      let seed = 7;
      for (const [rows, cols] of SHAPES) {
        const w = randomF32(rows * cols, seed++, 2);
        const q = quantizeTensor(w, [rows, cols], spec);
        const L = layoutOf(q);
        const wq = q.dequantize();
        const weight: Weight = { kind: "quant", q };
        for (const n of [1, 3, 9]) {
          const x = randomF32(n * cols, seed++);
          const want = oracle(wq, rows, cols, x, n);
          // reference twin: equals the float64 dot of the fake-quant weights rounded once
          const ref = perToken(rows, cols, x, n, (xt, o) => matvecUniformIntRef(L, xt, o));
          for (let i = 0; i < ref.length; i++) assert.equal(ref[i], Math.fround(want.out[i]!), `${spec} ref ${i}`);
          let first: Float32Array | undefined;
          for await (const { b, label } of eachBackend([1, 2, 3])) {
            const p = b.prepare(weight, spec);
            const row = b.listing().at(-1)!;
            assert.equal(row.fallback, undefined, `${spec}: ${row.fallback}`);
            assert.match(row.kernel, /packed spec/);
            const out = runPrepared(b, p, x, n);
            const e = worst(out, want);
            assert.ok(e < TOL, `${spec} [${rows}×${cols}] n=${n} ${label}: rel err ${e}`);
            // same bits across thread counts and the simd / relaxed builds (no relaxed_madd)
            if (first) assert.deepEqual(out, first, `${spec} ${label} differs from the first build/thread count`);
            else first = out;
            b.release(p);
          }
        }
      }
    });
  }
});

describe("packed uniform-int memory", () => {
  test("prepared bytes ≈ packed bytes: no f32 copy of the weight", () => {
    const rows = 64, cols = 512;
    for (const spec of ["int4:g32:asym", "int8:channel", "int4:g64"]) {
      const q = quantizeTensor(randomF32(rows * cols, 3), [rows, cols], spec);
      const b = backend(VARIANTS[0]!, 1);
      const before = b.memoryStats().shards[0]!;
      const p = b.prepare({ kind: "quant", q }, spec);
      const grown = b.memoryStats().shards[0]! - before;
      const packed = q.storageBits / 8;
      // f32 would be rows·cols·4 = 131072 bytes
      // f32 scales and (asym) 4-bit zero codes kept as the file stores them: exactly the QTensor's bytes
      assert.equal(p.bytes, packed, `${spec}: prepared ${p.bytes} bytes vs packed ${packed}`);
      assert.ok(grown <= p.bytes + 3 * 64, `${spec}: memory grew ${grown} bytes for ${p.bytes} prepared`);
      assert.ok(p.bytes < rows * cols * 4 / 3, `${spec}: ${p.bytes} bytes is not packed`);
      b.release(p);
    }
  });

  test("specs outside the family go to the lut kernels, and the listing says which", () => {
    const b = backend(VARIANTS[0]!, 1);
    const q = quantizeTensor(randomF32(4 * 64, 9), [4, 64], "nf4:g64");
    const p = b.prepare({ kind: "quant", q }, "nf4");
    const row = b.listing().at(-1)!;
    assert.equal(row.fallback, undefined);
    assert.match(row.kernel, /^lut4·row·swizzle/);
    b.release(p);
    // 4-bit rows of an odd length do not start on a byte: outside the uniform kernels, on the lut kernel
    // (which reads rows at any bit offset), and still right
    const r = quantizeTensor(randomF32(3 * 81, 10), [3, 81], "int4:g32:asym");
    const pr = b.prepare({ kind: "quant", q: r }, "odd");
    assert.equal(b.listing().at(-1)!.fallback, undefined);
    assert.match(b.listing().at(-1)!.kernel, /^lut4·g32·swizzle/);
    const x = randomF32(81, 11), out = new Float32Array(3);
    b.matvec(pr, x, out);
    assert.ok(worst(out, oracle(r.dequantize(), 3, 81, x, 1)) < TOL);
    b.release(pr);
  });
});

describe("packed uniform-int properties", () => {
  test("fast-check: WASM kernel = reference for random shapes, specs and values", async () => {
    const b2 = await readyBackend(VARIANTS[0]!, 2);
    const b1 = backend(VARIANTS.at(-1)!, 1);
    fc.assert(fc.property(
      fc.constantFrom(4, 8), fc.constantFrom(6, 16, 18, 32, 48, 64, 128, 256), fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 9 }),
      fc.boolean(), fc.integer({ min: 1, max: 1e6 }), fc.constantFrom(0.01, 1, 100),
      (bits, group, halfCols, rows, asym, seed, scale) => {
        const cols = 2 * halfCols;
        const spec = `int${bits}:g${group}${asym ? ":asym" : ""}`;
        const q = quantizeTensor(randomF32(rows * cols, seed, scale), [rows, cols], spec);
        const L = layoutOf(q);
        const x = randomF32(cols, seed + 1);
        const want = oracle(q.dequantize(), rows, cols, x, 1);
        const outs = matvecEach([b1, b2], q, spec, x);
        const ref = new Float32Array(rows);
        matvecUniformIntRef(L, x, ref);
        assert.deepEqual(outs[0], outs[1]);
        assert.ok(worst(outs[0]!, want) < TOL, spec);
        assert.ok(worst(ref, want) < 1e-7, spec);
      }), { numRuns: 60, seed: 42 });
  });
});

describe('packedActivations: "q8", int4 × 4 rows byte-interleaved (K_NIB4Q8X4B*, assembly/nib4.ts)', () => {
  test("= the lut4 twin bit for bit: both builds, 1–3 threads, f16 / f32 scales, nibble zero codes / one offset, partial last groups, 1 and 3 tokens; bytes as laid out", async () => {
    // [spec, scale of the random weights (1e-5: scales below the f16 normals → f32 scales), kernel name]
    const cases: [string, number, RegExp][] = [
      ["int4:g32:asym", 2, /^nib4·g32·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/],
      ["int4:g64:asym", 2, /^nib4·g64·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/],
      ["int4:g96:asym", 2, /^nib4·g96·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/],
      ["int4:g128:asym", 2, /^nib4·g128·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/],
      ["int4:channel:asym", 2, /^nib4·row·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/],
      ["int4:g32", 2, /^nib4·g32·f16 scales·q8x·4 rows byte-interleaved/],
      ["int4:g128", 2, /^nib4·g128·f16 scales·q8x·4 rows byte-interleaved/],
      ["int4:g32:asym", 1e-5, /^nib4·g32·f32 scales·u4 zeros·q8x·4 rows byte-interleaved/],
      ["int4:g128:asym", 1e-5, /^nib4·g128·f32 scales·u4 zeros·q8x·4 rows byte-interleaved/],
      ["int4:g64", 1e-5, /^nib4·g64·f32 scales·q8x·4 rows byte-interleaved/],
    ];
    let seed = 900;
    for (const v of VARIANTS) {
      for (const threads of [1, 2, 3]) {
        const b = createNodeWasmBackend({ variant: v, threads, packedActivations: "q8", minParallelBytes: 0 });
        try {
          if (threads > 1) assert.ok(await b.ready(20000));
          for (const [spec, scale, kernel] of cases) {
            // 256 columns: g96 ends on a 64-wide group, g128 of 352 on a 96-wide one; 12 / 20 rows = 3 / 5 row groups
            // (split over the threads, an odd count)
            for (const [rows, cols] of [[12, 256], [4, 1024], [20, 352]] as const) {
              const w = randomF32(rows * cols, seed++, scale);
              // a zero group: scale 0 (f16 bits 0), zero code whatever the quantizer chose
              w.fill(0, 0, 32);
              // rows skewed differently (×1, ×2, ×3 on the positive side) so the zero codes differ (channel: per row)
              for (let i = 0; i < w.length; i++) if (w[i]! > 0) w[i] = w[i]! * (1 + (Math.floor(i / cols) % 3));
              const q = quantizeTensor(w, [rows, cols], spec);
              const p = b.prepare({ kind: "quant", q }, spec);
              const row = b.listing().at(-1)!;
              assert.match(row.kernel, kernel, `${spec} ${scale}`);
              const U = uniformQ8Layout(uniformIntLayout(q) as UniformIntLayout);
              assert.ok(!("reason" in U));
              const Q = U.q8, nG = Math.ceil(cols / Q.group);
              // bytes: per row group, the 64-byte blocks + per group 4 scales (f16 2 B, f32 4 B) + 4 zero nibbles (asym: 2 B)
              assert.equal(row.bytes, (rows / 4) * ((cols / 32) * 64 + nG * ((U.f16 ? 8 : 16) + (Q.zeroCodes ? 2 : 0))), spec);
              if (Q.zeroCodes) assert.ok(Q.zeroCodes.every((z) => z >= 0 && z <= 15) && Q.zeroCodes.some((z) => z !== Q.zeroCodes![0]), spec);
              for (const n of [1, 3]) {
                const x = randomF32(n * cols, seed++);
                const out = runPrepared(b, p, x, n);
                const twin = new Float32Array(n * rows);
                for (let t = 0; t < n; t++) matvecLutQ8Ref(Q, quantizeActivationsQ8Ref(x.subarray(t * cols, (t + 1) * cols)), twin.subarray(t * rows, (t + 1) * rows));
                assert.deepEqual(out, twin, `${spec} ${scale} ${v} ${threads} threads [${rows}×${cols}] n=${n}`);
                assert.ok(out.every(Number.isFinite));
              }
              b.release(p);
            }
          }
        } finally {
          b.dispose();
        }
      }
    }
  });
  test("zero codes outside 0…15 keep the int8-zero form (K_NIB4Q8X4B / BF): = the twin bit for bit, both builds, 1 and 2 threads", async () => {
    // a QTensor's int4 zero points are 4-bit codes (tensor.ts ZeroPoints), so this state is forced: zero points of 16 and 40
    // in two groups (the int8 zero codes z = 16, 40), the rest as quantized
    let seed = 950;
    for (const v of VARIANTS) {
      for (const threads of [1, 2]) {
        const b = createNodeWasmBackend({ variant: v, threads, packedActivations: "q8", minParallelBytes: 0 });
        try {
          if (threads > 1) assert.ok(await b.ready(20000));
          for (const [spec, scale, kernel] of [
            ["int4:g32:asym", 2, /^nib4·g32·f16 scales·i8 zeros·q8x·4 rows byte-interleaved/],
            ["int4:g64:asym", 1e-5, /^nib4·g64·f32 scales·i8 zeros·q8x·4 rows byte-interleaved/],
          ] as const) {
            const [rows, cols] = [12, 320];
            const q = quantizeTensor(randomF32(rows * cols, seed++, scale), [rows, cols], spec);
            const zeros = (q as unknown as { zeros: { values: Uint16Array } }).zeros.values;
            zeros[1] = 16;
            zeros[zeros.length - 2] = 40;
            const p = b.prepare({ kind: "quant", q }, spec);
            const row = b.listing().at(-1)!;
            assert.match(row.kernel, kernel, spec);
            const U = uniformQ8Layout(uniformIntLayout(q) as UniformIntLayout);
            assert.ok(!("reason" in U) && U.q8.zeroCodes !== undefined && U.q8.zeroCodes.includes(40));
            const Q = U.q8, nG = Math.ceil(cols / Q.group);
            assert.equal(row.bytes, (rows / 4) * ((cols / 32) * 64 + nG * ((U.f16 ? 8 : 16) + 4)), spec);
            for (const n of [1, 3]) {
              const x = randomF32(n * cols, seed++);
              const out = runPrepared(b, p, x, n);
              const twin = new Float32Array(n * rows);
              for (let t = 0; t < n; t++) matvecLutQ8Ref(Q, quantizeActivationsQ8Ref(x.subarray(t * cols, (t + 1) * cols)), twin.subarray(t * rows, (t + 1) * rows));
              assert.deepEqual(out, twin, `${spec} ${v} ${threads} threads n=${n}`);
              // and the forced zero points are really used: = the fake-quant weights' dot (scales within f16 rounding)
              const xq = dequantizeActivationsQ8(quantizeActivationsQ8Ref(x.subarray(0, cols)));
              assert.ok(worst(out.subarray(0, rows), oracle(q.dequantize(), rows, cols, xq, 1)) < 1e-3, spec);
            }
            b.release(p);
          }
        } finally {
          b.dispose();
        }
      }
    }
  });
});

describe('packedActivations: "q8"', () => {
  test("32-multiple groups run on the integer kernels: = fake-quant weights × Q8 reference activations; rows % 4 = 0 on the interleaved nib4 / i8 kernels = their lut twin", () => {
    for (const v of VARIANTS) {
      const b = createNodeWasmBackend({ variant: v, packedActivations: "q8" });
      try {
        let seed = 300;
        // [spec, kernel for rows % 4 ≠ 0, for rows % 4 = 0]
        for (const [spec, kernel1, kernel4] of [
          ["int4:g32:asym", /^n4·s32·m32/, /^nib4·g32·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/], ["int4:g64", /^n4·s32·m32/, /^nib4·g64·f16 scales·q8x·4 rows byte-interleaved/], ["int8:channel", /^i8·s32 /, /^i8·row·q8x·4 rows/],
          ["int8:g32:asym", /^i8·s32·m32/, /^i8·g32·q8x·4 rows/], ["int4:g32:asym:scale=f16", /^n4·s32·m32/, /^nib4·g32·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/], ["int4:channel:asym", /^n4·s32·m32/, /^nib4·row·f16 scales·u4 zeros·q8x·4 rows byte-interleaved/],
        ] as const) {
          for (const [rows, cols] of [[7, 256], [3, 96], [8, 256], [4, 96]] as const) {
            const q = quantizeTensor(randomF32(rows * cols, seed++, 2), [rows, cols], spec);
            const p = b.prepare({ kind: "quant", q }, spec);
            const x4 = rows % 4 === 0;
            assert.match(b.listing().at(-1)!.kernel, x4 ? kernel4 : kernel1, `${spec} [${rows}×${cols}]`);
            assert.match(b.listing().at(-1)!.kernel, /Q8 activations/);
            for (const n of [1, 3]) {
              const x = randomF32(n * cols, seed++);
              const xq = new Float32Array(n * cols);
              for (let t = 0; t < n; t++) xq.set(dequantizeActivationsQ8(quantizeActivationsQ8Ref(x.subarray(t * cols, (t + 1) * cols))), t * cols);
              const out = runPrepared(b, p, x, n);
              // int4 x4: the weights of its lut form (scales rounded to f16: within 2^-11 of the spec's), else the fake-quant ones
              const U = uniformQ8Layout(uniformIntLayout(q) as UniformIntLayout);
              const wq = q.dequantize();
              if (x4 && spec.startsWith("int4")) {
                assert.ok(!("reason" in U) && U.f16, spec);
                const T = U.lut;
                const w16 = new Float32Array(rows * cols);
                for (let r = 0; r < rows; r++) dequantizeRowLut(T, r, w16, r * cols);
                for (let i = 0; i < wq.length; i++) assert.ok(Math.abs(w16[i]! - wq[i]!) <= 2 ** -11 * Math.abs(wq[i]!) + 1e-30, `${spec} weight ${i}`);
                wq.set(w16);
              }
              const e = worst(out, oracle(wq, rows, cols, xq, n));
              assert.ok(e < 1e-5, `${spec} ${v} [${rows}×${cols}] n=${n}: rel err ${e}`);
              if (x4 && !("reason" in U)) {
                // the nib4 kernel = the lut4 Q8 twin of the layout as a table u[c] = c, bit for bit
                const Q = U.q8;
                // int4: the nibble table; int8: int8 codes c − 128 (kind i8x4); zero points as zero codes, never f32 mins
                assert.ok((spec.startsWith("int4") ? Q.tableBits === 4 : Q.kind === "i8x4") && Q.tableError === 0 && !Q.mins && (spec.includes("asym") ? Q.zeroCodes !== undefined : true), spec);
                const twin = new Float32Array(n * rows);
                for (let t = 0; t < n; t++) matvecLutQ8Ref(Q, quantizeActivationsQ8Ref(x.subarray(t * cols, (t + 1) * cols)), twin.subarray(t * rows, (t + 1) * rows));
                assert.deepEqual(out, twin, `${spec} ${v} [${rows}×${cols}] n=${n}`);
              }
            }
            b.release(p);
          }
        }
        // scales below the f16 normals (tiny weights) stay f32: the i8-zeros form, still = its twin and the fake-quant dot
        {
          const [rows, cols] = [8, 256];
          const q = quantizeTensor(randomF32(rows * cols, 77, 1e-5), [rows, cols], "int4:g32:asym");
          const p = b.prepare({ kind: "quant", q }, "tiny");
          assert.match(b.listing().at(-1)!.kernel, /^nib4·g32·f32 scales·u4 zeros·q8x·4 rows byte-interleaved/);
          const U = uniformQ8Layout(uniformIntLayout(q) as UniformIntLayout);
          assert.ok(!("reason" in U) && !U.f16);
          const Q = U.q8;
          const x = randomF32(cols, 78), out = new Float32Array(rows), twin = new Float32Array(rows);
          b.matvec(p, x, out);
          const a = quantizeActivationsQ8Ref(x);
          matvecLutQ8Ref(Q, a, twin);
          assert.deepEqual(out, twin);
          assert.ok(worst(out, oracle(q.dequantize(), rows, cols, dequantizeActivationsQ8(a), 1)) < 1e-5);
          b.release(p);
        }
        // groups that are not whole 32-blocks keep the exact f32-activation kernel
        const q = quantizeTensor(randomF32(2 * 48, 5), [2, 48], "int4:g16");
        b.prepare({ kind: "quant", q }, "g16");
        assert.match(b.listing().at(-1)!.kernel, /^u4·g16/);
      } finally {
        b.dispose();
      }
    }
  });
});
