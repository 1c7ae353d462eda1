// Packed lookup-table spec layouts (kernels/packed.ts family "lut": nf4, fp4 / mxfp4 / nvfp4, fp8, fp6, log
// formats, k-means codebooks, ternary / binary, 1–8-bit uniform ints incl. float zeros) on the WASM backend:
// the fused K_LUT* kernels against an independent float64 dot of the fake-quant weights (QTensor.dequantize)
// and the scalar reference twin (matvecLutRef, which must equal that dot rounded once), both builds, 1–3
// threads with identical bits, ragged shapes and rows that start inside a byte, mat-mat, one-hot inputs that
// read every weight back bit for bit, fast-check; prepared bytes = packed bytes (no f32 copy).
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { quantizeTensor, type QTensor } from "../../../src/quant/tensor.js";
import { matvecLutRef, packedRuntime } from "../../../src/kernels/packed.js";
import { rowReader } from "../../../src/kernels/dequantize.js";
import type { Weight } from "../../../src/core/weight.js";
import { VARIANTS, backend, readyBackend, disposeAll, randomF32 } from "../helpers.js";
import { TOL, eachBackend, lutOf as layoutOf, matvecEach, oracle, perToken, quantize, quantizeOrSkip, runPrepared, worst } from "./packed-helpers.js";

after(disposeAll);

/** spec → the kernel name prefix its listing must show */
const SPECS: [string, RegExp][] = [
  ["nf4:g64", /^lut4·g64·swizzle/], ["nf4:g64:dq", /^lut4·g64·swizzle/], ["mxfp4", /^lut4·g32·swizzle/], ["nvfp4", /^lut4·g16·swizzle/],
  ["fp4_e2m1:channel", /^lut4·row·swizzle/], ["pow2:4bit:g32", /^lut4·g32/], ["int4:g32:asymf", /^lut4·g32/], ["kmeans4:g64", /^lut4·g64/],
  ["fp8_e4m3:channel", /^lut8·row·gather/], ["fp8_e5m2:g32", /^lut8·g32·gather/], ["mxfp8_e4m3", /^lut8·g32·gather/], ["logsqrt2_8:channel", /^lut8·row/],
  ["fp6_e3m2:g32", /^lut6·g32·gather/], ["int5:g32", /^lut5·g32·gather/], ["int6:channel:asym", /^lut6·row·gather/], ["int6:g64:asymf", /^lut6·g64/],
  ["int3:g32", /^lut3·g32·swizzle/], ["int3:g128:asym", /^lut3·(g128|row)·swizzle/], ["kmeans3:channel", /^lut3·row/],
  ["int2:g32:asym", /^lut2·g32·swizzle/], ["int2:g64", /^lut2·g64/], ["ternary:channel", /^lut2·row/],
  ["binary:channel", /^lut1·row·swizzle/], ["int4:g33:asym", /^lut4·g33/],
];

// ragged: rows of 80, 90, 172 and 83 leave short last groups and SIMD tails; odd bit widths × 90, 172 or 83
// columns start most rows inside a byte
const SHAPES: [number, number][] = [[1, 256], [7, 256], [37, 512], [3, 80], [6, 172], [2, 90], [5, 83]];

