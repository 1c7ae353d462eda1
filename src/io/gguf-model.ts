/**
 * GGUF ↔ Model for the `llama` architecture (llama.cpp `src/llama-arch.cpp` key and tensor names,
 * gguf-py `constants.py`). Tensor names in GGUF are already our canonical names.
 *
 * Reading: hyper-parameters from `llama.*`, tensors F32/F16/BF16 as dense Weights (one buffer per
 * tensor, viewed in place), any other ggml type as raw `{kind:"ggml"}` blocks, `tokenizer.ggml.*` into a
 * Tokenizer. Writing: the same keys and tensors, the tokenizer from `Tokenizer.vocab()`, Llama 3 RoPE
 * scaling as llama.cpp's `rope_freqs.weight` tensor (what convert_hf_to_gguf.py writes).
 */
import type { QuantSpec } from "../quant/spec.js";
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { Tensor, numel, viewAs } from "../core/tensor.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../ggml/types.js";
import { ARCHITECTURES, ARCH_TRAITS, TensorNames, checkConfigLimits, checkLayersBacked, expectedShapes, fusedFileTensors, ggufLayerOf, rotaryDimOf, type Architecture, type ConfigKeys, type FusedFileTensor, type ModelConfig, type RopeScalingLlama3 } from "../model/config.js";
import { MAX_DIM, MAX_HEAD_DIM, MAX_HEADS, MAX_HIDDEN, MAX_LAYERS, MAX_MERGES, MAX_SEQ_LEN, MAX_VOCAB, checkCount, parseJsonBounded } from "../core/limits.js";
import type { Model } from "../model/weights.js";
import type { Tokenizer, Vocab } from "../model/tokenizer.js";
import { Llama2cTokenizer } from "../model/tokenizers/llama2c.js";
import { HfTokenizer, type TokenizerJson } from "../model/tokenizers/hf.js";
import {
  GgufValueType, GgufWriter, metaArray, metaBool, metaNumber, metaString,
  type ByteSink, type GgufFile, type GgufTensorInfo, type GgufValue,
} from "./gguf.js";
import { chooseType, currentGgmlType, encodeWeightChunked } from "./weights-encode.js";
import { refGgmlEncoder } from "../ggml/encoder.js";
import { uncarriedTransforms } from "./transforms-carry.js";
import type { GgmlEncoder } from "../ggml/encoder.js";
import { isWeightLoaded, lazyGgmlWeight, releaseWeight, weightShape, type Weight } from "../core/weight.js";
import { TensorStore } from "./lazy.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { checkFiniteWeight } from "../model/finite.js";
import { tokenizerExtraMetadata } from "./gguf-tokenizer.js";

/** llama.cpp's name for per-frequency RoPE divisors (Llama 3.1+ scaling, written by convert_hf_to_gguf.py) */
export const ROPE_FREQS = "rope_freqs.weight";

/** llama.cpp LLM_TENSOR_ROPE_FACTORS_LONG / _SHORT: LongRoPE's per-pair divisors (Phi-3 128k, Phi-3.5, Phi-4-mini) */
export const ROPE_FACTORS_LONG = "rope_factors_long.weight";
export const ROPE_FACTORS_SHORT = "rope_factors_short.weight";

/** metadata key of the recipe JSON (= algos/recipe.ts RECIPE_METADATA_KEY; io does not import algos) */
export const RECIPE_KEY = "quantlab.recipe";

/** llama.cpp `general.architecture` names quantlab runs (src/llama-arch.cpp LLM_ARCH_NAMES), one per ModelConfig.arch */
export const SUPPORTED_ARCHITECTURES = ARCHITECTURES;

// ---------------------------------------------------------------------------------------------------
// Reading

function requireNumber(f: GgufFile, key: string): number {
  const v = metaNumber(f, key);
  if (v === undefined) throw new QuantlabError("E_FORMAT", `${f.name}: missing metadata "${key}"`);
  return v;
}

/** The GGUF keys of each hyper-parameter (llama.cpp src/llama-arch.cpp LLM_KV_*), for limit errors. */
function ggufConfigKeys(a: string): ConfigKeys {
  return {
    dim: `${a}.embedding_length`, hiddenDim: `${a}.feed_forward_length`, nLayers: `${a}.block_count`,
    nHeads: `${a}.attention.head_count`, nKvHeads: `${a}.attention.head_count_kv`, headDim: `${a}.attention.key_length`,
    vocabSize: `${a}.vocab_size`, seqLen: `${a}.context_length`, ropeTheta: `${a}.rope.freq_base`, normEps: `${a}.attention.layer_norm_rms_epsilon`,
  };
}

/**
 * Counts any model GGUF declares, whatever its architecture: `<arch>.block_count` and the widths
 * llama.cpp reads for every architecture, checked against core/limits.ts, and the block count against
 * the `blk.N.*` tensors the file has. `info` and GGUF → GGUF `convert` accept architectures we do not
 * run, so they check this much rather than copy a corrupt count into a report or an output file.
 */
export function checkGgufModelCounts(f: GgufFile): void {
  const a = metaString(f, "general.architecture");
  if (a === undefined) return; // not a model file (e.g. the ggml goldens): nothing declares layers
  const scalar = (key: string): number | undefined => {
    const v = f.metadata.get(key);
    // some architectures give per-layer arrays (OpenELM head counts); only scalars are counts here
    return v === undefined || v.type === GgufValueType.ARRAY ? undefined : metaNumber(f, key);
  };
  const k = ggufConfigKeys(a);
  const limits: [string, number, string][] = [
    [k.dim, MAX_DIM, "MAX_DIM"], [k.hiddenDim, MAX_HIDDEN, "MAX_HIDDEN"], [k.nHeads, MAX_HEADS, "MAX_HEADS"],
    [k.nKvHeads, MAX_HEADS, "MAX_HEADS"], [k.headDim, MAX_HEAD_DIM, "MAX_HEAD_DIM"], [k.vocabSize, MAX_VOCAB, "MAX_VOCAB"], [k.seqLen, MAX_SEQ_LEN, "MAX_SEQ_LEN"],
  ];
  for (const [key, max, name] of limits) {
    const v = scalar(key);
    if (v !== undefined) checkCount(f.name, key, v, 0, max, name);
  }
  const nLayers = scalar(k.nLayers);
  if (nLayers === undefined) return;
  checkCount(f.name, k.nLayers, nLayers, 0, MAX_LAYERS, "MAX_LAYERS");
  // decoder-only architectures name their blocks blk.N.* (gguf-py tensor_mapping.py); others use other
  // prefixes (T5's enc.blk.N / dec.blk.N): with no blk.N tensor at all there is nothing to compare against
  if (!f.tensors.some((t) => ggufLayerOf(t.name) !== undefined)) return;
  checkLayersBacked(nLayers, f.tensors.map((t) => t.name), ggufLayerOf, f.name, k.nLayers, "blk.N.*");
}

