/**
 * Spec: a whole quantization recipe for one tensor, as a string a person types and a plain JSON object.
 *
 *   spec      := format [":" part]*
 *   format    := element format name (int1..int16, fp8_e4m3, nf4, ternary, pow2, …) | preset
 *   preset    := mxfp8_e4m3 | mxfp8_e5m2 | mxfp6_e3m2 | mxfp6_e2m3 | mxfp4 | mxint8 | nvfp4 | bfp<m>
 *                (aliases: mxfp8 = mxfp8_e4m3, mxfp6 = mxfp6_e3m2)
 *   part      := granularity | scheme | calibration | rounding | scale | width | activations | misc
 *   granularity := none | tensor | layer | channel | ichannel | g<N> | b<R>x<C>
 *   scheme    := sym | symfull | asym | asymf            (integer grids only)
 *   calibration := minmax | p<percentile> | mse | kl | absmean | twn
 *   rounding  := rne | sr
 *   scale     := scale=<f32|f16|bf16|e8m0|fp8|u8|u6|u4> | dq (= scale=u8, sb=256) | sb=<N|tensor>
 *   width     := <N>bit                                  (parameterized formats, e.g. pow2:4bit)
 *   activations := a<bits> | a<bits>s | afp8 | afp8s     (dynamic per-token / static per-tensor)
 *   misc      := outliers=<percent> | trits
 *   integer   := intmm [":" acc=<bits>[s]] [":" iops]     (integer-only matmul of the linear: int weights ×
 *                                                         int activations, int32 accumulators, dyadic requant;
 *                                                         iops: the block's RMSNorm, SiLU, attention scores
 *                                                         and softmax run on integers too, end to end)
 *   learned formats: kmeans<b> (2^b fitted levels), vq<b>d<d> (2^b fitted codewords of d weights)
 *
 * Parts may come in any order; `printSpec` writes them in one canonical order and omits defaults, so
 * printSpec(parseSpec(s)) is a fixed point. See docs/quant-format.md for the meaning of each part.
 */
import { QuantlabError } from "../core/errors.js";
import { INT_MAX_BITS, INT_MIN_BITS, elementNames, intBitsOf, resolveElement, type Element } from "./elements.js";
import { isParameterized, parameterizedWidths } from "./registry-link.js";

export const SPEC_KIND = "quantlab.quant-spec";
export const SPEC_VERSION = 1;

export type Granularity =
  | { kind: "none" } // direct cast, no scale (fp16, bf16, fp8 without scaling)
  | { kind: "tensor" }
  | { kind: "layer" } // one scale shared by a set of tensors (quantizeLayer)
  | { kind: "channel" } // per output channel = per row of a (rows, cols) weight
  | { kind: "ichannel" } // per input channel = per column
  | { kind: "group"; size: number } // along the input dimension (row), ragged last group
  | { kind: "block2d"; rows: number; cols: number };

/**
 * sym: restricted symmetric, codes in [-(2^(b-1)-1), 2^(b-1)-1];
 * symfull: full signed range [-2^(b-1), 2^(b-1)-1] (the extreme value maps to -2^(b-1), as llama.cpp Q4_0);
 * asym: affine, unsigned codes [0, 2^b-1] with an integer zero point;
 * asymf: affine with a float zero point (HQQ);
 * levels: scale + nearest representable value of a non-uniform/float element format;
 * mean: the "0-bit" format, each group replaced by its mean.
 */
export type Scheme = "sym" | "symfull" | "asym" | "asymf" | "levels" | "mean";

export type Calibration =
  | { method: "minmax" }
  | { method: "percentile"; percentile: number }
  | { method: "mse" }
  | { method: "kl" }
  | { method: "absmean" } // BitNet b1.58: scale = mean |w|
  | { method: "twn" }; // Ternary Weight Networks: threshold 0.7·mean|w|, α = mean of |w| above it

