// Packed lookup-table specs with `packedActivations: "q8"` (kernels/packed.ts lutQ8Layout; WASM kinds
// K_LUT4Q8, the int16-table swizzle kernel, its 4-row interleaved forms K_NIB4Q8X4 / K_LUT4Q8X4 / K_LUT12Q8X4
// for rows % 4 = 0, and K_TERN2Q8, the multiply-free ternary kernel; ternary with rows % 4 = 0 and whole 256-groups
// runs K_TERN2Q8KX4 against Q8_K activations, twin matvecTernQ8KRef): the WASM output
// equals the scalar twin matvecLutQ8Ref bit for bit (same Q8 activations from the reference quantizer, same
// integer dots, same f32 order) on both builds and 1–2 threads, and stays within a derived bound of the
// fake-quant weights × the Q8 activations' values; tables exhaustively (exact for fp4 / ternary / integer
// levels, ≤ 0.5/A for nf4, the unsigned form within its kernel's range); fallbacks for layouts without a Q8 form; fast-check over shapes and groups.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { quantizeTensor } from "../../../src/quant/tensor.js";
import { lutQ8Layout, lutQ8Reason, matvecLutQ8Ref, matvecTernQ8KRef, type LutLayout, type LutQ8Layout } from "../../../src/kernels/packed.js";
import { quantizeQ8_KRef, dequantizeQ8_K } from "../../../src/ggml/kquants.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../../../src/kernels/wasm/backend.js";
import { dequantizeActivationsQ8, quantizeActivationsQ8Ref } from "../../../src/kernels/ref/q8act.js";
import { VARIANTS, randomF32 } from "../helpers.js";
import * as abi from "../../../assembly/abi.js";
import * as abiLinalg from "../../../assembly/abi-linalg.js";
import { lutOf as lut, quantizeOrSkip, runPrepared } from "./packed-helpers.js";

const open: WasmBackend[] = [];
after(() => { for (const b of open) b.dispose(); });

async function q8Backend(variant: (typeof VARIANTS)[number], threads: number): Promise<WasmBackend> {
  const b = createNodeWasmBackend({ variant, threads, packedActivations: "q8" });
  if (threads > 1) { await b.ready(); b.minParallelBytes = 0; }
  open.push(b);
  return b;
}

/** spec → kernel name prefix (rows % 4 ≠ 0, and rows % 4 = 0: the interleaved form of the table's u range); the Q8 forms */
const SPECS: [string, RegExp, RegExp][] = [
  ["nf4:g64", /^lut4·g64·i16-swizzle/, /^lut4·g64·u7-swizzle·q8x·4 rows/], ["nf4:g64:dq", /^lut4·g64·i16-swizzle/, /^lut4·g64·u7-swizzle·q8x·4 rows/],
  ["mxfp4", /^lut4·g32·i16-swizzle/, /^lut4·g32·u6-swizzle·e8 scales·q8x·4 rows/], ["fp4_e2m1:channel", /^lut4·row·i16-swizzle/, /^lut4·row·u6-swizzle·q8x·4 rows/],
  ["int4:g32:asymf", /^lut4·g32·i16-swizzle/, /^nib4·g32·q8x·4 rows/], ["kmeans4:g64", /^lut4·g64·i16-swizzle/, /^lut4·g64·u7-swizzle·q8x·4 rows/],
  ["pow2:4bit:g32", /^lut4·g32·i16-swizzle/, /^lut4·g32·u(6|7|12)-swizzle·q8x·4 rows/], ["ternary:channel", /^tern2·row·masks/, /^tern2·row·q8k?x·4 rows/],
  ["ternary:g64", /^tern2·g64·masks/, /^tern2·g64·q8x·4 rows/], ["ternary:g256", /^tern2·(g256|row)·masks/, /^tern2·(g256|row)·q8k?x·4 rows/],
];

/**
 * The twin's output for one activation row and the activations' values x̂ it saw: Q8 per 32 (matvecLutQ8Ref), or
 * for tern2x4k ggml's block_q8_K (quantize_row_q8_K_ref, one f32 scale per 256) and matvecTernQ8KRef.
 */
