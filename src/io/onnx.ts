/**
 * ONNX export of a Llama-family Model, as the directory transformers.js loads: config.json,
 * generation_config.json, tokenizer.json, tokenizer_config.json and onnx/model{,_fp16,_quantized,_q4,_q4f16}.onnx
 * (+ `<file>_data` external data when the initializers pass 2 GB, protobuf's message limit).
 *
 * Graph interface (transformers.js's decoder-only models, models.js `decoder_forward` / `addPastKeyValues`):
 *   inputs  input_ids, attention_mask, position_ids: int64 [batch_size, sequence_length | total_sequence_length]
 *           past_key_values.{i}.key|value: T [batch_size, num_key_value_heads, past_sequence_length, head_dim]
 *   outputs logits: T [batch_size, sequence_length, vocab]; present.{i}.key|value: T [.., total_sequence_length, ..]
 * T is float32, or float16 for the fp16 and q4f16 files. The graph computes quantlab's forward pass
 * (model/llama.ts): RMSNorm as run.c (x · 1/sqrt(mean(x²) + eps), then · w), RoPE on interleaved pairs —
 * quantlab keeps Q/K rows in llama2.c/GGUF order, so no HF half-split — with cos/sin tables computed by
 * the same code as Llama (ropeInvFreq, f32 angles) and gathered by position_ids, grouped-query attention by
 * broadcasting each KV head over its query heads, scores / sqrt(head_dim), SwiGLU.
 *
 * Linears: a quantlab QTensor with an int4/int8 grid (sym/symfull: code − 2^(b−1); asym: integer zero
 * points), g16…g256 groups or per channel, becomes one `com.microsoft::MatMulNBits` carrying its codes and
 * scales as they are (ONNX Runtime contrib op: B uint8 (N, ⌈K/block⌉, block·bits/8) codes packed low bits
 * first along K, scales (N·blocks), zero_points uint8 packed the same way, default 2^(bits−1) when absent;
 * Y = A · ((q − zp) · scale)ᵀ). Everything else is written as float: exact for dequantized weights in an
 * f32 graph, and said in `notes`.
 */
