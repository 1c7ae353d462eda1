/**
 * llama-quantize's presets ("mixes"): which ggml type each tensor of a model gets for a preset such as
 * Q4_K_M. The rules follow llama.cpp `src/llama-quant.cpp` `llama_tensor_get_type` as of the commit that
 * wrote shared/data/ggml (c392e509, 2025-02-20), for the `llama` architecture (no experts, separate
 * q/k/v): the output projection (and the token embedding when there is no separate output) goes to Q6_K
 * (Q8_0 when its rows are not whole 256-blocks), `attn_v` / `ffn_down` / `attn_output` get bumped by
 * layer index in the _M / _S / Q2_K mixes, 1-D tensors (norms) stay F32, and any type whose block does
 * not divide a row falls back per tensor (`ggmlRowFit`). test/ggml/mix.test.ts checks every tensor of
 * every llama.cpp-written file in shared/data against this table.
 *
 * Differences from llama-quantize, on purpose: where llama.cpp aborts ("Unsupported tensor size" for a
 * 32-block type on a 172-wide row, or `--pure` with a row that does not fit) quantlab falls back to F16
 * for that tensor and reports it.
 */
import { QuantlabError } from "../core/errors.js";
import { ggmlRowFit } from "./fallback.js";
import { GgmlType, ggmlTypeName } from "./types.js";

/** One row per preset: its llama_ftype (llama.h, written as `general.file_type`) and default type. */
interface PresetRow {
  /** llama.h `enum llama_ftype` (file format: never renumber) */
  ftype: number;
  /** llama_model_quantize_impl's default_type */
  base: GgmlType;
  /** one line for --help */
  doc: string;
}

export const GGML_PRESETS = {
  F32: { ftype: 0, base: GgmlType.F32, doc: "32-bit float" },
  F16: { ftype: 1, base: GgmlType.F16, doc: "16-bit float" },
  BF16: { ftype: 32, base: GgmlType.BF16, doc: "bfloat16" },
  Q8_0: { ftype: 7, base: GgmlType.Q8_0, doc: "8.5 bpw, output Q8_0" },
  Q4_0: { ftype: 2, base: GgmlType.Q4_0, doc: "4.5 bpw, output Q6_K" },
  Q4_1: { ftype: 3, base: GgmlType.Q4_1, doc: "5.0 bpw, output Q6_K" },
  Q5_0: { ftype: 8, base: GgmlType.Q5_0, doc: "5.5 bpw, output Q6_K" },
  Q5_1: { ftype: 9, base: GgmlType.Q5_1, doc: "6.0 bpw, output Q6_K" },
  Q2_K: { ftype: 10, base: GgmlType.Q2_K, doc: "Q2_K, attn_v/attn_output/ffn_down Q3_K, output Q6_K" },
  Q3_K_S: { ftype: 11, base: GgmlType.Q3_K, doc: "Q3_K, output Q6_K" },
  Q3_K_M: { ftype: 12, base: GgmlType.Q3_K, doc: "Q3_K, attn_v Q5_K/Q4_K, attn_output/ffn_down Q4_K, output Q6_K" },
  Q3_K_L: { ftype: 13, base: GgmlType.Q3_K, doc: "Q3_K, attn_v/attn_output/ffn_down Q5_K, output Q6_K" },
  Q4_K_S: { ftype: 14, base: GgmlType.Q4_K, doc: "Q4_K, first attn_v and ffn_down Q5_K, output Q6_K" },
  Q4_K_M: { ftype: 15, base: GgmlType.Q4_K, doc: "Q4_K, half of attn_v/ffn_down Q6_K, output Q6_K" },
  Q5_K_S: { ftype: 16, base: GgmlType.Q5_K, doc: "Q5_K, output Q6_K" },
  Q5_K_M: { ftype: 17, base: GgmlType.Q5_K, doc: "Q5_K, half of attn_v/ffn_down Q6_K, output Q6_K" },
  Q6_K: { ftype: 18, base: GgmlType.Q6_K, doc: "6.56 bpw" },
  IQ4_NL: { ftype: 25, base: GgmlType.IQ4_NL, doc: "4.5 bpw non-linear, output Q6_K" },
  IQ4_XS: { ftype: 30, base: GgmlType.IQ4_XS, doc: "4.25 bpw non-linear, output Q6_K" },
  TQ1_0: { ftype: 36, base: GgmlType.TQ1_0, doc: "ternary 1.69 bpw (for ternary-trained models), embedding Q4_K, output Q6_K" },
  TQ2_0: { ftype: 37, base: GgmlType.TQ2_0, doc: "ternary 2.06 bpw (for ternary-trained models), embedding Q4_K, output Q6_K" },
} as const satisfies Record<string, PresetRow>;

