/**
 * `quantlab run [model]`: generate text as llama2.c run.c does (prompt positions count toward --tokens),
 * or chat with `--chat`: the model's chat template (model/chat.ts, sources in io/hf-generation.ts)
 * renders [system?, user…] turns, and each reply stops at the model's end-of-turn tokens. `--chat` with
 * `--prompt` is one turn; without it, every line of stdin is a user turn of one conversation (kept in
 * the KV cache) until end of input.
 */
import { createInterface } from "node:readline";
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { defaultModelPath } from "../../io/node/data.js";
import { modelChatInfo, resolveSampling, type ResolvedSampling } from "../../io/hf-generation.js";
import { Llama, ropeFactorSet } from "../../model/llama.js";
import { generate } from "../../model/generate.js";
import { ChatSession, encodeChatText, endOfTurnTokens, renderChat, type ChatMessage, type ChatTurnResult } from "../../model/chat.js";
import type { Tokenizer } from "../../model/tokenizer.js";
import { parseFloatOpt, parseIntOpt, printJson, stderrProgress } from "../util.js";
import { addBackendOptions, addKvOption, addPackedActivationsOption, checkPackedActivations, backendFromOptions, backendReady, placerOf, kvCacheOption, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";

interface RunOptions extends BackendOptions {
  prompt?: string;
  tokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed: number;
  tokenizer?: string;
  ctx?: number;
  kv?: string;
  json?: boolean;
  chat?: boolean;
  system?: string;
}

/** KV positions of a chat when --ctx is not given: a model's declared context (128k for Llama 3) would cost gigabytes */
const CHAT_DEFAULT_CTX = 4096;

export function register(program: Command): void {
  const cmd = program
    .command("run")
    .description("generate text from a prompt, or chat with --chat (default model: stories260K)")
    .argument("[model]", "llama2.c .bin, GGUF, .safetensors or Hugging Face directory (default: shared stories260K)")
    .option("-p, --prompt <text>", "prompt text (with --chat: the one user turn; without it, --chat reads turns from stdin)")
    .option("-n, --tokens <n>", "positions to run, prompt included (llama2.c run.c -n), clamped to the context; with --chat: most tokens per reply", parseIntOpt("--tokens"), 256)
    .option("-t, --temperature <t>", "sampling temperature; 0 = greedy (default: generation_config.json's when do_sample, else 0)", parseFloatOpt("--temperature"))
    .option("--top-p <p>", "nucleus sampling mass, used when temperature > 0; 1 disables (default: generation_config.json's, else 0.9)", parseFloatOpt("--top-p"))
    .option("--top-k <k>", "sample among the k most likely tokens; 0 disables (default: generation_config.json's, else 0)", parseIntOpt("--top-k"))
    .option("-s, --seed <n>", "random seed for sampling", parseIntOpt("--seed"), 1)
    .option("--tokenizer <file>", "tokenizer file (llama2.c tok.bin) when it is not beside the model")
    .option("--ctx <n>", `KV cache positions (default: the model's context length; with --chat at most ${CHAT_DEFAULT_CTX})`, positiveInt("--ctx"))
    .option("--chat", "render the model's chat template (tokenizer_config.json / chat_template.jinja / GGUF tokenizer.chat_template) and stop at end-of-turn tokens")
    .option("--system <text>", "system message for --chat")
    .option("--json", "print one JSON object {text, tokenIds, ...} instead of streaming text");
  addKvOption(cmd);
  addPackedActivationsOption(cmd);
  addBackendOptions(cmd).action(async (modelArg: string | undefined, o: RunOptions) => {
      const kvOpt = kvCacheOption(o);
      if (o.system !== undefined && !o.chat) throw new QuantlabError("E_ARG", "--system needs --chat");
      const path = modelArg ?? defaultModelPath();
      const backend = backendFromOptions(o);
      const { model, tokenizer } = await loadModelWithTokenizer(path, { tokenizer: o.tokenizer, place: placerOf(backend) });
      checkPackedActivations(model, o, path);
      const chatInfo = modelChatInfo(model);
      const sampling = resolveSampling({ temperature: o.temperature, topP: o.topP, topK: o.topK }, chatInfo.generation);
      if (o.chat && !chatInfo.template) throw new QuantlabError("E_FORMAT", `${path}: no chat template (looked in ${chatInfo.lookedIn})`);
      for (const w of sampling.warnings) process.stderr.write(`quantlab: warning: ${w}\n`);
      await backendReady(backend);
      const samplingJson = { temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK, seed: o.seed, sources: sampling.sources, ...(chatInfo.generation ? { generationConfig: chatInfo.generation.file } : {}) };
      // LongRoPE's factor set follows the context asked for (--ctx), else the model's own — as llama.cpp picks it
      // from n_ctx — never the smaller KV cache a run allocates for what it can reach (the lab does the same)
      const ropeFactors = ropeFactorSet(model.config, o.ctx ?? model.config.seqLen);
      if (o.chat) {
        try {
          await chat(path, tokenizer, chatInfo.template!, endOfTurnTokens(tokenizer, chatInfo.template!.text, chatInfo.stopIds), sampling, o, () => new Llama(model, { contextLength: o.ctx ?? Math.min(model.config.seqLen, CHAT_DEFAULT_CTX), ropeFactors, backend, ...kvOpt }), samplingJson, backend.name);
        } finally {
          backend.dispose?.();
        }
        return;
      }
      // the KV cache holds what the run can reach (run.c clamps --tokens to seq_len): a file declaring a
      // context of millions of positions costs nothing unless asked for
      const contextLength = o.ctx ?? (o.tokens > 0 ? Math.min(model.config.seqLen, o.tokens) : undefined);
      const llama = new Llama(model, { contextLength, ropeFactors, backend, ...kvOpt });
      const streaming = !o.json;
      // `quantlab run | head`: a closed pipe ends the run quietly, as a C program killed by SIGPIPE (main.ts)
      let r;
      try {
        r = generate(llama, tokenizer, {
          prompt: o.prompt ?? "",
          steps: o.tokens,
          temperature: sampling.temperature,
          topP: sampling.topP,
          topK: sampling.topK,
          seed: o.seed,
          stopAtEos: model.source.format !== "llama2c", // llama2.c models follow run.c: stop at BOS only
          name: path,
          onText: streaming ? (piece) => process.stdout.write(piece) : undefined,
          progress: streaming ? undefined : stderrProgress(),
        });
      } finally {
        backend.dispose?.();
      }
      const tokPerSec = r.decodedTokens / Math.max(r.decodeMs / 1000, 1e-9);
      if (o.json) {
        printJson({
          text: r.text,
          tokenIds: r.tokenIds,
          promptTokens: r.promptTokens,
          model: path,
          backend: llama.backend.name,
          temperature: sampling.temperature,
          topP: sampling.topP,
          topK: sampling.topK,
          seed: o.seed,
          sampling: samplingJson,
          warnings: sampling.warnings,
          decodeTokensPerSecond: tokPerSec,
        });
      } else if (r.decodedTokens > 0) {
        process.stderr.write(`achieved tok/s: ${tokPerSec.toFixed(1)}\n`); // as run.c, on stderr
      }
    });
}

interface TurnJson {
  user: string;
  /** the whole rendered conversation, tokenized */
  promptTokens: number;
  /** of which fed this turn (the rest was in the KV cache) */
  newPromptTokens: number;
  promptTokenIds: number[];
  text: string;
  tokenIds: number[];
  stopReason: ChatTurnResult["stopReason"];
  stopToken: { id: number; piece: string; from: string } | null;
  decodeTokensPerSecond: number;
}

async function chat(
  path: string, tokenizer: Tokenizer, template: { text: string; where: string }, stop: ReturnType<typeof endOfTurnTokens>,
  sampling: ResolvedSampling, o: RunOptions, makeLlama: () => Llama, samplingJson: object, backendName: string,
): Promise<void> {
  const v = tokenizer.vocab();
  const render = { bosToken: tokenizer.bosId >= 0 ? v.pieces[tokenizer.bosId] : "", eosToken: tokenizer.eosId >= 0 ? v.pieces[tokenizer.eosId] : "", where: template.where };
  const messages: ChatMessage[] = o.system !== undefined ? [{ role: "system", content: o.system }] : [];
  // render once before the KV cache is allocated: a template that raises fails now, with jinja's message
  renderChat(template.text, [...messages, { role: "user", content: o.prompt ?? "" }], render);
  const session = new ChatSession(makeLlama(), tokenizer, { temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK, seed: o.seed });
  const turns: TurnJson[] = [];
  const one = (user: string): void => {
    messages.push({ role: "user", content: user });
    const text = renderChat(template.text, messages, render);
    const ids = encodeChatText(tokenizer, text);
    const r = session.turn(ids, { maxTokens: o.tokens > 0 ? o.tokens : Number.MAX_SAFE_INTEGER, stop, name: path, onText: o.json ? undefined : (p) => process.stdout.write(p) });
    if (!o.json) process.stdout.write("\n");
    messages.push({ role: "assistant", content: r.text });
    turns.push({
      user, promptTokens: ids.length, newPromptTokens: r.newPromptTokens, promptTokenIds: ids, text: r.text, tokenIds: r.tokenIds,
      stopReason: r.stopReason, stopToken: r.stopToken ?? null, decodeTokensPerSecond: r.tokenIds.length / Math.max(r.decodeMs / 1000, 1e-9),
    });
  };
  if (o.prompt !== undefined) one(o.prompt);
  else {
    const rl = createInterface({ input: process.stdin, terminal: false });
    for await (const line of rl) if (line.trim() !== "") one(line);
  }
  if (o.json) {
    printJson({
      model: path, backend: backendName, chat: true, template: template.where, system: o.system ?? null,
      stopTokens: stop, sampling: samplingJson, warnings: sampling.warnings, turns,
      // the last turn's figures at the top level, as a one-turn run reads them
      ...(turns.length ? { text: turns[turns.length - 1]!.text, promptTokens: turns[turns.length - 1]!.promptTokens, stopReason: turns[turns.length - 1]!.stopReason, stopToken: turns[turns.length - 1]!.stopToken } : {}),
    });
  }
}
