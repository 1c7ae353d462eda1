/**
 * tokenizer.json (Hugging Face `tokenizers` format) through @huggingface/tokenizers, plus conversions
 * between tokenizer.json and the GGUF vocabulary form (`Vocab`) in both directions:
 *
 * - SentencePiece-style BPE (Llama 2, Mistral: `▁` pieces, byte_fallback) ↔ GGUF "llama": scores from
 *   merge ranks (the piece made by the first merge scores highest), as llama.cpp's SPM tokenizer merges
 *   by piece score. Going the other way, merges are rebuilt the way transformers' LlamaConverter does
 *   (`SentencePieceExtractor`): every split of a piece into two vocabulary pieces, ranked by the merged
 *   piece's score, then by the left and right ids.
 * - Byte-level BPE (Llama 3, Qwen2, SmolLM, GPT-2) ↔ GGUF "gpt2" with merges and `tokenizer.ggml.pre`
 *   naming the pre-tokenizer as llama.cpp does (llama-vocab.cpp); the exact pre-tokenizer JSON travels in
 *   `tokenizer.huggingface.json` when we write the GGUF, so our own files round-trip exactly.
 */
import { Tokenizer as HfTokenizerImpl } from "@huggingface/tokenizers";
import { QuantlabError } from "../../core/errors.js";
import { describe } from "../../core/limits.js";
import { validateTokenizerConfig, validateTokenizerJson } from "./hf-validate.js";
import type { EncodeOptions, TokenType, Tokenizer, Vocab } from "../tokenizer.js";

const SPM_SPACE = "\u2581";
const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

// Pre-tokenizer regexes as llama.cpp's llama-vocab.cpp lists them per `tokenizer.ggml.pre`, written in the
// form tokenizer.json uses (Split with an Oniguruma regex, then ByteLevel without its own regex).
const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const split = (regex: string) => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false });
const byteLevel = (useRegex: boolean) => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: useRegex });

/** tokenizer.json pre_tokenizer for a llama.cpp pre-tokenizer name. */
export function preTokenizerFor(pre: string | undefined): object {
  switch (pre) {
    case "llama-bpe":
    case "llama3":
      return { type: "Sequence", pretokenizers: [split(LLAMA3_REGEX), byteLevel(false)] };
    case "qwen2":
      return { type: "Sequence", pretokenizers: [split(QWEN2_REGEX), byteLevel(false)] };
    case "smollm":
      return { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel(true)] };
    case "gpt-2":
    case "olmo":
    case "mpt":
      return { type: "Sequence", pretokenizers: [split(GPT2_REGEX), byteLevel(false)] };
    default:
      return { type: "Sequence", pretokenizers: [split(GPT2_REGEX), byteLevel(false)] };
  }
}

/**
 * llama.cpp's pre-tokenizer name for a tokenizer.json pre_tokenizer, chosen by the split it makes rather
 * than by convert_hf_to_gguf.py's hash of a tokenization (get_vocab_base_pre), which needs Python:
 *
 * - Split on the Llama 3 regex (cl100k's: Llama 3.x, OLMo 2's dolma2 tokenizer, DBRX) → "llama-bpe"
 *   (llama-vocab.cpp LLAMA3; its DBRX / SMAUG arms split the same way)
 * - Split on the Qwen2 regex (single digits; Qwen 1.5 / 2 / 2.5 / 3) → "qwen2"
 * - Digits(individual) + ByteLevel(use_regex) (SmolLM / SmolLM2) → "smollm" (llama-vocab.cpp: \p{N}, then GPT-2's regex)
 * - GPT-2's regex, as a Split or as ByteLevel's own (GPT-2, OLMo 1, GPT-NeoX, Phi-2) → "gpt-2"
 *   (llama-vocab.cpp GPT2 = MPT = OLMO arm)
 *
 * Anything else: undefined (the writer then warns and writes "gpt-2", llama.cpp's GPT-2 split).
 */