function twinRow(Q: LutQ8Layout, x: Float32Array, out: Float32Array): Float32Array {
  if (Q.kind === "tern2x4k") {
    const nsb = x.length / 256, xk = new Uint8Array(nsb * 292);
    for (let s = 0; s < nsb; s++) quantizeQ8_KRef(x, 256 * s, xk, 292 * s);
    matvecTernQ8KRef(Q, xk, out);
    const xh = new Float32Array(x.length);
    dequantizeQ8_K(xk, xh, nsb);
    return xh;
  }
  const a = quantizeActivationsQ8Ref(x);
  matvecLutQ8Ref(Q, a, out);
  return dequantizeActivationsQ8(a);
}

function q8(L: LutLayout): LutQ8Layout {
  const Q = lutQ8Layout(L);
  if ("reason" in Q) throw new Error(Q.reason);
  return Q;
}

/**
 * |kernel − Σ ŵ·x̂| for fake-quant weights ŵ and the Q8 activations' values x̂ (exact in f32: f16 d × 7-bit q):
 * the table's weight error tableError·|s| per weight, the f32 rounding of s·z and of ŵ (2^-24 each,
 * relative), and f32 accumulation over ≤ cols/32 + 8 roundings of partial sums bounded by Σ|terms| —
 * together ≤ tableError·Σ|s·x̂| + 2^-24·(cols/32 + 10)·(Σ|ŵ·x̂| + Σ|s·z·x̂|).
 */
function bound(L: LutLayout, Q: LutQ8Layout, wq: Float32Array, r: number, xh: Float32Array): { want: number; tol: number } {
  const { cols, group } = L, perRow = Math.ceil(cols / group);
  let want = 0, sx = 0, mag = 0;
  for (let c = 0; c < cols; c++) {
    const g = r * perRow + Math.floor(c / group);
    const s = Math.abs(L.scales[g]!), z = L.zeros ? Math.abs(L.zeros[g]!) : 0;
    want += wq[r * cols + c]! * xh[c]!;
    sx += s * Math.abs(xh[c]!);
    mag += Math.abs(wq[r * cols + c]! * xh[c]!) + s * z * Math.abs(xh[c]!);
  }
  return { want, tol: Q.tableError * sx + 2 ** -24 * (cols / 32 + 10) * mag };
}

const SHAPES: [number, number][] = [[1, 256], [7, 256], [37, 512], [3, 96], [5, 160], [8, 256], [12, 96], [4, 512]];

describe("lut × Q8 kernels = the scalar twin bit for bit, and near the fake-quant dot", () => {
  for (const [spec, kernel1, kernel4] of SPECS) {
    test(spec, async () => {
      let seed = 40;
      for (const [rows, cols] of SHAPES) {
        const q = quantizeOrSkip(randomF32(rows * cols, seed++, 2), [rows, cols], spec, seed);
        if (!q) continue;
        const L = lut(q), Q = q8(L), wq = q.dequantize();
        for (const n of [1, 3, 9]) {
          const x = randomF32(n * cols, seed++);
          const twin = new Float32Array(n * rows);
          const xhs: Float32Array[] = [];
          for (let t = 0; t < n; t++) xhs.push(twinRow(Q, x.subarray(t * cols, (t + 1) * cols), twin.subarray(t * rows, (t + 1) * rows)));
          for (let t = 0; t < n; t++) for (let r = 0; r < rows; r++) {
            const { want, tol } = bound(L, Q, wq, r, xhs[t]!);
            const got = twin[t * rows + r]!;
            assert.ok(Math.abs(got - want) <= tol, `${spec} [${rows}×${cols}] t${t} r${r}: twin ${got} vs ${want} (bound ${tol})`);
          }
          for (const v of VARIANTS) for (const threads of [1, 2]) {
            const b = await q8Backend(v, threads);
            const p = b.prepare({ kind: "quant", q }, spec);
            const row = b.listing().at(-1)!;
            assert.match(row.kernel, rows % 4 === 0 ? kernel4 : kernel1, `${spec} [${rows}×${cols}]`);
            // ternary, rows % 4 = 0: Q8_K activations exactly when the row and the groups are whole 256-blocks
            if (spec.startsWith("ternary")) assert.equal(/q8kx/.test(row.kernel), Q.kind === "tern2x4k" && rows % 4 === 0 && cols % 256 === 0 && L.group % 256 === 0, `${spec} [${rows}×${cols}] ${row.kernel}`);
            assert.match(row.kernel, /Q8 activations/);
            const out = runPrepared(b, p, x, n);
            assert.deepEqual(out, twin, `${spec} [${rows}×${cols}] n=${n} ${v}/t${threads}`);
            b.release(p);
          }
        }
      }
    });
  }
});

