/** Runs the real CLI binary (bin/quantlab.js → dist) and captures its output. */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const BIN = fileURLToPath(new URL("../../../bin/quantlab.js", import.meta.url));

export function quantlab(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, QUANTLAB_PROGRESS: "0" } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** An error run: non-zero exit, nothing on stdout, exactly one stderr line with the message. */
export function expectOneLineError(r: { status: number; stdout: string; stderr: string }, re: RegExp, status = 1): void {
  if (r.status !== status) throw new Error(`exit ${r.status}, expected ${status}; stderr: ${r.stderr}`);
  if (r.stdout !== "") throw new Error(`stdout not empty: ${r.stdout}`);
  const lines = r.stderr.trimEnd().split("\n");
  if (lines.length !== 1) throw new Error(`stderr has ${lines.length} lines: ${r.stderr}`);
  if (!/^quantlab: error: /.test(lines[0]!)) throw new Error(`not an error line: ${lines[0]}`);
  if (!re.test(lines[0]!)) throw new Error(`stderr ${JSON.stringify(lines[0])} does not match ${re}`);
}
