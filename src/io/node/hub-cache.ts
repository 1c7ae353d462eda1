/**
 * Downloads an `hf://owner/name[@rev]` model into a local cache and loads it as a Hugging Face directory.
 * Fetched: config.json (required), tokenizer.json, tokenizer_config.json, generation_config.json,
 * chat_template.jinja and chat_template.json (if present),
 * model.safetensors.index.json and its shards, or model.safetensors.
 *
 * - Revisions: a branch or tag is resolved to a commit on every load (the `X-Repo-Commit` of a HEAD,
 *   io/hub.ts), so `@main` follows the repository; every file then comes from that commit's URL, so a
 *   branch moving mid-download cannot mix two commits. A commit never changes: once its files are all
 *   here it is loaded without any request. Offline, a branch falls back to the commit it last resolved to.
 * - Integrity: each file is checked against the checksum the server gives (LFS files: sha256 of the
 *   content; git files: their blob id), before it enters the cache; a mismatch caches nothing.
 * - Resume: bytes arrive in `<blob>.incomplete`; an interrupted or stalled transfer (no data for
 *   QUANTLAB_HUB_TIMEOUT ms, default 30 s) is retried, and any later run resumes, with an HTTP Range
 *   request for the missing tail.
 * - Concurrency: a process downloading a blob holds `<blob>.lock` (created exclusively, its pid
 *   inside); another process (or another load in this one) waits for it, then uses the blob; the lock
 *   of a dead process is taken over.
 *
 * Cache: QUANTLAB_CACHE or ~/.cache/quantlab, under hub/<owner>--<name>/ (huggingface_hub's layout):
 *   refs/<revision>             the commit a branch or tag last resolved to
 *   blobs/<etag>                verified contents, named by their checksum (shared by every commit)
 *   blobs/<etag>.incomplete     a partial download; blobs/<etag>.lock while one is in progress
 *   snapshots/<commit>/<file>   hard links to the blobs (copies where links fail); `.complete` once
 *                               every file of the commit is there
 */
