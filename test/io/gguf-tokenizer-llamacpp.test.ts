/**
 * tokenizer.json → GGUF tokenizer metadata, checked against llama.cpp: a tiny HF directory of each
 * tokenizer kind (byte-level BPE with each pre-tokenizer llama.cpp names; SentencePiece-style with
 * byte fallback, Llama 2 and Gemma flavours) is converted by quantlab, loaded in llama.cpp
 * (node-llama-cpp 3.21.1), and llama.cpp's tokenization of varied text must equal
 * @huggingface/tokenizers' on the source tokenizer.json; quantlab's GGUF tokenizer must encode the same
 * and decode back to the text; the chat template must read back unchanged.
 */
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { rewriteGguf } from "../cli/helpers-cli.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer as HfLib } from "@huggingface/tokenizers";
import { loadModel } from "../../src/io/node/load.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { saveGgufFile, openGgufFile } from "../../src/io/node/gguf-file.js";
import { metaString, metaNumber, metaBool } from "../../src/io/gguf.js";
import { HfTokenizer, type TokenizerJson } from "../../src/model/tokenizers/hf.js";
import { Rng } from "../../src/core/rng.js";
import { Tensor } from "../../src/core/tensor.js";
import { expectedShapes, type ModelConfig } from "../../src/model/config.js";
import type { Model } from "../../src/model/weights.js";
import type { Weight } from "../../src/core/weight.js";
import { LlamaCppModel } from "../helpers/llamacpp.js";
import { CHATML_TEMPLATE, byteLevelTokenizer, sentencePieceTokenizer, type TinyTokenizer } from "../helpers/byte-level.js";

