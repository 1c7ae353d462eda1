/**
 * Hugging Face Hub references: `hf://owner/name[@revision]`. Files are fetched from
 * `<base>/<owner>/<name>/resolve/<revision>/<file>` (the Hub's download route); the base comes from
 * QUANTLAB_HUB_URL (default https://huggingface.co), so tests point it at a local server.
 *
 * What the Hub says about a file, in the headers of a HEAD on that route (as huggingface_hub's
 * `get_hf_file_metadata` reads them): `X-Repo-Commit` the commit the revision resolves to;
 * `X-Linked-Etag` (on the redirect of an LFS file: its sha256) or `ETag` (a regular git file: its git
 * blob sha1); `X-Linked-Size` or `Content-Length` its size; `Location` where an LFS file's bytes are.
 * The etag is what the download is verified against (hubVerifier), and names the blob in the cache.
 */
import { QuantlabError } from "../core/errors.js";

export const DEFAULT_HUB_URL = "https://huggingface.co";

export interface HubRef {
  repo: string;
  revision: string;
}

export function isHubRef(s: string): boolean {
  return s.startsWith("hf://");
}

/** Repo names as the Hub allows them: letters, digits, '-', '_', '.'; one '/'. */
const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

export function parseHubRef(s: string): HubRef {
  if (!isHubRef(s)) throw new QuantlabError("E_ARG", `${s}: not a hub reference (hf://owner/name[@revision])`);
  const rest = s.slice("hf://".length).replace(/\/+$/, "");
  const at = rest.indexOf("@");
  const repo = at >= 0 ? rest.slice(0, at) : rest;
  const revision = at >= 0 ? rest.slice(at + 1) : "main";
  if (!REPO.test(repo) || repo.includes("..")) throw new QuantlabError("E_ARG", `${s}: bad repository name "${repo}" (expected owner/name)`);
  if (!REVISION.test(revision) || revision.includes("..")) throw new QuantlabError("E_ARG", `${s}: bad revision "${revision}"`);
  return { repo, revision };
}

export function hubFileUrl(base: string, ref: HubRef, file: string): string {
  const rev = ref.revision.split("/").map(encodeURIComponent).join("%2F");
  return `${base.replace(/\/+$/, "")}/${ref.repo}/resolve/${rev}/${file.split("/").map(encodeURIComponent).join("/")}`;
}

/** File names of safetensors shards listed in an index's weight_map, checked to be plain relative names. */
export function shardsFromIndex(indexJson: string, where: string): string[] {
  let idx: { weight_map?: Record<string, string> };
  try {
    idx = JSON.parse(indexJson) as typeof idx;
  } catch (e) {
    throw new QuantlabError("E_FORMAT", `${where}: not valid JSON (${(e as Error).message})`);
  }
  if (!idx.weight_map || typeof idx.weight_map !== "object") throw new QuantlabError("E_FORMAT", `${where}: no "weight_map"`);
  const files = [...new Set(Object.values(idx.weight_map))];
  for (const f of files) {
    // never let a file name climb out of the cache directory
    if (typeof f !== "string" || !/^[A-Za-z0-9._-]+\.safetensors$/.test(f)) throw new QuantlabError("E_FORMAT", `${where}: bad shard file name ${JSON.stringify(f)}`);
  }
  return files;
}

/** A full commit id: a revision that never moves (cached forever). */
export function isCommitId(rev: string): boolean {
  return /^[0-9a-f]{40}$/.test(rev);
}

/** What a HEAD on a file's resolve URL tells (see the file comment). */
export interface HubFileMetadata {
  commit?: string;
  /** normalized: no W/ prefix, no quotes, lower case */
  etag?: string;
  size?: number;
  /** absolute URL of the bytes (a redirect's Location), else the resolve URL itself */
  location: string;
}

/** ETag header value → the bare hash ("W/\"abc\"" → "abc"), as huggingface_hub `_normalize_etag`. */
export function normalizeEtag(v: string | null | undefined): string | undefined {
  if (!v) return undefined;
  return v.trim().replace(/^W\//, "").replace(/^"|"$/g, "").toLowerCase();
}

export function hubFileMetadata(url: string, headers: { get(name: string): string | null }): HubFileMetadata {
  const commit = headers.get("x-repo-commit")?.trim().toLowerCase() || undefined;
  const etag = normalizeEtag(headers.get("x-linked-etag")) ?? normalizeEtag(headers.get("etag"));
  const sizeText = headers.get("x-linked-size") ?? headers.get("content-length");
  const size = sizeText !== null && /^\d+$/.test(sizeText.trim()) ? Number(sizeText) : undefined;
  const loc = headers.get("location");
  return { ...(commit ? { commit } : {}), ...(etag ? { etag } : {}), ...(size !== undefined ? { size } : {}), location: loc ? new URL(loc, url).toString() : url };
}

/**
 * How a downloaded file is checked against its etag: a 64-hex etag is the sha256 of an LFS file's
 * content; a 40-hex one the git blob id of a regular file, sha1("blob <size>\0" + content). Anything
 * else cannot be verified, and is refused rather than trusted.
 */
export function hubVerifier(etag: string | undefined, where: string): { algorithm: "sha256" | "sha1"; prefix: (size: number) => string; expected: string } {
  if (etag && /^[0-9a-f]{64}$/.test(etag)) return { algorithm: "sha256", prefix: () => "", expected: etag };
  if (etag && /^[0-9a-f]{40}$/.test(etag)) return { algorithm: "sha1", prefix: (size) => `blob ${size}\0`, expected: etag };
  throw new QuantlabError("E_IO", `${where}: the server gave no checksum to verify the download against (ETag ${JSON.stringify(etag ?? null)}; expected a sha256 or a git blob id)`);
}
