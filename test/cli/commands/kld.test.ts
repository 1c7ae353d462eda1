import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { quantlab, expectOneLineError } from "../helpers-cli.js";

const model = dataPath("stories260K", "stories260K.bin");
const q8 = dataPath("stories260K", "stories260K-q8.bin");
const text = dataPath("tinystories", "eval.txt");

describe("quantlab kld", () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-kld-"));
  const saved = join(dir, "base.qlgt");

  test("f32 vs its Q8_0 export: small KLD, high top-1, live and from saved logits alike", () => {
    const live = quantlab("kld", model, q8, "--text", text, "--ctx", "128", "--max-tokens", "500", "--json");
    assert.equal(live.status, 0, live.stderr);
    const a = JSON.parse(live.stdout);
    assert.equal(a.tokens, 508);
    assert.ok(a.meanKld > 0 && a.meanKld < 0.01, `meanKld ${a.meanKld}`);
    assert.ok(a.top1 > 0.9 && a.top1 < 1, `top1 ${a.top1}`);
    assert.ok(a.meanAbsDeltaP > 0 && a.meanAbsDeltaP < 0.05);

    const ev = quantlab("eval", model, "--text", text, "--ctx", "128", "--max-tokens", "500", "--save-logits", saved, "--json");
    assert.equal(ev.status, 0, ev.stderr);
    assert.equal(statSync(saved).size, 24 + 4 * 508 + 4 * 508 * 512);
    const fromFile = quantlab("kld", saved, q8, "--json");
    assert.equal(fromFile.status, 0, fromFile.stderr);
    const b = JSON.parse(fromFile.stdout);
    for (const k of ["meanKld", "top1", "meanAbsDeltaP", "pplBase", "pplOther", "tokens", "windows", "ctx"]) assert.equal(b[k], a[k], k);
    assert.ok(Math.abs(b.pplBase / JSON.parse(ev.stdout).ppl - 1) < 1e-12); // same NLLs, other summation order
    // --text is checked against the saved tokens when given
    const other = join(dir, "other.txt");
    writeFileSync(other, readFileSync(text, "utf8").slice(5000, 9000));
    expectOneLineError(quantlab("kld", saved, q8, "--text", other), /base\.qlgt: its saved tokens are not the encoding of .*other\.txt/, 2);
  });

  test("a model against itself: zero", () => {
    const r = quantlab("kld", model, model, "--text", text, "--ctx", "64", "--max-tokens", "63", "--json");
    assert.equal(r.status, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.meanKld, 0);
    assert.equal(o.top1, 1);
  });

  test("bad input", () => {
    expectOneLineError(quantlab("kld", model, q8), /--text <file> is required/, 2);
    expectOneLineError(quantlab("kld", saved, q8, "--ctx", "64"), /--ctx 64 differs from .*base\.qlgt's ctx 128/, 2);
    const bad = join(dir, "bad.qlgt");
    writeFileSync(bad, readFileSync(saved).subarray(0, 1000));
    expectOneLineError(quantlab("kld", bad, q8), /bad\.qlgt: truncated: the header implies \d+ bytes but the file has 1000/);
  });
});