const dir = mkdtempSync(join(tmpdir(), "ql-gguf-tok-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Text that reaches spaces (leading, repeated, trailing), digits, contractions, unicode, newlines and tabs. */
const TEXTS = [
  "Hello world",
  " leading space and trailing  ",
  "multiple   spaces\tand\ttabs",
  "digits 1234567 and 3.14159, 2024!",
  "Don't stop: it's we'll THEY'RE I'm",
  "Über naïve café — 日本語 😀 ok",
  "new\nlines\n\n\nthree and \r\n crlf",
  "the cat went west, then there was the theater.",
];

function tinyModel(tok: TinyTokenizer, name: string): Model {
  const cfg: ModelConfig = { arch: "llama", dim: 64, hiddenDim: 128, nLayers: 1, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: tok.vocabSize, seqLen: 256, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, name };
  const rng = new Rng(5);
  const weights = new Map<string, Weight>();
  for (const [n, shape] of expectedShapes(cfg)) {
    const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (shape.length === 1) d.fill(1);
    else rng.fillNormal(d, 0.05);
    weights.set(n, { kind: "dense", tensor: new Tensor("f32", shape, d) });
  }
  const tokenizer = new HfTokenizer(tok.json as unknown as TokenizerJson, tok.config, `${name}/tokenizer.json`);
  return { config: cfg, weights, tokenizer, source: { path: name, format: "memory" } };
}

interface Case { name: string; tok: TinyTokenizer; model: "gpt2" | "llama"; pre?: string; spacePrefix?: boolean; specialText: string }

const CASES: Case[] = [
  { name: "byte-level llama-bpe (Llama 3)", tok: byteLevelTokenizer("llama-bpe", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], { bos: "<|begin_of_text|>", eos: "<|end_of_text|>", addBos: true }), model: "gpt2", pre: "llama-bpe",
    specialText: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi 42<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" },
  { name: "byte-level qwen2 (Qwen 2.5 / 3, ChatML)", tok: byteLevelTokenizer("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], { eos: "<|im_end|>", pad: "<|endoftext|>", chatTemplate: CHATML_TEMPLATE }), model: "gpt2", pre: "qwen2",
    specialText: "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n123 + 4567?<|im_end|>\n<|im_start|>assistant\n" },
  { name: "byte-level smollm (SmolLM2)", tok: byteLevelTokenizer("smollm", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], { bos: "<|im_start|>", eos: "<|im_end|>", chatTemplate: CHATML_TEMPLATE }), model: "gpt2", pre: "smollm",
    specialText: "<|im_start|>user\nthe 2024 numbers<|im_end|>\n" },
  { name: "byte-level gpt-2 (GPT-2 / OLMo 1 regex)", tok: byteLevelTokenizer("gpt-2", ["<|endoftext|>"], { eos: "<|endoftext|>" }), model: "gpt2", pre: "gpt-2",
    specialText: "one<|endoftext|>two  three" },
  { name: "SentencePiece Llama 2 style (Prepend ▁, byte fallback)", tok: sentencePieceTokenizer("llama2", []), model: "llama", spacePrefix: true,
    specialText: "<s>hello there</s>" },
  { name: "SentencePiece Gemma style (no dummy prefix, byte fallback, <start_of_turn>)", tok: sentencePieceTokenizer("gemma", ["<start_of_turn>", "<end_of_turn>"], { chatTemplate: "{{ bos_token }}{% for m in messages %}{{ '<start_of_turn>' + m['role'] + '\\n' + m['content'] + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}" }), model: "llama", spacePrefix: false,
    specialText: "<start_of_turn>user\nthe cat 42<end_of_turn>\n<start_of_turn>model\n" },
];

describe("GGUF tokenizer metadata: llama.cpp tokenizes like tokenizer.json", () => {
  for (const c of CASES) {
    test(c.name, async () => {
      const slug = c.name.replace(/[^a-z0-9]+/gi, "-");
      const hfDir = join(dir, slug);
      await saveHfDir(tinyModel(c.tok, slug), hfDir);
      const fromDir = await loadModel(hfDir);
      const gguf = join(dir, `${slug}.gguf`);
      const rep = await saveGgufFile(fromDir, gguf);
      assert.deepEqual(rep.warnings ?? [], [], "a known pre-tokenizer: no warning");
      await fromDir.close?.();

      const f = await openGgufFile(gguf);
      try {
        assert.equal(metaString(f, "tokenizer.ggml.model"), c.model);
        if (c.pre) assert.equal(metaString(f, "tokenizer.ggml.pre"), c.pre);
        if (c.spacePrefix !== undefined) assert.equal(metaBool(f, "tokenizer.ggml.add_space_prefix"), c.spacePrefix);
        const tmpl = c.tok.config.chat_template as string | undefined;
        assert.equal(metaString(f, "tokenizer.chat_template"), tmpl, "chat template read back equals the source's");
        const added = c.tok.json.added_tokens as { id: number; content: string }[];
        if (c.tok.config.pad_token !== undefined) assert.equal(metaNumber(f, "tokenizer.ggml.padding_token_id"), added.find((a) => a.content === c.tok.config.pad_token)!.id);
        const imEnd = (c.tok.json.added_tokens as { id: number; content: string }[]).find((a) => a.content === "<|im_end|>")?.id;
        // ChatML's end of turn: eot_token_id unless it is EOS already
        if (tmpl?.includes("<|im_end|>")) assert.equal(metaNumber(f, "tokenizer.ggml.eot_token_id"), imEnd === metaNumber(f, "tokenizer.ggml.eos_token_id") ? undefined : imEnd);
      } finally {
        await f.source.close?.();
      }

      const ref = new HfLib(c.tok.json as never, c.tok.config as never);
      const ours = (await loadModel(gguf)).tokenizer!;
      const lc = await LlamaCppModel.load(gguf, { contextSize: 64 });
      try {
        let merged = 0;
        for (const text of [...TEXTS, c.specialText]) {
          const want = ref.encode(text, { add_special_tokens: false }).ids;
          merged += new TextEncoder().encode(text).length - want.length;
          const special = text === c.specialText;
          assert.deepEqual(lc.tokenize(text, special), want, `llama.cpp vs tokenizer.json on ${JSON.stringify(text)}`);
          assert.deepEqual(ours.encode(text), want, `quantlab's GGUF tokenizer vs tokenizer.json on ${JSON.stringify(text)}`);
          if (!special) {
            assert.equal(ours.decode(want), ref.decode(want, { skip_special_tokens: true }), `quantlab decode on ${JSON.stringify(text)}`);
            assert.equal(ours.decode(want), text, `round trip of ${JSON.stringify(text)}`);
            assert.equal(lc.detokenize(want), text, `llama.cpp round trip of ${JSON.stringify(text)}`);
          }
        }
        // a GGUF without tokenizer.huggingface.json (as llama.cpp's converter writes them): the vocabulary alone
        // (scores, token types, merges, add_space_prefix) must tokenize the same
        const bare = join(dir, `${slug}-bare.gguf`);
        writeFileSync(bare, await rewriteGguf(readFileSync(gguf), (md) => md.delete("tokenizer.huggingface.json")));
        const bareTok = (await loadModel(bare)).tokenizer!;
        for (const text of TEXTS) {
          assert.deepEqual(bareTok.encode(text), lc.tokenize(text), `quantlab (vocabulary only) vs llama.cpp on ${JSON.stringify(text)}`);
          // after BOS, as text is generated (llama2.c's decode keeps the dummy-prefix space at the very start)
          const withBos = bareTok.bosId >= 0 ? [bareTok.bosId, ...lc.tokenize(text)] : lc.tokenize(text);
          assert.equal(bareTok.decode(withBos), text, `quantlab (vocabulary only) round trip of ${JSON.stringify(text)}`);
        }
        // the trained merges are exercised (else a tokenizer of bytes alone would pass trivially)
        assert.ok(merged > 50, `only ${merged} bytes saved by merges`);
        const specials = ref.encode(c.specialText, { add_special_tokens: false }).ids.filter((id: number) => (c.tok.json.added_tokens as { id: number }[]).some((a) => a.id === id));
        assert.ok(specials.length >= 1, "the special-token text holds special ids");
      } finally {
        await lc.dispose();
      }
    });
  }
});

/** Gemma's chat template as its tokenizer_config.json has it, without the system-role check. */
const GEMMA_TEMPLATE = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";

describe("chat prompt: quantlab's jinja rendering = node-llama-cpp's own chat wrapper on the GGUF", () => {
  const cases: [string, TinyTokenizer, string][] = [
    ["Gemma (GemmaChatWrapper)", sentencePieceTokenizer("gemma", ["<start_of_turn>", "<end_of_turn>"], { chatTemplate: GEMMA_TEMPLATE }), "GemmaChatWrapper"],
    ["ChatML (ChatMLChatWrapper)", byteLevelTokenizer("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], { eos: "<|im_end|>", chatTemplate: CHATML_TEMPLATE }), "ChatMLChatWrapper"],
  ];
  for (const [name, tok, wrapper] of cases) {
    test(name, async () => {
      const { resolveChatWrapper } = await import("node-llama-cpp");
      const { renderChat, encodeChatText } = await import("../../src/model/chat.js");
      const slug = `chat-${wrapper}`;
      await saveHfDir(tinyModel(tok, slug), join(dir, slug));
      const gguf = join(dir, `${slug}.gguf`);
      await saveGgufFile(await loadModel(join(dir, slug)), gguf);
      const ours = await loadModel(gguf);
      const t = ours.tokenizer!;
      const v = t.vocab();
      const user = "Hi 42, the cat?";
      const ids = encodeChatText(t, renderChat(tok.config.chat_template as string, [{ role: "user", content: user }], { bosToken: v.pieces[t.bosId], eosToken: v.pieces[t.eosId] }));
      const lc = await LlamaCppModel.load(gguf, { contextSize: 64 });
      try {
        const lm = lc.model;
        // node-llama-cpp recognizes the template and formats with its own TypeScript wrapper (not jinja)
        const w = resolveChatWrapper({ bosString: lm.tokens.bosString, filename: gguf, fileInfo: lm.fileInfo, tokenizer: lm.tokenizer });
        assert.equal(w?.constructor.name, wrapper);
        let theirs = w!.generateContextState({ chatHistory: [{ type: "user", text: user }, { type: "model", response: [] }] }).contextText.tokenize(lm.tokenizer).map(Number);
        // node-llama-cpp starts every context with BOS when the vocabulary has one; ChatML itself writes none
        if (!(tok.config.chat_template as string).includes("bos_token") && theirs[0] === t.bosId) theirs = theirs.slice(1);
        assert.deepEqual(ids, theirs);
      } finally {
        await lc.dispose();
      }
    });
  }
});
