/**
 * Downloads an `hf://owner/name[@rev]` model into a local cache and loads it as a Hugging Face directory.
 * Fetched: config.json (required), tokenizer.json and tokenizer_config.json (if present),
 * model.safetensors.index.json and its shards, or model.safetensors. Each file lands atomically, so an
 * interrupted download leaves no partial file; files already in the cache are not fetched again.
 * Cache: QUANTLAB_CACHE or ~/.cache/quantlab, under hub/<owner>--<name>/<revision>/.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { QuantlabError } from "../../core/errors.js";
import { noProgress, type Progress } from "../../core/progress.js";
import type { Model } from "../../model/weights.js";
import { DEFAULT_HUB_URL, hubFileUrl, parseHubRef, shardsFromIndex, type HubRef } from "../hub.js";
import { atomicWriteFile } from "./atomic.js";
import { loadHfDir } from "./hf-file.js";

export function hubBaseUrl(): string {
  return process.env.QUANTLAB_HUB_URL || DEFAULT_HUB_URL;
}

export function cacheRoot(): string {
  return process.env.QUANTLAB_CACHE || join(homedir(), ".cache", "quantlab");
}

export function cacheDirFor(ref: HubRef): string {
  return join(cacheRoot(), "hub", ref.repo.replace("/", "--"), ref.revision.replace(/\//g, "--"));
}

/** Fetches one file into `dir` (atomically). Returns false on HTTP 404 when `optional`. */
async function fetchFile(url: string, dest: string, optional: boolean, label: string, progress: Progress): Promise<boolean> {
  if (existsSync(dest)) return true;
  const headers: Record<string, string> = {};
  if (process.env.HF_TOKEN) headers.authorization = `Bearer ${process.env.HF_TOKEN}`;
  let res: Response;
  try {
    res = await fetch(url, { headers, redirect: "follow" });
  } catch (e) {
    throw new QuantlabError("E_IO", `${label}: download failed (${(e as Error).message}): ${url}`);
  }
  if (res.status === 404 && optional) {
    await res.body?.cancel();
    return false;
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new QuantlabError("E_IO", `${label}: HTTP ${res.status} ${res.statusText} for ${url}`);
  }
  const total = Number(res.headers.get("content-length") ?? 0);
  await atomicWriteFile(dest, async (sink) => {
    progress.start(total || 1, `downloading ${label}`);
    const reader = res.body!.getReader();
    let got = 0;
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new QuantlabError("E_IO", `${label}: download interrupted after ${got} of ${total || "?"} bytes (${(e as Error).message})`);
      }
      const { done, value } = chunk;
      if (done) break;
      await sink.write(value);
      got += value.length;
      progress.tick(value.length);
    }
    progress.done();
    if (total && got !== total) throw new QuantlabError("E_IO", `${label}: download ended after ${got} of ${total} bytes`);
  });
  return true;
}

/** Downloads (or finds in the cache) the files of a hub model; returns the local directory. */
export async function downloadHubModel(refStr: string, progress: Progress = noProgress): Promise<string> {
  const ref = parseHubRef(refStr);
  const base = hubBaseUrl();
  const dir = cacheDirFor(ref);
  mkdirSync(dir, { recursive: true });
  const get = (file: string, optional: boolean) => fetchFile(hubFileUrl(base, ref, file), join(dir, file), optional, `${refStr}: ${file}`, progress);
  await get("config.json", false);
  await get("tokenizer.json", true);
  await get("tokenizer_config.json", true);
  if (await get("model.safetensors.index.json", true)) {
    const idxPath = join(dir, "model.safetensors.index.json");
    for (const f of shardsFromIndex(readFileSync(idxPath, "utf8"), idxPath)) await get(f, false);
  } else {
    await get("model.safetensors", false);
  }
  return dir;
}

export async function loadHubModel(refStr: string, opts: { progress?: Progress } = {}): Promise<Model> {
  const dir = await downloadHubModel(refStr, opts.progress);
  const m = await loadHfDir(dir, { progress: opts.progress });
  m.source = { ...m.source, path: refStr, metadata: { ...m.source.metadata, "hub.cache": dir } };
  m.config.name = parseHubRef(refStr).repo;
  return m;
}
