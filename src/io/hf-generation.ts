/**
 * What a model's files say about chatting with it and sampling from it, whatever the format:
 *
 * - the chat template: in a Hugging Face directory `chat_template.jinja` (what transformers ≥ 4.50
 *   writes), else `chat_template.json` ({"chat_template": …}, processors' file), else
 *   tokenizer_config.json `chat_template` (a string or a list of {name, template}) — the precedence of
 *   transformers' `PreTrainedTokenizerBase.from_pretrained`; in a GGUF `tokenizer.chat_template`
 *   (gguf-py Keys.Tokenizer.CHAT_TEMPLATE);
 * - end-of-turn ids: generation_config.json `eos_token_id` (an int or a list), GGUF
 *   `tokenizer.ggml.eos_token_id` / `eot_token_id` / `eom_token_id`;
 * - default sampling: generation_config.json `do_sample`, `temperature`, `top_p`, `top_k` (with
 *   transformers' GenerationConfig defaults 1.0 / 1.0 / 50 for the ones it leaves out when do_sample is
 *   true); fields that change sampling in ways quantlab's sampler cannot (`repetition_penalty`,
 *   `min_p`, `typical_p`, `no_repeat_ngram_size`, beams) become warnings, never silently dropped.
 *
 * Isomorphic: directories are reached through a DirSource; a loaded Model keeps what was read in
 * `model.source.metadata` (keys `hf.chat_template`, `hf.chat_template_file`, `hf.generation_config`).
 */
import { QuantlabError } from "../core/errors.js";
import { parseJsonBounded } from "../core/limits.js";
import { selectChatTemplate } from "../model/chat.js";
import type { Model } from "../model/weights.js";
import type { DirSource } from "./hf.js";

export const GENERATION_CONFIG = "generation_config.json";

export interface GenerationDefaults {
  /** where it was read (file name), for messages */
  file: string;
  eosIds: number[];
  doSample?: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
  /** fields that would change sampling and that quantlab does not apply: one message each */
  notApplied: string[];
}

/** Sampling-changing generation_config fields we cannot apply, with the value that means "off". */
const UNSUPPORTED_SAMPLING: [string, (v: unknown) => boolean][] = [
  ["repetition_penalty", (v) => v === 1 || v === 1.0],
  ["min_p", (v) => v === 0],
  ["typical_p", (v) => v === 1],
  ["no_repeat_ngram_size", (v) => v === 0],
  ["num_beams", (v) => v === 1],
  ["epsilon_cutoff", (v) => v === 0],
  ["eta_cutoff", (v) => v === 0],
];

function num(j: Record<string, unknown>, k: string, where: string, check: (x: number) => boolean, expect: string): number | undefined {
  const v = j[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || !check(v)) throw new QuantlabError("E_FORMAT", `${where}: "${k}" is ${JSON.stringify(v)}, expected ${expect}`);
  return v;
}

/** generation_config.json's fields, checked (a wrong type is an error naming the field). */
export function parseGenerationConfig(json: unknown, where: string): GenerationDefaults {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new QuantlabError("E_FORMAT", `${where}: not a JSON object`);
  const j = json as Record<string, unknown>;
  const eos = j.eos_token_id;
  const eosIds: number[] = [];
  if (eos !== undefined && eos !== null) {
    const list = Array.isArray(eos) ? eos : [eos];
    for (const id of list) {
      if (!Number.isInteger(id) || (id as number) < 0) throw new QuantlabError("E_FORMAT", `${where}: "eos_token_id" holds ${JSON.stringify(id)}, expected token ids (integers ≥ 0)`);
      eosIds.push(id as number);
    }
  }
  if (j.do_sample !== undefined && j.do_sample !== null && typeof j.do_sample !== "boolean") throw new QuantlabError("E_FORMAT", `${where}: "do_sample" is ${JSON.stringify(j.do_sample)}, expected true or false`);
  const g: GenerationDefaults = { file: where, eosIds, notApplied: [] };
  if (typeof j.do_sample === "boolean") g.doSample = j.do_sample;
  const t = num(j, "temperature", where, (x) => x >= 0, "a number ≥ 0");
  if (t !== undefined) g.temperature = t;
  const p = num(j, "top_p", where, (x) => x > 0 && x <= 1, "a number in (0, 1]");
  if (p !== undefined) g.topP = p;
  const k = num(j, "top_k", where, (x) => Number.isInteger(x) && x >= 0, "an integer ≥ 0");
  if (k !== undefined) g.topK = k;
  for (const [field, isOff] of UNSUPPORTED_SAMPLING) {
    const v = j[field];
    if (v !== undefined && v !== null && !isOff(v)) g.notApplied.push(`${where}: ${field} ${JSON.stringify(v)} is not applied (quantlab's sampler has no ${field.replace(/_/g, " ")})`);
  }
  return g;
}