describe("lut × Q8 tables (exhaustive over the 16 or 4 codes)", () => {
  test("fp4 e2m1 / mxfp4, integer levels and ternary are exact; nf4 on the 7-bit grid; the unsigned form fits", () => {
    const w = randomF32(4 * 256, 3, 2);
    for (const [spec, bitsWant] of [["fp4_e2m1:channel", 6], ["mxfp4", 6], ["int4:g32:asymf", 0], ["pow2:4bit:g32", 0], ["nf4:g64", 7], ["ternary:channel", 0]] as const) {
      const L = lut(quantizeTensor(w, [4, 256], spec)), Q = q8(L);
      let err = 0;
      const nCodes = Q.kind !== "lut4" ? 4 : 16;
      for (let c = 0; c < nCodes; c++) {
        if (Q.kind !== "lut4") { if (c !== 2) assert.equal([0, 1, NaN, -1][c]! * L.table[1]!, L.table[c]); continue; }
        const t = Q.table![c]!, u = t + Q.tableOffset;
        assert.ok(u >= 0 && u < 2 ** Q.tableBits, `${spec} u[${c}] = ${u} (${Q.tableBits} bits)`);
        if (Q.tableBits === 4) assert.equal(u, c, spec);
        err = Math.max(err, Math.abs(t / Q.tableScale - L.table[c]!));
      }
      assert.equal(err, Q.tableError, spec);
      if (bitsWant) assert.equal(Q.tableBits, bitsWant, spec);
      if (Q.table) {
        // the unsigned range is as tight as the table allows: the offset is −min t, and the smallest u is 0
        assert.equal(Math.min(...Array.from(Q.table, (t) => t + Q.tableOffset)), 0, spec);
        const span = Math.max(...Q.table) - Math.min(...Q.table);
        if (spec === "nf4:g64") {
          // not dyadic: A = 127 / (level span) = 63.5 (levels −1 … 1), every level within half a step
          assert.equal(Q.tableScale, 63.5);
          assert.ok(err > 0 && err <= 0.5 / 63.5, `nf4 table error ${err}`);
          assert.equal(span, 127);
        } else {
          assert.equal(err, 0, spec);
          // exact: A is the smallest power of two making every level an integer (A/2 would not)
          assert.ok(Array.from(L.table.subarray(0, 16)).some((l) => !Number.isInteger((l * Q.tableScale) / 2)), `${spec} A = ${Q.tableScale}`);
        }
      }
    }
  });
});

