// Q4_0/Q8_0 matrices whose row count is a multiple of 4 run on their GGUF blocks interleaved 4 rows at a
// time, permuted in place (K_Q4_0X4/K_Q8_0X4): the listing says so, preparing a placed tensor twice
// does not permute it twice, a tied embedding table is read back through the backend (rowReader), and a
// whole model gives the same logits as the non-interleaved native layout.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlRowBytes, ggmlTypeName } from "../../../src/ggml/types.js";
import { quantizeRow } from "../../../src/ggml/codecs.js";
import { dequantizeWeight } from "../../../src/kernels/dequantize.js";
import { createNodeWasmBackend } from "../../../src/kernels/wasm/pool-node.js";
import { loadModel } from "../../../src/io/node/load.js";
import { saveGgufFile } from "../../../src/io/node/gguf-file.js";
import { dataPath } from "../../../src/io/node/data.js";
import { quantizeModelToGgml } from "../../../src/algos/ggml-quant.js";
import { Llama } from "../../../src/model/llama.js";
import { placerOf } from "../../../src/io/placement.js";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { VARIANTS, randomF32 } from "../helpers.js";
import type { Weight } from "../../../src/core/weight.js";

const dir = mkdtempSync(join(tmpdir(), "ql-x4-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function ggml(type: GgmlType, rows: number, cols: number, seed: number): { w: Weight; ref: Float32Array } {
  const x = randomF32(rows * cols, seed);
  const data = new Uint8Array(rows * ggmlRowBytes(type, cols)!);
  quantizeRow(type, x, data, rows * cols);
  const w: Weight = { kind: "ggml", type, shape: [rows, cols], data };
  return { w, ref: dequantizeWeight(w).data };
}

for (const variant of VARIANTS) {
  describe(`WASM ${variant}: 4-row interleaved Q4_0/Q8_0`, () => {
    for (const type of [GgmlType.Q4_0, GgmlType.Q8_0]) {
      const native = type === GgmlType.Q8_0 || variant === "relaxed";
      test(`${type === GgmlType.Q4_0 ? "Q4_0" : "Q8_0"}: placed in place, prepared twice, rows read back`, () => {
        const be = createNodeWasmBackend({ variant });
        try {
          const rows = 36, cols = 96;
          const { w, ref } = ggml(type, rows, cols, 5 + type);
          const view = be.placeTensor(type, [rows, cols], "m");
          if (!native) {
            assert.equal(view, undefined, "SIMD128 repacks Q4_0: nothing is placed");
            return;
          }
          assert.ok(view);
          view.set((w as { data: Uint8Array }).data);
          const placed: Weight = { kind: "ggml", type, shape: [rows, cols], data: view };
          const p1 = be.prepare(placed, "m");
          const p2 = be.prepare(placed, "m again");
          const listing = be.listing();
          assert.match(listing[0]!.kernel, /4 rows interleaved/);
          assert.equal(listing[0]!.inPlace, true);
          const x = randomF32(cols, 9);
          const o1 = new Float32Array(rows), o2 = new Float32Array(rows);
          be.matvec(p1, x, o1);
          be.matvec(p2, x, o2);
          assert.deepEqual(o2, o1, "a second prepare must not permute the bytes again");
          // the bytes really moved: row 1's first block now sits right after row 0's
          const bs = type === GgmlType.Q4_0 ? 18 : 34;
          assert.deepEqual(view.subarray(bs, 2 * bs), (w as { data: Uint8Array }).data.subarray((cols / 32) * bs, (cols / 32) * bs + bs));
          // rows through the backend = the file's rows
          const read = be.rowReader(p1)!;
          assert.ok(read);
          const row = new Float32Array(cols);
          for (const r of [0, 1, 2, 3, 4, 17, 35]) {
            read(r, row, 0);
            assert.deepEqual(row, ref.subarray(r * cols, (r + 1) * cols), `row ${r}`);
          }
          assert.throws(() => read(36, row, 0), /row 36/);
          // odd row counts stay on the plain layout, which has no special reader
          const odd = ggml(type, 7, cols, 3);
          const po = be.prepare(odd.w, "odd");
          assert.equal(be.rowReader(po), undefined);
          assert.doesNotMatch(be.listing()[2]!.kernel, /interleaved/);
        } finally {
          be.dispose();
        }
      });
    }

    test("prefill (n = 1…9 tokens: the 4- and 2-token tiles and the single-token tail) = one mat-vec per token bit for bit, 1 and 2 threads", async () => {
      for (const threads of [1, 2]) {
      const be = createNodeWasmBackend({ variant, threads, minParallelBytes: 0 });
      if (threads > 1) assert.ok(await be.ready(20000), "workers started");
      try {
        for (const type of [GgmlType.Q4_0, GgmlType.Q8_0]) {
          // 8192 columns: 16 tokens per L2 block (prefillTokenBlock), so n = 21 runs a second, partial block
          for (const [rows, cols, ns] of [[12, 128, [1, 2, 3, 4, 5, 6, 7, 8, 9]], [8, 8192, [21]]] as const) {
          const { w } = ggml(type, rows, cols, 77 + type);
          const p = be.prepare(w, "m");
          for (const n of ns) {
            const x = randomF32(n * cols, 100 + n);
            const got = new Float32Array(n * rows);
            be.matmul(p, x, n, got);
            const one = new Float32Array(rows);
            for (let t = 0; t < n; t++) {
              be.matvec(p, x.subarray(t * cols, (t + 1) * cols), one);
              for (let r = 0; r < rows; r++) {
                const a = got[t * rows + r]!, b = one[r]!;
                // the tiles take the mat-vec's integer sums and its f32 steps in its order
                assert.ok(Object.is(a, b), `${ggmlTypeName(type)} n=${n} threads=${threads} token ${t} row ${r}: ${a} vs mat-vec ${b}`);
              }
            }
          }
          }
        }
      } finally {
        be.dispose();
      }
      }
    });

    test("stories260K Q8_0 (tied embeddings, loaded in place): same logits as the native layout, embedding read through the backend", async () => {
      const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
      const q = quantizeModelToGgml(m, { type: "Q8_0", pure: true });
      const path = join(dir, `s260k-${variant}.gguf`);
      await saveGgufFile(q.model, path, { fileType: q.fileType });
      const run = async (layouts: "auto" | "native") => {
        const be = createNodeWasmBackend({ variant, layouts });
        try {
          const model = await loadModel(path, { place: placerOf(be) });
          const llama = new Llama(model, { backend: be });
          const kernels = be.listing().map((r) => `${r.name}:${r.kernel}`);
          const logits = [1, 403, 407, 261, 374, 511].map((t, pos) => llama.forward(t, pos).slice());
          return { kernels, logits };
        } finally {
          be.dispose();
        }
      };
      const a = await run("auto"), n = await run("native");
      assert.ok(a.kernels.some((k) => k.startsWith("token_embd.weight:") && /interleaved/.test(k)), a.kernels.join("\n"));
      assert.ok(n.kernels.every((k) => !/interleaved/.test(k)));
      let d = 0;
      a.logits.forEach((l, i) => { for (let j = 0; j < l.length; j++) d = Math.max(d, Math.abs(l[j]! - n.logits[i]![j]!)); });
      // same quantized activations, only the float summation order differs
      assert.ok(d < 1e-4, `max |Δlogit| ${d}`);
    });
  });
}
