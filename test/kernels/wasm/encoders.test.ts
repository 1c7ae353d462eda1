// WASM f32 → Q8_0 / Q4_0 quantizers write the same bytes as ggml's reference quantizers (quantizeRow,
// itself byte-identical with llama.cpp), including rounding ties, zero blocks and |max| = |min| blocks;
// the WASM activation quantizer equals the scalar Q8 reference exactly.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlTypeName } from "../../../src/ggml/types.js";
import { quantizeRow } from "../../../src/ggml/codecs.js";
import { f16BitsToF32, f32ToF16Bits } from "../../../src/core/f16.js";
import { quantizeActivationsQ8Ref } from "../../../src/kernels/ref/q8act.js";
import { openGgufFile } from "../../../src/io/node/gguf-file.js";
import { dataPath } from "../../../src/io/node/data.js";
import { VARIANTS, backend, disposeAll, randomF32, storiesWeights } from "../helpers.js";

after(disposeAll);

/** Blocks built to hit the edge cases: exact .5 ties after scaling, zeros, equal-magnitude extremes. */
function edgeBlocks(): Float32Array {
  const blocks: number[][] = [];
  // amax 127 → d = 1, id = 1: x·id is exact, so k + 0.5 values are ties (roundf: away from zero)
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 0 ? 127 : ((j % 11) - 5) + 0.5)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 0 ? -127 : -(((j % 7) - 3) + 0.5))));
  blocks.push(new Array(32).fill(0));
  // |max| = |min|: Q4_0 takes the first of them as the signed max
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 3 ? -2 : j === 9 ? 2 : (j - 16) / 10)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 3 ? 2 : j === 9 ? -2 : (j - 16) / 10)));
  blocks.push(new Array(32).fill(0.5));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j % 2 ? 1e-30 : -3e-39))); // tiny and subnormal
  return Float32Array.from(blocks.flat());
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

test("WASM Q8_0/Q4_0 quantizers are byte-identical to ggml's reference quantizers", async () => {
  const golden = async (t: string): Promise<Float32Array> => {
    const f = await openGgufFile(dataPath("ggml", `golden-${t}.gguf`));
    try {
      const b = await f.readTensorBytes("x");
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
    } finally {
      await f.close();
    }
  };
  const inputs: [string, Float32Array][] = [
    ["edge", edgeBlocks()],
    ["random", randomF32(32 * 999, 3, 5)],
    ["stories260K", storiesWeights().subarray(0, 32 * 4000)],
    ["golden x", await golden("q8_0")],
    ["large (crosses the 1 MiB streaming chunk)", randomF32((1 << 18) + 32 * 17, 9)],
  ];
  for (const variant of VARIANTS) {
    const be = backend(variant, 1);
    for (const type of [GgmlType.Q8_0, GgmlType.Q4_0] as const) {
      const bpb = type === GgmlType.Q8_0 ? 34 : 18;
      for (const [label, x] of inputs) {
        const want = new Uint8Array((x.length / 32) * bpb);
        quantizeRow(type, x, want, x.length);
        const got = new Uint8Array(want.length);
        be.quantizeGgml(type, x, got);
        const at = firstDiff(got, want);
        assert.equal(at, -1, `${variant} ${ggmlTypeName(type)} ${label}: first differing byte ${at} (block ${Math.floor(at / bpb)}): ${got[at]} vs ggml ${want[at]}`);
      }
    }
  }
});

test("WASM activation quantizer equals the scalar Q8 reference (codes, f16-rounded scales, sums per 16)", () => {
  for (const variant of VARIANTS) {
    const be = backend(variant, 1);
    const k = be.kernels;
    for (const x of [edgeBlocks(), randomF32(32 * 64, 5, 3), storiesWeights().subarray(0, 32 * 64)]) {
      const n = x.length;
      const a = be.arena;
      const xf = a.alloc(n * 4), x16 = a.alloc(n * 2), x8 = a.alloc(n), xd = a.alloc(n / 8), xs = a.alloc(n / 4);
      a.f32.set(x, xf >> 2);
      k.quantize_act(xf, n, x16, x8, xd, xs);
      const ref = quantizeActivationsQ8Ref(x);
      const buf = a.memory.buffer;
      assert.deepEqual(new Int8Array(buf, x8, n), ref.q);
      assert.deepEqual(Int16Array.from(new Int16Array(buf, x16, n)), Int16Array.from(ref.q));
      assert.deepEqual(new Float32Array(buf, xd, n / 32), ref.d);
      assert.deepEqual(new Int32Array(buf, xs, n / 16), ref.sums16);
    }
  }
});

