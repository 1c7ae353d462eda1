/**
 * Operations on the inputs of linear layers that a quantized model may need at run time, as plain data
 * (so files can carry them and the forward pass needs no algorithm code):
 *
 * - an online orthogonal rotation of every layer's FFN-down input (QuaRot's online Hadamard, where the
 *   rotation cannot be fused into a weight because SiLU·up sits in between). It is stored as factors:
 *       R = (H_pow2 ⊗ B) · diag(signs) / √pow2
 *   with H_pow2 the Sylvester Hadamard of order pow2 (applied by the fast Walsh–Hadamard transform), B an
 *   orthonormal (b, b) matrix (absent when b = 1) and index i = p·b + r (p < pow2, r < b). This is
 *   exactly the form src/algos/rotation.ts builds (`Rotation.factors()`).
 * - activation fake-quantization of linear inputs (W8A8): symmetric int-b, one scale per token computed
 *   at run time (dynamic), or one stored f32 scale per (layer, site) from calibration (static). Same
 *   arithmetic as quant's `fakeQuantPerToken(x, dim, "int<b>:channel")` / `fakeQuantStatic` with an
 *   `int<b>:tensor` spec: s = fround(absmax / (2^(b−1) − 1)), q = clamp(rne(x/s)), x̂ = fround(q·s).
 */
import { QuantlabError } from "../core/errors.js";

/** The inputs of a Llama block's linears: attn_in → q,k,v; attn_out_in → o; ffn_in → gate,up; ffn_down_in → down. */
export type LinearSite = "attn_in" | "attn_out_in" | "ffn_in" | "ffn_down_in";
export const LINEAR_SITES: readonly LinearSite[] = ["attn_in", "attn_out_in", "ffn_in", "ffn_down_in"];

export interface OnlineRotation {
  /** vector length (the FFN hidden size) */
  n: number;
  /** power-of-two Hadamard factor; n = pow2 · b */
  pow2: number;
  /** ±1, (n) */
  signs: Float32Array;
  /** orthonormal (b, b) with b = n / pow2, row-major; absent when b = 1 */
  inner?: Float32Array;
}

export interface ActivationQuantConfig {
  /** symmetric integer bits, 2..16 */
  bits: number;
  mode: "dynamic" | "static";
  /** static mode: f32 scale per "<layer>.<site>" key (see `siteKey`) */
  scales?: Record<string, number>;
}

export interface InputTransforms {
  /** applied to every layer's FFN-down input before the matmul */
  ffnDownRotation?: OnlineRotation;
  /** applied to every block linear's input (after the rotation) */
  activations?: ActivationQuantConfig;
}

export function siteKey(layer: number, site: LinearSite): string {
  return `${layer}.${site}`;
}

/** Checks the shapes of a transforms object against a model's sizes; throws E_FORMAT naming the problem. */
export function checkInputTransforms(t: InputTransforms, hiddenDim: number, where: string): void {
  const r = t.ffnDownRotation;
  if (r) {
    const b = r.n / r.pow2;
    if (r.n !== hiddenDim) throw new QuantlabError("E_FORMAT", `${where}: online FFN-down rotation has size ${r.n}, the model's hidden size is ${hiddenDim}`);
    if (!Number.isInteger(b) || r.pow2 < 1 || (r.pow2 & (r.pow2 - 1)) !== 0) throw new QuantlabError("E_FORMAT", `${where}: online rotation pow2 ${r.pow2} is not a power of two dividing ${r.n}`);
    if (r.signs.length !== r.n) throw new QuantlabError("E_FORMAT", `${where}: online rotation has ${r.signs.length} signs, expected ${r.n}`);
    if (b > 1 ? r.inner?.length !== b * b : r.inner !== undefined) throw new QuantlabError("E_FORMAT", `${where}: online rotation inner factor must be ${b}×${b}`);
  }
  const a = t.activations;
  if (a) {
    if (!Number.isInteger(a.bits) || a.bits < 2 || a.bits > 16) throw new QuantlabError("E_FORMAT", `${where}: activation bits ${a.bits} outside 2..16`);
    if (a.mode === "static" && !a.scales) throw new QuantlabError("E_FORMAT", `${where}: static activation quantization without scales`);
  }
}

/** x ← R·x for `count` consecutive vectors of length r.n, in place. */
export function applyOnlineRotation(r: OnlineRotation, x: Float32Array, count: number, tmp: Float64Array = new Float64Array(r.n / r.pow2)): void {
  const { n, pow2, signs, inner } = r;
  const b = n / pow2;
  const scale = 1 / Math.sqrt(pow2);
  for (let v = 0; v < count; v++) {
    const o = v * n;
    for (let i = 0; i < n; i++) x[o + i] = x[o + i]! * signs[i]!;
    if (inner) {
      for (let p = 0; p < pow2; p++) {
        const base = o + p * b;
        for (let i = 0; i < b; i++) {
          let s = 0;
          for (let j = 0; j < b; j++) s += inner[i * b + j]! * x[base + j]!;
          tmp[i] = s;
        }
        for (let i = 0; i < b; i++) x[base + i] = tmp[i]!;
      }
    }
    // Walsh–Hadamard over the pow2 index, for each r (elements spaced b apart)
    for (let h = 1; h < pow2; h *= 2) {
      for (let i = 0; i < pow2; i += 2 * h) {
        for (let j = i; j < i + h; j++) {
          for (let r0 = 0; r0 < b; r0++) {
            const a = o + j * b + r0;
            const c = a + h * b;
            const u = x[a]!;
            const w = x[c]!;
            x[a] = u + w;
            x[c] = u - w;
          }
        }
      }
    }
    if (pow2 > 1) for (let i = 0; i < n; i++) x[o + i] = x[o + i]! * scale;
  }
}

