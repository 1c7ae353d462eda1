/**
 * Ask llama.cpp (through node-llama-cpp 3.21.1, CPU prebuilt, never compiled or downloaded) for
 * next-token probabilities, to compare with ours. See ../shared/notes/llamacpp-interop.md.
 *
 *   const lc = await LlamaCppModel.load(path);          // once per test file (model load ~100 ms)
 *   const probs = await lc.nextTokenProbs(ids);         // (ids.length) × Float32Array(vocab)
 *   await lc.dispose();
 *
 * llama.cpp keeps its KV cache in f16, so expect ~1e-4 differences from an f32 implementation; the
 * project's interop tolerance is 1e-3 max abs on probabilities.
 */
import { readFileSync } from "node:fs";
import type { Llama, LlamaContext, LlamaModel } from "node-llama-cpp";
import type { GgmlSimd } from "../../src/ggml/simd-math.js";

let llamaPromise: Promise<Llama> | undefined;

/** The process-wide llama.cpp instance (CPU only). */
export async function getLlamaCpp(): Promise<Llama> {
  if (!llamaPromise) {
    llamaPromise = (async () => {
      const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
      // loading warnings (bad special token ids, n_ctx_train of converted llama2.c models) are harmless: keep stderr clean
      return getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false });
    })();
  }
  return llamaPromise;
}

export interface LlamaCppOptions {
  /** KV cache positions (default 256, or fewer when the model says so) */
  contextSize?: number;
  threads?: number;
  /** KV cache type (llama.cpp's default F16; F32 = `-ctk f32 -ctv f32`) */
  kvCacheType?: "F16" | "F32";
  /** flash attention (node-llama-cpp's default: on where supported) */
  flashAttention?: boolean;
}

export class LlamaCppModel {
  private constructor(readonly path: string, readonly model: LlamaModel, private readonly context: LlamaContext) {}

  static async load(path: string, opts: LlamaCppOptions = {}): Promise<LlamaCppModel> {
    const llama = await getLlamaCpp();
    const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    const context = await model.createContext({
      contextSize: opts.contextSize ?? 256, threads: opts.threads ?? 1, sequences: 1,
      ...(opts.flashAttention !== undefined ? { flashAttention: opts.flashAttention } : {}),
      ...(opts.kvCacheType ? { experimentalKvCacheKeyType: opts.kvCacheType, experimentalKvCacheValueType: opts.kvCacheType } : {}),
    });
    return new LlamaCppModel(path, model, context);
  }

  /** llama.cpp's tokenization (no BOS), for comparing tokenizers; `special`: parse control-token spellings (llama_tokenize parse_special). */
  tokenize(text: string, special = false): number[] {
    return this.model.tokenize(text, special).map(Number);
  }

  /** llama.cpp's detokenization of ids (special tokens rendered when `special`). */
  detokenize(ids: number[], special = false): string {
    return this.model.detokenize(ids as unknown as Parameters<LlamaModel["detokenize"]>[0], special);
  }

  get bosId(): number | undefined {
    const b = this.model.tokens.bos;
    return b == null ? undefined : Number(b);
  }

  /**
   * Feeds `ids` from position 0 in a fresh sequence and returns, for every position, the probability
   * of each vocabulary id being next (a dense Float32Array of length `vocab`).
   */
  async nextTokenProbs(ids: number[], vocab: number): Promise<Float32Array[]> {
    const seq = this.context.getSequence();
    try {
      const items = ids.map((t) => [t, { generateNext: { probabilities: true } }] as [number, { generateNext: { probabilities: true } }]);
      // node-llama-cpp's Token is a branded number
      const res = await seq.controlledEvaluate(items as unknown as Parameters<typeof seq.controlledEvaluate>[0]);
      return res.map((r, i) => {
        const p = r?.next.probabilities;
        if (!p) throw new Error(`llama.cpp returned no probabilities at position ${i}`);
        const out = new Float32Array(vocab);
        for (const [tok, prob] of p) out[Number(tok)] = prob;
        return out;
      });
    } finally {
      seq.dispose();
    }
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}

/** Softmax of f32 logits in float64 (our side of the comparison). */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]!);
  const out = new Float64Array(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += out[i] = Math.exp(logits[i]! - m);
  for (let i = 0; i < logits.length; i++) out[i]! /= s;
  return out;
}

/** Largest |p − q| over all positions and ids. */
export function maxAbsProbDiff(ours: ArrayLike<number>[], theirs: ArrayLike<number>[]): { max: number; pos: number; id: number } {
  let best = { max: 0, pos: -1, id: -1 };
  for (let p = 0; p < ours.length; p++) {
    const a = ours[p]!, b = theirs[p]!;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      if (d > best.max) best = { max: d, pos: p, id: i };
    }
  }
  return best;
}

/**
 * The vector width of the ggml CPU variant node-llama-cpp loads here: its prebuilt picks the best
 * variant the CPU supports, and every AVX-512 variant (skylakex … zen4, sapphirerapids) has AVX-512 F and
 * DQ, which is what ggml's 16-lane code paths test for; otherwise the AVX2 ones.
 */
export function ggmlSimdOfThisMachine(): GgmlSimd {
  let flags = "";
  try {
    flags = /^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
  } catch {
    return "avx2";
  }
  const has = (f: string) => new RegExp(`\\b${f}\\b`).test(flags);
  return has("avx512f") && has("avx512dq") ? "avx512" : "avx2";
}