test("quantizeGgmlF16 (f16 in, converted in WASM) gives ggml's bytes for the f16 values; Inf/NaN are refused", () => {
  const src = randomF32((1 << 18) + 32 * 33, 21, 3); // crosses the streaming chunk
  const h = new Uint16Array(src.length);
  for (let i = 0; i < h.length; i++) h[i] = f32ToF16Bits(src[i]!);
  h[5] = 0x0001; // a subnormal
  h[6] = 0x8000; // −0
  const x = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) x[i] = f16BitsToF32(h[i]!);
  for (const variant of VARIANTS) {
    const be = backend(variant, 1);
    for (const type of [GgmlType.Q8_0, GgmlType.Q4_0] as const) {
      const bpb = type === GgmlType.Q8_0 ? 34 : 18;
      const want = new Uint8Array((x.length / 32) * bpb);
      quantizeRow(type, x, want, x.length);
      const got = new Uint8Array(want.length);
      be.quantizeGgmlF16(type, h, got);
      assert.equal(firstDiff(got, want), -1, `${variant} ${ggmlTypeName(type)}`);
    }
    const bad = h.slice(0, 64);
    bad[40] = 0x7c00;
    assert.throws(() => be.quantizeGgmlF16(GgmlType.Q8_0, bad, new Uint8Array(68)), /Inf\/NaN among values 0\.\.63/);
  }
});

test("quantize_row_q4_0_f16 (binary16 in, one pass) gives ggml's Q4_0 bytes for the f16 values and flags Inf/NaN wherever they are", () => {
  // edge blocks in binary16: ties of |max| and |min| (first one wins), zeros and ±0, subnormals only, the
  // largest finite value, a constant block, halves after scaling (max 8 → id = −1), then random blocks
  const blocks: number[][] = [];
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 3 ? -2 : j === 9 ? 2 : (j - 16) / 10)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 3 ? 2 : j === 9 ? -2 : (j - 16) / 10)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 30 ? 0.25 : j === 31 ? -0.25 : 0)));
  blocks.push(new Array(32).fill(0));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j % 3 === 0 ? -0 : 0)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j % 2 ? 2 ** -24 : -(2 ** -24) * (j % 5)))); // subnormals
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 17 ? 65504 : j === 2 ? -65504 : (j - 16) * 1000)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 31 ? -65504 : (j - 16) * 3000)));
  blocks.push(new Array(32).fill(-0.5));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 0 ? 8 : (j % 17) - 8 + 0.5)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 0 ? -8 : (j % 17) - 8 + 0.5)));
  const edge = Float32Array.from(blocks.flat());
  const rnd = randomF32(32 * 777, 77, 4);
  const h = new Uint16Array(edge.length + rnd.length);
  for (let i = 0; i < edge.length; i++) h[i] = f32ToF16Bits(edge[i]!);
  for (let i = 0; i < rnd.length; i++) h[edge.length + i] = f32ToF16Bits(rnd[i]!);
  const x = Float32Array.from(h, (b) => f16BitsToF32(b));
  const want = new Uint8Array((x.length / 32) * 18);
  quantizeRow(GgmlType.Q4_0, x, want, x.length);
  for (const variant of VARIANTS) {
    const be = backend(variant, 1);
    const a = be.arena;
    const hp = a.alloc(h.length * 2, 64), yp = a.alloc(want.length, 64);
    new Uint16Array(a.memory.buffer, hp, h.length).set(h);
    assert.equal(be.kernels.quantize_row_q4_0_f16(hp, h.length, yp), 0, `${variant}: finite values flagged`);
    const got = new Uint8Array(a.memory.buffer, yp, want.length).slice();
    const at = firstDiff(got, want);
    assert.equal(at, -1, `${variant}: first differing byte ${at} (block ${Math.floor(at / 18)}): ${got[at]} vs ggml ${want[at]}`);
    // Inf / −Inf / NaN in a first, middle and last block and lane; a negative value of any magnitude in the same
    // lane of another vector must not hide it (magnitudes are compared without the sign bit)
    for (const [at, bits] of [[0, 0x7c00], [40, 0xfc00], [h.length - 1, 0x7e00], [h.length - 9, 0xfc01], [300, 0x7c00]] as const) {
      const bad = h.slice();
      bad[at] = bits;
      if (at === 300) bad[308] = 0x8001;
      new Uint16Array(a.memory.buffer, hp, h.length).set(bad);
      assert.equal(be.kernels.quantize_row_q4_0_f16(hp, h.length, yp), 1, `${variant}: 0x${bits.toString(16)} at ${at} not flagged`);
    }
    // 65504 and −65504 are finite: not flagged
    const big = new Uint16Array(64).fill(0x7bff);
    big[7] = 0xfbff;
    new Uint16Array(a.memory.buffer, hp, 64).set(big);
    assert.equal(be.kernels.quantize_row_q4_0_f16(hp, 64, yp), 0, `${variant}: ±65504 flagged`);
  }
});