function rne(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Symmetric int-b fake quantization of n tokens of `width`: per token (scale undefined) or with a fixed scale. */
export function fakeQuantInputs(x: Float32Array, n: number, width: number, bits: number, scale?: number): void {
  const qmax = 2 ** (bits - 1) - 1;
  for (let t = 0; t < n; t++) {
    const o = t * width;
    let s = scale;
    if (s === undefined) {
      let amax = 0;
      for (let i = 0; i < width; i++) {
        const a = Math.abs(x[o + i]!);
        if (a > amax) amax = a;
      }
      s = Math.fround(amax / qmax);
    }
    if (!(s > 0)) {
      // all-zero token (or zero scale): every value decodes to 0
      for (let i = 0; i < width; i++) x[o + i] = 0;
      continue;
    }
    for (let i = 0; i < width; i++) {
      let q = rne(x[o + i]! / s);
      if (q > qmax) q = qmax;
      else if (q < -qmax) q = -qmax;
      x[o + i] = q === 0 ? 0 : Math.fround(q * s); // +0 for a zero code, as quant's decode gives
    }
  }
}

/** Applies a model's input transforms at one site, in place on x (n, width). */
export function applyInputTransforms(t: InputTransforms, layer: number, site: LinearSite, x: Float32Array, n: number, width: number, tmp?: Float64Array): void {
  if (site === "ffn_down_in" && t.ffnDownRotation) applyOnlineRotation(t.ffnDownRotation, x, n, tmp);
  const a = t.activations;
  if (a) {
    let scale: number | undefined;
    if (a.mode === "static") {
      scale = a.scales?.[siteKey(layer, site)];
      if (scale === undefined) throw new QuantlabError("E_FORMAT", `static activation quantization has no scale for layer ${layer} ${site}`);
    }
    fakeQuantInputs(x, n, width, a.bits, scale);
  }
}

/** Metadata key under which files (quantized-model safetensors) carry a model's input transforms. */
export const INPUT_TRANSFORMS_KEY = "quantlab.input_transforms";

interface TransformsJson {
  version: 1;
  ffnDownRotation?: { n: number; pow2: number; signs: number[]; inner?: number[] };
  activations?: ActivationQuantConfig;
}

/** JSON text of input transforms (f32 values print exactly as JSON numbers). */
export function inputTransformsToJson(t: InputTransforms): string {
  const j: TransformsJson = { version: 1 };
  const r = t.ffnDownRotation;
  if (r) {
    j.ffnDownRotation = { n: r.n, pow2: r.pow2, signs: Array.from(r.signs) };
    if (r.inner) j.ffnDownRotation.inner = Array.from(r.inner);
  }
  if (t.activations) j.activations = t.activations;
  return JSON.stringify(j);
}

/** Parses `inputTransformsToJson` output; E_FORMAT naming `where` on anything malformed. */
export function inputTransformsFromJson(text: string, where: string): InputTransforms {
  let j: TransformsJson;
  try {
    j = JSON.parse(text) as TransformsJson;
  } catch {
    throw new QuantlabError("E_FORMAT", `${where}: "${INPUT_TRANSFORMS_KEY}" is not valid JSON`);
  }
  if (j?.version !== 1) throw new QuantlabError("E_UNSUPPORTED", `${where}: input transforms version ${String(j?.version)} (this reader knows 1)`);
  const out: InputTransforms = {};
  const r = j.ffnDownRotation;
  if (r) {
    const nums = (a: unknown, what: string): Float32Array => {
      if (!Array.isArray(a) || !a.every((v) => typeof v === "number" && Number.isFinite(v))) throw new QuantlabError("E_FORMAT", `${where}: online rotation ${what} must be an array of numbers`);
      return Float32Array.from(a as number[]);
    };
    if (!Number.isInteger(r.n) || !Number.isInteger(r.pow2) || r.n < 1 || r.pow2 < 1) throw new QuantlabError("E_FORMAT", `${where}: online rotation needs integer n and pow2`);
    out.ffnDownRotation = { n: r.n, pow2: r.pow2, signs: nums(r.signs, "signs") };
    if (r.inner !== undefined) out.ffnDownRotation.inner = nums(r.inner, "inner factor");
  }
  const a = j.activations;
  if (a) {
    if (a.mode !== "dynamic" && a.mode !== "static") throw new QuantlabError("E_FORMAT", `${where}: activation mode "${String(a.mode)}" (expected dynamic or static)`);
    out.activations = a.mode === "static" ? { bits: a.bits, mode: a.mode, scales: a.scales ?? {} } : { bits: a.bits, mode: a.mode };
  }
  return out;
}
