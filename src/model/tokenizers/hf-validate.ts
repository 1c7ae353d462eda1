/**
 * Checks a tokenizer.json (and tokenizer_config.json) before @huggingface/tokenizers sees it, so a
 * hostile or corrupt file fails at load with an error naming the file and the JSON path, never inside
 * the library at first encode, and never by making it spin:
 *
 * - token ids (model.vocab, added_tokens, post_processor special tokens) are integers in
 *   [0, maxVocab): the library sizes arrays by the largest id (an id of 1e9 made loading take > 60 s);
 * - counts (vocabulary, merges) stay under core/limits.ts's bounds;
 * - every component (normalizer, pre_tokenizer, post_processor, decoder and their Sequence children)
 *   is null or an object with a string "type", lists are arrays, TemplateProcessing items are
 *   {SpecialToken: {id, type_id}} or {Sequence: {id: "A"|"B", type_id}} (a bare `true` there threw
 *   "Cannot use 'in' operator …" from inside the library at encode time);
 * - numbers that drive loops inside the library (Strip.start/stop, FixedLength.length,
 *   max_input_chars_per_word) are small non-negative integers: `Strip.start = 1e9` loops 1e9 times
 *   per decoded token.
 * Which types exist is left to the library's constructors (their "Unknown … type" errors are wrapped
 * by HfTokenizer with the file name).
 */
import { QuantlabError } from "../../core/errors.js";
import { MAX_MERGES, MAX_PIECE_CHARS, MAX_VOCAB, describe } from "../../core/limits.js";

type Json = unknown;

function fail(where: string, path: string, what: string, v: Json): never {
  throw new QuantlabError("E_FORMAT", `${where}: ${path}: ${what}, got ${describe(v)}`);
}

const isObj = (v: Json): v is Record<string, Json> => typeof v === "object" && v !== null && !Array.isArray(v);

function obj(v: Json, where: string, path: string): Record<string, Json> {
  if (!isObj(v)) fail(where, path, "expected an object", v);
  return v;
}

function arr(v: Json, where: string, path: string, max: number, maxName: string): Json[] {
  if (!Array.isArray(v)) fail(where, path, "expected an array", v);
  if (v.length > max) throw new QuantlabError("E_FORMAT", `${where}: ${path} has ${v.length} entries, above ${maxName} = ${max}`);
  return v;
}

function int(v: Json, where: string, path: string, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= max) fail(where, path, `expected an integer in [0, ${max})`, v);
  return v;
}

function str(v: Json, where: string, path: string): string {
  if (typeof v !== "string") fail(where, path, "expected a string", v);
  if (v.length > MAX_PIECE_CHARS) throw new QuantlabError("E_FORMAT", `${where}: ${path} is ${v.length} characters long, above MAX_PIECE_CHARS = ${MAX_PIECE_CHARS}`);
  return v;
}

function optBool(o: Record<string, Json>, key: string, where: string, path: string): void {
  const v = o[key];
  if (v !== undefined && v !== null && typeof v !== "boolean") fail(where, `${path}.${key}`, "expected true or false", v);
}

function optStr(o: Record<string, Json>, key: string, where: string, path: string): void {
  const v = o[key];
  if (v !== undefined && v !== null) str(v, where, `${path}.${key}`);
}

/** A loop bound inside the library: a small non-negative integer. */
function optSmall(o: Record<string, Json>, key: string, where: string, path: string): void {
  const v = o[key];
  if (v !== undefined && v !== null) int(v, where, `${path}.${key}`, MAX_PIECE_CHARS + 1);
}

/** Replace/Split pattern: {String: s} or {Regex: s} (compiled by the library; its errors are wrapped). */
function pattern(v: Json, where: string, path: string): void {
  const p = obj(v, where, path);
  if (typeof p.String === "string" || typeof p.Regex === "string") return;
  fail(where, path, 'expected {"String": …} or {"Regex": …}', v);
}

/** Keys of each section whose values are lists of child components. */
const CHILDREN: Record<string, string> = { normalizer: "normalizers", pre_tokenizer: "pretokenizers", post_processor: "processors", decoder: "decoders" };

