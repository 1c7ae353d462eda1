/**
 * Quality against llama.cpp on equal layouts (stories3M, every tensor fits every type): our Q4_K_M with an
 * importance matrix from tinystories/calib.txt is no larger than llama.cpp's stories3M-Q4_K_M-imat.gguf
 * (same per-tensor types, so the same tensor bytes) and has no higher mean KLD against the F32 model on
 * tinystories/eval.txt. Bounded here (calibration: 8 chunks of 256; evaluation: 10 windows of 256, the
 * wasm backend); docs/gguf-results.md has the full figures (scripts/gguf-results.mjs).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveGgufFile } from "../../src/io/node/gguf-file.js";
import { collectImatrix } from "../../src/algos/imatrix.js";
import { quantizeModelToGgml } from "../../src/algos/ggml-quant.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { Llama } from "../../src/model/llama.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { GgufValueType, type GgufValue } from "../../src/io/gguf.js";

test("stories3M Q4_K_M + imatrix: no larger than llama.cpp's and no higher mean KLD vs F32", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "ql-gqq-"));
  const backend = createNodeWasmBackend({ threads: 1 });
  try {
    const tok = dataPath("stories260K", "tok512.bin");
    const f32 = await loadModel(dataPath("stories3M", "stories3M.bin"), { tokenizer: tok });
    // same tensors and names as llama.cpp's quantized files (its own F32 conversion)
    const src = await loadModel(dataPath("ggml", "stories3M", "stories3M-F32.gguf"));
    const calib = src.tokenizer!.encode(readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 40000), { bos: false });
    const im = collectImatrix(src, calib, { ctx: 256, maxChunks: 8, hessians: true, backend });
    const r = quantizeModelToGgml(src, { type: "Q4_K_M", imatrix: im.imatrix, gptq: { hessians: im.hessians! } });
    const ours = join(dir, "stories3M-Q4_K_M-imat.gguf");
    // the metadata the CLI writes (llama-quantize's quantize.imatrix.* keys)
    const extraMetadata = new Map<string, GgufValue>([
      ["quantize.imatrix.file", { type: GgufValueType.STRING, value: "calib.txt" }],
      ["quantize.imatrix.dataset", { type: GgufValueType.STRING, value: "calib.txt" }],
      ["quantize.imatrix.entries_count", { type: GgufValueType.UINT32, value: im.imatrix.size }],
      ["quantize.imatrix.chunks_count", { type: GgufValueType.UINT32, value: im.chunks }],
    ]);
    await saveGgufFile(r.model, ours, { fileType: r.fileType, extraMetadata });
    const theirs = dataPath("ggml", "stories3M", "stories3M-Q4_K_M-imat.gguf");
    const sizeOurs = statSync(ours).size;
    const sizeTheirs = statSync(theirs).size;
    assert.ok(sizeOurs <= sizeTheirs, `size ${sizeOurs} > llama.cpp's ${sizeTheirs}`);

    const evalTokens = f32.tokenizer!.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 12000), { bos: false });
    const opts = { ctx: 256, maxTokens: 2550, bosId: f32.tokenizer!.bosId };
    const base = () => new ModelLogits(new Llama(f32, { contextLength: 256, backend }));
    const kOurs = await kld(base(), new ModelLogits(new Llama(await loadModel(ours), { contextLength: 256, backend })), evalTokens, opts);
    const kTheirs = await kld(base(), new ModelLogits(new Llama(await loadModel(theirs), { contextLength: 256, backend })), evalTokens, opts);
    t.diagnostic(`ours: ${sizeOurs} bytes, mean KLD ${kOurs.meanKld.toExponential(4)}, ppl ${kOurs.pplOther.toFixed(4)}; llama.cpp: ${sizeTheirs} bytes, mean KLD ${kTheirs.meanKld.toExponential(4)}, ppl ${kTheirs.pplOther.toFixed(4)} (${kOurs.tokens} tokens)`);
    assert.equal(kOurs.tokens, kTheirs.tokens);
    assert.ok(kOurs.meanKld <= kTheirs.meanKld, `mean KLD ${kOurs.meanKld} > llama.cpp's ${kTheirs.meanKld}`);
  } finally {
    backend.dispose?.();
    rmSync(dir, { recursive: true, force: true });
  }
});
