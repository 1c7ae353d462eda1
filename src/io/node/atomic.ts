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
import { closeSync, constants as fsConstants, existsSync, fdatasync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, write } from "node:fs";
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

/** Writes all of `view` at `pos` (a short write goes on from where it stopped). */
async function writeAll(fd: number, view: Uint8Array, pos: number, name: string): Promise<void> {
  let done = 0;
  while (done < view.length) {
    const n = await new Promise<number>((resolve, reject) =>
      write(fd, view, done, view.length - done, pos + done, (e, written) => (e ? reject(e) : resolve(written))),
    );
    if (n === 0) throw new QuantlabError("E_IO", `${name}: write made no progress`);
    done += n;
  }
}

/** O_DIRECT alignment of the staged writes' addresses, lengths and file offsets (≥ the logical block size of
 * common disks, 512 or 4096 bytes). */
export const DIRECT_ALIGN = 4096;
/** Bytes per staged direct write, and how many may be in flight while the next one fills. */
export const DIRECT_SLOT_BYTES = 8 * 2 ** 20;
export const DIRECT_SLOTS = 4;

/**
 * A sink for a file opened with O_DIRECT: the chunks are copied into a few aligned staging buffers, each
 * written when full (up to `slots` writes in flight while the next fills), and `finish()` writes the tail
 * padded to DIRECT_ALIGN, then truncates the file to the bytes written. The data goes from these buffers to
 * the device without passing through the page cache: no copy into freshly allocated page-cache pages (on this
 * VM the kernel's copy into new page-cache pages cost 0.7–1.5 s of system time per 766 MB written) and no dirty
 * pages left for the final fsync, which the atomic writer still does (the device's cache, the size, the rename).
 * The staging buffers live in a WebAssembly.Memory, whose base is page-aligned (a Node Buffer's is not).
 * A write the kernel refuses with EINVAL (an alignment the file system wants larger) is redone through an
 * ordinary descriptor of the same file (`fallbackFd`), so the bytes are the same either way.
 */
export class DirectFileSink implements ByteSink {
  bytes = 0;
  /** staged writes done through the fallback descriptor (tests) */
  fallbackWrites = 0;
  private filePos = 0;
  private slot = 0;
  private fill = 0;
  private readonly stage: Uint8Array;
  private readonly inflight: (Promise<void> | undefined)[];
  private error: Error | undefined;
  private chain: Promise<void> = Promise.resolve();
  private fallback: number | undefined;
  constructor(private readonly fd: number, readonly name: string, private readonly fallbackFd: () => number, private readonly slotBytes = DIRECT_SLOT_BYTES, private readonly slots = DIRECT_SLOTS) {
    if (slotBytes % DIRECT_ALIGN !== 0 || slotBytes <= 0 || slots < 1) throw new QuantlabError("E_INTERNAL", `DirectFileSink: slot size ${slotBytes} is not a positive multiple of ${DIRECT_ALIGN}`);
    const pages = Math.ceil((slotBytes * slots) / 65536);
    this.stage = new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer, 0, slotBytes * slots);
    this.inflight = new Array(slots).fill(undefined);
  }

  /** The descriptor of the fallback writes (opened on first use; the caller closes it). */
  fallbackDescriptor(): number | undefined {
    return this.fallback;
  }

  write(chunk: Uint8Array): Promise<void> {
    // one chunk is staged after the other, in call order, even when the caller does not wait
    const p = this.chain.then(() => this.stageChunk(chunk));
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async stageChunk(chunk: Uint8Array): Promise<void> {
    if (this.error) throw this.error;
    this.bytes += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      if (this.fill === 0) {
        await this.inflight[this.slot];
        if (this.error) throw this.error;
      }
      const n = Math.min(this.slotBytes - this.fill, chunk.length - off);
      this.stage.set(chunk.subarray(off, off + n), this.slot * this.slotBytes + this.fill);
      this.fill += n;
      off += n;
      if (this.fill === this.slotBytes) this.submit(this.slotBytes);
    }
  }

  private submit(len: number): void {
    const view = this.stage.subarray(this.slot * this.slotBytes, this.slot * this.slotBytes + len);
    const pos = this.filePos;
    this.filePos += len;
    this.inflight[this.slot] = writeAll(this.fd, view, pos, this.name)
      .catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "EINVAL") throw e;
        this.fallback ??= this.fallbackFd();
        this.fallbackWrites++;
        return writeAll(this.fallback, view, pos, this.name);
      })
      .catch((e: Error) => { this.error ??= e instanceof QuantlabError ? e : new QuantlabError("E_IO", `${this.name}: write failed (${e.message})`); });
    this.slot = (this.slot + 1) % this.slots;
    this.fill = 0;
  }

  /** Waits for the staged writes in flight; throws the first write error. */
  async settle(): Promise<void> {
    await this.chain;
    await Promise.all(this.inflight);
    if (this.error) throw this.error;
  }

  /** Writes the staged tail (padded to DIRECT_ALIGN) and cuts the file to the bytes written. */
  async finish(): Promise<void> {
    await this.chain;
    if (this.error) throw this.error;
    if (this.fill > 0) {
      const padded = Math.ceil(this.fill / DIRECT_ALIGN) * DIRECT_ALIGN;
      const base = this.slot * this.slotBytes;
      this.stage.fill(0, base + this.fill, base + padded);
      this.submit(padded);
    }
    await this.settle();
    ftruncateSync(this.fd, this.bytes);
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

/** Options of atomicWriteFile. */
export interface AtomicWriteOptions {
  /** write through O_DIRECT (DirectFileSink) — for large outputs; where the file system refuses O_DIRECT
   * the ordinary sink is used */
  direct?: boolean;
}

/** Opens `tmp` for a direct write (new file, O_DIRECT); undefined where the file system has no O_DIRECT. */
function openDirect(tmp: string): number | undefined {
  const direct = fsConstants.O_DIRECT as number | undefined; // Linux (and a few others) only
  if (direct === undefined) return undefined;
  try {
    return openSync(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | direct, 0o666);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
    rmSync(tmp, { force: true }); // the open may have created it before refusing the flag
    return undefined;
  }
}

/**
 * Runs `write(sink)` against a temp file and renames it to `path` on success. Returns what `write` returned.
 */
export async function atomicWriteFile<T>(path: string, write: (sink: FileSink | DirectFileSink) => Promise<T>, opts: AtomicWriteOptions = {}): Promise<T> {
  checkParent(path);
  removeStaleTemps(path);
  const tmp = tempPathFor(path);
  let fd: number | undefined;
  let fallbackFd: number | undefined;
  try {
    fd = opts.direct ? openDirect(tmp) : undefined;
    const direct = fd !== undefined;
    fd ??= openSync(tmp, "wx");
    track(tmp);
    const sink = direct ? new DirectFileSink(fd, path, () => (fallbackFd = openSync(tmp, "r+"))) : new FileSink(fd, path);
    let result: T;
    try {
      result = await write(sink);
      if (sink instanceof DirectFileSink) await sink.finish();
    } finally {
      await sink.settle().catch(() => undefined); // no write or flush may still use fd when it is closed
    }
    await sink.settle();
    fsyncSync(fd); // the inode's data and size, whichever descriptor wrote them
    if (fallbackFd !== undefined) { closeSync(fallbackFd); fallbackFd = undefined; }
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    untrack(tmp);
    return result;
  } catch (e) {
    if (fallbackFd !== undefined) try { closeSync(fallbackFd); } catch { /* ignore */ }
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
