/** Runs the real CLI binary (bin/quantlab.js → dist) and captures its output. */
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GgufWriter, MemorySink, openGguf, type GgufValue } from "../../src/io/gguf.js";
import { BufferSource } from "../../src/io/source.js";

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

export interface Run { code: number; stdout: string; stderr: string }
/**
 * Runs the CLI's main() in this process (spawning node per case costs ~1 s on a busy machine), with
 * stdout/stderr captured and relative paths taken from `cwd`. One spawned run checks the real binary.
 */
export async function cli(args: string[], cwd: string): Promise<Run> {
  const { main } = await import("../../src/cli/main.js");
  const abs = args.map((a, i) => (i === 0 || a.startsWith("-") || a.startsWith("/") || /^[A-Z0-9_]+$/.test(a) || /^\d/.test(a) ? a : join(cwd, a) + (a.endsWith("/") ? "/" : "")));
  let stdout = "", stderr = "";
  const ow = process.stdout.write, ew = process.stderr.write;
  // main() awaits real I/O (asynchronous writes), so the test runner's reporter may write to stdout while
  // a command runs: its writes come straight from a stream pipe (the caller frame is node's stream code)
  // and pass through; the commands' own writes are captured
  const runner = () => /^\s*at .*\(node:internal\/streams\//.test((new Error().stack ?? "").split("\n")[3] ?? "");
  process.stdout.write = ((c: string | Uint8Array, ...rest: unknown[]) => {
    if (runner()) return (ow as (...a: unknown[]) => boolean).call(process.stdout, c, ...rest);
    stdout += String(c);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => { stderr += String(c); return true; }) as typeof process.stderr.write;
  try {
    process.exitCode = 0;
    await main(["node", "quantlab", ...abs]);
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { code, stdout, stderr };
}

export function spawnCli(args: string[], cwd: string): Promise<Run> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, QUANTLAB_PROGRESS: "0" } });
    let stdout = "", stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => res({ code: code ?? -1, stdout, stderr }));
  });
}

/** Rewrites a GGUF in memory: metadata edited by `edit`, tensors copied. */
export async function rewriteGguf(src: Uint8Array, edit: (md: Map<string, GgufValue>) => void): Promise<Uint8Array> {
  const f = await openGguf(new BufferSource("in.gguf", src));
  const md = new Map(f.metadata);
  edit(md);
  const sink = new MemorySink();
  const w = new GgufWriter(sink);
  for (const [k, v] of md) w.setKV(k, v);
  for (const t of f.tensors) w.addTensor(t);
  await w.writeHeader();
  for (const t of f.tensors) await w.writeTensorData(t.name, await f.readTensorBytes(t));
  w.finish();
  return sink.bytes();
}

/** A safetensors file from a header object written by hand (independent of our writer). */
export function rawSafetensors(header: object, dataBytes: number): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}
