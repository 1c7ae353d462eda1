/**
 * Whole-model quantization to llama.cpp block types with a llama-quantize preset (Q4_K_M, Q8_0, …):
 * the mix (ggml/mix.ts) picks each tensor's type, ggml's quantizers (ggml/codecs.ts, byte-identical to
 * llama.cpp's; with an importance matrix their `_impl` searches) encode it, and the result is a Model
 * whose quantized tensors are `{kind: "ggml"}` blocks, ready for the GGUF writer or the forward pass.
 * Without `refine` the bytes equal what llama-quantize writes from the same F32 weights.
 */
import { QuantlabError } from "../core/errors.js";
import { f32ArrayToBf16, f32ArrayToF16 } from "../core/f16.js";
import { noProgress, type Progress } from "../core/progress.js";
import { Tensor } from "../core/tensor.js";
import { ggmlUsesImatrix, hasGgmlCodec, quantizeRow } from "../ggml/codecs.js";
import type { Imatrix } from "../ggml/imatrix.js";
import { ggmlGptqSupports, gptqGgml } from "./ggml-gptq.js";
import { GGML_PRESETS, ggmlMix, parseGgmlPreset, type GgmlPreset, type MixChoice } from "../ggml/mix.js";
import { GgmlType, ggmlRowBytes, ggmlTypeName } from "../ggml/types.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import type { Model } from "../model/weights.js";
import { weightShape, type Weight } from "../core/weight.js";

export interface GgmlQuantizeOptions {
  /** llama-quantize preset name, e.g. "Q4_K_M" */
  type: GgmlPreset | string;
  /** importance matrix per weight name (mean x² per input column), e.g. from collectImatrix */
  imatrix?: Imatrix;
  /** every quantizable tensor at the preset's base type (llama-quantize --pure) */
  pure?: boolean;
  /** quantlab's extra scale search after llama.cpp's (ggml/codecs.ts QuantizeOptions.refine) */
  refine?: boolean;
  /**
   * GPTQ codes on llama.cpp's scales (algos/ggml-gptq.ts) for tensors with an input Hessian here (weight
   * name → width × width, e.g. collectImatrix's `hessians`) and a supported type; others as usual
   */
  gptq?: { hessians: Map<string, Float64Array>; percDamp?: number };
  /** per-tensor types that replace the preset's choice (llama-quantize --tensor-type); rows must fit */
  overrides?: ReadonlyMap<string, GgmlType>;
  progress?: Progress;
}

export interface GgmlTensorReport {
  name: string;
  shape: number[];
  /** stored type */
  type: string;
  /** the type the preset asked for (differs when the row did not fit its block) */
  requested: string;
  bytes: number;
  bitsPerWeight: number;
  /** why `type` differs from `requested` */
  fallback?: string;
  /** llama.cpp would refuse this tensor for this preset */
  llamaRefuses?: boolean;
  /** an importance matrix was used for it */
  imatrix: boolean;
  /** its codes were chosen by GPTQ on llama.cpp's scales */
  gptq?: boolean;
}

export interface GgmlQuantizeResult {
  model: Model;
  preset: GgmlPreset;
  /** llama_ftype for `general.file_type` */
  fileType: number;
  tensors: GgmlTensorReport[];
  params: number;
  bytes: number;
  bitsPerWeight: number;
  seconds: number;
}

/** Shapes and names of a model's weights in the order the mix sees them. */
function mixInput(model: Model): { name: string; shape: readonly number[] }[] {
  return [...model.weights].map(([name, w]) => ({ name, shape: weightShape(w) }));
}

/** The per-tensor plan of a preset on a model (no quantization done). */
export function planGgmlMix(model: Model, preset: GgmlPreset, opts: { imatrix?: boolean; pure?: boolean } = {}): MixChoice[] {
  const c = model.config;
  return ggmlMix(preset, mixInput(model), { nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads }, opts);
}

function encodeFloat(type: GgmlType, shape: readonly number[], x: Float32Array): Weight {
  switch (type) {
    case GgmlType.F32: return { kind: "dense", tensor: new Tensor("f32", shape, x) };
    case GgmlType.F16: return { kind: "dense", tensor: new Tensor("f16", shape, f32ArrayToF16(x)) };
    case GgmlType.BF16: return { kind: "dense", tensor: new Tensor("bf16", shape, f32ArrayToBf16(x)) };
    default: throw new QuantlabError("E_UNSUPPORTED", `not a float type: ${ggmlTypeName(type)}`);
  }
}