/** Hyper-parameters of a `llama` GGUF, checked against core/limits.ts and against the file's tensors. */
export function ggufConfig(f: GgufFile): ModelConfig {
  const arch = metaString(f, "general.architecture");
  if (arch === undefined) throw new QuantlabError("E_FORMAT", `${f.name}: missing metadata "general.architecture" (not a model file?)`);
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new QuantlabError("E_UNSUPPORTED", `${f.name}: architecture "${arch}" is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(", ")})`);
  }
  const a = arch;
  const keys = ggufConfigKeys(a);
  const dim = requireNumber(f, keys.dim);
  const nLayers = requireNumber(f, keys.nLayers);
  const hiddenDim = requireNumber(f, keys.hiddenDim);
  const nHeads = requireNumber(f, keys.nHeads);
  checkCount(f.name, keys.dim, dim, 1, MAX_DIM, "MAX_DIM");
  checkCount(f.name, keys.nHeads, nHeads, 1, MAX_HEADS, "MAX_HEADS");
  checkCount(f.name, keys.nLayers, nLayers, 1, MAX_LAYERS, "MAX_LAYERS");
  const nKvHeads = metaNumber(f, keys.nKvHeads) ?? nHeads;
  const keyLength = metaNumber(f, keys.headDim);
  const valueLength = metaNumber(f, `${a}.attention.value_length`);
  const headDim = keyLength ?? dim / nHeads;
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new QuantlabError("E_UNSUPPORTED", `${f.name}: attention.value_length ${valueLength} differs from key_length ${headDim}`);
  }
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new QuantlabError("E_FORMAT", `${f.name}: head size ${headDim} (embedding_length ${dim} / head_count ${nHeads}) is not an even integer`);
  if (!Number.isInteger(nKvHeads) || nKvHeads < 1 || nHeads % nKvHeads !== 0) throw new QuantlabError("E_FORMAT", `${f.name}: head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}`);
  // partial rotary (Phi-4-mini): ggml rope rotates the first n_rot values of each head
  const nRot = metaNumber(f, `${a}.rope.dimension_count`);
  if (nRot !== undefined && nRot !== headDim && !(Number.isInteger(nRot) && nRot >= 2 && nRot < headDim && nRot % 2 === 0)) {
    throw new QuantlabError("E_FORMAT", `${f.name}: ${a}.rope.dimension_count ${nRot} is not an even number of values up to the head size ${headDim}`);
  }
  const scalingType = metaString(f, `${a}.rope.scaling.type`);
  const linearGemma3 = scalingType === "linear" && arch === "gemma3";
  if (scalingType !== undefined && scalingType !== "none" && !linearGemma3) {
    throw new QuantlabError("E_UNSUPPORTED", `${f.name}: rope.scaling.type "${scalingType}" is not supported (Llama 3 scaling comes as ${ROPE_FREQS}${arch === "gemma3" ? "; linear" : ""})`);
  }
  const tok = f.tensor(TensorNames.tokenEmbd);
  const vocabSize = metaNumber(f, keys.vocabSize) ?? tok?.shape[0] ?? metaArray(f, "tokenizer.ggml.tokens")?.items.length;
  if (vocabSize === undefined) throw new QuantlabError("E_FORMAT", `${f.name}: cannot tell the vocabulary size (no ${a}.vocab_size, no ${TensorNames.tokenEmbd})`);
  const config: ModelConfig = {
    arch: arch as Architecture,
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    seqLen: metaNumber(f, keys.seqLen) ?? 2048,
    ropeTheta: metaNumber(f, keys.ropeTheta) ?? 10000, // llama.cpp's default when the key is absent
    normEps: metaNumber(f, keys.normEps) ?? 1e-5,
    tiedEmbeddings: f.tensor(TensorNames.output) === undefined,
    name: metaString(f, "general.name"),
  };
  if (nRot !== undefined && nRot !== headDim) config.rotaryDim = nRot;
  if (ARCH_TRAITS[config.arch].fusedProjections && headDim * nHeads !== dim) {
    throw new QuantlabError("E_UNSUPPORTED", `${f.name}: ${a}.attention.key_length ${headDim} × head_count ${nHeads} ≠ embedding_length ${dim} (llama.cpp's ${a} has a square attention output)`);
  }
  if (arch === "gemma2" || arch === "gemma3") gemmaConfig(f, config, linearGemma3);
  else {
    // LLM_KV_ATTENTION_SLIDING_WINDOW; a window as long as the context is full attention
    const swa = metaNumber(f, `${a}.attention.sliding_window`);
    if (swa !== undefined && swa > 0 && arch === "olmo2") throw new QuantlabError("E_UNSUPPORTED", `${f.name}: ${a}.attention.sliding_window = ${swa}: OLMo 2 with sliding-window layers (OLMo 3) is not supported`);
    if (swa !== undefined && swa > 0 && swa < config.seqLen) config.slidingWindow = swa;
  }
  if (arch === "olmo2" && headDim * nHeads !== dim) throw new QuantlabError("E_FORMAT", `${f.name}: olmo2 needs head size × heads = embedding_length (llama.cpp build_olmo2), got ${headDim} × ${nHeads} ≠ ${dim}`);
  if (arch === "granite") {
    // llama.cpp LLM_KV_EMBEDDING_SCALE / RESIDUAL_SCALE / ATTENTION_SCALE / LOGIT_SCALE; 0 or absent means none
    // (attention: 1/√head_dim), as build_granite reads them
    const scale = (k: string, none: number) => { const v = metaNumber(f, `${a}.${k}`); return v === undefined || v === 0 ? none : v; };
    config.multipliers = { embedding: scale("embedding_scale", 1), residual: scale("residual_scale", 1), attention: scale("attention.scale", 1 / Math.sqrt(headDim)), logits: scale("logit_scale", 1) };
  }
  checkConfigLimits(config, f.name, keys);
  // before anything loops over the layers: the block count must be what the tensors back
  checkLayersBacked(nLayers, f.tensors.map((t) => t.name), ggufLayerOf, f.name, keys.nLayers, "blk.N.*");
  return config;
}

/**
 * Gemma 2 / Gemma 3 hyper-parameters as llama.cpp reads them (src/models/gemma2.cpp, gemma3.cpp):
 * - sliding window: Gemma 2 always (n_swa 4096 unless `attention.sliding_window`), Gemma 3 only with the key;
 *   layer il slides when il % P < P − 1, P = `attention.sliding_window_pattern` (default 2 / 6; 0: every layer);
 * - RoPE base of sliding layers `rope.freq_base_swa` (Gemma 2 default: freq_base; Gemma 3: 10000); Gemma 3's
 *   linear scaling (`rope.scaling.factor`) on the other layers only (rope_freq_scale_train_swa = 1);
 * - soft-caps: Gemma 2 always caps attention logits (`attn_logit_softcapping`, default 50) and logits
 *   (`final_logit_softcapping`, default 30); Gemma 3 caps logits only when the key is there, attention never;
 * - query scale: 1/√(embedding_length / head_count) for the 27B models (recognised by their layer count, 46 / 62),
 *   1/√head size otherwise — llama.cpp does not read query_pre_attn_scalar.
 */
