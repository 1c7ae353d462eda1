/**
 * NaN weights through every write path (issue 14): `quantize --type/--spec`, `convert` to GGUF (model
 * writer and GGUF → GGUF, copy and re-encode), safetensors, HF directories — each refuses, naming the
 * tensor and the first bad element, and leaves nothing; `--allow-nonfinite` writes anyway; then `eval`,
 * `kld` and `run` on such a model stop at the first non-finite output, naming the position. Also: a
 * finite weight that F16 cannot hold is refused rather than written as Inf.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../../src/io/node/data.js";
import { GgufWriter, MemorySink, openGguf } from "../../../src/io/gguf.js";
import { BufferSource } from "../../../src/io/source.js";
import { loadModel } from "../../../src/io/node/load.js";
import { quantize } from "../../../src/algos/quantize.js";
import { RefBackend } from "../../../src/kernels/ref/backend.js";
import { QuantlabError } from "../../../src/core/errors.js";
import { cli, type Run } from "../helpers-cli.js";

const G260 = dataPath("ggml", "stories260K", "stories260K-F32.gguf");
const G260_F16 = dataPath("ggml", "stories260K", "stories260K-F16.gguf");
const TEXT = dataPath("tinystories", "eval.txt");
/** blk.1.ffn_up.weight is (172, 64): element 1234 is row 19, column 18 */
const TENSOR = "blk.1.ffn_up.weight";
const INDEX = 1234;

/** llama.cpp's stories260K GGUF with one f32 of one tensor replaced (bytes patched, independent of our writer). */
async function patchedGguf(value: number, file = G260): Promise<Uint8Array> {
  const f = await openGguf(new BufferSource("in.gguf", new Uint8Array(readFileSync(file))));
  const sink = new MemorySink();
  const w = new GgufWriter(sink);
  for (const [k, v] of f.metadata) w.setKV(k, v);
  for (const t of f.tensors) w.addTensor(t);
  await w.writeHeader();
  for (const t of f.tensors) {
    const b = (await f.readTensorBytes(t)).slice();
    if (t.name === TENSOR && file === G260) new DataView(b.buffer).setFloat32(4 * INDEX, value, true);
    // binary16 bits of ±Inf / NaN (the F16 file's weights are halves)
    if (t.name === TENSOR && file !== G260) new DataView(b.buffer).setUint16(2 * INDEX, Number.isNaN(value) ? 0x7e00 : value > 0 ? 0x7c00 : 0xfc00, true);
    await w.writeTensorData(t.name, b);
  }
  w.finish();
  return sink.bytes();
}