export function knownPreName(preTokenizer: unknown): string | undefined {
  const s = JSON.stringify(preTokenizer ?? null);
  if (s.includes(JSON.stringify(LLAMA3_REGEX).slice(1, -1))) return "llama-bpe";
  if (s.includes(JSON.stringify(QWEN2_REGEX).slice(1, -1))) return "qwen2";
  if (s.includes('"Digits"') && s.includes('"individual_digits":true') && /"ByteLevel"[^}]*"use_regex":true/.test(s)) return "smollm";
  if (s.includes(JSON.stringify(GPT2_REGEX).slice(1, -1)) && !s.includes('"Digits"')) return "gpt-2";
  const p = preTokenizer as { type?: string; use_regex?: boolean; add_prefix_space?: boolean } | null;
  if (p?.type === "ByteLevel" && p.use_regex !== false && p.add_prefix_space !== true) return "gpt-2";
  return undefined;
}

/** llama.cpp's pre-tokenizer name for a tokenizer.json pre_tokenizer ("gpt-2" when unknown: see knownPreName). */
export function preNameOf(preTokenizer: unknown): string {
  return knownPreName(preTokenizer) ?? "gpt-2";
}

interface AddedTokenJson {
  id: number;
  content: string;
  special: boolean;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
}

export interface TokenizerJson {
  model: { type: string; vocab: Record<string, number> | [string, number][]; merges?: (string | [string, string])[]; byte_fallback?: boolean; unk_token?: string | null; unk_id?: number | null; [k: string]: unknown };
  added_tokens?: AddedTokenJson[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  post_processor?: unknown;
  decoder?: unknown;
  [k: string]: unknown;
}

export interface TokenizerConfigJson {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  add_bos_token?: boolean;
  [k: string]: unknown;
}

const tokContent = (t: TokenizerConfigJson["bos_token"]): string | undefined => (t == null ? undefined : typeof t === "string" ? t : t.content);

/** A Tokenizer over tokenizer.json. BOS/EOS come from tokenizer_config.json, else from common special-token spellings. */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly addBos: boolean;
  private readonly impl: HfTokenizerImpl;
  private readonly idToPiece: string[];
  /** entries the tokenizer.json itself has (vocabSize may be padded above it) */
  readonly realSize: number;

  /**
   * `padTo`: the model's embedding rows when they outnumber the tokenizer's entries (HF vocab_size is often
   * rounded up); the extra ids become "[PAD<id>]" pieces of type UNUSED, as convert_hf_to_gguf.py names them.
   */
  constructor(readonly json: TokenizerJson, readonly config: TokenizerConfigJson = {}, readonly name = "tokenizer.json", padTo = 0, opts: { maxVocab?: number; configName?: string; modelIds?: { bos?: number; eos?: number } } = {}) {
    // checked before the library sees it: ids it sizes arrays by, counts, component shapes (hf-validate.ts)
    validateTokenizerJson(json, name, opts.maxVocab ?? (padTo > 0 ? padTo : undefined));
    validateTokenizerConfig(config, opts.configName ?? `${name} (tokenizer_config)`);
    try {
      this.impl = new HfTokenizerImpl(json, config);
    } catch (e) {
      throw new QuantlabError("E_FORMAT", `${name}: cannot build the tokenizer (${errText(e)})`, { cause: e });
    }
    const vocab = this.guard("read the vocabulary of", () => this.impl.get_vocab(true));
    let n = 0;
    for (const id of vocab.values()) n = Math.max(n, id + 1);
    this.vocabSize = Math.max(n, padTo);
    this.idToPiece = new Array(this.vocabSize).fill("");
    for (const [piece, id] of vocab) this.idToPiece[id] = piece;
    for (let id = n; id < this.vocabSize; id++) this.idToPiece[id] = `[PAD${id}]`;
    this.realSize = n;
    const find = (names: (string | undefined)[]): number => {
      for (const s of names) if (s !== undefined && vocab.has(s)) return vocab.get(s)!;
      return -1;
    };
    // tokenizer_config.json names the token; else config.json's bos_token_id / eos_token_id (llama.cpp's converter,
    // gguf-py SpecialVocab, reads both in this order: Qwen2's bos_token is null and its config.json says 151643,
    // <|endoftext|>); only then the common spellings
    const byModel = (id: number | undefined): string[] => (id !== undefined && Number.isInteger(id) && id >= 0 && id < n && this.idToPiece[id] !== "" ? [this.idToPiece[id]!] : []);
    this.bosId = find([tokContent(config.bos_token), ...byModel(opts.modelIds?.bos), "<|begin_of_text|>", "<s>", "<|endoftext|>"]); // never <|im_start|>: ChatML opens a turn with it, no model takes it as BOS
    this.eosId = find([tokContent(config.eos_token), ...byModel(opts.modelIds?.eos), "<|end_of_text|>", "<|eot_id|>", "</s>", "<|im_end|>", "<|endoftext|>"]);
    this.addBos = config.add_bos_token ?? postProcessorAddsBos(json.post_processor, this.idToPiece[this.bosId]);
    this.probe();
  }

