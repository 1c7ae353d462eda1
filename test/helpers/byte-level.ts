/** GPT-2's byte → printable-character table (bytes_to_unicode), in its own order: the vocabulary of byte-level BPE test fixtures. */
export function byteLevelAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  return cs.map((c) => String.fromCodePoint(c));
}

// ---------------------------------------------------------------------------------------------------
// Tiny tokenizer.json files as the Hugging Face `tokenizers` library writes them, trained here on a
// small text (a plain BPE trainer: most frequent adjacent pair first, ties by first occurrence).

/** Text the tiny tokenizers are trained on. */
export const TRAIN_TEXT = [
  "Once upon a time there was a little cat. The cat was in the theater, then the cat went west.",
  "In 2024 the numbers 12345 and 678 were written, and 3.14159 is pi. Don't stop: it's we'll they're I'm.",
  "Über naïve café — 日本語 😀 tokens\n\nnew lines\tand tabs    and spaces.",
  "the the the then there their them these those three thirty thought through",
].join("\n");

/** Pre-tokenizer JSON as the real checkpoints' tokenizer.json files write it. */
export const PRE_TOKENIZERS = {
  // Llama 3.x tokenizer.json
  "llama-bpe": { type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] },
  // Qwen2 / Qwen2.5 / Qwen3 tokenizer.json
  qwen2: { type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false }] },
  // SmolLM / SmolLM2 tokenizer.json
  smollm: { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }] },
  // GPT-2 / OLMo 1 tokenizer.json
  "gpt-2": { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
} as const;

export type PreName = keyof typeof PRE_TOKENIZERS;

/** The byte-level chunks (as alphabet strings) a pre-tokenizer would produce, approximated for training only. */
function trainWords(text: string, split: (s: string) => string[], toPieces: (w: string) => string[]): string[][] {
  return split(text).map(toPieces);
}

/** BPE merges learnt from `words` (each a list of symbols): `nMerges` most frequent adjacent pairs. */
function learnMerges(words: string[][], nMerges: number, accept: (a: string, b: string) => boolean = () => true, known?: Set<string>): [string, string][] {
  const merges: [string, string][] = [];
  for (let m = 0; m < nMerges; m++) {
    const count = new Map<string, number>();
    const first = new Map<string, number>();
    let k = 0;
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) {
      if (!accept(w[i]!, w[i + 1]!)) continue;
      const key = `${w[i]}\u0000${w[i + 1]}`;
      count.set(key, (count.get(key) ?? 0) + 1);
      if (!first.has(key)) first.set(key, k++);
    }
    let best: string | undefined;
    for (const [key, c] of count) if (c >= 2 && (best === undefined || c > count.get(best)! || (c === count.get(best)! && first.get(key)! < first.get(best)!))) best = key;
    if (best === undefined) break;
    const [a, b] = best.split("\u0000") as [string, string];
    merges.push([a, b]);
    known?.add(a + b);
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) w.splice(i, 2, a + b);
  }
  return merges;
}

export interface TinyTokenizer {
  json: Record<string, unknown>;
  config: Record<string, unknown>;
  vocabSize: number;
}

/**
 * A byte-level BPE tokenizer.json (Llama 3 / Qwen / SmolLM / GPT-2 family): the 256 byte symbols,
 * merges trained on TRAIN_TEXT, then `specials` as added special tokens.
 */
