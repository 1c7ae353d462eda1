/**
 * How the ONNX export carries one linear weight: as its own integer codes (MatMulNBits, or a blocked
 * DequantizeLinear feeding a MatMul), as float8 codes (DequantizeLinear), or — where ONNX Runtime has no
 * exact equivalent — as dequantized float, with the reason. Every coded plan is checked against the
 * weight's own dequantization before it is used: ONNX Runtime computes (code − zero_point) · scale in
 * float32 (DequantizeLinear, opset 21; MatMulNBits' dequantization), so a plan is taken only when that
 * expression reproduces every value bit for bit. A plan that does not is never written as codes.
 *
 * Sources of codes:
 * - quantlab QTensors (quant/tensor.ts) whose levels are integers — int2…int16 grids (sym, symfull, asym with
 *   integer zero points), ternary and binary levels — with group / channel / input-channel / tensor scales;
 * - QTensors whose levels are float8 values: fp8 e4m3 (OCP "fn"), e5m2, and their fnuz variants, as ONNX's
 *   FLOAT8E4M3FN / FLOAT8E5M2 / FLOAT8E4M3FNUZ / FLOAT8E5M2FNUZ (onnx.proto TensorProto.DataType);
 * - llama.cpp blocks with one scale per block and an integer offset: Q4_0, Q5_0, Q8_0 (x = d·(q − off)) and
 *   Q6_K (x = (d·sc)·(q − 32) per 16), types whose values are exactly (code − offset)·scale in float32.
 *   Types with a float minimum per block (Q4_1, Q5_1, Q2_K…Q5_K) or codebooks (IQ*) have no integer zero point.
 */
import { QuantlabError } from "../core/errors.js";
import { f16BitsToF32 } from "../core/f16.js";
import { GgmlType } from "../core/ggml-type.js";
import { weightShape, type Weight } from "../core/weight.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { QTensor } from "../quant/tensor.js";

/** How the scales of a coded weight (N rows of K) are laid out. */
export type ScaleLayout =
  /** one scale per `block` consecutive values of a row (ragged last block); block = K is per channel */
  | { kind: "row"; block: number }
  /** one scale per input column (K scales) */
  | { kind: "col" }
  /** one scale for the whole tensor */
  | { kind: "tensor" };

/** ONNX's float8 element types (onnx.proto TensorProto.DataType values) */
export const ONNX_FLOAT8 = { fp8_e4m3: 17, fp8_e4m3fnuz: 18, fp8_e5m2: 19, fp8_e5m2fnuz: 20 } as const;
export type Float8Name = keyof typeof ONNX_FLOAT8;

export interface CodedWeight {
  N: number;
  K: number;
  /** "int": unsigned integer codes (value = (code − zero)·scale); "fp8": float8 bit patterns (value = fp8·scale) */
  kind: "int" | "fp8";
  /** int: bits per code (the container holds them: ≤ 4 → 4-bit, ≤ 8 → 8-bit, ≤ 16 → 16-bit) */
  bits: number;
  fp8?: Float8Name;
  /** (N, K) row-major: unsigned codes, or float8 bytes */
  codes: Uint16Array;
  layout: ScaleLayout;
  /** in layout order: (N, ⌈K/block⌉) row blocks, K columns, or 1 */
  scales: Float32Array;
  /** int: the zero point of each scale, in the codes' range */
  zeros?: Uint16Array;
  /** where the codes came from, for the CLI's summary */
  source: string;
}

export type WeightPlan = { coded: CodedWeight } | { why: string };

/** The scale index of element (r, k). */
export function scaleIndex(layout: ScaleLayout, K: number, r: number, k: number): number {
  switch (layout.kind) {
    case "row": return r * Math.ceil(K / layout.block) + Math.floor(k / layout.block);
    case "col": return k;
    case "tensor": return 0;
  }
}

/** ONNX Runtime's value of a coded element: fround((code − zero)·scale) or fround(fp8(code)·scale). */
export function codedValue(c: CodedWeight, r: number, k: number, fp8Table?: Float64Array): number {
  const i = r * c.K + k, s = scaleIndex(c.layout, c.K, r, k);
  if (c.kind === "fp8") return Math.fround(fp8Table![c.codes[i]!]! * c.scales[s]!);
  return Math.fround((c.codes[i]! - (c.zeros ? c.zeros[s]! : 0)) * c.scales[s]!);
}

/** Plans a weight, verifying the plan against the weight's own values. */
export function planWeight(w: Weight, name: string): WeightPlan {
  const p = w.kind === "quant" && w.q instanceof QTensor ? fromQTensor(w.q) : w.kind === "ggml" ? fromGgml(w) : { why: w.kind === "dense" ? "not quantized" : "not a quantlab QTensor" };
  if (!("coded" in p)) return p;
  const c = p.coded;
  const want = dequantizeWeight(w, name).data;
  const table = c.kind === "fp8" ? float8Table(c.fp8!) : undefined;
  for (let r = 0; r < c.N; r++) {
    for (let k = 0; k < c.K; k++) {
      const got = codedValue(c, r, k, table), v = want[r * c.K + k]!;
      if (got !== v && !(Number.isNaN(got) && Number.isNaN(v))) {
        return { why: `${c.source}: element (${r}, ${k}) would be ${got} in ONNX Runtime's dequantization, not ${v}` };
      }
    }
  }
  return p;
}