function gemmaConfig(f: GgufFile, c: ModelConfig, linear: boolean): void {
  const a = c.arch;
  const g2 = a === "gemma2";
  const swaKey = metaNumber(f, `${a}.attention.sliding_window`);
  const swa = g2 ? swaKey ?? 4096 : swaKey;
  if (swa !== undefined && swa > 0) {
    const patternV = f.metadata.get(`${a}.attention.sliding_window_pattern`);
    if (patternV?.type === GgufValueType.ARRAY) throw new QuantlabError("E_UNSUPPORTED", `${f.name}: ${a}.attention.sliding_window_pattern is an array (llama.cpp reads a period only)`);
    const P = metaNumber(f, `${a}.attention.sliding_window_pattern`) ?? (g2 ? 2 : 6);
    const layers = Array.from({ length: c.nLayers }, (_, il) => P === 0 || il % P < P - 1);
    if (swa < c.seqLen && layers.some((b) => b)) {
      c.slidingWindow = swa;
      if (!layers.every((b) => b)) c.slidingLayers = layers;
      const local = metaNumber(f, `${a}.rope.freq_base_swa`) ?? (g2 ? c.ropeTheta : 10000);
      if (local !== c.ropeTheta) c.ropeThetaLocal = local;
    }
  }
  if (linear) {
    const factor = metaNumber(f, `${a}.rope.scaling.factor`);
    if (factor === undefined || !(factor > 0)) throw new QuantlabError("E_FORMAT", `${f.name}: ${a}.rope.scaling.type "linear" without a positive ${a}.rope.scaling.factor`);
    if (factor !== 1) c.ropeLinearFactor = factor;
  }
  const cap = (k: string, def: number | undefined) => {
    const v = metaNumber(f, `${a}.${k}`) ?? def;
    return v === undefined || v === 0 ? undefined : v;
  };
  const attnCap = g2 ? cap("attn_logit_softcapping", 50) : undefined;
  const finalCap = cap("final_logit_softcapping", g2 ? 30 : undefined);
  if (attnCap !== undefined) c.attnSoftcap = attnCap;
  if (finalCap !== undefined) c.finalSoftcap = finalCap;
  const big = g2 ? c.nLayers === 46 : c.nLayers === 62;
  if (big && c.dim / c.nHeads !== c.headDim) c.attnScale = 1 / Math.sqrt(c.dim / c.nHeads);
}

/** What llama.cpp's Gemma graphs scale queries by (gemmaConfig), as ModelConfig.attnScale (undefined: 1/√head size). */
function llamaCppGemmaScale(c: ModelConfig): number | undefined {
  const big = c.arch === "gemma2" ? c.nLayers === 46 : c.nLayers === 62;
  return big && c.dim / c.nHeads !== c.headDim ? 1 / Math.sqrt(c.dim / c.nHeads) : undefined;
}

/** The Tokenizer a GGUF carries, or undefined when it has no `tokenizer.ggml.tokens`. */
export function ggufVocab(f: GgufFile): Vocab | undefined {
  const tokens = metaArray(f, "tokenizer.ggml.tokens", GgufValueType.STRING);
  if (!tokens) return undefined;
  const pieces = tokens.items as string[];
  const n = pieces.length;
  checkCount(f.name, "tokenizer.ggml.tokens (entries)", n, 1, MAX_VOCAB, "MAX_VOCAB");
  const model = metaString(f, "tokenizer.ggml.model") ?? "llama";
  if (model !== "llama" && model !== "gpt2") throw new QuantlabError("E_UNSUPPORTED", `${f.name}: tokenizer model "${model}" is not supported (llama, gpt2)`);
  const scoresArr = metaArray(f, "tokenizer.ggml.scores", GgufValueType.FLOAT32);
  const typesArr = metaArray(f, "tokenizer.ggml.token_type", GgufValueType.INT32);
  for (const [k, arr] of [["scores", scoresArr], ["token_type", typesArr]] as const) {
    if (arr && arr.items.length !== n) throw new QuantlabError("E_FORMAT", `${f.name}: tokenizer.ggml.${k} has ${arr.items.length} entries but tokenizer.ggml.tokens has ${n}`);
  }
  const scores = scoresArr ? new Float32Array(scoresArr.items as Float32Array) : new Float32Array(n);
  const types = typesArr ? new Int32Array(typesArr.items as Int32Array) : new Int32Array(n).fill(1);
  const id = (key: string): number | undefined => {
    const v = metaNumber(f, `tokenizer.ggml.${key}`);
    // llama.cpp writes 0xFFFFFFFF (-1 as u32) for "none"
    if (v === undefined || v < 0 || v >= n) return undefined;
    return v;
  };
  const merges = metaArray(f, "tokenizer.ggml.merges", GgufValueType.STRING)?.items as string[] | undefined;
  if (merges) checkCount(f.name, "tokenizer.ggml.merges (entries)", merges.length, 0, MAX_MERGES, "MAX_MERGES");
  const v: Vocab = {
    model,
    pieces,
    scores,
    types,
    bosId: id("bos_token_id") ?? (model === "llama" ? 1 : -1),
    eosId: id("eos_token_id") ?? (model === "llama" ? 2 : -1),
    addBos: metaBool(f, "tokenizer.ggml.add_bos_token") ?? model === "llama",
  };
  const unk = id("unknown_token_id");
  if (unk !== undefined) v.unkId = unk;
  const pad = id("padding_token_id");
  if (pad !== undefined) v.padId = pad;
  if (merges) v.merges = merges;
  const pre = metaString(f, "tokenizer.ggml.pre");
  if (pre !== undefined) v.pre = pre;
  const spacePrefix = metaBool(f, "tokenizer.ggml.add_space_prefix");
  if (spacePrefix !== undefined && model === "llama") v.addSpacePrefix = spacePrefix;
  return v;
}

/** gguf-py Keys.Tokenizer.HF_JSON: the whole tokenizer.json, which we write for vocabularies that came from one. */
export const HF_JSON_KEY = "tokenizer.huggingface.json";

/** Builds a Tokenizer from a GGUF-form vocabulary (and the embedded tokenizer.json when the file has one). */
export function tokenizerFromVocab(v: Vocab, file: string, hfJson?: string): Tokenizer {
  // llama2.c's tokenizer always puts the dummy-prefix space first; a vocabulary without it (Gemma) goes through tokenizer.json
  if (v.model === "llama" && hfJson === undefined && v.addSpacePrefix !== false) return Llama2cTokenizer.fromVocab(v);
  if (hfJson !== undefined) {
    const where = `${file}: metadata "${HF_JSON_KEY}"`;
    const json = parseJsonBounded(hfJson, where) as TokenizerJson;
    const t = new HfTokenizer(json, { bos_token: v.pieces[v.bosId], eos_token: v.pieces[v.eosId], add_bos_token: v.addBos }, where, v.pieces.length);
    if (t.vocabSize > v.pieces.length) throw new QuantlabError("E_FORMAT", `${file}: ${HF_JSON_KEY} has ${t.vocabSize} tokens but tokenizer.ggml.tokens has ${v.pieces.length}`);
    return t;
  }
  return HfTokenizer.fromVocab(v, file);
}

