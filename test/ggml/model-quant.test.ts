/**
 * Whole-model GGUF quantization (algos/ggml-quant.ts) and importance matrices (algos/imatrix.ts,
 * ggml/imatrix.ts, io/imatrix-file.ts):
 * - re-quantizing llama.cpp's stories260K / stories3M F32 GGUFs with a preset gives, tensor for tensor,
 *   the bytes of the file llama-quantize wrote for that preset;
 * - the collected imatrix equals an independent computation (layer 0's inputs straight from the weights);
 * - with an imatrix the imatrix-weighted error is lower; refine never raises the error;
 * - .dat and GGUF imatrix files round-trip; bad input names the tensor.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { BufferSource } from "../../src/io/source.js";
import { MemorySink, openGguf } from "../../src/io/gguf.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { openGgufFile } from "../../src/io/node/gguf-file.js";
import { quantizeModelToGgml } from "../../src/algos/ggml-quant.js";
import { collectImatrix } from "../../src/algos/imatrix.js";
import { formatImatrixDat, parseImatrixDat, ImatrixAccumulator, type Imatrix } from "../../src/ggml/imatrix.js";
import { readImatrixGguf, writeImatrixGguf, isImatrixGguf } from "../../src/io/imatrix-file.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { TensorNames } from "../../src/model/config.js";
import type { Model } from "../../src/model/weights.js";
import { GgmlType, ggmlTypeName } from "../../src/ggml/types.js";
import { dequantize, quantize } from "../../src/ggml/codecs.js";
import { blockCodes, codeLayout, gptqGgml, setBlockCodes } from "../../src/algos/ggml-gptq.js";
import { HessianAccumulator } from "../../src/algos/gptq.js";
import { Rng } from "../../src/core/rng.js";

async function sameBytesAsLlamaCpp(model: Model, dir: string, file: string, preset: string): Promise<string[]> {
  const r = quantizeModelToGgml(model, { type: preset });
  const f = await openGgufFile(dataPath("ggml", dir, file));
  const wrong: string[] = [];
  try {
    for (const t of f.tensors) {
      const w = r.model.weights.get(t.name)!;
      const ours = w.kind === "ggml" ? w.data : w.kind === "dense" ? new Uint8Array(w.tensor.data.buffer, w.tensor.data.byteOffset, w.tensor.data.byteLength) : undefined;
      const theirs = await f.readTensorBytes(t);
      if (ggmlTypeName(t.type) !== r.tensors.find((x) => x.name === t.name)!.type) wrong.push(`${t.name}: type`);
      else if (!ours || ours.length !== theirs.length || ours.some((b, i) => b !== theirs[i])) wrong.push(`${t.name}: bytes`);
    }
  } finally {
    await f.close();
  }
  return wrong;
}

/** Σ_rows Σ_j w_j (x − q)² over the 2-D tensors that got an imatrix. */
function weightedError(src: Model, q: Model, imatrix: Imatrix): number {
  let e = 0;
  for (const [name, im] of imatrix) {
    const a = dequantizeWeight(src.weights.get(name)!, name);
    const b = dequantizeWeight(q.weights.get(name)!, name);
    for (let i = 0; i < a.data.length; i++) e += im[i % a.cols]! * (a.data[i]! - b.data[i]!) ** 2;
  }
  return e;
}

function calibTokens(m: Model, bytes: number): number[] {
  const text = readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, bytes);
  return m.tokenizer!.encode(text, { bos: false });
}

