/**
 * Whole-model quantization to llama.cpp block types with a llama-quantize preset (Q4_K_M, Q8_0, …):
 * the mix (ggml/mix.ts) picks each tensor's type, ggml's quantizers (ggml/codecs.ts, byte-identical to
 * llama.cpp's; with an importance matrix their `_impl` searches) encode it through the `GgmlEncoder` the
 * caller passes (the TypeScript reference, or the WASM backend's threaded one), and the result is a Model
 * whose quantized tensors are `{kind: "ggml"}` blocks, ready for the GGUF writer or the forward pass.
 * Without `refine` the bytes equal what llama-quantize writes from the same F32 weights.
 */
import type { LinalgKernels } from "../kernels/types.js";
import { QuantlabError } from "../core/errors.js";
import { f32ArrayToBf16, f32ArrayToF16 } from "../core/f16.js";
import { noProgress, type Progress } from "../core/progress.js";
import { Tensor } from "../core/tensor.js";
import { ggmlUsesImatrix, hasGgmlCodec } from "../ggml/codecs.js";
import { refGgmlEncoder, type EncodeRowsJob, type GgmlEncoder } from "../ggml/encoder.js";
import type { Imatrix } from "../ggml/imatrix.js";
import { ggmlGptqSupports, gptqGgml } from "./ggml-gptq.js";
import { GGML_PRESETS, ggmlMix, parseGgmlPreset, type GgmlPreset, type MixChoice } from "../ggml/mix.js";
import { fusedFileTensors } from "../model/config.js";
import { GgmlType, ggmlRowBytes, ggmlTypeName } from "../ggml/types.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import type { Model } from "../model/weights.js";
import { lazyGgmlWeight, releaseWeight, weightByteReader, weightShape, type Weight } from "../core/weight.js";
import { LazyData } from "../core/lazy.js";
import { checkFiniteWeight, describeElement } from "../model/finite.js";

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
  gptq?: { hessians: Map<string, Float64Array>; percDamp?: number; kernels?: LinalgKernels };
  /** per-tensor types that replace the preset's choice (llama-quantize --tensor-type); rows must fit */
  overrides?: ReadonlyMap<string, GgmlType>;
  /** encodes the block-type tensors (default: the TypeScript reference on this thread; same bytes) */
  encoder?: GgmlEncoder;
  /**
   * Refuse NaN/Inf weights (model/finite.ts checkFiniteWeight's error, `<where>: tensor … is NaN; <what> …`):
   * the tensors the encoder reads are checked on the chunks it reads (no separate pass over the file),
   * the others before any encoding. Without it the caller has checked, or allows them.
   */
  refuseNonFinite?: { where: string; what: string };
  progress?: Progress;
  /**
   * Encode each block tensor when its bytes are first read (a lazy ggml weight, kept once encoded) instead of
   * before returning: a GGUF writer reading the result in file order then writes (and flushes) each tensor
   * while the later ones are still to be encoded. Same bytes; `encoder` must stay usable until then, and a
   * refused NaN/Inf (refuseNonFinite) throws from the read.
   */
  deferEncoding?: boolean;
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
  /** AWQ's α for the scales folded into this tensor's input (methods awq, awq+gptq on a preset) */
  awqAlpha?: number;
  /** why the method's input scales (AWQ, SmoothQuant) were not folded at this tensor's input site (it kept its weights) */
  noScaleFold?: string;
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
  const input = mixInput(model);
  // fused architectures (Phi-3): llama-quantize sees the file's attn_qkv / ffn_up (gate + up) and gives each one
  // type, so each canonical part takes the choice made for its file tensor (the GGUF writer joins the parts)
  const fileName = new Map<string, string>();
  for (const f of fusedFileTensors(c)) for (const p of f.parts) fileName.set(p.name, f.gguf);
  const choices = ggmlMix(preset, input.map((t) => ({ name: fileName.get(t.name) ?? t.name, shape: t.shape })), { nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads }, opts);
  return choices.map((ch, i) => ({ ...ch, name: input[i]!.name, shape: input[i]!.shape }));
}

function encodeFloat(type: GgmlType, shape: readonly number[], x: Float32Array): Weight {
  switch (type) {
    case GgmlType.F32: return { kind: "dense", tensor: new Tensor("f32", shape, x) };
    case GgmlType.F16: return { kind: "dense", tensor: new Tensor("f16", shape, f32ArrayToF16(x)) };
    case GgmlType.BF16: return { kind: "dense", tensor: new Tensor("bf16", shape, f32ArrayToBf16(x)) };
    default: throw new QuantlabError("E_UNSUPPORTED", `not a float type: ${ggmlTypeName(type)}`);
  }
}

