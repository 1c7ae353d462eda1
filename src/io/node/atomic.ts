/**
 * Atomic file output: everything is written to a temporary file in the destination's directory, which
 * is renamed over the destination only when the writer finished without error. On any error the
 * destination is untouched and the temp file is removed, so an interrupted run leaves no partial
 * output. Same-directory temp files keep the rename on one file system, where POSIX rename(2) is atomic.
 *
 * Interruptions:
 * - SIGINT / SIGTERM while a temp file is open: a handler removes every live temp file and exits with
 *   128 + the signal number (130, 143), as a shell reports a process killed by it. Writes are
 *   asynchronous (positional `fs.write`), so the event loop — where Node runs signal handlers — turns
 *   at every chunk and the handler runs within one chunk's work, not after the whole write. The
 *   handlers exist only while a temp file does: outside writes, the signals keep Node's default
 *   (immediate exit), which leaves nothing to clean.
 * - SIGKILL (or a crash) cannot be handled: the temp file stays. Its name carries the writer's pid
 *   (`.<name>.tmp-<pid>-…`), and the next write to the same path removes temp files of processes that
 *   are no longer alive.
 */
import { closeSync, existsSync, fdatasync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, write } from "node:fs";
import { constants } from "node:os";
import { basename, dirname, join } from "node:path";
import { QuantlabError } from "../../core/errors.js";
import type { ByteSink } from "../gguf.js";

/** Bytes written between the background flushes of a FileSink (FLUSH_BYTES): the page cache is written back
 * to the disk while the producer computes the next bytes, so the final fsync waits only for the last part. */
export const FLUSH_BYTES = 256 * 2 ** 20;

/** Streams chunks to an open file descriptor at explicit offsets (several writes may be in flight), counting
 * bytes; every FLUSH_BYTES it starts an fdatasync in the background (`settle` waits for it). */
export class FileSink implements ByteSink {
  bytes = 0;
  private flushedAt = 0;
  private flushing: Promise<void> | undefined;
  private flushError: Error | undefined;
  constructor(private readonly fd: number, readonly name: string, private readonly flushBytes = FLUSH_BYTES) {}

  /** fdatasyncs started in the background (tests) */
  flushes = 0;

  /** Waits for a background flush in flight; throws its error. */
  async settle(): Promise<void> {
    await this.flushing;
    if (this.flushError) throw this.flushError;
  }

  private maybeFlush(): void {
    if (this.flushing || this.bytes - this.flushedAt < this.flushBytes) return;
    this.flushedAt = this.bytes;
    this.flushes++;
    this.flushing = new Promise<void>((resolve) => fdatasync(this.fd, (e) => {
      if (e) this.flushError ??= new QuantlabError("E_IO", `${this.name}: flush failed (${e.message})`);
      this.flushing = undefined;
      resolve();
    }));
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.flushError) throw this.flushError;
    // the offset is taken now, so concurrent writes land in call order whatever order the threadpool runs them
    let pos = this.bytes;
    this.bytes += chunk.length;
    let done = 0;
    while (done < chunk.length) {
      const n = await new Promise<number>((resolve, reject) =>
        write(this.fd, chunk, done, chunk.length - done, pos, (e, written) => (e ? reject(new QuantlabError("E_IO", `${this.name}: write failed (${e.message})`)) : resolve(written))),
      );
      done += n;
      pos += n;
    }
    this.maybeFlush();
  }
}

let counter = 0;
const TEMP_MARK = ".tmp-";

/** Temp paths beside `path`: hidden, named by the pid (stale-temp cleanup reads it back), unique per call. */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TEMP_MARK}${process.pid}-${Date.now().toString(36)}-${counter++}`);
}

/** Whether a process with this pid exists (EPERM: it exists but is not ours). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes temp files (and temp directories) a killed writer left for `path`: `.<name>.tmp-<pid>-…` whose
 * pid is not a live process, or is ours but not a write in progress. Returns what it removed.
 */
export function removeStaleTemps(path: string): string[] {
  const dir = dirname(path);
  const prefix = `.${basename(path)}${TEMP_MARK}`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(n.slice(prefix.length))?.[1]);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const p = join(dir, n);
    if (pid === process.pid ? live.has(p) : processAlive(pid)) continue;
    try {
      rmSync(p, { recursive: true, force: true });
      removed.push(p);
    } catch { /* another writer removed it first */ }
  }
  return removed;
}

/** Temp files and directories of writes in progress, removed on SIGINT/SIGTERM. */
const live = new Set<string>();
const SIGNALS = ["SIGINT", "SIGTERM"] as const;

function onSignal(sig: (typeof SIGNALS)[number]): void {
  for (const p of live) try { rmSync(p, { recursive: true, force: true }); } catch { /* already gone */ }
  live.clear();
  process.exit(128 + constants.signals[sig]);
}
const handlers = new Map(SIGNALS.map((s) => [s, () => onSignal(s)] as const));

function track(p: string): void {
  if (live.size === 0) for (const [s, h] of handlers) process.on(s, h);
  live.add(p);
}

function untrack(p: string): void {
  if (!live.delete(p)) return;
  if (live.size === 0) for (const [s, h] of handlers) process.removeListener(s, h);
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
  removeStaleTemps(path);
  const tmp = tempPathFor(path);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx");
    track(tmp);
    const sink = new FileSink(fd, path);
    let result: T;
    try {
      result = await write(sink);
    } finally {
      await sink.settle().catch(() => undefined); // no flush may still use fd when it is closed
    }
    await sink.settle();
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    untrack(tmp);
    return result;
  } catch (e) {
    if (fd !== undefined) try { closeSync(fd); } catch { /* ignore */ }
    try { rmSync(tmp, { force: true }); } catch { /* ignore */ }
    untrack(tmp);
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
    if (readdirSync(target).length > 0) throw new QuantlabError("E_IO", `${path}: directory exists and is not empty`);
  }
  removeStaleTemps(target);
  const tmp = tempPathFor(target);
  mkdirSync(tmp);
  track(tmp);
  try {
    const result = await write(tmp);
    if (existsSync(target)) rmSync(target, { recursive: true }); // the empty directory checked above
    renameSync(tmp, target);
    untrack(tmp);
    return result;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    untrack(tmp);
    throw e;
  }
}
