/**
 * Activation fake-quantization: per-token dynamic (scales computed from each token at run time, as
 * LLM.int8/SmoothQuant's W8A8 per-token mode) and per-tensor static (one scale from calibration, see
 * ActivationObserver.staticParams). Works for any spec: the token is the row, and the spec's
 * granularity along the row applies (channel = one scale per token, g<N> = per-token groups of N, as
 * DeepSeek-V3's 1×128 FP8 activation tiles). Scales are rounded to the spec's scale dtype (f16/bf16/e8m0);
 * double-quantized scale dtypes are not applied to activations.
 */
import { QuantlabError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import { SpecQuantizer, type GroupParams } from "./quantizer.js";
import { parseSpec, toSpec, type ActivationSpec, type QuantSpec } from "./spec.js";

/** The quantization spec of a weight spec's activation part: a8 → int8 per token, a8s → int8 per tensor, afp8 → fp8_e4m3. */
export function activationQuantSpec(a: ActivationSpec): QuantSpec {
  const fmt = a.format === "fp8_e4m3" ? "fp8_e4m3" : `int${a.bits}`;
  return parseSpec(`${fmt}:${a.mode === "dynamic" ? "channel" : "tensor"}`);
}

/** x: (nTokens, dim) → fake-quantized copy (or into `out`, which may be x itself). */
export function fakeQuantPerToken(x: Float32Array, dim: number, specIn: string | QuantSpec, out: Float32Array = new Float32Array(x.length), rng?: Rng): Float32Array {
  const spec = toSpec(specIn);
  if (dim <= 0 || x.length % dim !== 0) throw new QuantlabError("E_ARG", `activations: ${x.length} values is not a whole number of ${dim}-wide tokens`);
  if (out.length !== x.length) throw new QuantlabError("E_ARG", `activations: output has ${out.length} values, input ${x.length}`);
  const g = spec.granularity;
  if (g.kind !== "channel" && g.kind !== "group" && g.kind !== "tensor" && g.kind !== "none") {
    throw new QuantlabError("E_SPEC", `activations: per-token quantization needs channel, g<N>, tensor or none granularity, not ${g.kind}`);
  }
  if (spec.rounding === "stochastic" && !rng) throw new QuantlabError("E_ARG", "activations: stochastic rounding needs an rng");
  const q = new SpecQuantizer(spec);
  if (g.kind === "tensor" || g.kind === "none") {
    const p = g.kind === "none" ? { scale: 1, zero: 0 } : q.fit(x);
    return fakeQuantStatic(x, p, spec, out, rng);
  }
  const G = g.kind === "group" ? Math.min(g.size, dim) : dim;
  for (let row = 0; row < x.length; row += dim) {
    for (let c0 = 0; c0 < dim; c0 += G) {
      const seg = x.subarray(row + c0, row + Math.min(dim, c0 + G));
      const p = q.fit(seg);
      for (let i = 0; i < seg.length; i++) out[row + c0 + i] = q.decode(q.encode(seg[i]!, p.scale, p.zero, rng, p.threshold), p.scale, p.zero);
    }
  }
  return out;
}

/** Element-wise fake quantization with fixed parameters (static per-tensor activations). */
export function fakeQuantStatic(x: Float32Array, p: GroupParams, specIn: string | QuantSpec, out: Float32Array = new Float32Array(x.length), rng?: Rng): Float32Array {
  const q = new SpecQuantizer(toSpec(specIn));
  if (out.length !== x.length) throw new QuantlabError("E_ARG", `activations: output has ${out.length} values, input ${x.length}`);
  for (let i = 0; i < x.length; i++) out[i] = q.decode(q.encode(x[i]!, p.scale, p.zero, rng, p.threshold), p.scale, p.zero);
  return out;
}
