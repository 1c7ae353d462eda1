/**
 * `quantlab compare --json` on stories260K: the documented row shape for weight specs, learned codebooks,
 * mixed precision, integer-only W8A8 and KV-cache rows; rows that are measured, not echoed (bits counted
 * from the tensor shapes, bytes of the file `quantize` writes, KLD ordered by bits, the library's own
 * quantize + kld giving the same numbers); static activation scales calibrated as documented; bad specs
 * are one-line errors.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { dequantizeWeight } from "../../../src/kernels/dequantize.js";
import { Llama } from "../../../src/model/llama.js";
import type { Model } from "../../../src/model/weights.js";
import type { ActivationQuantConfig } from "../../../src/model/transforms.js";
import { kld, ModelLogits, type LogitsSource } from "../../../src/eval/kld.js";
import { planWindows, windowInputs } from "../../../src/eval/windows.js";
import { quantizeLayer, quantizeTensor } from "../../../src/quant/tensor.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const MODEL = dataPath("stories260K", "stories260K.bin");
const TEXT = dataPath("tinystories", "eval.txt");
const CALIB = dataPath("tinystories", "calib.txt");
const CTX = 128, MAX_TOKENS = 127; // one window of BOS + 127 tokens

interface Row { spec: string; bpw: number; sizeBytes: number; ppl: number; meanKld: number; top1: number }

// the rows below score two windows and calibrate on 512 tokens: text prefixes are enough (a prefix tokenizes to
// the same leading tokens), and `compare` does not tokenize 400 kB for them
const DIR = mkdtempSync(join(tmpdir(), "quantlab-compare-"));
after(() => rmSync(DIR, { recursive: true, force: true }));
const TEXT_PREFIX = join(DIR, "eval.txt"), CALIB_PREFIX = join(DIR, "calib.txt");
writeFileSync(TEXT_PREFIX, readFileSync(TEXT, "utf8").slice(0, 4000));
writeFileSync(CALIB_PREFIX, readFileSync(CALIB, "utf8").slice(0, 4000));

function compareJson(...args: string[]): { tokens: number; base: { ppl: number }; rows: Row[] } {
  const r = quantlab("compare", MODEL, ...args, "--text", TEXT_PREFIX, "--ctx", String(CTX), "--max-tokens", String(MAX_TOKENS), "--backend", "ref", "--json");
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const model = await loadModel(MODEL);
const tok = model.tokenizer!;
/** the block linears (attn q/k/v/output, ffn gate/up/down of every layer), found by name */
const LINEARS = [...model.weights.keys()].filter((n) => /^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$/.test(n));
const evalTokens = tok.encode(readFileSync(TEXT_PREFIX, "utf8"), { bos: false });

/** The model with every block linear quantized by quantizeTensor (round to nearest), built here, not by the CLI. */
function quantizedModel(spec: string, activations?: ActivationQuantConfig): Model {
  const weights = new Map(model.weights);
  for (const n of LINEARS) {
    const { rows, cols, data } = dequantizeWeight(model.weights.get(n)!, n);
    weights.set(n, { kind: "quant", q: quantizeTensor(data, [rows, cols], spec, { name: n }) });
  }
  return { ...model, weights, ...(activations ? { inputTransforms: { activations } } : {}) };
}

/** The float model's logits, computed once per window and replayed for every comparison below. */
const baseLive = new ModelLogits(new Llama(model, { contextLength: CTX }));
const baseSeen = new Map<string, Float32Array>();
const base: LogitsSource = {
  vocabSize: baseLive.vocabSize,
  maxRows: baseLive.maxRows,
  async rows(inputs, pos, n) {
    const key = `${pos}/${n}/${inputs.join(",")}`;
    let r = baseSeen.get(key);
    if (!r) baseSeen.set(key, (r = (await baseLive.rows(inputs, pos, n)).slice()));
    return r;
  },
};

async function kldOf(m: Model): Promise<{ meanKld: number; pplOther: number; top1: number }> {
  return kld(base, new ModelLogits(new Llama(m, { contextLength: CTX })), evalTokens, { ctx: CTX, maxTokens: MAX_TOKENS, bosId: tok.bosId });
}

const near = (a: number, b: number, rel: number) => Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b));

