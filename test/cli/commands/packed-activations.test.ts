// `--packed-activations q8` (run, eval, kld, bench): quantlab-spec weights run on the integer Q8-activation
// kernels. Asserted: the flag changes the numbers of a spec-quantized model (the inputs are rounded to 8 bits per
// 32) but only by a little (perplexity within 2% of the exact f32 path, KLD between the two tiny), the exact
// default equals the reference backend, a model with nothing it applies to gets a warning, and impossible
// combinations are one-line errors.
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { cli } from "../helpers-cli.js";

const model = dataPath("stories260K", "stories260K.bin");
const text = dataPath("tinystories", "eval.txt");
const dir = mkdtempSync(join(tmpdir(), "ql-pact-"));
const q = join(dir, "int4.safetensors");
const evalArgs = ["--text", text, "--ctx", "64", "--max-tokens", "630", "--json"];

describe("--packed-activations", () => {
  before(async () => {
    const r = await cli(["quantize", model, "--spec", "int4:g32:asym", "-o", q], "");
    assert.equal(r.code, 0, r.stderr);
  });

  test("eval: q8 moves the perplexity of an int4 model by < 2%; f32 (default) = the ref backend", async () => {
    const ppl = async (...extra: string[]) => {
      const r = await cli(["eval", q, ...evalArgs, ...extra], "");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr.includes("warning"), false, r.stderr);
      return JSON.parse(r.stdout).ppl as number;
    };
    const exact = await ppl();
    const f32 = await ppl("--packed-activations", "f32");
    const ref = await ppl("--backend", "ref");
    const q8 = await ppl("--packed-activations", "q8");
    const q8t2 = await ppl("--packed-activations", "q8", "--threads", "2");
    assert.equal(f32, exact);
    assert.ok(Math.abs(exact - ref) / ref < 1e-5, `wasm f32 ${exact} vs ref ${ref}`);
    assert.notEqual(q8, exact, "q8 activations change the numbers");
    assert.ok(Math.abs(q8 - exact) / exact < 0.02, `q8 ${q8} vs f32 ${exact}`);
    assert.equal(q8t2, q8, "the same bits at 2 threads");
    console.log(`# int4:g32:asym stories260K ppl: f32 ${exact.toFixed(4)}, q8 ${q8.toFixed(4)}, ref ${ref.toFixed(4)}`);
  });

  test("kld of the int4 model against itself with q8: small and positive; run and bench accept it", async () => {
    const k = await cli(["kld", model, q, ...evalArgs, "--packed-activations", "q8"], "");
    assert.equal(k.code, 0, k.stderr);
    const k8 = JSON.parse(k.stdout).meanKld as number;
    const kf = JSON.parse((await cli(["kld", model, q, ...evalArgs], "")).stdout).meanKld as number;
    assert.ok(k8 > 0 && Math.abs(k8 - kf) < 0.5 * kf, `KLD q8 ${k8} vs f32 ${kf}`);
    const r = await cli(["run", q, "-p", "Once upon a time", "-n", "24", "--json", "--packed-activations", "q8"], "");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).tokenIds.length > 5);
    const b = await cli(["bench", q, "--prompt-tokens", "8", "--gen-tokens", "4", "--reps", "1", "--json", "--packed-activations", "q8"], "");
    assert.equal(b.code, 0, b.stderr);
    assert.ok(JSON.parse(b.stdout).quantlab.decode.median > 0);
  });

  test("no quantlab-quantized weight: a warning, the same numbers", async () => {
    const a = await cli(["eval", model, ...evalArgs, "--packed-activations", "q8"], "");
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stderr, /warning: --packed-activations q8 has no effect on stories260K\.bin/);
    const b = await cli(["eval", model, ...evalArgs], "");
    assert.equal(JSON.parse(a.stdout).ppl, JSON.parse(b.stdout).ppl);
  });

  test("errors: an unknown mode, q8 with the ref backend", async () => {
    const u = await cli(["eval", q, ...evalArgs, "--packed-activations", "q4"], "");
    assert.notEqual(u.code, 0);
    assert.match(u.stderr, /^quantlab: error: option --packed-activations: expected f32 or q8, got "q4"/);
    const r = await cli(["run", q, "-n", "4", "--backend", "ref", "--packed-activations", "q8"], "");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /option --packed-activations q8: the ref backend multiplies in f32 only/);
    assert.equal(r.stdout, "");
  });
});