/** How group scales are stored. Quantized dtypes (fp8, u8, u6, u4) carry an f32 super-scale per super-block. */
export type ScaleDtype = "f32" | "f16" | "bf16" | "e8m0" | "fp8" | "u8" | "u6" | "u4";
export const SCALE_DTYPES: readonly ScaleDtype[] = ["f32", "f16", "bf16", "e8m0", "fp8", "u8", "u6", "u4"];
export function isDoubleQuantDtype(d: ScaleDtype): boolean {
  return d === "fp8" || d === "u8" || d === "u6" || d === "u4";
}

export interface ScaleStorage {
  dtype: ScaleDtype;
  /** scales per super-block (each super-block has one f32 super-scale); only for quantized dtypes */
  superBlock?: number | "tensor";
}

export interface ActivationSpec {
  /** "int" grid of `bits`, or fp8 E4M3 */
  format: "int" | "fp8_e4m3";
  bits: number;
  /** dynamic: one scale per token computed at run time; static: one per-tensor scale from calibration */
  mode: "dynamic" | "static";
}

export type PresetName = "mxfp8_e4m3" | "mxfp8_e5m2" | "mxfp6_e3m2" | "mxfp6_e2m3" | "mxfp4" | "mxint8" | "nvfp4" | "bfp";

/**
 * Integer-only execution of a linear (model/integer-linear.ts): int weight codes × int activation codes
 * accumulated in `accBits`-bit two's complement integers, requantized by a dyadic multiplier. An
 * accumulator narrower than the worst case overflows: "wrap" as two's complement hardware, or "saturate".
 */
export interface IntegerMatmul {
  accBits: number;
  overflow: "wrap" | "saturate";
  /** `iops`: the non-linear operations around the linears run as integer approximations too (model/integer-block.ts) */
  ops?: boolean;
}

export interface QuantSpec {
  kind: typeof SPEC_KIND;
  version: typeof SPEC_VERSION;
  /** element format: "int4", or a registry name ("fp4_e2m1", "nf4", "pow2") */
  format: string;
  /** block preset the spec was written as, if any (mxfp4, nvfp4, bfp, …) */
  preset?: PresetName;
  /** bits per element code */
  bits: number;
  scheme: Scheme;
  granularity: Granularity;
  scale: ScaleStorage;
  calibration: Calibration;
  rounding: "nearest" | "stochastic";
  /** percent of weights (largest |w|) kept exactly in an f16 side table */
  outlierPercent?: number;
  /** ternary codes packed 5 trits per byte (1.6 bits) instead of 2 bits */
  packing: "bits" | "trits";
  activations?: ActivationSpec;
  integerMatmul?: IntegerMatmul;
}

interface PresetDef {
  element: string;
  bits: number;
  block: number;
  scheme: Scheme;
  scale: ScaleStorage;
  /** block size may be changed with g<N> (block floating point) */
  blockFlexible: boolean;
  about: string;
}

