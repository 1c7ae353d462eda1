/**
 * `quantlab export --onnx` through the CLI: the directory transformers.js 4.x loads offline
 * (env.allowRemoteModels = false, env.localModelPath at the export) generates, greedy with
 * pipeline('text-generation'), the same tokens as `quantlab run` on the same model — stories260K in float
 * (llama2.c checkpoint, tok512 turned into tokenizer.json) and its int4:g32 quantization (a quantized
 * safetensors file whose codes the export carries as MatMulNBits). Bad input: one error line naming the
 * option or spec, a non-zero exit, and no output directory (nor temp directory) left behind.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { env, pipeline } from "@huggingface/transformers";
import { dataPath } from "../../../src/io/node/data.js";
import { cli, type Run } from "../helpers-cli.js";

const S260 = dataPath("stories260K", "stories260K.bin");
const PROMPT = "Once upon a time";

function oneLineError(r: Run, re: RegExp): void {
  assert.notEqual(r.code, 0, `exit ${r.code}; stdout ${r.stdout}`);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^quantlab: error: /);
  assert.match(lines[0]!, re);
}

/** transformers.js greedy generation from an exported directory: the prompt's ids + the new ones, and the text. */
async function transformersGenerate(modelsDir: string, name: string, dtype: string, newTokens: number): Promise<{ ids: number[]; text: string }> {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = modelsDir + "/";
  const gen = await pipeline("text-generation", name, { dtype: dtype as "fp32" });
  try {
    const out = (await gen(PROMPT, { max_new_tokens: newTokens, do_sample: false })) as { generated_text: string }[];
    const enc = gen.tokenizer(PROMPT);
    const ids = (await gen.model.generate({ ...enc, max_new_tokens: newTokens, do_sample: false })) as { data: ArrayLike<bigint> };
    return { ids: Array.from(ids.data, Number), text: out[0]!.generated_text };
  } finally {
    await gen.dispose();
  }
}

