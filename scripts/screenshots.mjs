// Regenerates docs/lab.png and docs/report.png: the lab served by `quantlab lab`, driven in Debian's Chromium
// (stories260K picked, three results quantized with an evaluation text, greedy text generated), and the
// page of `quantlab report` on stories260K. Needs `npm run build` and Chromium (QUANTLAB_CHROMIUM).
// Usage: node scripts/screenshots.mjs
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const data = process.env.QUANTLAB_DATA ?? "../shared/data";
const model = join(data, "stories260K", "stories260K.bin");
const tok = join(data, "stories260K", "tok512.bin");
const evalText = join(data, "tinystories", "eval.txt");
const tmp = mkdtempSync(join(tmpdir(), "quantlab-shots-"));

const browser = await chromium.launchPersistentContext(join(tmp, "profile"), {
  executablePath: process.env.QUANTLAB_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = browser.pages()[0] ?? (await browser.newPage());
page.on("console", (m) => { if (m.type() === "error") console.error("page:", m.text()); });

// the lab
const lab = spawn(process.execPath, ["bin/quantlab.js", "lab", "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve) => lab.stdout.on("data", (d) => { const m = /(http:\/\/\S+\/)/.exec(String(d)); if (m) resolve(m[1]); }));
try {
  await page.goto(url);
  await page.waitForSelector("body[data-ready]");
  await page.setInputFiles("#model-files", [model, tok]);
  await page.waitForFunction(() => /parameters/.test(document.querySelector("#model-info").textContent));
  await page.fill("#eval", readFileSync(evalText, "utf8").slice(0, 6000));
  for (const [kind, value] of [["spec", "int4:g32:asym"], ["spec", "nf4:g64"], ["preset", "Q4_K_M"]]) {
    const n = await page.locator("#results tbody tr").count();
    await page.selectOption("#target-kind", kind);
    if (kind === "spec") await page.fill("#spec", value);
    else await page.selectOption("#preset", value);
    await page.click("#quantize");
    await page.waitForFunction((k) => document.querySelectorAll("#results tbody tr").length > k, n);
  }
  await page.fill("#steps", "160");
  await page.click("#generate");
  await page.waitForSelector("body[data-generated]");
  await page.screenshot({ path: "docs/lab.png", fullPage: true });
  console.log("docs/lab.png");
} finally {
  lab.kill("SIGTERM");
}

// the report
const out = join(tmp, "report.html");
const specs = "int8:channel,fp8_e4m3:channel,int4:g32:asym,int4:g32,nf4:g64,mxfp4,nvfp4,int3:g32:asym,Q4_K_M,Q8_0";
const r = spawnSync(process.execPath, ["bin/quantlab.js", "report", model, "--specs", specs, "--kv-specs", "int8,int4:g4:asym", "--text", evalText, "-o", out], { stdio: "inherit" });
if (r.status !== 0) process.exit(1);
await page.goto(pathToFileURL(out).href);
await page.screenshot({ path: "docs/report.png", fullPage: true });
console.log("docs/report.png");
await browser.close();
rmSync(tmp, { recursive: true, force: true });
