/** `quantlab qat`: QAT end to end through files (the trained file loads back and matches the JSON). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { TensorNames } from "../../../src/model/config.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const model = dataPath("stories260K", "stories260K.bin");
const calib = dataPath("tinystories", "calib.txt");

test("qat --json writes a quantized file that loads back with the spec on every linear", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-qat-"));
  try {
    const out = join(dir, "q.safetensors");
    const r = quantlab("qat", model, "--spec", "int3:g32:asym", "--text", calib, "--steps", "2", "--batch", "1", "--seq", "8", "--seed", "3", "-o", out, "--json");
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { spec: string; steps: number; tensors: number; losses: number[]; bytes: number };
    assert.equal(j.spec, "int3:g32:asym");
    assert.equal(j.tensors, 35);
    assert.equal(j.losses.length, 2);
    assert.ok(j.losses.every((l) => l > 0 && Number.isFinite(l)));
    const m = await loadModel(out);
    const w = m.weights.get(TensorNames.attnQ(0))!;
    assert.equal(w.kind, "quant");
    assert.equal(w.kind === "quant" ? w.q.spec : "", "int3:g32:asym");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("qat errors are one line and leave no output file", () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-qat-"));
  try {
    const out = join(dir, "q.safetensors");
    expectOneLineError(quantlab("qat", model, "--text", calib, "-o", out), /give --spec/, 2);
    expectOneLineError(quantlab("qat", model, "--spec", "int3:g32", "--float", "--text", calib, "-o", out), /not both/, 2);
    expectOneLineError(quantlab("qat", model, "--spec", "int3:g32", "--loss", "mse", "--text", calib, "-o", out), /--loss/, 2);
    expectOneLineError(quantlab("qat", model, "--spec", "int3:g32", "--seq", "9999", "--text", calib, "-o", out), /seq 9999/, 2);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