/**
 * Where to read a tensor's bytes: a caller-owned view of exactly its byte length (e.g. a kernel backend's
 * WebAssembly memory, `WasmBackend.placeTensor`), or undefined to let the reader allocate. Placing big
 * tensors where the kernels will run them means the model is held once, not once in JS and once again
 * in wasm memory.
 */
export type TensorPlacer = ((type: GgmlType, shape: readonly number[], name: string) => Uint8Array | undefined) & {
  /** quantlab QTensors (quantized-model safetensors): where to read the code bytes (`.qcodes`) of a tensor
   * of this spec and shape, a view of exactly their length (`WasmBackend.placeQuant`), or undefined */
  quant?: (spec: QuantSpec, shape: readonly number[], name: string) => Uint8Array | undefined;
};

export interface ReadGgufModelOptions {
  progress?: Progress;
  /** read tensors straight into caller-provided memory where it offers some */
  place?: TensorPlacer;
  /** skip the tokenizer (e.g. `info`) */
  noTokenizer?: boolean;
}

/**
 * A GGUF `llama` model from its parsed header. Tensors are read on first access (one buffer each), so
 * the model keeps `f`'s source open: `model.close()` closes it. Over a source without synchronous reads
 * every tensor is read here instead. On an error the caller still owns (and closes) `f`.
 */
export async function readGgufModel(f: GgufFile, opts: ReadGgufModelOptions = {}): Promise<Model> {
  const config = ggufConfig(f);
  const expected = expectedShapes(config);
  const fused = ggufFused(f, config);
  const partOf = new Set(fused.flatMap((t) => t.parts.map((p) => p.name)));
  for (const ft of fused) {
    const t = f.tensor(ft.gguf);
    const rows = ft.parts.reduce((a, p) => a + p.rows, 0);
    if (!t) throw new QuantlabError("E_FORMAT", `${f.name}: missing tensor "${ft.gguf}"`);
    if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== config.dim) {
      throw new QuantlabError("E_FORMAT", `${f.name}: tensor "${ft.gguf}" has shape [${t.shape.join(", ")}], expected [${rows}, ${config.dim}] (${ft.parts.map((p) => `${p.rows} ${p.name}`).join(" + ")})`);
    }
  }
  const longRope = config.longRope === undefined && (f.tensor(ROPE_FACTORS_LONG) || f.tensor(ROPE_FACTORS_SHORT));
  for (const n of [ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT]) {
    const t = f.tensor(n);
    if (longRope && !t) throw new QuantlabError("E_FORMAT", `${f.name}: has ${n === ROPE_FACTORS_LONG ? ROPE_FACTORS_SHORT : ROPE_FACTORS_LONG} but no "${n}"`);
    if (t && (t.shape.length !== 1 || t.shape[0] !== rotaryDimOf(config) / 2)) throw new QuantlabError("E_FORMAT", `${f.name}: tensor "${n}" has shape [${t.shape.join(", ")}], expected [${rotaryDimOf(config) / 2}] (rope.dimension_count / 2)`);
  }
  for (const [name, shape] of expected) {
    if (partOf.has(name)) continue;
    const t = f.tensor(name);
    if (!t) throw new QuantlabError("E_FORMAT", `${f.name}: missing tensor "${name}"`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new QuantlabError("E_FORMAT", `${f.name}: tensor "${name}" has shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
    }
  }
  const fileNames = new Set([...[...expected.keys()].filter((n) => !partOf.has(n)), ...fused.map((t) => t.gguf), ROPE_FREQS, ...(longRope ? [ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT] : [])]);
  const extra = f.tensors.filter((t) => !fileNames.has(t.name)).map((t) => t.name);
  if (extra.length > 0) {
    throw new QuantlabError("E_UNSUPPORTED", `${f.name}: tensors this loader does not use: ${extra.slice(0, 5).join(", ")}${extra.length > 5 ? ` and ${extra.length - 5} more` : ""}`);
  }
  const rf = f.tensor(ROPE_FREQS);
  if (rf && (rf.shape.length !== 1 || rf.shape[0] !== rotaryDimOf(config) / 2)) {
    throw new QuantlabError("E_FORMAT", `${f.name}: tensor "${ROPE_FREQS}" has shape [${rf.shape.join(", ")}], expected [${rotaryDimOf(config) / 2}] (rope.dimension_count / 2)`);
  }

  let tokenizer: Tokenizer | undefined;
  if (!opts.noTokenizer) {
    const vocab = ggufVocab(f);
    if (vocab) {
      if (vocab.pieces.length !== config.vocabSize) {
        throw new QuantlabError("E_FORMAT", `${f.name}: the tokenizer has ${vocab.pieces.length} tokens but the model's vocabulary is ${config.vocabSize}`);
      }
      tokenizer = tokenizerFromVocab(vocab, f.name, metaString(f, HF_JSON_KEY));
    }
  }

  // headers only: every weight is created now, its bytes are read when first touched (io/lazy.ts)
  const store = new TensorStore();
  store.add(f.source);
  const weights = new Map<string, Weight>();
  const fusedByName = new Map(fused.map((t) => [t.gguf, t]));
  for (const t of f.tensors) {
    const ft = fusedByName.get(t.name);
    if (!ft) {
      weights.set(t.name, ggufWeight(store, f, t, opts.place));
      continue;
    }
    // a fused tensor's parts are byte ranges of whole rows (ggml blocks never cross a row): each is its own lazy weight
    const rowBytes = t.byteLength / t.shape[0]!;
    let r = 0;
    for (const p of ft.parts) {
      const sub: GgufTensorInfo = { ...t, name: `${t.name}[${r}:${r + p.rows}]`, shape: [p.rows, t.shape[1]!], offset: t.offset + r * rowBytes, fileOffset: t.fileOffset + r * rowBytes, byteLength: p.rows * rowBytes };
      weights.set(p.name, ggufWeight(store, f, sub, opts.place));
      r += p.rows;
    }
  }
  await store.finishLoad(opts.progress ?? noProgress);
  if (longRope) {
    // llama.cpp: rope.scaling.original_context_length (default: the training context), rope.scaling.attn_factor (default 1)
    const factors = (n: string) => Array.from(dequantizeWeight(weights.get(n)!, n).data);
    config.longRope = {
      shortFactor: factors(ROPE_FACTORS_SHORT), longFactor: factors(ROPE_FACTORS_LONG),
      originalMaxPositionEmbeddings: metaNumber(f, `${config.arch}.rope.scaling.original_context_length`) ?? config.seqLen,
      attentionFactor: metaNumber(f, `${config.arch}.rope.scaling.attn_factor`) ?? 1,
    };
    weights.delete(ROPE_FACTORS_SHORT);
    weights.delete(ROPE_FACTORS_LONG);
    checkConfigLimits(config, f.name, ggufConfigKeys(config.arch));
  }
  if (rf) {
    const factors = (weights.get(ROPE_FREQS) as { kind: "dense"; tensor: Tensor }).tensor.toF32();
    const inferred = ropeScalingFromMetadata(f, config, factors) ?? inferLlama3Scaling(config, factors);
    if (inferred) config.ropeScaling = inferred;
  }
  const metadata: Record<string, unknown> = {};
  for (const [k, v] of f.metadata) if (v.type !== GgufValueType.ARRAY) metadata[k] = typeof v.value === "bigint" ? Number(v.value) : v.value;
  const model: Model = { config, weights, tokenizer, source: { path: f.name, format: "gguf", metadata }, close: () => store.close() };
  const recipe = metaString(f, RECIPE_KEY);
  if (recipe !== undefined) model.recipe = recipe;
  return model;
}

