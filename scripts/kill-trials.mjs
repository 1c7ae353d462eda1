// kill -9 at random moments (docs/robustness.md): for each command, N trials of
//   run it, SIGKILL it after a random delay (alternately: uniform over an uninterrupted run's length,
//   or uniform over the window in which that run's temp output existed),
//   check the output path: absent, or complete (byte-identical to an uninterrupted run) — never partial,
//   then run it again to completion: the output must be complete and no temp file may remain.
// Usage: node scripts/kill-trials.mjs [--trials 50] [--only <substring>] [--in-write]   (after npm run build)
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";

const args = process.argv.slice(2);
const trials = Number(args[args.indexOf("--trials") + 1] ?? 50) || 50;
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
/** every trial inside the write window (commands whose write is a few ms of a longer run) */
const inWrite = args.includes("--in-write");
const D = process.env.QUANTLAB_DATA ?? new URL("../../shared/data", import.meta.url).pathname;
const S260 = join(D, "stories260K", "stories260K.bin");
const S3M = join(D, "stories3M", "stories3M.bin");
const TOK = join(D, "stories260K", "tok512.bin");
const TEXT = join(D, "tinystories", "eval.txt");
const BIN = new URL("../bin/quantlab.js", import.meta.url).pathname;

/** [label, args (out = the output path), output name] */
const COMMANDS = [
  ["convert llama2.c → GGUF", (o) => ["convert", S260, o], "o.gguf"],
  ["convert → GGUF Q4_K (ref encoder)", (o) => ["convert", S3M, o, "--tokenizer", TOK, "--type", "Q4_K", "--backend", "ref"], "o.gguf"],
  ["convert → safetensors F16", (o) => ["convert", S260, o, "--type", "F16"], "o.safetensors"],
  ["convert → HF directory", (o) => ["convert", S260, `${o}/`], "hf"],
  ["quantize --spec int4:g32:asym", (o) => ["quantize", S260, "--spec", "int4:g32:asym", "-o", o], "q.safetensors"],
  ["quantize --type Q4_K_M", (o) => ["quantize", S3M, "--tokenizer", TOK, "--type", "Q4_K_M", "-o", o], "q.gguf"],
  ["eval --save-logits", (o) => ["eval", S260, "--text", TEXT, "--ctx", "256", "--max-tokens", "6000", "--save-logits", o], "l.qlgt"],
];

function snapshot(p) {
  if (!existsSync(p)) return undefined;
  if (statSync(p).isDirectory()) return Object.fromEntries(readdirSync(p).sort().map((f) => [f, readFileSync(join(p, f)).toString("base64")]));
  return readFileSync(p).toString("base64");
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const temps = (dir) => readdirSync(dir).filter((f) => f.includes(".tmp-"));

const results = [];
for (const [label, mk, name] of COMMANDS) {
  if (only && !label.includes(only)) continue;
  const dir = mkdtempSync(join(tmpdir(), "ql-kill-"));
  const out = join(dir, name);
  // an uninterrupted run, watched: its length, and when its temp output existed (the write window)
  const t0 = Date.now();
  const refRun = spawn(process.execPath, [BIN, ...mk(out)], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  refRun.stderr.on("data", (d) => (stderr += d));
  let writeFrom = -1, writeTo = -1, running = true;
  const refExit = new Promise((res) => refRun.on("exit", (code) => { running = false; res(code); }));
  while (running) {
    if (temps(dir).length > 0) { if (writeFrom < 0) writeFrom = Date.now() - t0; writeTo = Date.now() - t0; }
    await new Promise((res) => setTimeout(res, 2));
  }
  const code = await refExit;
  const runMs = Date.now() - t0;
  if (code !== 0) throw new Error(`${label}: ${stderr}`);
  const want = snapshot(out);
  rmSync(out, { recursive: true, force: true });
  const r = { command: label, trials, runMs, writeWindowMs: writeFrom < 0 ? null : [writeFrom, writeTo], killedMidRun: 0, tempsLeftByKill: 0, partial: 0, completeBeforeKill: 0, staleAfterRerun: 0, rerunWrong: 0 };
  for (let i = 0; i < trials; i++) {
    const p = spawn(process.execPath, [BIN, ...mk(out)], { stdio: "ignore" });
    const exited = new Promise((res) => p.on("exit", (code, sig) => res({ code, sig })));
    // half the trials anywhere in the run, half inside the write window (where a kill could leave a partial file)
    const at = (i % 2 === 0 && !inWrite) || writeFrom < 0 ? Math.random() * runMs : writeFrom + Math.random() * Math.max(1, writeTo - writeFrom);
    await new Promise((res) => setTimeout(res, at));
    p.kill("SIGKILL");
    const e = await exited;
    if (e.sig === "SIGKILL") r.killedMidRun++;
    if (temps(dir).length > 0) r.tempsLeftByKill++;
    const got = snapshot(out);
    if (got !== undefined) {
      if (same(got, want)) r.completeBeforeKill++;
      else r.partial++;
    }
    rmSync(out, { recursive: true, force: true });
    const again = spawnSync(process.execPath, [BIN, ...mk(out)], { encoding: "utf8" });
    if (again.status !== 0 || !same(snapshot(out), want)) r.rerunWrong++;
    if (temps(dir).length > 0) r.staleAfterRerun++;
    rmSync(out, { recursive: true, force: true });
  }
  rmSync(dir, { recursive: true, force: true });
  results.push(r);
  console.log(JSON.stringify(r));
}