import { QuantlabError } from "../core/errors.js";
import { f32ToF16Bits, f16BitsToF32 } from "../core/f16.js";
import { weightShape, type Weight } from "../core/weight.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { ARCH_TRAITS, TensorNames, layerWindow, rotaryDimOf, type ModelConfig } from "../model/config.js";
import { checkFiniteWeight } from "../model/finite.js";
import { ROPE_FREQS, queryPrescale, ropeInvFreq, ropeSetsOf } from "../model/llama.js";
import type { Model } from "../model/weights.js";
import { HfTokenizer, vocabToTokenizerJson, type TokenizerConfigJson } from "../model/tokenizers/hf.js";
import { modelConfigToHf, type DirSink } from "./hf.js";
import { inferLlama3Scaling } from "./gguf-model.js";
import { ONNX_FLOAT8, planWeight, type CodedWeight } from "./onnx-weights.js";
import { GgmlType } from "../core/ggml-type.js";
import { OnnxDataType, encodeOnnxModel, type OnnxAttr, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from "./onnx-proto.js";

/**
 * transformers.js's dtype names and the file each loads (utils/dtypes.js DEFAULT_DTYPE_SUFFIX_MAPPING). `bits`
 * is the widest code a quantized file holds (q2: ≤ 2, q4: ≤ 4, q8: ≤ 8 bits); fp32/fp16 files name the
 * float type only.
 */
export const ONNX_DTYPES = {
  fp32: { file: "model.onnx", float: "fp32", bits: undefined, defaultSpec: undefined },
  fp16: { file: "model_fp16.onnx", float: "fp16", bits: undefined, defaultSpec: undefined },
  q8: { file: "model_quantized.onnx", float: "fp32", bits: 8, defaultSpec: "int8:g32" },
  q4: { file: "model_q4.onnx", float: "fp32", bits: 4, defaultSpec: "int4:g32" },
  q4f16: { file: "model_q4f16.onnx", float: "fp16", bits: 4, defaultSpec: "int4:g32:scale=f16" },
  q2: { file: "model_q2.onnx", float: "fp32", bits: 2, defaultSpec: "int2:g32:asym" },
  q2f16: { file: "model_q2f16.onnx", float: "fp16", bits: 2, defaultSpec: "int2:g32:asym:scale=f16" },
} as const satisfies Record<string, { file: string; float: "fp32" | "fp16"; bits: 2 | 4 | 8 | undefined; defaultSpec: string | undefined }>;
export type OnnxDtype = keyof typeof ONNX_DTYPES;
export const ONNX_DTYPE_NAMES = Object.keys(ONNX_DTYPES) as OnnxDtype[];

export function parseOnnxDtype(v: string): OnnxDtype {
  if (!(v in ONNX_DTYPES)) throw new QuantlabError("E_ARG", `--dtype ${v}: unknown ONNX dtype (expected ${ONNX_DTYPE_NAMES.join(", ")})`);
  return v as OnnxDtype;
}

/**
 * opsets the graph uses: ai.onnx 21 (blocked DequantizeLinear, 4-bit and 16-bit integer types; ReduceMean's
 * axes as an input since 18), com.microsoft 1; IR version 10 (opset 21's)
 */
const OPSET = 21;
const IR_VERSION = 10;
/** protobuf messages are limited to 2 GiB: initializers past this go to external data (ONNX external data spec) */
export const EXTERNAL_DATA_THRESHOLD = 2 ** 31 - 2 ** 26;
/** the smallest initializer moved to the external file (tiny constants stay inline, as onnx's converter does) */
const EXTERNAL_MIN_BYTES = 1024;

/** MatMulNBits block sizes: a power of two ≥ 16 (ONNX Runtime contrib op spec); ≤ 256 as MLAS's kernels */
const MIN_BLOCK = 16, MAX_BLOCK = 256;

export interface OnnxExportOptions {
  dtype: OnnxDtype;
  /** MatMulNBits accuracy_level (0: float activations, exact; 4: int8 activations, ORT's fast path) */
  accuracyLevel?: number;
  /** initializer bytes past which tensors go to `<file>_data` (default EXTERNAL_DATA_THRESHOLD) */
  externalDataThreshold?: number;
  /** output name for messages */
  name?: string;
  /** write weights holding NaN/Inf instead of refusing */
  allowNonFinite?: boolean;
}

export interface OnnxGraphResult {
  /** the .onnx file name inside onnx/ */
  file: string;
  model: Uint8Array;
  /** external data file (name inside onnx/, bytes) when the initializers are too large for one message */
  external?: { file: string; bytes: Uint8Array[]; length: number };
  /** what the file does not carry exactly, one line each (also shown on stderr by the CLI) */
  notes: string[];
  /** tensors written as MatMulNBits / DequantizeLinear + MatMul / float */
  matMulNBits: string[];
  dequantizeLinear: string[];
  /** the token embedding, when its rows are gathered from its codes (GatherBlockQuantized) */
  gatherBlockQuantized: string[];
  float: string[];
}

/**
 * How a weight is written: MatMulNBits when its codes fit one (2/4/8-bit containers, one power-of-two block
 * of 16…256 per row segment, or one block per row up to 256), else a DequantizeLinear of its codes feeding a
 * MatMul, else float (with the reason).
 */
export type LinearEncoding =
  | { kind: "matmulnbits"; coded: CodedWeight; bits: 2 | 4 | 8; block: number }
  | { kind: "dequantizelinear"; coded: CodedWeight; elem: OnnxDataType }
  | { kind: "float"; why: string };

/** the container a code width is stored in */
export function containerBits(bits: number): 2 | 4 | 8 | 16 {
  return bits <= 2 ? 2 : bits <= 4 ? 4 : bits <= 8 ? 8 : 16;
}

export function linearEncoding(w: Weight, name: string): LinearEncoding {
  const p = planWeight(w, name);
  if (!("coded" in p)) return { kind: "float", why: p.why };
  const c = p.coded;
  if (c.kind === "fp8") return { kind: "dequantizelinear", coded: c, elem: ONNX_FLOAT8[c.fp8!] as OnnxDataType };
  const cb = containerBits(c.bits);
  if (cb <= 8 && c.layout.kind === "row") {
    const block = c.layout.block === c.K ? Math.max(MIN_BLOCK, 2 ** Math.ceil(Math.log2(c.K))) : c.layout.block;
    if (block >= MIN_BLOCK && block <= MAX_BLOCK && (block & (block - 1)) === 0) return { kind: "matmulnbits", coded: c, bits: cb as 2 | 4 | 8, block };
  }
  return { kind: "dequantizelinear", coded: c, elem: cb <= 4 ? OnnxDataType.UINT4 : cb === 8 ? OnnxDataType.UINT8 : OnnxDataType.UINT16 };
}

/** The code width of a weight's encoding (undefined for float). */
export function encodingBits(e: LinearEncoding): number | undefined {
  return e.kind === "float" ? undefined : e.coded.kind === "fp8" ? 8 : containerBits(e.coded.bits);
}

/** the float32 quantized dtype whose files hold codes of `bits` (≤ 2 → q2, ≤ 4 → q4, ≤ 8 → q8) */
export function dtypeFor(bits: number): OnnxDtype | undefined {
  return bits <= 2 ? "q2" : bits <= 4 ? "q4" : bits <= 8 ? "q8" : undefined;
}

/** block linears and the untied classifier: the weights the graph multiplies (buildOnnxGraph's `linear`) */
export function isOnnxLinearName(name: string): boolean {
  return name === TensorNames.output || /^blk\.\d+\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$/.test(name);
}

/** The dtype a model's quantized linears ask for: their widest codes, else (a float linear, or wider) fp32. */
export function inferOnnxDtype(model: Model): OnnxDtype {
  let widest = 0;
  for (const [name, w] of model.weights) {
    if (w.kind === "dense" || !isOnnxLinearName(name)) continue;
    const b = encodingBits(linearEncoding(w, name));
    if (b === undefined) return "fp32";
    widest = Math.max(widest, b);
  }
  return widest === 0 ? "fp32" : dtypeFor(widest) ?? "fp32";
}

/** The ONNX graph of a model at a dtype. */
export function buildOnnxGraph(model: Model, opts: OnnxExportOptions): OnnxGraphResult {
  const c = model.config;
  const name = opts.name ?? "output";
  const d = ONNX_DTYPES[opts.dtype];
  if (model.inputTransforms?.ffnDownRotation) throw new QuantlabError("E_UNSUPPORTED", `${name}: ${model.source.path} has an online FFN-down rotation (quantize --rotate) that the ONNX export cannot carry; quantize without --rotate`);
  if (model.inputTransforms?.activations) {
    const a = model.inputTransforms.activations;
    throw new QuantlabError("E_UNSUPPORTED", `${name}: ${model.source.path} quantizes activations (${a.mode === "static" ? "a" + a.bits + "s" : "a" + a.bits}), which the ONNX export cannot carry; quantize without it`);
  }
  if (c.nHeads % c.nKvHeads !== 0) throw new QuantlabError("E_FORMAT", `${model.source.path}: n_heads ${c.nHeads} is not a multiple of n_kv_heads ${c.nKvHeads}`);
  const g = new GraphBuilder(d.float === "fp16" ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT);
  const notes: string[] = [];
  const dequantized: string[] = [];
  const matMulNBits: string[] = [];
  const dequantizeLinear: string[] = [];
  const gathered: string[] = [];
  const floats: string[] = [];
  const floatWhy = new Map<string, string>();
  const accuracyLevel = opts.accuracyLevel ?? 0;
  const checked = new Set<string>();
  const weight = (n: string): Weight => {
    const w = model.weights.get(n);
    if (!w) throw new QuantlabError("E_FORMAT", `${model.source.path}: missing tensor ${n}`);
    // every write path refuses NaN/Inf weights unless told otherwise (model/finite.ts)
    if (!opts.allowNonFinite && !checked.has(n)) {
      checkFiniteWeight(w, n, model.source.path, `refusing to write ${name}`, true);
      checked.add(n);
    }
    return w;
  };
  const floatData = (n: string): Float32Array => {
    const w = weight(n);
    if (w.kind !== "dense" && !dequantized.includes(n)) dequantized.push(n);
    return dequantizeWeight(w, n).data;
  };
  const linear = (x: string, n: string): string => {
    const w = weight(n);
    const [N, K] = weightShape(w) as [number, number];
    const e = w.kind === "dense" ? undefined : linearEncoding(w, n);
    if (e?.kind === "matmulnbits") {
      matMulNBits.push(n);
      const { B, scales, zeros, inexactScales } = matMulNBitsInitializers(e.coded, e.block, e.bits, g.T === OnnxDataType.FLOAT16);
      g.inexactScales += inexactScales;
      const blocks = Math.ceil(K / e.block);
      // a tied classifier shares the embedding's codes with its GatherBlockQuantized (embed below)
      const qweight = g.has(`${n}.qweight`) ? `${n}.qweight` : g.init(`${n}.qweight`, OnnxDataType.UINT8, [N, blocks, (e.block * e.bits) / 8], B);
      const ins = [x, qweight, g.init(`${n}.scales`, g.T, [N * blocks], scales)];
      if (zeros) ins.push(g.init(`${n}.qzeros`, OnnxDataType.UINT8, [zeros.length], zeros));
      return g.op("MatMulNBits", ins, [{ name: "K", i: K }, { name: "N", i: N }, { name: "bits", i: e.bits }, { name: "block_size", i: e.block }, { name: "accuracy_level", i: accuracyLevel }], "com.microsoft");
    }
    if (e?.kind === "dequantizelinear") {
      dequantizeLinear.push(n);
      return g.op("MatMul", [x, dequantizeLinearWeight(g, n, e.coded, e.elem)]);
    }
    if (e?.kind === "float") floatWhy.set(n, e.why);
    floats.push(n);
    // the tied classifier is the embedding table: stored once, transposed in the graph (ORT folds it at load)
    if (n === TensorNames.tokenEmbd && g.has(n)) return g.op("MatMul", [x, g.op("Transpose", [n], [{ name: "perm", ints: [1, 0] }])]);
    const f = floatData(n);
    const t = new Float32Array(K * N); // (K, N): MatMul's B is the transposed weight
    for (let r = 0; r < N; r++) for (let k = 0; k < K; k++) t[k * N + r] = f[r * K + k]!;
    return g.op("MatMul", [x, g.floatInit(`${n}.t`, [K, N], t)]);
  };
  const rmsnorm = (x: string, n: string): string => {
    const w = g.floatInit(n, [c.dim], floatData(n));
    const ms = g.op("ReduceMean", [g.op("Mul", [x, x]), g.i64([-1])], [{ name: "keepdims", i: 1 }]);
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(c.normEps)])])]);
    return g.op("Mul", [w, g.op("Mul", [inv, x])]); // run.c: w · (inv · x)
  };

  const { dim, nHeads: H, nKvHeads: Hkv, headDim: D, nLayers, vocabSize: V } = c;
  // partial rotary (Phi-4-mini): only the first R values of each head rotate, the rest pass through
  const R = rotaryDimOf(c);
  const half = R / 2, group = H / Hkv;
  const past = (l: number, kv: "key" | "value") => `past_key_values.${l}.${kv}`;
  const inputs: OnnxValueInfo[] = [
    { name: "input_ids", elemType: OnnxDataType.INT64, shape: ["batch_size", "sequence_length"] },
    { name: "attention_mask", elemType: OnnxDataType.INT64, shape: ["batch_size", "total_sequence_length"] },
    { name: "position_ids", elemType: OnnxDataType.INT64, shape: ["batch_size", "sequence_length"] },
  ];
  const outputs: OnnxValueInfo[] = [{ name: "logits", elemType: g.T, shape: ["batch_size", "sequence_length", V] }];
  for (let l = 0; l < nLayers; l++) {
    for (const kv of ["key", "value"] as const) {
      inputs.push({ name: past(l, kv), elemType: g.T, shape: ["batch_size", Hkv, "past_sequence_length", D] });
      outputs.push({ name: `present.${l}.${kv}`, elemType: g.T, shape: ["batch_size", Hkv, "total_sequence_length", D] });
    }
  }

  // RoPE tables (seqLen, rotaryDim/2) per frequency set (model/llama.ts ropeSetsOf: one, or Gemma 3's global and
  // local), as Llama.ropeTables computes them: angle = fround(pos · invFreq[j]); LongRoPE: the factor set of a
  // context of seqLen (model/llama.ts ropeFactorSet, as a default Llama instance) and the attention factor folded
  // into cos and sin
  const ropeScale = c.longRope?.attentionFactor ?? 1;
  const traits = ARCH_TRAITS[c.arch];
  const neox = traits.rope === "neox";
  // interleaved pairs (x[2j], x[2j+1]) split the last axis of (…, half, 2); NeoX halves (x[j], x[j+half]) of (…, 2, half)
  const ropeShape = g.i64(neox ? [0, 0, 1, 1, half] : [0, 0, 1, half, 1]);
  const ropeSets = ropeSetsOf(c);
  const ropeTabs = ropeSets.params.map((r, i) => {
    const invFreq = ropeInvFreq(c, model.weights.get(ROPE_FREQS), undefined, r.theta, r.linear);
    const cosT = new Float32Array(c.seqLen * half), sinT = new Float32Array(c.seqLen * half);
    for (let p = 0; p < c.seqLen; p++) {
      for (let j = 0; j < half; j++) {
        const a = Math.fround(p * invFreq[j]!);
        cosT[p * half + j] = Math.cos(a) * ropeScale;
        sinT[p * half + j] = Math.sin(a) * ropeScale;
      }
    }
    const sfx = i === 0 ? "" : `.${i}`;
    const cos = g.op("Reshape", [g.op("Gather", [g.floatInit(`rope.cos${sfx}`, [c.seqLen, half], cosT), "position_ids"]), ropeShape]); // (B, S, 1, half, 1)
    const sin = g.op("Reshape", [g.op("Gather", [g.floatInit(`rope.sin${sfx}`, [c.seqLen, half], sinT), "position_ids"]), ropeShape]);
    return { cos, sin };
  });
  const rope = (x: string, heads: number, l: number): string => {
    const { cos, sin } = ropeTabs[ropeSets.ofLayer[l]!]!;
    const axis = neox ? -2 : -1;
    // partial rotary: split each head (…, heads, D) into the rotated R values and the D − R that pass through
    let rot = x, pass: string | undefined;
    if (R < D) [rot, pass] = g.opN("Split", [g.op("Reshape", [x, g.i64([0, 0, heads, D])]), g.i64([R, D - R])], 2, [{ name: "axis", i: -1 }]) as [string, string];
    const pairs = g.op("Reshape", [rot, g.i64(neox ? [0, 0, heads, 2, half] : [0, 0, heads, half, 2])]);
    const [a, b] = g.opN("Split", [pairs, g.i64([1, 1])], 2, [{ name: "axis", i: axis }]);
    const ra = g.op("Sub", [g.op("Mul", [a!, cos]), g.op("Mul", [b!, sin])]); // a·cos − b·sin
    const rb = g.op("Add", [g.op("Mul", [a!, sin]), g.op("Mul", [b!, cos])]); // a·sin + b·cos
    const rotated = g.op("Reshape", [g.op("Concat", [ra, rb], [{ name: "axis", i: axis }]), g.i64([0, 0, heads, R])]);
    return pass === undefined ? rotated : g.op("Concat", [rotated, pass], [{ name: "axis", i: -1 }]);
  };
  /** the architecture's steps between projection and RoPE (model/llama.ts qkvTraits): bias, per-head RMSNorm */
  const bias = (x: string, n: string, width: number): string => g.op("Add", [x, g.floatInit(n, [width], floatData(n))]);
  /** OLMo 2's q/k norm: one RMSNorm over the whole projection (width heads·D) */
  const projNorm = (x: string, width: number, n: string): string => {
    const w = g.floatInit(n, [width], floatData(n));
    const ms = g.op("ReduceMean", [g.op("Mul", [x, x]), g.i64([-1])], [{ name: "keepdims", i: 1 }]);
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(c.normEps)])])]);
    return g.op("Mul", [w, g.op("Mul", [inv, x])]);
  };
  const headNorm = (x: string, heads: number, n: string): string => {
    const h = g.op("Reshape", [x, g.i64([0, 0, heads, D])]);
    const w = g.floatInit(n, [D], floatData(n));
    const ms = g.op("ReduceMean", [g.op("Mul", [h, h]), g.i64([-1])], [{ name: "keepdims", i: 1 }]);
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(c.normEps)])])]);
    return g.op("Reshape", [g.op("Mul", [w, g.op("Mul", [inv, h])]), g.i64([0, 0, heads * D])]);
  };
  const project = (h: string, l: number, which: "q" | "k" | "v"): string => {
    const names = { q: [TensorNames.attnQ, TensorNames.attnQBias, TensorNames.attnQNorm], k: [TensorNames.attnK, TensorNames.attnKBias, TensorNames.attnKNorm], v: [TensorNames.attnV, TensorNames.attnVBias, undefined] } as const;
    const [w, b, nrm] = names[which];
    const heads = which === "q" ? H : Hkv;
    let y = linear(h, w(l));
    if (traits.qkvBias) y = bias(y, b(l), heads * D);
    if (traits.qkNorm === "head" && nrm) y = headNorm(y, heads, nrm(l));
    if (traits.qkNorm === "projection" && nrm) y = projNorm(y, heads * D, nrm(l));
    return y;
  };

  // causal + padding mask (B, 1, 1, S, T): key j is visible to query i when j ≤ past + i and attention_mask[b, j] = 1
  const scalarOf = (x: string) => g.op("Squeeze", [x, g.i64([0])]);
  const P = scalarOf(g.op("Shape", [past(0, "key")], [{ name: "start", i: 2 }, { name: "end", i: 3 }]));
  const S = scalarOf(g.op("Shape", ["input_ids"], [{ name: "start", i: 1 }, { name: "end", i: 2 }]));
  const T = scalarOf(g.op("Shape", ["attention_mask"], [{ name: "start", i: 1 }, { name: "end", i: 2 }]));
  const one = g.i64s(1), zero = g.i64s(0);
  const kj = g.op("Range", [zero, T, one]); // (T)
  const qi = g.op("Unsqueeze", [g.op("Range", [P, g.op("Add", [P, S]), one]), g.i64([1])]); // (S, 1)
  const causal = g.op("LessOrEqual", [kj, qi]); // (S, T)
  const pad = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], [{ name: "to", i: OnnxDataType.BOOL }]), g.i64([1, 2, 3])]); // (B, 1, 1, 1, T)
  const fullMask = g.op("And", [causal, pad]);
  // a sliding window W (Mistral; Gemma's sliding layers): key j visible to query i only when i − j < W
  const windowMask = c.slidingWindow === undefined ? undefined
    : g.op("And", [g.op("And", [causal, g.op("Greater", [kj, g.op("Sub", [qi, g.i64s(c.slidingWindow)])])]), pad]);
  const maskOf = (l: number): string => (layerWindow(c, l) !== undefined ? windowMask! : fullMask);
  const negInf = g.scalar(g.T === OnnxDataType.FLOAT16 ? -65504 : -3.4028234663852886e38); // lowest finite: exp(· − max) = 0
  const sqrtD = g.scalar(Math.fround(Math.sqrt(D))); // kv-cache.ts: scores / fround(sqrt(hd))

  /**
   * The token embedding's rows: a quantized table whose codes fit MatMulNBits at 4 or 8 bits with whole blocks
   * per row is gathered by com.microsoft::GatherBlockQuantized straight from those codes (the same `qweight`
   * bytes [V, blocks, block·bits/8] a tied classifier's MatMulNBits reads; scales and zero points [V, blocks, 1],
   * one zero point per byte); anything else is gathered as float rows.
   */
  const embed = (): string => {
    const n = TensorNames.tokenEmbd;
    const w = weight(n);
    const e = w.kind === "dense" ? undefined : linearEncoding(w, n);
    const why = !e ? undefined
      : e.kind === "float" ? e.why
      : e.kind !== "matmulnbits" ? `${e.coded.source}: its codes need a DequantizeLinear, which has no gather form`
      : e.bits === 2 ? `${e.coded.source}: 2-bit codes (GatherBlockQuantized takes 4 or 8)`
      : dim % e.block !== 0 ? `${e.coded.source}: rows of ${dim} are not whole blocks of ${e.block}` : undefined;
    if (!e || e.kind !== "matmulnbits" || why !== undefined) {
      if (why !== undefined) floatWhy.set(n, `${why} — the graph gathers float rows`);
      return g.op("Gather", [g.floatInit(n, [V, dim], floatData(n)), "input_ids"]);
    }
    gathered.push(n);
    const blocks = dim / e.block;
    const { B, scales, inexactScales } = matMulNBitsInitializers(e.coded, e.block, e.bits, g.T === OnnxDataType.FLOAT16);
    g.inexactScales += inexactScales;
    const ins = [g.init(`${n}.qweight`, OnnxDataType.UINT8, [V, blocks, (e.block * e.bits) / 8], B), "input_ids", g.init(`${n}.gather_scales`, g.T, [V, blocks, 1], scales)];
    const z = e.coded.zeros!;
    if (!z.every((v) => v === 2 ** (e.bits - 1))) ins.push(g.init(`${n}.gather_zeros`, OnnxDataType.UINT8, [V, blocks, 1], Uint8Array.from(z)));
    const rows = g.op("GatherBlockQuantized", ins, [{ name: "gather_axis", i: 0 }, { name: "quantize_axis", i: 2 }, { name: "block_size", i: e.block }, { name: "bits", i: e.bits }], "com.microsoft"); // (B, S, blocks, block)
    return g.op("Reshape", [rows, g.i64([0, 0, dim])]);
  };
  const mult = c.multipliers; // Granite (model/llama.ts: the same four places)
  let x = embed(); // (B, S, dim)
  if (mult) x = g.op("Mul", [x, g.scalar(mult.embedding)]);
  if (traits.embedScaleSqrtDim) x = g.op("Mul", [x, g.scalar(Math.fround(Math.sqrt(dim)))]);
  // the branch outputs: post-branch norm (Gemma, OLMo 2), Granite's residual multiplier
  const residual = (y: string, post?: string): string => {
    const n = post !== undefined ? rmsnorm(y, post) : y;
    return mult ? g.op("Mul", [n, g.scalar(mult.residual)]) : n;
  };
  const preNorm = (y: string, n: string): string => (traits.norms === "post" ? y : rmsnorm(y, n));
  const qScale = queryPrescale(c); // model/llama.ts: q pre-scaled so that q·k / √D is the model's score scale
  const softcap = (y: string, cap: number): string => g.op("Mul", [g.op("Tanh", [g.op("Div", [y, g.scalar(cap)])]), g.scalar(cap)]);
  for (let l = 0; l < nLayers; l++) {
    const h = preNorm(x, TensorNames.attnNorm(l));
    const qp = project(h, l, "q");
    const q = rope(qScale !== 1 ? g.op("Mul", [qp, g.scalar(qScale)]) : qp, H, l);
    const k = rope(project(h, l, "k"), Hkv, l);
    const v = g.op("Reshape", [project(h, l, "v"), g.i64([0, 0, Hkv, D])]);
    const q5 = g.op("Transpose", [g.op("Reshape", [q, g.i64([0, 0, Hkv, group, D])])], [{ name: "perm", ints: [0, 2, 3, 1, 4] }]); // (B, Hkv, group, S, D)
    const kT = g.op("Transpose", [k], [{ name: "perm", ints: [0, 2, 1, 3] }]); // (B, Hkv, S, D)
    const vT = g.op("Transpose", [v], [{ name: "perm", ints: [0, 2, 1, 3] }]);
    const presentK = g.op("Concat", [past(l, "key"), kT], [{ name: "axis", i: 2 }], undefined, `present.${l}.key`); // (B, Hkv, T, D)
    const presentV = g.op("Concat", [past(l, "value"), vT], [{ name: "axis", i: 2 }], undefined, `present.${l}.value`);
    // query head h uses KV head ⌊h / group⌋ (kv-cache.ts attendRef): broadcast (B, Hkv, 1, …) over the group axis
    const k5 = g.op("Transpose", [g.op("Unsqueeze", [presentK, g.i64([2])])], [{ name: "perm", ints: [0, 1, 2, 4, 3] }]); // (B, Hkv, 1, D, T)
    let scores = g.op("Div", [g.op("MatMul", [q5, k5]), sqrtD]); // (B, Hkv, group, S, T)
    if (c.attnSoftcap !== undefined) scores = softcap(scores, c.attnSoftcap); // Gemma 2 (kv-cache.ts expScores), before the mask
    const probs = g.op("Softmax", [g.op("Where", [maskOf(l), scores, negInf])], [{ name: "axis", i: -1 }]);
    const att = g.op("MatMul", [probs, g.op("Unsqueeze", [presentV, g.i64([2])])]); // (B, Hkv, group, S, D)
    const merged = g.op("Reshape", [g.op("Transpose", [att], [{ name: "perm", ints: [0, 3, 1, 2, 4] }]), g.i64([0, 0, H * D])]); // (B, S, H·D)
    const postNorms = traits.norms !== "pre";
    x = g.op("Add", [x, residual(linear(merged, TensorNames.attnOutput(l)), postNorms ? TensorNames.postAttnNorm(l) : undefined)]);
    const h2 = preNorm(x, TensorNames.ffnNorm(l));
    const gate = linear(h2, TensorNames.ffnGate(l));
    const up = linear(h2, TensorNames.ffnUp(l));
    const act = g.op("Mul", [traits.activation === "silu" ? g.op("Mul", [gate, g.op("Sigmoid", [gate])]) : geluTanh(gate), up]); // act(w1·x) · (w3·x)
    x = g.op("Add", [x, residual(linear(act, TensorNames.ffnDown(l)), postNorms ? TensorNames.postFfnNorm(l) : undefined)]);
  }
  /** transformers GELUTanh: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (model/llama.ts geglu) */
  function geluTanh(y: string): string {
    const inner = g.op("Mul", [g.scalar(Math.sqrt(2 / Math.PI)), g.op("Add", [y, g.op("Mul", [g.scalar(0.044715), g.op("Mul", [y, g.op("Mul", [y, y])])])])]);
    return g.op("Mul", [g.op("Mul", [g.scalar(0.5), y]), g.op("Add", [g.scalar(1), g.op("Tanh", [inner])])]);
  }
  const out = model.weights.has(TensorNames.output) ? TensorNames.output : TensorNames.tokenEmbd;
  let logits = linear(rmsnorm(x, TensorNames.outputNorm), out);
  if (mult) logits = g.op("Mul", [logits, g.scalar(1 / mult.logits)]);
  if (c.finalSoftcap !== undefined) logits = softcap(logits, c.finalSoftcap);
  g.op("Identity", [logits], [], undefined, "logits");

  if (dequantized.length > 0) {
    const exact = g.T === OnnxDataType.FLOAT ? "exact dequantized float32" : "dequantized, then rounded to float16";
    // one line per reason: what each tensor is, and why its codes could not be carried
    const byWhy = new Map<string, string[]>();
    for (const n of dequantized) {
      const w = weight(n);
      const why = floatWhy.get(n) ?? `${w.kind === "quant" ? w.q.spec : w.kind === "ggml" ? `ggml ${GgmlType[w.type]}` : "dense"}`;
      byWhy.set(why, [...(byWhy.get(why) ?? []), n]);
    }
    for (const [why, names] of byWhy) {
      notes.push(`${names.length} tensor${names.length > 1 ? "s" : ""} written as ${exact}, not as their codes — ${why}: ${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}`);
    }
  }
  if (g.T === OnnxDataType.FLOAT16 && g.inexactScales > 0) notes.push(`${g.inexactScales} MatMulNBits scales are not float16 values and were rounded to float16`);

  const file = d.file;
  const threshold = opts.externalDataThreshold ?? EXTERNAL_DATA_THRESHOLD;
  let external: OnnxGraphResult["external"];
  const total = g.inits.reduce((a, t) => a + (t.rawData?.length ?? 0), 0);
  if (total > threshold) {
    const extFile = `${file}_data`;
    const bytes: Uint8Array[] = [];
    let off = 0;
    for (const t of g.inits) {
      const r = t.rawData!;
      if (r.length < EXTERNAL_MIN_BYTES) continue;
      t.external = { location: extFile, offset: off, length: r.length };
      delete t.rawData;
      bytes.push(r);
      off += r.length;
      const padTo = Math.ceil(off / 64) * 64; // aligned offsets, as onnx's save_model(… all_tensors_to_one_file)
      if (padTo > off) { bytes.push(new Uint8Array(padTo - off)); off = padTo; }
    }
    external = { file: extFile, bytes, length: off };
  }
  const bytes = encodeOnnxModel({
    irVersion: IR_VERSION,
    opsets: [{ domain: "", version: OPSET }, { domain: "com.microsoft", version: 1 }],
    producerName: "quantlab",
    producerVersion: "0.1.0",
    graphName: c.arch,
    nodes: g.nodes,
    initializers: g.inits,
    inputs,
    outputs,
    metadata: model.recipe !== undefined ? { "quantlab.recipe": model.recipe } : {},
  });
  return { file, model: bytes, ...(external ? { external } : {}), notes, matMulNBits, dequantizeLinear, gatherBlockQuantized: gathered, float: floats };
}

