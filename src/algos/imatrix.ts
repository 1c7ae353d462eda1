/**
 * Collects an importance matrix by running the model on calibration text, the way llama.cpp's
 * `llama-imatrix` does (tools/imatrix/imatrix.cpp `compute_imatrix` and `collect_imatrix`):
 *
 * - the text is tokenized once; chunk k is `ctx` positions: BOS, then tokens [k·ctx, (k+1)·ctx − 1) of the
 *   stream (llama-imatrix tokenizes with BOS and overwrites each chunk's first token with BOS, so one
 *   token per chunk is never seen);
 * - every position of every chunk counts (the perplexity llama-imatrix prints is only a side output);
 * - for each block linear, Σ x_j² over tokens of its input and the token count; the mean is the matrix.
 *   q/k/v share the attention-norm output, gate/up the FFN-norm output, so they share one vector.
 *
 * Inputs come from the forward pass's per-linear hook (model/llama.ts `inputHook`), after the model's
 * own input transforms, i.e. exactly what each weight multiplies.
 */
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { ImatrixAccumulator, type Imatrix } from "../ggml/imatrix.js";
import type { Backend, PreparedWeight } from "../kernels/types.js";
import { calibrationQmax } from "../kernels/ref/igemm.js";
import { weightShape, type Weight } from "../core/weight.js";
import { HessianAccumulator } from "./gptq.js";
import { TensorNames, fusedFileTensors, type ModelConfig } from "../model/config.js";
import { Llama } from "../model/llama.js";
import type { LinearSite } from "../model/transforms.js";
import type { Model } from "../model/weights.js";

export interface CollectImatrixOptions {
  /** positions per chunk, BOS included (llama-imatrix -c; default 512 or the model's context if shorter) */
  ctx?: number;
  /** BOS id (default: the model's tokenizer's) */
  bosId?: number;
  /** stop after this many chunks (llama-imatrix --chunks) */
  maxChunks?: number;
  backend?: Backend;
  progress?: Progress;
  /**
   * the forward pass's block linears: "exact" (default: the backend's f32 kernels) or "int" — the integer
   * calibration GEMM (backend.prepareCalibration, WASM only): weights per row and activations per token as
   * symmetric integer codes, exact int32 sums; faster, and the matrix moves by the rounding of those codes
   * (docs/kernels.md "Integer calibration forward")
   */
  forward?: "exact" | "int";
  /** with forward "int": code bits (2…16; default: the widest whose int32 sums cannot overflow, ≈ 11–12 bits at 256–1024 columns) */
  intBits?: number;
  /** also accumulate each site's full input Hessian 2/N Σ x xᵀ (for gptq; width² doubles per site) */
  hessians?: boolean;
}

export interface ImatrixResult {
  imatrix: Imatrix;
  /** chunks run */
  chunks: number;
  /** positions seen per weight (chunks · ctx) */
  tokens: number;
  ctx: number;
  /** weight name → its input Hessian (width × width), shared by weights that read the same input */
  hessians?: Map<string, Float64Array>;
}

/**
 * An importance matrix under the tensor names a model's GGUF holds, for llama-quantize: a fused architecture
 * (Phi-3) has attn_qkv (q/k/v read the same input: their entries are equal) and ffn_up holding gate + up.
 */
export function imatrixFileNames(c: ModelConfig, imatrix: Imatrix): Imatrix {
  const fused = fusedFileTensors(c);
  if (fused.length === 0) return imatrix;
  const out: Imatrix = new Map(imatrix);
  for (const f of fused) {
    const v = imatrix.get(f.parts[0]!.name);
    for (const p of f.parts) out.delete(p.name);
    if (v) out.set(f.gguf, v);
  }
  return out;
}

/** The weights that read each site's input, per layer (llama.cpp names). */
export function siteWeights(l: number, site: LinearSite): string[] {
  switch (site) {
    case "attn_in": return [TensorNames.attnQ(l), TensorNames.attnK(l), TensorNames.attnV(l)];
    case "attn_out_in": return [TensorNames.attnOutput(l)];
    case "ffn_in": return [TensorNames.ffnGate(l), TensorNames.ffnUp(l)];
    case "ffn_down_in": return [TensorNames.ffnDown(l)];
  }
}

