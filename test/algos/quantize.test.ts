/**
 * The library verb `quantize(model, recipe)` (algos/quantize.ts) against the CLI: a script with a recipe
 * object writes the same bytes as `quantlab quantize` with the same flags; the recipe round-trips through
 * the output file (`model.recipe`, `quantize --recipe <file>` reproduces it byte for byte); and recipes
 * that would silently do less than they say are refused, naming the field.
 */
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { normalizeRecipe, quantize } from "../../src/algos/quantize.js";
import { recipeToJson, sha256Hex } from "../../src/algos/recipe.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveQuantizeResult } from "../../src/io/node/quantize-output.js";
import { quantlab } from "../cli/helpers-cli.js";

const S260 = dataPath("stories260K", "stories260K.bin");
const model = await loadModel(S260);

describe("quantize(model, recipe): same bytes as the CLI, recipe round trip", () => {
  let dir: string;
  let calib: string;
  let calibText: string;
  let calibRef: { name: string; sha256: string };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ql-recipe-"));
    calib = join(dir, "calib.txt");
    calibText = readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 8000);
    writeFileSync(calib, calibText);
    calibRef = { name: "calib.txt", sha256: await sha256Hex(new TextEncoder().encode(calibText)) };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: { name: string; out: string; flags: () => string[]; recipe: () => Record<string, unknown>; calib?: boolean }[] = [
    { name: "RTN int4:g32:asym", out: "rtn.safetensors", flags: () => ["--spec", "int4:g32:asym"], recipe: () => ({ target: { spec: "int4:g32:asym" } }) },
    {
      name: "GPTQ int3:g32 with calibration, act-order, a skip and an override", out: "gptq.safetensors",
      flags: () => ["--spec", "int3:g32", "--method", "gptq", "--calib", calib, "--samples", "4", "--seq", "64", "--seed", "3", "--act-order", "--skip", "blk.4.*", "--override", "blk.0.attn_v.weight=int8:channel"],
      recipe: () => ({
        target: { spec: "int3:g32" }, method: "gptq", seed: 3, options: { actOrder: true },
        calibration: { source: { text: calibRef }, windows: { kind: "random", samples: 4, seq: 64 } },
        tensors: { keepFloat: ["blk.4.*"] }, overrides: [{ match: "blk.0.attn_v.weight", spec: "int8:channel" }],
      }),
      calib: true,
    },
    {
      name: "Q4_K_M with an importance matrix from a text", out: "q4km.gguf",
      flags: () => ["--type", "Q4_K_M", "--imatrix", calib, "--imatrix-ctx", "64"],
      recipe: () => ({ target: { preset: "Q4_K_M" }, imatrix: { source: "calibration" }, calibration: { source: { text: calibRef }, windows: { kind: "chunks", ctx: 64 } } }),
      calib: true,
    },
  ];

  for (const c of cases) {
    test(`${c.name}: library bytes = CLI bytes; the file's recipe reproduces the file`, async () => {
      const cliOut = join(dir, `cli-${c.out}`);
      const r = quantlab("quantize", S260, ...c.flags(), "-o", cliOut, "--save-recipe", join(dir, `${c.out}.json`), "--json");
      assert.equal(r.status, 0, r.stderr);
      const lib = await quantize(model, c.recipe(), c.calib ? { calibText } : {});
      const libOut = join(dir, `lib-${c.out}`);
      await saveQuantizeResult(lib, libOut);
      assert.deepEqual(readFileSync(libOut), readFileSync(cliOut), "library and CLI write the same bytes");
      // the recipe travels in the file and comes back canonical
      const back = await loadModel(libOut);
      assert.equal(back.recipe, lib.recipeJson);
      assert.deepEqual(normalizeRecipe(back.recipe!), lib.recipe);
      assert.deepEqual(JSON.parse(r.stdout).recipe, JSON.parse(recipeToJson(lib.recipe)));
      // --recipe <the output file> and --recipe <the saved JSON> quantize again to the same bytes
      const extra = c.calib ? (c.out.endsWith(".gguf") ? ["--imatrix", calib] : ["--calib", calib]) : [];
      for (const src of [cliOut, join(dir, `${c.out}.json`)]) {
        const again = join(dir, `again-${c.out}`);
        const a = quantlab("quantize", S260, "--recipe", src, ...extra, "-o", again);
        assert.equal(a.status, 0, a.stderr);
        assert.deepEqual(readFileSync(again), readFileSync(cliOut), `--recipe ${src}`);
        rmSync(again);
      }
    });
  }

  test("a recipe run against a different calibration file is refused (sha256), naming it", async () => {
    const recipe = cases[1]!.recipe();
    await assert.rejects(quantize(model, recipe, { calibText: calibText + " " }), /calibration text calib\.txt: sha256 [0-9a-f]{64} differs from the recipe's/);
  });
});

