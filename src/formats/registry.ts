/**
 * The format registry: every named format, one row each, typed `Record<FormatName, Format>` so that a
 * name in ids.ts without a row (or a row without an id) fails to compile. Adding a format is one id line
 * in ids.ts and one row in its family file. Rows are immutable singletons.
 *
 * Parametric formats (any ExMy, any integer width, learned codebooks, log/pow2-sum with other ranges) are
 * built with the constructors exported from the family files (`minifloat`, `intGrid`, `codebookFormat`,
 * `logFormat`, `pow2SumFormat`); those carry id −1 and are described by the spec string that made them.
 */
import { QuantlabError } from "../core/errors.js";
import { codebookFormats } from "./codebook.js";
import { floatFormats } from "./float.js";
import { FORMAT_ALIASES, FORMAT_IDS, type FormatName } from "./ids.js";
import { intFormats } from "./int.js";
import { logFormats } from "./log.js";
import { ternaryFormats } from "./ternary.js";
import type { Format } from "./types.js";
import { zeroFormats } from "./zero.js";

const ROWS: Record<FormatName, Format> = {
  ...floatFormats,
  ...intFormats,
  ...codebookFormats,
  ...ternaryFormats,
  ...logFormats,
  ...zeroFormats,
};

const BY_ID = new Map<number, Format>();
for (const name of Object.keys(ROWS) as FormatName[]) {
  const f = ROWS[name];
  if (f.name !== name || f.id !== FORMAT_IDS[name]) {
    throw new QuantlabError("E_INTERNAL", `format registry: row "${name}" has name "${f.name}" and id ${f.id}, expected id ${FORMAT_IDS[name]}`);
  }
  if (BY_ID.has(f.id)) throw new QuantlabError("E_INTERNAL", `format registry: id ${f.id} used twice (${BY_ID.get(f.id)!.name}, ${name})`);
  BY_ID.set(f.id, f);
}

export function isFormatName(name: string): name is FormatName {
  return Object.prototype.hasOwnProperty.call(ROWS, name);
}

/** Registry row by name or alias (case-insensitive); throws E_SPEC listing the valid names. */
export function getFormat(name: FormatName): Format;
export function getFormat(name: string): Format;
export function getFormat(name: string): Format {
  const key = name.trim().toLowerCase();
  if (isFormatName(key)) return ROWS[key];
  const alias = FORMAT_ALIASES[key];
  if (alias) return ROWS[alias];
  throw new QuantlabError("E_SPEC", `unknown format "${name}" (valid: ${listFormats().map((f) => f.name).join(", ")}; aliases: ${Object.keys(FORMAT_ALIASES).join(", ")})`);
}

/** Row by stable id, or undefined. */
export function formatById(id: number): Format | undefined {
  return BY_ID.get(id);
}

/** Every row, ordered by id. */
export function listFormats(): Format[] {
  return [...BY_ID.values()].sort((a, b) => a.id - b.id);
}

export interface FormatInfo {
  id: number;
  name: string;
  family: string;
  bits: number;
  blockSize: number;
  /** distinct finite values (±0 once) */
  valueCount: number | null;
  min: number;
  max: number;
  minPositive: number | null;
  hasInf: boolean;
  hasNaN: boolean;
  overflow: string;
  description: string;
}

/** Plain-JSON facts about a format, for `quantlab formats` and reports. */
export function formatInfo(f: Format): FormatInfo {
  const vals = f.values();
  let minPositive = f.minPositive ?? null;
  if (minPositive === null && vals) for (const v of vals) if (v > 0) { minPositive = v; break; }
  return {
    id: f.id,
    name: f.name,
    family: f.family,
    bits: f.bits,
    blockSize: f.blockSize,
    valueCount: f.valueCount ?? (vals ? vals.length : null),
    min: f.minValue ?? (vals ? vals[0]! : -f.maxValue),
    max: f.maxValue,
    minPositive,
    hasInf: f.hasInf ?? false,
    hasNaN: f.hasNaN ?? false,
    overflow: f.overflow ?? "saturate",
    description: f.description,
  };
}

export { FORMAT_IDS, FORMAT_ALIASES, type FormatName };