  /**
   * Runs the tokenizer once at load on a text that reaches every part it will use (normalizer,
   * pre-tokenizer, model, post-processor, decoder) and decodes every id (a sample of 65,536 beyond
   * that), so a component the library accepts at construction but cannot run fails now, naming the
   * file, rather than at the first encode of a long job.
   */
  private probe(): void {
    const ids = this.encode(PROBE_TEXT);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new QuantlabError("E_FORMAT", `${this.name}: the tokenizer encodes a probe text to id ${describe(id)}, outside its ${this.vocabSize} tokens`);
      }
    }
    this.guard("encode (with special tokens) with", () => this.impl.encode(PROBE_TEXT, { add_special_tokens: true }));
    if (ids.length > 0) this.decode(ids);
    const n = this.realSize;
    const step = Math.max(1, Math.ceil(n / 65536));
    const all: number[] = [];
    for (let id = 0; id < n; id += step) all.push(id);
    if (all.length > 0) this.guard("decode with", () => this.impl.decode(all, { skip_special_tokens: false }));
    if (n > 1) this.decodeToken(0, 1);
  }

  /** Calls into @huggingface/tokenizers; its exceptions become one QuantlabError naming the file. */
  private guard<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof QuantlabError) throw e;
      throw new QuantlabError("E_FORMAT", `${this.name}: cannot ${what} the tokenizer (${errText(e)})`, { cause: e });
    }
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.guard("encode with", () => this.impl.encode(text, { add_special_tokens: false }).ids);
    if (opts.bos && this.bosId >= 0) ids.unshift(this.bosId);
    if (opts.eos && this.eosId >= 0) ids.push(this.eosId);
    return ids;
  }

  decodeToken(prevId: number, id: number): string {
    return this.guard("decode with", () => {
      if (prevId < 0 || prevId === this.bosId) return this.impl.decode([id], { skip_special_tokens: true });
      const both = this.impl.decode([prevId, id], { skip_special_tokens: true });
      const before = this.impl.decode([prevId], { skip_special_tokens: true });
      return both.startsWith(before) ? both.slice(before.length) : this.impl.decode([id], { skip_special_tokens: true });
    });
  }

  decode(ids: number[]): string {
    if (ids.length === 0) return ""; // the library refuses an empty list
    return this.guard("decode with", () => this.impl.decode(ids, { skip_special_tokens: true }));
  }

  vocab(): Vocab {
    return tokenizerJsonToVocab(this.json, this.idToPiece, { bosId: this.bosId, eosId: this.eosId, addBos: this.addBos }, this.name, this.realSize);
  }

  /** Builds the tokenizer a GGUF-form vocabulary describes (tokenizer.json synthesized by `vocabToTokenizerJson`). */
  static fromVocab(v: Vocab, name = "vocabulary"): HfTokenizer {
    return new HfTokenizer(vocabToTokenizerJson(v), tokenizerConfigFor(v), name);
  }
}

