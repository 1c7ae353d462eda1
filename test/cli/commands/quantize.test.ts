/**
 * `quantlab quantize` through the real binary: a flag with no effect for the chosen target and method is a
 * one-line error (exit 2, no output) instead of being silently ignored — the review found `--method awq
 * --type Q4_0` and `--rotate --type Q4_0` writing plain Q4_0, and `--spec …:a8` files without their
 * activation quantization — and what `convert` cannot carry (an online rotation; activation
 * quantization) is refused or warned about, never dropped silently.
 */
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const S260 = dataPath("stories260K", "stories260K.bin");

describe("quantlab quantize: no flag is silently ignored", () => {
  let dir: string;
  let calib: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ql-qflags-"));
    calib = join(dir, "calib.txt");
    writeFileSync(calib, readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 6000));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("flags that do not apply to the target or method are one-line errors and leave nothing behind", () => {
    const g = join(dir, "x.gguf"), s = join(dir, "x.safetensors");
    const cases: [string[], RegExp][] = [
      [["--type", "Q4_0", "--method", "awq", "-o", g], /method awq with preset Q4_0 needs calibration data/],
      [["--type", "Q4_0", "--method", "smoothquant", "-o", g], /method smoothquant with preset Q4_0 needs calibration data/],
      [["--type", "Q4_0", "--rotate", "-o", g], /rotate \(mode full\) with the GGUF preset Q4_0: the online FFN-down Hadamard rotation \(R4\) cannot run in llama\.cpp.*--rotate residual/],
      [["--type", "Q4_0", "--rotate", "sideways", "-o", g], /option --rotate: "sideways": expected no value or "full".*"residual"/],
      [["--type", "Q4_0", "--calib", calib, "-o", g], /option --calib: applies to --type presets only with --method awq, awq\+gptq or smoothquant.*--imatrix <text>/],
      [["--type", "Q4_0", "--method", "awq", "--calib", calib, "--imatrix", calib, "-o", g], /give either --calib <text> or --imatrix <text> with --type/],
      [["--type", "Q4_0", "--only", "blk.*", "-o", g], /option --only: applies to --spec targets/],
      [["--type", "Q4_0", "--imatrix-ctx", "64", "-o", g], /option --imatrix-ctx: needs --imatrix <calibration text>/],
      [["--spec", "int4:g32", "--pure", "-o", s], /option --pure: applies to --type presets/],
      [["--spec", "int4:g32", "--imatrix", calib, "-o", s], /option --imatrix: applies to --type presets/],
      [["--spec", "int4:g32", "--samples", "8", "-o", s], /option --samples: sets the calibration windows, but no --calib/],
      [["--spec", "int4:g32", "--calib", calib, "-o", s], /calibration is given but method rtn with target int4:g32 does not use it/],
      [["--spec", "int4:g32", "--method", "gptq", "--calib", calib, "--alpha", "0.3", "-o", s], /option --alpha: method gptq has no such setting \(it applies to smoothquant\)/],
      [["--spec", "int4:g32", "--method", "awq", "--calib", calib, "--act-order", "-o", s], /option --act-order: method awq has no such setting \(it applies to gptq, awq\+gptq\)/],
      [["--spec", "int4:g32", "--gptq", "-o", s], /option --gptq: applies to --type presets/],
      [["--spec", "int4:g32", "--skip", "blk.*.ffn_dwn.weight", "-o", s], /--skip\): "blk\.\*\.ffn_dwn\.weight" matches no tensor/],
      [["--spec", "int4:g32", "--override", "blk.0.nothing=int8", "-o", s], /override "blk\.0\.nothing" matches no tensor/],
      [["--spec", "int4:g32", "--type", "Q4_0", "-o", s], /give either --spec <spec> .* or --type <preset> .*, not both/],
    ];
    for (const [args, re] of cases) {
      expectOneLineError(quantlab("quantize", S260, ...args), re, 2);
    }
    expectOneLineError(quantlab("quantize", S260, "--recipe", join(dir, "none.json"), "-o", s), /--recipe .*none\.json: no such file/, 1);
    writeFileSync(join(dir, "r.json"), JSON.stringify({ kind: "quantlab.recipe", version: 1, target: { spec: "int4:g32" } }));
    expectOneLineError(quantlab("quantize", S260, "--recipe", join(dir, "r.json"), "--spec", "int8", "-o", s), /option --spec: the recipe \(--recipe .*r\.json\) already says how to quantize/, 2);
    expectOneLineError(quantlab("quantize", S260, "--recipe", join(dir, "r.json"), "--seed", "4", "-o", s), /option --seed: the recipe/, 2);
    assert.deepEqual(readdirSync(dir).sort(), ["calib.txt", "r.json"], "no output or temp file left");
  });

  test("--spec with an activation part: the file runs its activation quantization (dynamic a8; static a8s calibrated)", async () => {
    const a8 = join(dir, "a8.safetensors"), a8s = join(dir, "a8s.safetensors");
    assert.equal(quantlab("quantize", S260, "--spec", "int8:channel:a8", "-o", a8).status, 0);
    const r = quantlab("quantize", S260, "--spec", "int8:channel:a8s", "--calib", calib, "--samples", "4", "--seq", "64", "-o", a8s, "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).calibTokens, 4 * 64);
    const m8 = await loadModel(a8), m8s = await loadModel(a8s);
    assert.deepEqual(m8.inputTransforms?.activations, { bits: 8, mode: "dynamic" });
    const acts = m8s.inputTransforms?.activations;
    assert.equal(acts?.mode, "static");
    const scales = Object.values(acts!.scales!);
    assert.equal(scales.length, 4 * m8s.config.nLayers, "one scale per (layer, site)");
    assert.ok(scales.every((x) => x > 0 && Number.isFinite(x)), JSON.stringify(acts!.scales));
  });
});