/** Bytes a weight occupies as stored. */
function storedBytes(w: Weight): number {
  if (w.kind === "ggml") return w.data.length;
  if (w.kind === "dense") return w.tensor.byteLength;
  return w.q.storageBits / 8;
}

/** One tensor's rows to encode: x is (rows, cols) f32, the result (rows · rowBytes) bytes of `type`. */
export interface RowsJob {
  name: string;
  type: GgmlType;
  x: Float32Array;
  rows: number;
  cols: number;
  imatrix?: Float32Array;
  refine: boolean;
}

/** Encodes a tensor's rows; `quantizeModelToGgmlAsync` can hand these to worker threads. */
export type RowsQuantizer = (job: RowsJob, progress: Progress) => Promise<Uint8Array>;

interface TensorStep {
  choice: MixChoice;
  /** kept as is, or encoded in float here */
  done?: Weight;
  /** rows to quantize (block types) */
  job?: RowsJob;
  usedImatrix: boolean;
  /** codes chosen by GPTQ */
  gptq?: boolean;
}

/** Plans each tensor: keep, float re-encode, or a block-quantization job. */
function planSteps(model: Model, opts: GgmlQuantizeOptions): { preset: GgmlPreset; steps: TensorStep[]; work: number } {
  const preset = parseGgmlPreset(opts.type);
  if (model.inputTransforms) throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: the model has run-time input transforms (rotation, activation scales), which GGUF cannot carry`);
  const plan = planGgmlMix(model, preset, { imatrix: !!opts.imatrix, pure: opts.pure }).map((p): MixChoice => {
    const t = opts.overrides?.get(p.name);
    return t === undefined ? p : { name: p.name, shape: p.shape, type: t, quantized: t !== GgmlType.F32 && t !== GgmlType.F16 && t !== GgmlType.BF16, requested: t };
  });
  let work = 0;
  const steps = plan.map((p): TensorStep => {
    const w = model.weights.get(p.name)!;
    const shape = [...p.shape];
    work += shape.reduce((a, b) => a * b, 1);
    if (w.kind === "ggml" && w.type === p.type) return { choice: p, done: w, usedImatrix: false };
    if (w.kind === "dense" && ((p.type === GgmlType.F32 && w.tensor.dtype === "f32") || (p.type === GgmlType.F16 && w.tensor.dtype === "f16") || (p.type === GgmlType.BF16 && w.tensor.dtype === "bf16"))) {
      return { choice: p, done: w, usedImatrix: false };
    }
    return { choice: p, usedImatrix: false };
  });
  return { preset, steps, work };
}

/** Decodes a step's source to f32 and either encodes it as a float type or makes its quantization job. */
function prepareStep(model: Model, st: TensorStep, opts: GgmlQuantizeOptions): void {
  if (st.done) return;
  const p = st.choice;
  const shape = [...p.shape];
  const { rows, cols, data } = dequantizeWeight(model.weights.get(p.name)!, p.name);
  if (p.type === GgmlType.F32 || p.type === GgmlType.F16 || p.type === GgmlType.BF16) {
    st.done = encodeFloat(p.type, shape, data);
    return;
  }
  if (!hasGgmlCodec(p.type)) throw new QuantlabError("E_UNSUPPORTED", `${p.name}: no quantizer for ${ggmlTypeName(p.type)}`);
  if (ggmlRowBytes(p.type, cols) === undefined) throw new QuantlabError("E_ARG", `${p.name}: row width ${cols} does not fit ${ggmlTypeName(p.type)}`);
  let imatrix = opts.imatrix?.get(p.name);
  if (imatrix && imatrix.length !== cols) {
    // llama-quantize: a size mismatch is fatal except for the token embedding (ignored there)
    if (p.name === "token_embd.weight") imatrix = undefined;
    else throw new QuantlabError("E_ARG", `${p.name}: the importance matrix has ${imatrix.length} columns, the tensor ${cols}`);
  }
  if (imatrix && !ggmlUsesImatrix(p.type)) imatrix = undefined;
  st.usedImatrix = imatrix !== undefined;
  const h = opts.gptq?.hessians.get(p.name);
  if (h && ggmlGptqSupports(p.type)) {
    st.done = { kind: "ggml", type: p.type, shape, data: gptqGgml(p.type, data, rows, cols, h, imatrix, { percDamp: opts.gptq!.percDamp, name: p.name }) };
    st.gptq = true;
    return;
  }
  st.job = { name: p.name, type: p.type, x: data, rows, cols, imatrix, refine: !!opts.refine };
}

function finish(model: Model, preset: GgmlPreset, steps: TensorStep[], t0: number): GgmlQuantizeResult {
  const weights = new Map<string, Weight>();
  const tensors: GgmlTensorReport[] = [];
  let params = 0;
  let bytes = 0;
  for (const st of steps) {
    const p = st.choice;
    const out = st.done!;
    weights.set(p.name, out);
    const n = p.shape.reduce((a, b) => a * b, 1);
    const b = storedBytes(out);
    params += n;
    bytes += b;
    const r: GgmlTensorReport = { name: p.name, shape: [...p.shape], type: ggmlTypeName(p.type), requested: ggmlTypeName(p.requested), bytes: b, bitsPerWeight: (8 * b) / n, imatrix: st.usedImatrix };
    if (p.fallback) r.fallback = p.fallback;
    if (p.llamaRefuses) r.llamaRefuses = true;
    if (st.gptq) r.gptq = true;
    tensors.push(r);
  }
  const q: Model = {
    config: { ...model.config },
    weights,
    tokenizer: model.tokenizer,
    source: { path: model.source.path, format: "memory", metadata: model.source.metadata },
  };
  return { model: q, preset, fileType: GGML_PRESETS[preset].ftype, tensors, params, bytes, bitsPerWeight: (8 * bytes) / params, seconds: (Date.now() - t0) / 1000 };
}

/**
 * Quantizes every tensor of `model` with a llama-quantize preset. Tensors already in their target type
 * are kept byte for byte; others are decoded to f32 and encoded. The input model is not modified.
 */
export function quantizeModelToGgml(model: Model, opts: GgmlQuantizeOptions): GgmlQuantizeResult {
  const t0 = Date.now();
  const { preset, steps, work } = planSteps(model, opts);
  const progress = opts.progress ?? noProgress;
  progress.start(work, `quantizing ${preset}`);
  for (const st of steps) {
    prepareStep(model, st, opts);
    if (st.job) {
      st.done = { kind: "ggml", type: st.job.type, shape: [...st.choice.shape], data: quantizeRowsSync(st.job, progress) };
      st.job = undefined; // let the f32 copy go
    } else progress.tick(st.choice.shape.reduce((a, b) => a * b, 1));
  }
  progress.done();
  return finish(model, preset, steps, t0);
}

/**
 * The same as quantizeModelToGgml, with the row encoding handed to `quantizeRows` (e.g. a worker-thread
 * pool, cli/ggml-quant-pool.ts). Tensors are decoded one at a time, up to `inFlight` jobs run at once.
 */
export async function quantizeModelToGgmlAsync(model: Model, opts: GgmlQuantizeOptions & { quantizeRows: RowsQuantizer; inFlight?: number }): Promise<GgmlQuantizeResult> {
  const t0 = Date.now();
  const { preset, steps, work } = planSteps(model, opts);
  const progress = opts.progress ?? noProgress;
  progress.start(work, `quantizing ${preset}`);
  const running = new Set<Promise<void>>();
  const inFlight = Math.max(1, opts.inFlight ?? 2);
  for (const st of steps) {
    prepareStep(model, st, opts);
    const job = st.job;
    if (!job) {
      progress.tick(st.choice.shape.reduce((a, b) => a * b, 1));
      continue;
    }
    st.job = undefined;
    const pr: Promise<void> = opts.quantizeRows(job, progress).then((data) => {
      st.done = { kind: "ggml", type: job.type, shape: [...st.choice.shape], data };
      running.delete(pr);
    });
    running.add(pr);
    if (running.size >= inFlight) await Promise.race(running);
  }
  await Promise.all(running);
  progress.done();
  return finish(model, preset, steps, t0);
}

/** In-thread row encoding in chunks (so progress moves on big tensors). */
export function quantizeRowsSync(job: RowsJob, progress: Progress = noProgress, rowStart = 0, rowEnd = job.rows): Uint8Array {
  const { type, x, cols } = job;
  const rowBytes = ggmlRowBytes(type, cols)!;
  const dst = new Uint8Array((rowEnd - rowStart) * rowBytes);
  const chunkRows = Math.max(1, Math.floor((1 << 16) / cols));
  const o = { imatrix: job.imatrix, refine: job.refine };
  for (let r = rowStart; r < rowEnd; r += chunkRows) {
    const m = Math.min(chunkRows, rowEnd - r);
    quantizeRow(type, x.subarray(r * cols, (r + m) * cols), dst.subarray((r - rowStart) * rowBytes, (r - rowStart + m) * rowBytes), m * cols, o);
    progress.tick(m * cols);
  }
  return dst;
}