describe("quantizeModelToGgml", () => {
  test("stories260K F32 GGUF → every llama-quantize preset in shared/data: llama.cpp's bytes, fall-backs included", async () => {
    const m = await loadModel(dataPath("ggml", "stories260K", "stories260K-F32.gguf"));
    for (const preset of ["F16", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "TQ2_0"]) {
      assert.deepEqual(await sameBytesAsLlamaCpp(m, "stories260K", `stories260K-${preset}.gguf`, preset), [], preset);
    }
  });

  test("stories3M F32 GGUF → Q8_0 and Q4_0 (output Q6_K): llama.cpp's bytes", async () => {
    const m = await loadModel(dataPath("ggml", "stories3M", "stories3M-F32.gguf"));
    for (const preset of ["Q8_0", "Q4_0"]) {
      assert.deepEqual(await sameBytesAsLlamaCpp(m, "stories3M", `stories3M-${preset}.gguf`, preset), [], preset);
    }
  });

  test("report: fall-backs per tensor, llama.cpp refusals, bits per weight; the input model is untouched", async () => {
    const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const before = dequantizeWeight(m.weights.get("blk.0.ffn_down.weight")!).data.slice();
    const r = quantizeModelToGgml(m, { type: "Q4_0" });
    const down = r.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!;
    assert.equal(down.type, "F16");
    assert.equal(down.requested, "Q4_0");
    assert.equal(down.llamaRefuses, true);
    assert.match(down.fallback!, /row width 172 is not a multiple of Q4_0's block size 32: llama\.cpp refuses it; using F16/);
    // tied model: the embedding is the output, Q6_K → Q8_0 on 64-wide rows
    assert.equal(r.tensors.find((t) => t.name === "token_embd.weight")!.type, "Q8_0");
    assert.equal(r.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.type, "Q4_0");
    assert.equal(r.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!.type, "F32");
    const bytes = r.tensors.reduce((a, t) => a + t.bytes, 0);
    assert.equal(bytes, r.bytes);
    assert.ok(Math.abs(r.bitsPerWeight - (8 * r.bytes) / r.params) < 1e-12);
    assert.deepEqual(dequantizeWeight(m.weights.get("blk.0.ffn_down.weight")!).data, before);
    assert.throws(() => quantizeModelToGgml(m, { type: "Q4_K_X" }), /not a llama-quantize preset/);
  });
});

describe("importance matrix", () => {
  test("collectImatrix: q/k/v share layer 0's input, which equals RMSNorm(embedding) computed independently", async () => {
    const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const tokens = calibTokens(m, 4000);
    const ctx = 64;
    const r = collectImatrix(m, tokens, { ctx, maxChunks: 3 });
    assert.equal(r.chunks, 3);
    assert.equal(r.tokens, 3 * ctx);
    // 7 linears per layer, no output / token_embd
    assert.equal(r.imatrix.size, 7 * m.config.nLayers);
    assert.ok(!r.imatrix.has("output.weight") && !r.imatrix.has("token_embd.weight"));
    const q = r.imatrix.get("blk.0.attn_q.weight")!;
    assert.equal(q, r.imatrix.get("blk.0.attn_v.weight"));
    assert.equal(r.imatrix.get("blk.0.ffn_down.weight")!.length, m.config.hiddenDim);
    // independent: chunk k = BOS + tokens [k·ctx, (k+1)·ctx − 1)
    const dim = m.config.dim;
    const emb = dequantizeWeight(m.weights.get(TensorNames.tokenEmbd)!).data;
    const g = dequantizeWeight(m.weights.get(TensorNames.attnNorm(0))!).data;
    const want = new Float64Array(dim);
    for (let k = 0; k < 3; k++) {
      const ids = [1, ...tokens.slice(k * ctx, (k + 1) * ctx - 1)];
      for (const t of ids) {
        let ss = 0;
        for (let j = 0; j < dim; j++) ss += emb[t * dim + j]! ** 2;
        const inv = 1 / Math.sqrt(ss / dim + m.config.normEps);
        for (let j = 0; j < dim; j++) want[j] += (g[j]! * inv * emb[t * dim + j]!) ** 2;
      }
    }
    for (let j = 0; j < dim; j++) assert.ok(Math.abs(q[j]! - want[j]! / (3 * ctx)) <= 1e-5 * want[j]! / (3 * ctx), `column ${j}`);
  });

  test("an imatrix lowers the imatrix-weighted error of stories3M's Q4_K_M; refine lowers it further", async () => {
    const m = await loadModel(dataPath("stories3M", "stories3M.bin"), { tokenizer: dataPath("stories260K", "tok512.bin") });
    const { imatrix } = collectImatrix(m, calibTokens(m, 20000), { ctx: 256, maxChunks: 4 });
    const plain = quantizeModelToGgml(m, { type: "Q4_K_M" });
    const imat = quantizeModelToGgml(m, { type: "Q4_K_M", imatrix });
    assert.ok(imat.tensors.filter((t) => t.imatrix).length === 7 * m.config.nLayers, "every block linear used it");
    const refined = quantizeModelToGgml(m, { type: "Q4_K_M", imatrix, refine: true });
    const e0 = weightedError(m, plain.model, imatrix);
    const e1 = weightedError(m, imat.model, imatrix);
    const e2 = weightedError(m, refined.model, imatrix);
    assert.ok(e1 < 0.99 * e0, `imatrix: weighted error ${e1} vs ${e0} without`);
    assert.ok(e2 <= e1, `refine: ${e2} vs ${e1}`);
    assert.equal(refined.bytes, imat.bytes, "same layout");
  });

  test("accumulator, .dat and GGUF forms round-trip; size mismatches name the tensor", async () => {
    const acc = new ImatrixAccumulator();
    acc.define("g", 3, ["a.weight", "b.weight"]);
    acc.add("g", new Float32Array([1, 2, 3, -1, 0, 1]), 2, 3);
    const im = acc.result();
    assert.deepEqual([...im.get("a.weight")!], [1, 2, 5]);
    assert.equal(im.get("a.weight"), im.get("b.weight"));
    assert.throws(() => acc.add("g", new Float32Array(4), 1, 4), /width 3/);

    const dat = parseImatrixDat(formatImatrixDat(im, 7, "calib.txt"));
    assert.equal(dat.chunks, 7);
    assert.equal(dat.dataset, "calib.txt");
    for (const [k, v] of im) assert.deepEqual([...dat.imatrix.get(k)!].map((x) => Math.fround(x)), [...v]);
    assert.throws(() => parseImatrixDat(new Uint8Array([1, 0, 0, 0, 5, 0, 0, 0, 65])), /truncated/);

    const sink = new MemorySink();
    await writeImatrixGguf(im, sink, { chunks: 7, chunkSize: 256, tokens: 2, dataset: "calib.txt" });
    const f = await openGguf(new BufferSource("im.gguf", sink.bytes()));
    assert.ok(isImatrixGguf(f));
    const back = await readImatrixGguf(f);
    assert.equal(back.chunks, 7);
    for (const [k, v] of im) assert.deepEqual([...back.imatrix.get(k)!], [...v]);

    const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const bad: Imatrix = new Map([["blk.1.attn_q.weight", new Float32Array(32)]]);
    assert.throws(() => quantizeModelToGgml(m, { type: "Q4_0", imatrix: bad }), /blk\.1\.attn_q\.weight: the importance matrix has 32 columns, the tensor 64/);
  });
});

describe("GPTQ on ggml blocks", () => {
  test("code bits found by probing the decoder: every supported type round-trips real blocks' codes", () => {
    for (const t of [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1]) {
      const L = codeLayout(t);
      const B = L.blockSize;
      const x = new Float32Array(4 * B).map((_, i) => Math.sin(i * 1.7) * (1 + (i % 13)));
      const q = quantize(t, x);
      const codes = new Int32Array(B);
      const dec = dequantize(t, q, 4 * B);
      for (let b = 0; b < 4; b++) {
        const blk = q.slice(b * L.bytesPerBlock, (b + 1) * L.bytesPerBlock);
        blockCodes(t, blk, 0, codes);
        const again = blk.slice();
        setBlockCodes(t, again, 0, codes);
        assert.deepEqual(again, blk, ggmlTypeName(t));
        // lowering one element's code by one moves only that element's value, by its step
        const e = codes.findIndex((c) => c > 0);
        const c2 = Int32Array.from(codes);
        c2[e]! -= 1;
        setBlockCodes(t, again, 0, c2);
        const d2 = dequantize(t, again, B);
        for (let i = 0; i < B; i++) if (i !== e) assert.equal(d2[i], dec[b * B + i], `${ggmlTypeName(t)} element ${i}`);
        assert.notEqual(d2[e], dec[b * B + e]);
      }
      assert.equal(L.nBits, { [GgmlType.Q2_K]: 2, [GgmlType.Q3_K]: 3, [GgmlType.Q6_K]: 6, [GgmlType.Q5_K]: 5, [GgmlType.Q5_0]: 5, [GgmlType.Q5_1]: 5 }[t as number] ?? 4);
    }
    assert.throws(() => codeLayout(GgmlType.IQ4_XS), /not supported/);
  });

  test("gptqGgml: same scales as llama.cpp's blocks, lower output error tr((W−Q) H (W−Q)ᵀ)", () => {
    const rows = 16;
    const cols = 256;
    const rng = new Rng(3);
    const w = new Float32Array(rows * cols);
    rng.fillNormal(w, 0.05);
    // correlated inputs: x = A z, H = 2/N Σ x xᵀ
    const n = 1024;
    const xs = new Float32Array(n * cols);
    const z = new Float64Array(cols);
    for (let t = 0; t < n; t++) {
      for (let j = 0; j < cols; j++) z[j] = rng.normal();
      for (let j = 0; j < cols; j++) xs[t * cols + j] = z[j]! + 0.8 * z[(j + 1) % cols]! + (j % 16 === 0 ? 3 * z[j]! : 0);
    }
    const acc = new HessianAccumulator(cols);
    acc.add(xs, n);
    const h = acc.hessian();
    const imatrix = new Float32Array(cols);
    for (let j = 0; j < cols; j++) imatrix[j] = h[j * cols + j]! / 2;
    const err = (q: Float32Array) => {
      let e = 0;
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < cols; i++) {
          const di = w[r * cols + i]! - q[r * cols + i]!;
          for (let j = 0; j < cols; j++) e += di * h[i * cols + j]! * (w[r * cols + j]! - q[r * cols + j]!);
        }
      }
      return e;
    };
    const plain = quantize(GgmlType.Q4_K, w, rows * cols, { imatrix });
    const g = gptqGgml(GgmlType.Q4_K, w, rows, cols, h, imatrix);
    assert.equal(g.length, plain.length);
    // super-block header and sub-block scales (bytes 0..15 of each 144-byte block) are llama.cpp's
    for (let b = 0; b < g.length / 144; b++) assert.deepEqual(g.subarray(b * 144, b * 144 + 16), plain.subarray(b * 144, b * 144 + 16));
    const e0 = err(dequantize(GgmlType.Q4_K, plain, rows * cols));
    const e1 = err(dequantize(GgmlType.Q4_K, g, rows * cols));
    assert.ok(e1 < 0.9 * e0, `GPTQ output error ${e1} vs ${e0}`);
  });
});
