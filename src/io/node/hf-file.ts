/**
 * Hugging Face directories and single .safetensors files on disk.
 *
 * A single .safetensors is loaded with the config.json / tokenizer.json beside it, or, for files we
 * wrote, with the copies we embed in its `__metadata__` ("quantlab.config", "quantlab.tokenizer",
 * "quantlab.tokenizer_config"), so one file is self-contained. Writes are atomic (temp + rename).
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { QuantlabError } from "../../core/errors.js";
import { jsonObject, parseJsonBounded } from "../../core/limits.js";
import type { Progress } from "../../core/progress.js";
import { HfTokenizer, vocabToTokenizerJson, type TokenizerJson } from "../../model/tokenizers/hf.js";
import type { Model } from "../../model/weights.js";
import type { ByteSink } from "../gguf.js";
import { hfEntries, loadHfModel, modelConfigToHf, writeHfModel, type DirSink, type DirSource, type HfConfigJson, type WriteHfOptions } from "../hf.js";
import { openSafetensors, writeSafetensors } from "../safetensors.js";
import type { ByteSource } from "../source.js";
import { atomicWriteDir, atomicWriteFile } from "./atomic.js";
import { uncarriedTransforms } from "../transforms-carry.js";
import { openFile } from "./file.js";

/** A local folder as a DirSource. */
export class LocalDir implements DirSource {
  constructor(readonly name: string, private readonly only?: string[]) {}
  async has(file: string): Promise<boolean> {
    if (this.only && !this.only.includes(file)) return false;
    return existsSync(join(this.name, file));
  }
  async readText(file: string): Promise<string> {
    const p = join(this.name, file);
    if (!existsSync(p)) throw new QuantlabError("E_IO", `${p}: no such file`);
    return readFileSync(p, "utf8");
  }
  async open(file: string): Promise<ByteSource> {
    return openFile(join(this.name, file));
  }
  async list(): Promise<string[]> {
    const all = readdirSync(this.name);
    return this.only ? all.filter((f) => this.only!.includes(f)) : all;
  }
}

/** Writes files into a fresh directory (used inside atomicWriteDir). */
class LocalDirSink implements DirSink {
  constructor(private readonly dir: string) {}
  writeFile<T>(file: string, write: (sink: ByteSink) => Promise<T>): Promise<T> {
    return atomicWriteFile(join(this.dir, file), write);
  }
}

export async function loadHfDir(path: string, opts: { tokenizer?: string; progress?: Progress } = {}): Promise<Model> {
  if (!existsSync(path) || !statSync(path).isDirectory()) throw new QuantlabError("E_IO", `${path}: no such directory`);
  const m = await loadHfModel(new LocalDir(path.replace(/\/+$/, "")), { progress: opts.progress });
  m.config.name = basename(path.replace(/\/+$/, ""));
  return m;
}

export async function loadSafetensorsFile(path: string, opts: { tokenizer?: string; progress?: Progress } = {}): Promise<Model> {
  const dir = dirname(path);
  const file = basename(path);
  let config: HfConfigJson | undefined;
  let tokenizerJson: string | undefined;
  let tokenizerConfig: string | undefined;
  if (existsSync(join(dir, "config.json"))) {
    config = undefined; // loadHfModel reads it
  } else {
    const src = openFile(path);
    try {
      const md = (await openSafetensors(src)).metadata;
      if (md["quantlab.config"] === undefined) {
        throw new QuantlabError("E_FORMAT", `${path}: no config.json beside the file and no "quantlab.config" in its __metadata__: cannot tell the model's hyper-parameters`);
      }
      config = jsonObject(parseJsonBounded(md["quantlab.config"], `${path}: __metadata__ "quantlab.config"`), path, '__metadata__ "quantlab.config"') as HfConfigJson;
      tokenizerJson = md["quantlab.tokenizer"];
      tokenizerConfig = md["quantlab.tokenizer_config"];
    } finally {
      await src.close();
    }
  }
  const model = await loadHfModel(new LocalDir(dir, [file, "config.json", "tokenizer.json", "tokenizer_config.json"]), { config, configName: `${path}: __metadata__ "quantlab.config"`, progress: opts.progress });
  if (!model.tokenizer && tokenizerJson !== undefined) {
    try {
      const where = `${path}: __metadata__ "quantlab.tokenizer"`;
      const cfg = tokenizerConfig !== undefined ? jsonObject(parseJsonBounded(tokenizerConfig, `${path}: __metadata__ "quantlab.tokenizer_config"`), path, '__metadata__ "quantlab.tokenizer_config"') : {};
      const t = new HfTokenizer(parseJsonBounded(tokenizerJson, where) as TokenizerJson, cfg, where, model.config.vocabSize, { configName: `${path}: __metadata__ "quantlab.tokenizer_config"` });
      if (t.vocabSize > model.config.vocabSize) throw new QuantlabError("E_FORMAT", `${path}: the tokenizer has ${t.vocabSize} tokens but the model's vocabulary is ${model.config.vocabSize}`);
      model.tokenizer = t;
    } catch (e) {
      await model.close?.();
      throw e;
    }
  }
  model.source = { path, format: "safetensors", metadata: model.source.metadata };
  model.config.name = basename(path);
  return model;
}

/** Writes an HF directory (config.json, shards + index, tokenizer files) atomically. */
export async function saveHfDir(model: Model, path: string, opts: WriteHfOptions = {}): Promise<{ path: string; files: string[]; bytes: number; warnings?: string[] }> {
  const r = await atomicWriteDir(path, (tmp) => writeHfModel(model, new LocalDirSink(tmp), opts, path));
  return { path, ...r };
}

/** Writes one self-contained .safetensors (HF tensor names; config and tokenizer in __metadata__). */
export async function saveSafetensorsFile(model: Model, path: string, opts: WriteHfOptions = {}): Promise<{ path: string; bytes: number; warnings?: string[] }> {
  const warnings = uncarriedTransforms(model, "a plain safetensors file", path);
  const entries = hfEntries(model, opts, path);
  const md: Record<string, string> = { format: "pt", "quantlab.config": JSON.stringify(modelConfigToHf(model.config, model.tokenizer)) };
  if (model.tokenizer) {
    const t = model.tokenizer;
    if (t instanceof HfTokenizer) {
      md["quantlab.tokenizer"] = JSON.stringify(t.json);
      md["quantlab.tokenizer_config"] = JSON.stringify(t.config);
    } else {
      const v = t.vocab();
      md["quantlab.tokenizer"] = JSON.stringify(vocabToTokenizerJson(v));
      md["quantlab.tokenizer_config"] = JSON.stringify({ add_bos_token: v.addBos, bos_token: v.pieces[v.bosId], eos_token: v.pieces[v.eosId] });
    }
  }
  const bytes = await atomicWriteFile(path, (sink) => writeSafetensors(sink, entries, md, path));
  return { path, bytes, ...(warnings.length ? { warnings } : {}) };
}
