/**
 * Atomic file output: everything is written to a temporary file in the destination's directory, which
 * is renamed over the destination only when the writer finished without error. On any error (or a
 * kill between write and rename) the destination is untouched and the temp file is removed, so an
 * interrupted run leaves no partial output. Same-directory temp files keep the rename on one file
 * system, where POSIX rename(2) is atomic.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { QuantlabError } from "../../core/errors.js";
import type { ByteSink } from "../gguf.js";

/** Streams chunks to an open file descriptor, counting bytes. */
export class FileSink implements ByteSink {
  bytes = 0;
  constructor(private readonly fd: number, readonly name: string) {}
  async write(chunk: Uint8Array): Promise<void> {
    let done = 0;
    while (done < chunk.length) {
      try {
        done += writeSync(this.fd, chunk, done, chunk.length - done);
      } catch (e) {
        throw new QuantlabError("E_IO", `${this.name}: write failed (${(e as Error).message})`);
      }
    }
    this.bytes += chunk.length;
  }
}

let counter = 0;
/** Temp paths beside `path`: hidden, unique per process and call, removed on failure. */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now().toString(36)}-${counter++}`);
}

/** Temp files still open in this process, removed on SIGINT/SIGTERM so a killed run leaves nothing behind. */
const live = new Set<string>();
let handlersInstalled = false;
function installSignalCleanup(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      for (const p of live) try { unlinkSync(p); } catch { /* already gone */ }
      process.kill(process.pid, sig);
    });
  }
}

function checkParent(path: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) throw new QuantlabError("E_IO", `${path}: directory ${dir} does not exist`);
  if (existsSync(path) && statSync(path).isDirectory()) throw new QuantlabError("E_IO", `${path}: is a directory`);
}

/**
 * Runs `write(sink)` against a temp file and renames it to `path` on success. Returns what `write` returned.
 */
export async function atomicWriteFile<T>(path: string, write: (sink: FileSink) => Promise<T>): Promise<T> {
  checkParent(path);
  const tmp = tempPathFor(path);
  installSignalCleanup();
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx");
    live.add(tmp);
    const result = await write(new FileSink(fd, path));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    live.delete(tmp);
    return result;
  } catch (e) {
    if (fd !== undefined) try { closeSync(fd); } catch { /* ignore */ }
    try { rmSync(tmp, { force: true }); } catch { /* ignore */ }
    live.delete(tmp);
    throw e;
  }
}

/**
 * Directory output (HF layout): files are written into a temp directory beside `path`, which replaces
 * `path` by rename at the end. An existing non-empty destination is refused rather than merged into.
 */
export async function atomicWriteDir<T>(path: string, write: (tmpDir: string) => Promise<T>): Promise<T> {
  const parent = dirname(path.replace(/\/+$/, ""));
  const target = path.replace(/\/+$/, "");
  if (!existsSync(parent)) throw new QuantlabError("E_IO", `${path}: directory ${parent} does not exist`);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new QuantlabError("E_IO", `${path}: exists and is not a directory`);
    const { readdirSync } = await import("node:fs");
    if (readdirSync(target).length > 0) throw new QuantlabError("E_IO", `${path}: directory exists and is not empty`);
  }
  const tmp = tempPathFor(target);
  installSignalCleanup();
  mkdirSync(tmp);
  live.add(tmp);
  try {
    const result = await write(tmp);
    if (existsSync(target)) rmSync(target, { recursive: true }); // the empty directory checked above
    renameSync(tmp, target);
    live.delete(tmp);
    return result;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    live.delete(tmp);
    throw e;
  }
}
