import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseGenerationConfig, readHfChatMetadata, resolveSampling } from "../../src/io/hf-generation.js";
import type { DirSource } from "../../src/io/hf.js";

function memDir(name: string, files: Record<string, string>): DirSource {
  return {
    name,
    has: async (f) => f in files,
    readText: async (f) => files[f]!,
    open: async () => { throw new Error("no"); },
    list: async () => Object.keys(files),
  };
}

describe("generation_config.json", () => {
  test("eos_token_id as an int or a list; sampling fields; unsupported sampling fields become messages", () => {
    assert.deepEqual(parseGenerationConfig({ eos_token_id: 2 }, "g").eosIds, [2]);
    const g = parseGenerationConfig({ eos_token_id: [128001, 128008, 128009], do_sample: true, temperature: 0.6, top_p: 0.9, repetition_penalty: 1.05, min_p: 0, typical_p: 0.95, transformers_version: "4.45.0" }, "d/generation_config.json");
    assert.deepEqual(g.eosIds, [128001, 128008, 128009]);
    assert.deepEqual([g.doSample, g.temperature, g.topP, g.topK], [true, 0.6, 0.9, undefined]);
    assert.deepEqual(g.notApplied, [
      "d/generation_config.json: repetition_penalty 1.05 is not applied (quantlab's sampler has no repetition penalty)",
      "d/generation_config.json: typical_p 0.95 is not applied (quantlab's sampler has no typical p)",
    ]);
    assert.throws(() => parseGenerationConfig({ top_p: 2 }, "g"), /g: "top_p" is 2, expected a number in \(0, 1\]/);
    assert.throws(() => parseGenerationConfig({ do_sample: "yes" }, "g"), /g: "do_sample" is "yes"/);
    assert.throws(() => parseGenerationConfig([], "g"), /g: not a JSON object/);
  });

  test("resolveSampling: flag > generation_config (when do_sample) > transformers defaults > quantlab defaults", () => {
    const g = parseGenerationConfig({ do_sample: true, temperature: 0.6, top_p: 0.9 }, "g");
    assert.deepEqual(resolveSampling({}, g), { temperature: 0.6, topP: 0.9, topK: 50, sources: { temperature: "generation_config.json", topP: "generation_config.json", topK: "transformers default" }, warnings: [] });
    assert.deepEqual(resolveSampling({ temperature: 0, topK: 3 }, g).sources, { temperature: "flag", topP: "generation_config.json", topK: "flag" });
    assert.deepEqual(resolveSampling({}, undefined), { temperature: 0, topP: 0.9, topK: 0, sources: { temperature: "quantlab default", topP: "quantlab default", topK: "quantlab default" }, warnings: [] });
    const greedy = resolveSampling({}, parseGenerationConfig({ do_sample: false, temperature: 0.6 }, "g"));
    assert.equal(greedy.temperature, 0);
    assert.equal(greedy.sources.temperature, "generation_config.json");
    assert.match(greedy.warnings[0]!, /g: do_sample is false, so its temperature \/ top_p \/ top_k are not used/);
  });
});

describe("chat template sources of an HF directory", () => {
  test("chat_template.jinja > chat_template.json > tokenizer_config.json (string or list)", async () => {
    const tc = JSON.stringify({ chat_template: [{ name: "default", template: "TC" }, { name: "rag", template: "R" }] });
    assert.deepEqual(await readHfChatMetadata(memDir("d", { "tokenizer_config.json": tc })), { "hf.chat_template": "TC", "hf.chat_template_file": "d/tokenizer_config.json" });
    assert.equal((await readHfChatMetadata(memDir("d", { "tokenizer_config.json": tc, "chat_template.json": JSON.stringify({ chat_template: "CJ" }) })))["hf.chat_template"], "CJ");
    const all = await readHfChatMetadata(memDir("d", { "tokenizer_config.json": tc, "chat_template.json": JSON.stringify({ chat_template: "CJ" }), "chat_template.jinja": "JJ", "generation_config.json": JSON.stringify({ eos_token_id: 7 }) }));
    assert.deepEqual(all, { "hf.chat_template": "JJ", "hf.chat_template_file": "d/chat_template.jinja", "hf.generation_config": { eos_token_id: 7 }, "hf.generation_config_file": "d/generation_config.json" });
    assert.deepEqual(await readHfChatMetadata(memDir("d", { "tokenizer_config.json": "{}" })), {});
    await assert.rejects(readHfChatMetadata(memDir("d", { "chat_template.json": "{}" })), /d\/chat_template\.json: no "chat_template" field/);
  });
});
