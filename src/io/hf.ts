/**
 * Hugging Face model directories (config.json + *.safetensors [+ model.safetensors.index.json] +
 * tokenizer.json [+ tokenizer_config.json]) ↔ Model, for Llama-family configs: Llama (1/2/3.x),
 * Mistral, SmolLM (model_type "llama"). Isomorphic: files are reached through a DirSource / DirSink.
 *
 * Tensor names: model.layers.N.self_attn.q_proj.weight ↔ blk.N.attn_q.weight etc. (llama.cpp
 * convert_hf_to_gguf.py / gguf-py tensor_mapping.py). HF rotates the two halves of each head (GPT-NeoX
 * RoPE) while we and GGUF rotate interleaved pairs, so Q and K rows are permuted exactly as
 * convert_hf_to_gguf.py `LlamaModel.permute` does: within each head, HF row `half·hd/2 + j` becomes row
 * `2j + half` (K uses the KV head count).
 */
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { DTYPES, Tensor, numel, type DType } from "../core/tensor.js";
import { f32ArrayToBf16, f32ArrayToF16 } from "../core/f16.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { ARCH_TRAITS, TensorNames, checkConfigLimits, checkLayersBacked, expectedShapes, fusedFileTensors, layerWindow, type Architecture, type ConfigKeys, type ModelConfig } from "../model/config.js";
import { describe, jsonObject, parseJsonBounded } from "../core/limits.js";
import type { Tokenizer } from "../model/tokenizer.js";
import { hfChatFiles, readHfChatMetadata } from "./hf-generation.js";
import { HfTokenizer, vocabToTokenizerJson, type TokenizerConfigJson, type TokenizerJson } from "../model/tokenizers/hf.js";
import type { Model } from "../model/weights.js";
import { uncarriedTransforms } from "./transforms-carry.js";
import type { ByteSink } from "./gguf.js";
import { ROPE_FREQS, inferLlama3Scaling } from "./gguf-model.js";
import { openSafetensors, safetensorsSize, writeSafetensors, type SafetensorsEntry, type SafetensorsFile } from "./safetensors.js";
import type { ByteSource } from "./source.js";
import { TensorStore } from "./lazy.js";
import { checkFiniteWeight, describeElement, findNonFinite } from "../model/finite.js";
import { isWeightLoaded, releaseWeight, weightShape, type Weight } from "../core/weight.js";

/** Read access to a directory (local folder, hub cache, HTTP). Paths are relative file names. */
export interface DirSource {
  readonly name: string;
  has(file: string): Promise<boolean>;
  readText(file: string): Promise<string>;
  open(file: string): Promise<ByteSource>;
  /** file names in the directory (used to find unindexed *.safetensors) */
  list(): Promise<string[]>;
}

/** Write access to a directory being created (atomic as a whole in io/node). */
export interface DirSink {
  writeFile<T>(file: string, write: (sink: ByteSink) => Promise<T>): Promise<T>;
}

export const SUPPORTED_MODEL_TYPES = ["llama", "mistral", "qwen2", "qwen3", "granite", "phi3", "gemma2", "gemma3_text", "olmo2"] as const;

/** quantlab's architecture of each supported model_type (Mistral is the Llama block) */
const ARCH_OF_MODEL_TYPE: Record<(typeof SUPPORTED_MODEL_TYPES)[number], Architecture> = {
  llama: "llama", mistral: "llama", qwen2: "qwen2", qwen3: "qwen3", granite: "granite", phi3: "phi3", gemma2: "gemma2", gemma3_text: "gemma3", olmo2: "olmo2",
};
/** config.json's architectures[0] and model_type for each architecture (the writer) */
const HF_CLASS: Record<Architecture, { cls: string; modelType: string }> = {
  llama: { cls: "LlamaForCausalLM", modelType: "llama" },
  qwen2: { cls: "Qwen2ForCausalLM", modelType: "qwen2" },
  qwen3: { cls: "Qwen3ForCausalLM", modelType: "qwen3" },
  granite: { cls: "GraniteForCausalLM", modelType: "granite" },
  gemma2: { cls: "Gemma2ForCausalLM", modelType: "gemma2" },
  gemma3: { cls: "Gemma3ForCausalLM", modelType: "gemma3_text" },
  olmo2: { cls: "Olmo2ForCausalLM", modelType: "olmo2" },
  phi3: { cls: "Phi3ForCausalLM", modelType: "phi3" },
};

/** config.json's activation name of each ArchTraits.activation (transformers ACT2FN keys) */
const HF_ACT: Record<"silu" | "gelu_tanh", string> = { silu: "silu", gelu_tanh: "gelu_pytorch_tanh" };

/** The HF config.json fields we read and write (transformers LlamaConfig / MistralConfig). */
export interface HfConfigJson {
  architectures?: string[];
  model_type?: string;
  hidden_size?: number;
  intermediate_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number;
  head_dim?: number;
  vocab_size?: number;
  max_position_embeddings?: number;
  rope_theta?: number;
  rms_norm_eps?: number;
  tie_word_embeddings?: boolean;
  hidden_act?: string;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  rope_scaling?: {
    rope_type?: string; type?: string; factor?: number; low_freq_factor?: number; high_freq_factor?: number; original_max_position_embeddings?: number;
    /** Phi3Config longrope ("su" in early Phi-3 configs) */
    short_factor?: number[]; long_factor?: number[]; attention_factor?: number;
    /** transformers 5 moves partial_rotary_factor into rope_parameters */
    partial_rotary_factor?: number;
  } | null;
  /** Phi3Config: RoPE rotates int(head_dim · this) values of each head */
  partial_rotary_factor?: number;
  /** Phi3Config: the pretraining context LongRoPE's short factors are for */
  original_max_position_embeddings?: number;
  /** transformers 5: `rope_theta`, `rope_type` and the scaling fields together */
  rope_parameters?: unknown;
  /** GraniteConfig (transformers models/granite/configuration_granite.py) */
  embedding_multiplier?: number;
  residual_multiplier?: number;
  attention_multiplier?: number;
  logits_scaling?: number;
  max_window_layers?: number;
  bos_token_id?: number | number[] | null;
  eos_token_id?: number | number[] | null;
  torch_dtype?: string;
  sliding_window?: number | null;
  [k: string]: unknown;
}