/** Reaches letters, digits, punctuation, spaces, newlines, non-ASCII (bytes fallback) and special-token spellings. */
const PROBE_TEXT = "Once upon a time, 42 cats\n\t said: \"ünï 日本 🙂\" <s> </s> <|endoftext|>  end.";

function errText(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.length > 200 ? `${m.slice(0, 197)}...` : m;
}

function postProcessorAddsBos(pp: unknown, bos: string | undefined): boolean {
  if (bos === undefined || pp == null) return false;
  const s = JSON.stringify(pp);
  return s.includes(`"SpecialToken":{"id":${JSON.stringify(bos)}`);
}

function mergePair(m: string | [string, string]): [string, string] {
  if (Array.isArray(m)) return m;
  const i = m.indexOf(" ", 1); // a piece never starts with a plain space in tokenizer.json merges
  return [m.slice(0, i), m.slice(i + 1)];
}

function isByteLevel(json: TokenizerJson): boolean {
  return JSON.stringify(json.pre_tokenizer ?? null).includes('"ByteLevel"') || JSON.stringify(json.decoder ?? null).includes('"ByteLevel"');
}

/** GGUF-form vocabulary of a tokenizer.json. */
export function tokenizerJsonToVocab(json: TokenizerJson, idToPiece: string[], ids: { bosId: number; eosId: number; addBos: boolean }, name: string, realSize = idToPiece.length): Vocab {
  const n = idToPiece.length;
  const types = new Int32Array(n).fill(1);
  const scores = new Float32Array(n);
  const added = new Map<number, AddedTokenJson>();
  for (const t of json.added_tokens ?? []) added.set(t.id, t);
  const unkToken = json.model.unk_token ?? undefined;
  let unkId: number | undefined;
  for (let id = 0; id < n; id++) {
    const p = idToPiece[id]!;
    const a = added.get(id);
    if (p === unkToken) { types[id] = 2; unkId = id; }
    else if (a) types[id] = a.special ? 3 : 4;
    else if (BYTE_PIECE.test(p) && json.model.byte_fallback) types[id] = 6;
    else if (p === "" || (id >= realSize && p === `[PAD${id}]`)) types[id] = 5;
  }
  const type = json.model.type;
  if (type === "BPE" && isByteLevel(json)) {
    const merges = (json.model.merges ?? []).map((m) => mergePair(m).join(" "));
    return { model: "gpt2", pre: preNameOf(json.pre_tokenizer), pieces: idToPiece, scores, types, merges, bosId: ids.bosId, eosId: ids.eosId, addBos: ids.addBos, ...(unkId !== undefined ? { unkId } : {}) };
  }
  if (type === "BPE") {
    // SentencePiece BPE: the piece made by merge rank r scores −r; pieces no merge makes score below all of them
    const merges = json.model.merges ?? [];
    const rank = new Map<string, number>();
    merges.forEach((m, r) => {
      const [a, b] = mergePair(m);
      if (!rank.has(a + b)) rank.set(a + b, r);
    });
    const floor = -merges.length - 1;
    for (let id = 0; id < n; id++) {
      const r = rank.get(idToPiece[id]!);
      scores[id] = types[id] === 1 ? (r !== undefined ? -r : floor - id) : 0;
    }
    return { model: "llama", pieces: idToPiece, scores, types, bosId: ids.bosId, eosId: ids.eosId, addBos: ids.addBos, addSpacePrefix: addsSpacePrefix(json), ...(unkId !== undefined ? { unkId } : {}) };
  }
  if (type === "Unigram") {
    const vocab = json.model.vocab as [string, number][];
    for (let id = 0; id < vocab.length && id < n; id++) scores[id] = vocab[id]![1];
    const u = json.model.unk_id;
    return { model: "llama", pieces: idToPiece, scores, types, bosId: ids.bosId, eosId: ids.eosId, addBos: ids.addBos, addSpacePrefix: addsSpacePrefix(json), ...(u != null ? { unkId: u } : unkId !== undefined ? { unkId } : {}) };
  }
  throw new QuantlabError("E_UNSUPPORTED", `${name}: tokenizer model "${type}" has no GGUF form (BPE and Unigram do)`);
}