describe("packed lut kernels vs the fake-quant weights and the reference twin", () => {
  for (const [spec, kernel] of SPECS) {
    test(spec, async () => {
      let seed = 11;
      for (const [rows, cols] of SHAPES) {
        const w = randomF32(rows * cols, seed++, 2);
        // block presets need whole blocks: the spec refuses such shapes by name, nothing to run
        const q = quantizeOrSkip(w, [rows, cols], spec, seed);
        if (!q) continue;
        const wq = q.dequantize();
        const weight: Weight = { kind: "quant", q };
        const L = layoutOf(q);
        for (const n of [1, 3, 9]) {
          const x = randomF32(n * cols, seed++);
          const want = oracle(wq, rows, cols, x, n);
          // reference twin: the float64 dot of the fake-quant weights rounded once
          const ref = perToken(rows, cols, x, n, (xt, o) => matvecLutRef(L, xt, o));
          for (let i = 0; i < ref.length; i++) assert.equal(ref[i], Math.fround(want.out[i]!), `${spec} ref ${i}`);
          let first: Float32Array | undefined;
          for await (const { b, label } of eachBackend([1, 2, 3])) {
            const p = b.prepare(weight, spec);
            const row = b.listing().at(-1)!;
            assert.equal(row.fallback, undefined, `${spec}: ${row.fallback}`);
            assert.match(row.kernel, kernel, spec);
            assert.match(row.kernel, /packed spec/);
            const out = runPrepared(b, p, x, n);
            const e = worst(out, want);
            assert.ok(e < TOL, `${spec} [${rows}×${cols}] n=${n} ${label}: rel err ${e}`);
            if (first) assert.deepEqual(out, first, `${spec} ${label} differs from the first build/thread count`);
            else first = out;
            b.release(p);
          }
        }
      }
    });
  }
});

describe("packed lut weights are the fake-quant values bit for bit", () => {
  test("one-hot x reads every weight back through the kernel; rows decode to the fake-quant rows", () => {
    let seed = 500;
    for (const [spec] of SPECS) {
      for (const [rows, cols] of [[3, 83], [2, 96]] as [number, number][]) {
        let q: QTensor;
        try { q = quantize(randomF32(rows * cols, seed++, 3), [rows, cols], spec, seed); } catch { continue; }
        const wq = q.dequantize();
        const read = rowReader({ kind: "quant", q });
        const rowBuf = new Float32Array(cols + 2);
        for (let r = 0; r < rows; r++) {
          read(r, rowBuf, 2);
          assert.deepEqual(rowBuf.subarray(2), wq.subarray(r * cols, (r + 1) * cols), `${spec} row ${r}`);
        }
        for (const v of VARIANTS) {
          const b = backend(v, 1);
          const p = b.prepare({ kind: "quant", q }, spec);
          const x = new Float32Array(cols), out = new Float32Array(rows);
          for (let c = 0; c < cols; c++) {
            x.fill(0); x[c] = 1;
            b.matvec(p, x, out);
            // 0·w terms add ±0: the sum is the weight itself (a −0 weight may come out +0)
            for (let r = 0; r < rows; r++) assert.ok(out[r] === wq[r * cols + c], `${spec} ${v} w[${r}, ${c}] = ${out[r]}, fake-quant ${wq[r * cols + c]}`);
          }
          b.release(p);
        }
      }
    }
  });
});

