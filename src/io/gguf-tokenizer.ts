/**
 * The tokenizer metadata a GGUF carries beyond the vocabulary itself (io/gguf-model.ts vocabMetadata):
 * the chat template (`tokenizer.chat_template`), the end-of-turn id (`tokenizer.ggml.eot_token_id`),
 * `tokenizer.ggml.add_eos_token`, the padding id from tokenizer_config.json's `pad_token`, and a warning when a byte-level BPE pre-tokenizer is not one whose
 * llama.cpp name we know (llama.cpp would then split text its own way). Key names: gguf-py
 * `constants.py` Keys.Tokenizer; llama.cpp src/llama-vocab.cpp reads them.
 */
import { endOfTurnTokens } from "../model/chat.js";
import { HfTokenizer, knownPreName } from "../model/tokenizers/hf.js";
import type { Vocab } from "../model/tokenizer.js";
import type { Model } from "../model/weights.js";
import { GgufValueType, type GgufValue } from "./gguf.js";
import { modelChatInfo } from "./hf-generation.js";

export const CHAT_TEMPLATE_KEY = "tokenizer.chat_template";

export function tokenizerExtraMetadata(model: Model, v: Vocab, name: string): { metadata: Map<string, GgufValue>; warnings: string[] } {
  const metadata = new Map<string, GgufValue>();
  const warnings: string[] = [];
  const t = model.tokenizer;
  if (!t) return { metadata, warnings };
  if (t instanceof HfTokenizer) {
    metadata.set("tokenizer.ggml.add_eos_token", { type: GgufValueType.BOOL, value: t.config.add_eos_token === true });
    // tokenizer_config.json pad_token (gguf-py SpecialVocab reads it the same way)
    const pad = t.config.pad_token;
    const padPiece = typeof pad === "string" ? pad : pad !== null && typeof pad === "object" && typeof (pad as { content?: unknown }).content === "string" ? (pad as { content: string }).content : undefined;
    const padId = padPiece !== undefined ? v.pieces.indexOf(padPiece) : -1;
    if (padId >= 0 && v.padId === undefined) metadata.set("tokenizer.ggml.padding_token_id", { type: GgufValueType.UINT32, value: padId });
    if (v.model === "gpt2" && knownPreName(t.json.pre_tokenizer) === undefined) {
      warnings.push(`${name}: ${t.name}'s pre-tokenizer is not one llama.cpp names (llama-bpe, qwen2, smollm, gpt-2): written as tokenizer.ggml.pre "${v.pre}", llama.cpp may split text differently from tokenizer.json`);
    }
  }
  const chat = modelChatInfo(model);
  if (chat.template) {
    metadata.set(CHAT_TEMPLATE_KEY, { type: GgufValueType.STRING, value: chat.template.text });
    // the template's end-of-turn marker, when it is not EOS (llama.cpp stops at eot as at eos)
    const eot = endOfTurnTokens(t, chat.template.text).find((s) => s.from === "template" && s.id !== v.eosId);
    if (eot) metadata.set("tokenizer.ggml.eot_token_id", { type: GgufValueType.UINT32, value: eot.id });
  }
  return { metadata, warnings };
}

