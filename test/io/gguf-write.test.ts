import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { openGguf, GgufWriter, GgufValueType, MemorySink, type GgufValue, GGUF_MAGIC } from "../../src/io/gguf.js";
import { GgmlType } from "../../src/ggml/types.js";
import { BufferSource } from "../../src/io/source.js";
import { QuantlabError } from "../../src/core/errors.js";

/** One value of every GGUF type, with edge values (extremes, -0, NaN-free floats, non-ASCII strings, nested arrays). */
export function everyTypeMetadata(): [string, GgufValue][] {
  return [
    ["t.u8", { type: GgufValueType.UINT8, value: 255 }],
    ["t.i8", { type: GgufValueType.INT8, value: -128 }],
    ["t.u16", { type: GgufValueType.UINT16, value: 65535 }],
    ["t.i16", { type: GgufValueType.INT16, value: -32768 }],
    ["t.u32", { type: GgufValueType.UINT32, value: 4294967295 }],
    ["t.i32", { type: GgufValueType.INT32, value: -2147483648 }],
    ["t.f32", { type: GgufValueType.FLOAT32, value: Math.fround(-1.2345e-20) }],
    ["t.f64", { type: GgufValueType.FLOAT64, value: 1 / 3 }],
    ["t.u64", { type: GgufValueType.UINT64, value: 18446744073709551615n }],
    ["t.i64", { type: GgufValueType.INT64, value: -9223372036854775808n }],
    ["t.bool", { type: GgufValueType.BOOL, value: true }],
    ["t.str", { type: GgufValueType.STRING, value: "héllo ▁wörld 🦙" }],
    ["t.empty", { type: GgufValueType.STRING, value: "" }],
    ["a.u8", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.UINT8, items: new Uint8Array([0, 1, 255]) } }],
    ["a.i8", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.INT8, items: new Int8Array([-128, 0, 127]) } }],
    ["a.u16", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.UINT16, items: new Uint16Array([1, 65535]) } }],
    ["a.i16", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.INT16, items: new Int16Array([-32768, 7]) } }],
    ["a.u32", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.UINT32, items: new Uint32Array([4294967295, 3]) } }],
    ["a.i32", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.INT32, items: new Int32Array([-5, 6, 1 << 30]) } }],
    ["a.f32", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.FLOAT32, items: new Float32Array([-0, 1.5, -3e38]) } }],
    ["a.f64", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.FLOAT64, items: new Float64Array([Math.PI, -0]) } }],
    ["a.u64", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.UINT64, items: new BigUint64Array([0n, 2n ** 63n]) } }],
    ["a.i64", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.INT64, items: new BigInt64Array([-1n, 2n ** 62n]) } }],
    ["a.bool", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.BOOL, items: [true, false, true] } }],
    ["a.str", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.STRING, items: ["<unk>", "", "▁the", "é"] } }],
    ["a.empty", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.INT32, items: new Int32Array(0) } }],
    ["a.nested", {
      type: GgufValueType.ARRAY,
      value: {
        itemType: GgufValueType.ARRAY,
        items: [
          { itemType: GgufValueType.STRING, items: ["a", "b"] },
          { itemType: GgufValueType.ARRAY, items: [{ itemType: GgufValueType.FLOAT32, items: new Float32Array([2.5]) }] },
        ],
      },
    }],
  ];
}

async function writeToMemory(md: [string, GgufValue][], tensors: { name: string; shape: number[]; type: GgmlType; data: Uint8Array }[], alignment?: number): Promise<Uint8Array> {
  const sink = new MemorySink();
  const w = new GgufWriter(sink, "mem.gguf");
  if (alignment) w.setKV("general.alignment", { type: GgufValueType.UINT32, value: alignment });
  for (const [k, v] of md) w.setKV(k, v);
  for (const t of tensors) w.addTensor(t);
  await w.writeHeader();
  for (const t of tensors) {
    // in two chunks, to exercise chunked writes
    const h = t.data.length >> 1;
    await w.writeTensorData(t.name, t.data.subarray(0, h));
    await w.writeTensorData(t.name, t.data.subarray(h));
  }
  w.finish();
  return sink.bytes();
}

function randomBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}

