/**
 * GGUF → GGUF re-encoding that works on any GGUF, model or not: every metadata pair is kept (with its
 * type), tensor names, shapes and order are kept, and each tensor is either copied byte for byte or
 * re-encoded to the requested type (1-D tensors stay F32, rows that do not fit the block fall back to
 * F16, as in weights-encode.ts). Tensors stream one at a time.
 */
import { noProgress, type Progress } from "../core/progress.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../ggml/types.js";
import { GgufValueType, GgufWriter, metaString, type ByteSink, type GgufFile } from "./gguf.js";
import { checkGgufModelCounts, ggufConfig } from "./gguf-model.js";
import { QuantlabError } from "../core/errors.js";
import { chooseType, encodeWeightChunked } from "./weights-encode.js";
import { refGgmlEncoder } from "../ggml/encoder.js";
import type { WriteReport } from "./gguf-model.js";
import { Tensor, viewAs } from "../core/tensor.js";
import type { Weight } from "../core/weight.js";
import type { GgmlEncoder } from "../ggml/encoder.js";
import { GGML_CODEC_TYPES } from "../ggml/index.js";
import { checkFiniteWeight } from "../model/finite.js";

export interface ConvertGgufOptions {
  type?: GgmlType;
  /** encodes tensors re-encoded to a ggml block type (default: the TypeScript reference, one thread) */
  encoder?: GgmlEncoder;
  progress?: Progress;
  /** copy or re-encode tensors holding NaN/Inf instead of refusing them (model/finite.ts) */
  allowNonFinite?: boolean;
}

function asWeight(type: GgmlType, shape: number[], bytes: Uint8Array): Weight {
  const dtype = type === GgmlType.F32 ? "f32" : type === GgmlType.F16 ? "f16" : type === GgmlType.BF16 ? "bf16" : undefined;
  if (dtype) return { kind: "dense", tensor: new Tensor(dtype, shape, viewAs(dtype, bytes.buffer, bytes.byteOffset, shape.reduce((a, b) => a * b, 1))) };
  return { kind: "ggml", type, shape, data: bytes };
}

/** Float types and the ggml block types with a decoder (the rest: integer tensors, unknown layouts). */
function decodable(t: GgmlType): boolean {
  return t === GgmlType.F32 || t === GgmlType.F16 || t === GgmlType.BF16 || (GGML_CODEC_TYPES as readonly GgmlType[]).includes(t);
}

export async function convertGguf(f: GgufFile, sink: ByteSink, opts: ConvertGgufOptions = {}, name = "output"): Promise<WriteReport> {
  // metadata is copied as it is: a corrupt count must not travel into the output
  checkGgufModelCounts(f);
  if (metaString(f, "general.architecture") === "llama") {
    try {
      ggufConfig(f);
    } catch (e) {
      if (!(e instanceof QuantlabError && e.code === "E_UNSUPPORTED")) throw e;
    }
  }
  const plan = f.tensors.map((t) => ({ t, ...chooseType(t.shape, opts.type, t.type) }));
  const w = new GgufWriter(sink, name);
  for (const [k, v] of f.metadata) {
    if (k === "general.file_type" && opts.type !== undefined) continue;
    w.setKV(k, v);
  }
  if (opts.type !== undefined && f.metadata.has("general.architecture")) {
    const ft = GGML_TYPES[opts.type].ftype;
    if (ft !== undefined) w.setKV("general.file_type", { type: GgufValueType.UINT32, value: ft });
  }
  for (const p of plan) w.addTensor({ name: p.t.name, shape: p.t.shape, type: p.type });
  await w.writeHeader();
  const progress = opts.progress ?? noProgress;
  progress.start(plan.length, "converting");
  const report: WriteReport = { tensors: [], bytes: 0 };
  for (const p of plan) {
    const raw = await f.readTensorBytes(p.t);
    const src = asWeight(p.t.type, p.t.shape, raw);
    // types we cannot decode (and integer tensors) hold no float to check; every other one is checked
    const check = !opts.allowNonFinite && decodable(p.t.type);
    const maxAbs = check ? checkFiniteWeight(src, p.t.name, f.name, `refusing to write ${name}`) : undefined;
    let bytes: number;
    if (p.type === p.t.type) {
      await w.writeTensorData(p.t.name, raw);
      bytes = raw.length;
    } else {
      bytes = await encodeWeightChunked(src, `${f.name}: ${p.t.name}`, p.type, opts.encoder ?? refGgmlEncoder, check ? { where: f.name, tensor: p.t.name, ...(maxAbs !== undefined ? { maxAbs } : {}) } : undefined, (b) => w.writeTensorData(p.t.name, b));
    }
    report.tensors.push({ name: p.t.name, shape: p.t.shape, type: ggmlTypeName(p.type), bytes, ...(p.fallback ? { fallback: p.fallback } : {}) });
    report.bytes += bytes;
    progress.tick();
  }
  progress.done();
  w.finish();
  return report;
}