function component(v: Json, section: string, where: string, path: string, maxVocab: number, depth: number): void {
  if (v === null || v === undefined) return;
  const c = obj(v, where, path);
  const type = str(c.type, where, `${path}.type`);
  if (depth > 16) fail(where, path, "Sequence components nested deeper than 16", type);
  if (type === "Sequence") {
    const key = CHILDREN[section]!;
    const list = arr(c[key] ?? [], where, `${path}.${key}`, 1024, "1024");
    list.forEach((x, i) => {
      if (x === null) fail(where, `${path}.${key}[${i}]`, "expected a component", x);
      component(x, section, where, `${path}.${key}[${i}]`, maxVocab, depth + 1);
    });
    return;
  }
  for (const k of ["start", "stop", "length", "max_input_chars_per_word"]) optSmall(c, k, where, path);
  if (type === "FixedLength" && !(typeof c.length === "number" && c.length >= 1)) fail(where, `${path}.length`, "expected an integer ≥ 1", c.length);
  if (type === "Replace" || type === "Split") pattern(c.pattern, where, `${path}.pattern`);
  for (const k of ["content", "prepend", "replacement", "prefix", "suffix", "pad_token", "word_delimiter_token", "behavior", "prepend_scheme"]) optStr(c, k, where, path);
  for (const k of ["add_prefix_space", "trim_offsets", "use_regex", "invert", "individual_digits", "strip_left", "strip_right", "lowercase", "cleanup", "clean_text", "handle_chinese_chars"]) optBool(c, k, where, path);
  if (section === "post_processor") postProcessor(c, type, where, path, maxVocab);
}

function postProcessor(c: Record<string, Json>, type: string, where: string, path: string, maxVocab: number): void {
  if (type === "TemplateProcessing") {
    for (const k of ["single", "pair"]) {
      if (c[k] === undefined && k === "pair") continue;
      arr(c[k], where, `${path}.${k}`, 1024, "1024").forEach((item, i) => {
        const p = `${path}.${k}[${i}]`;
        const it = obj(item, where, p);
        if (isObj(it.SpecialToken)) {
          str(it.SpecialToken.id, where, `${p}.SpecialToken.id`);
          int(it.SpecialToken.type_id ?? 0, where, `${p}.SpecialToken.type_id`, 1024);
        } else if (isObj(it.Sequence)) {
          const id = it.Sequence.id;
          if (id !== "A" && id !== "B") fail(where, `${p}.Sequence.id`, 'expected "A" or "B"', id);
          int(it.Sequence.type_id ?? 0, where, `${p}.Sequence.type_id`, 1024);
        } else fail(where, p, 'expected {"SpecialToken": {…}} or {"Sequence": {…}}', item);
      });
    }
    if (c.special_tokens !== undefined && c.special_tokens !== null) {
      for (const [name, t] of Object.entries(obj(c.special_tokens, where, `${path}.special_tokens`))) {
        const p = `${path}.special_tokens[${JSON.stringify(name)}]`;
        const o = obj(t, where, p);
        str(o.id, where, `${p}.id`);
        arr(o.ids, where, `${p}.ids`, 1024, "1024").forEach((x, i) => int(x, where, `${p}.ids[${i}]`, maxVocab));
        arr(o.tokens, where, `${p}.tokens`, 1024, "1024").forEach((x, i) => str(x, where, `${p}.tokens[${i}]`));
      }
    }
  } else if (type === "BertProcessing" || type === "RobertaProcessing") {
    for (const k of ["cls", "sep"]) {
      const pair = arr(c[k], where, `${path}.${k}`, 2, "2");
      if (pair.length !== 2) fail(where, `${path}.${k}`, "expected [token, id]", pair);
      str(pair[0], where, `${path}.${k}[0]`);
      int(pair[1], where, `${path}.${k}[1]`, maxVocab);
    }
  }
}

/**
 * Validates tokenizer.json; `maxVocab` is the model's vocabulary size when known (a token id at or
 * beyond it could never be embedded), else MAX_VOCAB.
 */