function oneLine(r: Run, re: RegExp, what: string): void {
  assert.notEqual(r.code, 0, `${what}: exit 0`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
  assert.match(lines[0]!, re, what);
}

describe("non-finite weights and outputs", () => {
  let dir: string;
  let nan: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ql-nan-"));
    nan = join(dir, "nan.gguf");
    writeFileSync(nan, await patchedGguf(NaN));
    writeFileSync(join(dir, "big.gguf"), await patchedGguf(1e6));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const where = `tensor "${TENSOR}" element ${INDEX} \\(row 19, column 18\\) is NaN`;

  test("every write path refuses, naming the tensor and the element; nothing is left", async () => {
    const out = join(dir, "out");
    mkdirSync(out);
    const cases: [string[], RegExp][] = [
      [["quantize", nan, "--type", "Q8_0", "-o", join(out, "q.gguf")], new RegExp(`nan\\.gguf: ${where}; refusing to quantize the model`)],
      [["quantize", nan, "--type", "Q4_K_M", "--pure", "-o", join(out, "q.gguf")], new RegExp(`nan\\.gguf: ${where}; refusing to quantize`)],
      [["quantize", nan, "--spec", "int4:g32:asym", "-o", join(out, "q.safetensors")], new RegExp(`nan\\.gguf: ${where}; refusing to quantize`)],
      [["convert", nan, join(out, "c.gguf")], new RegExp(`nan\\.gguf: ${where}; refusing to write .*c\\.gguf`)],
      [["convert", nan, join(out, "c.gguf"), "--type", "Q8_0"], new RegExp(`nan\\.gguf: ${where}; refusing to write`)],
      [["convert", nan, join(out, "c.gguf"), "--type", "F16"], new RegExp(`nan\\.gguf: ${where}; refusing to write`)],
      [["convert", nan, join(out, "c.safetensors"), "--type", "F16"], new RegExp(`nan\\.gguf: ${where}; refusing to write .*c\\.safetensors`)],
      [["convert", nan, join(out, "c.safetensors")], new RegExp(`nan\\.gguf: ${where}; refusing to write`)],
      [["convert", nan, join(out, "hf/")], new RegExp(`nan\\.gguf: ${where}; refusing to write`)],
    ];
    for (const [args, re] of cases) {
      const r = await cli(args, "");
      oneLine(r, re, args.join(" "));
      assert.match(r.stderr, /--allow-nonfinite/);
      assert.deepEqual(readdirSync(out), [], `${args.join(" ")} left ${readdirSync(out).join(", ")}`);
    }
  });

  test("an F16 model (read chunk by chunk into the encoder, checked there): quantize --type refuses NaN and -Inf at 1 and 2 threads, and the library too", async () => {
    const out = join(dir, "out16");
    mkdirSync(out);
    for (const [value, shown] of [[NaN, "NaN"], [-Infinity, "-Infinity"]] as const) {
      const file = join(dir, "bad16.gguf");
      writeFileSync(file, await patchedGguf(value, G260_F16));
      const re = new RegExp(`bad16\\.gguf: tensor "${TENSOR}" element ${INDEX} \\(row 19, column 18\\) is ${shown}; refusing to quantize the model`);
      for (const args of [["--type", "Q8_0", "--threads", "1"], ["--type", "Q4_K_M", "--threads", "2"], ["--type", "Q4_0", "--backend", "ref"]]) {
        const r = await cli(["quantize", file, ...args, "-o", join(out, "q.gguf")], "");
        oneLine(r, re, args.join(" "));
        assert.deepEqual(readdirSync(out), [], `${args.join(" ")} left ${readdirSync(out).join(", ")}`);
      }
      const m = await loadModel(file);
      await assert.rejects(() => quantize(m, { target: { preset: "Q6_K" } }, { backend: new RefBackend() }), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE" && re.test(e.message));
      await m.close?.();
    }
    // allowed, it encodes (the reference codec takes the rows holding the NaN)
    const r = await cli(["quantize", join(dir, "bad16.gguf"), "--type", "Q8_0", "--allow-nonfinite", "-o", join(out, "q.gguf")], "");
    assert.equal(r.code, 0, r.stderr);
  });

  test("a finite value F16 cannot hold (1e6 > 65504) is refused, not written as Inf", async () => {
    for (const outName of ["f.gguf", "f.safetensors"]) {
      const r = await cli(["convert", join(dir, "big.gguf"), join(dir, outName), "--type", "F16"], "");
      oneLine(r, new RegExp(`big\\.gguf: tensor "${TENSOR}" element ${INDEX} \\(row 19, column 18\\) is 1000000, which F16 cannot hold: it would be written as Infinity`), outName);
      assert.ok(!readdirSync(dir).includes(outName));
    }
  });

  test("--allow-nonfinite writes; eval, kld and run on the result stop at the first non-finite output", async () => {
    const q = join(dir, "allowed.gguf");
    let r = await cli(["quantize", nan, "--type", "Q8_0", "--allow-nonfinite", "-o", q], "");
    assert.equal(r.code, 0, r.stderr);
    r = await cli(["convert", nan, join(dir, "allowed.safetensors"), "--type", "F16", "--allow-nonfinite"], "");
    assert.equal(r.code, 0, r.stderr);
    // layer 1's FFN output is NaN at every position, so the first scored position already fails
    r = await cli(["eval", q, "--text", TEXT, "--ctx", "64", "--max-tokens", "200"], "");
    oneLine(r, /allowed\.gguf: non-finite output at window 0, position 0 \(scored token 0 of the text\): logit of token 0 is NaN/, "eval");
    r = await cli(["kld", G260, join(dir, "allowed.safetensors"), "--text", TEXT, "--ctx", "64", "--max-tokens", "200"], "");
    oneLine(r, /allowed\.safetensors: non-finite output at window 0, position 0/, "kld");
    r = await cli(["run", q, "--prompt", "Once", "--tokens", "8"], "");
    oneLine(r, /allowed\.gguf: non-finite output at position \d+: logit of token 0 is NaN/, "run");
  });

  test("library: quantize() refuses unless allowNonFinite, and the option does not enter the recipe", async () => {
    const m = await loadModel(nan);
    const recipe = { target: { preset: "Q8_0" } };
    await assert.rejects(() => quantize(m, recipe, { backend: new RefBackend() }), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE" && new RegExp(where).test(e.message));
    const r = await quantize(m, recipe, { backend: new RefBackend(), allowNonFinite: true });
    const clean = await quantize(await loadModel(G260), recipe, { backend: new RefBackend() });
    assert.equal(r.recipeJson, clean.recipeJson);
    await m.close?.();
  });
});
