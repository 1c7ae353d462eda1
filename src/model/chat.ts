/**
 * Chat: a model's chat template rendered with @huggingface/jinja (the Jinja subset transformers' chat
 * templates use), the rendered text tokenized as transformers' `apply_chat_template(tokenize=True)`
 * does (special-token spellings become their ids, no extra BOS: templates write `{{ bos_token }}`
 * themselves), and turns generated until an end-of-turn token. Isomorphic: the CLI (Node) and the
 * browser lab call the same functions; where the template and the stop ids come from (tokenizer_config,
 * chat_template.jinja, GGUF metadata, generation_config.json) is io's business (io/hf-generation.ts).
 */
import { Template } from "@huggingface/jinja";
import { QuantlabError } from "../core/errors.js";
import type { Llama } from "./llama.js";
import { Sampler, type SamplerOptions } from "./sampler.js";
import type { Tokenizer } from "./tokenizer.js";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * The template to use from a `chat_template` value as transformers stores it: a string, or a list of
 * `{name, template}` (tokenizer_config.json of models with several templates, e.g. tool use), of
 * which transformers picks "default" when no name is asked for.
 */
export function selectChatTemplate(raw: unknown, where: string): string {
  if (typeof raw === "string") return raw;
  if (Array.isArray(raw)) {
    const names: string[] = [];
    for (const [i, t] of raw.entries()) {
      if (t === null || typeof t !== "object" || typeof (t as { name?: unknown }).name !== "string" || typeof (t as { template?: unknown }).template !== "string") {
        throw new QuantlabError("E_FORMAT", `${where}: chat_template[${i}] is not {"name": string, "template": string}`);
      }
      names.push((t as { name: string }).name);
      if ((t as { name: string }).name === "default") return (t as { template: string }).template;
    }
    throw new QuantlabError("E_FORMAT", `${where}: chat_template lists no template named "default" (it has: ${names.join(", ") || "none"})`);
  }
  throw new QuantlabError("E_FORMAT", `${where}: chat_template is neither a string nor a list of {name, template}`);
}

export interface RenderOptions {
  bosToken?: string;
  eosToken?: string;
  /** end the text with the assistant's turn header (transformers' add_generation_prompt); default true */
  addGenerationPrompt?: boolean;
  /** where the template came from, for errors */
  where?: string;
}

/** The conversation as the template writes it. A template that fails to parse or raises is one error quoting jinja's message. */
export function renderChat(template: string, messages: ChatMessage[], opts: RenderOptions = {}): string {
  const where = opts.where ?? "chat template";
  let t: Template;
  try {
    t = new Template(template);
  } catch (e) {
    throw new QuantlabError("E_FORMAT", `${where}: cannot parse the chat template: ${errText(e)}`, { cause: e });
  }
  try {
    return t.render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      bos_token: opts.bosToken ?? "",
      eos_token: opts.eosToken ?? "",
    });
  } catch (e) {
    throw new QuantlabError("E_FORMAT", `${where}: the chat template raised: ${errText(e)}`, { cause: e });
  }
}

function errText(e: unknown): string {
  const m = (e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ");
  return m.length > 300 ? `${m.slice(0, 297)}...` : m;
}

/**
 * End-of-turn marker spellings of the model families we run (ChatML / Qwen, Llama 3, Gemma, Phi-3,
 * Granite…). llama.cpp (src/llama-vocab.cpp, the end-of-generation set) treats these pieces as
 * end-of-generation whenever the vocabulary has them; we stop at one only when the template writes it,
 * so a base model's vocabulary with reserved ChatML pieces keeps generating past them in plain `run`.
 */
export const END_OF_TURN_PIECES = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "<|end_of_text|>", "</s>", "<|end_of_role|>"] as const;

export interface StopToken {
  id: number;
  piece: string;
  /** why it stops: "eos" (tokenizer), "generation_config", "gguf:<key>", "template" (a marker the template writes) */
  from: string;
}

/**
 * The ids a chat turn stops at: the tokenizer's EOS, the `extra` ids the files name (generation_config
 * eos_token_id, GGUF eos/eot ids), and every END_OF_TURN_PIECES piece of the vocabulary that the
 * template writes. Deduplicated, first source wins.
 */
export function endOfTurnTokens(tokenizer: Tokenizer, template: string | undefined, extra: { id: number; from: string }[] = []): StopToken[] {
  const pieces = tokenizer.vocab().pieces;
  const out = new Map<number, StopToken>();
  const add = (id: number, from: string) => {
    if (Number.isInteger(id) && id >= 0 && id < pieces.length && !out.has(id)) out.set(id, { id, piece: pieces[id]!, from });
  };
  add(tokenizer.eosId, "eos");
  for (const e of extra) add(e.id, e.from);
  if (template !== undefined) {
    const index = new Map<string, number>();
    for (const p of END_OF_TURN_PIECES) index.set(p, -1);
    for (let id = 0; id < pieces.length; id++) if (index.get(pieces[id]!) === -1) index.set(pieces[id]!, id);
    for (const [p, id] of index) if (id >= 0 && template.includes(p)) add(id, "template");
  }
  return [...out.values()];
}

