/**
 * hf://owner/name[@rev] against a local HTTP server on 127.0.0.1 (no real network) that speaks the Hub's
 * resolve protocol — X-Repo-Commit, ETag / X-Linked-Etag (git blob id / sha256), LFS files behind a
 * redirect, Range requests — and can corrupt, truncate and stall a transfer, or move a branch.
 */
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type ServerResponse } from "node:http";
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { repoCacheDir, snapshotDir } from "../../src/io/node/hub-cache.js";
import { hubFileUrl, normalizeEtag, parseHubRef } from "../../src/io/hub.js";
import { Llama } from "../../src/model/llama.js";
import { QuantlabError } from "../../src/core/errors.js";
import { BIN } from "../cli/helpers-cli.js";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** git's blob id: sha1 over "blob <size>\0" + content (what the Hub's ETag of a regular file is) */
const gitBlob = (b: Uint8Array) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const commitId = (s: string) => createHash("sha1").update(s).digest("hex");

type Fault = { kind: "corrupt" | "truncate" | "stall" | "slow"; file: string; times: number };

describe("hub downloads", () => {
  let dir: string;
  let server: Server;
  let base: string;
  const commits = new Map<string, Map<string, Uint8Array>>();
  const refs = new Map<string, string>();
  let faults: Fault[] = [];
  let etags = true;
  /** delay between the 8 pieces of a "slow" transfer */
  let slowMs = 40;
  const log: { method: string; url: string; range?: string }[] = [];
  /** body bytes the CDN route sent, by file */
  const served = new Map<string, number>();
  const A = commitId("A"), B = commitId("B");
  const SHARD1 = "model-00001-of-00002.safetensors";
  const REF = "hf://tiny/stories";

  function serve(res: ServerResponse, file: string, body: Uint8Array, range: string | undefined, head: boolean): void {
    let start = 0;
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) start = Number(m[1]);
    const fault = faults.find((f) => f.file === file && f.times > 0);
    if (fault && !head) fault.times--;
    const part = body.subarray(start);
    res.writeHead(m ? 206 : 200, { "content-length": part.length, ...(m ? { "content-range": `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    if (head) { res.end(); return; }
    const count = (n: number) => served.set(file, (served.get(file) ?? 0) + n);
    if (!fault) { count(part.length); res.end(part); return; }
    const half = part.subarray(0, Math.floor(part.length / 2));
    switch (fault.kind) {
      case "corrupt": { const c = part.slice(); c[Math.floor(c.length / 2)] ^= 0x01; count(c.length); res.end(c); return; }
      case "truncate": count(half.length); res.write(half, () => res.destroy()); return;
      case "stall": count(half.length); res.write(half); return; // and never more: the client must give up
      case "slow": {
        let o = 0;
        const step = () => {
          if (o >= part.length) { res.end(); return; }
          const c = part.subarray(o, o + Math.ceil(part.length / 8));
          o += c.length;
          count(c.length);
          res.write(c);
          setTimeout(step, slowMs);
        };
        step();
      }
    }
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ql-hub-"));
    const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
    await saveHfDir(src, join(dir, "repo"), { maxShardBytes: 600_000 });
    const files = new Map<string, Uint8Array>();
    for (const f of readdirSync(join(dir, "repo"))) files.set(f, new Uint8Array(readFileSync(join(dir, "repo", f))));
    commits.set(A, files);
    // commit B: same weights, another config.json (a key the loader ignores)
    const filesB = new Map(files);
    const cfg = JSON.parse(new TextDecoder().decode(files.get("config.json")!));
    filesB.set("config.json", new TextEncoder().encode(JSON.stringify({ ...cfg, transformers_version: "4.99.0" }, null, 2)));
    commits.set(B, filesB);
    const lfs = new Map<string, Uint8Array>();
    for (const fs of commits.values()) for (const [f, b] of fs) if (f.endsWith(".safetensors")) lfs.set(sha256(b), b);
    server = createServer((req, res) => {
      const head = req.method === "HEAD";
      log.push({ method: req.method!, url: req.url!, ...(req.headers.range ? { range: req.headers.range } : {}) });
      const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(req.url!);
      if (cdn) {
        const body = lfs.get(cdn[1]!);
        const name = [...commits.get(A)!].find(([, b]) => body === b)?.[0] ?? cdn[1]!;
        if (!body) { res.writeHead(404).end(); return; }
        serve(res, name, body, req.headers.range, head);
        return;
      }
      const m = /^\/tiny\/stories\/resolve\/([^/]+)\/([A-Za-z0-9._-]+)$/.exec(req.url!);
      const rev = m ? decodeURIComponent(m[1]!) : "";
      const commit = refs.get(rev) ?? (commits.has(rev) ? rev : undefined);
      const body = commit ? commits.get(commit)!.get(m![2]!) : undefined;
      if (!m || !commit || !body) { res.writeHead(404, commit ? { "x-repo-commit": commit } : {}).end("not found"); return; }
      const file = m[2]!;
      if (file.endsWith(".safetensors")) {
        // LFS: a redirect to the CDN carrying the content's sha256 and size (the Hub's X-Linked-* headers)
        const h = sha256(body);
        res.writeHead(302, { location: `/cdn/${h}`, "x-repo-commit": commit, ...(etags ? { "x-linked-etag": `"${h}"`, etag: `W/"pointer"` } : {}), "x-linked-size": body.length }).end();
        return;
      }
      res.setHeader("x-repo-commit", commit);
      if (etags) res.setHeader("etag", `"${gitBlob(body)}"`);
      serve(res, file, body, req.headers.range, head);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    process.env.QUANTLAB_HUB_URL = base;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    delete process.env.QUANTLAB_HUB_URL;
    delete process.env.QUANTLAB_CACHE;
    delete process.env.QUANTLAB_HUB_TIMEOUT;
    rmSync(dir, { recursive: true, force: true });
  });
  let cacheN = 0;
  beforeEach(() => {
    // each test starts from an empty cache, a clean log, main and v1 at commit A
    process.env.QUANTLAB_CACHE = join(dir, `cache-${cacheN++}`);
    log.length = 0;
    served.clear();
    faults = [];
    etags = true;
    refs.set("main", A).set("v1", A);
    delete process.env.QUANTLAB_HUB_TIMEOUT;
  });

  const blobsDir = () => join(repoCacheDir(parseHubRef(REF)), "blobs");
  const shard1 = () => commits.get(A)!.get(SHARD1)!;

  test("references parse; URLs follow the Hub's resolve route; ETags normalize", () => {
    assert.deepEqual(parseHubRef("hf://a/b"), { repo: "a/b", revision: "main" });
    assert.deepEqual(parseHubRef("hf://a/b@refs/pr/1"), { repo: "a/b", revision: "refs/pr/1" });
    assert.equal(hubFileUrl("http://h/", parseHubRef("hf://a/b@v1"), "config.json"), "http://h/a/b/resolve/v1/config.json");
    assert.throws(() => parseHubRef("hf://a/../b"), /bad repository name/);
    assert.throws(() => parseHubRef("hf://onlyname"), /bad repository name/);
    assert.equal(normalizeEtag('W/"ABC123"'), "abc123");
  });

  test("a download is verified, loads and runs like the original; a commit is then served from the cache with no request", async () => {
    const m = await loadModel(`${REF}@v1`);
    const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8")) as { logits: { prompt: string; token_ids: number[] } };
    assert.deepEqual(m.tokenizer!.encode(ref.logits.prompt, { bos: true }), ref.logits.token_ids);
    const a = new Llama(src), b = new Llama(m);
    ref.logits.token_ids.forEach((t, pos) => assert.deepEqual(b.forward(t, pos), a.forward(t, pos)));
    // the branch resolved to A, every file then asked for at A; each blob is the verified content
    assert.equal(readFileSync(join(repoCacheDir(parseHubRef(REF)), "refs", "v1"), "utf8"), A);
    assert.ok(log.filter((r) => r.url.includes("/resolve/")).slice(1).every((r) => r.url.includes(`/resolve/${A}/`)));
    for (const [f, bytes] of commits.get(A)!) assert.deepEqual(new Uint8Array(readFileSync(join(snapshotDir(parseHubRef(REF), A), f))), bytes, f);
    log.length = 0;
    await loadModel(`${REF}@${A}`);
    assert.equal(log.length, 0, JSON.stringify(log));
    // a branch is asked again (one HEAD: which commit is it now?), nothing is downloaded
    await loadModel(`${REF}@v1`);
    assert.deepEqual(log.map((r) => r.method), ["HEAD"]);
  });

  test("a shard with one flipped byte: sha256 mismatch, nothing cached; a clean retry succeeds", async () => {
    faults = [{ kind: "corrupt", file: SHARD1, times: 1 }];
    await assert.rejects(() => loadModel(`${REF}@v1`), (e: unknown) => e instanceof QuantlabError && new RegExp(`^hf://tiny/stories@v1: ${SHARD1.replace(/\./g, "\\.")}: sha256 mismatch: the server's checksum is ${sha256(shard1())}, the downloaded bytes hash to [0-9a-f]{64}; nothing was cached$`).test(e.message));
    assert.deepEqual(readdirSync(blobsDir()).filter((f) => f.startsWith(sha256(shard1()))), []);
    assert.ok(!existsSync(join(snapshotDir(parseHubRef(REF), A), SHARD1)));
    await loadModel(`${REF}@v1`);
    assert.deepEqual(new Uint8Array(readFileSync(join(blobsDir(), sha256(shard1())))), shard1());
  });

  test("a transfer cut short resumes with Range: the tail only, not from byte 0", async () => {
    faults = [{ kind: "truncate", file: SHARD1, times: 1 }];
    await loadModel(`${REF}@v1`);
    const gets = log.filter((r) => r.method === "GET" && r.url === `/cdn/${sha256(shard1())}`);
    // the server sent half before cutting the connection; what reached the client (N bytes, some may be
    // lost with the socket) is kept, and only the tail from N is asked for again
    const half = Math.floor(shard1().length / 2);
    assert.equal(gets.length, 2);
    assert.equal(gets[0]!.range, undefined);
    const n = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? "")?.[1]);
    assert.ok(n > 0 && n <= half, `resumed at ${n}`);
    assert.equal(served.get(SHARD1), half + shard1().length - n);
  });

  test("an interrupted download that keeps failing stops after 3 attempts; the next run resumes it", async () => {
    faults = [{ kind: "truncate", file: SHARD1, times: 3 }];
    await assert.rejects(() => loadModel(`${REF}@v1`), /model-00001-of-00002\.safetensors: download (interrupted|ended).*3 attempts \(run again to resume\)/);
    const part = join(blobsDir(), `${sha256(shard1())}.incomplete`);
    const have = statSync(part).size;
    assert.ok(have > 0 && have < shard1().length);
    log.length = 0;
    await loadModel(`${REF}@v1`);
    assert.deepEqual(log.filter((r) => r.method === "GET" && r.url === `/cdn/${sha256(shard1())}`).map((r) => r.range), [`bytes=${have}-`]);
    assert.ok(!existsSync(part));
  });

  test("a stalled transfer is abandoned after QUANTLAB_HUB_TIMEOUT and resumed", async () => {
    process.env.QUANTLAB_HUB_TIMEOUT = "300";
    faults = [{ kind: "stall", file: SHARD1, times: 1 }];
    const t0 = Date.now();
    await loadModel(`${REF}@v1`);
    assert.ok(Date.now() - t0 < 5000);
    const gets = log.filter((r) => r.method === "GET" && r.url === `/cdn/${sha256(shard1())}`);
    assert.equal(gets.length, 2);
    assert.match(gets[1]!.range ?? "", /^bytes=\d+-$/);
  });

  test("@main follows the branch: refs refreshed, only the changed file downloaded; offline, the last commit is used", async () => {
    await loadModel(REF);
    refs.set("main", B);
    log.length = 0;
    const m = await loadModel(REF);
    assert.equal(m.source.metadata?.["hub.cache"], snapshotDir(parseHubRef(REF), B));
    assert.equal(readFileSync(join(repoCacheDir(parseHubRef(REF)), "refs", "main"), "utf8"), B);
    // the shards have the same sha256 at both commits: their blobs are reused
    assert.deepEqual(log.filter((r) => r.method === "GET").map((r) => r.url), [`/tiny/stories/resolve/${B}/config.json`]);
    // a port nothing listens on: bound, then closed
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const closed = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    process.env.QUANTLAB_HUB_URL = `http://127.0.0.1:${closed}`;
    try {
      const off = await loadModel(REF);
      assert.equal(off.source.metadata?.["hub.cache"], snapshotDir(parseHubRef(REF), B));
      await assert.rejects(() => loadModel("hf://tiny/other"), /^QuantlabError: hf:\/\/tiny\/other: config\.json: cannot reach the hub \(ECONNREFUSED\)/);
    } finally {
      process.env.QUANTLAB_HUB_URL = base;
    }
  });

  test("concurrent downloads: two loads here and two processes share each blob, downloaded once; a dead process's lock is taken over", async () => {
    faults = [{ kind: "slow", file: SHARD1, times: 1 }];
    const [x, y] = await Promise.all([loadModel(`${REF}@v1`), loadModel(`${REF}@v1`)]);
    assert.equal(x.source.metadata?.["hub.cache"], y.source.metadata?.["hub.cache"]);
    assert.equal(log.filter((r) => r.method === "GET" && r.url.startsWith("/cdn/")).length, 2); // one per shard
    // two CLI processes on a fresh cache, the first shard slow so both are in flight together
    process.env.QUANTLAB_CACHE = join(dir, "cache-procs");
    log.length = 0;
    // ~2 s for the shard: the second process surely starts while the first is still downloading it
    slowMs = 250;
    faults = [{ kind: "slow", file: SHARD1, times: 2 }];
    const run = () => new Promise<number>((r) => spawn(process.execPath, [BIN, "info", `${REF}@v1`], { stdio: "ignore", env: process.env }).on("exit", (c) => r(c ?? -1)));
    assert.deepEqual(await Promise.all([run(), run()]), [0, 0]);
    slowMs = 40;
    assert.equal(log.filter((r) => r.method === "GET" && r.url === `/cdn/${sha256(shard1())}`).length, 1);
    assert.deepEqual(readdirSync(blobsDir()).filter((f) => f.includes(".")), [], "no .lock or .incomplete left");
    // a lock left by a killed process
    process.env.QUANTLAB_CACHE = join(dir, "cache-lock");
    mkdirSync(blobsDir(), { recursive: true });
    const dead = await new Promise<number>((r) => { const p = spawn(process.execPath, ["-e", ""]); p.on("exit", () => r(p.pid!)); });
    writeFileSync(join(blobsDir(), `${sha256(shard1())}.lock`), String(dead));
    await loadModel(`${REF}@v1`);
    assert.ok(!existsSync(join(blobsDir(), `${sha256(shard1())}.lock`)));
  });

  test("a server that gives no checksum is refused; a repository it does not have: HTTP 404", async () => {
    etags = false;
    await assert.rejects(() => loadModel(`${REF}@v1`), /hf:\/\/tiny\/stories@v1: config\.json: the server gave no checksum to verify the download against/);
    etags = true;
    await assert.rejects(() => loadModel("hf://tiny/missing"), (e: unknown) => e instanceof QuantlabError && /^hf:\/\/tiny\/missing: config\.json: HTTP 404/.test(e.message));
  });
});
