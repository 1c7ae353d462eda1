// Load-time repacks (src/kernels/wasm/layouts.ts) are exact: the f32 values a prepared layout stands for
// equal ggml's dequantizeRow bit for bit, and llama.cpp's own decode (shared/data ggml goldens), for every
// type and both nibble orders; random block bytes included.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlTypeName } from "../../../src/ggml/types.js";
import { dequantizeRow, quantizeRow } from "../../../src/ggml/codecs.js";
import { openGgufFile } from "../../../src/io/node/gguf-file.js";
import { dataPath } from "../../../src/io/node/data.js";
import { REPACK, unpackToF32, packNibbles32, unpackNibbles32, type NibbleOrder, type RepackTarget } from "../../../src/kernels/wasm/layouts.js";
import { QUANT_TYPES, randomF32, storiesWeights } from "../helpers.js";

const ORDERS: NibbleOrder[] = ["gguf", "r16"];

function repackJs(type: GgmlType, data: Uint8Array, n: number, order: NibbleOrder): RepackTarget {
  const rp = REPACK[type]!;
  const t: RepackTarget = {
    codes: new Uint8Array((n / 32) * rp.codeBytesPer32),
    scales: new Float32Array(n / rp.group),
    mins: rp.affine ? new Float32Array(n / rp.group) : undefined,
  };
  rp.repack(data, n / rp.blockSize, t, order);
  return t;
}

function assertSameF32(got: Float32Array, want: Float32Array, what: string): void {
  const gb = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const wb = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < want.length; i++) {
    if (gb[i] !== wb[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
      assert.fail(`${what}: element ${i} (block ${Math.floor(i / 32)}) is ${got[i]} (0x${gb[i]!.toString(16)}), ggml says ${want[i]} (0x${wb[i]!.toString(16)})`);
    }
  }
}

test("nibble packing round-trips in both orders, and r16 puts weight 8k+j in nibble k of lane j", () => {
  const q = Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 15);
  for (const order of ORDERS) {
    const b = new Uint8Array(16);
    packNibbles32(q, b, 0, order);
    const back = new Uint8Array(32);
    unpackNibbles32(b, 0, order, back);
    assert.deepEqual(back, q);
  }
  const b = new Uint8Array(16);
  packNibbles32(q, b, 0, "r16");
  const lanes = new Uint16Array(b.buffer);
  for (let j = 0; j < 8; j++) for (let k = 0; k < 4; k++) assert.equal((lanes[j]! >> (4 * k)) & 15, q[8 * k + j]);
});

test("every repack equals ggml dequantizeRow bit for bit (random and stories260K rows)", () => {
  for (const type of QUANT_TYPES) {
    const rp = REPACK[type]!;
    const n = rp.blockSize * 12;
    for (const [label, src] of [["random", randomF32(n, type + 1, 4)], ["stories260K", storiesWeights().subarray(20000, 20000 + n)]] as const) {
      const data = new Uint8Array((n / rp.blockSize) * rp.bytesPerBlock);
      quantizeRow(type, src, data, n);
      const want = new Float32Array(n);
      dequantizeRow(type, data, want, n);
      for (const order of ORDERS) assertSameF32(unpackToF32(rp, repackJs(type, data, n, order), n, order), want, `${ggmlTypeName(type)} ${label} ${order}`);
    }
  }
});

test("random block bytes decode as ggml decodes them (hostile input: any bit pattern)", () => {
  for (const type of QUANT_TYPES) {
    const rp = REPACK[type]!;
    const nb = 20;
    const n = nb * rp.blockSize;
    const data = new Uint8Array(nb * rp.bytesPerBlock);
    let s = 12345 + type;
    for (let i = 0; i < data.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      data[i] = s >>> 24;
    }
    const want = new Float32Array(n);
    dequantizeRow(type, data, want, n);
    for (const order of ORDERS) assertSameF32(unpackToF32(rp, repackJs(type, data, n, order), n, order), want, `${ggmlTypeName(type)} random bytes ${order}`);
  }
});

test("llama.cpp goldens: repack of llama.cpp's q equals llama.cpp's own dequantization dq", async () => {
  for (const type of QUANT_TYPES) {
    const name = ggmlTypeName(type);
    const file = dataPath("ggml", `golden-${name.toLowerCase().replace("_k", "_K")}.gguf`); // golden-q4_K.gguf, golden-iq4_nl.gguf
    const f = await openGgufFile(file);
    try {
      const q = await f.readTensorBytes("q");
      const dqBytes = await f.readTensorBytes("dq");
      const dq = new Float32Array(dqBytes.buffer.slice(dqBytes.byteOffset, dqBytes.byteOffset + dqBytes.length));
      const rp = REPACK[type]!;
      for (const order of ORDERS) assertSameF32(unpackToF32(rp, repackJs(type, q, dq.length, order), dq.length, order), dq, `${name} golden ${order}`);
    } finally {
      await f.close();
    }
  }
});
