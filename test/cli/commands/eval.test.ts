import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { quantlab, expectOneLineError } from "../helpers-cli.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8"));
const model = dataPath("stories260K", "stories260K.bin");
const text = dataPath("tinystories", "eval.txt");

describe("quantlab eval", () => {
  test("--json: the first two reference windows (ctx 512, --max-tokens 1000 → 1022 tokens)", () => {
    const r = quantlab("eval", model, "--text", text, "--ctx", "512", "--max-tokens", "1000", "--json");
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.tokens, 1022);
    assert.equal(out.windows, 2);
    const want = (ref.eval.window_nll_sums[0] + ref.eval.window_nll_sums[1]) / 1022;
    assert.ok(Math.abs(out.nll - want) < 1e-5, `${out.nll} vs ${want}`);
    assert.ok(Math.abs(out.ppl - Math.exp(want)) < 1e-4);
  });

  test("plain output is one summary line", () => {
    const r = quantlab("eval", model, "--text", text, "--ctx", "64", "--max-tokens", "63");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^stories260K\.bin on eval\.txt: ppl \d+\.\d{4}  nll \d\.\d{6} nats\/token  63 tokens in 1 windows of ctx 64/);
  });

  test("--backend wasm agrees with the reference backend", () => {
    const args = ["eval", model, "--text", text, "--ctx", "256", "--max-tokens", "255", "--json"];
    const a = JSON.parse(quantlab(...args, "--backend", "ref").stdout);
    const r = quantlab(...args, "--backend", "wasm");
    assert.equal(r.status, 0, r.stderr);
    const b = JSON.parse(r.stdout);
    assert.equal(a.backend, "ref");
    assert.match(b.backend, /^wasm/);
    assert.ok(Math.abs(b.nll - a.nll) < 1e-5, `${b.nll} vs ${a.nll}`);
  });

  test("--kv on the wasm backend: the quantized cache's TypeScript path, agreeing with the reference backend", () => {
    const args = ["eval", model, "--text", text, "--ctx", "256", "--max-tokens", "255", "--json"];
    const f32 = JSON.parse(quantlab(...args, "--backend", "wasm").stdout);
    const a = JSON.parse(quantlab(...args, "--backend", "ref", "--kv", "int4:g4:asym").stdout);
    const r = quantlab(...args, "--backend", "wasm", "--threads", "2", "--kv", "int4:g4:asym");
    assert.equal(r.status, 0, r.stderr);
    const b = JSON.parse(r.stdout);
    assert.ok(Math.abs(b.nll - a.nll) < 1e-5, `${b.nll} vs ${a.nll}`);
    assert.ok(Math.abs(b.nll - f32.nll) > 1e-4, `the int4 cache changes the result (${b.nll} vs ${f32.nll} with the f32 cache)`);
  });

  describe("bad input", () => {
    test("unknown backend", () => expectOneLineError(quantlab("eval", model, "--text", text, "--backend", "gpu"), /option --backend: unknown backend "gpu"/, 2));
    const dir = mkdtempSync(join(tmpdir(), "ql-eval-"));
    test("missing text file", () => expectOneLineError(quantlab("eval", model, "--text", join(dir, "none.txt")), /none\.txt: no such file/));
    test("--ctx 1", () => expectOneLineError(quantlab("eval", model, "--text", text, "--ctx", "1"), /ctx 1: expected an integer ≥ 2/, 2));
    test("--save-logits into a missing directory leaves nothing behind", () => {
      const out = join(dir, "sub", "x.qlgt");
      expectOneLineError(quantlab("eval", model, "--text", text, "--ctx", "64", "--max-tokens", "10", "--save-logits", out), /directory .* does not exist/);
      assert.equal(existsSync(out), false);
      assert.deepEqual(readdirSync(dir), []);
    });
  });
});
