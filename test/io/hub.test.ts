/** hf://owner/name[@rev] against a local HTTP server on 127.0.0.1 (no real network). */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { cacheDirFor } from "../../src/io/node/hub-cache.js";
import { hubFileUrl, parseHubRef } from "../../src/io/hub.js";
import { Llama } from "../../src/model/llama.js";
import { QuantlabError } from "../../src/core/errors.js";

describe("hub loading", () => {
  let dir: string;
  let server: Server;
  const requests: string[] = [];
  let truncate = false;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ql-hub-"));
    const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
    await saveHfDir(src, join(dir, "repo"), { maxShardBytes: 600_000 });
    server = createServer((req, res) => {
      requests.push(req.url!);
      const m = /^\/tiny\/stories\/resolve\/(main|v1)\/([A-Za-z0-9._-]+)$/.exec(req.url!);
      const file = m ? join(dir, "repo", m[2]!) : "";
      if (!m || !existsSync(file)) {
        res.writeHead(404).end("not found");
        return;
      }
      const body = readFileSync(file);
      res.writeHead(200, { "content-length": body.length });
      if (truncate && file.endsWith(".safetensors")) res.end(body.subarray(0, 1000)); // the server dies mid-file
      else res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    process.env.QUANTLAB_HUB_URL = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    process.env.QUANTLAB_CACHE = join(dir, "cache");
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    delete process.env.QUANTLAB_HUB_URL;
    delete process.env.QUANTLAB_CACHE;
    rmSync(dir, { recursive: true, force: true });
  });

  test("references parse; URLs follow the Hub's resolve route", () => {
    assert.deepEqual(parseHubRef("hf://a/b"), { repo: "a/b", revision: "main" });
    assert.deepEqual(parseHubRef("hf://a/b@refs/pr/1"), { repo: "a/b", revision: "refs/pr/1" });
    assert.equal(hubFileUrl("http://h/", parseHubRef("hf://a/b@v1"), "config.json"), "http://h/a/b/resolve/v1/config.json");
    assert.throws(() => parseHubRef("hf://a/../b"), /bad repository name/);
    assert.throws(() => parseHubRef("hf://onlyname"), /bad repository name/);
  });

  test("an interrupted download leaves no partial file, and says so", async () => {
    truncate = true;
    try {
      await assert.rejects(() => loadModel("hf://tiny/stories@v1"), (e: unknown) => e instanceof QuantlabError && /hf:\/\/tiny\/stories@v1: model-00001-of-00002\.safetensors: /.test(e.message));
      const cache = cacheDirFor(parseHubRef("hf://tiny/stories@v1"));
      assert.ok(!readdirSync(cache).some((f) => f.endsWith(".safetensors") || f.includes(".tmp-")), readdirSync(cache).join(","));
    } finally {
      truncate = false;
    }
  });

  test("hf://tiny/stories@v1 then downloads only what is missing, loads and runs like the original; a second load uses the cache", async () => {
    requests.length = 0;
    const m = await loadModel("hf://tiny/stories@v1");
    // config, tokenizer and index arrived whole before the interruption; the shards are fetched now
    assert.deepEqual(requests, ["/tiny/stories/resolve/v1/model-00001-of-00002.safetensors", "/tiny/stories/resolve/v1/model-00002-of-00002.safetensors"]);
    assert.deepEqual(readdirSync(cacheDirFor(parseHubRef("hf://tiny/stories@v1"))).sort(), ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]);
    const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8")) as { logits: { prompt: string; token_ids: number[] } };
    assert.deepEqual(m.tokenizer!.encode(ref.logits.prompt, { bos: true }), ref.logits.token_ids);
    const a = new Llama(src), b = new Llama(m);
    ref.logits.token_ids.forEach((t, pos) => assert.deepEqual(b.forward(t, pos), a.forward(t, pos)));
    requests.length = 0;
    await loadModel("hf://tiny/stories@v1");
    assert.deepEqual(requests, []);
  });

  test("a repository the server does not have: one clear error", async () => {
    await assert.rejects(() => loadModel("hf://tiny/missing"), (e: unknown) => e instanceof QuantlabError && /^hf:\/\/tiny\/missing: config\.json: HTTP 404/.test(e.message));
  });
});