export function validateTokenizerJson(json: Json, where: string, maxVocab = MAX_VOCAB): void {
  const limit = Math.min(maxVocab, MAX_VOCAB);
  const t = obj(json, where, "(top level)");
  const m = obj(t.model, where, "model");
  if (m.type !== undefined) str(m.type, where, "model.type");
  const vocab = m.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: [piece, score] pairs, the id is the index
    arr(vocab, where, "model.vocab", limit, maxVocab < MAX_VOCAB ? "the model's vocabulary size" : "MAX_VOCAB").forEach((e, i) => {
      const p = `model.vocab[${i}]`;
      if (!Array.isArray(e) || e.length < 2) fail(where, p, "expected [piece, score]", e);
      str(e[0], where, `${p}[0]`);
      if (typeof e[1] !== "number" || !Number.isFinite(e[1])) fail(where, `${p}[1]`, "expected a finite score", e[1]);
    });
    if (m.unk_id !== undefined && m.unk_id !== null) int(m.unk_id, where, "model.unk_id", vocab.length);
  } else {
    const v = obj(vocab, where, "model.vocab");
    let n = 0;
    for (const piece in v) {
      if (++n > limit) throw new QuantlabError("E_FORMAT", `${where}: model.vocab has more than ${limit} entries (${maxVocab < MAX_VOCAB ? "the model's vocabulary size" : "MAX_VOCAB"})`);
      if (piece.length > MAX_PIECE_CHARS) fail(where, "model.vocab", `a piece longer than MAX_PIECE_CHARS = ${MAX_PIECE_CHARS}`, piece);
      int(v[piece], where, `model.vocab[${JSON.stringify(piece.slice(0, 40))}]`, limit);
    }
  }
  if (m.merges !== undefined && m.merges !== null) {
    arr(m.merges, where, "model.merges", MAX_MERGES, "MAX_MERGES").forEach((x, i) => {
      const p = `model.merges[${i}]`;
      if (typeof x === "string") {
        // "a b": the library splits at the space; a merge is two pieces
        if (x.indexOf(" ", 1) < 0) fail(where, p, 'expected "left right"', x);
      } else if (!(Array.isArray(x) && x.length === 2 && typeof x[0] === "string" && typeof x[1] === "string")) fail(where, p, 'expected "left right" or [left, right]', x);
    });
  }
  for (const k of ["unk_token", "continuing_subword_prefix", "end_of_word_suffix"]) optStr(m, k, where, "model");
  for (const k of ["byte_fallback", "fuse_unk", "ignore_merges"]) optBool(m, k, where, "model");
  optSmall(m, "max_input_chars_per_word", where, "model");
  if (t.added_tokens !== undefined && t.added_tokens !== null) {
    arr(t.added_tokens, where, "added_tokens", limit, "the vocabulary size").forEach((a, i) => {
      const p = `added_tokens[${i}]`;
      const o = obj(a, where, p);
      int(o.id, where, `${p}.id`, limit);
      str(o.content, where, `${p}.content`);
      for (const k of ["special", "single_word", "lstrip", "rstrip", "normalized"]) optBool(o, k, where, p);
    });
  }
  for (const section of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) component(t[section], section, where, section, limit, 0);
}

/** Validates tokenizer_config.json's fields the tokenizer reads. */
export function validateTokenizerConfig(config: Json, where: string): void {
  const c = obj(config, where, "(top level)");
  for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const v = c[k];
    if (v === undefined || v === null || typeof v === "string") continue;
    if (isObj(v) && typeof v.content === "string") continue;
    fail(where, k, 'expected a string or {"content": …}', v);
  }
  for (const k of ["add_bos_token", "add_eos_token", "remove_space", "clean_up_tokenization_spaces", "do_lowercase_and_remove_accent"]) optBool(c, k, where, "(top level)");
  if (c.additional_special_tokens !== undefined && c.additional_special_tokens !== null) {
    arr(c.additional_special_tokens, where, "additional_special_tokens", 1 << 16, "65536").forEach((x, i) => {
      if (typeof x !== "string" && !(isObj(x) && typeof x.content === "string")) fail(where, `additional_special_tokens[${i}]`, "expected a string", x);
    });
  }
}