/** Chat template and generation config of a Hugging Face directory, as `model.source.metadata` entries. */
export async function readHfChatMetadata(dir: DirSource): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const text = async (f: string) => dir.readText(f);
  if (await dir.has("chat_template.jinja")) {
    out["hf.chat_template"] = await text("chat_template.jinja");
    out["hf.chat_template_file"] = `${dir.name}/chat_template.jinja`;
  } else if (await dir.has("chat_template.json")) {
    const where = `${dir.name}/chat_template.json`;
    const j = parseJsonBounded(await text("chat_template.json"), where) as { chat_template?: unknown } | null;
    if (j === null || typeof j !== "object" || j.chat_template === undefined) throw new QuantlabError("E_FORMAT", `${where}: no "chat_template" field`);
    out["hf.chat_template"] = selectChatTemplate(j.chat_template, where);
    out["hf.chat_template_file"] = where;
  } else if (await dir.has("tokenizer_config.json")) {
    const where = `${dir.name}/tokenizer_config.json`;
    const j = parseJsonBounded(await text("tokenizer_config.json"), where) as { chat_template?: unknown } | null;
    if (j !== null && typeof j === "object" && j.chat_template !== undefined && j.chat_template !== null) {
      out["hf.chat_template"] = selectChatTemplate(j.chat_template, where);
      out["hf.chat_template_file"] = where;
    }
  }
  if (await dir.has(GENERATION_CONFIG)) {
    const where = `${dir.name}/${GENERATION_CONFIG}`;
    const j = parseJsonBounded(await text(GENERATION_CONFIG), where);
    parseGenerationConfig(j, where); // bad fields fail at load, naming the file
    out["hf.generation_config"] = j;
    out["hf.generation_config_file"] = where;
  }
  return out;
}

export interface ModelChatInfo {
  template?: { text: string; where: string };
  /** end-of-turn ids the files name (besides the tokenizer's EOS) */
  stopIds: { id: number; from: string }[];
  generation?: GenerationDefaults;
  /** where the template would be looked for, for the "no template" error */
  lookedIn: string;
}

/** What `model`'s files say about chat and sampling (HF directory or GGUF; other formats have none). */
export function modelChatInfo(model: Model): ModelChatInfo {
  const m = model.source.metadata ?? {};
  const path = model.source.path;
  if (model.source.format === "gguf") {
    const info: ModelChatInfo = { stopIds: [], lookedIn: `${path} (metadata "tokenizer.chat_template")` };
    const t = m["tokenizer.chat_template"];
    if (typeof t === "string") info.template = { text: t, where: `${path}: tokenizer.chat_template` };
    for (const k of ["eos_token_id", "eot_token_id", "eom_token_id"]) {
      const id = m[`tokenizer.ggml.${k}`];
      if (typeof id === "number") info.stopIds.push({ id, from: `gguf:tokenizer.ggml.${k}` });
    }
    return info;
  }
  const info: ModelChatInfo = { stopIds: [], lookedIn: `${path}/chat_template.jinja, chat_template.json or tokenizer_config.json "chat_template"` };
  if (model.source.format !== "hf") info.lookedIn = `${path} (a ${model.source.format} file carries no chat template; use a Hugging Face directory or a GGUF)`;
  const t = m["hf.chat_template"];
  if (typeof t === "string") info.template = { text: t, where: String(m["hf.chat_template_file"] ?? path) };
  const g = m["hf.generation_config"];
  if (g !== undefined) {
    info.generation = parseGenerationConfig(g, String(m["hf.generation_config_file"] ?? GENERATION_CONFIG));
    for (const id of info.generation.eosIds) info.stopIds.push({ id, from: "generation_config" });
  }
  return info;
}