import { createHash } from "node:crypto";
import { copyFileSync, createReadStream, existsSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, closeSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { QuantlabError } from "../../core/errors.js";
import { noProgress, type Progress } from "../../core/progress.js";
import type { Model } from "../../model/weights.js";
import { DEFAULT_HUB_URL, hubFileMetadata, hubFileUrl, hubVerifier, isCommitId, parseHubRef, shardsFromIndex, type HubFileMetadata, type HubRef } from "../hub.js";
import { atomicWriteFile, processAlive } from "./atomic.js";
import { loadHfDir } from "./hf-file.js";

export function hubBaseUrl(): string {
  return process.env.QUANTLAB_HUB_URL || DEFAULT_HUB_URL;
}

export function cacheRoot(): string {
  return process.env.QUANTLAB_CACHE || join(homedir(), ".cache", "quantlab");
}

/** hub/<owner>--<name>: refs/, blobs/, snapshots/ of one repository. */
export function repoCacheDir(ref: HubRef): string {
  return join(cacheRoot(), "hub", ref.repo.replace("/", "--"));
}

export function snapshotDir(ref: HubRef, commit: string): string {
  return join(repoCacheDir(ref), "snapshots", commit);
}

/** No data for this long during a transfer (or no answer to a request) counts as a stall. */
function stallMs(): number {
  const v = Number(process.env.QUANTLAB_HUB_TIMEOUT ?? 30_000);
  return Number.isFinite(v) && v > 0 ? v : 30_000;
}

/** Attempts per file: a transfer cut short or stalled is retried, resuming, this many times in all. */
const ATTEMPTS = 3;

function headers(extra: Record<string, string> = {}): Record<string, string> {
  // identity: the size and the checksum are those of the bytes as stored, not of a compressed transfer
  const h: Record<string, string> = { "accept-encoding": "identity", ...extra };
  if (process.env.HF_TOKEN) h.authorization = `Bearer ${process.env.HF_TOKEN}`;
  return h;
}

class NetworkError extends QuantlabError {}

/** HEAD on a file's resolve URL, redirects not followed (the redirect carries the LFS headers). */
async function head(url: string, label: string): Promise<{ status: number; meta: HubFileMetadata }> {
  let res: Response;
  try {
    res = await fetch(url, { method: "HEAD", headers: headers(), redirect: "manual", signal: AbortSignal.timeout(stallMs()) });
  } catch (e) {
    throw new NetworkError("E_IO", `${label}: cannot reach the hub (${causeText(e)}): ${url}`);
  }
  return { status: res.status, meta: hubFileMetadata(url, res.headers) };
}

function causeText(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}

function httpError(label: string, status: number, url: string): QuantlabError {
  const why = status === 401 || status === 403 ? " (a gated or private repository: set HF_TOKEN)" : "";
  return new QuantlabError("E_IO", `${label}: HTTP ${status}${why} for ${url}`);
}

/** The commit a reference points at: itself for a commit id, else asked of the server (refs/ offline). */
async function resolveCommit(ref: HubRef, refStr: string): Promise<string> {
  if (isCommitId(ref.revision)) return ref.revision;
  const refFile = join(repoCacheDir(ref), "refs", encodeURIComponent(ref.revision));
  const url = hubFileUrl(hubBaseUrl(), ref, "config.json");
  let r: Awaited<ReturnType<typeof head>>;
  try {
    r = await head(url, `${refStr}: config.json`);
  } catch (e) {
    // offline: the commit this branch resolved to last time, if its files are all here
    if (e instanceof NetworkError && existsSync(refFile)) {
      const commit = readFileSync(refFile, "utf8").trim();
      if (isCommitId(commit) && existsSync(join(snapshotDir(ref, commit), COMPLETE))) return commit;
    }
    throw e;
  }
  if (r.status >= 400) throw httpError(`${refStr}: config.json`, r.status, url);
  const commit = r.meta.commit;
  if (!commit || !isCommitId(commit)) throw new QuantlabError("E_IO", `${refStr}: the server did not say which commit "${ref.revision}" is (no X-Repo-Commit header): ${url}`);
  mkdirSync(join(repoCacheDir(ref), "refs"), { recursive: true });
  await atomicWriteFile(refFile, (sink) => sink.write(new TextEncoder().encode(commit)));
  return commit;
}

/** Locks of this process, so a second load here waits instead of taking over its own lock. */
const held = new Set<string>();

/** Takes `lock` (exclusive create, pid inside), waiting while a live holder has it; false if `done()` became true meanwhile. */
async function acquire(lock: string, done: () => boolean): Promise<boolean> {
  for (;;) {
    if (done()) return false;
    if (!held.has(lock)) {
      try {
        const fd = openSync(lock, "wx");
        writeSync(fd, String(process.pid));
        closeSync(fd);
        held.add(lock);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new QuantlabError("E_IO", `${lock}: cannot create the download lock (${(e as Error).message})`);
        let pid = NaN;
        try { pid = Number(readFileSync(lock, "utf8")); } catch { /* removed meanwhile */ }
        // a lock whose holder died (kill -9 mid-download) is stale: take it over
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid)) {
          rmSync(lock, { force: true });
          continue;
        }
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function release(lock: string): void {
  held.delete(lock);
  rmSync(lock, { force: true });
}

/** Appends the missing tail of `url` to `part` (Range from its current size); returns the bytes now there. */
async function transfer(url: string, part: string, size: number | undefined, label: string, progress: Progress): Promise<number> {
  let have = existsSync(part) ? statSync(part).size : 0;
  if (size !== undefined && have > size) {
    rmSync(part);
    have = 0;
  }
  if (size !== undefined && have === size) return have;
  const ctrl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ctrl.abort(new Error(`stalled: no data for ${stallMs()} ms`)), stallMs());
  };
  arm();
  try {
    let res: Response;
    try {
      res = await fetch(url, { headers: headers(have > 0 ? { range: `bytes=${have}-` } : {}), redirect: "follow", signal: ctrl.signal });
    } catch (e) {
      throw new NetworkError("E_IO", `${label}: download failed (${causeText(e)}): ${url}`);
    }
    if (res.status === 416 && size !== undefined && have === size) {
      await res.body?.cancel();
      return have;
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      throw httpError(label, res.status, url);
    }
    let pos = have;
    if (res.status === 206) {
      const start = Number(/^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "")?.[1]);
      if (start !== have) {
        await res.body?.cancel();
        throw new NetworkError("E_IO", `${label}: the server resumed at byte ${res.headers.get("content-range")}, not at ${have}`);
      }
    } else pos = 0; // a 200 is the whole file: start over
    const fh = await open(part, pos === 0 ? "w" : "r+");
    progress.start(size ?? 1, `downloading ${label}`);
    progress.tick(pos);
    try {
      const reader = res.body!.getReader();
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          throw new NetworkError("E_IO", `${label}: download interrupted after ${pos} of ${size ?? "?"} bytes (${causeText(ctrl.signal.reason ?? e)})`);
        }
        if (chunk.done) break;
        arm();
        if (size !== undefined && pos + chunk.value.length > size) throw new QuantlabError("E_IO", `${label}: the server sent more than the ${size} bytes it announced`);
        await fh.write(chunk.value, 0, chunk.value.length, pos);
        pos += chunk.value.length;
        progress.tick(chunk.value.length);
      }
    } finally {
      await fh.close();
      progress.done();
    }
    if (size !== undefined && pos !== size) throw new NetworkError("E_IO", `${label}: download ended after ${pos} of ${size} bytes`);
    return pos;
  } finally {
    clearTimeout(timer);
  }
}