describe("compare", () => {
  test("--json rows: {spec, bpw, sizeBytes, ppl, meanKld, top1, worstSqnrDb, seconds} for every kind of row", () => {
    const specs = ["int8:channel", "kmeans3:channel", "mixed:4.5bpw:int3:g32+nf4:g64+int8:channel", "int8:channel:a8:intmm"];
    const r = quantlab("compare", MODEL, "--specs", specs.join(","), "--kv-specs", "fp16,int4:g4:asym", "--text", TEXT_PREFIX, "--calib", CALIB_PREFIX, "--calib-tokens", "512", "--ctx", "128", "--max-tokens", "254", "--json");
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

  test("rows are measured, not echoed: bits from the shapes, bytes of the written file, KLD ordered by bits, fp16 ≈ float ≪ int2, the library's quantize + kld give the same ppl and KLD", async () => {
    const specs = ["fp16", "int8:channel", "int8:channel:a8", "int4:channel", "int3:channel", "int2:g32:asym", "int4:layer"];
    const j = compareJson("--specs", specs.join(","));
    assert.equal(j.tokens, MAX_TOKENS);
    const row = Object.fromEntries(j.rows.map((x) => [x.spec, x])) as Record<string, Row>;
    assert.deepEqual(Object.keys(row), specs);

    // bits per weight counted from the 35 linears' shapes: b-bit codes (whole bytes per tensor) + one f32 scale per
    // row; int2:g32:asym: a f32 scale and a 2-bit zero point per group of 32 (the 172-wide rows end in a group of 12)
    assert.equal(LINEARS.length, 7 * model.config.nLayers);
    const shapes = LINEARS.map((n) => dequantizeWeight(model.weights.get(n)!, n));
    const total = shapes.reduce((a, t) => a + t.rows * t.cols, 0);
    const bpw = (bitsOf: (rows: number, cols: number) => number) => shapes.reduce((a, t) => a + bitsOf(t.rows, t.cols), 0) / total;
    const channel = (b: number) => bpw((r, c) => 8 * Math.ceil((r * c * b) / 8) + 32 * r);
    assert.equal(row.fp16!.bpw, 16);
    for (const [spec, b] of [["int8:channel", 8], ["int8:channel:a8", 8], ["int4:channel", 4], ["int3:channel", 3]] as const) {
      assert.ok(near(row[spec]!.bpw, channel(b), 1e-12), `${spec}: bpw ${row[spec]!.bpw} vs ${channel(b)} counted`);
    }
    const g32 = bpw((r, c) => { const groups = r * Math.ceil(c / 32); return 8 * Math.ceil((r * c * 2) / 8) + 32 * groups + 8 * Math.ceil((groups * 2) / 8); });
    assert.ok(near(row["int2:g32:asym"]!.bpw, g32, 1e-12), `int2:g32:asym: bpw ${row["int2:g32:asym"]!.bpw} vs ${g32} counted`);

    // file bytes: the size of the file `quantize` writes for the same spec
    const out = join(DIR, "q.safetensors");
    const q = quantlab("quantize", MODEL, "--spec", "int2:g32:asym", "-o", out); // codes, scales and zero points per tensor
    assert.equal(q.status, 0, q.stderr);
    assert.equal(row["int2:g32:asym"]!.sizeBytes, statSync(out).size);
    const size = (s: string) => row[s]!.sizeBytes;
    assert.ok(size("fp16") > size("int8:channel") && size("int8:channel") > size("int4:channel") && size("int4:channel") > size("int3:channel"));

    // quality follows the bits; an identity quantizer would give KLD 0 and the float ppl everywhere
    // (measured on two windows: fp16 KLD 4e-7, int8 4.4e-4, int4 0.17, int3 1.75; ppl float 5.11, int2:g32:asym 331)
    const kl = (s: string) => row[s]!.meanKld;
    assert.ok(kl("fp16") > 0 && kl("fp16") < 1e-5, `fp16 KLD ${kl("fp16")}`);
    assert.ok(near(row.fp16!.ppl, j.base.ppl, 1e-3), `fp16 ppl ${row.fp16!.ppl} vs float ${j.base.ppl}`);
    assert.ok(kl("fp16") < kl("int8:channel") && kl("int8:channel") < kl("int4:channel") && kl("int4:channel") < kl("int3:channel"),
      JSON.stringify(j.rows.map((x) => [x.spec, x.meanKld])));
    assert.ok(row["int3:channel"]!.top1 < row["int8:channel"]!.top1);
    assert.ok(row["int2:g32:asym"]!.ppl > 10 * j.base.ppl, `int2:g32:asym ppl ${row["int2:g32:asym"]!.ppl} vs float ${j.base.ppl}`);
    // dynamic per-token int8 activations (fake quant) add error on top of the int8 weights
    assert.ok(kl("int8:channel:a8") > 1.5 * kl("int8:channel"), `a8 ${kl("int8:channel:a8")} vs weights only ${kl("int8:channel")}`);

    // the same numbers from a model quantized here with quantizeTensor and scored by eval/kld
    for (const [spec, acts] of [["int4:channel", undefined], ["int8:channel:a8", { bits: 8, mode: "dynamic" } as const]] as const) {
      const r = await kldOf(quantizedModel(spec.replace(":a8", ""), acts));
      assert.ok(near(row[spec]!.meanKld, r.meanKld, 1e-9), `${spec}: compare KLD ${row[spec]!.meanKld}, library ${r.meanKld}`);
      assert.ok(near(row[spec]!.ppl, r.pplOther, 1e-9), `${spec}: compare ppl ${row[spec]!.ppl}, library ${r.pplOther}`);
      assert.equal(row[spec]!.top1, r.top1);
    }
    // int4:layer: one range per block, shared by the block's 7 linears (quantizeLayer on each blk.<l>.*)
    const weights = new Map(model.weights);
    for (let l = 0; l < model.config.nLayers; l++) {
      const entries = LINEARS.filter((n) => n.startsWith(`blk.${l}.`)).map((name) => { const t = dequantizeWeight(model.weights.get(name)!, name); return { name, w: t.data, shape: [t.rows, t.cols] }; });
      assert.equal(entries.length, 7);
      quantizeLayer(entries, "int4:layer").forEach((q, i) => weights.set(entries[i]!.name, { kind: "quant", q }));
    }
    const layer = await kldOf({ ...model, weights });
    assert.ok(near(row["int4:layer"]!.meanKld, layer.meanKld, 1e-9), `int4:layer: compare KLD ${row["int4:layer"]!.meanKld}, per-block quantizeLayer ${layer.meanKld}`);
    assert.ok(row["int4:layer"]!.meanKld > kl("int4:channel"), "one range per block is coarser than one per row");
  });

  test("a8s: the row is the model `quantize` writes for the same recipe (static scales, seeded windows of --ctx); the row's KLD is that model's, below scales ½× or 2× off", async () => {
    const j = compareJson("--specs", "int8:channel,int8:channel:a8s", "--calib", CALIB_PREFIX, "--calib-tokens", "512");
    const [w8, a8s] = j.rows;
    // compare calibrates static scales as quantize does (site by site, earlier sites quantized: the pipeline;
    // test/cli/commands/quantize-ptq-a8s.test.ts checks the scales against absmax/127 recomputed that way) on
    // ⌊512 / 127⌋ = 4 seeded windows of --ctx 128
    const out = join(DIR, "a8s.safetensors");
    const q = quantlab("quantize", MODEL, "--spec", "int8:channel:a8s", "--calib", CALIB_PREFIX, "--samples", "4", "--seq", String(CTX), "--backend", "ref", "-o", out);
    assert.equal(q.status, 0, q.stderr);
    const file = await loadModel(out);
    const acts = file.inputTransforms!.activations!;
    assert.equal(acts.mode, "static");
    assert.equal(Object.keys(acts.scales!).length, 4 * model.config.nLayers); // attn_in, attn_out_in, ffn_in, ffn_down_in per layer
    const calibrated = await kldOf(file);
    assert.ok(near(a8s!.meanKld, calibrated.meanKld, 1e-9), `compare a8s KLD ${a8s!.meanKld}, quantize's file ${calibrated.meanKld}`);
    assert.ok(near(a8s!.ppl, calibrated.pplOther, 1e-9));
    // the static activations cost KLD over the weights alone, and the calibrated scales beat scales ½× or 2× off
    // (measured: weights 4.4e-4, calibrated 7e-3, ½× 0.07, 2× 0.03)
    assert.ok(a8s!.meanKld > 2 * w8!.meanKld, `a8s ${a8s!.meanKld} vs weights only ${w8!.meanKld}`);
    const scaled = (k: number) => Object.fromEntries(Object.entries(acts.scales!).map(([key, x]) => [key, Math.fround(k * x)]));
    for (const k of [0.5, 2]) {
      const off = await kldOf({ ...file, inputTransforms: { activations: { bits: 8, mode: "static", scales: scaled(k) } } });
      assert.ok(off.meanKld > 2 * calibrated.meanKld, `scales ×${k}: KLD ${off.meanKld} vs calibrated ${calibrated.meanKld}`);
    }
  });

  test("bad specs are one-line errors before any work", () => {
    expectOneLineError(quantlab("compare", MODEL, "--specs", "int4:g32,int4:q9", "--text", TEXT), /spec "int4:q9": unknown part "q9"/, 2);
    expectOneLineError(quantlab("compare", MODEL, "--kv-specs", "int4:layer", "--text", TEXT), /KV-cache spec "int4:layer"/, 2);
    expectOneLineError(quantlab("compare", MODEL, "--specs", "mixed:4bpw:int4", "--text", TEXT), /at least two candidate/, 2);
  });
});