/**
 * B, scales and zero points of MatMulNBits for coded weights (layout in the file comment): codes packed low
 * bits first along K (8 / bits per byte), zero points packed the same way per row, omitted when they are all
 * the op's default 2^(bits−1).
 */
export function matMulNBitsInitializers(c: CodedWeight, block: number, bits: 2 | 4 | 8, f16: boolean): { B: Uint8Array; scales: Uint8Array; zeros?: Uint8Array; inexactScales: number } {
  const { N, K, codes } = c;
  const blocks = Math.ceil(K / block);
  const blob = (block * bits) / 8, per = 8 / bits;
  const B = new Uint8Array(N * blocks * blob);
  for (let r = 0; r < N; r++) {
    for (let k = 0; k < K; k++) {
      const w = k % block;
      B[(r * blocks + Math.floor(k / block)) * blob + Math.floor(w / per)]! |= codes[r * K + k]! << ((w % per) * bits);
    }
  }
  // quantlab's group order is (row, group along K), the same as MatMulNBits' (N, blocks); per channel: one block per row
  const sv = c.scales;
  if (sv.length !== N * blocks) throw new QuantlabError("E_INTERNAL", `${c.source}: ${sv.length} scales for ${N}×${blocks} MatMulNBits blocks`);
  const scales = f16 ? f16Bytes(sv) : new Uint8Array(new Float32Array(sv).buffer);
  let inexactScales = 0;
  if (f16) for (let i = 0; i < sv.length; i++) if (f16BitsToF32(f32ToF16Bits(sv[i]!)) !== sv[i]) inexactScales++;
  const z = c.zeros!;
  if (z.every((v) => v === 2 ** (bits - 1))) return { B, scales, inexactScales };
  const perRow = Math.ceil(blocks / per);
  const zeros = new Uint8Array(N * perRow);
  for (let r = 0; r < N; r++) for (let j = 0; j < blocks; j++) zeros[r * perRow + Math.floor(j / per)]! |= z[r * blocks + j]! << ((j % per) * bits);
  return { B, scales, zeros, inexactScales };
}

