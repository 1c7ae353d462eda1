/**
 * Browser tests' plumbing: Debian's Chromium driven by playwright-core (no browser download), started with
 * the flags that keep it off the network (no background requests, no component updates, no QUIC) and a
 * fresh profile; every console error, page error and request is recorded so tests can assert none went
 * wrong and nothing left 127.0.0.1. `quantlab lab` is started as the real CLI on a free port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { BIN } from "../cli/helpers-cli.js";

export const CHROMIUM = process.env.QUANTLAB_CHROMIUM ?? "/usr/bin/chromium";

export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  /** console messages of type error, uncaught page errors, failed requests */
  errors: string[];
  /** every URL the page (and its workers) requested */
  requests: string[];
  close(): Promise<void>;
}

export async function openBrowser(opts: { downloads?: boolean } = {}): Promise<BrowserSession> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM}: no Chromium; install Debian's (apt-get install -y chromium) or set QUANTLAB_CHROMIUM`);
  const profile = mkdtempSync(join(tmpdir(), "quantlab-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: opts.downloads ?? false,
    viewport: { width: 1280, height: 900 },
    args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const errors: string[] = [];
  const requests: string[] = [];
  context.on("request", (r) => { requests.push(r.url()); });
  context.on("requestfailed", (r) => { errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`); });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => { errors.push(`page error: ${e.message}`); });
  return {
    context, page, errors, requests,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** `quantlab lab --port 0 …` running; resolves with its URL once it listens. */
export async function startLab(args: string[] = []): Promise<{ url: string; proc: ChildProcess; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [BIN, "lab", "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  proc.stderr!.on("data", (d) => { err += d; });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`quantlab lab did not start: ${err}`)), 20000);
    proc.stdout!.on("data", (d) => {
      out += d;
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    });
    proc.once("exit", (code) => { clearTimeout(timer); reject(new Error(`quantlab lab exited (${code}): ${err}`)); });
  });
  return {
    url, proc,
    stop: () => new Promise<void>((resolve) => {
      if (proc.exitCode !== null) return resolve();
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
    }),
  };
}

// The lab page's controls (web/index.html), as the lab tests drive them.

/** Quantizes the loaded model as int4:g32:asym ("spec") or Q4_K_M ("preset"); waits for result row n. */
export async function labQuantize(page: Page, kind: "spec" | "preset", n: number): Promise<void> {
  await page.selectOption("#target-kind", kind);
  if (kind === "spec") await page.fill("#spec", "int4:g32:asym");
  else await page.selectOption("#preset", "Q4_K_M");
  // the button is enabled again only when the previous step has drawn its plots; in one full-suite run (files in
  // parallel on 2 cores) the generate click waited past playwright's default 30 s, so clicks wait as long as the steps
  await page.click("#quantize", { timeout: 60000 });
  await page.waitForFunction((k) => document.querySelectorAll("#results tbody tr").length >= k || !(document.querySelector("#quantize-error") as HTMLElement).hidden, n, { timeout: 60000 });
  const err = await page.locator("#quantize-error").textContent();
  if (!(await page.locator("#quantize-error").isHidden())) throw new Error(`quantize failed in the page: ${err}`);
}

/** Generates next to the result labelled `which` ("" = the float model alone); the float and quantized texts. */
export async function labGenerate(page: Page, which: string): Promise<{ float: string; quant: string }> {
  const before = Number((await page.getAttribute("body", "data-generated")) ?? "0");
  if (which) await page.selectOption("#gen-result", { label: which });
  await page.click("#generate", { timeout: 60000 }); // as #quantize above
  await page.waitForFunction((k) => Number(document.body.dataset.generated ?? "0") > k || !(document.querySelector("#quantize-error") as HTMLElement).hidden, before, { timeout: 60000 });
  if (!(await page.locator("#quantize-error").isHidden())) throw new Error(`generate failed in the page: ${await page.locator("#quantize-error").textContent()}`);
  return { float: (await page.textContent("#gen-float"))!, quant: (await page.textContent("#gen-quant"))! };
}

/** The bytes of result row `row`'s download, saved under `dir`. */
export async function labDownload(page: Page, row: number, dir: string): Promise<Uint8Array> {
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click(`#results tbody tr:nth-child(${row}) a.download`)]);
  const path = join(dir, `dl-${row}-${Date.now()}`);
  await dl.saveAs(path);
  return new Uint8Array(readFileSync(path));
}