/**
 * Token ids of rendered chat text. An HfTokenizer (tokenizer.json) matches its added tokens itself; any
 * other tokenizer (a GGUF "llama" vocabulary read as llama2.c's) gets the text split at the control /
 * user-defined pieces (GGUF token types 3 and 4, longest first), each piece its own id, the text between
 * encoded without BOS: llama.cpp's `parse_special` tokenization (llama-vocab.cpp tokenizer_st_partition).
 */
export function encodeChatText(tokenizer: Tokenizer, text: string): number[] {
  if ((tokenizer as { json?: unknown }).json !== undefined) return tokenizer.encode(text);
  const v = tokenizer.vocab();
  const specials: { piece: string; id: number }[] = [];
  for (let id = 0; id < v.pieces.length; id++) if ((v.types[id] === 3 || v.types[id] === 4) && v.pieces[id]!.length > 0) specials.push({ piece: v.pieces[id]!, id });
  specials.sort((a, b) => b.piece.length - a.piece.length || a.id - b.id);
  const ids: number[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const s = specials.find((x) => text.startsWith(x.piece, i));
    if (!s) {
      i++;
      continue;
    }
    if (i > start) ids.push(...tokenizer.encode(text.slice(start, i)));
    ids.push(s.id);
    i += s.piece.length;
    start = i;
  }
  if (start < text.length) ids.push(...tokenizer.encode(text.slice(start)));
  return ids;
}

export interface ChatTurnOptions extends SamplerOptions {
  /** most tokens the reply may have (it also ends at the context's end) */
  maxTokens: number;
  stop: StopToken[];
  onText?: (piece: string) => void;
  name?: string;
}

export interface ChatTurnResult {
  /** the reply's text (stop token excluded) */
  text: string;
  /** the reply's ids (stop token excluded) */
  tokenIds: number[];
  /** ids of the prompt fed this turn (the rendered conversation minus what the KV cache already held) */
  newPromptTokens: number;
  stopReason: "stop_token" | "max_tokens" | "context_full";
  stopToken?: StopToken;
  decodeMs: number;
}

/**
 * A conversation over one KV cache: each turn the whole conversation is rendered and tokenized again,
 * and only the ids after the longest prefix the cache already holds are fed (templates render earlier
 * turns the same way, so that is usually just the new user turn).
 */
export class ChatSession {
  /** ids whose keys/values are in the cache, position = index */
  private cached: number[] = [];
  private readonly sampler: Sampler;

  constructor(readonly llama: Llama, readonly tokenizer: Tokenizer, sampler: SamplerOptions = {}) {
    this.sampler = new Sampler(sampler);
    llama.reset();
  }

  /** Feeds `promptIds` (the rendered conversation, tokenized) and generates the reply. */
  turn(promptIds: number[], opts: ChatTurnOptions): ChatTurnResult {
    if (promptIds.length === 0) throw new QuantlabError("E_ARG", "the chat prompt encodes to no tokens");
    const cap = this.llama.capacity;
    if (promptIds.length >= cap) throw new QuantlabError("E_ARG", `${opts.name ?? "model"}: the conversation is ${promptIds.length} tokens, the context holds ${cap} (--ctx)`);
    let common = 0;
    while (common < this.cached.length && common < promptIds.length - 1 && this.cached[common] === promptIds[common]) common++;
    this.cached.length = common;
    // feed all but the last prompt id in one batch; the last one's logits start the reply
    if (promptIds.length - 1 > common) this.llama.prefill(promptIds.slice(common, promptIds.length - 1), common);
    for (let p = common; p < promptIds.length - 1; p++) this.cached.push(promptIds[p]!);
    const stopBy = new Map(opts.stop.map((s) => [s.id, s]));
    const t0 = Date.now();
    const reply: number[] = [];
    let text = "";
    let token = promptIds[promptIds.length - 1]!;
    let stopReason: ChatTurnResult["stopReason"] = "max_tokens";
    let stopToken: StopToken | undefined;
    for (;;) {
      const pos = this.cached.length;
      if (pos >= cap) {
        stopReason = "context_full";
        break;
      }
      const logits = this.llama.forward(token, pos);
      this.cached.push(token);
      for (let j = 0; j < logits.length; j++) {
        const x = logits[j]!;
        if (x - x !== 0) throw new QuantlabError("E_VALUE", `${opts.name ?? "model"}: non-finite output at position ${pos}: logit of token ${j} is ${x}`);
      }
      if (reply.length >= opts.maxTokens) break;
      const next = this.sampler.sample(logits);
      const s = stopBy.get(next);
      if (s) {
        stopReason = "stop_token";
        stopToken = s;
        break; // not fed: the next turn's rendering writes it (and what follows it) again

      }
      const piece = this.tokenizer.decodeToken(token, next);
      text += piece;
      if (piece) opts.onText?.(piece);
      reply.push(next);
      token = next;
    }
    return { text, tokenIds: reply, newPromptTokens: promptIds.length - common, stopReason, ...(stopToken ? { stopToken } : {}), decodeMs: Date.now() - t0 };
  }
}
