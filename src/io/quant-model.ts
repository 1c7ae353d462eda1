/**
 * A model whose weights may be quantlab QuantizedTensors, as one safetensors file (layout in
 * docs/quant-format.md): canonical tensor names (token_embd.weight, blk.N.attn_q.weight, … — rows in
 * quantlab's interleaved RoPE order, no HF permutation), dense tensors as f32/f16/bf16, quantized ones as
 * the side arrays of quant/serialize.ts, and in __metadata__:
 *   "quantlab.format"        = "quantlab-quantized-model/1"
 *   "quantlab.model_config"  = JSON of the ModelConfig
 *   "quantlab.tokenizer", "quantlab.tokenizer_config" = tokenizer.json / tokenizer_config.json (as saveSafetensorsFile)
 *   "quantlab.quant.<name>"  = {"spec", "shape", "layout"} per quantized tensor
 *   "quantlab.recipe"        = the canonical JSON of the recipe that made the model (algos/recipe.ts)
 * Pure (no Node APIs): works on a SafetensorsFile and produces SafetensorsEntry lists.
 */
import { QuantlabError, namingFile } from "../core/errors.js";
import { numel } from "../core/tensor.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { ARCHITECTURES, checkConfigLimits, checkLayersBacked, expectedShapes, ggufLayerOf, isArchitecture, type ConfigKeys, type ModelConfig } from "../model/config.js";
import { describe, jsonObject, parseJsonBounded } from "../core/limits.js";
import { HfTokenizer, vocabToTokenizerJson, type TokenizerJson } from "../model/tokenizers/hf.js";
import type { Model } from "../model/weights.js";
import { INPUT_TRANSFORMS_KEY, checkInputTransforms, inputTransformsFromJson, inputTransformsToJson } from "../model/transforms.js";
import { checkQuantEntries, fromEntries, isQuantEntryName, quantEntryLayout, quantizedNames, toEntries, type TensorEntry } from "../quant/serialize.js";
import { QTensor } from "../quant/tensor.js";
import type { SafetensorsEntry, SafetensorsFile } from "./safetensors.js";
import { RECIPE_KEY, type TensorPlacer } from "./gguf-model.js";
import { GgmlType } from "../ggml/types.js";
import { TensorStore } from "./lazy.js";
import { checkFiniteWeight } from "../model/finite.js";
import { isWeightLoaded, releaseWeight, type Weight } from "../core/weight.js";

export const QUANT_MODEL_FORMAT = "quantlab-quantized-model/1";

export function isQuantModelMetadata(md: Record<string, string>): boolean {
  return md["quantlab.format"] === QUANT_MODEL_FORMAT;
}

/** Entries and metadata of a model with dense and/or QTensor weights (other weight kinds are written as f32). */
export function quantModelEntries(model: Model, opts: { allowNonFinite?: boolean; name?: string } = {}): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  // each tensor is checked when the writer reaches it (model/finite.ts), unless the caller allows NaN/Inf
  const check = (w: Weight, name: string) => {
    if (!opts.allowNonFinite) checkFiniteWeight(w, name, model.source.path, `refusing to write ${opts.name ?? "the output"}`, true);
  };
  const metadata: Record<string, string> = {
    format: "pt",
    "quantlab.format": QUANT_MODEL_FORMAT,
    "quantlab.model_config": JSON.stringify(model.config),
  };
  const t = model.tokenizer;
  if (t instanceof HfTokenizer) {
    metadata["quantlab.tokenizer"] = JSON.stringify(t.json);
    metadata["quantlab.tokenizer_config"] = JSON.stringify(t.config);
  } else if (t) {
    const v = t.vocab();
    metadata["quantlab.tokenizer"] = JSON.stringify(vocabToTokenizerJson(v));
    metadata["quantlab.tokenizer_config"] = JSON.stringify({ add_bos_token: v.addBos, bos_token: v.pieces[v.bosId], eos_token: v.pieces[v.eosId] });
  }
  // run-time input transforms (online rotation, W8A8 activations) of PTQ models (algos/ptq.ts)
  if (model.inputTransforms) metadata[INPUT_TRANSFORMS_KEY] = inputTransformsToJson(model.inputTransforms);
  if (model.recipe !== undefined) metadata[RECIPE_KEY] = model.recipe;
  const entries: SafetensorsEntry[] = [];
  const names = [...expectedShapes(model.config).keys()].filter((n) => model.weights.has(n));
  for (const name of names) {
    const w = model.weights.get(name)!;
    if (w.kind === "quant" && w.q instanceof QTensor) {
      check(w, name);
      const { tensors, metadata: md } = toEntries(name, w.q);
      Object.assign(metadata, md);
      for (const [tn, e] of Object.entries(tensors)) entries.push({ name: tn, dtype: e.dtype, shape: e.shape, bytes: () => e.bytes });
    } else if (w.kind === "dense" && (w.tensor.dtype === "f32" || w.tensor.dtype === "f16" || w.tensor.dtype === "bf16")) {
      const t = w.tensor;
      entries.push({ name, dtype: t.dtype, shape: [...t.shape], bytes: () => {
        // read when the writer gets here, and let go again if this brought a lazy weight in (streaming)
        const wasLoaded = isWeightLoaded(w);
        check(w, name);
        const d = t.data;
        if (!wasLoaded) releaseWeight(w);
        return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
      } });
    } else {
      const shape = w.kind === "dense" ? w.tensor.shape : w.kind === "ggml" ? w.shape : w.q.shape;
      entries.push({ name, dtype: "f32", shape: [...shape], bytes: () => { check(w, name); const f = dequantizeWeight(w, name).data; return new Uint8Array(f.buffer, f.byteOffset, f.byteLength); } });
    }
  }
  return { entries, metadata };
}

