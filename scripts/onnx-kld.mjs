// KL divergence of an exported ONNX model (run by onnxruntime-node) against quantlab's float forward pass
// of a base model, on the same windows and with the same code as `quantlab kld` (eval/kld.ts).
// Usage: node scripts/onnx-kld.mjs <base-model> <onnx-dir> <dtype> --text eval.txt [--ctx 256] [--max-tokens N] [--tokenizer tok.bin]
// Prints one JSON object: {meanKld, top1, tokens, onnxBytes, …}. Needs `npm run build` first.
import { readFileSync, statSync, readdirSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { loadModel } from "../dist/src/io/node/load.js";
import { Llama } from "../dist/src/model/llama.js";
import { kld, ModelLogits } from "../dist/src/eval/kld.js";
import { ONNX_DTYPES } from "../dist/src/io/onnx.js";
import { f16BitsToF32 } from "../dist/src/core/f16.js";
import { enableRelaxedSimd } from "../dist/src/cli/model-options.js";
import { createNodeWasmBackend } from "../dist/src/kernels/wasm/pool-node.js";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const [basePath, dir, dtype] = args;
const text = opt("--text");
if (!basePath || !dir || !dtype || !text || !(dtype in ONNX_DTYPES)) {
  console.error("usage: node scripts/onnx-kld.mjs <base-model> <onnx-dir> <fp32|fp16|q8|q4|q4f16|q2|q2f16> --text eval.txt [--ctx 256] [--max-tokens N]");
  process.exit(2);
}
const ctx = Number(opt("--ctx", "256"));
const maxTokens = opt("--max-tokens") !== undefined ? Number(opt("--max-tokens")) : undefined;
const file = join(dir, "onnx", ONNX_DTYPES[dtype].file);
const f16 = ONNX_DTYPES[dtype].float === "fp16";
const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));

/** The ONNX model as a LogitsSource: one session run per chunk, the cache carried as past_key_values. */
class OrtLogits {
  constructor(session) { this.s = session; this.vocabSize = cfg.vocab_size; this.maxRows = ctx; this.past = undefined; }
  emptyPast() {
    const p = {};
    for (let l = 0; l < cfg.num_hidden_layers; l++) for (const kv of ["key", "value"]) {
      p[`past_key_values.${l}.${kv}`] = new ort.Tensor(f16 ? "float16" : "float32", f16 ? new Uint16Array(0) : new Float32Array(0), [1, cfg.num_key_value_heads, 0, cfg.head_dim]);
    }
    return p;
  }
  async rows(inputs, pos, n) {
    if (pos === 0) this.past = this.emptyPast();
    const ids = BigInt64Array.from(Array.from(inputs.subarray(pos, pos + n), BigInt));
    const pid = BigInt64Array.from({ length: n }, (_, i) => BigInt(pos + i));
    const r = await this.s.run({
      input_ids: new ort.Tensor("int64", ids, [1, n]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(pos + n).fill(1n), [1, pos + n]),
      position_ids: new ort.Tensor("int64", pid, [1, n]),
      ...this.past,
    });
    this.past = {};
    for (let l = 0; l < cfg.num_hidden_layers; l++) for (const kv of ["key", "value"]) this.past[`past_key_values.${l}.${kv}`] = r[`present.${l}.${kv}`];
    const d = r.logits.data;
    if (!f16) return d;
    const out = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) out[i] = d instanceof Uint16Array ? f16BitsToF32(d[i]) : d[i];
    return out;
  }
}

const tok = opt("--tokenizer");
const base = await loadModel(basePath, tok ? { tokenizer: tok } : {});
const tokens = base.tokenizer.encode(readFileSync(text, "utf8"), { bos: false });
const session = await ort.InferenceSession.create(file, { extra: { session: { qdq_matmulnbits_accuracy_level: "0" } } });
enableRelaxedSimd();
const backend = createNodeWasmBackend({ threads: 1 }); // the base runs on the kernels `quantlab kld` uses
const r = await kld(new ModelLogits(new Llama(base, { contextLength: ctx, backend })), new OrtLogits(session), tokens, { ctx, maxTokens, bosId: base.tokenizer.bosId, names: [basePath, file] });
backend.dispose?.();
const onnxBytes = readdirSync(join(dir, "onnx")).reduce((a, f) => a + statSync(join(dir, "onnx", f)).size, 0);
console.log(JSON.stringify({ base: basePath, onnx: file, dtype, ctx, tokens: r.tokens, meanKld: r.meanKld, top1: r.top1, pplBase: r.pplBase, pplOther: r.pplOther, onnxBytes }));
