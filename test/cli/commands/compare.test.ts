/**
 * `quantlab compare --json` on stories260K: the documented row shape for weight specs, learned codebooks,
 * mixed precision, integer-only W8A8 and KV-cache rows; bad specs are one-line errors.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { dataPath } from "../../../src/io/node/data.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const MODEL = dataPath("stories260K", "stories260K.bin");
const TEXT = dataPath("tinystories", "eval.txt");
const CALIB = dataPath("tinystories", "calib.txt");

describe("compare", () => {
  test("--json rows: {spec, bpw, sizeBytes, ppl, meanKld, top1, worstSqnrDb, seconds} for every kind of row", () => {
    const specs = ["int8:channel", "kmeans3:channel", "mixed:4.5bpw:int3:g32+nf4:g64+int8:channel", "int8:channel:a8:intmm"];
    const r = quantlab("compare", MODEL, "--specs", specs.join(","), "--kv-specs", "fp16,int4:g4:asym", "--text", TEXT, "--calib", CALIB, "--calib-tokens", "512", "--ctx", "128", "--max-tokens", "254", "--json");
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { tokens: number; base: { ppl: number }; rows: Record<string, unknown>[] };
    assert.equal(j.tokens, 254);
    assert.deepEqual(j.rows.map((x) => x.spec), [...specs, "f32", "f32"]);
    for (const row of j.rows) {
      for (const k of ["bpw", "sizeBytes", "ppl", "meanKld", "top1", "seconds"]) assert.equal(typeof row[k], "number", `${String(row.spec)}.${k}`);
      assert.ok("worstSqnrDb" in row);
      assert.ok((row.ppl as number) > 1 && (row.meanKld as number) >= 0 && (row.top1 as number) <= 1);
    }
    const [i8, km, mixed, intmm, kv16, kv4] = j.rows as Record<string, any>[];
    assert.ok(Math.abs(i8!.bpw - 8.424) < 0.01);
    assert.ok(km!.bpw > 3 && km!.bpw < 3.6, `kmeans3 bpw ${km!.bpw}`);
    assert.ok(mixed!.bpw <= 4.5 && mixed!.mixed.sensitivity === "hessian-diag");
    assert.equal(Object.values(mixed!.mixed.counts as Record<string, number>).reduce((a, b) => a + b, 0), 35);
    assert.equal(intmm!.integer.accOverflows, 0);
    assert.ok(intmm!.integer.dots > 0);
    assert.equal(kv16!.kv, "fp16");
    assert.equal(kv16!.kvBits, 16);
    assert.equal(kv16!.bpw, 32);
    assert.ok(Math.abs(kv16!.ppl / j.base.ppl - 1) < 1e-3);
    assert.equal(kv4!.kv, "int4:g4:asym");
    assert.ok(kv4!.meanKld > kv16!.meanKld);
  });

  test("bad specs are one-line errors before any work", () => {
    expectOneLineError(quantlab("compare", MODEL, "--specs", "int4:g32,int4:q9", "--text", TEXT), /spec "int4:q9": unknown part "q9"/, 2);
    expectOneLineError(quantlab("compare", MODEL, "--kv-specs", "int4:layer", "--text", TEXT), /KV-cache spec "int4:layer"/, 2);
    expectOneLineError(quantlab("compare", MODEL, "--specs", "mixed:4bpw:int4", "--text", TEXT), /at least two candidate/, 2);
  });
});