/** OCP Microscaling Formats (MX) v1.0 §5 (block 32, E8M0 shared scale); NVIDIA NVFP4 (block 16, E4M3 scale + f32 tensor scale). */
export const PRESETS: Record<Exclude<PresetName, "bfp">, PresetDef> = {
  mxfp8_e4m3: { element: "fp8_e4m3", bits: 8, block: 32, scheme: "levels", scale: { dtype: "e8m0" }, blockFlexible: false, about: "OCP MX: 32 × FP8 E4M3, shared E8M0 scale" },
  mxfp8_e5m2: { element: "fp8_e5m2", bits: 8, block: 32, scheme: "levels", scale: { dtype: "e8m0" }, blockFlexible: false, about: "OCP MX: 32 × FP8 E5M2, shared E8M0 scale" },
  mxfp6_e3m2: { element: "fp6_e3m2", bits: 6, block: 32, scheme: "levels", scale: { dtype: "e8m0" }, blockFlexible: false, about: "OCP MX: 32 × FP6 E3M2, shared E8M0 scale" },
  mxfp6_e2m3: { element: "fp6_e2m3", bits: 6, block: 32, scheme: "levels", scale: { dtype: "e8m0" }, blockFlexible: false, about: "OCP MX: 32 × FP6 E2M3, shared E8M0 scale" },
  mxfp4: { element: "fp4_e2m1", bits: 4, block: 32, scheme: "levels", scale: { dtype: "e8m0" }, blockFlexible: false, about: "OCP MX: 32 × FP4 E2M1, shared E8M0 scale" },
  // MX v1.0 §5.3.3: INT8 elements are two's complement with an implicit scale 2^-6 (range [-2, 127/64]);
  // we store the integer code and fold 2^-6 into the E8M0 exponent, which is the same value set.
  mxint8: { element: "int8", bits: 8, block: 32, scheme: "symfull", scale: { dtype: "e8m0" }, blockFlexible: false, about: "OCP MX: 32 × INT8 (two's complement, implicit 2^-6), shared E8M0 scale" },
  // NVFP4: 16 × E2M1, per-block E4M3 scale, one f32 per-tensor scale (amax / (448·6)).
  nvfp4: { element: "fp4_e2m1", bits: 4, block: 16, scheme: "levels", scale: { dtype: "fp8", superBlock: "tensor" }, blockFlexible: false, about: "NVIDIA NVFP4: 16 × FP4 E2M1, E4M3 block scale + f32 tensor scale" },
};
const PRESET_ALIASES: Record<string, Exclude<PresetName, "bfp">> = { mxfp8: "mxfp8_e4m3", mxfp6: "mxfp6_e3m2" };
/** block floating point: shared power-of-two exponent per block, m-bit sign-magnitude integer mantissas */
const BFP_RE = /^bfp(\d+)$/;
const BFP_DEFAULT_BLOCK = 32;

export const DEFAULT_SUPER_BLOCK = 256; // QLoRA double quantization: 256 first-level constants per block

const GRANULARITY_HELP = "none, tensor, layer, channel, ichannel, g<N>, b<R>x<C>";
const OPTION_HELP =
  "granularity (" + GRANULARITY_HELP + "), scheme (sym, symfull, asym, asymf), calibration (minmax, p<pct>, mse, kl, absmean, twn), " +
  "rounding (rne, sr), scale=<" + SCALE_DTYPES.join("|") + ">, dq, sb=<N|tensor>, <N>bit, a<bits>, a<bits>s, afp8, afp8s, outliers=<pct>, trits, intmm, acc=<bits>[s], iops";

const MAX_GROUP = 1 << 24; // anything larger is a typo; per-tensor is spelled `tensor`

function specError(spec: string, message: string): never {
  throw new QuantlabError("E_SPEC", `spec "${spec}": ${message}`);
}

function presetNames(): string[] {
  return [...Object.keys(PRESETS), ...Object.keys(PRESET_ALIASES), "bfp<m>"];
}

type Category = "granularity" | "scheme" | "calibration" | "rounding" | "scale" | "superblock" | "width" | "activations" | "outliers" | "packing" | "intmm" | "acc" | "iops";

interface Part {
  category: Category;
  token: string;
  apply(s: Draft): void;
}

interface Draft {
  granularity?: Granularity;
  scheme?: Scheme;
  calibration?: Calibration;
  rounding?: "nearest" | "stochastic";
  scaleDtype?: ScaleDtype;
  superBlock?: number | "tensor";
  width?: number;
  activations?: ActivationSpec;
  outlierPercent?: number;
  packing?: "bits" | "trits";
  dq?: boolean;
  intmm?: boolean;
  acc?: IntegerMatmul;
  iops?: boolean;
}

function positiveInt(spec: string, token: string, text: string, what: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) specError(spec, `"${token}": ${what} must be an integer in 1..${max}`);
  return n;
}