describe("GGUF writer", () => {
  test("every metadata type round-trips with its type tag", async () => {
    const md = everyTypeMetadata();
    const bytes = await writeToMemory(md, []);
    const f = await openGguf(new BufferSource("mem.gguf", bytes));
    assert.equal(f.version, 3);
    assert.equal(f.metadata.size, md.length);
    for (const [k, v] of md) assert.deepEqual(f.metadata.get(k), v, k);
    // a file written from what we read is byte-identical
    const again = await writeToMemory([...f.metadata], []);
    assert.deepEqual(again, bytes);
  });

  test("tensors of several types land aligned and read back byte-exact, with custom alignment", async () => {
    for (const alignment of [32, 64, 1]) {
      const tensors = [
        { name: "a", shape: [3, 5], type: GgmlType.F32, data: randomBytes(60, 1) },
        { name: "b", shape: [2, 64], type: GgmlType.Q8_0, data: randomBytes(2 * 2 * 34, 2) },
        { name: "c", shape: [7], type: GgmlType.F16, data: randomBytes(14, 3) },
        { name: "d", shape: [1, 2, 3, 256], type: GgmlType.Q4_K, data: randomBytes(6 * 144, 4) },
      ];
      const bytes = await writeToMemory([["general.architecture", { type: GgufValueType.STRING, value: "test" }]], tensors, alignment);
      const f = await openGguf(new BufferSource("mem.gguf", bytes));
      assert.equal(f.alignment, alignment);
      assert.equal(f.dataOffset % alignment, 0);
      for (const t of tensors) {
        const info = f.tensor(t.name)!;
        assert.deepEqual(info.shape, t.shape);
        assert.equal(info.type, t.type);
        assert.equal(info.offset % alignment, 0);
        assert.deepEqual(await f.readTensorBytes(info), t.data);
      }
      assert.equal(bytes.length % alignment, 0);
    }
  });

  test("section order and sizes are enforced", async () => {
    const w = new GgufWriter(new MemorySink(), "x.gguf");
    w.addTensor({ name: "t", shape: [4], type: GgmlType.F32 });
    await assert.rejects(() => w.writeTensorData("t", new Uint8Array(16)), /before the header/);
    await w.writeHeader();
    assert.throws(() => w.setKV("k", { type: GgufValueType.BOOL, value: true }), /after the header/);
    assert.throws(() => w.addTensor({ name: "u", shape: [1], type: GgmlType.F32 }), /after the header/);
    await assert.rejects(() => w.writeTensorData("u", new Uint8Array(4)), /expected data for tensor "t"/);
    await assert.rejects(() => w.writeTensorData("t", new Uint8Array(20)), /needs 16 bytes/);
    await w.writeTensorData("t", new Uint8Array(8));
    assert.throws(() => w.finish(), /got 8 of 16 bytes/);
    await w.writeTensorData("t", new Uint8Array(8));
    w.finish();
    assert.throws(() => new GgufWriter(new MemorySink()).addTensor({ name: "q", shape: [3, 33], type: GgmlType.Q4_0 }), /not a multiple of the Q4_0 block size 32/);
    assert.throws(() => new GgufWriter(new MemorySink()).setKV("k", { type: GgufValueType.UINT8, value: 256 }), /does not fit/);
  });
});

