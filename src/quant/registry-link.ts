/**
 * The one place quant/ talks to the formats registry (formats/registry.ts). Kept separate so the rest of
 * quant/ depends only on the `Format` contract.
 */
import { FORMAT_ALIASES, getFormat, isFormatName, listFormats } from "../formats/registry.js";
import type { Format } from "../formats/types.js";

/** Registry families whose rows are named `<base>_<bits>` (pow2_4, logsqrt2_5, pow2sum_6). */
function parameterizedName(name: string, bits: number): string | undefined {
  const n = `${name}_${bits}`;
  return isFormatName(n) ? n : undefined;
}

/**
 * A registry format by name or alias; `bits` selects the width of a parameterized family
 * (`pow2` + 4 → `pow2_4`). Returns undefined when there is no such row.
 */
export function lookupRegistryFormat(name: string, bits?: number): Format | undefined {
  const key = name.trim().toLowerCase();
  if (bits !== undefined && isParameterized(key)) {
    const p = parameterizedName(key, bits);
    return p ? getFormat(p) : undefined;
  }
  if (isFormatName(key) || Object.hasOwn(FORMAT_ALIASES, key)) return getFormat(key);
  return undefined;
}

export function registryFormatNames(): string[] {
  return listFormats().map((f) => f.name);
}

/** True when `name` is the base of a `<base>_<bits>` family (pow2, logsqrt2, pow2sum). */
export function isParameterized(name: string): boolean {
  const key = name.trim().toLowerCase();
  for (let b = 1; b <= 16; b++) if (parameterizedName(key, b)) return true;
  return false;
}

/** Widths available for a parameterized family, for error messages. */
export function parameterizedWidths(name: string): number[] {
  const out: number[] = [];
  for (let b = 1; b <= 16; b++) if (parameterizedName(name, b)) out.push(b);
  return out;
}
