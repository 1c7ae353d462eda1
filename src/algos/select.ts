/**
 * Which tensors a recipe touches: tensor-name globs (`*`, `?`, `{a,b}`) over a model's weight map, the
 * default selection (every block linear), `only` / `keepFloat` lists and per-tensor overrides.
 */
import { QuantlabError } from "../core/errors.js";
import { TensorNames } from "../model/config.js";
import type { Model } from "../model/weights.js";

/** The block linears: what a spec target quantizes unless `tensors.only` says otherwise. */
export function linearWeightNames(m: Model): string[] {
  const out: string[] = [];
  for (let l = 0; l < m.config.nLayers; l++) {
    for (const f of [TensorNames.attnQ, TensorNames.attnK, TensorNames.attnV, TensorNames.attnOutput, TensorNames.ffnGate, TensorNames.ffnUp, TensorNames.ffnDown]) out.push(f(l));
  }
  return out;
}

const escapeRe = (s: string): string => s.replace(/[.+^$()|[\]\\]/g, "\\$&");

/** Shell-style glob (`*`, `?`, `{a,b}`) → RegExp over whole names. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === "*") re += ".*";
    else if (ch === "?") re += ".";
    else if (ch === "{") {
      const end = glob.indexOf("}", i);
      if (end < 0) throw new QuantlabError("E_ARG", `glob "${glob}": unclosed {`);
      re += "(?:" + glob.slice(i + 1, end).split(",").map((s) => escapeRe(s).replace(/\*/g, ".*").replace(/\?/g, ".")).join("|") + ")";
      i = end;
    } else re += escapeRe(ch);
  }
  return new RegExp(`^${re}$`);
}

/** A comma-separated glob list (CLI form) → its globs. */
export function splitGlobs(list: string): string[] {
  return list.split(",").map((x) => x.trim()).filter(Boolean);
}

/**
 * Tensors to quantize: `only` globs over every weight (default: the block linears), minus `keepFloat`
 * globs. A glob that matches no tensor is an error naming it (`what` names the option in messages).
 */
export function selectTensors(m: Model, only?: readonly string[], keepFloat?: readonly string[], what = { only: "--only", keepFloat: "--skip" }): string[] {
  const all = [...m.weights.keys()];
  let names: string[];
  if (only) {
    const rs = only.map(globToRegExp);
    names = all.filter((n) => rs.some((r) => r.test(n)));
    if (names.length === 0) throw new QuantlabError("E_ARG", `option ${what.only}: "${only.join(",")}" matches no tensor (names look like ${all.slice(0, 3).join(", ")})`);
  } else names = linearWeightNames(m).filter((n) => m.weights.has(n));
  if (keepFloat) {
    for (const g of keepFloat) {
      const r = globToRegExp(g);
      if (!all.some((n) => r.test(n))) throw new QuantlabError("E_ARG", `option ${what.keepFloat}: "${g}" matches no tensor (names look like ${all.slice(0, 3).join(", ")})`);
    }
    const rs = keepFloat.map(globToRegExp);
    names = names.filter((n) => !rs.some((r) => r.test(n)));
  }
  return names;
}

/**
 * The names matched by comma-separated globs, in model order. Each glob must match something: a typo
 * would otherwise silently drop the tensors it was meant to select.
 */
export function namesMatching(names: readonly string[], globs: string, option: string): string[] {
  const res = globs.split(",").map((g) => g.trim()).filter(Boolean).map((g) => ({ g, re: globToRegExp(g) }));
  if (res.length === 0) throw new QuantlabError("E_ARG", `option ${option}: no glob given`);
  for (const { g, re } of res) {
    if (!names.some((n) => re.test(n))) throw new QuantlabError("E_ARG", `option ${option}: "${g}" matches no tensor (names look like ${names.slice(0, 3).join(", ")})`);
  }
  return names.filter((n) => res.some(({ re }) => re.test(n)));
}
