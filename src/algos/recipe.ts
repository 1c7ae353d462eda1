/**
 * A recipe: what to do to a whole model, as plain data (JSON, versioned) — torchao's `quantize_(model,
 * config)` config, llama-quantize's command line. One library verb runs it (algos/quantize.ts
 * `quantize(model, recipe)`); the CLI only builds recipes from flags; the canonical JSON of the recipe
 * travels in the output file's metadata (`quantlab.recipe`) so any result can be reproduced from its file.
 *
 *   {
 *     "kind": "quantlab.recipe", "version": 1,
 *     "target": {"spec": "int4:g32:asym"}            — every selected tensor becomes that QuantizedTensor
 *            | {"preset": "Q4_K_M", "pure": false, "refine": false}   — llama-quantize's mix, ggml blocks
 *     "method": "rtn" | "gptq" | "awq" | "awq+gptq" | "hqq" | "smoothquant" | "mixed" | "qat",
 *     "options": {…},                                — the method's own knobs, every one filled in
 *     "seed": 0,                                     — stochastic rounding, rotations, calibration windows
 *     "rotate": {"seed": 0, "mode": "residual"},     — QuaRot rotations (optional; mode "full" by default)
 *     "calibration": {"source": {"text": {"name": "calib.txt", "sha256": "…"}} | {"model": true},
 *                     "windows": {"kind": "random", "samples": 128, "seq": 256}
 *                              | {"kind": "consecutive", "ctx": 256, "maxTokens": 4096}
 *                              | {"kind": "chunks", "ctx": 512, "maxChunks": null}
 *                              | {"kind": "stream"}},
 *     "imatrix": {"source": "calibration"} | {"file": {"name": "x.dat", "sha256": "…"}},   — presets
 *     "tensors": {"only": ["blk.*"], "keepFloat": ["blk.*.ffn_down.weight"]},
 *     "overrides": [{"match": "blk.0.*", "spec": "int8:channel"} | {"match": "output.weight", "type": "Q8_0"}]
 *   }
 *
 * Validation is strict: an unknown field, an option a method does not have, or a field that has no
 * effect for the target/method (calibration a method does not use, `pure` on a spec target …) is an
 * error naming it — a recipe never silently does less than it says.
 */
import { QuantlabError } from "../core/errors.js";

export const RECIPE_KIND = "quantlab.recipe";
export const RECIPE_VERSION = 1;
/** file metadata key (safetensors __metadata__, GGUF string KV) holding the canonical recipe JSON */
export const RECIPE_METADATA_KEY = "quantlab.recipe";

export const METHOD_NAMES = ["rtn", "gptq", "awq", "awq+gptq", "hqq", "smoothquant", "mixed", "qat"] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

/** A file the recipe depends on, by name (as given) and content hash (checked when the recipe is run). */
export interface FileRef {
  name: string;
  sha256: string;
}

export type CalibrationWindows =
  /** GPTQ's recipe: `samples` windows of BOS + seq−1 tokens from seeded random offsets (algos/calib.ts) */
  | { kind: "random"; samples: number; seq: number }
  /** evaluation-style windows of ctx (BOS + ctx−1 tokens) over the first maxTokens tokens (eval/windows.ts) */
  | { kind: "consecutive"; ctx: number; maxTokens: number }
  /** llama-imatrix chunks: BOS + ctx−1 tokens each, at most maxChunks (null: the whole text) */
  | { kind: "chunks"; ctx: number; maxChunks: number | null }
  /** the whole token stream, sampled by the method itself (QAT) */
  | { kind: "stream" };

export interface RecipeCalibration {
  source: { text: FileRef } | { model: true };
  windows: CalibrationWindows;
}

export type RecipeTarget = { spec: string } | { preset: string; pure: boolean; refine: boolean };

export interface RecipeOverride {
  /** tensor-name glob (`*`, `?`, `{a,b}`) */
  match: string;
  /** spec targets: this tensor's spec instead of the target's */
  spec?: string;
  /** preset targets: this tensor's ggml type instead of the mix's (llama-quantize --tensor-type) */
  type?: string;
}

export type OptionValue = number | boolean | string;