/**
 * Reads a quantized-model safetensors file back into a Model (quantized weights stay QTensors). Every
 * entry is checked against the header now; bytes are read on first access (io/lazy.ts), so the model
 * keeps `st`'s source open: `model.close()` closes it. On an error the caller still owns `st`.
 */
export async function readQuantModel(st: SafetensorsFile, opts: { place?: TensorPlacer } = {}): Promise<Model> {
  const md = st.metadata;
  if (!isQuantModelMetadata(md)) throw new QuantlabError("E_FORMAT", `${st.name}: not a quantlab quantized model (metadata "quantlab.format" is not ${QUANT_MODEL_FORMAT})`);
  const config = modelConfigFromJson(md["quantlab.model_config"], `${st.name}: metadata "quantlab.model_config"`);
  // before anything loops over the layers: the count must be what the tensors back (side entries included)
  checkLayersBacked(config.nLayers, st.tensors.map((t) => t.name), ggufLayerOf, st.name, "quantlab.model_config nLayers", "blk.N.*");
  const expected = expectedShapes(config);
  const quantNames = new Set(quantizedNames(md));
  for (const t of st.tensors) {
    if (isQuantEntryName(t.name) && !ENTRY_DTYPES.has(t.dtype.toLowerCase())) throw new QuantlabError("E_FORMAT", `${st.name}: tensor "${t.name}" has dtype ${t.dtype}`);
  }
  const store = new TensorStore();
  store.add(st.source);
  const weights = new Map<string, Weight>();
  for (const [name, shape] of expected) {
    if (quantNames.has(name)) {
      let q: QTensor;
      try {
        q = lazyQuantized(store, st, name, shape, opts.place?.quant);
      } catch (e) {
        throw namingFile(e, st.name); // quant/serialize.ts names the tensor, not the file
      }
      weights.set(name, { kind: "quant", q });
      continue;
    }
    const info = st.tensor(name);
    if (!info) throw new QuantlabError("E_FORMAT", `${st.name}: missing tensor "${name}"`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]) || numel(info.shape) !== numel(shape)) {
      throw new QuantlabError("E_FORMAT", `${st.name}: tensor "${name}" has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`);
    }
    // f32 / f16 matrices (a tied embedding) are read straight into the memory the kernels run on, when offered
    const type = info.dtype === "F32" ? GgmlType.F32 : info.dtype === "F16" ? GgmlType.F16 : undefined;
    const place = opts.place && type !== undefined && shape.length === 2 ? () => opts.place!(type, shape, name) : undefined;
    weights.set(name, { kind: "dense", tensor: st.lazyTensor(store, info, undefined, place) });
  }
  await store.finishLoad();
  let tokenizer: HfTokenizer | undefined;
  const tj = md["quantlab.tokenizer"];
  if (tj !== undefined) {
    try {
      const where = `${st.name}: metadata "quantlab.tokenizer"`;
      const tc = md["quantlab.tokenizer_config"];
      const cfg = tc !== undefined ? jsonObject(parseJsonBounded(tc, `${st.name}: metadata "quantlab.tokenizer_config"`), st.name, 'metadata "quantlab.tokenizer_config"') : {};
      tokenizer = new HfTokenizer(parseJsonBounded(tj, where) as TokenizerJson, cfg, where, 0, { maxVocab: config.vocabSize, configName: `${st.name}: metadata "quantlab.tokenizer_config"` });
      if (tokenizer.vocabSize > config.vocabSize) throw new QuantlabError("E_FORMAT", `${where}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`);
    } catch (e) {
      await store.close();
      throw e;
    }
  }
  const model: Model = { config, weights, source: { path: st.name, format: "safetensors", metadata: { "quantlab.format": QUANT_MODEL_FORMAT } }, close: () => store.close() };
  if (tokenizer) model.tokenizer = tokenizer;
  if (md[RECIPE_KEY] !== undefined) model.recipe = md[RECIPE_KEY];
  const tt = md[INPUT_TRANSFORMS_KEY];
  if (tt !== undefined) {
    model.inputTransforms = inputTransformsFromJson(tt, st.name);
    checkInputTransforms(model.inputTransforms, config.hiddenDim, st.name);
  }
  return model;
}

