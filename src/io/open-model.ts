/**
 * A model from byte sources that carry file names — what the browser lab is handed when a person picks
 * files or a folder, and what io/node/load.ts does for paths. The format is told by the same rules in
 * both (`sniffFormat`): GGUF magic, safetensors (name or u64 header length + '{'), llama2.c `.bin`.
 * A llama2.c checkpoint takes its tokenizer from a file beside it named tok<vocab>.bin or tokenizer.bin
 * (llama2.c's naming); a folder with config.json is a Hugging Face directory. Isomorphic.
 */
import { QuantlabError } from "../core/errors.js";
import type { Progress } from "../core/progress.js";
import { HfTokenizer, type TokenizerJson } from "../model/tokenizers/hf.js";
import type { Llama2cTokenizer } from "../model/tokenizers/llama2c.js";
import type { Model } from "../model/weights.js";
import { openGguf } from "./gguf.js";
import { readGgufModel, type TensorPlacer } from "./gguf-model.js";
import { loadHfModel, type DirSource, type HfConfigJson } from "./hf.js";
import { llama2cModel, parseLlama2cHeader, readLlama2cCheckpoint, readLlama2cTokenizer } from "./llama2c.js";
import { isQuantModelMetadata, readQuantModel } from "./quant-model.js";
import { openSafetensors } from "./safetensors.js";
import type { ByteSource } from "./source.js";

/** A file: its name (no directory part) and its bytes. */
export interface NamedSource {
  name: string;
  source: ByteSource;
}

export type SourceFormat = "llama2c" | "gguf" | "safetensors";

/** Which reader takes the file: GGUF by its magic, safetensors by name or header, llama2.c by `.bin`. */
export async function sniffFormat(src: ByteSource, name: string): Promise<SourceFormat> {
  if (src.size < 8) throw new QuantlabError("E_FORMAT", `${name}: truncated: only ${src.size} bytes, too short for any model format`);
  const head = await src.read(0, 8);
  if (head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46) return "gguf"; // "GGUF"
  if (name.endsWith(".safetensors")) return "safetensors";
  // safetensors: u64 LE header length followed by '{'
  const hdrLen = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (hdrLen > 1n && hdrLen < BigInt(src.size) && src.size > 9) {
    const b = await src.read(8, 1);
    if (b[0] === 0x7b) return "safetensors";
  }
  if (name.endsWith(".bin")) return "llama2c";
  throw new QuantlabError("E_FORMAT", `${name}: unknown model format (not GGUF, safetensors, a Hugging Face directory or a llama2.c .bin)`);
}

/** Tokenizer file names tried beside a llama2.c model, in order (llama2.c's run.c naming). */
export function llama2cTokenizerNames(vocabSize: number): string[] {
  return [`tok${vocabSize}.bin`, "tokenizer.bin"];
}

/** Could this file be a llama2.c tokenizer (by its name) rather than a model? */
export function looksLikeLlama2cTokenizer(name: string): boolean {
  return /^(tok\d+|tokenizer)\.bin$/.test(name);
}

/**
 * A llama2.c checkpoint (its weights read lazily: the source stays open until `model.close()`), with its
 * tokenizer when one is given. `name` becomes the model's name, as the CLI uses the file's base name.
 */
export async function loadLlama2cSources(model: NamedSource, tokenizer?: NamedSource): Promise<Model> {
  let ck;
  try {
    ck = await readLlama2cCheckpoint(model.source);
  } catch (e) {
    await model.source.close?.();
    throw e;
  }
  let tok: Llama2cTokenizer | undefined;
  try {
    tok = tokenizer ? await readLlama2cTokenizer(tokenizer.source, { size: ck.config.vocabSize, model: model.name }) : undefined;
  } catch (e) {
    await ck.close();
    throw e;
  } finally {
    await tokenizer?.source.close?.();
  }
  ck.config.name = model.name;
  return llama2cModel(ck, model.name, tok, tokenizer?.name);
}

export interface OpenModelOptions {
  progress?: Progress;
  /** GGUF: read tensors straight into memory the kernels provide (see TensorPlacer) */
  place?: TensorPlacer;
}

