/**
 * Element formats as the quantizer sees them. Uniform integer grids (`int1` … `int16`) are handled here
 * with integer arithmetic (symmetric restricted/full range, affine with zero points); every other element
 * format comes from the formats registry and is used through its exact `encode`/`decode` (scale + nearest
 * representable value).
 */
import type { Format, FormatFamily } from "../formats/types.js";
import { lookupRegistryFormat, registryFormatNames } from "./registry-link.js";

export const INT_MIN_BITS = 1;
export const INT_MAX_BITS = 16;

export interface IntElement {
  readonly kind: "int";
  readonly name: string; // "int4"
  readonly bits: number;
}

export interface FormatElement {
  readonly kind: "format";
  readonly name: string; // registry name, e.g. "fp8_e4m3", "nf4", "pow2"
  readonly bits: number;
  readonly family: FormatFamily;
  readonly format: Format;
}

export type Element = IntElement | FormatElement;

const INT_RE = /^int(\d+)$/;

/** The int bit width named by `name` ("int4" → 4), or undefined if it is not an int grid name. Range is not checked. */
export function intBitsOf(name: string): number | undefined {
  const m = INT_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Resolves an element format by name and, for parameterized families (e.g. `pow2:4bit`), bit width.
 * Returns undefined when unknown (the spec parser turns that into a message listing valid names).
 */
export function resolveElement(name: string, bits?: number): Element | undefined {
  const ib = intBitsOf(name);
  if (ib !== undefined) return { kind: "int", name, bits: ib };
  const f = lookupRegistryFormat(name, bits);
  if (!f) return undefined;
  return { kind: "format", name: f.name, bits: f.bits, family: f.family, format: f };
}

/** Names accepted as element formats, for error messages and `quantlab formats`. */
export function elementNames(): string[] {
  return [`int${INT_MIN_BITS}..int${INT_MAX_BITS}`, ...registryFormatNames().filter((n) => intBitsOf(n) === undefined)];
}

/** Largest finite magnitude of the element grid (for int: the restricted symmetric max 2^(b-1)-1). */
export function elementMaxValue(e: Element): number {
  return e.kind === "int" ? Math.max(1, 2 ** (e.bits - 1) - 1) : e.format.maxValue;
}