function classify(spec: string, token: string, index: number): Part {
  let m: RegExpExecArray | null;
  switch (token) {
    case "none": case "tensor": case "layer": case "channel": case "ichannel":
      return { category: "granularity", token, apply: (d) => { d.granularity = { kind: token }; } };
    case "sym": case "symfull": case "asym": case "asymf":
      return { category: "scheme", token, apply: (d) => { d.scheme = token; } };
    case "minmax": case "mse": case "kl": case "absmean": case "twn":
      return { category: "calibration", token, apply: (d) => { d.calibration = { method: token }; } };
    case "rne": return { category: "rounding", token, apply: (d) => { d.rounding = "nearest"; } };
    case "sr": return { category: "rounding", token, apply: (d) => { d.rounding = "stochastic"; } };
    case "dq": return { category: "scale", token, apply: (d) => { d.scaleDtype = "u8"; d.dq = true; } };
    case "trits": return { category: "packing", token, apply: (d) => { d.packing = "trits"; } };
    case "intmm": return { category: "intmm", token, apply: (d) => { d.intmm = true; } };
    case "iops": return { category: "iops", token, apply: (d) => { d.iops = true; } };
    case "afp8": case "afp8s":
      return { category: "activations", token, apply: (d) => { d.activations = { format: "fp8_e4m3", bits: 8, mode: token === "afp8" ? "dynamic" : "static" }; } };
  }
  if ((m = /^g(\d+)$/.exec(token))) {
    const size = positiveInt(spec, token, m[1]!, "group size", MAX_GROUP);
    return { category: "granularity", token, apply: (d) => { d.granularity = { kind: "group", size }; } };
  }
  if ((m = /^b(\d+)x(\d+)$/.exec(token))) {
    const rows = positiveInt(spec, token, m[1]!, "block rows", MAX_GROUP);
    const cols = positiveInt(spec, token, m[2]!, "block cols", MAX_GROUP);
    return { category: "granularity", token, apply: (d) => { d.granularity = { kind: "block2d", rows, cols }; } };
  }
  if ((m = /^p(\d+(?:\.\d+)?)$/.exec(token))) {
    const percentile = Number(m[1]);
    if (!(percentile > 50 && percentile <= 100)) specError(spec, `"${token}": percentile must be in (50, 100]`);
    return { category: "calibration", token, apply: (d) => { d.calibration = { method: "percentile", percentile }; } };
  }
  if ((m = /^(\d+)bit$/.exec(token))) {
    const width = positiveInt(spec, token, m[1]!, "bit width", 16);
    return { category: "width", token, apply: (d) => { d.width = width; } };
  }
  if ((m = /^a(\d+)(s?)$/.exec(token))) {
    const bits = Number(m[1]);
    if (!Number.isInteger(bits) || bits < 2 || bits > 16) specError(spec, `"${token}": activation bits must be in 2..16`);
    const mode = m[2] === "s" ? "static" : "dynamic";
    return { category: "activations", token, apply: (d) => { d.activations = { format: "int", bits, mode }; } };
  }
  if ((m = /^scale=(.*)$/.exec(token))) {
    const dtype = m[1] as ScaleDtype;
    if (!SCALE_DTYPES.includes(dtype)) specError(spec, `"${token}": unknown scale dtype "${m[1]}"; valid: ${SCALE_DTYPES.join(", ")}`);
    return { category: "scale", token, apply: (d) => { d.scaleDtype = dtype; } };
  }
  if ((m = /^sb=(.*)$/.exec(token))) {
    const sb = m[1] === "tensor" ? "tensor" : positiveInt(spec, token, m[1]!, "super-block size (scales per super-block)", MAX_GROUP);
    return { category: "superblock", token, apply: (d) => { d.superBlock = sb; } };
  }
  if ((m = /^acc=(\d+)(s?)$/.exec(token))) {
    const accBits = Number(m[1]);
    if (!(accBits >= 8 && accBits <= 32)) specError(spec, `"${token}": accumulator bits must be in 8..32`);
    const overflow = m[2] === "s" ? "saturate" : "wrap";
    return { category: "acc", token, apply: (d) => { d.acc = { accBits, overflow }; } };
  }
  if ((m = /^outliers=(.*)$/.exec(token))) {
    const pct = Number(m[1]!.replace(/%$/, ""));
    if (!(pct > 0 && pct <= 50)) specError(spec, `"${token}": outlier percent must be in (0, 50]`);
    return { category: "outliers", token, apply: (d) => { d.outlierPercent = pct; } };
  }
  specError(spec, `unknown part "${token}" (part ${index + 1}); valid parts: ${OPTION_HELP}`);
}

