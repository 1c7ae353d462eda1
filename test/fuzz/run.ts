/**
 * `npm run fuzz -- [--cases N] [--format gguf|safetensors|llama2c|tokenizer|hf]… [--seed S] [--record]`:
 * the long-running fuzzing mode. Each format runs in its own child process (a crash or a hang is
 * recorded, not fatal); a parent watchdog kills a child that makes no progress for 60 s. Per case:
 * outcome (test/fuzz/harness.ts), wall time against the 2 s bound, and the process's peak resident
 * memory against 512 MB above the baseline plus the file's own size. `--record` writes the summary
 * into docs/fuzz-results.md; `--record-from <file>` records the JSON lines of earlier runs instead.
 */
import { spawn } from "node:child_process";
import { readFileSync, renameSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { FORMATS, buildCorpus, runCase, type FuzzFormat, type Outcome } from "./harness.js";
import { mutationArb } from "./mutate.js";

interface Summary {
  format: FuzzFormat;
  cases: number;
  seed: number;
  counts: Record<Outcome | "overMemory", number>;
  maxMs: number;
  /** peak resident memory above the baseline, bytes */
  maxRssAboveBaseline: number;
  seconds: number;
  examples: { outcome: string; target: string; message?: string; mutation: string }[];
  aborted?: string;
}

const args = process.argv.slice(2);
const opt = (k: string, d?: string): string | undefined => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1] : d;
};
const cases = Number(opt("cases", "1000"));
const seed = Number(opt("seed", "1"));
const slowMs = Number(opt("slow-ms", "2000"));
const formats = args.flatMap((a, i) => (a === "--format" ? [args[i + 1] as FuzzFormat] : []));
const MEMORY_BOUND = 512 << 20;

async function child(format: FuzzFormat, progressFile: string): Promise<void> {
  const work = join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), `ql-fuzz-${process.pid}`);
  const corpus = await buildCorpus(work);
  const bases = corpus[format];
  const caseDir = join(work, "case");
  const counts: Summary["counts"] = { loads: 0, typed: 0, untyped: 0, wrapped: 0, slow: 0, overMemory: 0 };
  const examples: Summary["examples"] = [];
  let maxMs = 0;
  let baseline = 0;
  let maxAbove = 0;
  const t0 = Date.now();
  const largest = Math.max(...bases.flatMap((b) => [...b.files.values()].map((f) => f.length)));
  const batch = 500;
  for (let done = 0; done < cases;) {
    const muts = fc.sample(mutationArb, { numRuns: Math.min(batch, cases - done), seed: seed * 1_000_003 + done });
    for (const m of muts) {
      const base = bases[done % bases.length]!;
      const r = await runCase(base, m, caseDir, slowMs);
      counts[r.outcome]++;
      maxMs = Math.max(maxMs, r.ms);
      const rss = process.resourceUsage().maxRSS * 1024;
      if (done === 50) baseline = rss;
      if (baseline > 0) {
        const above = rss - baseline;
        if (above > maxAbove) {
          if (above > MEMORY_BOUND + largest && maxAbove <= MEMORY_BOUND + largest) {
            counts.overMemory++;
            examples.push({ outcome: "overMemory", target: r.target, message: `${(above / 2 ** 20).toFixed(0)} MB above baseline`, mutation: JSON.stringify(m) });
          }
          maxAbove = above;
        }
      }
      if (r.outcome !== "loads" && r.outcome !== "typed" && examples.filter((e) => e.outcome === r.outcome).length < 15) {
        examples.push({ outcome: r.outcome, target: r.target, ...(r.message !== undefined ? { message: r.message } : {}), mutation: JSON.stringify(m) });
      }
      done++;
      if (done % 100 === 0 || done === cases) {
        const s: Summary = { format, cases: done, seed, counts, maxMs, maxRssAboveBaseline: maxAbove, seconds: (Date.now() - t0) / 1000, examples };
        // temp + rename: the parent never reads a half-written progress file
        writeFileSync(`${progressFile}.tmp`, JSON.stringify(s));
        renameSync(`${progressFile}.tmp`, progressFile);
      }
    }
  }
  rmSync(work, { recursive: true, force: true });
}

