/**
 * Finds the shared data folder (`../shared/data` beside the repo) or the QUANTLAB_DATA override.
 * Node-only: lives under io/node.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { QuantlabError } from "../../core/errors.js";

let cached: string | undefined;

export function dataDir(): string {
  if (cached) return cached;
  const env = process.env.QUANTLAB_DATA;
  if (env) {
    if (!existsSync(env)) throw new QuantlabError("E_IO", `QUANTLAB_DATA=${env}: no such directory`);
    return (cached = resolve(env));
  }
  // Walk up from this file (dist/src/io/node/) and from the cwd looking for <dir>/../shared/data.
  const starts = [dirname(fileURLToPath(import.meta.url)), process.cwd()];
  for (const start of starts) {
    let d = start;
    for (let i = 0; i < 8; i++) {
      const cand = join(d, "..", "shared", "data");
      if (existsSync(join(cand, "stories260K"))) return (cached = resolve(cand));
      const parent = dirname(d);
      if (parent === d) break;
      d = parent;
    }
  }
  throw new QuantlabError("E_IO", "cannot find the shared data folder (../shared/data); set QUANTLAB_DATA");
}

export function dataPath(...parts: string[]): string {
  return join(dataDir(), ...parts);
}

/** The default model the CLI runs when none is given. */
export function defaultModelPath(): string {
  return dataPath("stories260K", "stories260K.bin");
}
