/** What `quantlab info` reports: architecture, hyper-parameters, tokenizer, and a per-tensor table with sizes. */
import { DTYPES, numel } from "../core/tensor.js";
import { ggmlTypeName } from "../ggml/types.js";
import type { ModelConfig } from "../model/config.js";
import type { Model } from "../model/weights.js";
import { metaString, metadataToJson, tensorByteLength, type GgufFile } from "./gguf.js";
import { checkGgufModelCounts, ggufConfig, ggufVocab } from "./gguf-model.js";
import { QuantlabError } from "../core/errors.js";
import { weightShape } from "../core/weight.js";
import { packedRuntime } from "../kernels/packed.js";

export interface TensorRow {
  name: string;
  shape: number[];
  /** dtype (f32, f16, …), ggml type (Q4_K, …) or quantlab spec */
  type: string;
  params: number;
  bytes: number;
  bitsPerWeight: number;
  /** QuantizedTensors: the WASM kernel that will run it, its bytes there, and why it runs through the row
   * decoder rather than a packed kernel (kernels/packed.ts packedRuntime) */
  kernel?: string;
  residentBytes?: number;
  rowdec?: string;
}

export interface InfoReport {
  path: string;
  format: string;
  architecture?: string;
  config?: ModelConfig;
  /** why the hyper-parameters could not be read (a GGUF that is not a supported model) */
  configError?: string;
  tokenizer?: { model: string; vocabSize: number; bosId: number; eosId: number };
  metadata?: Record<string, unknown>;
  tensors: TensorRow[];
  totals: { tensors: number; params: number; bytes: number; bitsPerWeight: number };
}

function totals(rows: TensorRow[]): InfoReport["totals"] {
  const params = rows.reduce((a, r) => a + r.params, 0);
  const bytes = rows.reduce((a, r) => a + r.bytes, 0);
  return { tensors: rows.length, params, bytes, bitsPerWeight: params > 0 ? (8 * bytes) / params : 0 };
}

/** From a GGUF header alone (no tensor data read): works on any GGUF. */
export function ggufInfo(f: GgufFile): InfoReport {
  const rows: TensorRow[] = f.tensors.map((t) => {
    const params = numel(t.shape);
    return { name: t.name, shape: t.shape, type: ggmlTypeName(t.type), params, bytes: t.byteLength, bitsPerWeight: params > 0 ? (8 * t.byteLength) / params : 0 };
  });
  const r: InfoReport = { path: f.name, format: `gguf v${f.version}`, tensors: rows, totals: totals(rows), metadata: metadataToJson(f.metadata) };
  r.architecture = metaString(f, "general.architecture");
  if (r.architecture !== undefined) {
    // a corrupt count is an error, not a line of the report; an architecture we do not run is reported
    checkGgufModelCounts(f);
    const unsupported = (e: unknown): string => {
      if (e instanceof QuantlabError && e.code === "E_UNSUPPORTED") return e.message;
      throw e;
    };
    try {
      r.config = ggufConfig(f);
    } catch (e) {
      r.configError = unsupported(e);
    }
    try {
      const v = ggufVocab(f);
      if (v) r.tokenizer = { model: v.model, vocabSize: v.pieces.length, bosId: v.bosId, eosId: v.eosId };
    } catch (e) {
      r.configError ??= unsupported(e);
    }
  }
  return r;
}

/** From a loaded model (llama2.c, safetensors, HF directory): shapes and types only, no tensor bytes are read. */
export function modelInfo(m: Model): InfoReport {
  const rows: TensorRow[] = [...m.weights].map(([name, w]) => {
    const shape = [...weightShape(w)];
    const params = numel(shape);
    let type: string;
    let bytes: number;
    if (w.kind === "dense") {
      type = w.tensor.dtype;
      bytes = params * DTYPES[w.tensor.dtype].bytes;
    } else if (w.kind === "ggml") {
      type = ggmlTypeName(w.type);
      bytes = tensorByteLength(w.type, w.shape, `${m.source.path}: tensor "${name}"`); // from the shape: reads nothing
    } else {
      type = w.q.spec;
      bytes = w.q.storageBits / 8;
      const rt = packedRuntime(w.q);
      return { name, shape, type, params, bytes, bitsPerWeight: params > 0 ? (8 * bytes) / params : 0, ...rt };
    }
    return { name, shape, type, params, bytes, bitsPerWeight: params > 0 ? (8 * bytes) / params : 0 };
  });
  const r: InfoReport = { path: m.source.path, format: m.source.format, architecture: m.config.arch, config: m.config, tensors: rows, totals: totals(rows) };
  if (m.tokenizer) {
    const t = m.tokenizer;
    let model = "unknown";
    try { model = t.vocab().model; } catch { /* a tokenizer without a GGUF form */ }
    r.tokenizer = { model, vocabSize: t.vocabSize, bosId: t.bosId, eosId: t.eosId };
  }
  if (m.source.metadata) r.metadata = m.source.metadata;
  return r;
}