/**
 * The fused tensors a file of a fused architecture holds: llama.cpp's phi3 always reads ffn_up as gate+up
 * (2·n_ff rows) and takes attn_qkv, or separate attn_q/k/v when there is no attn_qkv (create_tensor_qkv).
 */
function ggufFused(f: GgufFile, c: ModelConfig): FusedFileTensor[] {
  return fusedFileTensors(c).filter((t) => !t.gguf.endsWith("attn_qkv.weight") || f.tensor(t.gguf) !== undefined || f.tensor(TensorNames.attnQ(t.layer)) === undefined);
}

/**
 * One tensor as a lazily read Weight: F32/F16/BF16 dense over its bytes, other types as raw blocks.
 * With a placer, the bytes go where it says when they are first read (e.g. when a backend prepares the
 * weight), so a model run from WebAssembly memory is held there once.
 */
export function ggufWeight(store: TensorStore, f: GgufFile, t: GgufTensorInfo, place?: TensorPlacer): Weight {
  const ranges = [{ offset: t.fileOffset, byteLength: t.byteLength }];
  const where = place ? () => place(t.type, t.shape, t.name) : undefined;
  const dtype = t.type === GgmlType.F32 ? "f32" : t.type === GgmlType.F16 ? "f16" : t.type === GgmlType.BF16 ? "bf16" : undefined;
  if (dtype) {
    const n = numel(t.shape);
    const lazy = store.tensor(f.source, t.name, ranges, ([b]) => viewAs(dtype, b!.buffer, b!.byteOffset, n), where, true);
    return { kind: "dense", tensor: new Tensor(dtype, t.shape, lazy) };
  }
  return lazyGgmlWeight(t.type, t.shape, store.tensor(f.source, t.name, ranges, ([b]) => b!, where, true));
}

// ---------------------------------------------------------------------------------------------------
// Llama 3 RoPE scaling ↔ rope_freqs.weight