describe("ternary × Q8_K (K_TERN2Q8KX4)", () => {
  test("the Q8_K form is chosen exactly for rows % 4 = 0 with rows and groups whole 256-blocks; the Q8 twin refuses it by name", () => {
    const kindOf = (rows: number, cols: number, spec: string) => q8(lut(quantizeTensor(randomF32(rows * cols, 8), [rows, cols], spec))).kind;
    assert.equal(kindOf(4, 256, "ternary:channel"), "tern2x4k");
    assert.equal(kindOf(8, 512, "ternary:g256"), "tern2x4k");
    assert.equal(kindOf(4, 1024, "ternary:g512"), "tern2x4k");
    assert.equal(kindOf(4, 288, "ternary:channel"), "tern2x4");
    assert.equal(kindOf(4, 512, "ternary:g128"), "tern2x4");
    assert.equal(kindOf(6, 256, "ternary:channel"), "tern2");
    const Q = q8(lut(quantizeTensor(randomF32(4 * 256, 9), [4, 256], "ternary:channel")));
    assert.throws(() => matvecLutQ8Ref(Q, quantizeActivationsQ8Ref(randomF32(256, 1)), new Float32Array(4)), /tern2x4k reads Q8_K/);
    assert.throws(() => matvecTernQ8KRef(Q, new Uint8Array(100), new Float32Array(4)), /100 bytes of Q8_K/);
  });

  test("extreme activations (all ±amax: the i16 sums per super-block at their largest) and zero rows: kernel = twin, = the exact dot", async () => {
    // rows 0, 1, 5 all +1 (u = 2) against a super-block of x whose codes are all −127 (x = 3: ggml's Q8_K scale is −max/127): the relaxed build's i16 accumulators
    // reach 16·2·2·127 (rows 0, 2 of a group, which start from −Σx per 32: |lane| ≤ 8128 + 4064) and 16·2·8·127 = 32512
    // (rows 1, 3: 4·u), their bound; row 2 all −1, row 3 zero, the others mixed; then a super-block of ±0.5, a zero one
    // (d = 0) and one all −1.5 (codes +127: the other sign)
    const rows = 8, cols = 1024;
    const w = new Float32Array(rows * cols);
    for (let i = 0; i < w.length; i++) w[i] = i % 3 === 0 ? -1 : 1;
    for (const r of [0, 1, 5]) w.fill(1, r * cols, (r + 1) * cols);
    w.fill(-1, 2 * cols, 3 * cols);
    w.fill(0, 3 * cols, 4 * cols);
    const q = quantizeTensor(w, [rows, cols], "ternary:channel");
    const L = lut(q), Q = q8(L), wq = q.dequantize();
    assert.equal(Q.kind, "tern2x4k");
    const x = new Float32Array(cols);
    for (let i = 0; i < 256; i++) x[i] = 3;
    for (let i = 256; i < 512; i++) x[i] = i % 2 ? -0.5 : 0.5;
    for (let i = 768; i < 1024; i++) x[i] = -1.5;
    const twin = new Float32Array(rows);
    const xh = twinRow(Q, x, twin);
    for (let r = 0; r < rows; r++) {
      let want = 0;
      for (let c = 0; c < cols; c++) want += wq[r * cols + c]! * xh[c]!;
      // x̂ = ±3 and ±0.5 exactly, the weights ±s: the float steps are exact but for the last products' rounding
      assert.ok(Math.abs(twin[r]! - want) <= 2 ** -22 * Math.abs(want) + 1e-30, `r${r}: ${twin[r]} vs ${want}`);
    }
    assert.equal(twin[3], 0);
    assert.equal(twin[1], twin[0]);
    assert.equal(twin[2], -twin[0]!);
    for (const v of VARIANTS) for (const threads of [1, 2]) {
      const b = await q8Backend(v, threads);
      const p = b.prepare({ kind: "quant", q }, "ternary:channel");
      assert.match(b.listing().at(-1)!.kernel, /^tern2·row·q8kx·4 rows interleaved/);
      assert.deepEqual(runPrepared(b, p, x, 1), twin, `${v}/t${threads}`);
      b.release(p);
    }
  });

  test("5 and 7 row groups (odd pool chunks at 2 threads), several groups and tokens: kernel = twin", async () => {
    // 5 and 7 row groups: at 1 thread two or three pairs and one single group, at 2 threads the split's halves each
    // end on an odd group or not; the groups of 256 / 512 / a row each end in the pair loop's group step
    let seed = 70;
    for (const [rows, cols, spec] of [[20, 1024, "ternary:channel"], [28, 768, "ternary:g256"], [20, 1024, "ternary:g512"]] as const) {
      const q = quantizeTensor(randomF32(rows * cols, seed++, 2), [rows, cols], spec);
      const Q = q8(lut(q));
      assert.equal(Q.kind, "tern2x4k");
      for (const n of [1, 3]) {
        const x = randomF32(n * cols, seed++);
        const twin = new Float32Array(n * rows);
        for (let t = 0; t < n; t++) twinRow(Q, x.subarray(t * cols, (t + 1) * cols), twin.subarray(t * rows, (t + 1) * rows));
        for (const v of VARIANTS) for (const threads of [1, 2]) {
          const b = await q8Backend(v, threads);
          const p = b.prepare({ kind: "quant", q }, spec);
          assert.match(b.listing().at(-1)!.kernel, /q8kx·4 rows interleaved/);
          assert.deepEqual(runPrepared(b, p, x, n), twin, `${spec} [${rows}×${cols}] n=${n} ${v}/t${threads}`);
          b.release(p);
        }
      }
    }
  });
});

