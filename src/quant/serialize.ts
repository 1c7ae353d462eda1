/**
 * QTensor ↔ plain safetensors entries. The io layer writes/reads the container; this module only maps one
 * quantized tensor to named byte arrays and one metadata string (layout documented in docs/quant-format.md):
 *
 *   <name>.qcodes     U8   [⌈n·bits/8⌉] (or [⌈n/5⌉] for ternary trits)  packed codes, row-major
 *   <name>.qscale     F32|F16|BF16 [nGroups], or U8 [nGroups] (e8m0, fp8, u8), or U8 [⌈nGroups·k/8⌉] (u6, u4 packed)
 *   <name>.qsuper     F32  [nSuperBlocks]         super-scales of double-quantized scales
 *   <name>.qzero      U8   [⌈nGroups·bits/8⌉] packed integer zero points (asym), or F32|F16 [nGroups] (asymf)
 *   <name>.qcodebook  F32  [levels]               learned codebooks only
 *   <name>.qoutidx    I32  [k]  /  <name>.qoutval F16 [k]    outlier side table
 * Entry dtypes use the core DType names (u8, i32, f16, bf16, f32), as io/safetensors.ts does.
 *   __metadata__["quantlab.quant.<name>"] = JSON {"spec": canonical spec, "shape": [...], "layout": 1}
 * All multi-byte values little-endian. Only the metadata key marks a tensor as quantized.
 */
import { QuantlabError } from "../core/errors.js";
import { f16BitsToF32, f32ToF16Bits } from "../core/f16.js";
import { numel, type DType } from "../core/tensor.js";
import { groupLayout } from "./granularity.js";
import { pack, packedBytes, packedTritBytes, unpack } from "./pack.js";
import { resolveElement } from "./elements.js";
import { SpecQuantizer } from "./quantizer.js";
import { loadScales, SCALE_DTYPE_BITS, type StoredScales } from "./scales.js";
import { parseSpec, printSpec, type QuantSpec } from "./spec.js";
import { QTensor, type QTensorParts, type ZeroPoints } from "./tensor.js";

export const QUANT_LAYOUT_VERSION = 1;
export const QUANT_METADATA_PREFIX = "quantlab.quant.";

/** the core DType names the io layer's safetensors reader/writer use */
export type EntryDtype = Extract<DType, "u8" | "i32" | "f16" | "bf16" | "f32">;

/** One tensor as safetensors stores it: dtype string, shape, little-endian bytes. */
export interface TensorEntry {
  dtype: EntryDtype;
  shape: number[];
  bytes: Uint8Array;
  /** the bytes were read for this tensor alone (a loader's fresh buffer, or memory placed for the kernels):
   * fromEntries uses them in place instead of copying (typed views when aligned) */
  owned?: boolean;
}

export interface QuantEntries {
  tensors: Record<string, TensorEntry>;
  metadata: Record<string, string>;
}

const SUFFIXES = ["qcodes", "qscale", "qsuper", "qzero", "qcodebook", "qoutidx", "qoutval"] as const;