export type GgmlPreset = keyof typeof GGML_PRESETS;

export const GGML_PRESET_NAMES = Object.keys(GGML_PRESETS) as GgmlPreset[];

/** Parses a preset name (case-insensitive: q4_k_m, Q4_K_M). */
export function parseGgmlPreset(name: string): GgmlPreset {
  const up = name.toUpperCase();
  if (Object.prototype.hasOwnProperty.call(GGML_PRESETS, up)) return up as GgmlPreset;
  throw new QuantlabError("E_ARG", `--type ${name}: not a llama-quantize preset (available: ${GGML_PRESET_NAMES.join(", ")})`);
}

/** The tensor-name categories llama_tensor_get_type distinguishes (substring rules as in llama.cpp). */
type Category = "output" | "token_embd" | "attn_qkv" | "attn_v" | "attn_k" | "attn_q" | "attn_output" | "ffn_down" | "ffn_gate" | "ffn_up" | "other";

function category(name: string): Category {
  if (name === "output.weight") return "output";
  if (name === "token_embd.weight") return "token_embd";
  if (name.includes("attn_qkv.weight")) return "attn_qkv";
  if (name.includes("attn_v.weight")) return "attn_v";
  if (name.includes("attn_k.weight")) return "attn_k";
  if (name.includes("attn_q.weight")) return "attn_q";
  if (name.includes("attn_output.weight")) return "attn_output";
  if (name.includes("ffn_down")) return "ffn_down";
  if (name.includes("ffn_gate")) return "ffn_gate";
  if (name.includes("ffn_up")) return "ffn_up";
  return "other";
}

/** llama-quant.cpp: should this tensor be quantized at all (2-D+, a `.weight`, not a norm). */
export function ggmlQuantizable(name: string, shape: readonly number[]): boolean {
  return shape.length >= 2 && name.endsWith("weight") && !name.includes("_norm.weight");
}

/** llama-quant.cpp use_more_bits: the first and last eighth of the layers, and every third in between. */
function useMoreBits(i: number, n: number): boolean {
  const e = Math.trunc(n / 8);
  return i < e || i >= Math.trunc((7 * n) / 8) || (i - e) % 3 === 2;
}

export interface MixModelInfo {
  /** transformer blocks (llama.cpp hparams.n_layer) */
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
}

export interface MixOptions {
  /** an importance matrix will be used (changes a few IQ4 / Q4_0 / Q5_0 choices, as in llama.cpp) */
  imatrix?: boolean;
  /** every quantizable tensor gets the preset's base type (llama-quantize --pure); fall-backs still apply */
  pure?: boolean;
}

export interface MixTensor {
  name: string;
  /** row-major, outermost first: (rows, cols); cols (= GGUF ne[0]) is the row width */
  shape: readonly number[];
}

export interface MixChoice {
  name: string;
  shape: readonly number[];
  /** the type to store */
  type: GgmlType;
  /** false for tensors kept in float (1-D, norms) */
  quantized: boolean;
  /** the type the mix asked for before the row-width fall-back */
  requested: GgmlType;
  /** set when `type` differs from `requested` because the row does not fit the block */
  fallback?: string;
  /** llama.cpp would refuse this tensor; quantlab stores F16 instead */
  llamaRefuses?: boolean;
}

const T = GgmlType;

/**
 * The type llama.cpp's mix gives one quantizable tensor before the row-width fall-back.
 * `layer` is the block index (blk.N), which is llama.cpp's i_attention_wv / i_ffn_down counter because
 * llama-model-loader sorts tensors by layer number first (weight_name_comparer).
 */