describe("recipes that would do less than they say are refused, naming the field", () => {
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ["unknown top-level field", { target: { spec: "int4:g32" }, methd: "gptq" }, /recipe: \$\.methd: unknown field/],
    ["unknown method option", { target: { spec: "int4:g32" }, method: "gptq", options: { damping: 0.1 } }, /\$\.options\.damping: method gptq has no option "damping"/],
    ["option of another method", { target: { spec: "int4:g32" }, method: "awq", options: { actOrder: true } }, /method awq has no option "actOrder"/],
    ["calibration the method does not use", { target: { spec: "int4:g32" }, calibration: { source: { model: true }, windows: { kind: "random", samples: 2, seq: 16 } } }, /calibration is given but method rtn .* does not use it/],
    ["awq into a GGUF preset without calibration", { target: { preset: "Q4_0" }, method: "awq" }, /method awq with preset Q4_0 needs calibration data/],
    ["smoothquant into a GGUF preset without calibration", { target: { preset: "Q4_0" }, method: "smoothquant" }, /method smoothquant with preset Q4_0 needs calibration data/],
    ["the online rotation into a GGUF preset", { target: { preset: "Q4_0" }, rotate: { seed: 0 } }, /rotate \(mode full\) with the GGUF preset Q4_0: the online FFN-down Hadamard rotation \(R4\) cannot run in llama\.cpp; rotate the residual stream only/],
    ["an unknown rotation mode", { target: { preset: "Q4_0" }, rotate: { seed: 0, mode: "half" } }, /\$\.rotate\.mode: expected "full".*"residual"/],
    ["the residual rotation with a method that cannot take it on a preset", { target: { preset: "Q4_0" }, method: "hqq", rotate: { seed: 0, mode: "residual" } }, /rotate does not compose with method hqq on a GGUF preset|method hqq does not take a GGUF preset/],
    ["imatrix on a spec target", { target: { spec: "int4:g32" }, imatrix: { source: "calibration" } }, /imatrix applies to GGUF preset targets/],
    ["tensors.only on a preset", { target: { preset: "Q8_0" }, tensors: { only: ["blk.*"] } }, /tensors\.only applies to spec targets/],
    ["an override that matches nothing", { target: { spec: "int4:g32" }, overrides: [{ match: "blk.9.*", spec: "int8" }] }, /override "blk\.9\.\*" matches no tensor/],
    ["a mixed spec under rtn", { target: { spec: "mixed:4bpw:int4:g32+int8:channel" } }, /is a mixed-precision spec: run it with method "mixed"/],
    ["a future version", { version: 2, target: { spec: "int4:g32" } }, /\$\.version: this quantlab reads version 1/],
    ["static activations without calibration", { target: { spec: "int8:channel:a8s" } }, /method rtn needs calibration data/],
    ["GPTQ on the embedding", { target: { spec: "int4:g32" }, method: "gptq", tensors: { only: ["token_embd.weight"] }, calibration: { source: { model: true }, windows: { kind: "random", samples: 1, seq: 8 } } }, /method gptq quantizes block linears only; tensors\.only \(--only\) selects token_embd\.weight/],
  ];
  for (const [what, recipe, re] of bad) test(what, async () => { await assert.rejects(quantize(model, recipe), re); });
});