/**
 * A weight as DequantizeLinear (opset 21) of its codes, stored transposed as (K, N) so the output is
 * MatMul's B directly — the QDQ form ONNX Runtime recognises: row blocks become blocks along axis 0
 * (`block_size`, scales (⌈K/block⌉, N)), one scale per row a per-axis scale on axis 1, per input column on
 * axis 0, a tensor scale a scalar. 4-bit elements pack two per byte, the first in the low nibble.
 */
function dequantizeLinearWeight(g: GraphBuilder, n: string, c: CodedWeight, elem: OnnxDataType): string {
  const { N, K, codes } = c;
  const cb = elem === OnnxDataType.UINT4 ? 4 : elem === OnnxDataType.UINT16 ? 16 : 8;
  const packed = (vals: (i: number) => number, count: number): Uint8Array => {
    if (cb === 4) { const o = new Uint8Array(Math.ceil(count / 2)); for (let i = 0; i < count; i++) o[i >> 1]! |= vals(i) << ((i & 1) * 4); return o; }
    if (cb === 16) { const o = new Uint16Array(count); for (let i = 0; i < count; i++) o[i] = vals(i); return new Uint8Array(o.buffer); }
    const o = new Uint8Array(count); for (let i = 0; i < count; i++) o[i] = vals(i); return o;
  };
  const X = packed((i) => codes[(i % N) * K + Math.floor(i / N)]!, N * K); // (K, N): element (k, r) is code (r, k)
  let scaleDims: number[], attrs: OnnxAttr[], order: (i: number) => number;
  const L = c.layout;
  if (L.kind === "row" && L.block < K) {
    const nb = Math.ceil(K / L.block);
    scaleDims = [nb, N];
    attrs = [{ name: "axis", i: 0 }, { name: "block_size", i: L.block }];
    order = (i) => (i % N) * nb + Math.floor(i / N); // (b, r) ← quantlab's (r, b)
  } else if (L.kind === "row") {
    scaleDims = [N]; attrs = [{ name: "axis", i: 1 }]; order = (i) => i;
  } else if (L.kind === "col") {
    scaleDims = [K]; attrs = [{ name: "axis", i: 0 }]; order = (i) => i;
  } else {
    scaleDims = []; attrs = []; order = () => 0;
  }
  const count = scaleDims.reduce((a, b) => a * b, 1);
  const sv = new Float32Array(count);
  for (let i = 0; i < count; i++) sv[i] = c.scales[order(i)]!;
  if (g.T === OnnxDataType.FLOAT16) for (let i = 0; i < count; i++) if (f16BitsToF32(f32ToF16Bits(sv[i]!)) !== sv[i]) g.inexactScales++;
  const ins = [g.init(`${n}.qweight`, elem, [K, N], X), g.floatInit(`${n}.scales`, scaleDims, sv)];
  if (c.kind === "int") ins.push(g.init(`${n}.qzeros`, elem, scaleDims, packed((i) => c.zeros![order(i)]!, count)));
  return g.op("DequantizeLinear", ins, attrs);
}

