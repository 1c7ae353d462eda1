/**
 * `quantlab run --chat` on a tiny Llama with a byte-level tokenizer and a ChatML template, as an HF
 * directory and as the GGUF quantlab converts it to. The weights make the reply deterministic: every
 * layer is near zero, so the logits are output · norm(embedding of the current token), and the output
 * rows are built so that the prompt's last token → "O" → "K" → <|im_end|>. The prompt ids are checked
 * against the template rendered by @huggingface/jinja and tokenized by @huggingface/tokenizers.
 */
import { test, describe, after, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, cpSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer as HfLib } from "@huggingface/tokenizers";
import { saveHfDir } from "../../../src/io/node/hf-file.js";
import { HfTokenizer, type TokenizerJson } from "../../../src/model/tokenizers/hf.js";
import { Rng } from "../../../src/core/rng.js";
import { Tensor } from "../../../src/core/tensor.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../../../src/model/config.js";
import type { Weight } from "../../../src/core/weight.js";
import { BIN, expectOneLineError } from "../helpers-cli.js";
import { CHATML_TEMPLATE, byteLevelTokenizer, type TinyTokenizer } from "../../helpers/byte-level.js";

const dir = mkdtempSync(join(tmpdir(), "ql-chat-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function ql(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input: input ?? "", env: { ...process.env, QUANTLAB_PROGRESS: "0" } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const tok: TinyTokenizer = byteLevelTokenizer("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], { eos: "<|endoftext|>", chatTemplate: CHATML_TEMPLATE });
const ref = new HfLib(tok.json as never, tok.config as never);
const idOf = (s: string) => ref.encode(s, { add_special_tokens: false }).ids;
const IM_END = idOf("<|im_end|>")[0]!;
const ENDOFTEXT = idOf("<|endoftext|>")[0]!;

/** The conversation as transformers would feed it: jinja render, then tokenize without extra specials. */
function referenceIds(messages: { role: string; content: string }[]): number[] {
  const text = new Template(CHATML_TEMPLATE).render({ messages, add_generation_prompt: true, bos_token: "", eos_token: "<|endoftext|>" });
  return idOf(text);
}

/** A model whose greedy reply after `last` is "OK" then <|im_end|>. */
function chatModelWeights(cfg: ModelConfig, last: number): Map<string, Weight> {
  const rng = new Rng(3);
  const weights = new Map<string, Weight>();
  const [o, k] = [idOf("O"), idOf("K")];
  assert.equal(o.length, 1);
  assert.equal(k.length, 1);
  const emb = rng.fillNormal(new Float32Array(cfg.vocabSize * cfg.dim));
  const out = rng.fillNormal(new Float32Array(cfg.vocabSize * cfg.dim), 0.01);
  const chain: [number, number][] = [[last, o[0]!], [o[0]!, k[0]!], [k[0]!, IM_END]];
  for (const [cur, next] of chain) for (let j = 0; j < cfg.dim; j++) out[next * cfg.dim + j]! += 2 * emb[cur * cfg.dim + j]!;
  for (const [n, shape] of expectedShapes(cfg)) {
    let d: Float32Array;
    if (n === TensorNames.tokenEmbd) d = emb;
    else if (n === TensorNames.output) d = out;
    else {
      d = new Float32Array(shape.reduce((a, b) => a * b, 1));
      if (shape.length === 1) d.fill(1);
      else rng.fillNormal(d, 1e-3);
    }
    weights.set(n, { kind: "dense", tensor: new Tensor("f32", shape, d) });
  }
  return weights;
}

const hfDir = join(dir, "chat-hf");
const gguf = join(dir, "chat.gguf");
const USER = "Say ok 42!";
const SYSTEM = "You are terse.";

before(async () => {
  const cfg: ModelConfig = { arch: "llama", dim: 64, hiddenDim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: tok.vocabSize, seqLen: 512, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, name: "tiny-chat" };
  const prompt = referenceIds([{ role: "user", content: USER }]);
  const tokenizer = new HfTokenizer(tok.json as unknown as TokenizerJson, tok.config, "tiny-chat/tokenizer.json");
  await saveHfDir({ config: cfg, weights: chatModelWeights(cfg, prompt[prompt.length - 1]!), tokenizer, source: { path: "tiny-chat", format: "memory" } }, hfDir);
  const r = ql(["convert", hfDir, gguf]);
  assert.equal(r.status, 0, r.stderr);
});