function fromQTensor(q: QTensor): WeightPlan {
  const s = q.specObject;
  const spec = q.spec;
  if (q.shape.length !== 2) return { why: `${spec}: a ${q.shape.length}-D tensor` };
  const [N, K] = q.shape as [number, number];
  if (q.quantizer.dim > 1) return { why: `${spec}: vector-quantized codewords have no ONNX equivalent` };
  if (q.codebook) return { why: `${spec}: a learned codebook has no ONNX equivalent` };
  if (s.outlierPercent !== undefined) return { why: `${spec}: its f16 outlier table (outliers=) has no ONNX equivalent` };
  if (s.scheme === "mean") return { why: `${spec}: the mean scheme has no ONNX equivalent` };
  if (q.zeros && q.zeros.kind !== "int") return { why: `${spec}: float zero points (asymf) have no ONNX equivalent (DequantizeLinear's zero point is an integer)` };
  let layout: ScaleLayout;
  const g = s.granularity;
  if (g.kind === "group") layout = { kind: "row", block: g.size };
  else if (g.kind === "channel") layout = { kind: "row", block: K };
  else if (g.kind === "ichannel") layout = { kind: "col" };
  else if (g.kind === "tensor" || g.kind === "layer" || g.kind === "none") layout = { kind: "tensor" };
  else return { why: `${spec}: ${g.kind} blocks have no DequantizeLinear layout (blocks along one axis only)` };
  const nScales = layout.kind === "row" ? N * Math.ceil(K / layout.block) : layout.kind === "col" ? K : 1;
  const scales = q.scales ? Float32Array.from(q.scales.values) : new Float32Array(1).fill(1);
  if (scales.length !== nScales) return { why: `${spec}: ${scales.length} scales where the layout has ${nScales}` };
  const raw = q.unpackCodes();
  const nCodes = 2 ** s.bits;
  const levels = new Float64Array(nCodes);
  for (let c = 0; c < nCodes; c++) levels[c] = q.quantizer.levelOf(c);
  const used = new Uint8Array(nCodes);
  for (let i = 0; i < raw.length; i++) used[raw[i]!] = 1;
  // an integer-level format (int grids, ternary, binary): every level of the table is an integer — not just the
  // ones a tensor happens to use (MX float8 values can all be integers)
  if (levels.every((v) => Number.isNaN(v) || Number.isInteger(v))) {
    // value = (level − z)·s with integer levels: code = level − min, zero = z − min, min over the format's
    // integer levels (int grids: −offset, so the codes stay quantlab's own; asym: 0; ternary: −1)
    let min = Infinity, max = -Infinity;
    for (let c = 0; c < nCodes; c++) {
      const l = levels[c]!;
      if (Number.isInteger(l) && l < min) min = l;
      if (used[c] && l > max) max = l;
    }
    if (max === -Infinity) max = min;
    const zInt = q.zeros ? q.zeros.values : undefined;
    let zmax = zInt ? 0 : -min, zmin = zmax;
    if (zInt) { zmin = Infinity; zmax = -Infinity; for (let i = 0; i < zInt.length; i++) { const z = zInt[i]! - min; if (z < zmin) zmin = z; if (z > zmax) zmax = z; } }
    const top = Math.max(max - min, zmax);
    const bits = Math.max(s.bits, Math.ceil(Math.log2(top + 1))); // the spec's width, or more when levels need it (binary ±1)
    if (zmin < 0 || bits > 16) return { why: `${spec}: codes span ${min}…${max} with zero points down to ${zmin + min}, beyond a 16-bit unsigned container` };
    const codes = new Uint16Array(raw.length);
    for (let i = 0; i < raw.length; i++) codes[i] = levels[raw[i]!]! - min;
    const zeros = new Uint16Array(nScales);
    for (let j = 0; j < nScales; j++) zeros[j] = zInt ? zInt[zInt.length === 1 ? 0 : j]! - min : -min;
    return { coded: { N, K, kind: "int", bits, codes, layout, scales, zeros, source: spec } };
  }
  if (s.scheme === "levels" && s.format in ONNX_FLOAT8) {
    const fp8 = s.format as Float8Name;
    const table = float8Table(fp8);
    // the codes are the format's bit patterns; the check below (planWeight) compares ONNX's decoding of them
    for (let c = 0; c < Math.min(256, nCodes); c++) {
      const a = levels[c]!, b = table[c]!;
      if (a !== b && !(Number.isNaN(a) && Number.isNaN(b))) return { why: `${spec}: code 0x${c.toString(16)} is ${a} in quantlab and ${b} in ONNX's ${fp8}` };
    }
    return { coded: { N, K, kind: "fp8", bits: 8, fp8, codes: Uint16Array.from(raw), layout, scales, source: spec } };
  }
  if (s.format === "fp4_e2m1") return { why: `${spec}: ONNX's FLOAT4E2M1 needs DequantizeLinear-23, which ONNX Runtime 1.30's CPU provider does not implement` };
  return { why: `${spec}: ${s.format} levels are not integers and not an ONNX float8 type` };
}

