// `quantlab report` on stories260K with 10 rows (8 specs, 2 llama.cpp presets) and a KV-cache row: written
// in under a minute; its rows are `quantlab compare`'s rows (one implementation), a preset row's size is the
// file `quantlab quantize --type` writes, every row carries its recipe; the page opens in Chromium with no
// console error and no request but the file itself, and shows the table, the frontier and a histogram per
// spec row. Bad arguments are one-line errors.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { dataPath } from "../../../src/io/node/data.js";
import { openBrowser } from "../../helpers/browser.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const MODEL = dataPath("stories260K", "stories260K.bin");
const TEXT = dataPath("tinystories", "eval.txt");
const SPECS = ["int8:channel", "fp8_e4m3:channel", "int4:g32:asym", "int4:g32", "nf4:g64", "mxfp4", "nvfp4", "int3:g32:asym", "Q4_K_M", "Q8_0"];
const DIR = mkdtempSync(join(tmpdir(), "quantlab-report-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

interface Row { spec: string; preset?: string; bpw: number; linearBpw: number; sizeBytes: number; ppl: number; meanKld: number; top1: number }

test("10 specs and presets on stories260K: under a minute, compare's rows, the CLI's file sizes, a page with no error and no request", async (t) => {
  const out = join(DIR, "report.html");
  const t0 = Date.now();
  const r = quantlab("report", MODEL, "--specs", SPECS.join(","), "--kv-specs", "int8", "--text", TEXT, "-o", out, "--json");
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(r.status, 0, r.stderr);
  t.diagnostic(`quantlab report, 10 rows + 1 KV row, 50 layer measurements: ${seconds.toFixed(1)} s`);
  assert.ok(seconds < 60, `report took ${seconds.toFixed(1)} s`);
  const d = JSON.parse(r.stdout) as { bytes: number; rows: { row: Row; recipeJson: string }[]; kvRows: Row[]; layerKld: unknown[]; histograms: { spec: string }[]; text: { tokens: number } };
  assert.deepEqual(d.rows.map((x) => x.row.spec), SPECS);
  assert.equal(d.kvRows.length, 1);
  assert.equal(d.layerKld.length, SPECS.length * 5);
  assert.deepEqual(d.histograms.map((h) => h.spec), SPECS.slice(0, 8), "a grid histogram per spec row (presets have none)");
  for (const x of d.rows) assert.equal(JSON.parse(x.recipeJson).target[x.row.preset ? "preset" : "spec"], x.row.spec);

  // the same rows as `quantlab compare` on the same windows
  const c = quantlab("compare", MODEL, "--specs", "int4:g32:asym,Q4_K_M", "--text", TEXT, "--max-tokens", "1020", "--json");
  assert.equal(c.status, 0, c.stderr);
  const cmp = JSON.parse(c.stdout) as { tokens: number; rows: Row[] };
  assert.equal(cmp.tokens, d.text.tokens);
  for (const want of cmp.rows) {
    const got = d.rows.find((x) => x.row.spec === want.spec)!.row;
    for (const k of ["bpw", "linearBpw", "sizeBytes", "ppl", "meanKld", "top1"] as const) assert.equal(got[k], want[k], `${want.spec} ${k}`);
  }
  const gguf = join(DIR, "q4km.gguf");
  assert.equal(quantlab("quantize", MODEL, "--type", "Q4_K_M", "-o", gguf).status, 0);
  assert.equal(d.rows.find((x) => x.row.spec === "Q4_K_M")!.row.sizeBytes, readFileSync(gguf).length);

  const html = readFileSync(out, "utf8");
  assert.equal(Buffer.byteLength(html), d.bytes);
  const b = await openBrowser();
  try {
    const url = pathToFileURL(out).href;
    await b.page.goto(url);
    const rows = await b.page.$$eval("body > table:first-of-type tbody tr td:first-child", (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(rows, ["float model", ...SPECS]);
    assert.equal(await b.page.locator("tr.preset").count(), 2);
    assert.equal(await b.page.locator("figure svg").count(), 4 + 8, "frontier, two layer plots, heatmap, 8 histograms");
    const frontier = await b.page.locator("figure svg").first().innerHTML();
    for (const s of SPECS) assert.ok(frontier.includes(`>${s}</text>`), `${s} is labelled on the frontier`);
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.requests, [url], "the page requested something beyond itself");
  } finally {
    await b.close();
  }
});

test("bad arguments are one-line errors before any work", () => {
  expectOneLineError(quantlab("report", MODEL, "--specs", "int4:g7x", "-o", join(DIR, "x.html")), /int4:g7x/, 2);
  expectOneLineError(quantlab("report", MODEL, "--specs", "int4:g32", "-o", join(DIR, "x.txt")), /option -o: .*x\.txt: the report is an HTML file/, 2);
  expectOneLineError(quantlab("report", MODEL, "--specs", "int4:g32", "--kv-specs", "int8", "-o", join(DIR, "x.html")), /option --kv-specs: KV-cache rows are measured on a text; give --text <file>/, 2);
  expectOneLineError(quantlab("report", MODEL, "--specs", "int4:g32", "--hist-tensor", "nope", "--no-layer-kld", "-o", join(DIR, "x.html")), /option --hist-tensor: stories260K\.bin has no tensor "nope"/, 2);
});