describe("quantlab run --chat", () => {
  for (const form of ["HF directory", "GGUF"] as const) {
    test(`${form}: prompt ids = jinja render + tokenizer.json; the reply stops at <|im_end|>`, () => {
      const path = form === "GGUF" ? gguf : hfDir;
      const r = ql(["run", path, "--chat", "--prompt", USER, "--json"]);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.turns.length, 1);
      assert.deepEqual(out.turns[0].promptTokenIds, referenceIds([{ role: "user", content: USER }]));
      assert.equal(out.promptTokens, out.turns[0].promptTokenIds.length);
      assert.equal(out.text, "OK");
      assert.equal(out.stopReason, "stop_token");
      assert.deepEqual(out.stopToken, { id: IM_END, piece: "<|im_end|>", from: form === "GGUF" ? "gguf:tokenizer.ggml.eot_token_id" : "template" });
      assert.ok(out.stopTokens.some((s: { id: number }) => s.id === ENDOFTEXT), "EOS stops too");
      assert.match(out.template, form === "GGUF" ? /chat\.gguf: tokenizer\.chat_template$/ : /tokenizer_config\.json$/);
    });
  }

  test("--system is the first message; streaming prints the reply", () => {
    const r = ql(["run", hfDir, "--chat", "--system", SYSTEM, "--prompt", USER, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.turns[0].promptTokenIds, referenceIds([{ role: "system", content: SYSTEM }, { role: "user", content: USER }]));
    assert.equal(out.system, SYSTEM);
    const s = ql(["run", hfDir, "--chat", "--system", SYSTEM, "--prompt", USER]);
    assert.equal(s.status, 0, s.stderr);
    assert.equal(s.stdout, "OK\n");
  });

  test("the HF directory and its GGUF give the same turns (stdin: one user turn per line, one conversation)", () => {
    const lines = `${USER}\n\nSay ok again\n`;
    const a = JSON.parse(ql(["run", hfDir, "--chat", "--json"], lines).stdout);
    const b = JSON.parse(ql(["run", gguf, "--chat", "--json"], lines).stdout);
    assert.equal(a.turns.length, 2, "the empty line is skipped");
    const strip = (t: { promptTokenIds: number[]; tokenIds: number[]; text: string; stopReason: string; newPromptTokens: number }) => [t.promptTokenIds, t.tokenIds, t.text, t.stopReason, t.newPromptTokens];
    assert.deepEqual(b.turns.map(strip), a.turns.map(strip));
    const second = referenceIds([{ role: "user", content: USER }, { role: "assistant", content: "OK" }, { role: "user", content: "Say ok again" }]);
    assert.deepEqual(a.turns[1].promptTokenIds, second);
    // the first turn's prompt, reply and <|im_end|> are in the KV cache: only the rest is fed
    assert.equal(a.turns[1].newPromptTokens, second.length - (a.turns[0].promptTokenIds.length + a.turns[0].tokenIds.length));
    assert.equal(a.turns[1].text, "OK");
  });

  test("GGUF → HF directory keeps the template (chat_template.jinja) and the chat behaves the same", () => {
    const back = join(dir, "back-hf");
    const c = ql(["convert", gguf, back]);
    assert.equal(c.status, 0, c.stderr);
    assert.equal(readFileSync(join(back, "chat_template.jinja"), "utf8"), CHATML_TEMPLATE);
    const a = JSON.parse(ql(["run", hfDir, "--chat", "-p", USER, "--json"]).stdout);
    const b = JSON.parse(ql(["run", back, "--chat", "-p", USER, "--json"]).stdout);
    assert.match(b.template, /back-hf\/chat_template\.jinja$/);
    assert.deepEqual([b.turns[0].promptTokenIds, b.text, b.stopToken.id], [a.turns[0].promptTokenIds, a.text, a.stopToken.id]);
  });

  test("--tokens caps the reply: stop reason max_tokens", () => {
    const out = JSON.parse(ql(["run", hfDir, "--chat", "-p", USER, "-n", "1", "--json"]).stdout);
    assert.equal(out.text, "O");
    assert.equal(out.stopReason, "max_tokens");
    assert.equal(out.stopToken, null);
  });

  test("generation_config.json: eos ids stop, sampling defaults with their sources, repetition_penalty warned", () => {
    const d = join(dir, "chat-gen");
    cpSync(hfDir, d, { recursive: true });
    const K = idOf("K")[0]!;
    writeFileSync(join(d, "generation_config.json"), JSON.stringify({ do_sample: true, temperature: 0.7, top_p: 0.8, eos_token_id: [ENDOFTEXT, K], repetition_penalty: 1.1 }));
    const r = ql(["run", d, "--chat", "-p", USER, "--temperature", "0", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.text, "O", "K is an eos id of generation_config.json");
    assert.deepEqual(out.stopToken, { id: K, piece: "K", from: "generation_config" });
    assert.deepEqual(out.sampling.sources, { temperature: "flag", topP: "generation_config.json", topK: "transformers default" });
    assert.equal(out.sampling.topP, 0.8);
    assert.equal(out.sampling.topK, 50);
    assert.match(r.stderr, /^quantlab: warning: .*generation_config\.json: repetition_penalty 1\.1 is not applied/m);
    const plain = JSON.parse(ql(["run", d, "-p", "the", "-n", "4", "--json"]).stdout);
    assert.equal(plain.sampling.temperature, 0.7);
    assert.equal(plain.sampling.sources.temperature, "generation_config.json");
  });

  describe("bad input: one line, non-zero exit", () => {
    test("no chat template names where it looked", () => {
      const d = join(dir, "no-template");
      cpSync(hfDir, d, { recursive: true });
      const cfg = { ...tok.config };
      delete cfg.chat_template;
      writeFileSync(join(d, "tokenizer_config.json"), JSON.stringify(cfg));
      expectOneLineError(ql(["run", d, "--chat", "-p", "hi"]), /no-template: no chat template \(looked in .*no-template\/chat_template\.jinja, chat_template\.json or tokenizer_config\.json "chat_template"\)/);
    });
    test("a template that raises: jinja's message quoted", () => {
      const d = join(dir, "raising");
      mkdirSync(d);
      cpSync(hfDir, d, { recursive: true });
      writeFileSync(join(d, "chat_template.jinja"), "{% if messages[0]['role'] != 'system' %}{{ raise_exception('System message required') }}{% endif %}");
      expectOneLineError(ql(["run", d, "--chat", "-p", "hi"]), /raising\/chat_template\.jinja: the chat template raised: .*System message required/);
    });
    test("--system without --chat", () => expectOneLineError(ql(["run", hfDir, "--system", "x"]), /--system needs --chat/, 2));
    test("a malformed generation_config.json field names it", () => {
      const d = join(dir, "bad-gen");
      cpSync(hfDir, d, { recursive: true });
      writeFileSync(join(d, "generation_config.json"), JSON.stringify({ eos_token_id: ["x"] }));
      expectOneLineError(ql(["run", d, "--chat", "-p", "hi"]), /bad-gen\/generation_config\.json: "eos_token_id" holds "x"/);
    });
  });
});
