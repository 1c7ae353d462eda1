// The browser lab end to end, in Debian's Chromium, served by `quantlab lab` — cross-origin isolated (2
// kernel threads over SharedArrayBuffer) and not (one thread): stories260K picked through the file input
// (model + tok512.bin), quantized as int4:g32:asym and Q4_K_M by the real library in a Web Worker; the
// results' numbers, plots (16 grid lines for int4 asym, a bar per layer and row, both rows on the
// frontier), greedy text identical to `quantlab run` on the float file and on the CLI's quantized files,
// a GGUF picked as a file and a Hugging Face folder picked with the folder picker run as with the CLI,
// downloads byte-identical to `quantlab quantize`'s files, the ONNX zip holding `quantlab export --onnx`'s files; cancel restarts the worker and the results stay
// usable; no console error and no request beyond 127.0.0.1.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../src/io/node/data.js";
import { labDownload, labGenerate, labQuantize, openBrowser, startLab } from "../helpers/browser.js";
import { quantlab } from "../cli/helpers-cli.js";
import { unzipSync } from "fflate";

const MODEL = dataPath("stories260K", "stories260K.bin");
const TOK = dataPath("stories260K", "tok512.bin");
const EVAL = readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 3000);
const CALIB = readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 20000);
const PROMPT = "Once upon a time";
const STEPS = 120;
const DIR = mkdtempSync(join(tmpdir(), "quantlab-weblab-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

function cli(...args: string[]): string {
  const r = quantlab(...args);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** What the CLI makes of the same choices: files and greedy text. */
const ref = {} as { int4Q8Text: string; kvKld: number; kvText: string; onnx: string; q4: string; int4: string; int4Bpw: number; float: string; q4Text: string; int4Text: string; hf: string; hfText: string };
before(() => {
  ref.q4 = join(DIR, "cli-q4km.gguf");
  ref.int4 = join(DIR, "cli-int4.safetensors");
  cli("quantize", MODEL, "--type", "Q4_K_M", "-o", ref.q4);
  ref.int4Bpw = JSON.parse(cli("quantize", MODEL, "--spec", "int4:g32:asym", "-o", ref.int4, "--json")).bpw;
  const run = (m: string) => JSON.parse(cli("run", m, "--prompt", PROMPT, "--tokens", String(STEPS), "--json")).text as string;
  ref.float = run(MODEL);
  ref.q4Text = run(ref.q4);
  ref.int4Text = run(ref.int4);
  ref.hf = join(DIR, "stories260K-hf");
  cli("convert", MODEL, ref.hf + "/");
  ref.hfText = run(ref.hf);
  ref.int4Q8Text = JSON.parse(cli("run", ref.int4, "--prompt", PROMPT, "--tokens", String(STEPS), "--packed-activations", "q8", "--json")).text;
  const kvFlags = ["--kv", "int2:g32:asym", "--kv-keys", "channel", "--kv-window", "32"];
  const evalFile = join(DIR, "eval.txt");
  writeFileSync(evalFile, EVAL);
  ref.kvKld = JSON.parse(cli("kld", MODEL, ref.int4, "--text", evalFile, "--ctx", "256", "--max-tokens", "1020", ...kvFlags, "--json")).meanKld;
  ref.kvText = JSON.parse(cli("run", ref.int4, "--prompt", PROMPT, "--tokens", String(STEPS), ...kvFlags, "--json")).text;
  ref.onnx = join(DIR, "cli-onnx");
  cli("export", ref.int4, "--onnx", ref.onnx);
});

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;


test("?activations=q8: spec results run on the Q8 integer kernels; greedy text = `quantlab run --packed-activations q8`", async () => {
  const lab = await startLab([]);
  const b = await openBrowser({ downloads: false });
  try {
    const { page } = b;
    await page.goto(lab.url + "?threads=2&activations=q8");
    await page.waitForSelector("body[data-ready]", { timeout: 30000 });
    assert.match((await page.textContent("#status"))!, /2 threads .* · q8 activations for spec weights/);
    await page.setInputFiles("#model-files", [MODEL, TOK]);
    await page.waitForFunction(() => /parameters|Cannot/.test(document.querySelector("#model-info")!.textContent!), null, { timeout: 30000 });
    await labQuantize(page, "spec", 1);
    await page.fill("#prompt", PROMPT);
    await page.fill("#steps", String(STEPS));
    const g = await labGenerate(page, "int4:g32:asym (rtn)");
    assert.equal(g.float, ref.float, "float weights are not touched by the mode");
    assert.equal(g.quant, ref.int4Q8Text);
    await page.goto(lab.url + "?activations=int4");
    await page.waitForSelector("body[data-ready]", { timeout: 30000 });
    assert.match((await page.textContent("#status"))!, /\?activations=int4 is not f32 or q8: f32 activations/);
  } finally {
    await b.close();
    await lab.stop();
  }
});

for (const isolated of [true, false]) {
  describe(isolated ? "cross-origin isolated (COOP/COEP), 2 threads" : "not isolated (--no-isolation), 1 thread", () => {
    test("load, quantize int4:g32:asym and Q4_K_M, plots, generate, download, cancel", async () => {
      const lab = await startLab(isolated ? [] : ["--no-isolation"]);
      const b = await openBrowser({ downloads: true });
      try {
        const { page } = b;
        await page.goto(lab.url + "?threads=2");
        await page.waitForSelector("body[data-ready]", { timeout: 30000 });
        assert.equal(await page.evaluate(() => self.crossOriginIsolated), isolated);
        const status = (await page.textContent("#status"))!;
        assert.match(status, isolated ? /kernels: wasm-\w+-t2, 2 threads \(1 worker running\) · cross-origin isolated/ : /kernels: wasm-\w+, 1 thread · not cross-origin isolated/);

        await page.setInputFiles("#model-files", [MODEL, TOK]);
        await page.waitForFunction(() => /parameters|Cannot/.test(document.querySelector("#model-info")!.textContent!), null, { timeout: 30000 });
        assert.equal(await page.textContent("#model-info"), "stories260K.bin (llama2c): 0.260 M parameters, 5 layers, dim 64, hidden 172, vocabulary 512, context 512.");
        await page.waitForSelector("#plot-outliers svg");
        await page.fill("#eval", EVAL);
        await labQuantize(page, "spec", 1);
        await labQuantize(page, "preset", 2);

        const cells = await page.$$eval("#results tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].slice(0, 8).map((td) => td.textContent)));
        assert.deepEqual(cells.map((c) => c.slice(0, 3)), [["int4:g32:asym", "rtn", ref.int4Bpw.toFixed(3)], ["Q4_K_M", "rtn", "8.220"]]);
        assert.equal(cells[1]![3], `${(readFileSync(ref.q4).length / 1024).toFixed(1)} KiB`);
        for (const c of cells) assert.match(c[4]!, /^0\.\d{5}$/, "a mean KLD was measured on the evaluation text");

        // the plots, drawn by the report's plot code
        const layers = (await page.innerHTML("#plot-layers"));
        assert.equal(count(layers, /aria-roledescription="bar"/g), 2 * 5, "a bar per layer and result");
        const hist = await page.innerHTML("#plot-hist");
        assert.equal(count(hist, /aria-roledescription="rule mark"/g), 16, "int4 asym: 16 grid levels");
        const frontier = await page.innerHTML("#plot-frontier");
        for (const l of ["int4:g32:asym", "Q4_K_M"]) assert.ok(frontier.includes(`>${l}</text>`), `${l} on the frontier`);

        // greedy text: the float model and the quantized files, as `quantlab run` prints them
        await page.fill("#prompt", PROMPT);
        await page.fill("#steps", String(STEPS));
        const g1 = await labGenerate(page, "Q4_K_M (rtn)");
        assert.equal(g1.float, ref.float);
        assert.equal(g1.quant, ref.q4Text);
        assert.notEqual(ref.q4Text, ref.float, "the quantized model's text differs, so the comparison means something");
        const g2 = await labGenerate(page, "int4:g32:asym (rtn)");
        assert.equal(g2.quant, ref.int4Text);

        // downloads: the CLI's bytes
        assert.deepEqual(await labDownload(page, 2, DIR), new Uint8Array(readFileSync(ref.q4)), "Q4_K_M GGUF differs from quantlab quantize --type Q4_K_M");
        assert.deepEqual(await labDownload(page, 1, DIR), new Uint8Array(readFileSync(ref.int4)), "int4 safetensors differs from quantlab quantize --spec int4:g32:asym");
        // the ONNX export of a result: the zip holds exactly the directory `quantlab export <file> --onnx` writes
        await page.click("#results tbody tr:nth-child(1) button.onnx");
        await page.waitForSelector("#results tbody tr:nth-child(1) a.download-onnx", { timeout: 60000 });
        assert.equal(await page.textContent("#results tbody tr:nth-child(1) a.download-onnx"), "stories260K-int4_g32_asym-onnx.zip (q4)");
        const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#results tbody tr:nth-child(1) a.download-onnx")]);
        const zipPath = join(DIR, `onnx-${Date.now()}.zip`);
        await dl.saveAs(zipPath);
        const entries = unzipSync(new Uint8Array(readFileSync(zipPath)));
        const want = ["config.json", "generation_config.json", "onnx/model_q4.onnx", "tokenizer.json", "tokenizer_config.json"];
        assert.deepEqual(Object.keys(entries).sort(), want.map((f) => `stories260K-int4_g32_asym-onnx/${f}`));
        for (const f of want) assert.deepEqual(entries[`stories260K-int4_g32_asym-onnx/${f}`], new Uint8Array(readFileSync(join(ref.onnx, f))), `${f} differs from quantlab export --onnx`);

        // cancel a long quantization (GPTQ on a calibration text): the worker restarts, the results stay usable
        await page.selectOption("#target-kind", "spec");
        await page.selectOption("#method", "gptq");
        await page.fill("#calib", CALIB);
        await page.click("#quantize");
        await page.waitForFunction(() => /\d+\/\d+/.test(document.querySelector("#progress-label")!.textContent!), null, { timeout: 30000 });
        await page.click("#cancel");
        await page.waitForFunction(() => document.querySelector("#progress-label")!.textContent === "cancelled", null, { timeout: 30000 });
        assert.equal(await page.locator("#results tbody tr").count(), 2);
        assert.equal(await page.isEnabled("#quantize"), true);
        const g3 = await labGenerate(page, "Q4_K_M (rtn)");
        assert.equal(g3.quant, ref.q4Text, "a result reloaded from its Blob after the restart");
        assert.equal(await page.locator("#quantize-error").isHidden(), true, "a cancel is not an error");

        // a quantized KV cache with KIVI's options, as `--kv int2:g32:asym --kv-keys channel --kv-window 32`: the row's
        // KLD and the generated text are the CLI's
        await page.selectOption("#method", "rtn");
        await page.fill("#calib", "");
        await page.fill("#kv", "int2:g32:asym");
        await page.selectOption("#kv-keys", "channel");
        await page.fill("#kv-window", "32");
        await labQuantize(page, "spec", 3);
        const kvCells = await page.$$eval("#results tbody tr:nth-child(3) td", (tds) => tds.map((td) => td.textContent));
        assert.equal(kvCells[0], "int4:g32:asym + KV int2:g32:asym (channel keys) (window 32)");
        assert.equal(kvCells[4], ref.kvKld.toFixed(5), "the lab's KLD with the quantized cache = quantlab kld --kv …");
        const g4 = await labGenerate(page, "int4:g32:asym + KV int2:g32:asym (channel keys) (window 32) (rtn)");
        assert.equal(g4.quant, ref.kvText);
        assert.notEqual(ref.kvText, ref.int4Text, "the 2-bit cache changes the text, so the comparison means something");
        await page.fill("#kv", "");
        await page.click("#quantize");
        await page.waitForFunction(() => !(document.querySelector("#quantize-error") as HTMLElement).hidden, null, { timeout: 10000 });
        assert.match((await page.textContent("#quantize-error"))!, /KV-cache keys \/ window are set but no KV-cache spec/);
        await page.selectOption("#kv-keys", "token");
        await page.fill("#kv-window", "0");

        if (!isolated) {
          // the other ways in: a GGUF through the file input, a Hugging Face folder through the folder picker
          await page.setInputFiles("#model-files", [ref.q4]);
          await page.waitForFunction(() => /\(gguf\)/.test(document.querySelector("#model-info")!.textContent!), null, { timeout: 30000 });
          assert.equal(await page.locator("#results tbody tr").count(), 0, "a new model starts with no results");
          assert.equal((await labGenerate(page, "")).float, ref.q4Text);
          await page.setInputFiles("#model-dir", ref.hf);
          await page.waitForFunction(() => /\(hf\)/.test(document.querySelector("#model-info")!.textContent!), null, { timeout: 30000 });
          assert.match((await page.textContent("#model-info"))!, /^stories260K-hf \(hf\): 0\.260 M parameters/);
          assert.equal((await labGenerate(page, "")).float, ref.hfText);
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
}