function f16Bytes(v: Float32Array): Uint8Array {
  const h = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) h[i] = f32ToF16Bits(v[i]!);
  return new Uint8Array(h.buffer);
}

/** Nodes and initializers, with fresh value names. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly inits: OnnxTensor[] = [];
  private n = 0;
  private readonly consts = new Map<string, string>();
  /** float16 graphs: scales that float16 could not hold exactly */
  inexactScales = 0;
  constructor(readonly T: OnnxDataType) {}

  opN(opType: string, input: string[], nOut: number, attribute: OnnxAttr[] = [], domain?: string, outNames?: string[]): string[] {
    const id = this.n++;
    const output = outNames ?? Array.from({ length: nOut }, (_, i) => `/${opType}_${id}${nOut > 1 ? `_${i}` : ""}`);
    this.nodes.push({ opType, name: `${opType}_${id}`, input, output, attribute, ...(domain ? { domain } : {}) });
    return output;
  }

  op(opType: string, input: string[], attribute: OnnxAttr[] = [], domain?: string, outName?: string): string {
    return this.opN(opType, input, 1, attribute, domain, outName ? [outName] : undefined)[0]!;
  }

  has(name: string): boolean {
    return this.inits.some((t) => t.name === name);
  }

  init(name: string, dataType: OnnxDataType, dims: number[], rawData: Uint8Array): string {
    this.inits.push({ name, dataType, dims, rawData });
    return name;
  }

  /** A float initializer in the graph's float type. */
  floatInit(name: string, dims: number[], v: Float32Array): string {
    if (this.T === OnnxDataType.FLOAT16) return this.init(name, this.T, dims, f16Bytes(v));
    return this.init(name, this.T, dims, new Uint8Array(new Float32Array(v).buffer));
  }

  /** A scalar float constant (shared by value). */
  scalar(x: number): string {
    const key = `f:${x}`;
    let n = this.consts.get(key);
    if (!n) {
      n = this.floatInit(`const_f_${this.consts.size}`, [], new Float32Array([x]));
      this.consts.set(key, n);
    }
    return n;
  }

  /** An int64 vector constant (shared by value). */
  i64(v: number[]): string {
    return this.int64(v, [v.length]);
  }

  /** An int64 scalar constant. */
  i64s(x: number): string {
    return this.int64([x], []);
  }

  private int64(v: number[], dims: number[]): string {
    const key = `i:${dims.length}:${v.join(",")}`;
    let n = this.consts.get(key);
    if (!n) {
      n = this.init(`const_i_${this.consts.size}`, OnnxDataType.INT64, dims, new Uint8Array(BigInt64Array.from(v.map((x) => BigInt(x))).buffer));
      this.consts.set(key, n);
    }
    return n;
  }
}