function mixType(preset: GgmlPreset, name: string, cols: number, layer: number, info: MixModelInfo & { nAttnV: number; hasOutput: boolean }, imatrix: boolean): GgmlType {
  let t: GgmlType = GGML_PRESETS[preset].base;
  const cat = category(name);
  const nLayer = info.nLayers;
  const nGqa = info.nKvHeads > 0 ? info.nHeads / info.nKvHeads : 1;
  const is = (...p: GgmlPreset[]) => p.includes(preset);
  if (cat === "output" || (!info.hasOutput && cat === "token_embd")) {
    // tied models quantize the shared embedding with the output's rule
    if (cols % 256 !== 0) t = T.Q8_0;
    else if (t !== T.Q8_0) t = T.Q6_K;
    return t;
  }
  if (cat === "token_embd") {
    if (is("TQ1_0", "TQ2_0")) t = T.Q4_K;
    return t;
  }
  // llama-quant.cpp category_is_attn_v: a fused attn_qkv (Phi-3) takes attn_v's rules and counter
  if (cat === "attn_v" || cat === "attn_qkv") {
    const i = layer;
    if (is("Q2_K")) t = nGqa >= 4 ? T.Q4_K : T.Q3_K;
    else if (is("Q3_K_M")) t = i < 2 ? T.Q5_K : T.Q4_K;
    else if (is("Q3_K_L")) t = T.Q5_K;
    else if (is("IQ4_NL", "IQ4_XS") && nGqa >= 4) t = T.Q5_K;
    else if (is("Q4_K_M", "Q5_K_M") && useMoreBits(i, info.nAttnV)) t = T.Q6_K;
    else if (is("Q4_K_S") && i < 4) t = T.Q5_K;
    // LLM_TYPE_70B (llama with 80 layers and GQA): attn_v is 8× smaller than attn_q, so it gets more bits
    if (nLayer === 80 && info.nHeads !== info.nKvHeads && (t === T.Q3_K || t === T.Q4_K)) t = T.Q5_K;
    return t;
  }
  if (cat === "ffn_down") {
    const i = layer;
    if (is("Q2_K")) t = T.Q3_K;
    else if (is("Q3_K_M")) t = i < Math.trunc(nLayer / 16) ? T.Q5_K : T.Q4_K;
    else if (is("Q3_K_L")) t = T.Q5_K;
    else if (is("Q4_K_M")) {
      if (useMoreBits(i, nLayer)) t = T.Q6_K;
    } else if (i < Math.trunc(nLayer / 8) && is("IQ4_NL", "IQ4_XS") && !imatrix) t = T.Q5_K;
    else if (is("Q5_K_M") && useMoreBits(i, nLayer)) t = T.Q6_K;
    else if (is("Q4_K_S") && i < Math.trunc(nLayer / 8)) t = T.Q5_K;
    else if (is("Q4_0", "Q5_0") && imatrix && i < Math.trunc(nLayer / 8)) t = preset === "Q4_0" ? T.Q4_1 : T.Q5_1;
    return t;
  }
  if (cat === "attn_output") {
    if (is("Q2_K")) t = T.Q3_K;
    else if (is("Q3_K_M")) t = T.Q4_K;
    else if (is("Q3_K_L")) t = T.Q5_K;
    return t;
  }
  return t;
}

const LAYER_RE = /^blk\.(\d+)\./;

/**
 * The type of every tensor for `preset`, as llama-quantize chooses it, with per-tensor fall-backs.
 * Non-quantizable tensors (1-D, norms) are F32.
 */
export function ggmlMix(preset: GgmlPreset, tensors: readonly MixTensor[], info: MixModelInfo, opts: MixOptions = {}): MixChoice[] {
  const row = GGML_PRESETS[preset];
  const hasOutput = tensors.some((t) => t.name === "output.weight");
  // distinct names: a fused file tensor may come as several parts (algos/ggml-quant.ts planGgmlMix)
  const nAttnV = new Set(tensors.filter((t) => category(t.name) === "attn_v" || category(t.name) === "attn_qkv").map((t) => t.name)).size;
  const quantizedPreset = row.base !== T.F32 && row.base !== T.F16 && row.base !== T.BF16;
  return tensors.map((t): MixChoice => {
    if (!ggmlQuantizable(t.name, t.shape)) return { name: t.name, shape: t.shape, type: T.F32, quantized: false, requested: T.F32 };
    const cols = t.shape[t.shape.length - 1]!;
    const m = LAYER_RE.exec(t.name);
    const layer = m ? Number(m[1]) : -1;
    const requested = opts.pure || !quantizedPreset ? row.base : mixType(preset, t.name, cols, layer, { ...info, nAttnV, hasOutput }, !!opts.imatrix);
    const fit = ggmlRowFit(requested, cols);
    const c: MixChoice = { name: t.name, shape: t.shape, type: fit.use, quantized: true, requested };
    if (!fit.fits) {
      c.fallback = `${fit.reason}`;
      if (fit.llamaRefuses) c.llamaRefuses = true;
    }
    return c;
  });
}

/** One line per choice for logs: "blk.0.attn_v.weight Q6_K" (+ the fall-back reason). */
export function formatMixChoice(c: MixChoice): string {
  return `${c.name} ${ggmlTypeName(c.type)}${c.fallback ? ` (${c.fallback})` : ""}`;
}