/** Bytes a weight occupies as stored (a ggml weight's from its type and shape: a deferred one is not encoded by asking). */
function storedBytes(w: Weight): number {
  if (w.kind === "ggml") {
    const cols = w.shape.length === 0 ? 1 : w.shape[w.shape.length - 1]!;
    return (ggmlRowBytes(w.type, cols) ?? 0) * (w.shape.reduce((a, b) => a * b, 1) / cols);
  }
  if (w.kind === "dense") return w.tensor.byteLength;
  return w.q.storageBits / 8;
}

interface TensorStep {
  choice: MixChoice;
  /** kept as is, or encoded in float here */
  done?: Weight;
  /** rows to quantize (block types) */
  job?: EncodeRowsJob;
  usedImatrix: boolean;
  /** codes chosen by GPTQ */
  gptq?: boolean;
}

/** The fused file tensor (GGUF name) a canonical part belongs to, for fused architectures. */
function fusedFileName(model: Model, name: string): string | undefined {
  for (const f of fusedFileTensors(model.config)) if (f.parts.some((p) => p.name === name)) return f.gguf;
  return undefined;
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

/** The source values of a weight for the encoder: F32 and F16 as they are (F16 never becomes a whole f32
 * copy; a lazily loaded F16 tensor is read chunk by chunk straight into the encoder's buffer, never held
 * whole), anything else decoded to f32. */
function sourceValues(w: Weight, name: string): { x: Float32Array } | { f16: Uint16Array } | { f16Read: (start: number, dst: Uint16Array) => void } {
  const isF16 = (w.kind === "dense" && w.tensor.dtype === "f16") || (w.kind === "ggml" && w.type === GgmlType.F16);
  const read = isF16 ? weightByteReader(w) : undefined;
  if (read) return { f16Read: (start, dst) => read(start * 2, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength)) };
  if (w.kind === "dense" && w.tensor.dtype === "f16") return { f16: w.tensor.data as Uint16Array };
  if (w.kind === "dense" && w.tensor.dtype === "f32") return { x: w.tensor.data as Float32Array };
  if (w.kind === "ggml" && w.type === GgmlType.F16 && w.data.byteOffset % 2 === 0) return { f16: new Uint16Array(w.data.buffer, w.data.byteOffset, w.data.length / 2) };
  return { x: dequantizeWeight(w, name).data };
}

/** Will prepareStep hand this step to the encoder (a block type, not kept, not GPTQ)? */
function encodedByEncoder(model: Model, st: TensorStep, opts: GgmlQuantizeOptions): boolean {
  const t = st.choice.type;
  if (st.done || t === GgmlType.F32 || t === GgmlType.F16 || t === GgmlType.BF16 || !hasGgmlCodec(t)) return false;
  return !(opts.gptq?.hessians.has(st.choice.name) && ggmlGptqSupports(t));
}

