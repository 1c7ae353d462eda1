// Every architecture in the browser lab (Debian's Chromium, `quantlab lab`, not isolated: one kernel thread): a
// tiny Hugging Face folder of each (Llama with a sliding window, Qwen2, Qwen3, Granite, Phi-3 with partial rotary
// and LongRoPE, Gemma 2, Gemma 3, OLMo 2) picked through the folder picker, quantized in the page's worker as
// int4:g32:asym and Q4_K_M. The page's greedy text — the float model and both results — equals `quantlab run`'s on the
// folder and on the CLI's files, and both downloads are byte for byte `quantlab quantize`'s files.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveHfDir } from "../../src/io/node/hf-file.js";
import { TINY_ARCH_CASES as CASES, tinyArchModel } from "../helpers/tiny-arch-cases.js";
import { labDownload, labGenerate, labQuantize, openBrowser, startLab } from "../helpers/browser.js";
import { quantlab } from "../cli/helpers-cli.js";

const PROMPT = "The theater was in the west";
const STEPS = 24;
const EVAL = "The theater was in the west, then the rooms were there as the wind was in the trees. ".repeat(4);
const DIR = mkdtempSync(join(tmpdir(), "quantlab-weblab-arch-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

function cli(...args: string[]): string {
  const r = quantlab(...args);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}
const run = (m: string) => JSON.parse(cli("run", m, "--prompt", PROMPT, "--tokens", String(STEPS), "--temperature", "0", "--json")).text as string;

interface Ref { dir: string; float: string; int4: string; int4Text: string; q4: string; q4Text: string }
const refs = new Map<string, Ref>();
before(async () => {
  for (const [i, cfg] of CASES.entries()) {
    const dir = join(DIR, `${cfg.name}`);
    await saveHfDir(tinyArchModel(cfg, i), dir);
    const int4 = join(DIR, `${cfg.name}-int4.safetensors`), q4 = join(DIR, `${cfg.name}-q4km.gguf`);
    cli("quantize", dir, "--spec", "int4:g32:asym", "-o", int4);
    cli("quantize", dir, "--type", "Q4_K_M", "-o", q4);
    refs.set(cfg.name!, { dir, float: run(dir), int4, int4Text: run(int4), q4, q4Text: run(q4) });
  }
  // the comparisons mean something: every model writes its own text, and quantization changes some of it
  const floats = [...refs.values()].map((r) => r.float);
  assert.equal(new Set(floats).size, CASES.length, `each architecture's greedy text differs: ${JSON.stringify(floats)}`);
  for (const r of refs.values()) assert.ok(r.float.length > PROMPT.length, `${r.dir}: generated text`);
  assert.ok([...refs.values()].some((r) => r.int4Text !== r.float || r.q4Text !== r.float), "a quantized model's text differs from its float model's");
});


describe("the browser lab on every architecture (HF folders picked in the page)", () => {
  test("load, quantize int4:g32:asym and Q4_K_M, generate, download: the CLI's text and bytes", async () => {
    const lab = await startLab(["--no-isolation"]);
    const b = await openBrowser({ downloads: true });
    try {
      const { page } = b;
      await page.goto(lab.url);
      await page.waitForSelector("body[data-ready]", { timeout: 30000 });
      for (const cfg of CASES) {
        const ref = refs.get(cfg.name!)!;
        const info = (async () => (await page.textContent("#model-info"))!);
        await page.setInputFiles("#model-dir", ref.dir);
        await page.waitForFunction((n) => document.querySelector("#model-info")!.textContent!.startsWith(`${n} (hf)`) || /Cannot/.test(document.querySelector("#model-info")!.textContent!), cfg.name!, { timeout: 30000 });
        assert.match(await info(), new RegExp(`^${cfg.name} \\(hf\\): .* ${cfg.nLayers} layers, dim ${cfg.dim}`), `${cfg.arch}: model info`);
        assert.equal(await page.locator("#results tbody tr").count(), 0, "a new model starts with no results");
        await page.fill("#eval", EVAL);
        await labQuantize(page, "spec", 1);
        await labQuantize(page, "preset", 2);
        await page.fill("#prompt", PROMPT);
        await page.fill("#steps", String(STEPS));
        const g1 = await labGenerate(page, "int4:g32:asym (rtn)");
        assert.equal(g1.float, ref.float, `${cfg.arch}: the float model's greedy text`);
        assert.equal(g1.quant, ref.int4Text, `${cfg.arch}: int4:g32:asym's greedy text`);
        const g2 = await labGenerate(page, "Q4_K_M (rtn)");
        assert.equal(g2.quant, ref.q4Text, `${cfg.arch}: Q4_K_M's greedy text`);
        assert.deepEqual(await labDownload(page, 1, DIR), new Uint8Array(readFileSync(ref.int4)), `${cfg.arch}: int4 safetensors differs from quantlab quantize`);
        assert.deepEqual(await labDownload(page, 2, DIR), new Uint8Array(readFileSync(ref.q4)), `${cfg.arch}: Q4_K_M GGUF differs from quantlab quantize`);
      }
      assert.deepEqual(b.errors, []);
      const outside = b.requests.filter((u) => !u.startsWith(lab.url) && !u.startsWith("blob:") && !u.startsWith("data:"));
      assert.deepEqual(outside, [], "requests beyond the lab's server");
    } finally {
      await b.close();
      await lab.stop();
    }
  });
});
