/** `quantlab quantize --method/--rotate/--calib`: the PTQ path of the command, end to end through files. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { TensorNames } from "../../../src/model/config.js";
import { Llama } from "../../../src/model/llama.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const model = dataPath("stories260K", "stories260K.bin");
const calib = dataPath("tinystories", "calib.txt");
const evalText = dataPath("tinystories", "eval.txt");

test("quantize --method gptq --json writes a file that loadModel runs and kld scores; the JSON reports every linear", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-ptq-"));
  try {
    const out = join(dir, "q.safetensors");
    const r = quantlab("quantize", model, "--method", "gptq", "--spec", "int4:g32:asym", "--calib", calib, "--samples", "4", "--seq", "64", "--seed", "1", "-o", out, "--json");
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { spec: string; method: string; calibTokens: number; bpw: number; tensors: { name: string; relErr: number; detail?: { loss: number } }[] };
    assert.equal(j.spec, "int4:g32:asym");
    assert.equal(j.method, "gptq");
    assert.equal(j.calibTokens, 4 * 64);
    assert.equal(j.tensors.length, 35);
    assert.ok(j.bpw > 5 && j.bpw < 5.4, `bits/weight ${j.bpw}`);
    for (const t of j.tensors) assert.ok(t.relErr > 0 && t.relErr < 0.05 && t.detail!.loss > 0, `${t.name}: ${JSON.stringify(t)}`);
    const m = await loadModel(out);
    assert.equal(m.weights.get(TensorNames.ffnDown(4))!.kind, "quant");
    const logits = new Llama(m).forward(1, 0);
    assert.ok(logits.every(Number.isFinite));
    const k = quantlab("kld", model, out, "--text", evalText, "--ctx", "128", "--max-tokens", "254", "--json");
    assert.equal(k.status, 0, k.stderr);
    const kj = JSON.parse(k.stdout) as { meanKld: number; top1: number };
    assert.ok(kj.meanKld > 0 && kj.meanKld < 0.3 && kj.top1 > 0.7, k.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("quantize --method rtn --rotate --skip: rotation recorded in the file, skipped linears stay float, text summary on stdout", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-ptq-"));
  try {
    const out = join(dir, "r.safetensors");
    const r = quantlab("quantize", model, "--method", "rtn", "--rotate", "--spec", "int8:channel", "--skip", "blk.*.ffn_down.weight", "-o", out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /rtn\+rotate int8:channel, 30 tensors/);
    const m = await loadModel(out);
    assert.ok(m.inputTransforms?.ffnDownRotation, "online rotation loaded from the file");
    assert.equal(m.weights.get(TensorNames.ffnDown(0))!.kind, "dense");
    assert.equal(m.weights.get(TensorNames.attnQ(0))!.kind, "quant");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("quantize PTQ errors are one line, exit non-zero, and leave no output file", () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-ptq-"));
  try {
    const out = join(dir, "x.safetensors");
    expectOneLineError(quantlab("quantize", model, "--method", "gptq", "--spec", "int4:g32", "-o", out), /needs calibration data \(--calib/, 2);
    expectOneLineError(quantlab("quantize", model, "--method", "optq", "--spec", "int4:g32", "-o", out), /--method: "optq"; valid methods: rtn, gptq/, 2);
    expectOneLineError(quantlab("quantize", model, "--method", "awq", "--spec", "int4:tensor", "--calib", calib, "--samples", "2", "--seq", "16", "-o", out), /int4:tensor.*channel or g<N>/, 2);
    const tiny = join(dir, "tiny.txt");
    writeFileSync(tiny, "Once upon a time.");
    expectOneLineError(quantlab("quantize", model, "--method", "gptq", "--spec", "int4:g32", "--calib", tiny, "--seq", "256", "-o", out), /fewer than one window/, 2);
    expectOneLineError(quantlab("quantize", model, "--method", "smoothquant", "--spec", "int8:channel", "--calib", calib, "-o", out), /add an activation part/, 2);
    assert.ok(!existsSync(out));
    assert.deepEqual(readdirSync(dir).filter((f) => f !== "tiny.txt"), [], "no temp files left");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