export interface SamplingFlags {
  /** undefined: not given on the command line */
  temperature?: number;
  topP?: number;
  topK?: number;
}

export type SettingSource = "flag" | "generation_config.json" | "transformers default" | "quantlab default";

export interface ResolvedSampling {
  temperature: number;
  topP: number;
  topK: number;
  sources: { temperature: SettingSource; topP: SettingSource; topK: SettingSource };
  warnings: string[];
}

/** quantlab's own defaults (greedy; run.c's top-p 0.9 when sampling) */
export const QUANTLAB_SAMPLING = { temperature: 0, topP: 0.9, topK: 0 } as const;

/**
 * Sampling settings: a flag wins; else generation_config.json (do_sample false or absent = greedy, as
 * transformers' generate; do_sample true = its temperature / top_p / top_k, transformers' defaults 1.0 /
 * 1.0 / 50 for the ones it leaves out); else quantlab's defaults.
 */
export function resolveSampling(flags: SamplingFlags, gen: GenerationDefaults | undefined): ResolvedSampling {
  const warnings = gen ? [...gen.notApplied] : [];
  const pick = (flag: number | undefined, fromGen: number | undefined, hfDefault: number, ours: number): [number, SettingSource] => {
    if (flag !== undefined) return [flag, "flag"];
    if (gen?.doSample === true) return fromGen !== undefined ? [fromGen, "generation_config.json"] : [hfDefault, "transformers default"];
    return [ours, "quantlab default"];
  };
  let [temperature, ts] = pick(flags.temperature, gen?.temperature, 1, QUANTLAB_SAMPLING.temperature);
  if (flags.temperature === undefined && gen?.doSample === false) ts = "generation_config.json"; // greedy because it says so
  const [topP, ps] = pick(flags.topP, gen?.topP, 1, QUANTLAB_SAMPLING.topP);
  const [topK, ks] = pick(flags.topK, gen?.topK, 50, QUANTLAB_SAMPLING.topK);
  if (gen && gen.doSample !== true && flags.temperature === undefined && (gen.temperature !== undefined || gen.topP !== undefined || gen.topK !== undefined)) {
    warnings.push(`${gen.file}: do_sample is ${gen.doSample ?? "absent"}, so its temperature / top_p / top_k are not used (greedy, as transformers); pass --temperature to sample`);
  }
  return { temperature, topP, topK, sources: { temperature: ts, topP: ps, topK: ks }, warnings };
}

/**
 * The chat files a Hugging Face directory written from `model` needs beside tokenizer_config.json
 * (`tokenizerConfig`, as it will be written): chat_template.jinja when the template is not already in
 * it or came from a file that wins over it, and generation_config.json as it was read.
 */
export function hfChatFiles(model: Model, tokenizerConfig: Record<string, unknown> | undefined): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const info = modelChatInfo(model);
  if (info.template && (tokenizerConfig?.chat_template === undefined || !info.template.where.endsWith("tokenizer_config.json"))) {
    out.push({ file: "chat_template.jinja", text: info.template.text });
  }
  const g = model.source.metadata?.["hf.generation_config"];
  if (g !== undefined) out.push({ file: GENERATION_CONFIG, text: JSON.stringify(g, null, 2) + "\n" });
  return out;
}