function bytesOf(a: Uint8Array | Uint16Array | Int32Array | Float32Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

function entry(dtype: EntryDtype, a: Uint8Array | Uint16Array | Int32Array | Float32Array): TensorEntry {
  return { dtype, shape: [a.length], bytes: bytesOf(a) };
}

/** The safetensors entries + metadata of one quantized tensor. */
export function toEntries(name: string, q: QTensor): QuantEntries {
  const t: Record<string, TensorEntry> = {};
  t[`${name}.qcodes`] = entry("u8", q.codes);
  const s = q.scales;
  if (s) {
    switch (s.dtype) {
      case "f32": t[`${name}.qscale`] = entry("f32", s.values); break;
      case "f16": t[`${name}.qscale`] = entry("f16", s.codes!); break;
      case "bf16": t[`${name}.qscale`] = entry("bf16", s.codes!); break;
      case "e8m0": case "fp8": case "u8": t[`${name}.qscale`] = entry("u8", Uint8Array.from(s.codes!)); break;
      case "u6": case "u4": t[`${name}.qscale`] = entry("u8", pack(s.codes!, SCALE_DTYPE_BITS[s.dtype])); break;
    }
    if (s.superScales) t[`${name}.qsuper`] = entry("f32", s.superScales);
  }
  const z = q.zeros;
  if (z) {
    if (z.kind === "int") t[`${name}.qzero`] = entry("u8", pack(z.values, q.specObject.bits));
    else if (z.dtype === "f32") t[`${name}.qzero`] = entry("f32", z.values);
    else {
      const h = new Uint16Array(z.values.length);
      for (let i = 0; i < h.length; i++) h[i] = f32ToF16Exact(z.values[i]!);
      t[`${name}.qzero`] = entry("f16", h);
    }
  }
  if (q.codebook) t[`${name}.qcodebook`] = entry("f32", q.codebook);
  if (q.outliers) {
    t[`${name}.qoutidx`] = entry("i32", Int32Array.from(q.outliers.indices));
    t[`${name}.qoutval`] = entry("f16", q.outliers.valuesF16);
  }
  const metadata = { [QUANT_METADATA_PREFIX + name]: JSON.stringify({ spec: q.spec, shape: [...q.shape], layout: QUANT_LAYOUT_VERSION }) };
  return { tensors: t, metadata };
}

function f32ToF16Exact(v: number): number {
  const h = f32ToF16Bits(v);
  if (f16BitsToF32(h) !== v && !Number.isNaN(v)) throw new QuantlabError("E_INTERNAL", `zero point ${v} is not an f16 value`);
  return h;
}

/** Names of quantized tensors described in a metadata map. */
export function quantizedNames(metadata: Record<string, string>): string[] {
  return Object.keys(metadata).filter((k) => k.startsWith(QUANT_METADATA_PREFIX)).map((k) => k.slice(QUANT_METADATA_PREFIX.length));
}

/** True when a safetensors tensor name is one of the side arrays of a quantized tensor. */
export function isQuantEntryName(tensorName: string): boolean {
  const dot = tensorName.lastIndexOf(".");
  return dot > 0 && (SUFFIXES as readonly string[]).includes(tensorName.slice(dot + 1));
}

function typed(e: TensorEntry, what: string, expect: EntryDtype[], count?: number): Uint8Array | Uint16Array | Int32Array | Float32Array {
  if (!expect.includes(e.dtype)) throw new QuantlabError("E_FORMAT", `${what}: dtype ${e.dtype}, expected ${expect.join(" or ")}`);
  const size = e.dtype === "u8" ? 1 : e.dtype === "i32" || e.dtype === "f32" ? 4 : 2;
  if (e.bytes.length % size !== 0) throw new QuantlabError("E_FORMAT", `${what}: ${e.bytes.length} bytes is not a whole number of ${e.dtype}`);
  const n = e.bytes.length / size;
  if (count !== undefined && n !== count) throw new QuantlabError("E_FORMAT", `${what}: ${n} elements, expected ${count}`);
  if (e.owned && e.bytes.byteOffset % size === 0) {
    const b = e.bytes.buffer, o = e.bytes.byteOffset;
    switch (e.dtype) {
      case "u8": return new Uint8Array(b, o, n);
      case "f16": case "bf16": return new Uint16Array(b, o, n);
      case "i32": return new Int32Array(b, o, n);
      case "f32": return new Float32Array(b, o, n);
    }
  }
  const copy = e.bytes.slice().buffer;
  switch (e.dtype) {
    case "u8": return new Uint8Array(copy);
    case "f16": case "bf16": return new Uint16Array(copy);
    case "i32": return new Int32Array(copy);
    case "f32": return new Float32Array(copy);
  }
}

/** One safetensors entry a quantized tensor needs, as the header must describe it. */
export interface QuantEntryNeed {
  /** full tensor name, e.g. "blk.0.attn_q.weight.qscale" */
  name: string;
  /** dtypes allowed */
  dtypes: EntryDtype[];
  /** element count; undefined: any (codebooks, outlier indices); "outliers": as many as the .qoutidx entry */
  count?: number | "outliers";
  /** must be present (the outlier values are required whenever the indices are) */
  required: boolean;
}

/** What a quantized tensor is and which entries hold it, from its metadata alone (no bytes needed). */
export interface QuantEntryLayout {
  name: string;
  spec: QuantSpec;
  shape: number[];
  entries: QuantEntryNeed[];
}

/**
 * The entries of quantized tensor `name` (spec and shape from its "quantlab.quant.<name>" metadata):
 * the one description both the header check (checkQuantEntries, at open time) and the decoder
 * (fromEntries) follow, so the two cannot disagree.
 */
export function quantEntryLayout(name: string, metadata: Record<string, string>): QuantEntryLayout {
  const metaText = metadata[QUANT_METADATA_PREFIX + name];
  if (metaText === undefined) throw new QuantlabError("E_FORMAT", `${name}: no "${QUANT_METADATA_PREFIX}${name}" metadata`);
  let meta: { spec?: unknown; shape?: unknown; layout?: unknown };
  try { meta = JSON.parse(metaText) as typeof meta; } catch { throw new QuantlabError("E_FORMAT", `${name}: quant metadata is not JSON`); }
  if (meta.layout !== QUANT_LAYOUT_VERSION) throw new QuantlabError("E_UNSUPPORTED", `${name}: quant layout ${String(meta.layout)} (this reader knows ${QUANT_LAYOUT_VERSION})`);
  if (typeof meta.spec !== "string") throw new QuantlabError("E_FORMAT", `${name}: quant metadata has no spec string`);
  const shape = meta.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw new QuantlabError("E_FORMAT", `${name}: bad shape in quant metadata`);
  const spec = parseSpec(meta.spec);
  const n = numel(shape as number[]);
  const el = resolveElement(spec.format, spec.bits);
  const perCode = el?.kind === "learned" ? el.dim : 1; // vector quantization: one code per sub-vector
  const codeBytes = spec.packing === "trits" ? packedTritBytes(n) : packedBytes(n / perCode, spec.bits);
  const e = (suffix: string, dtypes: EntryDtype[], count: QuantEntryNeed["count"], required = true): QuantEntryNeed => ({ name: `${name}.${suffix}`, dtypes, count, required });
  const entries: QuantEntryNeed[] = [e("qcodes", ["u8"], codeBytes)];
  const nG = groupLayout(shape as number[], spec.granularity).nGroups;
  if (spec.granularity.kind !== "none") {
    const dtype = spec.scale.dtype;
    if (dtype === "f32" || dtype === "f16" || dtype === "bf16") entries.push(e("qscale", [dtype], nG));
    else if (dtype === "u6" || dtype === "u4") entries.push(e("qscale", ["u8"], packedBytes(nG, SCALE_DTYPE_BITS[dtype])));
    else entries.push(e("qscale", ["u8"], nG));
    if (dtype !== "f32" && spec.scale.superBlock !== undefined) {
      const sb = spec.scale.superBlock === "tensor" ? Math.max(1, nG) : spec.scale.superBlock;
      entries.push(e("qsuper", ["f32"], Math.ceil(nG / sb)));
    }
  }
  if (spec.scheme === "asym") entries.push(e("qzero", ["u8"], packedBytes(nG, spec.bits)));
  else if (spec.scheme === "asymf") entries.push(e("qzero", [spec.scale.dtype === "f32" ? "f32" : "f16"], nG));
  entries.push(e("qcodebook", ["f32"], undefined, false));
  entries.push(e("qoutidx", ["i32"], undefined, spec.outlierPercent !== undefined));
  entries.push(e("qoutval", ["f16"], "outliers", false));
  return { name, spec, shape: shape as number[], entries };
}

const ENTRY_DTYPE_BYTES: Record<EntryDtype, number> = { u8: 1, i32: 4, f16: 2, bf16: 2, f32: 4 };

/**
 * Checks a quantized tensor's entries against the header alone (dtype and element count of each, the
 * required ones present): a bad file fails when it is opened, before any bytes are read. Returns the
 * entries present, whose bytes together are the tensor's storage (storageBits = 8 × their sum).
 */
export function checkQuantEntries(layout: QuantEntryLayout, info: (tensorName: string) => { dtype: string; byteLength: number } | undefined): { name: string; byteLength: number }[] {
  const present: { name: string; byteLength: number }[] = [];
  let outliers: number | undefined;
  for (const need of layout.entries) {
    const i = info(need.name);
    if (!i) {
      if (need.required || (need.count === "outliers" && outliers !== undefined)) throw new QuantlabError("E_FORMAT", `${layout.name}: missing tensor ${need.name} for spec ${printSpec(layout.spec)}`);
      continue;
    }
    const dtype = i.dtype.toLowerCase() as EntryDtype;
    if (!need.dtypes.includes(dtype)) throw new QuantlabError("E_FORMAT", `${need.name}: dtype ${dtype}, expected ${need.dtypes.join(" or ")}`);
    const size = ENTRY_DTYPE_BYTES[dtype];
    if (i.byteLength % size !== 0) throw new QuantlabError("E_FORMAT", `${need.name}: ${i.byteLength} bytes is not a whole number of ${dtype}`);
    const count = i.byteLength / size;
    const want = need.count === "outliers" ? outliers : need.count;
    if (want !== undefined && count !== want) throw new QuantlabError("E_FORMAT", `${need.name}: ${count} elements, expected ${want}`);
    if (need.name.endsWith(".qoutidx")) outliers = count;
    present.push({ name: need.name, byteLength: i.byteLength });
  }
  return present;
}

/**
 * Rebuilds a QTensor from entries + metadata. `get` returns the entry of a full tensor name or undefined.
 * Every size is checked against the spec and shape; a mismatch is E_FORMAT naming the tensor.
 */
export function fromEntries(name: string, get: (tensorName: string) => TensorEntry | undefined, metadata: Record<string, string>): QTensor {
  const layout = quantEntryLayout(name, metadata);
  const { spec, shape } = layout;
  const n = numel(shape);
  checkQuantEntries(layout, (tn) => { const e = get(tn); return e && { dtype: e.dtype, byteLength: e.bytes.length }; });
  const need = (suffix: string): { e: TensorEntry; dtypes: EntryDtype[]; count: number | undefined; what: string } => {
    const what = `${name}.${suffix}`;
    const e = get(what)!;
    const nd = layout.entries.find((x) => x.name === what)!;
    return { e, dtypes: nd.dtypes, count: typeof nd.count === "number" ? nd.count : undefined, what };
  };
  const arr = (suffix: string) => { const x = need(suffix); return typed(x.e, x.what, x.dtypes, x.count); };
  const parts: QTensorParts = { spec, shape, codes: arr("qcodes") as Uint8Array };
  const nG = groupLayout(shape, spec.granularity).nGroups;
  if (spec.granularity.kind !== "none") {
    const dtype = spec.scale.dtype;
    let stored: StoredScales;
    if (dtype === "f32") stored = { dtype, values: arr("qscale") as Float32Array };
    else {
      let codes: Uint16Array;
      if (dtype === "f16" || dtype === "bf16") codes = arr("qscale") as Uint16Array;
      else if (dtype === "u6" || dtype === "u4") codes = unpack(arr("qscale") as Uint8Array, SCALE_DTYPE_BITS[dtype], nG) as Uint16Array;
      else codes = Uint16Array.from(arr("qscale"));
      const base: Omit<StoredScales, "values"> = { dtype, codes };
      if (dtype === "e8m0") base.e8m0Offset = new SpecQuantizer(spec).e8m0Offset;
      if (spec.scale.superBlock !== undefined) {
        base.superBlock = spec.scale.superBlock === "tensor" ? Math.max(1, nG) : spec.scale.superBlock;
        base.superScales = arr("qsuper") as Float32Array;
      }
      stored = loadScales(base, nG);
    }
    parts.scales = stored;
  }
  if (spec.scheme === "asym") {
    parts.zeros = { kind: "int", values: unpack(arr("qzero") as Uint8Array, spec.bits, nG) as Uint16Array };
  } else if (spec.scheme === "asymf") {
    const dtype = spec.scale.dtype === "f32" ? "f32" : "f16";
    const raw = arr("qzero");
    const values = dtype === "f32" ? (raw as Float32Array) : Float32Array.from(raw as Uint16Array, (h) => f16BitsToF32(h));
    parts.zeros = { kind: "float", dtype, values } satisfies ZeroPoints;
  }
  if (get(`${name}.qcodebook`)) parts.codebook = arr("qcodebook") as Float32Array;
  if (get(`${name}.qoutidx`)) {
    const idx = Uint32Array.from(arr("qoutidx") as Int32Array);
    const val = arr("qoutval") as Uint16Array;
    for (const i of idx) if (i >= n) throw new QuantlabError("E_FORMAT", `${name}.qoutidx: index ${i} outside ${n} elements`);
    parts.outliers = { indices: idx, valuesF16: val };
  }
  const q = new QTensor(parts);
  if (q.spec !== printSpec(spec)) throw new QuantlabError("E_INTERNAL", "spec changed in round trip");
  return q;
}