function need(c: HfConfigJson, key: keyof HfConfigJson, file: string): number {
  const v = c[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new QuantlabError("E_FORMAT", `${file}: "${String(key)}" must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** config.json keys that make a model a mixture of experts (transformers' Mixtral, Qwen2-MoE, DeepSeek, OLMoE…). */
const MOE_KEYS = ["num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size"] as const;

/**
 * RoPE θ and scaling from either form transformers writes: 4.x puts `rope_theta` and `rope_scaling` at the
 * top level; 5.x puts both in `rope_parameters` (`rope_theta`, `rope_type` and the scaling fields inside;
 * transformers' modeling_rope_utils.py). Both present and disagreeing is an error; a `rope_parameters` keyed
 * by layer type (local/global rope in one model) is refused, naming the field.
 */
function ropeFields(c: HfConfigJson, file: string): { theta?: number; scaling?: NonNullable<HfConfigJson["rope_scaling"]> } {
  const rp = c.rope_parameters;
  const rs = c.rope_scaling;
  if (rs !== undefined && rs !== null && (typeof rs !== "object" || Array.isArray(rs))) throw new QuantlabError("E_FORMAT", `${file}: "rope_scaling" must be an object or null, got ${describe(rs)}`);
  const top = c.rope_theta;
  if (top !== undefined && (typeof top !== "number" || !Number.isFinite(top) || top <= 0)) throw new QuantlabError("E_FORMAT", `${file}: "rope_theta" must be a positive number, got ${describe(top)}`);
  if (rp === undefined || rp === null) return { ...(top !== undefined ? { theta: top } : {}), ...(rs ? { scaling: rs } : {}) };
  if (typeof rp !== "object" || Array.isArray(rp)) throw new QuantlabError("E_FORMAT", `${file}: "rope_parameters" must be an object, got ${describe(rp)}`);
  const p = rp as Record<string, unknown>;
  // per-layer-type parameters are objects; Phi-3's short_factor / long_factor are arrays of numbers
  const nested = Object.entries(p).find(([, v]) => v !== null && typeof v === "object" && !Array.isArray(v));
  if (nested) throw new QuantlabError("E_UNSUPPORTED", `${file}: "rope_parameters.${nested[0]}": rope parameters per layer type are not supported`);
  const theta = p.rope_theta;
  if (theta !== undefined && (typeof theta !== "number" || !Number.isFinite(theta) || theta <= 0)) throw new QuantlabError("E_FORMAT", `${file}: "rope_parameters.rope_theta" must be a positive number, got ${describe(theta)}`);
  if (top !== undefined && theta !== undefined && top !== theta) throw new QuantlabError("E_FORMAT", `${file}: "rope_theta" = ${top} but "rope_parameters.rope_theta" = ${theta}`);
  const { rope_theta: _t, ...scaling } = p;
  if (rs) {
    for (const [k, v] of Object.entries(rs)) {
      const key = k === "type" ? "rope_type" : k;
      if (scaling[key] !== v) throw new QuantlabError("E_FORMAT", `${file}: "rope_scaling.${k}" = ${describe(v)} but "rope_parameters.${key}" = ${describe(scaling[key])}`);
    }
  }
  const t = theta ?? top;
  const has = Object.keys(scaling).length > 0;
  return { ...(t !== undefined ? { theta: t } : {}), ...(has ? { scaling: scaling as NonNullable<HfConfigJson["rope_scaling"]> } : {}) };
}

/** config.json → ModelConfig; refuses what the Llama forward pass cannot run, naming the field. */
export function hfConfigToModelConfig(c: HfConfigJson, file: string): ModelConfig {
  const mt = c.model_type;
  if (mt === undefined || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(mt)) {
    throw new QuantlabError("E_UNSUPPORTED", `${file}: architecture "${mt ?? c.architectures?.[0] ?? "unknown"}" is not supported (model_type: ${SUPPORTED_MODEL_TYPES.join(", ")})`);
  }
  const arch = ARCH_OF_MODEL_TYPE[mt as (typeof SUPPORTED_MODEL_TYPES)[number]];
  const traits = ARCH_TRAITS[arch];
  // Gemma's configs name the activation `hidden_activation` (and may carry an older `hidden_act` too: transformers
  // Gemma2MLP reads hidden_activation); both must be the architecture's
  const act = HF_ACT[traits.activation];
  for (const k of ["hidden_act", "hidden_activation"] as const) {
    const v = c[k];
    if (v === undefined || v === null) continue;
    if (v !== act && !(act === "gelu_pytorch_tanh" && v === "gelu_tanh")) throw new QuantlabError("E_UNSUPPORTED", `${file}: ${k} ${describe(v)} is not supported for model_type "${mt}" (${act})`);
  }
  // q/k/v biases are the architecture's (Qwen2 always has them, Qwen3 and Llama never do); an attention_bias that
  // says otherwise would be a different model
  const wantBias = ARCH_TRAITS[arch].qkvBias;
  if (c.attention_bias !== undefined && c.attention_bias !== null && Boolean(c.attention_bias) !== wantBias) {
    throw new QuantlabError("E_UNSUPPORTED", `${file}: attention_bias = ${describe(c.attention_bias)} is not supported for model_type "${mt}" (its q/k/v projections ${wantBias ? "always have" : "have no"} biases)`);
  }
  if (c.mlp_bias) throw new QuantlabError("E_UNSUPPORTED", `${file}: mlp_bias = true is not supported`);
  const dim = need(c, "hidden_size", file);
  const nHeads = need(c, "num_attention_heads", file);
  const nKvHeads = c.num_key_value_heads ?? nHeads;
  const headDim = c.head_dim ?? dim / nHeads;
  if (typeof headDim !== "number" || !Number.isInteger(headDim) || headDim % 2 !== 0) throw new QuantlabError("E_FORMAT", `${file}: head size ${describe(headDim)} is not an even integer`);
  if (typeof nKvHeads !== "number" || !Number.isInteger(nKvHeads) || nKvHeads < 1 || nHeads % nKvHeads !== 0) throw new QuantlabError("E_FORMAT", `${file}: num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${describe(nKvHeads)}`);
  if (c.tie_word_embeddings !== undefined && typeof c.tie_word_embeddings !== "boolean") throw new QuantlabError("E_FORMAT", `${file}: "tie_word_embeddings" must be true or false, got ${describe(c.tie_word_embeddings)}`);
  const config: ModelConfig = {
    arch,
    dim,
    hiddenDim: need(c, "intermediate_size", file),
    nLayers: need(c, "num_hidden_layers", file),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: need(c, "vocab_size", file),
    seqLen: c.max_position_embeddings ?? 2048,
    ropeTheta: 10000,
    normEps: c.rms_norm_eps ?? 1e-6, // transformers LlamaConfig default
    // PretrainedConfig's default is tied; LlamaConfig & co. pass False, Gemma2Config / Gemma3TextConfig True
    tiedEmbeddings: c.tie_word_embeddings ?? (arch === "gemma2" || arch === "gemma3"),
  };
  gemmaFields(c, config, file, mt);
  if (ARCH_TRAITS[arch].multipliers) {
    const num = (k: "embedding_multiplier" | "residual_multiplier" | "attention_multiplier" | "logits_scaling", def: number): number => {
      const v = c[k] ?? def;
      if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new QuantlabError("E_FORMAT", `${file}: "${k}" must be a positive number, got ${describe(v)}`);
      return v;
    };
    // GraniteConfig's defaults: 1.0 each (attention_multiplier 1.0, not 1/√head_dim)
    config.multipliers = { embedding: num("embedding_multiplier", 1), residual: num("residual_multiplier", 1), attention: num("attention_multiplier", 1), logits: num("logits_scaling", 1) };
  } else {
    for (const k of ["embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling"] as const) {
      if (c[k] !== undefined && c[k] !== 1) throw new QuantlabError("E_UNSUPPORTED", `${file}: "${k}" = ${describe(c[k])} is not read for model_type "${mt}"`);
    }
  }
  for (const k of MOE_KEYS) {
    const v = c[k];
    if (v !== undefined && v !== null && v !== 0 && v !== 1) throw new QuantlabError("E_UNSUPPORTED", `${file}: "${k}" = ${describe(v)}: mixture-of-experts models are not supported`);
  }
  const { theta, scaling: rs } = ropeFields(c, file);
  if (theta !== undefined) config.ropeTheta = theta;
  else if (arch === "gemma3") config.ropeTheta = 1000000;
  if (rs) {
    const t = rs.rope_type ?? rs.type;
    if (t === "llama3") {
      config.ropeScaling = {
        type: "llama3",
        factor: rs.factor ?? 8,
        lowFreqFactor: rs.low_freq_factor ?? 1,
        highFreqFactor: rs.high_freq_factor ?? 4,
        originalMaxPositionEmbeddings: rs.original_max_position_embeddings ?? 8192,
      };
    } else if (t === "linear" && arch === "gemma3") {
      // transformers Gemma3: the global rotary embedding takes rope_scaling, the local one (rope_local_base_freq) does not
      const f = rs.factor;
      if (typeof f !== "number" || !Number.isFinite(f) || f <= 0) throw new QuantlabError("E_FORMAT", `${file}: "rope_scaling.factor" must be a positive number, got ${describe(f)}`);
      if (f !== 1) config.ropeLinearFactor = f;
    } else if ((t === "longrope" || t === "su") && ARCH_TRAITS[arch].phi3Rope) {
      // read below with the rest of Phi-3's RoPE
    } else if (t !== "default") {
      throw new QuantlabError("E_UNSUPPORTED", `${file}: rope_scaling type ${describe(t)} is not supported for model_type "${mt}" (${arch === "gemma3" ? "linear, " : ""}llama3${ARCH_TRAITS[arch].phi3Rope ? ", longrope" : ""})`);
    }
  }
  if (ARCH_TRAITS[arch].phi3Rope) phi3Rope(c, rs, config, file);
  else {
    for (const k of ["partial_rotary_factor", "original_max_position_embeddings"] as const) {
      const v = k === "partial_rotary_factor" ? c[k] ?? rs?.partial_rotary_factor : c[k];
      if (v !== undefined && v !== null && !(k === "partial_rotary_factor" && v === 1)) throw new QuantlabError("E_UNSUPPORTED", `${file}: "${k}" = ${describe(v)} is not read for model_type "${mt}"`);
    }
  }
  // Mistral 7B v0.1's sliding-window attention: each position sees the last `sliding_window` keys (itself
  // included), in every layer; a window at least the context long is full attention. Qwen2/Qwen3 configs carry
  // a `sliding_window` that `use_sliding_window: false` turns off.
  // Gemma2Config / Gemma3TextConfig default to a window of 4096 (and Gemma 3 to rope_theta 1e6) when the field is absent
  // Each config class reads the window its own way (transformers 4.5x):
  //  - Gemma2Config / Gemma3TextConfig / MistralConfig default sliding_window to 4096 when the field is absent;
  //  - Qwen2Config / Qwen3Config apply it only with use_sliding_window (default false), to layers i ≥
  //    max_window_layers (default 28);
  //  - Phi3Config reads sliding_window as it is; LlamaConfig / GraniteConfig have no window (refused, not dropped).
  const qwenLike = mt === "qwen2" || mt === "qwen3";
  if (!qwenLike) {
    for (const k of ["use_sliding_window", "max_window_layers"] as const) {
      if (c[k] !== undefined && c[k] !== null) throw new QuantlabError("E_UNSUPPORTED", `${file}: "${k}" = ${describe(c[k])} is not read for model_type "${mt}"`);
    }
  }
  let sw = c.sliding_window === undefined && (arch === "gemma2" || arch === "gemma3" || mt === "mistral") ? 4096 : c.sliding_window;
  if (qwenLike && sw !== undefined && sw !== null) {
    const mwl = c.max_window_layers ?? 28;
    if (typeof mwl !== "number" || !Number.isInteger(mwl) || mwl < 0) throw new QuantlabError("E_FORMAT", `${file}: "max_window_layers" must be a non-negative integer, got ${describe(mwl)}`);
    if (c.use_sliding_window !== true || mwl >= config.nLayers) sw = null; // off, or no layer at or past max_window_layers
    else if (mwl > 0) throw new QuantlabError("E_UNSUPPORTED", `${file}: "max_window_layers" = ${mwl}: a sliding window in layers ${mwl}..${config.nLayers - 1} only is not supported (0: every layer)`);
  }
  if ((mt === "llama" || mt === "granite") && sw !== undefined && sw !== null) {
    throw new QuantlabError("E_UNSUPPORTED", `${file}: "sliding_window" = ${describe(sw)} is not read for model_type "${mt}" (transformers runs it with full attention; a windowed Llama block is model_type "mistral")`);
  }
  if (sw !== undefined && sw !== null) {
    if (typeof sw !== "number" || !Number.isInteger(sw) || sw <= 0) throw new QuantlabError("E_FORMAT", `${file}: "sliding_window" must be a positive integer or null, got ${describe(sw)}`);
    if (arch === "olmo2") throw new QuantlabError("E_UNSUPPORTED", `${file}: "sliding_window" = ${sw}: OLMo 2 has no sliding-window attention (OLMo 3's is not supported)`);
    if (arch === "gemma2" || arch === "gemma3") {
      const layers = gemmaSlidingLayers(c, config.nLayers, arch, file);
      // a window the context fits in is full attention; a pattern with no sliding layer is too
      if (sw < config.seqLen && layers.some((b) => b)) {
        config.slidingWindow = sw;
        if (!layers.every((b) => b)) config.slidingLayers = layers;
      }
    } else if (sw < config.seqLen) config.slidingWindow = sw;
  } else if (c.layer_types !== undefined && c.layer_types !== null && (arch === "gemma2" || arch === "gemma3")) {
    gemmaSlidingLayers(c, config.nLayers, arch, file); // checked even when unused
  }
  // Gemma 3's local RoPE base belongs to its sliding layers: with none of them it is not used
  if (config.slidingLayers === undefined) delete config.ropeThetaLocal;
  else if (config.ropeThetaLocal === config.ropeTheta) delete config.ropeThetaLocal;
  checkConfigLimits(config, file, HF_CONFIG_KEYS);
  return config;
}

/** A positive finite number of config.json, or undefined when absent or null. */
function optPositive(c: HfConfigJson, k: string, file: string): number | undefined {
  const v = c[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new QuantlabError("E_FORMAT", `${file}: "${k}" must be a positive number or null, got ${describe(v)}`);
  return v;
}

/**
 * Gemma 2 / Gemma 3's fields (transformers Gemma2Config, Gemma3TextConfig): the query scale
 * `query_pre_attn_scalar`^-0.5 (default 256), the attention and final logit soft-caps (Gemma 2: 50 and 30 by
 * default; null turns one off), Gemma 3's `rope_local_base_freq` (default 10000). Other model types must not
 * carry them.
 */
function gemmaFields(c: HfConfigJson, config: ModelConfig, file: string, mt: string): void {
  const gemma = config.arch === "gemma2" || config.arch === "gemma3";
  if (!gemma) {
    for (const k of ["query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "rope_local_base_freq"]) {
      if (c[k] !== undefined && c[k] !== null) throw new QuantlabError("E_UNSUPPORTED", `${file}: "${k}" = ${describe(c[k])} is not read for model_type "${mt}"`);
    }
    return;
  }
  const qpas = "query_pre_attn_scalar" in c ? optPositive(c, "query_pre_attn_scalar", file) : 256;
  if (qpas === undefined) throw new QuantlabError("E_FORMAT", `${file}: "query_pre_attn_scalar" must be a positive number`);
  // the default 1/√headDim needs no field
  if (qpas !== config.headDim) config.attnScale = 1 / Math.sqrt(qpas);
  const def2 = config.arch === "gemma2";
  const attnCap = "attn_logit_softcapping" in c ? optPositive(c, "attn_logit_softcapping", file) : def2 ? 50 : undefined;
  const finalCap = "final_logit_softcapping" in c ? optPositive(c, "final_logit_softcapping", file) : def2 ? 30 : undefined;
  if (attnCap !== undefined) config.attnSoftcap = attnCap;
  if (finalCap !== undefined) config.finalSoftcap = finalCap;
  if (config.arch === "gemma3") config.ropeThetaLocal = optPositive(c, "rope_local_base_freq", file) ?? 10000;
  else if (c.rope_local_base_freq !== undefined && c.rope_local_base_freq !== null) throw new QuantlabError("E_UNSUPPORTED", `${file}: "rope_local_base_freq" is not read for model_type "${mt}"`);
}

/**
 * Which Gemma layers slide: `layer_types` when given ("sliding_attention" / "full_attention"), else
 * transformers' default pattern — Gemma 2: every other layer from layer 0 ((i + 1) % 2 ≠ 0), Gemma 3:
 * `sliding_window_pattern` (default 6) with every pattern-th layer global ((i + 1) % pattern ≠ 0). llama.cpp
 * (src/models/gemma2.cpp, gemma3.cpp: set_swa_pattern) slides layer il when il % pattern < pattern − 1: the same.
 */
function gemmaSlidingLayers(c: HfConfigJson, nLayers: number, arch: Architecture, file: string): boolean[] {
  const lt = c.layer_types;
  if (lt !== undefined && lt !== null) {
    if (!Array.isArray(lt) || lt.length !== nLayers) throw new QuantlabError("E_FORMAT", `${file}: "layer_types" must list one type per layer (${nLayers}), got ${describe(lt)}`);
    return lt.map((t, i) => {
      if (t !== "sliding_attention" && t !== "full_attention") throw new QuantlabError("E_UNSUPPORTED", `${file}: "layer_types[${i}]" = ${describe(t)} is not supported (sliding_attention, full_attention)`);
      return t === "sliding_attention";
    });
  }
  let pattern = 2;
  if (arch === "gemma3") {
    const p = c.sliding_window_pattern ?? 6;
    if (typeof p !== "number" || !Number.isInteger(p) || p < 1) throw new QuantlabError("E_FORMAT", `${file}: "sliding_window_pattern" must be a positive integer, got ${describe(p)}`);
    pattern = p;
  }
  return Array.from({ length: nLayers }, (_, i) => (i + 1) % pattern !== 0);
}

/**
 * Phi3Config's RoPE: partial_rotary_factor (top level, or in rope_parameters under transformers 5) and longrope
 * scaling. transformers _compute_longrope_parameters: factor = max_position_embeddings / original_max_position_embeddings
 * when the config has the latter (Phi-3 does), the attention factor rope_scaling.attention_factor or else
 * √(1 + ln factor / ln original) (1 when factor ≤ 1) — what llama.cpp's converter writes as rope.scaling.attn_factor.
 */
function phi3Rope(c: HfConfigJson, rs: NonNullable<HfConfigJson["rope_scaling"]> | undefined, config: ModelConfig, file: string): void {
  if (c.head_dim !== undefined && c.head_dim !== config.dim / config.nHeads) {
    throw new QuantlabError("E_UNSUPPORTED", `${file}: head_dim ${describe(c.head_dim)} ≠ hidden_size / num_attention_heads: phi3's attention output is hidden_size square (llama.cpp build_phi3)`);
  }
  const prfTop = c.partial_rotary_factor, prfIn = rs?.partial_rotary_factor;
  if (prfTop !== undefined && prfIn !== undefined && prfTop !== prfIn) throw new QuantlabError("E_FORMAT", `${file}: "partial_rotary_factor" = ${prfTop} but "rope_parameters.partial_rotary_factor" = ${prfIn}`);
  const prf = prfTop ?? prfIn ?? 1;
  if (typeof prf !== "number" || !(prf > 0 && prf <= 1)) throw new QuantlabError("E_FORMAT", `${file}: "partial_rotary_factor" must be in (0, 1], got ${describe(prf)}`);
  const rd = Math.trunc(config.headDim * prf); // transformers Phi3RotaryEmbedding: int(head_dim * partial_rotary_factor)
  if (rd !== config.headDim) config.rotaryDim = rd;
  const t = rs?.rope_type ?? rs?.type;
  const origTop = c.original_max_position_embeddings, origIn = rs?.original_max_position_embeddings;
  if (t !== "longrope" && t !== "su") return;
  const orig = origTop ?? origIn ?? config.seqLen;
  if (typeof orig !== "number" || !Number.isInteger(orig) || orig < 1) throw new QuantlabError("E_FORMAT", `${file}: "original_max_position_embeddings" must be a positive integer, got ${describe(orig)}`);
  const factor = origTop !== undefined ? config.seqLen / orig : rs!.factor ?? 1;
  const af = rs!.attention_factor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(orig)));
  const arr = (k: "short_factor" | "long_factor"): number[] => {
    const v = rs![k];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) throw new QuantlabError("E_FORMAT", `${file}: "rope_scaling.${k}" must be an array of numbers, got ${describe(v)}`);
    return [...v];
  };
  config.longRope = { shortFactor: arr("short_factor"), longFactor: arr("long_factor"), originalMaxPositionEmbeddings: orig, attentionFactor: af };
}

/** config.json's name of each hyper-parameter (transformers LlamaConfig), for limit errors. */
const HF_CONFIG_KEYS: ConfigKeys = {
  dim: "hidden_size", hiddenDim: "intermediate_size", nLayers: "num_hidden_layers", nHeads: "num_attention_heads", nKvHeads: "num_key_value_heads",
  headDim: "head_dim", vocabSize: "vocab_size", seqLen: "max_position_embeddings", ropeTheta: "rope_theta", normEps: "rms_norm_eps",
};

/** Block index of an HF tensor name `model.layers.<N>.…`. */
export function hfLayerOf(name: string): number | undefined {
  const m = /^model\.layers\.(\d{1,9})\./.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** ModelConfig → config.json (LlamaForCausalLM). */
export function modelConfigToHf(c: ModelConfig, tokenizer?: Tokenizer, torchDtype = "float32"): HfConfigJson {
  const out: HfConfigJson = {
    architectures: [HF_CLASS[c.arch].cls],
    model_type: HF_CLASS[c.arch].modelType,
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.normEps,
    tie_word_embeddings: c.tiedEmbeddings,
    hidden_act: HF_ACT[ARCH_TRAITS[c.arch].activation],
    attention_bias: ARCH_TRAITS[c.arch].qkvBias,
    mlp_bias: false,
    rope_scaling: c.ropeScaling
      ? { rope_type: "llama3", factor: c.ropeScaling.factor, low_freq_factor: c.ropeScaling.lowFreqFactor, high_freq_factor: c.ropeScaling.highFreqFactor, original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings }
      : null,
    torch_dtype: torchDtype,
  };
  if (c.slidingWindow !== undefined && c.arch === "llama") {
    // LlamaConfig has no window: the same block with one is Mistral's (MistralConfig has no rope_scaling)
    if (c.ropeScaling) throw new QuantlabError("E_UNSUPPORTED", `config.json: a sliding window with llama3 rope scaling has no model_type (mistral carries the window, llama the scaling)`);
    out.architectures = ["MistralForCausalLM"];
    out.model_type = "mistral";
    delete out.rope_scaling;
  }
  if (c.slidingWindow !== undefined && (c.arch === "granite")) throw new QuantlabError("E_UNSUPPORTED", `config.json for model_type "granite": GraniteConfig has no sliding window`);
  if (c.slidingWindow !== undefined) out.sliding_window = c.slidingWindow;
  if (c.slidingWindow !== undefined && (c.arch === "qwen2" || c.arch === "qwen3")) {
    out.use_sliding_window = true;
    out.max_window_layers = 0; // every layer: transformers windows layers i ≥ max_window_layers
  }
  if (c.arch === "gemma2" || c.arch === "gemma3") {
    out.hidden_activation = out.hidden_act;
    // attnScale = query_pre_attn_scalar^-0.5 (an integer in every published config: keep it one)
    const q = c.attnScale === undefined ? c.headDim : 1 / (c.attnScale * c.attnScale);
    out.query_pre_attn_scalar = Math.abs(q - Math.round(q)) < 1e-6 * q ? Math.round(q) : q;
    out.attn_logit_softcapping = c.attnSoftcap ?? null;
    out.final_logit_softcapping = c.finalSoftcap ?? null;
    // no window: one as long as the context (Gemma's configs always carry one)
    out.sliding_window = c.slidingWindow ?? c.seqLen;
    out.layer_types = Array.from({ length: c.nLayers }, (_, l) => (layerWindow(c, l) !== undefined ? "sliding_attention" : "full_attention"));
    if (c.arch === "gemma3") {
      out.rope_local_base_freq = c.ropeThetaLocal ?? c.ropeTheta;
      if (c.ropeLinearFactor !== undefined) out.rope_scaling = { rope_type: "linear", factor: c.ropeLinearFactor };
    }
  } else if (c.attnScale !== undefined || c.attnSoftcap !== undefined || c.finalSoftcap !== undefined || c.ropeThetaLocal !== undefined || c.ropeLinearFactor !== undefined || c.slidingLayers !== undefined) {
    throw new QuantlabError("E_UNSUPPORTED", `config.json for model_type "${out.model_type}": the model's query scale, soft-caps, local RoPE base, linear RoPE scaling or per-layer windows have no field there`);
  }
  if (ARCH_TRAITS[c.arch].phi3Rope) {
    // Phi3Config has no head_dim (always hidden_size / heads) and names the rotated share of each head
    delete out.head_dim;
    out.partial_rotary_factor = (c.rotaryDim ?? c.headDim) / c.headDim;
    if (c.longRope) {
      const r = c.longRope;
      out.original_max_position_embeddings = r.originalMaxPositionEmbeddings;
      out.rope_scaling = { type: "longrope", short_factor: [...r.shortFactor], long_factor: [...r.longFactor] };
      // the default attention factor is implied by the two lengths; another one is written out
      const factor = c.seqLen / r.originalMaxPositionEmbeddings;
      const implied = factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(r.originalMaxPositionEmbeddings));
      if (Math.abs(implied - r.attentionFactor) > 1e-6 * implied) out.rope_scaling.attention_factor = r.attentionFactor;
    } else out.original_max_position_embeddings = c.seqLen;
  } else if (c.rotaryDim !== undefined || c.longRope) {
    throw new QuantlabError("E_UNSUPPORTED", `config.json for model_type "${HF_CLASS[c.arch].modelType}" cannot carry partial rotary or LongRoPE (phi3's can)`);
  }
  if (c.multipliers) {
    out.embedding_multiplier = c.multipliers.embedding;
    out.residual_multiplier = c.multipliers.residual;
    out.attention_multiplier = c.multipliers.attention;
    out.logits_scaling = c.multipliers.logits;
  }
  if (tokenizer) {
    if (tokenizer.bosId >= 0) out.bos_token_id = tokenizer.bosId;
    if (tokenizer.eosId >= 0) out.eos_token_id = tokenizer.eosId;
  }
  return out;
}

// ---- tensor names ----

const LINEAR_MAP: [string, (l: number) => string][] = [
  ["self_attn.q_proj.weight", TensorNames.attnQ],
  ["self_attn.k_proj.weight", TensorNames.attnK],
  ["self_attn.v_proj.weight", TensorNames.attnV],
  ["self_attn.o_proj.weight", TensorNames.attnOutput],
  ["mlp.gate_proj.weight", TensorNames.ffnGate],
  ["mlp.up_proj.weight", TensorNames.ffnUp],
  ["mlp.down_proj.weight", TensorNames.ffnDown],
];

/**
 * HF's norm names by placement (ArchTraits.norms; gguf-py tensor_mapping.py): Llama's post_attention_layernorm
 * is the FFN's pre-norm, Gemma's and OLMo 2's the attention output's norm (Gemma 2/3 add pre_feedforward_layernorm).
 */
const NORM_MAP: Record<"pre" | "sandwich" | "post", [string, (l: number) => string][]> = {
  pre: [["input_layernorm.weight", TensorNames.attnNorm], ["post_attention_layernorm.weight", TensorNames.ffnNorm]],
  sandwich: [
    ["input_layernorm.weight", TensorNames.attnNorm], ["post_attention_layernorm.weight", TensorNames.postAttnNorm],
    ["pre_feedforward_layernorm.weight", TensorNames.ffnNorm], ["post_feedforward_layernorm.weight", TensorNames.postFfnNorm],
  ],
  post: [["post_attention_layernorm.weight", TensorNames.postAttnNorm], ["post_feedforward_layernorm.weight", TensorNames.postFfnNorm]],
};

// transformers Qwen2Attention (q/k/v_proj bias=True) and Qwen3Attention (q_norm / k_norm)
const BIAS_MAP: [string, (l: number) => string][] = [
  ["self_attn.q_proj.bias", TensorNames.attnQBias],
  ["self_attn.k_proj.bias", TensorNames.attnKBias],
  ["self_attn.v_proj.bias", TensorNames.attnVBias],
];
const QK_NORM_MAP: [string, (l: number) => string][] = [
  ["self_attn.q_norm.weight", TensorNames.attnQNorm],
  ["self_attn.k_norm.weight", TensorNames.attnKNorm],
];

/** Canonical name → HF name for every tensor of a config (HF file order: embeddings, layers, norm, lm_head). */
export function hfNames(c: ModelConfig): [canonical: string, hf: string][] {
  const out: [string, string][] = [[TensorNames.tokenEmbd, "model.embed_tokens.weight"]];
  const t = ARCH_TRAITS[c.arch];
  // fused architectures (Phi-3) keep q/k/v and gate/up in qkv_proj / gate_up_proj: hfFusedNames
  const fused = new Set(["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight"]);
  const layerMap = [...NORM_MAP[t.norms], ...LINEAR_MAP, ...(t.qkvBias ? BIAS_MAP : []), ...(t.qkNorm ? QK_NORM_MAP : [])].filter(([suffix]) => !t.fusedProjections || !fused.has(suffix));
  for (let l = 0; l < c.nLayers; l++) for (const [suffix, f] of layerMap) out.push([f(l), `model.layers.${l}.${suffix}`]);
  out.push([TensorNames.outputNorm, "model.norm.weight"]);
  if (!c.tiedEmbeddings) out.push([TensorNames.output, "lm_head.weight"]);
  return out;
}

/** The fused HF tensors of a config (Phi-3: model.layers.N.self_attn.qkv_proj.weight, mlp.gate_up_proj.weight), with their canonical parts. */
export function hfFusedNames(c: ModelConfig): { hf: string; parts: { name: string; rows: number }[] }[] {
  return fusedFileTensors(c).map((f) => ({ hf: `model.layers.${f.layer}.${f.hf}`, parts: f.parts }));
}

/** HF tensors that carry nothing we need (recomputed buffers in old checkpoints). */
const IGNORED_HF = /(^|\.)rotary_emb\.inv_freq$/;

/**
 * Reorders the rows of a Q or K weight between HF's half-split RoPE layout and the interleaved layout
 * (convert_hf_to_gguf.py `permute`). `toInterleaved` = HF → GGUF; false is the inverse. Works on raw
 * bytes, so any dtype; `rowBytes` is one row.
 */
export function permuteQK(src: Uint8Array, nHeads: number, headDim: number, rowBytes: number, toInterleaved: boolean): Uint8Array {
  const dst = new Uint8Array(src.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let part = 0; part < 2; part++) {
      for (let j = 0; j < half; j++) {
        const hfRow = h * headDim + part * half + j;
        const ilRow = h * headDim + 2 * j + part;
        const [from, to] = toInterleaved ? [hfRow, ilRow] : [ilRow, hfRow];
        dst.set(src.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
    }
  }
  return dst;
}

// ---- loading ----

export interface LoadHfOptions {
  progress?: Progress;
  /** config.json contents when the caller has it already (single .safetensors with embedded config) */
  config?: HfConfigJson;
  /** where `config` came from, for errors (default: the directory's config.json) */
  configName?: string;
}

/** A JSON object file of the directory (size, depth and shape checked; errors name the file). */
async function readJson<T>(dir: DirSource, file: string): Promise<T> {
  const where = `${dir.name}/${file}`;
  return jsonObject(parseJsonBounded(await dir.readText(file), where), where, "the file") as T;
}

/** Which safetensors file holds each HF tensor: from the index when there is one, else every *.safetensors. */
async function weightFiles(dir: DirSource): Promise<string[]> {
  if (await dir.has("model.safetensors.index.json")) {
    const idx = await readJson<{ weight_map?: Record<string, string> }>(dir, "model.safetensors.index.json");
    const where = `${dir.name}/model.safetensors.index.json`;
    if (!idx.weight_map || typeof idx.weight_map !== "object" || Array.isArray(idx.weight_map)) throw new QuantlabError("E_FORMAT", `${where}: no "weight_map" object`);
    const files = [...new Set(Object.values(idx.weight_map))];
    for (const f of files) {
      // a shard is a plain file name of this directory: never a path that climbs out of it
      if (typeof f !== "string" || !/^[^/\\]+\.safetensors$/.test(f) || f === "." || f === "..") throw new QuantlabError("E_FORMAT", `${where}: bad shard file name ${describe(f)}`);
      if (!(await dir.has(f))) throw new QuantlabError("E_IO", `${dir.name}/${f}: no such file (listed in model.safetensors.index.json)`);
    }
    return files;
  }
  const files = (await dir.list()).filter((f) => f.endsWith(".safetensors")).sort();
  if (files.length === 0) throw new QuantlabError("E_IO", `${dir.name}: no *.safetensors files (and no model.safetensors.index.json)`);
  return files;
}

/** Loads tokenizer.json (+ tokenizer_config.json) when present. */
export async function loadHfTokenizer(dir: DirSource, padTo = 0, hfc?: Pick<HfConfigJson, "bos_token_id" | "eos_token_id">): Promise<HfTokenizer | undefined> {
  if (!(await dir.has("tokenizer.json"))) return undefined;
  const json = await readJson<TokenizerJson>(dir, "tokenizer.json");
  const cfg = (await dir.has("tokenizer_config.json")) ? await readJson<TokenizerConfigJson>(dir, "tokenizer_config.json") : {};
  // config.json's ids, where tokenizer_config.json names no token (an id list: its first, as SpecialVocab takes it)
  const first = (v: number | number[] | null | undefined): number | undefined => (typeof v === "number" ? v : Array.isArray(v) && typeof v[0] === "number" ? v[0] : undefined);
  const modelIds = { ...(first(hfc?.bos_token_id) !== undefined ? { bos: first(hfc?.bos_token_id)! } : {}), ...(first(hfc?.eos_token_id) !== undefined ? { eos: first(hfc?.eos_token_id)! } : {}) };
  return new HfTokenizer(json, cfg, `${dir.name}/tokenizer.json`, padTo, { configName: `${dir.name}/tokenizer_config.json`, modelIds });
}

/**
 * Loads a model from safetensors files whose tensors use HF names. Headers are read now, each tensor on
 * first access (io/lazy.ts), so the shards stay open until `model.close()`; on an error they are closed.
 */
export async function loadHfModel(dir: DirSource, opts: LoadHfOptions = {}): Promise<Model> {
  const cfgFile = (opts.config && opts.configName) || `${dir.name}/config.json`;
  let hfc = opts.config;
  if (!hfc) {
    if (!(await dir.has("config.json"))) throw new QuantlabError("E_IO", `${cfgFile}: no such file (a Hugging Face model directory needs config.json)`);
    hfc = await readJson<HfConfigJson>(dir, "config.json");
  }
  const config = hfConfigToModelConfig(hfc, cfgFile);
  const files = await weightFiles(dir);
  const store = new TensorStore();
  const where = new Map<string, SafetensorsFile>();
  try {
    for (const f of files) {
      const st = await openSafetensors(store.add(await dir.open(f)));
      for (const t of st.tensors) where.set(t.name, st);
    }
    // before anything loops over the layers: num_hidden_layers must be what the shards back
    checkLayersBacked(config.nLayers, where.keys(), hfLayerOf, cfgFile, "num_hidden_layers", "model.layers.N.*");
    // tied models may still ship lm_head.weight (a copy): ignore it then
    const names = hfNames(config);
    const fusedNames = hfFusedNames(config);
    const known = new Set([...names.map(([, h]) => h), ...fusedNames.map((f) => f.hf)]);
    if (config.tiedEmbeddings) known.add("lm_head.weight");
    const unknown = [...where.keys()].filter((n) => !known.has(n) && !IGNORED_HF.test(n));
    if (unknown.length > 0) {
      const biases = unknown.filter((n) => n.endsWith(".bias"));
      if (biases.length > 0) throw new QuantlabError("E_UNSUPPORTED", `${dir.name}: bias tensors are not supported (${biases.slice(0, 3).join(", ")}${biases.length > 3 ? ", …" : ""})`);
      throw new QuantlabError("E_FORMAT", `${dir.name}: unexpected tensors ${unknown.slice(0, 5).join(", ")}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ""}`);
    }
    const expected = expectedShapes(config);
    const weights = new Map<string, Weight>();
    for (const [canon, hf] of names) {
      const st = where.get(hf);
      if (!st) throw new QuantlabError("E_FORMAT", `${dir.name}: missing tensor "${hf}"`);
      const info = st.tensor(hf)!;
      const shape = expected.get(canon)!;
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
        throw new QuantlabError("E_FORMAT", `${st.name}: tensor "${hf}" has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`);
      }
      // interleaved-RoPE families take llama.cpp's Q/K row permutation; NeoX ones keep HF's rows (config.ts ArchTraits.rope)
      const isQ = canon.endsWith("attn_q.weight");
      const permute = ARCH_TRAITS[config.arch].rope === "interleaved" && (isQ || canon.endsWith("attn_k.weight"))
        ? (raw: Uint8Array, dtype: DType) => permuteQK(raw, isQ ? config.nHeads : config.nKvHeads, config.headDim, info.shape[1]! * DTYPES[dtype].bytes, true)
        : undefined;
      // Gemma: HF's norm weights are w in (1 + w); quantlab (and GGUF) hold 1 + w, in f32 (ArchTraits.normOffset)
      const tensor = isOffsetNorm(config, canon)
        ? st.lazyTensorF32(store, info, (f) => { for (let i = 0; i < f.length; i++) f[i] = 1 + f[i]!; })
        : st.lazyTensor(store, info, permute);
      weights.set(canon, { kind: "dense", tensor });
    }
    // fused tensors (Phi-3 qkv_proj, gate_up_proj): each canonical part is its own byte range of rows, read lazily
    for (const f of fusedNames) {
      const st = where.get(f.hf);
      if (!st) throw new QuantlabError("E_FORMAT", `${dir.name}: missing tensor "${f.hf}"`);
      const info = st.tensor(f.hf)!;
      const rows = f.parts.reduce((a, p) => a + p.rows, 0);
      if (info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== config.dim) {
        throw new QuantlabError("E_FORMAT", `${st.name}: tensor "${f.hf}" has shape [${info.shape.join(", ")}], expected [${rows}, ${config.dim}] (${f.parts.map((p) => `${p.rows} ${p.name}`).join(" + ")})`);
      }
      const rowBytes = info.byteLength / rows;
      let r = 0;
      for (const p of f.parts) {
        const sub = { ...info, name: `${f.hf}[${r}:${r + p.rows}]`, shape: [p.rows, config.dim], fileOffset: info.fileOffset + r * rowBytes, byteLength: p.rows * rowBytes };
        weights.set(p.name, { kind: "dense", tensor: st.lazyTensor(store, sub) });
        r += p.rows;
      }
    }
    await store.finishLoad(opts.progress ?? noProgress);
    const tokenizer = await loadHfTokenizer(dir, config.vocabSize, hfc);
    if (tokenizer && tokenizer.vocabSize > config.vocabSize) {
      throw new QuantlabError("E_FORMAT", `${dir.name}/tokenizer.json: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`);
    }
    const chat = await readHfChatMetadata(dir); // chat template, generation_config.json (io/hf-generation.ts)
    return { config, weights, tokenizer, source: { path: dir.name, format: "hf", metadata: { "hf.model_type": hfc.model_type, "hf.files": files, ...chat } }, close: () => store.close() };
  } catch (e) {
    await store.close();
    throw e;
  }
}

// ---- writing ----

export interface WriteHfOptions {
  /** dtype of written float tensors (default: each dense tensor keeps f32/f16/bf16; others become f32) */
  dtype?: "f32" | "f16" | "bf16";
  /** split into shards of at most this many bytes of tensor data (default 5 GB, as transformers' save_pretrained) */
  maxShardBytes?: number;
  progress?: Progress;
  /** write tensors holding NaN/Inf instead of refusing them (model/finite.ts) */
  allowNonFinite?: boolean;
}

/** A norm weight that HF stores as w of (1 + w) (ArchTraits.normOffset: every RMSNorm weight of Gemma 2/3, q/k norms included). */
function isOffsetNorm(c: ModelConfig, canon: string): boolean {
  return ARCH_TRAITS[c.arch].normOffset && canon.endsWith("norm.weight");
}

/** A weight as (dtype, bytes) for safetensors, Q/K rows put back in HF order, (1 + w) norms back to w. */
function hfTensorBytes(w: Weight, canon: string, c: ModelConfig, dtype: DType | undefined, check: { source: string; out: string } | undefined): { dtype: DType; bytes: () => Uint8Array } {
  const shape = weightShape(w);
  const offset = isOffsetNorm(c, canon);
  const keep = !offset && w.kind === "dense" && (dtype === undefined || w.tensor.dtype === dtype);
  const outDtype: DType = keep ? (w as { tensor: Tensor }).tensor.dtype : (dtype ?? "f32");
  return {
    dtype: outDtype,
    bytes: () => {
      // a lazy weight the writer brings in is let go again once its bytes are produced (streaming)
      const wasLoaded = isWeightLoaded(w);
      if (check !== undefined) checkFiniteWeight(w, canon, check.source, `refusing to write ${check.out}`, true);
      let raw: Uint8Array;
      if (keep) {
        const d = (w as { tensor: Tensor }).tensor.data;
        raw = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
      } else {
        let f = dequantizeWeight(w, canon).data;
        if (offset) f = f.map((e) => e - 1); // a fresh f32 array: the model's own weight is not touched
        const conv = outDtype === "f16" ? f32ArrayToF16(f) : outDtype === "bf16" ? f32ArrayToBf16(f) : f;
        if (check !== undefined && (outDtype === "f16" || outDtype === "bf16")) checkNoOverflow(conv as Uint16Array, f, outDtype, canon, weightShape(w), check.source);
        raw = new Uint8Array(conv.buffer, conv.byteOffset, conv.byteLength);
      }
      const isQ = canon.endsWith("attn_q.weight");
      if (ARCH_TRAITS[c.arch].rope === "interleaved" && (isQ || canon.endsWith("attn_k.weight"))) {
        raw = permuteQK(raw, isQ ? c.nHeads : c.nKvHeads, c.headDim, shape[1]! * DTYPES[outDtype].bytes, false);
      }
      if (!wasLoaded) releaseWeight(w);
      return raw;
    },
  };
}

/** A finite f32 value that f16/bf16 rounds to Inf (|x| > 65504 for f16) is an error, not a silent Inf. */
function checkNoOverflow(h: Uint16Array, f: Float32Array, dtype: "f16" | "bf16", name: string, shape: readonly number[], where: string): void {
  const bad = findNonFinite({ kind: "dense", tensor: new Tensor(dtype, shape, h) }, name);
  if (bad) throw new QuantlabError("E_VALUE", `${where}: ${describeElement(name, shape, bad.index)} is ${f[bad.index]}, which ${dtype.toUpperCase()} cannot hold: it would be written as ${bad.value} (write F32, or scale the weights)`);
}

/** transformers' default max_shard_size "5GB" */
const DEFAULT_SHARD_BYTES = 5_000_000_000;

/** Plans the safetensors entries (HF names) of a model. */
export function hfEntries(model: Model, opts: WriteHfOptions = {}, name = "output"): SafetensorsEntry[] {
  const c = model.config;
  const rf = model.weights.get(ROPE_FREQS);
  if (rf && !c.ropeScaling) {
    const inferred = inferLlama3Scaling(c, dequantizeWeight(rf, ROPE_FREQS).data);
    if (!inferred) throw new QuantlabError("E_UNSUPPORTED", `${name}: the model's ${ROPE_FREQS} cannot be expressed as a config.json rope_scaling`);
  }
  const check = opts.allowNonFinite ? undefined : { source: model.source.path, out: name };
  const get = (canon: string): Weight => {
    const w = model.weights.get(canon);
    if (!w) throw new QuantlabError("E_ARG", `${name}: model has no tensor "${canon}"`);
    return w;
  };
  const single = hfNames(c).map(([canon, hf]): SafetensorsEntry => {
    const w = get(canon);
    const { dtype, bytes } = hfTensorBytes(w, canon, c, opts.dtype, check);
    return { name: hf, dtype, shape: weightShape(w), bytes };
  });
  // fused tensors: the parts' rows one after another, in one dtype (f32 unless every part keeps the same one)
  const fused = hfFusedNames(c).map((f): SafetensorsEntry => {
    const ws = f.parts.map((p) => get(p.name));
    let parts = ws.map((w, i) => hfTensorBytes(w, f.parts[i]!.name, c, opts.dtype, check));
    if (parts.some((p) => p.dtype !== parts[0]!.dtype)) parts = ws.map((w, i) => hfTensorBytes(w, f.parts[i]!.name, c, opts.dtype ?? "f32", check));
    const rows = f.parts.reduce((a, p) => a + p.rows, 0);
    return {
      name: f.hf, dtype: parts[0]!.dtype, shape: [rows, c.dim],
      bytes: () => {
        const bs = parts.map((p) => p.bytes());
        const out = new Uint8Array(bs.reduce((a, b) => a + b.length, 0));
        let o = 0;
        for (const b of bs) { out.set(b, o); o += b.length; }
        return out;
      },
    };
  });
  // HF's file order: embeddings, then each layer's tensors, then the final norm and lm_head
  const layerOf = (e: SafetensorsEntry) => hfLayerOf(e.name) ?? (e.name === "model.embed_tokens.weight" ? -1 : Infinity);
  return [...single, ...fused].map((e, i) => ({ e, i })).sort((a, b) => layerOf(a.e) - layerOf(b.e) || a.i - b.i).map(({ e }) => e);
}

/** Writes config.json, safetensors shards (+ index), tokenizer.json and tokenizer_config.json. */
export async function writeHfModel(model: Model, out: DirSink, opts: WriteHfOptions = {}, name = "output"): Promise<{ files: string[]; bytes: number; warnings?: string[] }> {
  const c = model.config;
  const warnings = uncarriedTransforms(model, "a Hugging Face directory", name);
  let config = c;
  const rf = model.weights.get(ROPE_FREQS);
  if (rf && !c.ropeScaling) config = { ...c, ropeScaling: inferLlama3Scaling(c, dequantizeWeight(rf, ROPE_FREQS).data) };
  const entries = hfEntries(model, opts, name);
  const maxShard = opts.maxShardBytes ?? DEFAULT_SHARD_BYTES;
  const shards: SafetensorsEntry[][] = [[]];
  let cur = 0;
  for (const e of entries) {
    const b = numel(e.shape) * DTYPES[e.dtype].bytes;
    if (cur > 0 && cur + b > maxShard) {
      shards.push([]);
      cur = 0;
    }
    shards[shards.length - 1]!.push(e);
    cur += b;
  }
  const files: string[] = [];
  let bytes = 0;
  const progress = opts.progress ?? noProgress;
  progress.start(entries.length, "writing");
  const meta = { format: "pt" }; // what transformers' save_pretrained writes
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let i = 0; i < shards.length; i++) {
    const file = shards.length === 1 ? "model.safetensors" : `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`;
    const ticking = shards[i]!.map((e) => ({ ...e, bytes: async () => { const b = await e.bytes(); progress.tick(); return b; } }));
    bytes += await out.writeFile(file, (sink) => writeSafetensors(sink, ticking, meta, file));
    for (const e of shards[i]!) {
      weightMap[e.name] = file;
      totalSize += numel(e.shape) * DTYPES[e.dtype].bytes;
    }
    files.push(file);
  }
  progress.done();
  const enc = new TextEncoder();
  const writeText = async (file: string, text: string) => {
    const b = enc.encode(text);
    await out.writeFile(file, (sink) => sink.write(b));
    files.push(file);
    bytes += b.length;
  };
  if (shards.length > 1) await writeText("model.safetensors.index.json", JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + "\n");
  const dtypeName = { f32: "float32", f16: "float16", bf16: "bfloat16" } as Record<string, string>;
  await writeText("config.json", JSON.stringify(modelConfigToHf(config, model.tokenizer, dtypeName[entries[1]?.dtype ?? "f32"] ?? "float32"), null, 2) + "\n");
  if (model.tokenizer) {
    const t = model.tokenizer;
    const json = t instanceof HfTokenizer ? t.json : vocabToTokenizerJson(t.vocab());
    const v = t instanceof HfTokenizer ? undefined : t.vocab();
    const cfg: TokenizerConfigJson = t instanceof HfTokenizer ? t.config : { add_bos_token: v!.addBos, add_eos_token: false, ...(v!.bosId >= 0 ? { bos_token: v!.pieces[v!.bosId] } : {}), ...(v!.eosId >= 0 ? { eos_token: v!.pieces[v!.eosId] } : {}), ...(v!.unkId !== undefined ? { unk_token: v!.pieces[v!.unkId] } : {}), model_max_length: c.seqLen };
    await writeText("tokenizer.json", JSON.stringify(json) + "\n");
    await writeText("tokenizer_config.json", JSON.stringify(cfg, null, 2) + "\n");
    for (const f of hfChatFiles(model, cfg)) await writeText(f.file, f.text); // chat_template.jinja, generation_config.json
  }
  return { files, bytes, ...(warnings.length ? { warnings } : {}) };
}

/** Size in bytes of the safetensors a model would produce (for reports). */
export function hfSize(model: Model, opts: WriteHfOptions = {}): number {
  return safetensorsSize(hfEntries(model, opts));
}
