// `quantlab lab`: the static server of the browser lab — the built page with COOP/COEP/CORP headers by
// default (what makes it cross-origin isolated), without them under --no-isolation; correct types; nothing
// outside its folder; clear errors for an unbuilt lab and a bad port; SIGTERM stops it.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLab } from "../../helpers/browser.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

function rawStatus(base: string, path: string): Promise<number> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    request({ host: u.hostname, port: u.port, path, method: "GET" }, (res) => { res.resume(); resolve(res.statusCode!); }).on("error", reject).end();
  });
}

const DIR = mkdtempSync(join(tmpdir(), "quantlab-lab-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

test("the built lab, isolated: COOP/COEP/CORP on every response; the page and its module script load", async () => {
  const lab = await startLab();
  try {
    const r = await fetch(lab.url);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("cross-origin-opener-policy"), "same-origin");
    assert.equal(r.headers.get("cross-origin-embedder-policy"), "require-corp");
    assert.equal(r.headers.get("cross-origin-resource-policy"), "same-origin");
    assert.match(r.headers.get("content-type")!, /^text\/html/);
    const html = await r.text();
    assert.match(html, /<title>quantlab lab<\/title>/);
    const script = /<script type="module"[^>]*src="\.\/(assets\/[^"]+\.js)"/.exec(html);
    assert.ok(script, "the built page has no module script (is dist/web a Vite build?)");
    const js = await fetch(lab.url + script[1]);
    assert.equal(js.status, 200);
    assert.match(js.headers.get("content-type")!, /^text\/javascript/);
    assert.equal(js.headers.get("cross-origin-embedder-policy"), "require-corp");
    assert.equal((await fetch(lab.url + "nope.js")).status, 404);
    // a raw request line (fetch would resolve the dots itself)
    // dots are resolved inside the folder (there is no package.json in it); encoded slashes are refused
    assert.equal(await rawStatus(lab.url, "/../../package.json"), 404);
    assert.equal(await rawStatus(lab.url, "/..%2f..%2f..%2fpackage.json"), 403);
    assert.equal((await fetch(lab.url, { method: "POST" })).status, 405);
  } finally {
    await lab.stop();
  }
  assert.equal(lab.proc.exitCode, 0, "SIGTERM ends the server cleanly");
});

test("--no-isolation serves the same files without the headers; --root serves another folder", async () => {
  writeFileSync(join(DIR, "index.html"), "<!doctype html><title>x</title>");
  const lab = await startLab(["--no-isolation", "--root", DIR]);
  try {
    const r = await fetch(lab.url);
    assert.equal(await r.text(), "<!doctype html><title>x</title>");
    for (const h of ["cross-origin-opener-policy", "cross-origin-embedder-policy", "cross-origin-resource-policy"]) assert.equal(r.headers.get(h), null, h);
  } finally {
    await lab.stop();
  }
});

test("an unbuilt lab and a bad port are one-line errors", () => {
  const empty = mkdtempSync(join(DIR, "empty-"));
  expectOneLineError(quantlab("lab", "--root", empty, "--port", "0"), /no index\.html — the lab is not built \(run `npm run build`\)/);
  expectOneLineError(quantlab("lab", "--port", "70000"), /option --port: 70000 is not a port number/, 2);
});