/** tokenizer.json and tokenizer_config.json of a model (as writeHfModel writes them), if it has a tokenizer. */
export function tokenizerFiles(model: Model): { json: unknown; config: TokenizerConfigJson } | undefined {
  const t = model.tokenizer;
  if (!t) return undefined;
  if (t instanceof HfTokenizer) return { json: t.json, config: t.config };
  const v = t.vocab();
  const config: TokenizerConfigJson = {
    add_bos_token: v.addBos, add_eos_token: false,
    ...(v.bosId >= 0 ? { bos_token: v.pieces[v.bosId] } : {}), ...(v.eosId >= 0 ? { eos_token: v.pieces[v.eosId] } : {}), ...(v.unkId !== undefined ? { unk_token: v.pieces[v.unkId] } : {}),
    model_max_length: model.config.seqLen,
  };
  return { json: vocabToTokenizerJson(v), config };
}

export interface OnnxDirResult {
  files: string[];
  bytes: number;
  notes: string[];
  matMulNBits: number;
  dequantizeLinear: number;
  /** 1 when the token embedding's rows are gathered from its codes */
  gatherBlockQuantized: number;
  floatLinears: number;
}

/**
 * Writes the transformers.js directory of a model: config.json, generation_config.json, the tokenizer
 * files (a model without a tokenizer is refused: transformers.js's pipeline needs one) and onnx/<file>.
 */
