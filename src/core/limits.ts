/**
 * Plausibility bounds on the counts and sizes a model file declares (hyper-parameters, vocabularies,
 * token ids). Every reader checks what it read against these, and against the file's own size, before
 * it allocates or loops over anything the number drives — as ggml's gguf.cpp does for its header
 * (`gguf_init_from_file_impl`: counts checked against SIZE_MAX / element size and against the bytes
 * left, GGML_MAX_DIMS, INT64_MAX element products). A value past a bound means a corrupt or hostile
 * file, not a model we cannot run, so the error says which key, which value and which bound.
 *
 * The bounds sit far above every published model (figures from the models' config.json files), so no
 * real file trips them, yet low enough that loops and allocations they drive stay small and that
 * products of two of them stay exact in a double.
 */
import { QuantlabError } from "./errors.js";

/** Transformer blocks. Llama 3.1 405B has 126, the deepest published dense models stay below 200. */
export const MAX_LAYERS = 1 << 12;
/** Embedding width. Llama 3.1 405B: 16384; Grok-1 6144. */
export const MAX_DIM = 1 << 17;
/** FFN width. Llama 3.1 405B: 53248; the widest published (Falcon 180B) 59392 (4 × 14848). */
export const MAX_HIDDEN = 1 << 20;
/** Attention heads (query or KV). Llama 3.1 405B: 128; the most published: 256 (some MoE). */
export const MAX_HEADS = 1 << 12;
/** Head size. Published models: 64..256 (Gemma 2 256); a few thousand means a corrupt key. */
export const MAX_HEAD_DIM = 1 << 13;
/** Vocabulary size and token ids. Gemma 3: 262,144 entries, the largest published; 8× that. */
export const MAX_VOCAB = 1 << 21;
/** Trained context length. Llama 4 Scout claims 10M tokens; 16M is a generous ceiling. */
export const MAX_SEQ_LEN = 1 << 24;
/** BPE merges in a tokenizer. Published vocabularies carry up to ~500k (Gemma); 2^23 is far beyond. */
export const MAX_MERGES = 1 << 23;
/** Characters of one token piece. SentencePiece caps pieces at 16 bytes by default; long ones reach ~200. */
export const MAX_PIECE_CHARS = 1 << 16;
/**
 * JSON a reader parses from a file (config.json, tokenizer.json, metadata strings). The largest
 * tokenizer.json files published (Gemma, ~33 MB; Qwen2 ~11 MB) stay well below.
 */
export const MAX_JSON_BYTES = 256 << 20;
/** Nesting depth of such JSON: real files nest under 10 levels; deep nesting only serves stack bombs. */
export const MAX_JSON_DEPTH = 64;

/**
 * Checks that `value` is an integer in [min, max]; the error names the file and the key, e.g.
 * `model.gguf: llama.block_count = 4194304 is above MAX_LAYERS = 4096 (corrupt file?)`.
 */
export function checkCount(where: string, key: string, value: unknown, min: number, max: number, maxName: string): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new QuantlabError("E_FORMAT", `${where}: ${key} = ${describe(value)} is not an integer`);
  }
  if (value < min) throw new QuantlabError("E_FORMAT", `${where}: ${key} = ${value} is below ${min}`);
  if (value > max) throw new QuantlabError("E_FORMAT", `${where}: ${key} = ${value} is above ${maxName} = ${max} (corrupt file?)`);
  return value;
}

/** Checks that `value` is a finite number > 0 (RoPE θ, RMS ε: a NaN or 0 there silently breaks every output). */
export function checkPositive(where: string, key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || !(value > 0)) {
    throw new QuantlabError("E_FORMAT", `${where}: ${key} = ${describe(value)} is not a finite positive number`);
  }
  return value;
}

/** A short, one-line rendering of a value read from a file, for error messages. */
export function describe(value: unknown): string {
  let s: string;
  try {
    s = typeof value === "bigint" ? String(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    s = String(value);
  }
  s = s.replace(/\s+/g, " ");
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * JSON.parse with the size and depth bounds above and a QuantlabError naming the file on any failure
 * (JSON.parse's own errors carry no file name; a very deep document makes it throw RangeError).
 */
export function parseJsonBounded(text: string, where: string): unknown {
  if (text.length > MAX_JSON_BYTES) throw new QuantlabError("E_FORMAT", `${where}: ${text.length} characters of JSON, above MAX_JSON_BYTES = ${MAX_JSON_BYTES}`);
  // depth first, without recursion: brackets outside strings
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JSON_DEPTH) throw new QuantlabError("E_FORMAT", `${where}: JSON nested deeper than MAX_JSON_DEPTH = ${MAX_JSON_DEPTH}`);
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new QuantlabError("E_FORMAT", `${where}: not valid JSON (${(e as Error).message})`);
  }
}

/** Throws unless `v` is a plain JSON object; returns it typed. */
export function jsonObject(v: unknown, where: string, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new QuantlabError("E_FORMAT", `${where}: ${what} should be a JSON object, got ${describe(v)}`);
  return v as Record<string, unknown>;
}