describe("GGUF reader on hostile input", () => {
  async function good(): Promise<Uint8Array> {
    return writeToMemory([["general.architecture", { type: GgufValueType.STRING, value: "llama" }]], [{ name: "w", shape: [2, 8], type: GgmlType.F32, data: randomBytes(64, 9) }]);
  }
  const open = (b: Uint8Array) => openGguf(new BufferSource("bad.gguf", b));
  const err = (re: RegExp) => (e: unknown) => e instanceof QuantlabError && re.test(e.message) && e.message.startsWith("bad.gguf: ");

  test("bad magic", async () => {
    const b = await good();
    b.set([0x47, 0x47, 0x4d, 0x4c], 0); // "GGML"
    await assert.rejects(() => open(b), err(/not a GGUF file \(magic "GGML"/));
  });
  test("unsupported versions", async () => {
    const b = await good();
    new DataView(b.buffer).setUint32(4, 1, true);
    await assert.rejects(() => open(b), err(/version 1 is obsolete/));
    new DataView(b.buffer).setUint32(4, 4, true);
    await assert.rejects(() => open(b), err(/version 4 is not supported/));
  });
  test("truncated header at every length", async () => {
    const b = await good();
    const f = await open(b);
    for (let n = 0; n < f.dataOffset - 32; n++) await assert.rejects(() => open(b.subarray(0, n)), err(/truncated/), `length ${n}`);
  });
  test("truncated tensor data", async () => {
    const b = await good();
    await assert.rejects(() => open(b.subarray(0, b.length - 1)), err(/truncated tensor data: tensor "w" needs bytes/));
  });
  test("counts above the named limits", async () => {
    const b = await good();
    const v = new DataView(b.buffer);
    v.setBigUint64(8, 1n << 40n, true);
    await assert.rejects(() => open(b), err(/tensor count is 1099511627776, above MAX_TENSOR_COUNT/));
    const c = await good();
    new DataView(c.buffer).setBigUint64(16, 1n << 62n, true);
    await assert.rejects(() => open(c), err(/above MAX_KV_COUNT/));
    const d = await good();
    new DataView(d.buffer).setBigUint64(24, 1n << 50n, true); // length of the first key
    await assert.rejects(() => open(d), err(/length of metadata key #0 is \d+, above MAX_STRING_BYTES/));
  });
  test("unknown ggml type names the tensor; bad value type; bad alignment", async () => {
    const b = await good();
    const f = await open(b);
    // the tensor info's type field sits 12 bytes before the end of the info section (type u32 + offset u64)
    const infoEnd = findInfoEnd(b);
    new DataView(b.buffer).setUint32(infoEnd - 12, 99, true);
    await assert.rejects(() => open(b), err(/tensor "w" has unknown ggml type id 99/));
    assert.equal(f.tensors.length, 1);
    const c = await good();
    // value type of the first KV: after magic, version, counts (24 B), key length (8) and "general.architecture" (20)
    new DataView(c.buffer).setUint32(24 + 8 + 20, 42, true);
    await assert.rejects(() => open(c), err(/unknown GGUF value type 42/));
    const d = await writeToMemory([["general.alignment", { type: GgufValueType.UINT32, value: 32 }]], []);
    new DataView(d.buffer).setUint32(24 + 8 + 17 + 4, 24, true);
    await assert.rejects(() => open(d), err(/general.alignment 24 is not a power of two/));
  });
  test("a tensor whose byte length disagrees with its shape (row not a whole number of blocks)", async () => {
    const b = await writeToMemory([], [{ name: "q", shape: [1, 32], type: GgmlType.Q8_0, data: randomBytes(34, 1) }]);
    const infoEnd = findInfoEnd(b);
    new DataView(b.buffer).setBigUint64(infoEnd - 12 - 16, 33n, true); // ne[0] = 33
    await assert.rejects(() => open(b), err(/tensor "q" row length 33 is not a multiple of the Q8_0 block size 32/));
  });
});

/** End of the tensor-info section of a file with no padding ambiguity: the data offset minus padding is not known, so scan. */
function findInfoEnd(b: Uint8Array): number {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  assert.equal(v.getUint32(0, true), GGUF_MAGIC);
  // parse minimally: skip KVs (only string values in these tests, or one u32), then infos
  let p = 24;
  const nT = Number(v.getBigUint64(8, true));
  const nKv = Number(v.getBigUint64(16, true));
  for (let i = 0; i < nKv; i++) {
    p += 8 + Number(v.getBigUint64(p, true));
    const t = v.getUint32(p, true); p += 4;
    if (t === GgufValueType.STRING) p += 8 + Number(v.getBigUint64(p, true));
    else if (t === GgufValueType.UINT32) p += 4;
    else throw new Error("test helper: unexpected type");
  }
  for (let i = 0; i < nT; i++) {
    p += 8 + Number(v.getBigUint64(p, true));
    const nd = v.getUint32(p, true); p += 4 + 8 * nd + 4 + 8;
  }
  return p;
}

test("string metadata is its u64 byte length and TextEncoder's UTF-8 (multi-byte, a lone surrogate, longer than the header builder's first buffer)", async () => {
  for (const s of ["é", "a\uD800b", "🦙".repeat(20000), "x".repeat(70000), ""]) {
    const bytes = await writeToMemory([["k", { type: GgufValueType.STRING, value: s }]], []);
    const want = new TextEncoder().encode(s);
    const off = 4 + 4 + 8 + 8 + (8 + 1) + 4; // magic, version, tensor and kv counts, the key "k", the value type
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    assert.equal(dv.getBigUint64(off, true), BigInt(want.length), `length of a ${s.length}-unit string`);
    assert.deepEqual(bytes.subarray(off + 8, off + 8 + want.length), want);
  }
});