describe("quantlab export --onnx (CLI) + transformers.js", () => {
  let dir: string;
  let models: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ql-export-"));
    models = join(dir, "models");
    mkdirSync(models);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const c of [
    { what: "float stories260K (fp32)", dtype: "fp32", quantized: false },
    { what: "int4:g32 stories260K (q4, MatMulNBits)", dtype: "q4", quantized: true },
  ]) {
    test(`${c.what}: transformers.js pipeline greedy = quantlab run`, async () => {
      let src = S260;
      if (c.quantized) {
        const q = await cli(["quantize", S260, "--spec=int4:g32", "-o", "q.safetensors", "--save-recipe", "r.json"], dir);
        assert.equal(q.code, 0, q.stderr);
        src = join(dir, "q.safetensors");
      }
      const name = `s260-${c.dtype}`;
      const r = await cli(["export", src, "--onnx", join(models, name), "--json"], dir);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.dtype, c.dtype); // inferred: int4 codes → q4, float → fp32
      assert.equal(j.matMulNBits, c.quantized ? 35 : 0);
      assert.deepEqual(j.notes, []);
      assert.deepEqual(j.files.sort(), ["config.json", "generation_config.json", `onnx/${c.dtype === "q4" ? "model_q4.onnx" : "model.onnx"}`, "tokenizer.json", "tokenizer_config.json"]);
      const cfg = JSON.parse(readFileSync(join(models, name, "config.json"), "utf8"));
      assert.equal(cfg.model_type, "llama");
      assert.equal(cfg.num_key_value_heads, 4);
      const run = await cli(["run", src, `--prompt=${PROMPT}`, "--tokens=48", "--json"], dir);
      assert.equal(run.code, 0, run.stderr);
      const want = JSON.parse(run.stdout) as { tokenIds: number[]; promptTokens: number; text: string };
      const got = await transformersGenerate(models, name, c.dtype, want.tokenIds.length - want.promptTokens);
      assert.deepEqual(got.ids.slice(0, want.promptTokens), want.tokenIds.slice(0, want.promptTokens), "prompt tokenization");
      assert.deepEqual(got.ids, want.tokenIds);
      assert.equal(got.text, want.text.trimEnd());
      if (c.quantized) {
        // quantizing inside export with the same recipe gives the same file as exporting the quantized file
        const again = await cli(["export", S260, "--onnx", join(dir, "from-recipe"), `--recipe=${join(dir, "r.json")}`], dir);
        assert.equal(again.code, 0, again.stderr);
        assert.deepEqual(readFileSync(join(dir, "from-recipe", "onnx", "model_q4.onnx")), readFileSync(join(models, name, "onnx", "model_q4.onnx")));
      }
    });
  }

  test("llama.cpp's own stories3M Q4_0 GGUF: its blocks become MatMulNBits, transformers.js greedy = quantlab run on the GGUF", async () => {
    const src = dataPath("ggml", "stories3M", "stories3M-Q4_0.gguf");
    const r = await cli(["export", src, "--onnx", join(models, "s3m-q4_0"), "--json"], dir);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    // the classifier llama.cpp keeps at Q6_K (8-bit container) makes the file a q8 one
    assert.equal(j.dtype, "q8");
    assert.equal(j.matMulNBits, 29);
    assert.equal(j.floatLinears, 0);
    // the Q4_0 embedding's rows are gathered from its codes (GatherBlockQuantized): nothing is written as float
    assert.equal(j.gatherBlockQuantized, 1);
    assert.deepEqual(j.notes, []);
    const run = await cli(["run", src, `--prompt=${PROMPT}`, "--tokens=40", "--json"], dir);
    assert.equal(run.code, 0, run.stderr);
    const want = JSON.parse(run.stdout) as { tokenIds: number[]; promptTokens: number; text: string };
    const got = await transformersGenerate(models, "s3m-q4_0", "q8", want.tokenIds.length - want.promptTokens);
    assert.deepEqual(got.ids, want.tokenIds);
  });

  test("a GGUF preset recipe: Q4_0 blocks become MatMulNBits (q4); Q4_K_M's float minimums are float with a warning, refused in q4", async () => {
    const s3m = dataPath("stories3M", "stories3M.bin");
    const tok = `--tokenizer=${dataPath("stories260K", "tok512.bin")}`;
    writeFileSync(join(dir, "q40.json"), JSON.stringify({ target: { preset: "Q4_0" }, method: "rtn" }));
    writeFileSync(join(dir, "q4km.json"), JSON.stringify({ target: { preset: "Q4_K_M" }, method: "rtn" }));
    const a = await cli(["export", s3m, tok, "--onnx", join(dir, "p-q40"), `--recipe=${join(dir, "q40.json")}`, "--json"], dir);
    assert.equal(a.code, 0, a.stderr);
    const ja = JSON.parse(a.stdout);
    assert.equal(ja.dtype, "q4");
    assert.equal(ja.matMulNBits, 29);
    assert.equal(ja.floatLinears, 0);
    const b = await cli(["export", s3m, tok, "--onnx", join(dir, "p-q4km"), `--recipe=${join(dir, "q4km.json")}`, "--json"], dir);
    assert.equal(b.code, 0, b.stderr);
    const jb = JSON.parse(b.stdout);
    assert.equal(jb.dtype, "fp32");
    assert.ok(jb.floatLinears > 0 && jb.matMulNBits > 0, b.stdout); // Q6_K tensors keep their codes, Q4_K ones are float
    assert.match(jb.notes.join("\n"), /ggml type Q4_K has no integer zero point/);
    assert.match(b.stderr, /^quantlab: warning: \d+ tensors written as exact dequantized float32, not as their codes — ggml type Q4_K/m);
    oneLineError(await cli(["export", s3m, tok, "--onnx", join(dir, "p-bad"), `--recipe=${join(dir, "q4km.json")}`, "--dtype=q4"], dir), /--dtype q4: tensor blk\.0\.attn_q\.weight: ggml type Q4_K has no integer zero point/);
    assert.ok(!existsSync(join(dir, "p-bad")));
  });

  test("fp16 / q8 / q4f16 / asym and explicit specs write the dtype's file", async () => {
    for (const [args, file, mm] of [
      [["--dtype=fp16"], "model_fp16.onnx", 0],
      [["--dtype=q8"], "model_quantized.onnx", 35],
      [["--dtype=q4f16"], "model_q4f16.onnx", 35],
      [["--spec=int4:g64:asym"], "model_q4.onnx", 35],
    ] as [string[], string, number][]) {
      const out = join(dir, `d-${file}`);
      const r = await cli(["export", S260, "--onnx", out, ...args, "--json"], dir);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.file, `onnx/${file}`);
      assert.equal(j.matMulNBits, mm);
      assert.ok(existsSync(join(out, "onnx", file)));
    }
  });

  test("nf4 into fp32: exact dequantized float with a warning on stderr and in notes", async () => {
    const r = await cli(["export", S260, "--onnx", join(dir, "nf4"), "--spec=nf4:g32", "--json"], dir);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.dtype, "fp32");
    assert.equal(j.notes.length, 1);
    assert.match(j.notes[0], /^35 tensors written as exact dequantized float32, not as their codes — nf4:g32: nf4 levels are not integers/);
    assert.match(r.stderr, /^quantlab: warning: 35 tensors written as exact dequantized float32, not as their codes — nf4:g32/m);
  });

  test("bad input: one error line naming it, non-zero exit, no partial directory", async () => {
    const cases: [string[], RegExp][] = [
      [["--dtype=int3"], /--dtype int3: unknown ONNX dtype \(expected fp32, fp16, q8, q4, q4f16, q2, q2f16\)/],
      [["--dtype=q4", "--spec=nf4:g32"], /--dtype q4: spec nf4:g32: nf4 codes have no ONNX equivalent/],
      [["--dtype=q4", "--spec=int8:g32"], /--dtype q4: spec int8:g32 has 8-bit codes, wider than the dtype's 4 \(use --dtype q8\)/],
      [["--dtype=q2", "--spec=int3:g32"], /--dtype q2: spec int3:g32 has 3-bit codes, wider than the dtype's 2 \(use --dtype q4\)/],
      [["--dtype=q4f16", "--spec=int4:g32"], /--dtype q4f16: spec int4:g32 stores f32 scales/],
      [["--spec=int8:channel:a8"], /spec int8:channel:a8 quantizes activations/],
      [["--dtype=q4", "--spec=int4:g32:asymf"], /--dtype q4: tensor blk\.0\.attn_q\.weight: int4:g32:asymf: float zero points \(asymf\) have no ONNX equivalent/],
      [["--spec=int4:g32", "--recipe=r.json"], /either --spec <spec> or --recipe <file>/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(["export", S260, "--onnx", join(dir, "bad"), ...args], dir);
      oneLineError(r, re);
      assert.ok(!existsSync(join(dir, "bad")), `${args.join(" ")}: output left behind`);
    }
    // a non-empty destination is refused, and nothing is merged into it
    mkdirSync(join(dir, "full"));
    writeFileSync(join(dir, "full", "keep.txt"), "x");
    oneLineError(await cli(["export", S260, "--onnx", join(dir, "full")], dir), /directory exists and is not empty/);
    assert.deepEqual(readdirSync(join(dir, "full")), ["keep.txt"]);
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes(".tmp") || f.startsWith(".")), []);
  });
});