export function byteLevelTokenizer(pre: PreName, specials: string[], opts: { bos?: string; eos?: string; pad?: string; addBos?: boolean; nMerges?: number; chatTemplate?: string } = {}): TinyTokenizer {
  const alphabet = byteLevelAlphabet();
  const enc = new TextEncoder();
  const byteChar = byteLevelCharOfByte();
  const toPieces = (w: string) => Array.from(enc.encode(w), (b) => byteChar[b]!);
  const words = trainWords(TRAIN_TEXT, (s) => s.match(/ ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+/gu) ?? [], toPieces);
  const merges = learnMerges(words, opts.nMerges ?? 300);
  const vocab: Record<string, number> = {};
  const pieces = [...alphabet];
  for (const [a, b] of merges) if (!(a + b in vocab) && !pieces.includes(a + b)) pieces.push(a + b);
  pieces.forEach((p, i) => (vocab[p] = i));
  const added = specials.map((content, i) => ({ id: pieces.length + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  for (const a of added) vocab[a.content] = a.id;
  const bos = opts.bos !== undefined ? added.find((a) => a.content === opts.bos) : undefined;
  const post = opts.addBos && bos
    ? { type: "TemplateProcessing", single: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: bos.content, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }], special_tokens: { [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] } } }
    : { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  const json = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: PRE_TOKENIZERS[pre], post_processor: post,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: pre === "llama-bpe", vocab, merges: merges.map(([a, b]) => [a, b]) },
  };
  const config: Record<string, unknown> = { add_bos_token: opts.addBos ?? false, add_eos_token: false, ...(opts.bos ? { bos_token: opts.bos } : {}), ...(opts.eos ? { eos_token: opts.eos } : {}), ...(opts.pad ? { pad_token: opts.pad } : {}), model_max_length: 4096, ...(opts.chatTemplate ? { chat_template: opts.chatTemplate } : {}) };
  return { json, config, vocabSize: pieces.length + added.length };
}

/**
 * A SentencePiece-style BPE tokenizer.json with byte fallback: `<unk>` `<s>` `</s>`, the 256 `<0xNN>`
 * byte pieces, the single characters of TRAIN_TEXT, merges trained on it, then `specials`.
 * `style` "llama2": Prepend("▁") + Replace(" ", "▁") normalizer (Llama 2 / Mistral's tokenizer.json);
 * "gemma": Replace only, no dummy prefix (Gemma's tokenizer.json; llama.cpp add_space_prefix false).
 */
export function sentencePieceTokenizer(style: "llama2" | "gemma", specials: string[], opts: { nMerges?: number; chatTemplate?: string } = {}): TinyTokenizer {
  const SP = "\u2581";
  const norm = (t: string) => (style === "llama2" ? SP : "") + t.replace(/ /g, SP);
  const pieces = ["<unk>", "<s>", "</s>"];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  const chars = [...new Set(Array.from(norm(TRAIN_TEXT)).filter((c) => c !== "\n" && c !== "\t" && c.codePointAt(0)! < 0x3000))];
  pieces.push(...chars);
  // words: split before each ▁ (SentencePiece pieces start with the space marker) and at newlines
  const words = norm(TRAIN_TEXT).split(/(?=\u2581)|\n|\t/).map((w) => Array.from(w));
  const known = new Set(pieces);
  const merges = learnMerges(words, opts.nMerges ?? 300, (a, b) => known.has(a) && known.has(b) && !b.startsWith(SP), known);
  for (const [a, b] of merges) if (!pieces.includes(a + b)) pieces.push(a + b);
  const vocab: Record<string, number> = {};
  pieces.forEach((p, i) => (vocab[p] = i));
  const added = [
    { id: 0, content: "<unk>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1, content: "<s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 2, content: "</s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ...specials.map((content, i) => ({ id: pieces.length + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  ];
  for (const a of added) vocab[a.content] = a.id;
  const normalizer = style === "llama2"
    ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SP }, { type: "Replace", pattern: { String: " " }, content: SP }] }
    : { type: "Replace", pattern: { String: " " }, content: SP };
  const decoders: object[] = [{ type: "Replace", pattern: { String: SP }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }];
  if (style === "llama2") decoders.push({ type: "Strip", content: " ", start: 1, stop: 0 });
  const json = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer, pre_tokenizer: null,
    post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }], special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } } },
    decoder: { type: "Sequence", decoders },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map(([a, b]) => [a, b]) },
  };
  const config: Record<string, unknown> = { add_bos_token: true, add_eos_token: false, bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", model_max_length: 4096, ...(opts.chatTemplate ? { chat_template: opts.chatTemplate } : {}) };
  return { json, config, vocabSize: pieces.length + specials.length };
}

/** ChatML (Qwen / SmolLM2-Instruct style) */
export const CHATML_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** GPT-2's bytes_to_unicode as a table indexed by byte value. */
export function byteLevelCharOfByte(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const out: string[] = new Array(256);
  const alphabet = byteLevelAlphabet();
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) bs.push(b);
  bs.forEach((b, i) => (out[b] = alphabet[i]!));
  return out;
}
