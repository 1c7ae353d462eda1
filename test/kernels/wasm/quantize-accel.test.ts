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

test("installed as ggml's fast reference quantizers: quantizeRow and the F16 writer path give the reference bytes; imatrix and refine bypass them", async () => {
  const { installWasmQuantizers } = await import("../../../src/kernels/wasm/quantize-accel.js");
  const { registerBlockQuantizer, quantize, quantizeF16Fast } = await import("../../../src/ggml/codecs.js");
  const { encodeWeight } = await import("../../../src/io/weights-encode.js");
  const { createNodeWasmBackend } = await import("../../../src/kernels/wasm/pool-node.js");
  const { f32ArrayToF16, f16ArrayToF32 } = await import("../../../src/core/f16.js");
  const x = Float32Array.from([...edgeBlocks(), ...randomF32(32 * 201, 41, 2)]); // 208 blocks: rows of 64
  const h = f32ArrayToF16(x);
  const xh = f16ArrayToF32(h);
  const want = new Map([GgmlType.Q8_0, GgmlType.Q4_0].map((t) => [t, { f32: quantize(t, x), f16: quantize(t, xh) }]));
  assert.equal(quantizeF16Fast(GgmlType.Q8_0, h), undefined, "nothing installed yet");
  const uninstall = installWasmQuantizers(() => createNodeWasmBackend({ variant: "simd", threads: 1 }));
  try {
    for (const [t, w] of want) {
      assert.deepEqual(quantize(t, x), w.f32, `${ggmlTypeName(t)} f32`);
      assert.deepEqual(quantizeF16Fast(t, h), w.f16, `${ggmlTypeName(t)} f16`);
      const rows = x.length / 64;
      const enc = encodeWeight({ kind: "ggml", type: GgmlType.F16, shape: [rows, 64], data: new Uint8Array(h.buffer) }, "w", t);
      assert.deepEqual(enc, w.f16, `${ggmlTypeName(t)} encodeWeight from F16`);
    }
  } finally {
    uninstall();
  }
  // the hook is used only without imatrix/refine: a throwing stand-in shows which path ran
  registerBlockQuantizer(GgmlType.Q4_0, () => { throw new Error("fast path"); });
  try {
    const dst = new Uint8Array((x.length / 32) * 18);
    assert.throws(() => quantizeRow(GgmlType.Q4_0, x, dst, x.length), /fast path/);
    quantizeRow(GgmlType.Q4_0, x, dst, x.length, { imatrix: new Float32Array(64).fill(1) });
    quantizeRow(GgmlType.Q4_0, x, dst, x.length, { refine: true });
  } finally {
    registerBlockQuantizer(GgmlType.Q4_0, undefined);
  }
  assert.deepEqual(quantize(GgmlType.Q4_0, x), want.get(GgmlType.Q4_0)!.f32, "uninstalled: the TypeScript reference again");
});