function isFloatCast(e: Element): boolean {
  return e.kind === "format" && e.family === "float" && e.bits >= 16;
}

/** Parses a spec string. Throws QuantlabError("E_SPEC") naming the bad part and listing valid choices. */
export function parseSpec(text: string): QuantSpec {
  const spec = text.trim().toLowerCase();
  if (spec === "") specError(text, "empty spec; expected <format>[:<granularity>][:<option>...], e.g. int4:g128:asym");
  const tokens = spec.split(":").map((t) => t.trim());
  tokens.forEach((t, i) => { if (t === "") specError(text, `empty part ${i + 1}`); });
  const head = tokens[0]!;
  const d: Draft = {};
  const seen = new Map<Category, string>();
  for (let i = 1; i < tokens.length; i++) {
    const p = classify(text, tokens[i]!, i);
    const prev = seen.get(p.category);
    if (prev !== undefined) specError(text, `two ${p.category} parts, "${prev}" and "${p.token}"; give one`);
    seen.set(p.category, p.token);
    p.apply(d);
  }

  // --- format / preset ---
  let presetName: PresetName | undefined;
  let preset: PresetDef | undefined;
  const bfp = BFP_RE.exec(head);
  const presetKey = (PRESET_ALIASES[head] ?? head) as Exclude<PresetName, "bfp">;
  if (Object.hasOwn(PRESETS, presetKey)) {
    presetName = presetKey;
    preset = PRESETS[presetKey];
  } else if (bfp) {
    const m = Number(bfp[1]);
    if (!(m >= 2 && m <= INT_MAX_BITS)) specError(text, `"${head}": block floating point mantissa bits must be in 2..${INT_MAX_BITS}`);
    presetName = "bfp";
    preset = { element: `int${m}`, bits: m, block: BFP_DEFAULT_BLOCK, scheme: "sym", scale: { dtype: "e8m0" }, blockFlexible: true, about: "block floating point" };
  }

  let element: Element | undefined;
  if (preset) {
    if (d.width !== undefined) specError(text, `"${seen.get("width")}": ${head} has a fixed element width`);
    element = resolveElement(preset.element);
    if (!element) specError(text, `preset ${head} needs element format "${preset.element}", which is not in the registry`);
  } else {
    const ib = intBitsOf(head);
    if (ib !== undefined) {
      if (ib < INT_MIN_BITS || ib > INT_MAX_BITS) specError(text, `"${head}": integer formats have ${INT_MIN_BITS}..${INT_MAX_BITS} bits`);
      if (d.width !== undefined) specError(text, `"${seen.get("width")}": the width of ${head} is in its name`);
    } else if (d.width !== undefined && !isParameterized(head)) {
      specError(text, `"${seen.get("width")}": format "${head}" has a fixed width (only parameterized formats take <N>bit)`);
    }
    element = resolveElement(head, d.width);
    if (!element && d.width !== undefined && isParameterized(head)) {
      specError(text, `"${seen.get("width")}": ${head} comes in ${parameterizedWidths(head).map((b) => `${b}bit`).join(", ")}`);
    }
    if (!element) {
      specError(text, `unknown format "${head}"; valid formats: ${elementNames().join(", ")}; presets: ${presetNames().join(", ")}`);
    }
  }

  // --- scheme ---
  let scheme: Scheme;
  const isInt = element.kind === "int";
  const isZero = element.kind === "format" && element.family === "zero";
  const learned = element.kind === "learned" ? element : undefined;
  if (preset) {
    if (d.scheme !== undefined) specError(text, `"${d.scheme}": ${head} fixes its scheme`);
    scheme = preset.scheme;
  } else if (isInt) {
    scheme = d.scheme ?? "sym";
    if (scheme === "sym" && element.bits < 2) specError(text, `"${head}": restricted symmetric needs at least 2 bits; use ${head}:asym, ${head}:symfull or the binary format`);
  } else {
    if (d.scheme !== undefined) {
      specError(text, `"${d.scheme}": schemes sym/symfull/asym/asymf apply to integer grids (int1..int16); ${head} is a ${element.kind === "format" ? element.family : element.kind} format quantized as scale × nearest level`);
    }
    scheme = isZero ? "mean" : "levels";
  }

  // --- granularity ---
  let granularity: Granularity;
  if (preset) {
    const g = d.granularity;
    if (g !== undefined && !(g.kind === "group" && (g.size === preset.block || preset.blockFlexible))) {
      specError(text, preset.blockFlexible
        ? `"${seen.get("granularity")}": ${head} blocks are groups along the row; use g<N>`
        : `"${seen.get("granularity")}": ${head} has fixed blocks of ${preset.block} (g${preset.block})`);
    }
    granularity = g ?? { kind: "group", size: preset.block };
  } else {
    granularity = d.granularity ?? (isFloatCast(element) ? { kind: "none" } : { kind: "channel" });
    if (granularity.kind === "none" && (isInt || isZero || learned || (element.kind === "format" && element.family !== "float"))) {
      specError(text, `"none": ${head} needs a scale; choose one of tensor, layer, channel, ichannel, g<N>, b<R>x<C>`);
    }
    if (learned && learned.dim > 1) {
      const g = granularity;
      if (!(g.kind === "tensor" || g.kind === "channel" || g.kind === "group")) specError(text, `"${seen.get("granularity")}": ${head} codewords span ${learned.dim} consecutive weights of a row; use tensor, channel or g<N>`);
      if (g.kind === "group" && g.size % learned.dim !== 0) specError(text, `"${seen.get("granularity")}": groups of ${head} must hold whole ${learned.dim}-weight sub-vectors (a multiple of ${learned.dim})`);
    }
  }

  // --- scale storage ---
  let scaleDtype: ScaleDtype;
  let superBlock: number | "tensor" | undefined;
  if (preset) {
    if (d.scaleDtype !== undefined || d.superBlock !== undefined) specError(text, `"${seen.get("scale") ?? seen.get("superblock")}": ${head} fixes how its scales are stored`);
    scaleDtype = preset.scale.dtype;
    superBlock = preset.scale.superBlock;
  } else {
    scaleDtype = d.scaleDtype ?? "f32";
    if (granularity.kind === "none" && d.scaleDtype !== undefined) specError(text, `"${seen.get("scale")}": granularity none has no scales to store`);
    if (isDoubleQuantDtype(scaleDtype)) superBlock = d.superBlock ?? DEFAULT_SUPER_BLOCK;
    else if (d.superBlock !== undefined) specError(text, `"${seen.get("superblock")}": super-blocks need quantized scales (scale=fp8|u8|u6|u4 or dq)`);
    if (d.dq && d.superBlock === undefined) superBlock = DEFAULT_SUPER_BLOCK;
    if (isZero && (scaleDtype === "e8m0" || scaleDtype.startsWith("u"))) specError(text, `"${seen.get("scale")}": the 0-bit format stores a signed group mean; use f32, f16, bf16 or fp8`);
  }

  // --- calibration ---
  const fam = element.kind === "format" ? element.family : element.kind;
  const defaultCal: Calibration = fam === "ternary" || fam === "binary" ? { method: "absmean" } : { method: "minmax" };
  const calibration = d.calibration ?? defaultCal;
  if ((calibration.method === "absmean" || calibration.method === "twn") && fam !== "ternary" && fam !== "binary") {
    specError(text, `"${calibration.method}": absmean/twn scales are for ternary and binary formats; use minmax, p<pct>, mse or kl`);
  }
  if (calibration.method === "twn" && fam !== "ternary") specError(text, `"twn": threshold calibration is for ternary formats`);
  if (calibration.method === "kl" && (scheme === "asym" || scheme === "asymf")) {
    specError(text, `"kl": KL (entropy) calibration picks a symmetric |x| threshold; use mse, p<pct> or minmax with ${scheme}`);
  }
  if (isZero && calibration.method !== "minmax") specError(text, `"${seen.get("calibration")}": the 0-bit format has no range to calibrate`);
  if (granularity.kind === "none" && d.calibration !== undefined) specError(text, `"${seen.get("calibration")}": granularity none has no scale to calibrate`);

  // --- packing ---
  const packing = d.packing ?? "bits";
  if (packing === "trits" && fam !== "ternary") specError(text, `"trits": 5-trits-per-byte packing is for ternary formats`);
  if (learned && learned.dim > 1 && d.rounding === "stochastic") specError(text, `"sr": vector quantization picks the nearest codeword; stochastic rounding is for scalar grids`);
  if (learned && (calibration.method === "kl")) specError(text, `"kl": learned codebooks are fitted by k-means; use minmax, p<pct> or mse for their scales`);

  // --- integer-only matmul ---
  let integerMatmul: IntegerMatmul | undefined;
  if (d.acc && !d.intmm) specError(text, `"${seen.get("acc")}": accumulator width applies to integer-only matmul; add intmm`);
  if (d.iops && !d.intmm) specError(text, `"iops": integer non-linear operations extend integer-only matmul; add intmm`);
  if (d.intmm) {
    const why = (m: string): never => specError(text, `"intmm": ${m}`);
    if (!isInt || preset) why(`integer-only matmul needs an integer weight grid (int2..int8), not ${head}`);
    if (element.bits > 8) why(`weights are multiplied as int8; ${head} has ${element.bits} bits`);
    if (scheme !== "sym" && scheme !== "symfull") why(`weights need a symmetric grid (zero point 0), not ${scheme}`);
    if (granularity.kind !== "channel" && granularity.kind !== "tensor") why(`one scale per output channel (channel) or per tensor is what the requantization multiplier folds in; not ${granularity.kind}`);
    if (isDoubleQuantDtype(scaleDtype)) why(`double-quantized scales (${scaleDtype}) are not supported; use f32, f16, bf16 or e8m0`);
    if (!d.activations || d.activations.format !== "int" || d.activations.bits > 8) why(`needs integer activations of at most 8 bits: add a8 (dynamic per token) or a8s (static)`);
    if (d.outlierPercent !== undefined) why("outlier side tables are float; drop outliers=");
    if (d.rounding === "stochastic") why("weights must be rounded to nearest (drop sr)");
    integerMatmul = { ...(d.acc ?? { accBits: 32, overflow: "wrap" }), ...(d.iops ? { ops: true } : {}) };
  }

  const out: QuantSpec = {
    kind: SPEC_KIND,
    version: SPEC_VERSION,
    format: element.name,
    bits: element.bits,
    scheme,
    granularity,
    scale: superBlock !== undefined ? { dtype: scaleDtype, superBlock } : { dtype: scaleDtype },
    calibration,
    rounding: d.rounding ?? "nearest",
    packing,
  };
  if (presetName) out.preset = presetName;
  if (d.outlierPercent !== undefined) out.outlierPercent = d.outlierPercent;
  if (d.activations) out.activations = d.activations;
  if (integerMatmul) out.integerMatmul = integerMatmul;
  return out;
}