async function parent(): Promise<void> {
  const list = formats.length > 0 ? formats : [...FORMATS];
  const out: Summary[] = [];
  const self = fileURLToPath(import.meta.url);
  for (const format of list) {
    const progress = join(tmpdir(), `ql-fuzz-${process.pid}-${format}.json`);
    rmSync(progress, { force: true });
    const p = spawn(process.execPath, ["--max-old-space-size=3072", self, "--child", format, progress, "--cases", String(cases), "--seed", String(seed), "--slow-ms", String(slowMs)], { stdio: ["ignore", "inherit", "inherit"] });
    const killChild = () => p.kill("SIGKILL");
    process.once("exit", killChild); // never leave a child running behind a dead parent
    let last = "";
    let lastChange = Date.now();
    let aborted: string | undefined;
    const timer = setInterval(() => {
      const now = existsSync(progress) ? readFileSync(progress, "utf8") : "";
      if (now !== last) { last = now; lastChange = Date.now(); process.stderr.write(`\r${format}: ${(JSON.parse(now) as Summary).cases} cases`); }
      else if (Date.now() - lastChange > 60_000) { aborted = "no progress for 60 s (hang): killed"; p.kill("SIGKILL"); }
    }, 1000);
    const code = await new Promise<number | null>((r) => p.on("exit", (c, sig) => r(c ?? (sig ? 128 : null))));
    clearInterval(timer);
    process.removeListener("exit", killChild);
    process.stderr.write("\n");
    const s: Summary = existsSync(progress) ? JSON.parse(readFileSync(progress, "utf8")) : { format, cases: 0, seed, counts: { loads: 0, typed: 0, untyped: 0, wrapped: 0, slow: 0, overMemory: 0 }, maxMs: 0, maxRssAboveBaseline: 0, seconds: 0, examples: [] };
    if (code !== 0) s.aborted = aborted ?? `child exited with ${code}`;
    rmSync(progress, { force: true });
    out.push(s);
    process.stdout.write(JSON.stringify(s) + "\n");
  }
  if (args.includes("--record")) record(out);
}

function record(out: Summary[]): void {
  const md = fileURLToPath(new URL("../../../docs/fuzz-results.md", import.meta.url));
  const rows = out.map((s) => `| ${s.format} | \`npm run fuzz -- --cases ${s.cases} --seed ${s.seed} --format ${s.format}\` | ${s.cases.toLocaleString("en-US")} | ${s.counts.untyped} | ${s.counts.wrapped} | ${s.counts.slow} | ${s.counts.overMemory} | ${s.counts.typed.toLocaleString("en-US")} | ${s.counts.loads.toLocaleString("en-US")} | ${s.maxMs.toFixed(0)} | ${(s.maxRssAboveBaseline / 2 ** 20).toFixed(0)} | ${s.seconds.toFixed(0)} |${s.aborted ? ` ${s.aborted}` : ""}`);
  const text = [
    "<!-- written by `npm run fuzz -- … --record` (test/fuzz/run.ts); do not edit by hand -->",
    `Recorded ${new Date().toISOString().slice(0, 10)}, node ${process.version}. Outcomes (test/fuzz/harness.ts): untyped = an exception that is not a QuantlabError naming the file; wrapped = a dependency's exception only the boundary wrapper caught; over 2 s and over 512 MB (peak RSS above the baseline plus the file's size) are failures too; typed = a QuantlabError naming the file; loaded = the mutant loaded and ran.`,
    "",
    "| format | command | cases | untyped | wrapped at boundary | over 2 s | over 512 MB | typed errors | loaded | max ms | peak RSS above baseline (MB) | seconds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    ...out.flatMap((s) => s.examples.slice(0, 5).map((e) => `- ${s.format} ${e.outcome} (${e.target}): ${e.message ?? ""}`)),
    "",
  ].join("\n");
  writeFileSync(md, text);
}

if (args[0] === "--child") await child(args[1] as FuzzFormat, args[2]!);
else if (opt("record-from") !== undefined) {
  // results of runs made one format at a time (JSON lines as the parent prints them), recorded together
  record(readFileSync(opt("record-from")!, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Summary));
} else await parent();
