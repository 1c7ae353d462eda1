/** The tokenizer contract the model, CLI and writers use. Implementations live beside this file. */
export type TokenType = 1 | 2 | 3 | 4 | 5 | 6; // GGUF token_type: normal, unknown, control, user-defined, unused, byte

export interface Vocab {
  /** `tokenizer.ggml.model`: "llama" (SentencePiece-style scores) or "gpt2" (byte-level BPE with merges) */
  model: "llama" | "gpt2";
  pieces: string[];
  scores: Float32Array;
  types: Int32Array;
  merges?: string[];
  /** `tokenizer.ggml.pre`: llama.cpp's name for a gpt2 vocabulary's pre-tokenizer (e.g. "llama-bpe", "qwen2", "smollm") */
  pre?: string;
  bosId: number;
  eosId: number;
  unkId?: number;
  padId?: number;
  addBos: boolean;
  /** `tokenizer.ggml.add_space_prefix` of a "llama" vocabulary: "▁" before the text (llama.cpp's default true; Gemma false) */
  addSpacePrefix?: boolean;
}

export interface EncodeOptions {
  bos?: boolean;
  eos?: boolean;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  encode(text: string, opts?: EncodeOptions): number[];
  /** Text of `id` as printed after `prevId` (llama2.c strips the leading space after BOS, maps <0xNN> to bytes). */
  decodeToken(prevId: number, id: number): string;
  decode(ids: number[]): string;
  /** Vocabulary in GGUF form, so a GGUF we write carries it. */
  vocab(): Vocab;
}
