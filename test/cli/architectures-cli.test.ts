// Every command on every architecture (issue: "every command … must work on every architecture below, from a Hugging
// Face directory and from a GGUF"): a tiny model of each (test/helpers/tiny-arch-cases.ts) saved as an HF directory,
// converted to GGUF by the CLI, then info, eval, kld, quantize (spec RTN, --method gptq, --method awq, --type Q4_K_M
// with an imatrix from text), compare, inspect (with activations), bench, qat, run and export --onnx, through the CLI's
// main() in this process. Asserted: each exits 0, the HF directory and its GGUF give the same perplexity, every
// quantized file loads back with its architecture and measures a positive finite KLD, GPTQ does not lose to RTN, QAT's
// file evaluates, and what each command reports names the architecture.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { dataPath } from "../../src/io/node/data.js";
import { TINY_ARCH_CASES, tinyArchModel } from "../helpers/tiny-arch-cases.js";
import { cli } from "./helpers-cli.js";

const DIR = mkdtempSync(join(tmpdir(), "ql-arch-cli-"));
after(() => rmSync(DIR, { recursive: true, force: true }));
const TEXT = join(DIR, "text.txt");
before(() => writeFileSync(TEXT, readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 1500)));

async function ok(...args: string[]): Promise<string> {
  const r = await cli(args, ""); // every path here is absolute: no argument is joined to a directory
  assert.equal(r.code, 0, `quantlab ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
const json = async (...args: string[]) => JSON.parse(await ok(...args, "--json"));
const EVAL = ["--text", TEXT, "--ctx", "32", "--max-tokens", "124"];
const CALIB = ["--calib", TEXT, "--samples", "4", "--seq", "32"];

describe("every command on every architecture (tiny HF directory and its GGUF)", () => {
  for (const [i, cfg] of TINY_ARCH_CASES.entries()) {
    test(`${cfg.arch} (${cfg.name})`, async () => {
      const hf = join(DIR, cfg.name!);
      await saveHfDir(tinyArchModel(cfg, i), hf);
      const gguf = join(DIR, `${cfg.name}.gguf`);
      const infoHf = await json("info", hf);
      assert.equal(infoHf.config?.arch ?? infoHf.arch, cfg.arch, "info names the architecture");
      await json("convert", hf, gguf);
      assert.equal((await json("info", gguf)).config?.arch ?? (await json("info", gguf)).arch, cfg.arch);

      const pHf = (await json("eval", hf, ...EVAL)).ppl as number, pGguf = (await json("eval", gguf, ...EVAL)).ppl as number;
      assert.ok(Number.isFinite(pHf) && pHf > 1, `eval ppl ${pHf}`);
      assert.ok(Math.abs(pHf - pGguf) <= 1e-4 * pHf, `HF ppl ${pHf} = GGUF ppl ${pGguf}`);

      const out = (n: string) => join(DIR, `${cfg.name}-${n}`);
      await ok("quantize", hf, "--spec", "int4:g32:asym", "-o", out("rtn.safetensors"));
      await ok("quantize", hf, "--spec", "int4:g32:asym", "--method", "gptq", ...CALIB, "-o", out("gptq.safetensors"));
      await ok("quantize", hf, "--spec", "int4:g32:asym", "--method", "awq", ...CALIB, "-o", out("awq.safetensors"));
      await ok("quantize", gguf, "--type", "Q4_K_M", "--imatrix", TEXT, "--imatrix-ctx", "32", "-o", out("q4km.gguf"));
      const klds: Record<string, number> = {};
      for (const f of ["rtn.safetensors", "gptq.safetensors", "awq.safetensors", "q4km.gguf"]) {
        assert.equal((await json("info", out(f))).config?.arch ?? (await json("info", out(f))).arch, cfg.arch, `${f} keeps the architecture`);
        const k = (await json("kld", hf, out(f), ...EVAL)).meanKld as number;
        assert.ok(Number.isFinite(k) && k > 0, `${f}: KLD ${k}`);
        klds[f] = k;
      }
      assert.ok(klds["gptq.safetensors"]! <= klds["rtn.safetensors"]! * 1.05, `GPTQ ${klds["gptq.safetensors"]} vs RTN ${klds["rtn.safetensors"]}`);

      const cmp = await json("compare", gguf, "--specs", "int8,int4:g32:asym", ...EVAL);
      assert.equal(cmp.rows.length, 2);
      for (const r of cmp.rows) assert.ok(Number.isFinite(r.ppl) && r.ppl > 1, `compare ${r.spec}: ppl ${r.ppl}`);
      const ins = await json("inspect", hf, "--calib", TEXT, "--calib-tokens", "64", "--ctx", "32");
      assert.ok(ins.tensors.length >= 7 * cfg.nLayers, `inspect lists the tensors (${ins.tensors.length})`);
      const b = await json("bench", out("q4km.gguf"), "--prompt-tokens", "8", "--gen-tokens", "4", "--reps", "1");
      assert.ok(JSON.stringify(b).length > 2);
      await ok("qat", hf, "--spec", "int2:g32:asym", "--text", TEXT, "--steps", "2", "--batch", "2", "--seq", "16", "-o", out("qat.safetensors"));
      assert.ok(Number.isFinite((await json("eval", out("qat.safetensors"), ...EVAL)).ppl), "QAT's file evaluates");
      const text = (await json("run", out("q4km.gguf"), "--prompt", "The theater", "--tokens", "16")).text as string;
      assert.ok(text.startsWith("The theater"));
      await ok("export", out("rtn.safetensors"), "--onnx", out("onnx"));
      assert.equal(JSON.parse(readFileSync(join(out("onnx"), "config.json"), "utf8")).model_type.startsWith(cfg.arch === "gemma3" ? "gemma3" : cfg.arch === "llama" && cfg.slidingWindow ? "mistral" : cfg.arch), true);
    });
  }
});