/** The file's checksum as the etag names it (io/hub.ts hubVerifier), read back from disk. */
async function digest(path: string, v: ReturnType<typeof hubVerifier>): Promise<string> {
  const h = createHash(v.algorithm);
  h.update(v.prefix(statSync(path).size));
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** snapshots/<commit>/<file> → the blob: a hard link (a copy, renamed into place, where links fail). */
function place(blob: string, dest: string): void {
  if (existsSync(dest)) return;
  try {
    linkSync(blob, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return;
    const tmp = `${dest}.tmp-${process.pid}`;
    copyFileSync(blob, tmp);
    renameSync(tmp, dest);
  }
}

/** One file of a commit, from the snapshot, the blob store, or the server. Undefined: absent (404) and optional. */
async function fetchFile(ref: HubRef, commit: string, file: string, optional: boolean, label: string, progress: Progress): Promise<string | undefined> {
  const snap = snapshotDir(ref, commit);
  const dest = join(snap, file);
  if (existsSync(dest)) return dest;
  const url = hubFileUrl(hubBaseUrl(), { repo: ref.repo, revision: commit }, file);
  const { status, meta } = await head(url, label);
  if (status === 404 && optional) return undefined;
  if (status >= 400) throw httpError(label, status, url);
  const verify = hubVerifier(meta.etag, label);
  const blobs = join(repoCacheDir(ref), "blobs");
  mkdirSync(blobs, { recursive: true });
  mkdirSync(snap, { recursive: true });
  const blob = join(blobs, verify.expected);
  if (!existsSync(blob)) {
    const lock = `${blob}.lock`;
    if (await acquire(lock, () => existsSync(blob))) {
      try {
        if (!existsSync(blob)) await download(meta, blob, verify, label, progress);
      } finally {
        release(lock);
      }
    }
  }
  place(blob, dest);
  return dest;
}

async function download(meta: HubFileMetadata, blob: string, verify: ReturnType<typeof hubVerifier>, label: string, progress: Progress): Promise<void> {
  const part = `${blob}.incomplete`;
  for (let attempt = 1; ; attempt++) {
    try {
      await transfer(meta.location, part, meta.size, label, progress);
      break;
    } catch (e) {
      if (!(e instanceof NetworkError) || attempt >= ATTEMPTS) {
        // the partial file stays for the next run to resume
        throw e instanceof NetworkError ? new QuantlabError("E_IO", `${e.message}; ${attempt} attempts (run again to resume)`) : e;
      }
    }
  }
  const got = await digest(part, verify);
  if (got !== verify.expected) {
    rmSync(part, { force: true });
    throw new QuantlabError("E_IO", `${label}: ${verify.algorithm} mismatch: the server's checksum is ${verify.expected}, the downloaded bytes hash to ${got}; nothing was cached`);
  }
  renameSync(part, blob);
}

/** Marks a snapshot whose files are all present (the list of them, one a line). */
const COMPLETE = ".complete";

/** Downloads (or finds in the cache) the files of a hub model; returns the local directory. */
export async function downloadHubModel(refStr: string, progress: Progress = noProgress): Promise<string> {
  const ref = parseHubRef(refStr);
  const commit = await resolveCommit(ref, refStr);
  const dir = snapshotDir(ref, commit);
  if (existsSync(join(dir, COMPLETE))) return dir;
  const got: string[] = [];
  const get = async (file: string, optional: boolean) => {
    const p = await fetchFile(ref, commit, file, optional, `${refStr}: ${file}`, progress);
    if (p) got.push(file);
    return p;
  };
  await get("config.json", false);
  await get("tokenizer.json", true);
  await get("tokenizer_config.json", true);
  // chat template files and sampling defaults (io/hf-generation.ts)
  for (const f of ["generation_config.json", "chat_template.jinja", "chat_template.json"]) await get(f, true);
  const idx = await get("model.safetensors.index.json", true);
  if (idx) {
    for (const f of shardsFromIndex(readFileSync(idx, "utf8"), idx)) await get(f, false);
  } else {
    await get("model.safetensors", false);
  }
  await atomicWriteFile(join(dir, COMPLETE), (sink) => sink.write(new TextEncoder().encode(got.join("\n") + "\n")));
  return dir;
}

export async function loadHubModel(refStr: string, opts: { progress?: Progress } = {}): Promise<Model> {
  const dir = await downloadHubModel(refStr, opts.progress);
  const m = await loadHfDir(dir, { progress: opts.progress });
  m.source = { ...m.source, path: refStr, metadata: { ...m.source.metadata, "hub.cache": dir } };
  m.config.name = parseHubRef(refStr).repo;
  return m;
}