function granularityToken(g: Granularity): string {
  switch (g.kind) {
    case "group": return `g${g.size}`;
    case "block2d": return `b${g.rows}x${g.cols}`;
    default: return g.kind;
  }
}

/** Canonical string of a spec: parts in a fixed order, defaults omitted (granularity is always written for non-preset scaled formats). */
export function printSpec(s: QuantSpec): string {
  const parts: string[] = [];
  const element = resolveElement(s.format, s.bits);
  if (s.preset === "bfp") {
    parts.push(`bfp${s.bits}`);
    if (!(s.granularity.kind === "group" && s.granularity.size === BFP_DEFAULT_BLOCK)) parts.push(granularityToken(s.granularity));
  } else if (s.preset) {
    parts.push(s.preset);
  } else {
    parts.push(s.format);
    const implicitNone = element !== undefined && isFloatCast(element) && s.granularity.kind === "none";
    if (!implicitNone) parts.push(granularityToken(s.granularity));
    if ((s.scheme === "symfull" || s.scheme === "asym" || s.scheme === "asymf")) parts.push(s.scheme);
  }
  const fam = element?.kind === "format" ? element.family : element?.kind ?? "int";
  const defaultCal = fam === "ternary" || fam === "binary" ? "absmean" : "minmax";
  const c = s.calibration;
  if (c.method !== defaultCal) parts.push(c.method === "percentile" ? `p${c.percentile}` : c.method);
  if (s.rounding === "stochastic") parts.push("sr");
  if (!s.preset) {
    const dt = s.scale.dtype;
    if (dt === "u8" && s.scale.superBlock === DEFAULT_SUPER_BLOCK) parts.push("dq");
    else {
      if (dt !== "f32") parts.push(`scale=${dt}`);
      if (isDoubleQuantDtype(dt) && s.scale.superBlock !== DEFAULT_SUPER_BLOCK) parts.push(`sb=${s.scale.superBlock}`);
    }
  }
  if (s.outlierPercent !== undefined) parts.push(`outliers=${s.outlierPercent}`);
  if (s.packing === "trits") parts.push("trits");
  const a = s.activations;
  if (a) parts.push(a.format === "fp8_e4m3" ? (a.mode === "static" ? "afp8s" : "afp8") : `a${a.bits}${a.mode === "static" ? "s" : ""}`);
  const im = s.integerMatmul;
  if (im) {
    parts.push("intmm");
    if (im.accBits !== 32 || im.overflow !== "wrap") parts.push(`acc=${im.accBits}${im.overflow === "saturate" ? "s" : ""}`);
    if (im.ops) parts.push("iops");
  }
  return parts.join(":");
}

/** Accepts a spec string or object; returns the object (validated by a print/parse round trip for objects). */
export function toSpec(s: string | QuantSpec): QuantSpec {
  if (typeof s === "string") return parseSpec(s);
  if (s.kind !== SPEC_KIND || s.version !== SPEC_VERSION) {
    throw new QuantlabError("E_SPEC", `spec object: expected kind "${SPEC_KIND}" version ${SPEC_VERSION}, got kind "${String(s.kind)}" version ${String(s.version)}`);
  }
  return parseSpec(printSpec(s));
}

/** Canonical form of a spec string. */
export function canonicalSpec(s: string | QuantSpec): string {
  return printSpec(toSpec(s));
}

/** Short descriptions of presets, for `quantlab formats`. */
export function presetDescriptions(): { name: string; about: string; element: string; block: number }[] {
  const rows = Object.entries(PRESETS).map(([name, p]) => ({ name, about: p.about, element: p.element, block: p.block }));
  rows.push({ name: "bfp<m>", about: `block floating point: shared E8M0 exponent per block (default g${BFP_DEFAULT_BLOCK}), m-bit sign-magnitude mantissas`, element: "int<m>", block: BFP_DEFAULT_BLOCK });
  return rows;
}