function tokenizerConfigFor(v: Vocab): TokenizerConfigJson {
  const c: TokenizerConfigJson = { add_bos_token: v.addBos };
  if (v.bosId >= 0) c.bos_token = v.pieces[v.bosId]!;
  if (v.eosId >= 0) c.eos_token = v.pieces[v.eosId]!;
  return c;
}

/** tokenizer.json for a GGUF-form vocabulary (llama → SentencePiece-style BPE with byte fallback; gpt2 → byte-level BPE). */
export function vocabToTokenizerJson(v: Vocab): TokenizerJson {
  const n = v.pieces.length;
  const vocab: Record<string, number> = {};
  for (let id = 0; id < n; id++) if (!(v.pieces[id]! in vocab)) vocab[v.pieces[id]!] = id;
  const added: AddedTokenJson[] = [];
  for (let id = 0; id < n; id++) {
    const t = v.types[id] as TokenType;
    if (t === 2 || t === 3 || t === 4) {
      added.push({ id, content: v.pieces[id]!, special: t !== 4, single_word: false, lstrip: false, rstrip: false, normalized: false });
    }
  }
  const post = v.addBos && v.bosId >= 0
    ? { type: "TemplateProcessing", single: [{ SpecialToken: { id: v.pieces[v.bosId]!, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [{ SpecialToken: { id: v.pieces[v.bosId]!, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }], special_tokens: { [v.pieces[v.bosId]!]: { id: v.pieces[v.bosId]!, ids: [v.bosId], tokens: [v.pieces[v.bosId]!] } } }
    : null;
  if (v.model === "gpt2") {
    return {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: preTokenizerFor(v.pre),
      post_processor: post,
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: v.pre === "llama-bpe", vocab, merges: v.merges ?? [] },
    };
  }
  // SentencePiece BPE: merges from every two-piece split of each normal piece, ranked by the merged piece's
  // score (descending), then left id, then right id (transformers SentencePieceExtractor).
  const cand: { s: number; l: number; r: number; m: string }[] = [];
  for (let id = 0; id < n; id++) {
    if (v.types[id] !== 1) continue;
    const p = v.pieces[id]!;
    const cps = Array.from(p);
    for (let k = 1; k < cps.length; k++) {
      const a = cps.slice(0, k).join("");
      const b = cps.slice(k).join("");
      const la = vocab[a];
      const rb = vocab[b];
      if (la !== undefined && rb !== undefined) cand.push({ s: v.scores[id]!, l: la, r: rb, m: `${a} ${b}` });
    }
  }
  cand.sort((x, y) => y.s - x.s || x.l - y.l || x.r - y.r);
  const unk = v.unkId !== undefined ? v.pieces[v.unkId]! : null;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    // llama.cpp's SPM session: "▁" before the text unless add_space_prefix is false (Gemma), spaces → "▁"
    normalizer: v.addSpacePrefix === false
      ? { type: "Replace", pattern: { String: " " }, content: SPM_SPACE }
      : { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPM_SPACE }, { type: "Replace", pattern: { String: " " }, content: SPM_SPACE }] },
    pre_tokenizer: null,
    post_processor: post,
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: SPM_SPACE }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, ...(v.addSpacePrefix === false ? [] : [{ type: "Strip", content: " ", start: 1, stop: 0 }])] },
    model: { type: "BPE", dropout: null, unk_token: unk, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: cand.map((c) => c.m) },
  };
}

/** Whether a SentencePiece-style tokenizer.json puts "▁" before the text: a Prepend normalizer, or a Metaspace pre-tokenizer that prepends. */
export function addsSpacePrefix(json: { normalizer?: unknown; pre_tokenizer?: unknown }): boolean {
  const n = JSON.stringify(json.normalizer ?? null);
  if (n.includes('"Prepend"')) return true;
  const p = JSON.stringify(json.pre_tokenizer ?? null);
  if (p.includes('"Metaspace"')) return !p.includes('"prepend_scheme":"never"') && !p.includes('"add_prefix_space":false');
  return false;
}
