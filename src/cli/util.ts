/** Shared CLI plumbing: error printing, progress bars on stderr, JSON output. */
import { SingleBar, Presets } from "cli-progress";
import type { Progress } from "../core/progress.js";
import { QuantlabError } from "../core/errors.js";

export interface GlobalOptions {
  verbose?: boolean;
}

/** Progress bar on stderr, shown only for work that lasts more than a second and only on a TTY (or QUANTLAB_PROGRESS=1). */
export function stderrProgress(enabled = process.stderr.isTTY || process.env.QUANTLAB_PROGRESS === "1"): Progress {
  let bar: SingleBar | undefined;
  let startedAt = 0;
  let total = 0;
  let value = 0;
  let label = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const show = () => {
    if (!enabled || bar) return;
    bar = new SingleBar(
      { stream: process.stderr, format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`, hideCursor: false, clearOnComplete: false, etaBuffer: 50, noTTYOutput: true, notTTYSchedule: 2000 },
      Presets.shades_classic,
    );
    bar.start(total, value);
  };
  return {
    start(t: number, l: string) {
      this.done();
      total = t; value = 0; label = l; startedAt = Date.now();
      if (enabled) timer = setTimeout(show, 1000);
    },
    tick(n = 1) {
      value += n;
      if (!bar && enabled && Date.now() - startedAt > 1000) show();
      bar?.update(value);
    },
    done() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (bar) { bar.update(total); bar.stop(); bar = undefined; }
    },
  };
}

export function printJson(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj, (_k, v) => (typeof v === "bigint" ? Number(v) : v)) + "\n");
}

/** Turns any thrown error into one stderr line (stack with --verbose) and a non-zero exit code. */
export function reportError(err: unknown, verbose: boolean): number {
  if (err instanceof QuantlabError) {
    process.stderr.write(`quantlab: error: ${err.message}\n`);
    if (verbose && err.stack) process.stderr.write(err.stack + "\n");
    return err.code === "E_ARG" || err.code === "E_SPEC" ? 2 : 1;
  }
  const e = err as { message?: string; stack?: string; code?: string };
  process.stderr.write(`quantlab: error: ${e?.message ?? String(err)}\n`);
  if (verbose && e?.stack) process.stderr.write(e.stack + "\n");
  return 1;
}

export function parseIntOpt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new QuantlabError("E_ARG", `option ${name}: expected an integer, got "${v}"`);
    return n;
  };
}

export function parseFloatOpt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new QuantlabError("E_ARG", `option ${name}: expected a number, got "${v}"`);
    return n;
  };
}