/** convert_hf_to_gguf.py LlamaModel: factor per frequency pair j (llama.cpp divides θ_j by it). */
export function llama3RopeFactors(c: ModelConfig, s: RopeScalingLlama3): Float32Array {
  const rd = rotaryDimOf(c);
  const half = rd / 2;
  const out = new Float32Array(half);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let j = 0; j < half; j++) {
    const freq = 1 / Math.pow(c.ropeTheta, (2 * j) / rd);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[j] = 1;
    else if (wavelen > lowWavelen) out[j] = s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[j] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/**
 * Llama 3 parameters are not GGUF keys (llama.cpp only reads the rope_freqs tensor), so we also write
 * them under our own namespace, which llama.cpp ignores; on reading they are used only if they
 * reproduce the tensor.
 */
const QL_ROPE = "quantlab.rope_scaling.";

export function ropeScalingMetadata(s: RopeScalingLlama3): Map<string, GgufValue> {
  return new Map<string, GgufValue>([
    [`${QL_ROPE}type`, str("llama3")],
    [`${QL_ROPE}factor`, f32(s.factor)],
    [`${QL_ROPE}low_freq_factor`, f32(s.lowFreqFactor)],
    [`${QL_ROPE}high_freq_factor`, f32(s.highFreqFactor)],
    [`${QL_ROPE}original_context_length`, u32(s.originalMaxPositionEmbeddings)],
  ]);
}

function ropeScalingFromMetadata(f: GgufFile, c: ModelConfig, factors: Float32Array): RopeScalingLlama3 | undefined {
  if (metaString(f, `${QL_ROPE}type`) !== "llama3") return undefined;
  const num = (k: string) => metaNumber(f, `${QL_ROPE}${k}`);
  const s: RopeScalingLlama3 = {
    type: "llama3",
    factor: num("factor") ?? NaN,
    lowFreqFactor: num("low_freq_factor") ?? NaN,
    highFreqFactor: num("high_freq_factor") ?? NaN,
    originalMaxPositionEmbeddings: num("original_context_length") ?? NaN,
  };
  const again = llama3RopeFactors(c, s);
  for (let j = 0; j < factors.length; j++) if (!(Math.abs(again[j]! - factors[j]!) <= 1e-6 * factors[j]!)) return undefined;
  return s;
}

/**
 * The Llama 3 parameters behind a rope_freqs tensor, when the published ones (low 1, high 4, original
 * context 8192, factor = the largest divisor) reproduce it to f32 rounding; otherwise undefined (the
 * tensor itself still drives the forward pass).
 */
export function inferLlama3Scaling(c: ModelConfig, factors: Float32Array): RopeScalingLlama3 | undefined {
  let factor = 0;
  for (const x of factors) factor = Math.max(factor, x);
  if (factor <= 1) return undefined;
  const s: RopeScalingLlama3 = { type: "llama3", factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
  const again = llama3RopeFactors(c, s);
  for (let j = 0; j < factors.length; j++) if (Math.abs(again[j]! - factors[j]!) > 1e-6 * factors[j]!) return undefined;
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Writing

/**
 * The writer's plan for a fused file tensor: its type and shape, decided before any bytes (joinFusedParts joins them). Its
 * parts' rows are concatenated as they are stored: ggml blocks are per row and every part has the same row
 * length (dim), so the parts quantized one by one are byte for byte the fused tensor quantized at once. Parts
 * stored in different types cannot be one ggml tensor: that needs a re-encode (--type), else it is refused.
 */
function planFusedTensor(parts: Weight[], ft: FusedFileTensor | undefined, reencoding: boolean, out: string): Weight {
  const types = parts.map((w, i) => currentGgmlType(w, ft?.parts[i]!.name ?? "fused"));
  const shapes = parts.map((w) => weightShape(w));
  const rows = shapes.reduce((a, s) => a + s[0]!, 0);
  const cols = shapes[0]![1]!;
  const same = types.every((t) => t === types[0]);
  if (!same && !reencoding) {
    throw new QuantlabError("E_UNSUPPORTED", `${out}: ${ft!.gguf} is one tensor in GGUF but its parts are stored as ${ft!.parts.map((p, i) => `${p.name} ${ggmlTypeName(types[i]!)}`).join(", ")}: re-encode them to one type (--type)`);
  }
  // only its type and shape are read (currentGgmlType, weightShape), whatever the type
  return { kind: "ggml", type: same ? types[0]! : GgmlType.F32, shape: [rows, cols], data: new Uint8Array(0) };
}

/** The fused tensor's weight, its parts' stored rows one after another (see planFusedTensor). */
function joinFusedParts(parts: Weight[], plan: Weight, name: string): Weight {
  const shape = weightShape(plan);
  const type = (plan as { type: GgmlType }).type;
  if (parts.every((w) => w.kind === "ggml" && w.type === type)) {
    const bytes = parts.map((w) => (w as { data: Uint8Array }).data);
    const data = new Uint8Array(bytes.reduce((a, b) => a + b.length, 0));
    let o = 0;
    for (const b of bytes) { data.set(b, o); o += b.length; }
    return { kind: "ggml", type, shape, data };
  }
  const dtype = type === GgmlType.F16 ? "f16" : type === GgmlType.BF16 ? "bf16" : "f32";
  if (dtype !== "f32" && parts.every((w) => w.kind === "dense" && w.tensor.dtype === dtype)) {
    const data = new Uint16Array(shape[0]! * shape[1]!);
    let o = 0;
    for (const w of parts) { const d = (w as { tensor: Tensor }).tensor.data as Uint16Array; data.set(d, o); o += d.length; }
    return { kind: "dense", tensor: new Tensor(dtype, shape, data) };
  }
  const data = new Float32Array(shape[0]! * shape[1]!);
  let o = 0;
  for (const w of parts) { const d = dequantizeWeight(w, name).data; data.set(d, o); o += d.length; }
  return { kind: "dense", tensor: new Tensor("f32", shape, data) };
}

export interface WriteGgufModelOptions {
  /** re-encode 2-D tensors as this type (1-D tensors stay F32); default: keep each tensor's type */
  type?: GgmlType;
  /** per-tensor type chosen by a caller (quantization presets); wins over `type`. Names are the file's: a fused
   * architecture's attn_qkv / ffn_up (gate + up), not their canonical parts */
  typeFor?: (name: string, shape: readonly number[]) => GgmlType | undefined;
  /** `general.file_type` (llama_ftype) to write; default: from the most common 2-D tensor type */
  fileType?: number;
  /** extra metadata (e.g. quantization settings), written after ours */
  extraMetadata?: Map<string, GgufValue>;
  /** encodes tensors re-encoded to a ggml block type (default: the TypeScript reference, one thread) */
  encoder?: GgmlEncoder;
  progress?: Progress;
  /** write tensors holding NaN/Inf instead of refusing them (model/finite.ts) */
  allowNonFinite?: boolean;
}

export interface WriteReport {
  tensors: { name: string; shape: number[]; type: string; bytes: number; fallback?: string }[];
  bytes: number;
  /** what the file could not carry and was left out (io/transforms-carry.ts); the caller shows these */
  warnings?: string[];
}

const u32 = (value: number): GgufValue => ({ type: GgufValueType.UINT32, value });
const f32 = (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value });
const str = (value: string): GgufValue => ({ type: GgufValueType.STRING, value });

/**
 * Metadata for a config (keys as llama.cpp reads them, types as gguf-py writes them), under the
 * architecture's own prefix (`llama.*`, `qwen2.*`, `qwen3.*`: llama.cpp reads every key as
 * `<general.architecture>.<key>`).
 */
export function llamaMetadata(c: ModelConfig): Map<string, GgufValue> {
  const m = new Map<string, GgufValue>();
  const a = c.arch;
  m.set("general.architecture", str(a));
  if (c.name) m.set("general.name", str(c.name));
  m.set(`${a}.vocab_size`, u32(c.vocabSize));
  m.set(`${a}.context_length`, u32(c.seqLen));
  m.set(`${a}.embedding_length`, u32(c.dim));
  m.set(`${a}.block_count`, u32(c.nLayers));
  m.set(`${a}.feed_forward_length`, u32(c.hiddenDim));
  m.set(`${a}.rope.dimension_count`, u32(rotaryDimOf(c)));
  m.set(`${a}.attention.head_count`, u32(c.nHeads));
  m.set(`${a}.attention.head_count_kv`, u32(c.nKvHeads));
  if (c.headDim * c.nHeads !== c.dim) {
    m.set(`${a}.attention.key_length`, u32(c.headDim));
    m.set(`${a}.attention.value_length`, u32(c.headDim));
  }
  m.set(`${a}.rope.freq_base`, f32(c.ropeTheta));
  m.set(`${a}.attention.layer_norm_rms_epsilon`, f32(c.normEps));
  if (a === "gemma2" || a === "gemma3") {
    for (const [k, v] of gemmaMetadata(c)) m.set(k, v);
    return m;
  }
  const extra = ([["query scale", c.attnScale], ["attention soft-cap", c.attnSoftcap], ["final soft-cap", c.finalSoftcap], ["local RoPE base", c.ropeThetaLocal], ["linear RoPE scaling", c.ropeLinearFactor], ["per-layer windows", c.slidingLayers]] as const).find(([, v]) => v !== undefined);
  if (extra) throw new QuantlabError("E_UNSUPPORTED", `GGUF ${a}: llama.cpp's ${a} architecture has no ${extra[0]}`);
  if (a === "olmo2" && c.headDim * c.nHeads !== c.dim) throw new QuantlabError("E_UNSUPPORTED", `GGUF olmo2: llama.cpp's olmo2 takes the head size from embedding_length / head_count (${c.dim / c.nHeads}), not ${c.headDim}`);
  if (c.slidingWindow !== undefined && a === "olmo2") throw new QuantlabError("E_UNSUPPORTED", "GGUF olmo2: a sliding window would make llama.cpp slide 3 of every 4 layers (OLMo 3)");
  if (c.slidingWindow !== undefined) m.set(`${a}.attention.sliding_window`, u32(c.slidingWindow));
  if (c.longRope) {
    // convert_hf_to_gguf.py Phi3MiniModel: add_rope_scaling_orig_ctx_len, add_rope_scaling_attn_factors (llama.cpp
    // multiplies its rope attn_factor by it: llama-context.cpp cparams.yarn_attn_factor *= hparams.rope_attn_factor)
    m.set(`${a}.rope.scaling.original_context_length`, u32(c.longRope.originalMaxPositionEmbeddings));
    m.set(`${a}.rope.scaling.attn_factor`, f32(c.longRope.attentionFactor));
  }
  if (c.multipliers) {
    m.set(`${a}.embedding_scale`, f32(c.multipliers.embedding));
    m.set(`${a}.residual_scale`, f32(c.multipliers.residual));
    m.set(`${a}.attention.scale`, f32(c.multipliers.attention));
    m.set(`${a}.logit_scale`, f32(c.multipliers.logits));
  }
  return m;
}

/**
 * `gemma2.*` / `gemma3.*` keys for what llama.cpp reads (gemmaConfig); what it cannot represent is refused:
 * a query scale other than the one it derives, Gemma 2 without either soft-cap (it always caps), an attention
 * soft-cap on Gemma 3 (it never caps), sliding layers that are not one period of its pattern.
 */
function gemmaMetadata(c: ModelConfig): Map<string, GgufValue> {
  const a = c.arch;
  const m = new Map<string, GgufValue>();
  const want = llamaCppGemmaScale(c);
  const have = c.attnScale;
  if (!(have === want || (have !== undefined && want !== undefined && Math.abs(have - want) <= 1e-6 * want) || (want === undefined && have !== undefined && Math.abs(have * Math.sqrt(c.headDim) - 1) <= 1e-6))) {
    throw new QuantlabError("E_UNSUPPORTED", `GGUF ${a}: query scale ${have ?? 1 / Math.sqrt(c.headDim)} (query_pre_attn_scalar^-0.5) is not what llama.cpp uses for this model (${want ?? 1 / Math.sqrt(c.headDim)}: it does not read the field)`);
  }
  if (a === "gemma2") {
    if (c.attnSoftcap === undefined || c.finalSoftcap === undefined) throw new QuantlabError("E_UNSUPPORTED", `GGUF gemma2: llama.cpp always soft-caps attention and final logits; this model has no ${c.attnSoftcap === undefined ? "attention" : "final"} soft-cap`);
  } else if (c.attnSoftcap !== undefined) throw new QuantlabError("E_UNSUPPORTED", `GGUF gemma3: llama.cpp's gemma3 has no attention logit soft-cap (this model's is ${c.attnSoftcap})`);
  if (c.attnSoftcap !== undefined) m.set(`${a}.attn_logit_softcapping`, f32(c.attnSoftcap));
  if (c.finalSoftcap !== undefined) m.set(`${a}.final_logit_softcapping`, f32(c.finalSoftcap));
  if (c.slidingWindow !== undefined) {
    const period = c.slidingLayers === undefined ? 0 : swaPeriodOf(c.slidingLayers);
    if (period === undefined) throw new QuantlabError("E_UNSUPPORTED", `GGUF ${a}: sliding layers [${c.slidingLayers!.map((b) => (b ? "S" : "G")).join("")}] are not a period of llama.cpp's pattern (layer il slides when il % P < P − 1)`);
    m.set(`${a}.attention.sliding_window`, u32(c.slidingWindow));
    m.set(`${a}.attention.sliding_window_pattern`, u32(period));
    m.set(`${a}.rope.freq_base_swa`, f32(c.ropeThetaLocal ?? c.ropeTheta));
  } else if (a === "gemma2") {
    // llama.cpp's gemma2 always slides (default 4096): a window as long as the context is full attention
    m.set(`${a}.attention.sliding_window`, u32(c.seqLen));
  }
  if (c.ropeLinearFactor !== undefined) {
    if (a !== "gemma3") throw new QuantlabError("E_UNSUPPORTED", `GGUF ${a}: linear RoPE scaling is Gemma 3's only`);
    m.set(`${a}.rope.scaling.type`, str("linear"));
    m.set(`${a}.rope.scaling.factor`, f32(c.ropeLinearFactor));
  }
  return m;
}

/** llama.cpp set_swa_pattern's period P for a sliding-layer pattern (layer il slides when il % P < P − 1), or undefined. */
function swaPeriodOf(layers: readonly boolean[]): number | undefined {
  if (layers.every((b) => b)) return 0;
  for (let n = 1; n <= layers.length + 1; n++) if (layers.every((b, il) => b === il % n < n - 1)) return n;
  return undefined;
}

/** tokenizer.ggml.* for a vocabulary (gguf-py `SpecialVocab` / `add_tokenizer_model` keys). */
export function vocabMetadata(v: Vocab): Map<string, GgufValue> {
  const m = new Map<string, GgufValue>();
  m.set("tokenizer.ggml.model", str(v.model));
  if (v.pre !== undefined) m.set("tokenizer.ggml.pre", str(v.pre));
  m.set("tokenizer.ggml.tokens", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.STRING, items: v.pieces } });
  m.set("tokenizer.ggml.scores", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.FLOAT32, items: v.scores } });
  m.set("tokenizer.ggml.token_type", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.INT32, items: v.types } });
  if (v.merges) m.set("tokenizer.ggml.merges", { type: GgufValueType.ARRAY, value: { itemType: GgufValueType.STRING, items: v.merges } });
  if (v.bosId >= 0) m.set("tokenizer.ggml.bos_token_id", u32(v.bosId));
  if (v.eosId >= 0) m.set("tokenizer.ggml.eos_token_id", u32(v.eosId));
  if (v.unkId !== undefined) m.set("tokenizer.ggml.unknown_token_id", u32(v.unkId));
  if (v.padId !== undefined) m.set("tokenizer.ggml.padding_token_id", u32(v.padId));
  m.set("tokenizer.ggml.add_bos_token", { type: GgufValueType.BOOL, value: v.addBos });
  m.set("tokenizer.ggml.add_eos_token", { type: GgufValueType.BOOL, value: false });
  if (v.model === "llama" && v.addSpacePrefix !== undefined) m.set("tokenizer.ggml.add_space_prefix", { type: GgufValueType.BOOL, value: v.addSpacePrefix });
  return m;
}