/** Runs `model` over the calibration token stream (no BOS in it) and returns the importance matrix. */
export function collectImatrix(model: Model, tokens: ArrayLike<number>, opts: CollectImatrixOptions = {}): ImatrixResult {
  const c = model.config;
  // llama-imatrix -c: any length (a warning past the trained context); default 512, or the model's context if shorter
  const ctx = opts.ctx ?? Math.min(512, c.seqLen);
  if (!Number.isInteger(ctx) || ctx < 2) throw new QuantlabError("E_ARG", `imatrix: context ${ctx}: expected an integer ≥ 2`);
  const bos = opts.bosId ?? model.tokenizer?.bosId;
  if (bos === undefined || bos < 0) throw new QuantlabError("E_ARG", `${model.source.path}: imatrix needs a BOS token id (the model has no tokenizer)`);
  let chunks = Math.floor((tokens.length + 1) / ctx);
  if (opts.maxChunks !== undefined) chunks = Math.min(chunks, opts.maxChunks);
  if (chunks < 1) throw new QuantlabError("E_ARG", `imatrix: the calibration text has ${tokens.length} tokens, fewer than one chunk of ${ctx}`);

  const be0 = opts.backend;
  const acc = new ImatrixAccumulator(be0?.sumSquares ? (x, n, w, s) => be0.sumSquares!(x, n, w, s) : undefined);
  const sites: LinearSite[] = ["attn_in", "attn_out_in", "ffn_in", "ffn_down_in"];
  const qDim = c.nHeads * c.headDim;
  const width: Record<LinearSite, number> = { attn_in: c.dim, attn_out_in: qDim, ffn_in: c.dim, ffn_down_in: c.hiddenDim };
  const hess = new Map<string, HessianAccumulator>();
  // the Hessians accumulate on the backend's kernels when it has them (WASM SIMD, threads; f32 products summed
  // per 256 tokens, added into float64) and are copied out at the end
  const kernels = opts.hessians ? opts.backend?.linalg?.() : undefined;
  for (let l = 0; l < c.nLayers; l++) {
    for (const s of sites) {
      acc.define(`${l}.${s}`, width[s], siteWeights(l, s));
      if (opts.hessians) hess.set(`${l}.${s}`, new HessianAccumulator(width[s], kernels, kernels ? "f32" : "f64"));
    }
  }
  const forward = opts.forward ?? "exact";
  if (forward !== "exact" && forward !== "int") throw new QuantlabError("E_ARG", `imatrix: forward ${String(forward)}: expected exact or int`);
  if (opts.intBits !== undefined && forward !== "int") throw new QuantlabError("E_ARG", "imatrix: integer code bits need the int forward (--imatrix-forward int)");
  let prepareLinear: ((w: Weight, name: string) => PreparedWeight) | undefined;
  if (forward === "int") {
    const be = opts.backend;
    if (!be?.prepareCalibration) throw new QuantlabError("E_ARG", `imatrix: --imatrix-forward int needs the wasm backend (${be?.name ?? "ref"} has no integer calibration GEMM)`);
    const bits = opts.intBits;
    prepareLinear = (w, name) => {
      const shape = weightShape(w);
      return be.prepareCalibration!(w, name, calibrationQmax(shape[shape.length - 1]!, bits));
    };
  }
  const llama = new Llama(model, {
    contextLength: ctx,
    backend: opts.backend,
    prepareLinear,
    // only the linears' inputs are collected (no output.weight, as llama-imatrix without --process-output): no
    // logits, no last FFN down projection
    hooksOnly: true,
    inputHook: (l, site, x, n, w) => {
      acc.add(`${l}.${site}`, x, n, w);
      hess.get(`${l}.${site}`)?.add(x, n);
    },
  });
  const progress = opts.progress ?? noProgress;
  progress.start(chunks, "imatrix");
  const input = new Int32Array(ctx);
  try {
    try {
      for (let k = 0; k < chunks; k++) {
        input[0] = bos;
        for (let i = 1; i < ctx; i++) input[i] = tokens[k * ctx + i - 1]!;
        llama.reset();
        llama.prefill(input, 0);
        progress.tick();
      }
    } finally {
      llama.dispose();
    }
    progress.done();
    const out: ImatrixResult = { imatrix: acc.result(), chunks, tokens: chunks * ctx, ctx };
    if (opts.hessians) {
      out.hessians = new Map();
      for (const [key, h] of hess) {
        const [l, site] = key.split(".") as [string, LinearSite];
        const H = kernels ? h.hessian() : h.takeHessian();
        for (const name of siteWeights(Number(l), site)) out.hessians.set(name, H);
      }
    }
    return out;
  } finally {
    for (const h of hess.values()) h.dispose();
  }
}