describe("packed lut memory and fallbacks", () => {
  test("prepared bytes = codes + scales (+ zeros) + table, as packedRuntime predicts; no f32 copy", () => {
    const rows = 64, cols = 512;
    for (const spec of ["nf4:g64", "mxfp4", "fp8_e4m3:channel", "int3:g32", "int2:g32:asym"]) {
      const q = quantize(randomF32(rows * cols, 3), [rows, cols], spec);
      const b = backend(VARIANTS[0]!, 1);
      const before = b.memoryStats().shards[0]!;
      const p = b.prepare({ kind: "quant", q }, spec);
      const row = b.listing().at(-1)!;
      const grown = b.memoryStats().shards[0]! - before;
      const rt = packedRuntime(q);
      assert.equal(row.kernel, rt.kernel);
      assert.equal(p.bytes, rt.residentBytes);
      // the QTensor stores f16/e8m0/e4m3 scales (2 or 1 byte) where the layout keeps f32 ones, plus the table
      const stored = q.storageBits / 8;
      assert.ok(p.bytes <= stored * 1.25 + 2048, `${spec}: prepared ${p.bytes} bytes vs stored ${stored}`);
      assert.ok(grown <= p.bytes + 5 * 64, `${spec}: memory grew ${grown} bytes for ${p.bytes} prepared`);
      assert.ok(p.bytes < rows * cols * 4 / 3, `${spec}: ${p.bytes} bytes is not packed`);
      b.release(p);
    }
  });

  test("mxfp4 keeps its e8m0 scales as exponent bytes; a scale below the f32 normals (2^-127) keeps f32 scales, same weights", () => {
    const rows = 8, cols = 64, nG = rows * 2;
    const b = backend(VARIANTS[0]!, 1);
    // values near 1e-39 put the MX exponent at its floor, 2^-127: an f32 subnormal, not an exponent byte
    for (const [scale, e8] of [[1, true], [1e-39, false]] as const) {
      const w = randomF32(rows * cols, 21, 1);
      for (let i = 0; i < w.length; i++) w[i] = Math.fround(w[i]! * scale);
      const q = quantize(w, [rows, cols], "mxfp4");
      const p = b.prepare({ kind: "quant", q }, "mxfp4");
      const stored = q.storageBits / 8;
      // e8: codes + 1 byte per group + the 16-entry f64 table, i.e. the file's bytes + the table
      assert.equal(p.bytes, e8 ? stored + 128 : stored + 3 * nG + 128, `scale ${scale}`);
      const x = randomF32(cols, 22), out = new Float32Array(rows);
      b.matvec(p, x, out);
      const want = oracle(q.dequantize(), rows, cols, x, 1);
      assert.ok(worst(out, want) < TOL, `scale ${scale}`);
      const rr = b.rowReader(p)!, row = new Float32Array(cols), wq = q.dequantize();
      for (let r = 0; r < rows; r++) { rr(r, row, 0); assert.deepEqual(row, wq.subarray(r * cols, (r + 1) * cols), `scale ${scale} row ${r}`); }
      b.release(p);
    }
  });

  test("specs outside the packed families run through the row decoder visibly and say why", () => {
    const b = backend(VARIANTS[0]!, 1);
    for (const [spec, why] of [["int4:g64:outliers=1", /outlier/], ["int4:ichannel", /granularity ichannel/], ["int12:channel", /12-bit/], ["ternary:channel:trits", /packing trits/]] as const) {
      const q = quantizeTensor(randomF32(4 * 64, 9), [4, 64], spec);
      const p = b.prepare({ kind: "quant", q }, spec);
      const row = b.listing().at(-1)!;
      assert.equal(row.fallback, undefined, spec);
      assert.match(row.kernel, /^rowdec·f32/, spec);
      assert.match(row.rowdec ?? "", /no packed WASM kernel/, spec);
      assert.match(row.rowdec ?? "", why, spec);
      assert.equal(row.rowdec, packedRuntime(q).rowdec);
      assert.equal(row.bytes, q.storageBits / 8, spec);
      b.release(p);
    }
  });
});

describe("packed lut properties", () => {
  test("fast-check: WASM kernel = fake-quant dot for random shapes, bit widths, groups and values", async () => {
    const b2 = await readyBackend(VARIANTS[0]!, 2);
    const b1 = backend(VARIANTS.at(-1)!, 1);
    const formats = ["nf4", "fp4_e2m1", "int2", "int3", "int5", "int6", "fp8_e4m3", "fp6_e2m3", "pow2_3"];
    fc.assert(fc.property(
      fc.constantFrom(...formats), fc.constantFrom(8, 16, 24, 32, 48, 64, 128), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 7 }),
      fc.boolean(), fc.integer({ min: 1, max: 1e6 }), fc.constantFrom(0.01, 1, 100),
      (fmt, group, cols, rows, asym, seed, scale) => {
        const isInt = fmt.startsWith("int");
        const spec = `${fmt}:g${group}${isInt && asym ? ":asym" : ""}`;
        const q = quantizeTensor(randomF32(rows * cols, seed, scale), [rows, cols], spec);
        const L = layoutOf(q);
        const x = randomF32(cols, seed + 1);
        const want = oracle(q.dequantize(), rows, cols, x, 1);
        const outs = matvecEach([b1, b2], q, spec, x);
        const ref = new Float32Array(rows);
        matvecLutRef(L, x, ref);
        assert.deepEqual(outs[0], outs[1]);
        assert.ok(worst(outs[0]!, want) < TOL, spec);
        assert.ok(worst(ref, want) < 1e-7, spec);
      }), { numRuns: 80, seed: 7 });
  });
});