/**
 * HF checkpoints often have more embedding rows than tokenizer entries (vocab_size rounded up); GGUF needs
 * one token per row, so the rest become "[PAD<id>]" tokens of type UNUSED, as convert_hf_to_gguf.py does.
 */
export function padVocab(v: Vocab, n: number): Vocab {
  const pieces = [...v.pieces];
  const scores = new Float32Array(n);
  scores.set(v.scores);
  const types = new Int32Array(n).fill(5);
  types.set(v.types);
  for (let id = v.pieces.length; id < n; id++) pieces.push(`[PAD${id}]`);
  return { ...v, pieces, scores, types };
}

/** Tensor names in the order llama.cpp's converters write them. */
export function canonicalOrder(c: ModelConfig, names: Iterable<string>): string[] {
  const order: string[] = [TensorNames.tokenEmbd];
  if (!c.tiedEmbeddings) order.push(TensorNames.output);
  order.push(TensorNames.outputNorm, ROPE_FREQS, ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT);
  for (let l = 0; l < c.nLayers; l++) {
    order.push(TensorNames.attnNorm(l), TensorNames.attnQkv(l), TensorNames.attnQ(l), TensorNames.attnK(l), TensorNames.attnV(l), TensorNames.attnOutput(l), TensorNames.postAttnNorm(l));
    order.push(TensorNames.ffnNorm(l), TensorNames.ffnGate(l), TensorNames.ffnDown(l), TensorNames.ffnUp(l), TensorNames.postFfnNorm(l));
  }
  const have = new Set(names);
  const out = order.filter((n) => have.has(n));
  for (const n of have) if (!out.includes(n)) out.push(n);
  return out;
}