test("the backend's ggml encoder gives the reference bytes for Q8_0/Q4_0 from f32 and from f16 (through encodeWeight); imatrix and refine take the TS codec", async () => {
  const { quantize } = await import("../../../src/ggml/codecs.js");
  const { encodeWeight } = await import("../../../src/io/weights-encode.js");
  const { f32ArrayToF16, f16ArrayToF32 } = await import("../../../src/core/f16.js");
  const x = Float32Array.from([...edgeBlocks(), ...randomF32(32 * 201, 41, 2)]); // 208 blocks: rows of 64
  const h = f32ArrayToF16(x);
  const xh = f16ArrayToF32(h);
  const rows = x.length / 64;
  const imatrix = Float32Array.from({ length: 64 }, (_, j) => 0.5 + (j % 7));
  for (const variant of VARIANTS) {
    const enc = backend(variant, 1).ggmlEncoder();
    for (const t of [GgmlType.Q8_0, GgmlType.Q4_0]) {
      assert.deepEqual(enc.encodeRows({ type: t, rows, cols: 64, x }), quantize(t, x), `${variant} ${ggmlTypeName(t)} f32`);
      assert.deepEqual(enc.encodeRows({ type: t, rows, cols: 64, f16: h }), quantize(t, xh), `${variant} ${ggmlTypeName(t)} f16`);
      const w = encodeWeight({ kind: "ggml", type: GgmlType.F16, shape: [rows, 64], data: new Uint8Array(h.buffer) }, "w", t, enc);
      assert.deepEqual(w, quantize(t, xh), `${variant} ${ggmlTypeName(t)} encodeWeight from F16`);
      // with an imatrix Q4_0 uses llama.cpp's _impl search (Q8_0 ignores it): the bytes differ from the plain ones
      const im = enc.encodeRows({ type: t, rows, cols: 64, x, imatrix });
      assert.deepEqual(im, quantize(t, x, x.length, { imatrix }), `${variant} ${ggmlTypeName(t)} imatrix`);
      if (t === GgmlType.Q4_0) assert.notDeepEqual(im, quantize(t, x), "Q4_0 with an imatrix took the plain path");
      assert.deepEqual(enc.encodeRows({ type: t, rows, cols: 64, x, refine: true }), quantize(t, x, x.length, { refine: true }), `${variant} ${ggmlTypeName(t)} refine`);
    }
  }
});

test("encodeRows into a given out buffer (reused, dirty) returns it with the bytes a fresh one gets, WASM and reference encoders; a wrong size is an error", async () => {
  const { refGgmlEncoder } = await import("../../../src/ggml/encoder.js");
  const rows = 12, cols = 256;
  const x = randomF32(rows * cols, 15, 2);
  for (const variant of VARIANTS) {
    for (const enc of [backend(variant, 2).ggmlEncoder(), refGgmlEncoder]) {
      for (const type of [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q6_K, GgmlType.Q4_K]) {
        const want = enc.encodeRows({ type, rows, cols, x });
        const out = new Uint8Array(want.length).fill(0xa5);
        const got = enc.encodeRows({ type, rows, cols, x, out });
        assert.equal(got, out, `${variant} ${enc.name} ${ggmlTypeName(type)}: not the given buffer`);
        assert.deepEqual(got, want, `${variant} ${enc.name} ${ggmlTypeName(type)}`);
        assert.throws(() => enc.encodeRows({ type, rows, cols, x, out: new Uint8Array(want.length + 1) }), /out has \d+ bytes/);
      }
    }
  }
});
