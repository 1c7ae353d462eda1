import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Template } from "@huggingface/jinja";
import { encodeChatText, endOfTurnTokens, renderChat, selectChatTemplate } from "../../src/model/chat.js";
import { HfTokenizer, type TokenizerJson } from "../../src/model/tokenizers/hf.js";
import { Llama2cTokenizer } from "../../src/model/tokenizers/llama2c.js";
import { CHATML_TEMPLATE, byteLevelTokenizer, sentencePieceTokenizer } from "../helpers/byte-level.js";

describe("chat templates", () => {
  test("selectChatTemplate: a string, or the list entry named default; anything else names the file", () => {
    assert.equal(selectChatTemplate("x", "f"), "x");
    assert.equal(selectChatTemplate([{ name: "tool_use", template: "T" }, { name: "default", template: "D" }], "f"), "D");
    assert.throws(() => selectChatTemplate([{ name: "tool_use", template: "T" }], "d/tokenizer_config.json"), /d\/tokenizer_config\.json: chat_template lists no template named "default" \(it has: tool_use\)/);
    assert.throws(() => selectChatTemplate([{ name: 1 }], "f"), /f: chat_template\[0\] is not/);
    assert.throws(() => selectChatTemplate(7, "f"), /f: chat_template is neither/);
  });

  test("renderChat = @huggingface/jinja's render with messages, add_generation_prompt, bos/eos tokens", () => {
    const t = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
    const messages = [{ role: "system" as const, content: "S" }, { role: "user" as const, content: "héllo" }];
    const want = new Template(t).render({ messages, add_generation_prompt: true, bos_token: "<s>", eos_token: "</s>" });
    assert.equal(want, "<s>[system]S</s>[user]héllo</s>[assistant]");
    assert.equal(renderChat(t, messages, { bosToken: "<s>", eosToken: "</s>" }), want);
    assert.equal(renderChat(t, messages, { bosToken: "<s>", eosToken: "</s>", addGenerationPrompt: false }), "<s>[system]S</s>[user]héllo</s>");
  });

  test("a template that raises or does not parse: one error quoting jinja", () => {
    assert.throws(() => renderChat("{{ raise_exception('Roles must alternate') }}", [], { where: "m/chat_template.jinja" }), /^QuantlabError: m\/chat_template\.jinja: the chat template raised: .*Roles must alternate/);
    assert.throws(() => renderChat("{% for %}", [], { where: "w" }), /w: cannot parse the chat template: /);
  });

  test("end-of-turn tokens: EOS, the files' ids, and the template's markers present in the vocabulary", () => {
    const tok = byteLevelTokenizer("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>"], { eos: "<|endoftext|>" });
    const t = new HfTokenizer(tok.json as unknown as TokenizerJson, tok.config);
    const id = (s: string) => t.encode(s)[0]!;
    const stops = endOfTurnTokens(t, CHATML_TEMPLATE, [{ id: 5, from: "generation_config" }, { id: id("<|endoftext|>"), from: "generation_config" }]);
    assert.deepEqual(stops.map((s) => [s.id, s.from]), [[id("<|endoftext|>"), "eos"], [5, "generation_config"], [id("<|im_end|>"), "template"]]);
    // <|eot_id|> is in the vocabulary but not in the template: not a stop
    assert.ok(!stops.some((s) => s.id === id("<|eot_id|>")));
    assert.deepEqual(endOfTurnTokens(t, undefined).map((s) => s.id), [id("<|endoftext|>")]);
  });

  test("encodeChatText: a tokenizer.json matches its added tokens; a GGUF llama vocabulary is split at its control pieces", () => {
    const sp = sentencePieceTokenizer("gemma", ["<start_of_turn>", "<end_of_turn>"]);
    const hf = new HfTokenizer(sp.json as unknown as TokenizerJson, sp.config);
    const text = "<start_of_turn>user\nthe cat<end_of_turn>\n";
    const ids = encodeChatText(hf, text);
    const start = hf.encode("<start_of_turn>")[0]!;
    assert.equal(ids[0], start);
    assert.ok(ids.includes(hf.encode("<end_of_turn>")[0]!));
    // the same vocabulary as llama2.c's tokenizer (what a GGUF "llama" vocabulary without tokenizer.json loads as)
    const l2 = Llama2cTokenizer.fromVocab(hf.vocab());
    const split = encodeChatText(l2, text);
    assert.equal(split[0], start);
    assert.equal(split.filter((x) => x === start || x === hf.encode("<end_of_turn>")[0]).length, 2);
    assert.deepEqual(split.slice(1, split.indexOf(hf.encode("<end_of_turn>")[0]!)), l2.encode("user\nthe cat"));
  });
});