export interface Recipe {
  kind: typeof RECIPE_KIND;
  version: typeof RECIPE_VERSION;
  target: RecipeTarget;
  method: MethodName;
  /** the method's options, every one present (defaults filled in) */
  options: Record<string, OptionValue>;
  seed: number;
  /**
   * QuaRot rotations: the residual-stream rotation R1 fused into the weights, plus (mode "full", the
   * default) the FFN-down input rotation R4 applied online by the forward pass. "residual" keeps R1 only:
   * a plain model llama.cpp runs (GGUF presets take only this mode).
   */
  rotate?: { seed: number; mode?: "residual" };
  calibration?: RecipeCalibration;
  /** forward "int": collected on the integer calibration GEMM (algos/imatrix.ts CollectImatrixOptions.forward), intBits its code bits */
  imatrix?: { source: "calibration"; forward?: "int"; intBits?: number } | { file: FileRef };
  tensors?: { only?: string[]; keepFloat?: string[] };
  overrides?: RecipeOverride[];
}

/** One option of a method: its type, default and a check. */
export interface OptionDef {
  type: "number" | "integer" | "boolean" | "string";
  default: OptionValue;
  /** what it does (for --help and errors) */
  doc: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
}

export type OptionSchema = Readonly<Record<string, OptionDef>>;

// ---------------------------------------------------------------------------------------------------
// Parsing untrusted JSON into a Recipe (field by field, every error names its path)

type Json = unknown;

function err(path: string, msg: string): never {
  throw new QuantlabError("E_ARG", `recipe: ${path}: ${msg}`);
}

function obj(v: Json, path: string): Record<string, Json> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) err(path, `expected an object, got ${JSON.stringify(v)}`);
  return v as Record<string, Json>;
}

function onlyKeys(o: Record<string, Json>, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) err(`${path}.${k}`, `unknown field (known: ${allowed.join(", ")})`);
}

