/**
 * Hyper-parameters of a Llama-family model. Internally Q/K rows use the interleaved-pair RoPE
 * convention of llama2.c and GGUF's `llama` architecture; HF loaders permute Q/K rows on the way in
 * (and writers on the way out), as llama.cpp's converter does.
 */
import { QuantlabError } from "../core/errors.js";
import { MAX_DIM, MAX_HEAD_DIM, MAX_HEADS, MAX_HIDDEN, MAX_LAYERS, MAX_SEQ_LEN, MAX_VOCAB, checkCount, checkPositive } from "../core/limits.js";
export interface RopeScalingLlama3 {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * The decoder families quantlab runs. Each is the shared Llama block plus the differences its row of
 * ARCH_TRAITS names; the forward pass, calibration and the writers read the row, never the name.
 */
export const ARCHITECTURES = ["llama", "qwen2", "qwen3", "granite", "phi3", "gemma2", "gemma3", "olmo2"] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** How one family's block differs from Llama's (DESIGN.md "architecture traits"). */
export interface ArchTraits {
  /** q/k/v projections carry biases (`blk.N.attn_{q,k,v}.bias`; Qwen2) */
  qkvBias: boolean;
  /**
   * q and k go through an RMSNorm before RoPE (`blk.N.attn_{q,k}_norm.weight`): "head" normalizes each head
   * (weight of headDim; Qwen3, Gemma 3), "projection" the whole projection (weight of nHeads·headDim /
   * nKvHeads·headDim; OLMo 2: transformers Olmo2Attention q_norm over num_heads·head_dim, llama.cpp build_olmo2
   * normalizes Qcur before the reshape into heads)
   */
  qkNorm: false | "head" | "projection";
  /**
   * Where the block's RMSNorms sit. "pre" (Llama): x + attn(norm(x)), then x + ffn(norm(x)). "sandwich"
   * (Gemma 2/3): x + postAttnNorm(attn(attnNorm(x))), then x + postFfnNorm(ffn(ffnNorm(x)))
   * (`blk.N.post_attention_norm`, `blk.N.post_ffw_norm`). "post" (OLMo 2): x + postAttnNorm(attn(x)), then
   * x + postFfnNorm(ffn(x)) — no norm before either branch (llama.cpp build_olmo2).
   */
  norms: "pre" | "sandwich" | "post";
  /**
   * Hugging Face stores each RMSNorm weight as w and multiplies by (1 + w) (Gemma2RMSNorm / Gemma3RMSNorm);
   * llama.cpp's converter stores 1 + w (convert_hf_to_gguf.py Gemma2Model/Gemma3Model: `data_torch + 1` for
   * every "norm.weight"). quantlab holds the GGUF form, 1 + w in f32: the HF loader adds 1, the writer subtracts it.
   */
  normOffset: boolean;
  /** the FFN's gate activation: SiLU (SwiGLU) or tanh-approximated GELU (GeGLU, `gelu_pytorch_tanh`) */
  activation: "silu" | "gelu_tanh";
  /** token embeddings × √dim before the first block (Gemma: `hidden_states * hidden_size**0.5`, llama.cpp ggml_scale(inpL, sqrtf(n_embd))) */
  embedScaleSqrtDim: boolean;
  /**
   * RoPE pairs: "interleaved" rotates (x[2j], x[2j+1]) — llama.cpp LLAMA_ROPE_TYPE_NORM, whose converter
   * permutes HF's Q/K rows into that order (LlamaModel.permute); "neox" rotates (x[j], x[j + d/2]) —
   * LLAMA_ROPE_TYPE_NEOX, rows in HF's order (llama.cpp src/llama-model.cpp llama_model_rope_type)
   */
  rope: "interleaved" | "neox";
  /** the config carries Granite's four multipliers (ModelConfig.multipliers) */
  multipliers: boolean;
  /**
   * files hold q/k/v as one tensor (rows q, k, v) and gate/up as one (rows gate, up): HF `qkv_proj` /
   * `gate_up_proj`, GGUF `blk.N.attn_qkv.weight` / `blk.N.ffn_up.weight` of 2·ffn rows (Phi-3). Loaders split
   * them into the canonical q/k/v/gate/up (so every method sees the usual linears), writers fuse them again
   * (fusedFileTensors).
   */
  fusedProjections?: boolean;
  /** config.json carries Phi3Config's RoPE: `partial_rotary_factor`, `longrope` / `su` scaling with
   * `original_max_position_embeddings`, and no `head_dim` (ModelConfig.rotaryDim, .longRope) */
  phi3Rope?: boolean;
}

const LLAMA_BLOCK = { qkvBias: false, qkNorm: false, rope: "interleaved", multipliers: false, norms: "pre", normOffset: false, activation: "silu", embedScaleSqrtDim: false } as const satisfies ArchTraits;

export const ARCH_TRAITS: Record<Architecture, ArchTraits> = {
  llama: LLAMA_BLOCK,
  // transformers Qwen2Attention: q/k/v_proj with bias=True, o_proj without; rotate_half RoPE
  qwen2: { ...LLAMA_BLOCK, qkvBias: true, rope: "neox" },
  // transformers Qwen3Attention: q_norm/k_norm (Qwen3RMSNorm over head_dim) on q/k before RoPE; no biases
  qwen3: { ...LLAMA_BLOCK, qkNorm: "head", rope: "neox" },
  // transformers GraniteModel / llama.cpp build_granite: Llama's block with embedding, residual, attention and
  // logits multipliers; NORM RoPE (the converter permutes Q/K as for Llama)
  granite: { ...LLAMA_BLOCK, multipliers: true },
  // transformers Phi3Attention (qkv_proj split q | k | v, rotate_half RoPE on the first rotary_dim of each head),
  // Phi3MLP (gate_up_proj split gate | up, up · silu(gate)); llama.cpp build_phi3: LLAMA_ROPE_TYPE_NEOX, wqkv, ffn_up
  // of 2·n_ff rows through LLM_FFN_SWIGLU (silu of the first half × the second)
  phi3: { ...LLAMA_BLOCK, rope: "neox", fusedProjections: true, phi3Rope: true },
  // transformers Gemma2DecoderLayer / llama.cpp src/models/gemma2.cpp: sandwich norms with (1 + w), GeGLU,
  // embeddings × √dim, NeoX RoPE; soft-caps, query scale and alternating windows in ModelConfig
  gemma2: { ...LLAMA_BLOCK, rope: "neox", norms: "sandwich", normOffset: true, activation: "gelu_tanh", embedScaleSqrtDim: true },
  // transformers Gemma3DecoderLayer / llama.cpp src/models/gemma3.cpp: Gemma 2's block plus per-head q/k norms
  // (with 1 + w), a local RoPE base on sliding layers, no soft-caps
  gemma3: { ...LLAMA_BLOCK, qkNorm: "head", rope: "neox", norms: "sandwich", normOffset: true, activation: "gelu_tanh", embedScaleSqrtDim: true },
  // transformers Olmo2DecoderLayer / llama.cpp src/models/olmo2.cpp: norms after each branch only, q/k norms over
  // the whole projection, NeoX RoPE, SwiGLU
  olmo2: { ...LLAMA_BLOCK, qkNorm: "projection", rope: "neox", norms: "post" },
};

/**
 * LongRoPE (transformers modeling_rope_utils._compute_longrope_parameters; llama.cpp `rope_factors_short.weight` /
 * `rope_factors_long.weight`, `rope.scaling.attn_factor`, `rope.scaling.original_context_length`): the angle of
 * rotary pair j is pos · θ^(−2j/rotaryDim) / factor[j], with the short factors for contexts up to
 * originalMaxPositionEmbeddings and the long ones beyond; cos and sin are multiplied by attentionFactor
 * (so q·k of the rotated part by its square). Which set applies: see ropeFactorSet in model/llama.ts.
 */
export interface LongRope {
  shortFactor: number[]; // (rotaryDim/2)
  longFactor: number[]; // (rotaryDim/2)
  originalMaxPositionEmbeddings: number;
  attentionFactor: number;
}

/** the number of values of each head RoPE rotates */
export function rotaryDimOf(c: ModelConfig): number {
  return c.rotaryDim ?? c.headDim;
}

export function isArchitecture(a: string): a is Architecture {
  return (ARCHITECTURES as readonly string[]).includes(a);
}

export interface ModelConfig {
  arch: Architecture;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** dim / nHeads unless the checkpoint says otherwise */
  headDim: number;
  vocabSize: number;
  /** context length the model was trained at */
  seqLen: number;
  ropeTheta: number;
  normEps: number;
  /** output projection shares the token embedding */
  tiedEmbeddings: boolean;
  ropeScaling?: RopeScalingLlama3;
  /** Granite's multipliers (traits.multipliers): embeddings × embedding, each block branch × residual before its
   * residual add, attention scores × attention (instead of 1/√headDim), logits ÷ logits */
  multipliers?: { embedding: number; residual: number; attention: number; logits: number };
  /** sliding-window attention (Mistral's `sliding_window`): position p attends to p − W + 1 … p, in the layers
   * `slidingLayers` marks (every layer when absent) */
  slidingWindow?: number;
  /** which layers use the sliding window (nLayers entries; Gemma: `layer_types`, alternating); absent = all */
  slidingLayers?: boolean[];
  /** RoPE base of the sliding layers when it differs from ropeTheta (Gemma 3's `rope_local_base_freq`) */
  ropeThetaLocal?: number;
  /** linear RoPE scaling (positions ÷ factor) on the layers that do not slide (Gemma 3 4B+: rope_scaling linear) */
  ropeLinearFactor?: number;
  /** attention scores q·k × this instead of 1/√headDim (Gemma: `query_pre_attn_scalar`^-0.5) */
  attnScale?: number;
  /** attention logit soft-cap c: scores → c·tanh(scores / c) before the softmax (Gemma 2 `attn_logit_softcapping`) */
  attnSoftcap?: number;
  /** final logit soft-cap c: logits → c·tanh(logits / c) (Gemma 2 `final_logit_softcapping`) */
  finalSoftcap?: number;
  /** RoPE rotates only the first rotaryDim values of each head (transformers `partial_rotary_factor` · head_dim,
   * GGUF `rope.dimension_count`); the rest pass through. Absent: the whole head. */
  rotaryDim?: number;
  /** Phi-3's LongRoPE scaling (`rope_scaling.type` "longrope" / "su"; see LongRope) */
  longRope?: LongRope;
  /** free-form name for reports */
  name?: string;
}

/** Canonical tensor names (GGUF `llama` naming). Linear weights are (nOut, nIn) row-major. */
export const TensorNames = {
  tokenEmbd: "token_embd.weight", // (vocab, dim)
  outputNorm: "output_norm.weight", // (dim)
  output: "output.weight", // (vocab, dim), absent when tied
  attnNorm: (l: number) => `blk.${l}.attn_norm.weight`, // (dim)
  attnQ: (l: number) => `blk.${l}.attn_q.weight`, // (nHeads*headDim, dim)
  attnK: (l: number) => `blk.${l}.attn_k.weight`, // (nKvHeads*headDim, dim)
  attnV: (l: number) => `blk.${l}.attn_v.weight`, // (nKvHeads*headDim, dim)
  attnOutput: (l: number) => `blk.${l}.attn_output.weight`, // (dim, nHeads*headDim)
  ffnNorm: (l: number) => `blk.${l}.ffn_norm.weight`, // (dim)
  ffnGate: (l: number) => `blk.${l}.ffn_gate.weight`, // (hiddenDim, dim)  llama2.c w1
  ffnDown: (l: number) => `blk.${l}.ffn_down.weight`, // (dim, hiddenDim)  llama2.c w2
  ffnUp: (l: number) => `blk.${l}.ffn_up.weight`, // (hiddenDim, dim)    llama2.c w3
  // llama.cpp src/llama-arch.cpp LLM_TENSOR_ATTN_{Q,K,V} ".bias", LLM_TENSOR_ATTN_{Q,K}_NORM
  attnQBias: (l: number) => `blk.${l}.attn_q.bias`, // (nHeads*headDim)
  attnKBias: (l: number) => `blk.${l}.attn_k.bias`, // (nKvHeads*headDim)
  attnVBias: (l: number) => `blk.${l}.attn_v.bias`, // (nKvHeads*headDim)
  attnQNorm: (l: number) => `blk.${l}.attn_q_norm.weight`, // (headDim)
  attnKNorm: (l: number) => `blk.${l}.attn_k_norm.weight`, // (headDim), OLMo 2: (nKvHeads*headDim)
  // llama.cpp LLM_TENSOR_ATTN_POST_NORM / LLM_TENSOR_FFN_POST_NORM (Gemma 2/3, OLMo 2)
  postAttnNorm: (l: number) => `blk.${l}.post_attention_norm.weight`, // (dim)
  postFfnNorm: (l: number) => `blk.${l}.post_ffw_norm.weight`, // (dim)
  // llama.cpp LLM_TENSOR_ATTN_QKV: q, k, v rows in one tensor (fused architectures' files only, never in a Model)
  attnQkv: (l: number) => `blk.${l}.attn_qkv.weight`, // (qDim + 2·kvDim, dim)
} as const;

/** The sliding window of layer l, or undefined when it attends to the whole context. */
export function layerWindow(c: ModelConfig, l: number): number | undefined {
  if (c.slidingWindow === undefined) return undefined;
  return c.slidingLayers === undefined || c.slidingLayers[l] ? c.slidingWindow : undefined;
}

/** RoPE base and linear position divisor of layer l (Gemma 3: local base on sliding layers, scaling on global ones). */
export function layerRope(c: ModelConfig, l: number): { theta: number; linear: number } {
  const sliding = c.slidingWindow !== undefined && c.slidingLayers !== undefined && c.slidingLayers[l] === true;
  if (sliding) return { theta: c.ropeThetaLocal ?? c.ropeTheta, linear: 1 };
  return { theta: c.ropeTheta, linear: c.ropeLinearFactor ?? 1 };
}

/** One tensor of a file that holds several canonical linears, their rows one after another. */
export interface FusedFileTensor {
  /** the GGUF name (phi3: blk.N.attn_qkv.weight, blk.N.ffn_up.weight holding gate then up) */
  gguf: string;
  /** the HF name suffix after model.layers.N. */
  hf: string;
  layer: number;
  parts: { name: string; rows: number }[];
}

/**
 * The fused tensors of a model whose traits say fusedProjections (empty otherwise), in file order per layer.
 * Row order: transformers Phi3Attention slices qkv as [q | k | v], Phi3MLP chunks gate_up as [gate | up];
 * llama.cpp's converter keeps both tensors as they are (ffn_up of 2·n_ff rows).
 */
export function fusedFileTensors(c: ModelConfig): FusedFileTensor[] {
  if (!ARCH_TRAITS[c.arch].fusedProjections) return [];
  const out: FusedFileTensor[] = [];
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  for (let l = 0; l < c.nLayers; l++) {
    out.push({ gguf: TensorNames.attnQkv(l), hf: "self_attn.qkv_proj.weight", layer: l, parts: [{ name: TensorNames.attnQ(l), rows: qDim }, { name: TensorNames.attnK(l), rows: kvDim }, { name: TensorNames.attnV(l), rows: kvDim }] });
    out.push({ gguf: TensorNames.ffnUp(l), hf: "mlp.gate_up_proj.weight", layer: l, parts: [{ name: TensorNames.ffnGate(l), rows: c.hiddenDim }, { name: TensorNames.ffnUp(l), rows: c.hiddenDim }] });
  }
  return out;
}

/**
 * One transformer block's tensors: norms (and biases) as N, linears as M (llama2.c: gate w1, down w2, up w3);
 * the optional ones are there when the architecture's traits say so.
 */
export interface BlockTensors<N, M> {
  bq?: N;
  bk?: N;
  bv?: N;
  qNorm?: N;
  kNorm?: N;
  /** absent when the architecture has no norms before its branches (traits.norms "post") */
  attnNorm?: N;
  /** after the attention output projection, before the residual add (traits.norms "sandwich" / "post") */
  postAttnNorm?: N;
  /** after the FFN's down projection, before the residual add */
  postFfnNorm?: N;
  wq: M;
  wk: M;
  wv: M;
  wo: M;
  ffnNorm?: N;
  gate: M;
  up: M;
  down: M;
}

/** Block l's tensors, each looked up by its canonical name through `norm` or `linear` (biases through `norm`). */
export function blockTensors<N, M>(l: number, norm: (name: string) => N, linear: (name: string) => M, traits: ArchTraits = ARCH_TRAITS.llama): BlockTensors<N, M> {
  return {
    ...(traits.qkvBias ? { bq: norm(TensorNames.attnQBias(l)), bk: norm(TensorNames.attnKBias(l)), bv: norm(TensorNames.attnVBias(l)) } : {}),
    ...(traits.qkNorm ? { qNorm: norm(TensorNames.attnQNorm(l)), kNorm: norm(TensorNames.attnKNorm(l)) } : {}),
    ...(traits.norms !== "post" ? { attnNorm: norm(TensorNames.attnNorm(l)), ffnNorm: norm(TensorNames.ffnNorm(l)) } : {}),
    ...(traits.norms !== "pre" ? { postAttnNorm: norm(TensorNames.postAttnNorm(l)), postFfnNorm: norm(TensorNames.postFfnNorm(l)) } : {}),
    wq: linear(TensorNames.attnQ(l)),
    wk: linear(TensorNames.attnK(l)),
    wv: linear(TensorNames.attnV(l)),
    wo: linear(TensorNames.attnOutput(l)),
    gate: linear(TensorNames.ffnGate(l)),
    up: linear(TensorNames.ffnUp(l)),
    down: linear(TensorNames.ffnDown(l)),
  };
}

/** Expected shape of every tensor of a config, in canonical names. */
export function expectedShapes(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  m.set(TensorNames.tokenEmbd, [c.vocabSize, c.dim]);
  m.set(TensorNames.outputNorm, [c.dim]);
  if (!c.tiedEmbeddings) m.set(TensorNames.output, [c.vocabSize, c.dim]);
  const t = ARCH_TRAITS[c.arch];
  for (let l = 0; l < c.nLayers; l++) {
    if (t.norms !== "post") m.set(TensorNames.attnNorm(l), [c.dim]);
    m.set(TensorNames.attnQ(l), [qDim, c.dim]);
    m.set(TensorNames.attnK(l), [kvDim, c.dim]);
    m.set(TensorNames.attnV(l), [kvDim, c.dim]);
    m.set(TensorNames.attnOutput(l), [c.dim, qDim]);
    if (t.norms !== "post") m.set(TensorNames.ffnNorm(l), [c.dim]);
    if (t.norms !== "pre") {
      m.set(TensorNames.postAttnNorm(l), [c.dim]);
      m.set(TensorNames.postFfnNorm(l), [c.dim]);
    }
    m.set(TensorNames.ffnGate(l), [c.hiddenDim, c.dim]);
    m.set(TensorNames.ffnDown(l), [c.dim, c.hiddenDim]);
    m.set(TensorNames.ffnUp(l), [c.hiddenDim, c.dim]);
    if (t.qkvBias) {
      m.set(TensorNames.attnQBias(l), [qDim]);
      m.set(TensorNames.attnKBias(l), [kvDim]);
      m.set(TensorNames.attnVBias(l), [kvDim]);
    }
    if (t.qkNorm) {
      m.set(TensorNames.attnQNorm(l), [t.qkNorm === "head" ? c.headDim : qDim]);
      m.set(TensorNames.attnKNorm(l), [t.qkNorm === "head" ? c.headDim : kvDim]);
    }
  }
  return m;
}

/** How a file names each hyper-parameter, so a limit error quotes the key the user can look for. */
export type ConfigKeys = Record<"dim" | "hiddenDim" | "nLayers" | "nHeads" | "nKvHeads" | "headDim" | "vocabSize" | "seqLen" | "ropeTheta" | "normEps", string>;

/**
 * Checks a config read from a file against the plausibility bounds of core/limits.ts, before anything
 * loops over its layers or allocates by its sizes (expectedShapes, KV caches). `where` names the file.
 */
export function checkConfigLimits(c: ModelConfig, where: string, keys: ConfigKeys): void {
  checkCount(where, keys.nLayers, c.nLayers, 1, MAX_LAYERS, "MAX_LAYERS");
  checkCount(where, keys.dim, c.dim, 1, MAX_DIM, "MAX_DIM");
  checkCount(where, keys.hiddenDim, c.hiddenDim, 1, MAX_HIDDEN, "MAX_HIDDEN");
  checkCount(where, keys.nHeads, c.nHeads, 1, MAX_HEADS, "MAX_HEADS");
  checkCount(where, keys.nKvHeads, c.nKvHeads, 1, c.nHeads, keys.nHeads);
  checkCount(where, keys.headDim, c.headDim, 2, MAX_HEAD_DIM, "MAX_HEAD_DIM");
  checkCount(where, keys.vocabSize, c.vocabSize, 1, MAX_VOCAB, "MAX_VOCAB");
  checkCount(where, keys.seqLen, c.seqLen, 1, MAX_SEQ_LEN, "MAX_SEQ_LEN");
  checkPositive(where, keys.ropeTheta, c.ropeTheta);
  checkPositive(where, keys.normEps, c.normEps);
  if (c.nHeads % c.nKvHeads !== 0) throw new QuantlabError("E_FORMAT", `${where}: ${keys.nHeads} ${c.nHeads} is not a multiple of ${keys.nKvHeads} ${c.nKvHeads}`);
  if (c.headDim % 2 !== 0) throw new QuantlabError("E_FORMAT", `${where}: head size ${c.headDim} is odd (RoPE rotates pairs)`);
  if (c.slidingWindow !== undefined) checkCount(where, "sliding_window", c.slidingWindow, 1, MAX_SEQ_LEN, "MAX_SEQ_LEN");
  if (c.slidingLayers !== undefined) {
    if (c.slidingWindow === undefined) throw new QuantlabError("E_FORMAT", `${where}: sliding layers given without a sliding window`);
    if (c.slidingLayers.length !== c.nLayers || c.slidingLayers.some((b) => typeof b !== "boolean")) throw new QuantlabError("E_FORMAT", `${where}: the sliding-layer pattern has ${c.slidingLayers.length} entries, expected one boolean per layer (${c.nLayers})`);
  }
  for (const [k, v] of [["local rope base", c.ropeThetaLocal], ["rope linear factor", c.ropeLinearFactor], ["attention scale", c.attnScale], ["attention logit soft-cap", c.attnSoftcap], ["final logit soft-cap", c.finalSoftcap]] as const) {
    if (v !== undefined) checkPositive(where, k, v);
  }
  if (ARCH_TRAITS[c.arch].multipliers) {
    const m = c.multipliers;
    if (!m) throw new QuantlabError("E_FORMAT", `${where}: a ${c.arch} model needs its embedding, residual, attention and logits multipliers`);
    for (const [k, v] of Object.entries(m)) checkPositive(where, `${k} multiplier`, v);
  } else if (c.multipliers) throw new QuantlabError("E_FORMAT", `${where}: multipliers given for a ${c.arch} model, whose block has none`);
  if (c.rotaryDim !== undefined) {
    checkCount(where, "rotary dimension", c.rotaryDim, 2, c.headDim, "the head size");
    if (c.rotaryDim % 2 !== 0) throw new QuantlabError("E_FORMAT", `${where}: rotary dimension ${c.rotaryDim} is odd (RoPE rotates pairs)`);
  }
  if (c.longRope) {
    const r = c.longRope;
    const half = rotaryDimOf(c) / 2;
    for (const [k, f] of [["short_factor", r.shortFactor], ["long_factor", r.longFactor]] as const) {
      if (f.length !== half) throw new QuantlabError("E_FORMAT", `${where}: rope_scaling.${k} has ${f.length} values, expected rotary dimension / 2 = ${half}`);
      f.forEach((v, j) => checkPositive(where, `rope_scaling.${k}[${j}]`, v));
    }
    checkCount(where, "rope_scaling original_max_position_embeddings", r.originalMaxPositionEmbeddings, 1, MAX_SEQ_LEN, "MAX_SEQ_LEN");
    checkPositive(where, "rope_scaling attention factor", r.attentionFactor);
    if (c.ropeScaling) throw new QuantlabError("E_FORMAT", `${where}: both Llama 3 and LongRoPE scaling`);
  }
  if (c.ropeScaling) {
    const s = c.ropeScaling;
    for (const [k, v] of [["factor", s.factor], ["low_freq_factor", s.lowFreqFactor], ["high_freq_factor", s.highFreqFactor], ["original_max_position_embeddings", s.originalMaxPositionEmbeddings]] as const) {
      checkPositive(where, `rope_scaling.${k}`, v);
    }
    if (!(s.highFreqFactor > s.lowFreqFactor)) throw new QuantlabError("E_FORMAT", `${where}: rope_scaling.high_freq_factor ${s.highFreqFactor} is not above low_freq_factor ${s.lowFreqFactor}`);
  }
}

/**
 * The layer count must be what the file's tensors back: every block index in [0, nLayers) present and
 * none beyond. `layerOf` extracts the block index of a tensor name (undefined for non-block tensors).
 * Runs over the tensor names (bounded by the file), not over nLayers, so a huge declared count costs nothing.
 */
export function checkLayersBacked(nLayers: number, names: Iterable<string>, layerOf: (name: string) => number | undefined, where: string, key: string, tensorPattern: string): void {
  const seen = new Set<number>();
  let max = -1;
  for (const n of names) {
    const l = layerOf(n);
    if (l === undefined) continue;
    seen.add(l);
    if (l > max) max = l;
  }
  if (max + 1 === nLayers && seen.size === nLayers) return;
  const have = seen.size === 0 ? "no block tensors" : `tensors for ${seen.size} layer${seen.size === 1 ? "" : "s"} (${tensorPattern.replace("N", "0")} … ${tensorPattern.replace("N", String(max))})`;
  const gap = seen.size !== max + 1 ? `; layer ${firstMissing(seen)} is missing` : "";
  throw new QuantlabError("E_FORMAT", `${where}: ${key} = ${nLayers} but the file has ${have}${gap}`);
}

function firstMissing(seen: Set<number>): number {
  let i = 0;
  while (seen.has(i)) i++;
  return i;
}

/** Block index of a canonical (GGUF-style) tensor name `blk.<N>.…`. */
export function ggufLayerOf(name: string): number | undefined {
  const m = /^blk\.(\d{1,9})\./.exec(name);
  return m ? Number(m[1]) : undefined;
}