describe("kind ids", () => {
  test("every K_* id of assembly/abi.ts and abi-linalg.ts is distinct: a pool task id names one run_k<id> entry (K_I8Q8X4 once took K_ATTN_F32's 32, then K_GEMM_NT_F64's 48)", () => {
    const kinds = (m: object) => Object.entries(m).filter(([k]) => k.startsWith("K_") && !k.startsWith("KQ_")).map(([k, v]) => [k, v as number] as const);
    const ids = [...kinds(abi), ...kinds(abiLinalg)];
    assert.ok(ids.some(([k]) => k === "K_GEMM_NT_F64"));
    const seen = new Map<number, string>();
    for (const [k, v] of ids) {
      assert.ok(!seen.has(v), `${k} = ${v} = ${seen.get(v)}`);
      seen.set(v, k);
    }
    assert.ok(seen.size > 30);
  });
});

describe("lut × Q8 fallbacks", () => {
  test("layouts without a Q8 form keep the exact f32-activation kernel and say why", async () => {
    const b = await q8Backend(VARIANTS[0]!, 1);
    for (const [spec, cols, kernel, why] of [
      ["nvfp4", 64, /^lut4·g16·swizzle·f32x/, /groups of 16/], ["int3:g32", 64, /^lut3·g32·swizzle·f32x/, /3-bit/],
      ["nf4:g64", 80, /^lut4·g64·swizzle·f32x/, /rows of 80/], ["binary:channel", 64, /^lut1·row·swizzle·f32x/, /1-bit/],
    ] as const) {
      const q = quantizeTensor(randomF32(3 * cols, 5), [3, cols], spec);
      const L = lut(q);
      assert.match(lutQ8Reason(L) ?? "", why, spec);
      const p = b.prepare({ kind: "quant", q }, spec);
      assert.match(b.listing().at(-1)!.kernel, kernel, spec);
      b.release(p);
    }
  });

  test("a ternary tensor holding code 2 (no level) has no Q8 form (the masks would read it as 0): refused by name", () => {
    const q = quantizeTensor(randomF32(2 * 64, 6), [2, 64], "ternary:channel");
    const L = lut(q);
    const codes = new Uint8Array(L.codes);
    codes[5] = (codes[5]! & ~0x0c) | 0x08; // element 21 → code 2
    const Lb: LutLayout = { ...L, codes };
    const Q = lutQ8Layout(Lb);
    assert.ok("reason" in Q);
    assert.match(Q.reason, /code 2 .* element 21/);
  });
});

describe("lut × Q8 properties", () => {
  test("fast-check: kernel = twin for random formats, groups, shapes and scales", async () => {
    const bs = [await q8Backend(VARIANTS[0]!, 2), await q8Backend(VARIANTS.at(-1)!, 1)];
    fc.assert(fc.property(
      fc.constantFrom("nf4", "fp4_e2m1", "ternary", "int4:asymf"), fc.constantFrom(32, 64, 96, 128, 256), fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 1e6 }), fc.constantFrom(0.01, 1, 100),
      (fmt, group, nb, rows, seed, scale) => {
        const cols = nb * 32;
        const [f, extra] = fmt.split(":");
        const spec = `${f}:g${group}${extra ? `:${extra}` : ""}`;
        const q = quantizeTensor(randomF32(rows * cols, seed, scale), [rows, cols], spec);
        const Q = q8(lut(q));
        const x = randomF32(cols, seed + 1, scale);
        const twin = new Float32Array(rows);
        twinRow(Q, x, twin);
        for (const b of bs) {
          const p = b.prepare({ kind: "quant", q }, spec);
          const out = new Float32Array(rows);
          b.matvec(p, x, out);
          b.release(p);
          assert.deepEqual(out, twin, `${spec} [${rows}×${cols}]`);
        }
      }), { numRuns: 60, seed: 11 });
  });
});
