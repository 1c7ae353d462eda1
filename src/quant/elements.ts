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

/**
 * Learned codebook element (clustering / vector quantization): `kmeans<b>` = 2^b scalar levels fitted to
 * the tensor (Deep Compression's weight sharing), `vq<b>d<d>` = 2^b codewords of d consecutive weights
 * (one b-bit index per d weights). The levels are not known before the tensor is seen: algos/learned.ts
 * fits them (k-means) and quant stores them with the codes (QTensor.codebook, (2^b, d) in scale units).
 */
export interface LearnedElement {
  readonly kind: "learned";
  readonly name: string; // "kmeans3", "vq8d4"
  /** index bits */
  readonly bits: number;
  /** weights per index (1 for kmeans) */
  readonly dim: number;
}

export type Element = IntElement | FormatElement | LearnedElement;

const KMEANS_RE = /^kmeans(\d+)$/;
const VQ_RE = /^vq(\d+)d(\d+)$/;
/** index bits of learned codebooks: 2^12 levels/codewords at most (k-means cost grows with k) */
export const LEARNED_MAX_BITS = 12;
/** longest VQ sub-vector */
export const VQ_MAX_DIM = 16;

/** The learned element named `name`, undefined when the name is not kmeans<b> / vq<b>d<d>; ranges unchecked. */
export function learnedElementOf(name: string): LearnedElement | undefined {
  let m = KMEANS_RE.exec(name);
  if (m) return { kind: "learned", name, bits: Number(m[1]), dim: 1 };
  m = VQ_RE.exec(name);
  if (m) return { kind: "learned", name, bits: Number(m[1]), dim: Number(m[2]) };
  return undefined;
}

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
  const le = learnedElementOf(name);
  if (le) return le.bits >= 1 && le.bits <= LEARNED_MAX_BITS && le.dim >= 1 && le.dim <= VQ_MAX_DIM ? le : undefined;
  const f = lookupRegistryFormat(name, bits);
  if (!f) return undefined;
  return { kind: "format", name: f.name, bits: f.bits, family: f.family, format: f };
}

/** Names accepted as element formats, for error messages and `quantlab formats`. */
export function elementNames(): string[] {
  return [`int${INT_MIN_BITS}..int${INT_MAX_BITS}`, `kmeans1..kmeans${LEARNED_MAX_BITS}`, `vq<b>d<d>`, ...registryFormatNames().filter((n) => intBitsOf(n) === undefined)];
}

/** Largest finite magnitude of the element grid (for int: the restricted symmetric max 2^(b-1)-1). */
export function elementMaxValue(e: Element): number {
  if (e.kind === "learned") return 1; // levels are fitted in units of the group's absmax
  return e.kind === "int" ? Math.max(1, 2 ** (e.bits - 1) - 1) : e.format.maxValue;
}