/** Writes a Model as a GGUF v3 `llama` file through `sink`, streaming one tensor at a time. */
export async function writeGgufModel(model: Model, sink: ByteSink, opts: WriteGgufModelOptions = {}, name = "output"): Promise<WriteReport> {
  const c = model.config;
  const expected = expectedShapes(c);
  for (const [n] of expected) if (!model.weights.has(n)) throw new QuantlabError("E_ARG", `${name}: model has no tensor "${n}"`);
  const warnings = uncarriedTransforms(model, "GGUF", name);

  const weights = new Map(model.weights);
  // llama.cpp's gemma2 reads no output.weight (the head is token_embd); its olmo2 requires one
  if (c.arch === "gemma2" && weights.has(TensorNames.output)) throw new QuantlabError("E_UNSUPPORTED", `${name}: llama.cpp's gemma2 always ties the output to token_embd.weight; this model has a separate ${TensorNames.output}`);
  if (c.arch === "olmo2" && !weights.has(TensorNames.output)) weights.set(TensorNames.output, weights.get(TensorNames.tokenEmbd)!);
  if (c.ropeScaling?.type === "llama3" && !weights.has(ROPE_FREQS)) {
    const fac = llama3RopeFactors(c, c.ropeScaling);
    weights.set(ROPE_FREQS, { kind: "dense", tensor: new Tensor("f32", [fac.length], fac) });
  }
  if (c.longRope) {
    const f = (v: number[]): Weight => ({ kind: "dense", tensor: new Tensor("f32", [v.length], Float32Array.from(v)) });
    weights.set(ROPE_FACTORS_LONG, f(c.longRope.longFactor));
    weights.set(ROPE_FACTORS_SHORT, f(c.longRope.shortFactor));
  }
  // fused architectures (Phi-3): the file holds attn_qkv and ffn_up = gate + up; each is put together when written
  const fusedParts = new Map<string, Weight[]>();
  for (const ft of fusedFileTensors(c)) {
    const parts = ft.parts.map((p) => weights.get(p.name)!);
    for (const p of ft.parts) weights.delete(p.name);
    fusedParts.set(ft.gguf, parts);
    weights.set(ft.gguf, planFusedTensor(parts, ft, opts.type !== undefined || opts.typeFor !== undefined, name));
  }
  const names = canonicalOrder(c, weights.keys());
  const plan = names.map((n) => {
    const w = weights.get(n)!;
    const shape = [...weightShape(w)];
    // 1-D tensors stored as ggml (rows=1) are written 1-D as llama.cpp expects norms
    const outShape = expected.get(n)?.length === 1 || n === ROPE_FREQS ? [shape.reduce((a, b) => a * b, 1)] : shape;
    const cur = currentGgmlType(w, n);
    const forced = opts.typeFor?.(n, outShape);
    const { type, fallback } = forced !== undefined ? { type: forced, fallback: undefined } : chooseType(outShape, opts.type, cur);
    return { name: n, w, shape: outShape, type, fallback };
  });

  const w = new GgufWriter(sink, name);
  for (const [k, v] of llamaMetadata(c)) w.setKV(k, v);
  w.setKV("general.quantization_version", u32(2)); // ggml.h GGML_QNT_VERSION
  const counts = new Map<GgmlType, number>();
  for (const p of plan) if (p.shape.length >= 2) counts.set(p.type, (counts.get(p.type) ?? 0) + 1);
  const mostCommon = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
  const ft = opts.fileType ?? (mostCommon !== undefined ? GGML_TYPES[mostCommon].ftype : undefined);
  if (ft !== undefined) w.setKV("general.file_type", u32(ft));
  if (model.tokenizer) {
    let v = model.tokenizer.vocab();
    if (v.pieces.length < c.vocabSize && model.tokenizer instanceof HfTokenizer) v = padVocab(v, c.vocabSize); // built outside loadHfModel
    if (v.pieces.length !== c.vocabSize) throw new QuantlabError("E_FORMAT", `${name}: the tokenizer has ${v.pieces.length} tokens but the model's vocabulary is ${c.vocabSize}`);
    for (const [k, val] of vocabMetadata(v)) w.setKV(k, val);
    // the exact tokenizer.json travels along (gpt2 and SentencePiece-style alike), so our own files round-trip
    if (model.tokenizer instanceof HfTokenizer) w.setKV(HF_JSON_KEY, str(JSON.stringify(model.tokenizer.json)));
    const extra = tokenizerExtraMetadata(model, v, name); // chat template, eot, add_eos (io/gguf-tokenizer.ts)
    for (const [k, val] of extra.metadata) w.setKV(k, val);
    if (extra.warnings.length) (warnings as string[]).push(...extra.warnings);
  }
  if (c.ropeScaling) for (const [k, v] of ropeScalingMetadata(c.ropeScaling)) w.setKV(k, v);
  // the recipe that made the model (algos/recipe.ts), so the file can be reproduced from itself
  if (model.recipe !== undefined) w.setKV(RECIPE_KEY, str(model.recipe));
  if (opts.extraMetadata) for (const [k, v] of opts.extraMetadata) w.setKV(k, v);
  for (const p of plan) w.addTensor({ name: p.name, shape: p.shape, type: p.type });
  await w.writeHeader();

  const progress = opts.progress ?? noProgress;
  progress.start(plan.length, "writing");
  const report: WriteReport = { tensors: [], bytes: 0, ...(warnings.length ? { warnings } : {}) };
  // ggml weights stored as they are (a quantized model's blocks, possibly encoded on first read: algos/ggml-quant.ts
  // deferEncoding) are brought in one tensor ahead: the next one is read (encoded) while this one's write is in flight
  const warmed = new Set<Weight>();
  for (const [i, p] of plan.entries()) {
    const parts = fusedParts.get(p.name);
    const partsLoaded = parts?.map((w) => isWeightLoaded(w));
    if (parts) p.w = joinFusedParts(parts, p.w, p.name);
    // a lazy weight this writer brings in is let go again once written: converting streams the model
    const wasLoaded = isWeightLoaded(p.w) && !warmed.has(p.w);
    warmed.delete(p.w);
    const maxAbs = opts.allowNonFinite ? undefined : checkFiniteWeight(p.w, p.name, model.source.path, `refusing to write ${name}`, true);
    const writing = encodeWeightChunked(p.w, p.name, p.type, opts.encoder ?? refGgmlEncoder, maxAbs === undefined ? undefined : { where: model.source.path, tensor: p.name, maxAbs }, (b) => w.writeTensorData(p.name, b));
    const next = plan[i + 1];
    if (next && !fusedParts.has(next.name) && next.w.kind === "ggml" && next.w.type === next.type && !isWeightLoaded(next.w)) {
      try {
        void next.w.data;
        warmed.add(next.w);
      } catch (e) {
        await writing.catch(() => undefined);
        throw e;
      }
    }
    const bytes = await writing;
    if (!wasLoaded) releaseWeight(p.w);
    // the joined copy goes; parts this writer brought in are let go again
    if (parts) parts.forEach((w, i) => { if (!partsLoaded![i]) releaseWeight(w); });
    report.tensors.push({ name: p.name, shape: p.shape, type: ggmlTypeName(p.type), bytes, ...(p.fallback ? { fallback: p.fallback } : {}) });
    report.bytes += bytes;
    progress.tick();
  }
  progress.done();
  w.finish();
  return report;
}