/** Encodes a step as a float type or GPTQ here, or makes its block-quantization job. */
function prepareStep(model: Model, st: TensorStep, opts: GgmlQuantizeOptions): void {
  if (st.done) return;
  const p = st.choice;
  const shape = [...p.shape];
  const w = model.weights.get(p.name)!;
  if (p.type === GgmlType.F32 || p.type === GgmlType.F16 || p.type === GgmlType.BF16) {
    st.done = encodeFloat(p.type, shape, dequantizeWeight(w, p.name).data);
    return;
  }
  if (!hasGgmlCodec(p.type)) throw new QuantlabError("E_UNSUPPORTED", `${p.name}: no quantizer for ${ggmlTypeName(p.type)}`);
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  const rows = shape.reduce((a, b) => a * b, 1) / cols;
  if (ggmlRowBytes(p.type, cols) === undefined) throw new QuantlabError("E_ARG", `${p.name}: row width ${cols} does not fit ${ggmlTypeName(p.type)}`);
  // a llama-imatrix file of a fused architecture (Phi-3) names the file's tensors: attn_qkv for q/k/v, ffn_up for
  // gate + up; each part reads the same input, so its column importances are the fused tensor's
  let imatrix = opts.imatrix?.get(p.name) ?? (opts.imatrix ? opts.imatrix.get(fusedFileName(model, p.name) ?? "") : undefined);
  if (imatrix && imatrix.length !== cols) {
    // llama-quantize: a size mismatch is fatal except for the token embedding (ignored there)
    if (p.name === "token_embd.weight") imatrix = undefined;
    else throw new QuantlabError("E_ARG", `${p.name}: the importance matrix has ${imatrix.length} columns, the tensor ${cols}`);
  }
  if (imatrix && !ggmlUsesImatrix(p.type)) imatrix = undefined;
  st.usedImatrix = imatrix !== undefined;
  const h = opts.gptq?.hessians.get(p.name);
  if (h && ggmlGptqSupports(p.type)) {
    const { data } = dequantizeWeight(w, p.name);
    st.done = { kind: "ggml", type: p.type, shape, data: gptqGgml(p.type, data, rows, cols, h, imatrix, { percDamp: opts.gptq!.percDamp, name: p.name, ...(opts.gptq!.kernels ? { kernels: opts.gptq!.kernels } : {}) }) };
    st.gptq = true;
    return;
  }
  st.job = { name: p.name, type: p.type, rows, cols, ...sourceValues(w, p.name), imatrix, refine: !!opts.refine };
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
 * Output buffers of deferred encodes (GgmlQuantizeOptions.deferEncoding), given back when the writer lets a
 * tensor go (LazyData's onRelease): a writer going through the model's tensors reuses the few buffers that are
 * live at a time instead of faulting in fresh memory for every tensor (766 MB of output for a 1B model's
 * Q4_0: page faults cost several times the copy into a buffer that is already mapped).
 */
export class BlockBufferPool {
  private readonly free: ArrayBuffer[] = [];
  /** a buffer of n bytes: a view of the smallest free buffer that fits, else a new one */
  take(n: number): Uint8Array {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i]!.byteLength;
      if (b >= n && (best < 0 || b < this.free[best]!.byteLength)) best = i;
    }
    if (best < 0) return new Uint8Array(n);
    return new Uint8Array(this.free.splice(best, 1)[0]!, 0, n);
  }
  /** gives back a buffer from take (no one may use it afterwards) */
  give(v: Uint8Array): void {
    if (!this.free.includes(v.buffer as ArrayBuffer)) this.free.push(v.buffer as ArrayBuffer);
  }
  /** free buffers (tests) */
  get size(): number {
    return this.free.length;
  }
}

/**
 * Quantizes every tensor of `model` with a llama-quantize preset. Tensors already in their target type
 * are kept byte for byte; others are encoded one at a time by `opts.encoder` (float sources as they are,
 * others decoded to f32 first). The input model is not modified.
 */
export function quantizeModelToGgml(model: Model, opts: GgmlQuantizeOptions): GgmlQuantizeResult {
  const t0 = Date.now();
  const { preset, steps, work } = planSteps(model, opts);
  const encoder = opts.encoder ?? refGgmlEncoder;
  const progress = opts.progress ?? noProgress;
  const refuse = opts.refuseNonFinite;
  const pool = new BlockBufferPool();
  // the tensors the encoder will not read (kept, float re-encodes, GPTQ) are checked before any work
  if (refuse) for (const st of steps) if (!encodedByEncoder(model, st, opts)) checkFiniteWeight(model.weights.get(st.choice.name)!, st.choice.name, refuse.where, refuse.what);
  progress.start(work, `quantizing ${preset}`);
  for (const st of steps) {
    prepareStep(model, st, opts);
    if (st.job) {
      const name = st.choice.name, shape = st.choice.shape;
      const onNonFinite = refuse
        ? (index: number, value: number): never => {
          throw new QuantlabError("E_VALUE", `${refuse.where}: ${describeElement(name, shape, index)} is ${value}; ${refuse.what} (--allow-nonfinite / allowNonFinite: true to go ahead anyway)`);
        }
        : undefined;
      const job = st.job, source = model.weights.get(st.choice.name)!;
      st.job = undefined; // let a decoded f32 copy go (with the encoding)
      if (opts.deferEncoding) {
        // encoded on first read (the writer's, in file order) into a pooled buffer, which goes back to the pool
        // when the writer lets the tensor go (a later read encodes it again)
        const bytes = storedBytes({ kind: "ggml", type: job.type, shape, data: new Uint8Array(0) });
        st.done = lazyGgmlWeight(job.type, [...shape], new LazyData(bytes, () => {
          const data = encoder.encodeRows({ ...job, ...(onNonFinite ? { onNonFinite } : {}), out: pool.take(bytes) });
          releaseWeight(source);
          return { value: data, onRelease: () => pool.give(data) };
        }));
        progress.tick(shape.reduce((a, b) => a * b, 1));
        continue;
      }
      st.done = { kind: "ggml", type: job.type, shape: [...st.choice.shape], data: encoder.encodeRows({ ...job, progress, ...(onNonFinite ? { onNonFinite } : {}) }) };
      releaseWeight(source); // and a lazily loaded source (re-read if written as is)
    } else progress.tick(st.choice.shape.reduce((a, b) => a * b, 1));
  }
  progress.done();
  return finish(model, preset, steps, t0);
}