/**
 * The ModelConfig a quantized-model file carries as JSON, every field checked (type, limits of
 * core/limits.ts): the numbers drive loops and allocations, so a corrupt one must fail here.
 */
export function modelConfigFromJson(text: string | undefined, where: string): ModelConfig {
  if (text === undefined) throw new QuantlabError("E_FORMAT", `${where} is missing`);
  const o = jsonObject(parseJsonBounded(text, where), where, "the value");
  if (typeof o.arch !== "string" || !isArchitecture(o.arch)) throw new QuantlabError("E_FORMAT", `${where}: arch = ${describe(o.arch)}, expected one of ${ARCHITECTURES.join(", ")}`);
  const arch = o.arch;
  if (typeof o.tiedEmbeddings !== "boolean") throw new QuantlabError("E_FORMAT", `${where}: tiedEmbeddings = ${describe(o.tiedEmbeddings)}, expected true or false`);
  if (o.name !== undefined && typeof o.name !== "string") throw new QuantlabError("E_FORMAT", `${where}: name = ${describe(o.name)}, expected a string`);
  const num = (k: string): number => {
    const v = o[k];
    if (typeof v !== "number") throw new QuantlabError("E_FORMAT", `${where}: ${k} = ${describe(v)}, expected a number`);
    return v;
  };
  const c: ModelConfig = {
    arch, dim: num("dim"), hiddenDim: num("hiddenDim"), nLayers: num("nLayers"), nHeads: num("nHeads"), nKvHeads: num("nKvHeads"),
    headDim: num("headDim"), vocabSize: num("vocabSize"), seqLen: num("seqLen"), ropeTheta: num("ropeTheta"), normEps: num("normEps"),
    tiedEmbeddings: o.tiedEmbeddings,
  };
  if (typeof o.name === "string") c.name = o.name;
  if (o.ropeScaling !== undefined) {
    const r = jsonObject(o.ropeScaling, where, "ropeScaling");
    if (r.type !== "llama3") throw new QuantlabError("E_FORMAT", `${where}: ropeScaling.type = ${describe(r.type)}, expected "llama3"`);
    const rn = (k: string) => (typeof r[k] === "number" ? (r[k] as number) : NaN);
    c.ropeScaling = { type: "llama3", factor: rn("factor"), lowFreqFactor: rn("lowFreqFactor"), highFreqFactor: rn("highFreqFactor"), originalMaxPositionEmbeddings: rn("originalMaxPositionEmbeddings") };
  }
  // the block's own parameters (model/config.ts): a field the file has must be read, never dropped
  const optNum = (k: "slidingWindow" | "ropeThetaLocal" | "ropeLinearFactor" | "attnScale" | "attnSoftcap" | "finalSoftcap") => {
    if (o[k] === undefined) return;
    if (typeof o[k] !== "number") throw new QuantlabError("E_FORMAT", `${where}: ${k} = ${describe(o[k])}, expected a number`);
    c[k] = o[k] as number;
  };
  for (const k of ["slidingWindow", "ropeThetaLocal", "ropeLinearFactor", "attnScale", "attnSoftcap", "finalSoftcap"] as const) optNum(k);
  if (o.slidingLayers !== undefined) {
    if (!Array.isArray(o.slidingLayers) || o.slidingLayers.some((b) => typeof b !== "boolean")) throw new QuantlabError("E_FORMAT", `${where}: slidingLayers = ${describe(o.slidingLayers)}, expected booleans`);
    c.slidingLayers = o.slidingLayers as boolean[];
  }
  if (o.multipliers !== undefined) {
    const r = jsonObject(o.multipliers, where, "multipliers");
    const rn = (k: string) => (typeof r[k] === "number" ? (r[k] as number) : NaN);
    c.multipliers = { embedding: rn("embedding"), residual: rn("residual"), attention: rn("attention"), logits: rn("logits") };
  }
  if (o.rotaryDim !== undefined) c.rotaryDim = num("rotaryDim");
  if (o.longRope !== undefined) {
    const r = jsonObject(o.longRope, where, "longRope");
    const arr = (k: string): number[] => {
      const v = r[k];
      if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) throw new QuantlabError("E_FORMAT", `${where}: longRope.${k} = ${describe(v)}, expected an array of numbers`);
      return v as number[];
    };
    const rn = (k: string) => (typeof r[k] === "number" ? (r[k] as number) : NaN);
    c.longRope = { shortFactor: arr("shortFactor"), longFactor: arr("longFactor"), originalMaxPositionEmbeddings: rn("originalMaxPositionEmbeddings"), attentionFactor: rn("attentionFactor") };
  }
  const known = new Set(["arch", "dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "headDim", "vocabSize", "seqLen", "ropeTheta", "normEps", "tiedEmbeddings", "name", "ropeScaling", "slidingWindow", "ropeThetaLocal", "ropeLinearFactor", "attnScale", "attnSoftcap", "finalSoftcap", "slidingLayers", "multipliers", "rotaryDim", "longRope"]);
  const unknown = Object.keys(o).find((k) => !known.has(k));
  if (unknown) throw new QuantlabError("E_UNSUPPORTED", `${where}: config field "${unknown}" is not read by this version`);
  const keys = Object.fromEntries(["dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "headDim", "vocabSize", "seqLen", "ropeTheta", "normEps"].map((k) => [k, k])) as ConfigKeys;
  checkConfigLimits(c, where, keys);
  return c;
}

const ENTRY_DTYPES = new Set(["u8", "i32", "f16", "bf16", "f32"]);

/**
 * A QTensor over its side entries in `st`, checked against the header (dtypes, counts, shape) now and
 * read on first access: one byte range per entry, decoded by fromEntries.
 */
function lazyQuantized(store: TensorStore, st: SafetensorsFile, name: string, shape: readonly number[], placeCodes?: TensorPlacer["quant"]): QTensor {
  const layout = quantEntryLayout(name, st.metadata);
  if (layout.shape.length !== shape.length || layout.shape.some((d, i) => d !== shape[i])) {
    throw new QuantlabError("E_FORMAT", `${st.name}: quantized tensor "${name}" has shape [${layout.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
  const present = checkQuantEntries(layout, (n) => st.tensor(n)).map((p) => st.tensor(p.name)!);
  const ranges = present.map((t) => ({ offset: t.fileOffset, byteLength: t.byteLength }));
  // the codes (most of the bytes) are read straight into the memory the kernels run on when offered;
  // every part is a buffer read for this tensor alone, so fromEntries uses it without a copy
  const codesAt = present.findIndex((t) => t.name === `${name}.qcodes`);
  // not pinned: releasing the weight after prepare drops its JS side arrays; the placed codes stay with the prepared weight
  const place = placeCodes && codesAt >= 0 ? { range: codesAt, pin: false, place: () => { const v = placeCodes(layout.spec, layout.shape, name); return v?.length === ranges[codesAt]!.byteLength ? v : undefined; } } : undefined;
  const lazy = store.tensor(st.source, name, ranges, (parts) => {
    const entries = new Map<string, TensorEntry>(present.map((t, i) => [t.name, { dtype: t.dtype.toLowerCase() as TensorEntry["dtype"], shape: t.shape, bytes: parts[i]!, owned: true }]));
    return fromEntries(name, (n) => entries.get(n), st.metadata);
  }, place);
  const storageBits = 8 * ranges.reduce((a, r) => a + r.byteLength, 0);
  return QTensor.lazy(layout.spec, layout.shape, storageBits, lazy);
}
