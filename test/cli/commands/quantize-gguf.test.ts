/**
 * CLI: `quantlab quantize --type` (presets, fall-back notes, --json report, --threads giving the same
 * bytes, --imatrix text/.dat/.gguf, errors as one line) and `quantlab convert --type` with llama.cpp's
 * fall-back chain on a GGUF whose rows do not fit the block.
 */
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../../src/io/node/data.js";
import { openGgufFile } from "../../../src/io/node/gguf-file.js";
import { metaNumber, metaString } from "../../../src/io/gguf.js";
import { ggmlTypeName } from "../../../src/ggml/types.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const S260 = dataPath("stories260K", "stories260K.bin");

describe("quantlab quantize --type / convert --type", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-gqc-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("Q4_0 on stories260K: per-tensor fall-backs reported (llama.cpp refuses), JSON report matches the file", async () => {
    const out = join(dir, "q40.gguf");
    const r = quantlab("quantize", S260, "--type", "q4_0", "-o", out, "--json");
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { type: string; fileType: number; bytes: number; fallbacks: { name: string; type: string; llamaRefuses: boolean }[]; tensors: { name: string; type: string }[] };
    assert.equal(j.type, "Q4_0");
    assert.equal(j.fileType, 2);
    assert.equal(j.fallbacks.length, 5);
    assert.ok(j.fallbacks.every((f) => f.name.endsWith("ffn_down.weight") && f.type === "F16" && f.llamaRefuses));
    const f = await openGgufFile(out);
    try {
      assert.equal(metaNumber(f, "general.file_type"), 2);
      assert.equal(metaString(f, "general.architecture"), "llama");
      assert.ok(f.metadata.has("tokenizer.ggml.tokens"));
      for (const t of j.tensors) assert.equal(ggmlTypeName(f.tensor(t.name)!.type), t.type, t.name);
    } finally {
      await f.close();
    }
    const human = quantlab("quantize", S260, "--type", "Q4_0", "-o", join(dir, "q40b.gguf"));
    assert.equal(human.status, 0);
    assert.match(human.stderr, /fall-back Q4_0 → F16 \(row width 172, llama\.cpp refuses it\): 5 tensors/);
    assert.match(human.stderr, /llama-quantize would refuse Q4_0 for this model/);
    assert.deepEqual(readFileSync(out), readFileSync(join(dir, "q40b.gguf")));
  });

  test("--threads 2 writes the same bytes; --imatrix from text, then from the saved .dat and .gguf, gives the same file", () => {
    const a = join(dir, "t1.gguf");
    const b = join(dir, "t2.gguf");
    assert.equal(quantlab("quantize", S260, "--type", "Q4_K_M", "-o", a).status, 0);
    assert.equal(quantlab("quantize", S260, "--type", "Q4_K_M", "-o", b, "--threads", "2").status, 0);
    assert.deepEqual(readFileSync(a), readFileSync(b));
    const calib = join(dir, "calib.txt");
    writeFileSync(calib, readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 6000));
    const q1 = join(dir, "im1.gguf");
    const r = quantlab("quantize", S260, "--type", "Q4_K_M", "-o", q1, "--imatrix", calib, "--imatrix-ctx", "64", "--imatrix-out", join(dir, "im.dat"), "--json");
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { imatrix: { chunks: number; entries: number; collected: boolean } };
    assert.equal(j.imatrix.collected, true);
    assert.equal(j.imatrix.entries, 35);
    assert.ok(j.imatrix.chunks >= 10);
    assert.notDeepEqual(readFileSync(q1), readFileSync(a), "the imatrix changes the bytes");
    assert.equal(quantlab("quantize", S260, "--type", "Q4_K_M", "-o", join(dir, "im2.gguf"), "--imatrix", calib, "--imatrix-ctx", "64", "--imatrix-out", join(dir, "im.gguf")).status, 0);
    const q2 = join(dir, "im3.gguf");
    assert.equal(quantlab("quantize", S260, "--type", "Q4_K_M", "-o", q2, "--imatrix", join(dir, "im.gguf")).status, 0);
    // same tensors (metadata differs only in the imatrix file name): compare tensor data via info
    const t = (p: string) => (JSON.parse(quantlab("info", p, "--json").stdout) as { tensors: unknown[] }).tensors;
    assert.deepEqual(t(q2), t(q1));
  });

  test("--imatrix-forward int: recorded in the recipe, --recipe of the file reproduces its bytes, 2 threads too; not the exact file", () => {
    const S3M = dataPath("ggml", "stories3M", "stories3M-F32.gguf");
    const calib = join(dir, "calib-int.txt");
    writeFileSync(calib, readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 20000));
    const a = join(dir, "int-a.gguf"), b = join(dir, "int-b.gguf"), e = join(dir, "int-exact.gguf"), rj = join(dir, "int.json");
    let r = quantlab("quantize", S3M, "--type", "Q4_K_M", "-o", a, "--imatrix", calib, "--imatrix-ctx", "128", "--imatrix-chunks", "4", "--imatrix-forward", "int", "--save-recipe", rj);
    assert.equal(r.status, 0, r.stderr);
    const recipe = JSON.parse(readFileSync(rj, "utf8")) as { imatrix: { source: string; forward?: string } };
    assert.deepEqual(recipe.imatrix, { source: "calibration", forward: "int" });
    r = quantlab("quantize", S3M, "--recipe", a, "--imatrix", calib, "-o", b, "--threads", "2");
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readFileSync(b), readFileSync(a));
    r = quantlab("quantize", S3M, "--type", "Q4_K_M", "-o", e, "--imatrix", calib, "--imatrix-ctx", "128", "--imatrix-chunks", "4");
    assert.equal(r.status, 0, r.stderr);
    assert.notDeepEqual(readFileSync(e), readFileSync(a));
    expectOneLineError(quantlab("quantize", S3M, "--type", "Q4_K_M", "-o", join(dir, "x.gguf"), "--imatrix", calib, "--imatrix-bits", "8"), /--imatrix-bits: needs --imatrix-forward int/, 2);
    expectOneLineError(quantlab("quantize", S3M, "--type", "Q4_K_M", "-o", join(dir, "x.gguf"), "--imatrix", calib, "--imatrix-forward", "fast"), /--imatrix-forward: fast: expected exact or int/, 2);
  });

  test("errors: unknown preset, non-GGUF output, --gptq without a text; no output left behind", () => {
    const out = join(dir, "bad.gguf");
    expectOneLineError(quantlab("quantize", S260, "--type", "Q4_K_X", "-o", out), /--type Q4_K_X: not a llama-quantize preset/, 2);
    expectOneLineError(quantlab("quantize", S260, "--type", "Q4_K_M", "-o", join(dir, "x.safetensors")), /\(--type\) writes a GGUF/, 2);
    expectOneLineError(quantlab("quantize", S260, "--type", "Q4_K_M", "--gptq", "-o", out), /--gptq needs --imatrix/, 2);
    expectOneLineError(quantlab("quantize", S260, "-o", out), /give --spec <spec> .* or --type <preset>/, 2);
    assert.ok(!existsSync(out));
  });

  test("convert --type Q4_K on llama.cpp's stories260K F32 GGUF: llama.cpp's fall-back chain, metadata kept", async () => {
    const out = join(dir, "c.gguf");
    const r = quantlab("convert", dataPath("ggml", "stories260K", "stories260K-F32.gguf"), out, "--type", "Q4_K", "--json");
    assert.equal(r.status, 0, r.stderr);
    const f = await openGgufFile(out);
    try {
      assert.equal(ggmlTypeName(f.tensor("blk.0.attn_q.weight")!.type), "Q5_0");
      assert.equal(ggmlTypeName(f.tensor("blk.0.ffn_down.weight")!.type), "F16");
      assert.equal(ggmlTypeName(f.tensor("blk.0.attn_norm.weight")!.type), "F32");
      assert.equal(metaNumber(f, "llama.context_length"), 128);
    } finally {
      await f.close();
    }
  });
});
