/**
 * Messages between the lab page (main.ts) and the library's Web Worker (lab-worker.ts). Every request has
 * an id; the worker answers it with progress, streamed text, then exactly one `done` or `error`.
 * Files travel as File/Blob objects (structured clone passes a handle, not the bytes).
 */
import type { CompareRow, TensorError } from "../../src/eval/compare.js";
import type { ChannelOutlierRow } from "../../src/eval/channel-outliers.js";
import type { GridHistogram } from "../../src/eval/grid-histogram.js";
import type { FormChoice } from "./recipe.js";

export interface ModelSummary {
  name: string;
  format: string;
  params: number;
  nLayers: number;
  dim: number;
  hiddenDim: number;
  vocabSize: number;
  seqLen: number;
  /** block linears, in model order (what specs quantize) */
  linears: string[];
  tokenizer: boolean;
}

export interface QuantizeReply {
  id: string;
  fileName: string;
  blob: Blob;
  output: "gguf" | "safetensors";
  recipeJson: string;
  row: CompareRow;
  /** e.g. a calibration text the method does not read */
  note?: string;
  tensors: TensorError[];
  /** the tensors of the result that have a per-weight grid (spec targets) */
  gridTensors: string[];
}

export interface BackendInfo {
  backend: string;
  threads: number;
  /** pool workers running their loop when the page was told (threads − 1 once all started) */
  workersRunning: number;
  isolated: boolean;
  /** how quantlab-spec weights take their inputs: f32 (exact) or q8 (?activations=q8: integer kernels) */
  packedActivations: "f32" | "q8";
  note?: string;
  /** what the quantize form offers (from the library's method and preset tables) */
  methods: { name: string; targets: string[]; doc: string }[];
  presets: string[];
}

export type Request =
  | { type: "open"; files: File[]; dir?: { name: string; files: [string, File][] } }
  | { type: "adopt"; id: string; fileName: string; blob: Blob }
  | { type: "quantize"; id: string; choice: FormChoice; evalText?: string }
  | { type: "histogram"; id: string; tensor: string }
  | { type: "outliers" }
  | { type: "generate"; which: string; prompt: string; steps: number }
  | { type: "onnx"; id: string };

/** A result exported as the transformers.js directory (src/io/onnx.ts), zipped: `<stem>-onnx/…` inside. */
export interface OnnxReply {
  fileName: string;
  blob: Blob;
  dtype: string;
  files: string[];
  notes: string[];
}

export type Reply =
  | { rid: number; type: "progress"; label: string; value: number; total: number }
  | { rid: number; type: "text"; piece: string }
  | { rid: number; type: "done"; result: unknown }
  | { rid: number; type: "error"; message: string }
  | { rid: 0; type: "ready"; info: BackendInfo };

export type { ChannelOutlierRow, GridHistogram };