/** One model file (GGUF, quantlab's quantized safetensors, a self-contained safetensors, llama2.c .bin). */
export async function loadModelSource(file: NamedSource, tokenizer?: NamedSource, opts: OpenModelOptions = {}): Promise<Model> {
  const fmt = await sniffFormat(file.source, file.name);
  if (fmt === "llama2c") return loadLlama2cSources(file, tokenizer);
  if (tokenizer) throw new QuantlabError("E_ARG", `${tokenizer.name}: a separate tokenizer file goes with a llama2.c .bin; ${file.name} carries its own`);
  try {
    if (fmt === "gguf") {
      const m = await readGgufModel(await openGguf(file.source), { progress: opts.progress, place: opts.place });
      m.config.name ??= file.name;
      return m;
    }
    const st = await openSafetensors(file.source);
    if (isQuantModelMetadata(st.metadata)) {
      const m = await readQuantModel(st);
      m.config.name = file.name;
      return m;
    }
    return await embeddedSafetensors(file, st.metadata, opts);
  } catch (e) {
    await file.source.close?.();
    throw e;
  }
}

/** A single .safetensors with the config (and tokenizer) quantlab embeds in its `__metadata__`. */
async function embeddedSafetensors(file: NamedSource, md: Record<string, string>, opts: OpenModelOptions): Promise<Model> {
  if (md["quantlab.config"] === undefined) throw new QuantlabError("E_FORMAT", `${file.name}: no "quantlab.config" in its __metadata__: cannot tell the model's hyper-parameters (pick the whole Hugging Face folder, with its config.json)`);
  let config: HfConfigJson;
  try {
    config = JSON.parse(md["quantlab.config"]) as HfConfigJson;
  } catch (e) {
    throw new QuantlabError("E_FORMAT", `${file.name}: __metadata__ "quantlab.config" is not valid JSON (${(e as Error).message})`);
  }
  const dir: DirSource = {
    name: file.name,
    has: async (f) => f === file.name,
    readText: async () => { throw new QuantlabError("E_INTERNAL", "embedded safetensors: no side files"); },
    open: async () => file.source,
    list: async () => [file.name],
  };
  const model = await loadHfModel(dir, { config, progress: opts.progress });
  const tj = md["quantlab.tokenizer"];
  if (!model.tokenizer && tj !== undefined) {
    const tc = md["quantlab.tokenizer_config"];
    model.tokenizer = new HfTokenizer(JSON.parse(tj) as TokenizerJson, tc ? JSON.parse(tc) : {}, `${file.name} (embedded tokenizer)`, model.config.vocabSize);
  }
  model.source = { path: file.name, format: "safetensors", metadata: model.source.metadata };
  model.config.name = file.name;
  return model;
}

/**
 * What a person picked, as a model: a Hugging Face folder (`dir`, when it has config.json), or files —
 * one model file plus, for llama2.c, its tokenizer (tok<vocab>.bin / tokenizer.bin, or the only other file).
 */
export async function loadPickedModel(pick: { files: NamedSource[]; dir?: DirSource }, opts: OpenModelOptions = {}): Promise<Model> {
  if (pick.dir && (await pick.dir.has("config.json"))) {
    const m = await loadHfModel(pick.dir, { progress: opts.progress });
    m.config.name = pick.dir.name;
    return m;
  }
  const files = pick.files;
  if (files.length === 0) throw new QuantlabError("E_ARG", "no file chosen");
  const toks = files.filter((f) => looksLikeLlama2cTokenizer(f.name));
  const models = files.filter((f) => !looksLikeLlama2cTokenizer(f.name));
  if (models.length !== 1) {
    throw new QuantlabError("E_ARG", models.length === 0 ? `${files.map((f) => f.name).join(", ")}: only tokenizer files; pick the model file too` : `${models.map((f) => f.name).join(", ")}: pick one model file (plus a llama2.c tokenizer), or a Hugging Face folder`);
  }
  const main = models[0]!;
  let tok = toks.length === 1 ? toks[0] : undefined;
  if (toks.length > 1) {
    // several tokenizers: the one llama2.c's naming picks for this model's vocabulary
    if ((await sniffFormat(main.source, main.name)) !== "llama2c") throw new QuantlabError("E_ARG", `${toks.map((t) => t.name).join(", ")}: tokenizer files go with a llama2.c .bin, not ${main.name}`);
    const head = parseLlama2cHeader(await main.source.read(0, Math.min(main.source.size, 256)), main.name);
    const want = llama2cTokenizerNames(head.vocabSize);
    tok = want.map((n) => toks.find((t) => t.name === n)).find((t) => t !== undefined);
    if (!tok) throw new QuantlabError("E_ARG", `${main.name}: none of ${toks.map((t) => t.name).join(", ")} is ${want.join(" or ")}`);
  }
  return loadModelSource(main, tok, opts);
}