function str(v: Json, path: string): string {
  if (typeof v !== "string" || v.length === 0) err(path, `expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function bool(v: Json, path: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") err(path, `expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

function int(v: Json, path: string, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) err(path, `expected an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function globs(v: Json, path: string): string[] {
  if (!Array.isArray(v) || v.length === 0) err(path, "expected a non-empty array of tensor-name globs");
  return v.map((g, i) => str(g, `${path}[${i}]`));
}

function fileRef(v: Json, path: string): FileRef {
  const o = obj(v, path);
  onlyKeys(o, ["name", "sha256"], path);
  const sha = str(o.sha256, `${path}.sha256`);
  if (!/^[0-9a-f]{64}$/.test(sha)) err(`${path}.sha256`, "expected 64 lowercase hex digits");
  return { name: str(o.name, `${path}.name`), sha256: sha };
}

function windows(v: Json, path: string): CalibrationWindows {
  const o = obj(v, path);
  const kind = o.kind;
  switch (kind) {
    case "random":
      onlyKeys(o, ["kind", "samples", "seq"], path);
      return { kind, samples: int(o.samples, `${path}.samples`, 1), seq: int(o.seq, `${path}.seq`, 2) };
    case "consecutive":
      onlyKeys(o, ["kind", "ctx", "maxTokens"], path);
      return { kind, ctx: int(o.ctx, `${path}.ctx`, 2), maxTokens: int(o.maxTokens, `${path}.maxTokens`, 1) };
    case "chunks":
      onlyKeys(o, ["kind", "ctx", "maxChunks"], path);
      return { kind, ctx: int(o.ctx, `${path}.ctx`, 2), maxChunks: o.maxChunks === null || o.maxChunks === undefined ? null : int(o.maxChunks, `${path}.maxChunks`, 1) };
    case "stream":
      onlyKeys(o, ["kind"], path);
      return { kind };
    default:
      return err(`${path}.kind`, `expected "random", "consecutive", "chunks" or "stream", got ${JSON.stringify(kind)}`);
  }
}

function calibration(v: Json, path: string): RecipeCalibration {
  const o = obj(v, path);
  onlyKeys(o, ["source", "windows"], path);
  const s = obj(o.source, `${path}.source`);
  let source: RecipeCalibration["source"];
  if ("text" in s) {
    onlyKeys(s, ["text"], `${path}.source`);
    source = { text: fileRef(s.text, `${path}.source.text`) };
  } else if ("model" in s) {
    onlyKeys(s, ["model"], `${path}.source`);
    if (s.model !== true) err(`${path}.source.model`, "expected true");
    source = { model: true };
  } else return err(`${path}.source`, 'expected {"text": {name, sha256}} or {"model": true}');
  return { source, windows: windows(o.windows, `${path}.windows`) };
}

/**
 * A recipe from JSON (a parsed object or its text), checked field by field. Method options are checked
 * against `schemaOf(method)` and their defaults filled in, so the result is the canonical recipe.
 */
export function parseRecipe(input: Json, schemaOf: (m: MethodName) => OptionSchema, where = "recipe"): Recipe {
  const o = obj(typeof input === "string" ? parseJson(input, where) : input, "$");
  onlyKeys(o, ["kind", "version", "target", "method", "options", "seed", "rotate", "calibration", "imatrix", "tensors", "overrides"], "$");
  if (o.kind !== RECIPE_KIND) err("$.kind", `expected "${RECIPE_KIND}", got ${JSON.stringify(o.kind)}`);
  if (o.version !== RECIPE_VERSION) err("$.version", `this quantlab reads version ${RECIPE_VERSION}, got ${JSON.stringify(o.version)}`);
  const t = obj(o.target, "$.target");
  let target: RecipeTarget;
  if ("spec" in t) {
    onlyKeys(t, ["spec"], "$.target");
    target = { spec: str(t.spec, "$.target.spec") };
  } else if ("preset" in t) {
    onlyKeys(t, ["preset", "pure", "refine"], "$.target");
    target = { preset: str(t.preset, "$.target.preset"), pure: bool(t.pure, "$.target.pure", false), refine: bool(t.refine, "$.target.refine", false) };
  } else return err("$.target", 'expected {"spec": …} or {"preset": …}');
  const method = (o.method ?? "rtn") as MethodName;
  if (!(METHOD_NAMES as readonly string[]).includes(method)) err("$.method", `${JSON.stringify(o.method)}; valid methods: ${METHOD_NAMES.join(", ")}`);
  const r: Recipe = {
    kind: RECIPE_KIND,
    version: RECIPE_VERSION,
    target,
    method,
    options: fillOptions(method, o.options === undefined ? {} : obj(o.options, "$.options"), schemaOf(method), "$.options"),
    seed: o.seed === undefined ? 0 : int(o.seed, "$.seed", 0),
  };
  if (o.rotate !== undefined) {
    const ro = obj(o.rotate, "$.rotate");
    onlyKeys(ro, ["seed", "mode"], "$.rotate");
    r.rotate = { seed: ro.seed === undefined ? r.seed : int(ro.seed, "$.rotate.seed", 0) };
    if (ro.mode !== undefined && ro.mode !== "full") {
      if (ro.mode !== "residual") err("$.rotate.mode", `expected "full" (residual + online FFN-down rotation) or "residual", got ${JSON.stringify(ro.mode)}`);
      r.rotate.mode = "residual";
    }
  }
  if (o.calibration !== undefined) r.calibration = calibration(o.calibration, "$.calibration");
  if (o.imatrix !== undefined) {
    const im = obj(o.imatrix, "$.imatrix");
    if ("source" in im) {
      onlyKeys(im, ["source", "forward", "intBits"], "$.imatrix");
      if (im.source !== "calibration") err("$.imatrix.source", 'expected "calibration"');
      r.imatrix = { source: "calibration" };
      if (im.forward !== undefined) {
        if (im.forward !== "int") err("$.imatrix.forward", 'expected "int" (or no key: the exact f32 forward)');
        r.imatrix.forward = "int";
      }
      if (im.intBits !== undefined) {
        if (r.imatrix.forward !== "int") err("$.imatrix.intBits", 'needs "forward": "int"');
        if (typeof im.intBits !== "number" || !Number.isInteger(im.intBits) || im.intBits < 2 || im.intBits > 16) err("$.imatrix.intBits", "expected an integer 2…16");
        r.imatrix.intBits = im.intBits as number;
      }
    } else if ("file" in im) {
      onlyKeys(im, ["file"], "$.imatrix");
      r.imatrix = { file: fileRef(im.file, "$.imatrix.file") };
    } else err("$.imatrix", 'expected {"source": "calibration"} or {"file": {name, sha256}}');
  }
  if (o.tensors !== undefined) {
    const ts = obj(o.tensors, "$.tensors");
    onlyKeys(ts, ["only", "keepFloat"], "$.tensors");
    r.tensors = {};
    if (ts.only !== undefined) r.tensors.only = globs(ts.only, "$.tensors.only");
    if (ts.keepFloat !== undefined) r.tensors.keepFloat = globs(ts.keepFloat, "$.tensors.keepFloat");
  }
  if (o.overrides !== undefined) {
    if (!Array.isArray(o.overrides) || o.overrides.length === 0) err("$.overrides", "expected a non-empty array");
    r.overrides = o.overrides.map((x, i) => {
      const p = `$.overrides[${i}]`;
      const ov = obj(x, p);
      onlyKeys(ov, ["match", "spec", "type"], p);
      const out: RecipeOverride = { match: str(ov.match, `${p}.match`) };
      if (ov.spec !== undefined) out.spec = str(ov.spec, `${p}.spec`);
      if (ov.type !== undefined) out.type = str(ov.type, `${p}.type`);
      if ((out.spec === undefined) === (out.type === undefined)) err(p, 'give exactly one of "spec" (spec targets) or "type" (preset targets)');
      return out;
    });
  }
  return r;
}

/** JSON text → value; E_ARG naming `where` when it is not JSON. */
export function parseJson(text: string, where: string): Json {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new QuantlabError("E_ARG", `${where}: not valid JSON (${(e as Error).message})`);
  }
}

/** Checks `given` against a method's option schema and fills in the defaults (in schema order). */
export function fillOptions(method: string, given: Record<string, Json>, schema: OptionSchema, path = "options"): Record<string, OptionValue> {
  for (const k of Object.keys(given)) {
    if (!(k in schema)) {
      const known = Object.keys(schema);
      err(`${path}.${k}`, `method ${method} has no option "${k}"${known.length ? ` (its options: ${known.join(", ")})` : " (it takes no options)"}`);
    }
  }
  const out: Record<string, OptionValue> = {};
  for (const [k, d] of Object.entries(schema)) {
    const v = given[k] ?? d.default;
    const p = `${path}.${k}`;
    switch (d.type) {
      case "boolean":
        if (typeof v !== "boolean") err(p, `expected true or false, got ${JSON.stringify(v)}`);
        break;
      case "string":
        if (typeof v !== "string" || (d.choices && !d.choices.includes(v))) err(p, `expected ${d.choices ? d.choices.map((c) => `"${c}"`).join(" or ") : "a string"}, got ${JSON.stringify(v)}`);
        break;
      default:
        if (typeof v !== "number" || !Number.isFinite(v) || (d.type === "integer" && !Number.isInteger(v))) err(p, `expected ${d.type === "integer" ? "an integer" : "a number"}, got ${JSON.stringify(v)}`);
        if ((d.min !== undefined && v < d.min) || (d.max !== undefined && v > d.max)) err(p, `${v} is outside [${d.min ?? "-∞"}, ${d.max ?? "∞"}]`);
    }
    out[k] = v as OptionValue;
  }
  return out;
}

/** The canonical JSON text of a recipe: fields in a fixed order, no whitespace (what files carry). */
export function recipeToJson(r: Recipe, space?: number): string {
  const ordered: Record<string, unknown> = { kind: r.kind, version: r.version, target: r.target, method: r.method, options: r.options, seed: r.seed };
  if (r.rotate) ordered.rotate = r.rotate;
  if (r.calibration) ordered.calibration = r.calibration;
  if (r.imatrix) ordered.imatrix = r.imatrix;
  if (r.tensors) ordered.tensors = r.tensors;
  if (r.overrides) ordered.overrides = r.overrides;
  return JSON.stringify(ordered, null, space);
}

export function isSpecTarget(t: RecipeTarget): t is { spec: string } {
  return "spec" in t;
}

/** sha256 of bytes as lowercase hex, through Web Crypto (Node ≥ 19 and browsers): isomorphic. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  let s = "";
  for (const b of d) s += b.toString(16).padStart(2, "0");
  return s;
}