describe("quantlab convert: what the output format cannot carry", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-carry-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a rotated model (online FFN-down rotation) is refused for GGUF, HF and plain safetensors, with or without --type", () => {
    const rot = join(dir, "rot.safetensors");
    assert.equal(quantlab("quantize", S260, "--spec", "int8:channel", "--rotate", "-o", rot).status, 0);
    for (const [out, type] of [["r.gguf", undefined], ["r2.gguf", "Q8_0"], ["r-hf/", undefined], ["r-hf2/", "F16"], ["r.safetensors", undefined]] as const) {
      const args = ["convert", rot, join(dir, out), ...(type ? ["--type", type] : [])];
      expectOneLineError(quantlab(...args), /has an online FFN-down rotation \(quantize --rotate\) that (GGUF|a Hugging Face directory|a plain safetensors file) cannot carry/, 1);
      assert.ok(!existsSync(join(dir, out)), `${out} left behind`);
    }
  });

  test("a model with static activation scales converts to GGUF with a warning on stderr and in --json", () => {
    const calib = join(dir, "calib.txt");
    writeFileSync(calib, readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 6000));
    const a8s = join(dir, "a8s.safetensors");
    assert.equal(quantlab("quantize", S260, "--spec", "int8:channel:a8s", "--calib", calib, "--samples", "2", "--seq", "32", "-o", a8s).status, 0);
    const text = quantlab("convert", a8s, join(dir, "a.gguf"));
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stderr, /quantlab: warning: GGUF cannot carry .*static int8 activation quantization \(a8s\): written without it/);
    const j = quantlab("convert", a8s, join(dir, "b.gguf"), "--json");
    assert.equal(j.status, 0, j.stderr);
    const w = JSON.parse(j.stdout).warnings as string[];
    assert.equal(w.length, 1);
    assert.match(w[0]!, /static int8 activation quantization/);
    assert.match(j.stderr, /quantlab: warning: GGUF cannot carry/);
  });
});

describe("quantlab quantize: every method into GGUF, the same bytes as the library", () => {
  let dir: string;
  let calib: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ql-qggufm-"));
    calib = join(dir, "calib.txt");
    writeFileSync(calib, readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 20000));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [label, flags] of [
    ["--method awq --type Q4_0 --calib", ["--type", "Q4_0", "--method", "awq", "--calib", "CALIB", "--imatrix-ctx", "64", "--imatrix-chunks", "6"]],
    ["--rotate residual --type Q4_K_M", ["--type", "Q4_K_M", "--rotate", "residual"]],
    ["--method awq+gptq --rotate residual --type Q4_K_S --imatrix", ["--type", "Q4_K_S", "--method", "awq+gptq", "--rotate", "residual", "--imatrix", "CALIB", "--imatrix-ctx", "64", "--imatrix-chunks", "6"]],
  ] as [string, string[]][]) {
    test(`${label}: the file equals quantize(model, its --save-recipe) through the library, and records the method`, async () => {
      const { quantize } = await import("../../../src/algos/quantize.js");
      const { saveQuantizeResult } = await import("../../../src/io/node/quantize-output.js");
      const { openGgufFile } = await import("../../../src/io/node/gguf-file.js");
      const { metaString } = await import("../../../src/io/gguf.js");
      const out = join(dir, `${label.replace(/[^a-z0-9]+/gi, "_")}.gguf`), rec = `${out}.json`;
      const args = flags.map((f) => (f === "CALIB" ? calib : f));
      const res = quantlab("quantize", S260, ...args, "--save-recipe", rec, "-o", out);
      assert.equal(res.status, 0, res.stderr);
      const model = await loadModel(S260);
      const recipe = JSON.parse(readFileSync(rec, "utf8")) as Record<string, unknown>;
      const r = await quantize(model, recipe, { calibText: readFileSync(calib, "utf8") });
      const lib = join(dir, "lib.gguf");
      await saveQuantizeResult(r, lib);
      assert.ok(Buffer.from(readFileSync(lib)).equals(readFileSync(out)), `${label}: CLI and library files differ`);
      const f = await openGgufFile(out);
      try {
        const inFile = JSON.parse(metaString(f, "quantlab.recipe")!) as { method: string; rotate?: { mode: string } };
        assert.equal(inFile.method, flags.includes("awq+gptq") ? "awq+gptq" : flags.includes("awq") ? "awq" : "rtn");
        if (flags.includes("--rotate")) assert.deepEqual(inFile.rotate, { seed: 0, mode: "residual" });
      } finally {
        await f.close();
      }
    });
  }
});