/** llama.cpp block types whose values are (q − offset)·scale: block size, bytes, offset, code bits. */
const GGML_CODED: Partial<Record<GgmlType, { name: string; block: number; bytes: number; offset: number; bits: number }>> = {
  [GgmlType.Q4_0]: { name: "Q4_0", block: 32, bytes: 18, offset: 8, bits: 4 },
  [GgmlType.Q5_0]: { name: "Q5_0", block: 32, bytes: 22, offset: 16, bits: 5 },
  [GgmlType.Q8_0]: { name: "Q8_0", block: 32, bytes: 34, offset: 128, bits: 8 },
  [GgmlType.Q6_K]: { name: "Q6_K", block: 16, bytes: 210, offset: 32, bits: 6 },
};

/**
 * Codes and scales of a ggml weight with an integer offset. The scales are read from the blocks (ggml-common.h
 * block_q4_0 / q5_0 / q8_0: f16 d first; block_q6_K: int8 scales[16] at byte 192, f16 d at 208, scale d·sc), the
 * codes recovered from the block's own dequantization as value/scale + offset — and planWeight then checks
 * that (code − offset)·scale gives back every value exactly.
 */
function fromGgml(w: Extract<Weight, { kind: "ggml" }>): WeightPlan {
  const t = GGML_CODED[w.type];
  const shape = weightShape(w);
  if (!t) return { why: `ggml type ${GgmlType[w.type] ?? w.type} has no integer zero point (a float minimum or a codebook per block)` };
  if (shape.length !== 2) return { why: `${t.name}: a ${shape.length}-D tensor` };
  const [N, K] = shape as [number, number];
  const superBlock = w.type === GgmlType.Q6_K ? 256 : t.block;
  if (K % superBlock !== 0) throw new QuantlabError("E_FORMAT", `${t.name} tensor with rows of ${K}: not a multiple of ${superBlock}`);
  const perRow = K / t.block;
  const scales = new Float32Array(N * perRow);
  const data = w.data;
  const rowBytes = (K / superBlock) * t.bytes;
  const f16At = (o: number) => f16BitsToF32(data[o]! | (data[o + 1]! << 8));
  for (let r = 0; r < N; r++) {
    for (let b = 0; b < perRow; b++) {
      if (w.type === GgmlType.Q6_K) {
        const o = r * rowBytes + Math.floor(b / 16) * t.bytes;
        const sc = (data[o + 192 + (b % 16)]! << 24) >> 24;
        scales[r * perRow + b] = Math.fround(f16At(o + 208) * sc);
      } else scales[r * perRow + b] = f16At(r * rowBytes + b * t.bytes);
    }
  }
  const values = dequantizeWeight(w, t.name).data;
  const codes = new Uint16Array(N * K);
  for (let r = 0; r < N; r++) {
    for (let k = 0; k < K; k++) {
      const s = scales[r * perRow + Math.floor(k / t.block)]!;
      const q = s === 0 ? t.offset : Math.round(values[r * K + k]! / s) + t.offset;
      codes[r * K + k] = Math.min(2 ** t.bits - 1, Math.max(0, q));
    }
  }
  const zeros = new Uint16Array(N * perRow).fill(t.offset);
  return { coded: { N, K, kind: "int", bits: t.bits, codes, layout: { kind: "row", block: t.block }, scales, zeros, source: t.name } };
}

/**
 * The values of the 256 bit patterns of an ONNX float8 type (onnx/docs/Operators.md "Float8 types"):
 * E4M3FN bias 7, no infinities, S.1111.111 NaN; E5M2 bias 15, IEEE infinities and NaNs; the FNUZ variants
 * (bias 8 / 16) have no −0 and one NaN, 0x80.
 */
export function float8Table(name: Float8Name): Float64Array {
  const e = name.startsWith("fp8_e4m3") ? 4 : 5, m = 7 - e;
  const fnuz = name.endsWith("fnuz");
  const bias = (2 ** (e - 1) - 1) + (fnuz ? 1 : 0);
  const out = new Float64Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1, E = (b >> m) & (2 ** e - 1), M = b & (2 ** m - 1);
    let v: number;
    if (fnuz && b === 0x80) v = NaN;
    else if (name === "fp8_e4m3" && E === 15 && M === 7) v = NaN;
    else if (name === "fp8_e5m2" && E === 31) v = M === 0 ? sign * Infinity : NaN;
    else if (E === 0) v = sign * M * 2 ** (1 - bias - m);
    else v = sign * (1 + M / 2 ** m) * 2 ** (E - bias);
    out[b] = v;
  }
  return out;
}
