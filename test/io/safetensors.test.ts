/** safetensors container (io/safetensors.ts): the size reported before writing is the size written, header included. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemorySink } from "../../src/io/gguf.js";
import { BufferSource } from "../../src/io/source.js";
import { openSafetensors, safetensorsSize, writeSafetensors, type SafetensorsEntry } from "../../src/io/safetensors.js";

test("safetensorsSize = the bytes writeSafetensors writes (every tensor named in the header, metadata, 8-byte padding)", async () => {
  const bytesOf = (n: number) => () => Uint8Array.from({ length: n }, (_, i) => i & 0xff);
  const entries: SafetensorsEntry[] = [
    { name: "blk.0.ffn_down.weight.qcodes", dtype: "u8", shape: [64, 86], bytes: bytesOf(64 * 86) },
    { name: "blk.0.ffn_down.weight.qscale", dtype: "f32", shape: [64], bytes: bytesOf(256) },
    { name: "token_embd.weight", dtype: "f16", shape: [5, 3], bytes: bytesOf(30) },
    { name: "a", dtype: "bf16", shape: [1], bytes: bytesOf(2) },
  ];
  const metadatas: Record<string, string>[] = [{}, { format: "pt", "quantlab.note": "ünïcode ✓ \"quoted\"" }];
  for (const metadata of metadatas) {
    for (const n of [1, 2, 4]) {
      const sink = new MemorySink();
      const written = await writeSafetensors(sink, entries.slice(0, n), metadata);
      assert.equal(sink.length, written);
      assert.equal(safetensorsSize(entries.slice(0, n), metadata), written, `${n} tensors, ${Object.keys(metadata).length} metadata keys`);
      // and the file it predicts is one a reader opens, every tensor under its own name
      const st = await openSafetensors(new BufferSource("mem", sink.bytes()));
      assert.deepEqual(st.tensors.map((t) => t.name).sort(), entries.slice(0, n).map((e) => e.name).sort());
    }
  }
});