/** Human-readable lines for the CLI. */
export function formatInfo(r: InfoReport): string {
  const L: string[] = [];
  const mb = (b: number) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`);
  L.push(`${r.path}: ${r.format}${r.architecture ? `, architecture ${r.architecture}` : ""}`);
  if (r.config) {
    const c = r.config;
    L.push(`  dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads} (kv ${c.nKvHeads}), head dim ${c.headDim}, vocab ${c.vocabSize}, context ${c.seqLen}`);
    L.push(`  rope theta ${c.ropeTheta}${c.ropeScaling ? ` (llama3 scaling ×${c.ropeScaling.factor}, low ${c.ropeScaling.lowFreqFactor}, high ${c.ropeScaling.highFreqFactor}, original context ${c.ropeScaling.originalMaxPositionEmbeddings})` : ""}${c.rotaryDim !== undefined ? `, rotary dims ${c.rotaryDim} of ${c.headDim}` : ""}${c.longRope ? `, LongRoPE (original context ${c.longRope.originalMaxPositionEmbeddings}, attention factor ${Number(c.longRope.attentionFactor.toPrecision(6))})` : ""}, rms eps ${Number(c.normEps.toPrecision(7))}, ${c.tiedEmbeddings ? "tied" : "separate"} output`);
    const att: string[] = [];
    if (c.slidingWindow !== undefined) att.push(`sliding window ${c.slidingWindow}${c.slidingLayers ? ` in layers ${c.slidingLayers.map((b, l) => (b ? l : -1)).filter((l) => l >= 0).join(",")}` : ""}`);
    if (c.ropeThetaLocal !== undefined) att.push(`local rope theta ${c.ropeThetaLocal}`);
    if (c.ropeLinearFactor !== undefined) att.push(`linear rope scaling ×${c.ropeLinearFactor} on global layers`);
    if (c.attnScale !== undefined) att.push(`attention scale ${Number(c.attnScale.toPrecision(7))}`);
    if (c.attnSoftcap !== undefined) att.push(`attention soft-cap ${c.attnSoftcap}`);
    if (c.finalSoftcap !== undefined) att.push(`final soft-cap ${c.finalSoftcap}`);
    if (att.length > 0) L.push(`  ${att.join(", ")}`);
  }
  if (r.configError) L.push(`  (not loadable as a model: ${r.configError})`);
  if (r.tokenizer) L.push(`  tokenizer: ${r.tokenizer.model}, ${r.tokenizer.vocabSize} tokens, bos ${r.tokenizer.bosId}, eos ${r.tokenizer.eosId}`);
  const w = Math.max(4, ...r.tensors.map((t) => t.name.length));
  const sw = Math.max(5, ...r.tensors.map((t) => `[${t.shape.join(", ")}]`.length));
  L.push("");
  L.push(`  ${"name".padEnd(w)}  ${"shape".padEnd(sw)}  ${"type".padEnd(8)}  ${"bytes".padStart(12)}  bits/weight`);
  for (const t of r.tensors) {
    L.push(`  ${t.name.padEnd(w)}  ${`[${t.shape.join(", ")}]`.padEnd(sw)}  ${t.type.padEnd(8)}  ${String(t.bytes).padStart(12)}  ${t.bitsPerWeight.toFixed(2)}`);
  }
  const run = r.tensors.filter((t) => t.kernel !== undefined);
  if (run.length > 0) {
    L.push("");
    L.push(`  on the WASM backend (kernel, resident bytes):`);
    for (const t of run) L.push(`  ${t.name.padEnd(w)}  ${t.kernel!}  ${String(t.residentBytes).padStart(12)}${t.rowdec ? `  (${t.rowdec})` : ""}`);
  }
  const T = r.totals;
  L.push("");
  L.push(`  ${T.tensors} tensors, ${T.params.toLocaleString("en-US")} parameters, ${mb(T.bytes)} (${T.bytes} bytes), ${T.bitsPerWeight.toFixed(2)} bits/weight`);
  return L.join("\n");
}
