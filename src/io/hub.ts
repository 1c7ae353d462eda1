/**
 * Hugging Face Hub references: `hf://owner/name[@revision]`. Files are fetched from
 * `<base>/<owner>/<name>/resolve/<revision>/<file>` (the Hub's download route); the base comes from
 * QUANTLAB_HUB_URL (default https://huggingface.co), so tests point it at a local server.
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