export async function writeOnnxDir(model: Model, out: DirSink, opts: OnnxExportOptions): Promise<OnnxDirResult> {
  const name = opts.name ?? "output";
  const tok = tokenizerFiles(model);
  if (!tok) throw new QuantlabError("E_ARG", `${name}: ${model.source.path} has no tokenizer; transformers.js needs tokenizer.json (pass --tokenizer)`);
  const g = buildOnnxGraph(model, opts);
  const files: string[] = [];
  let bytes = 0;
  const enc = new TextEncoder();
  const writeBytes = async (file: string, chunks: Uint8Array[]) => {
    await out.writeFile(file, async (sink) => { for (const b of chunks) await sink.write(b); });
    files.push(file);
    bytes += chunks.reduce((a, b) => a + b.length, 0);
  };
  const writeText = (file: string, text: string) => writeBytes(file, [enc.encode(text)]);
  let config: ModelConfig = model.config;
  const rf = model.weights.get(ROPE_FREQS);
  if (rf && !config.ropeScaling) {
    const s = inferLlama3Scaling(config, dequantizeWeight(rf, ROPE_FREQS).data);
    if (s) config = { ...config, ropeScaling: s };
  }
  const hf: Record<string, unknown> = { ...modelConfigToHf(config, model.tokenizer, ONNX_DTYPES[opts.dtype].float === "fp16" ? "float16" : "float32") };
  if (g.external) hf["transformers.js_config"] = { use_external_data_format: { [g.file]: 1 } };
  await writeText("config.json", JSON.stringify(hf, null, 2) + "\n");
  const t = model.tokenizer!;
  const gen: Record<string, unknown> = { _from_model_config: true };
  if (t.bosId >= 0) gen.bos_token_id = t.bosId;
  if (t.eosId >= 0) gen.eos_token_id = t.eosId;
  await writeText("generation_config.json", JSON.stringify(gen, null, 2) + "\n");
  await writeText("tokenizer.json", JSON.stringify(tok.json) + "\n");
  await writeText("tokenizer_config.json", JSON.stringify(tok.config, null, 2) + "\n");
  await writeBytes(`onnx/${g.file}`, [g.model]);
  if (g.external) await writeBytes(`onnx/${g.external.file}`, g.external.bytes);
  return { files, bytes, notes: g.notes, matMulNBits: g.matMulNBits.length, dequantizeLinear: g.dequantizeLinear.length, gatherBlockQuantized: g.gatherBlockQuantized.length, floatLinears: g.float.length };
}
