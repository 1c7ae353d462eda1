/**
 * Mixed precision over a whole model: one spec per tensor, chosen among candidates under a bits-per-weight
 * budget by mixed.ts's exact knapsack (`assignBits`), from a per-tensor sensitivity.
 *
 * Written as a model-level spec (it names several tensor specs, so it is not a QuantSpec):
 *
 *   mixed:<budget>bpw[:<sensitivity>]:<spec>+<spec>+…   e.g. mixed:3.5bpw:kld:int2:g32:asym+int3:g32+int4:g32+int8:channel
 *
 * `+` separates candidates because specs use `:` and CLI lists use `,`. The budget counts what `compare`
 * reports as bits/weight: every stored bit of the quantized tensors (codes, scales, zero points, codebooks)
 * over their weights. Sensitivity of tensor W (rows, cols) under candidate c:
 *   loss = Σ_col h_col · Σ_row (W − Q_c(W))²,
 * the increase of E‖W·x − Q(W)·x‖² when input features are uncorrelated, with h = E[x_col²] from
 * calibration activations (the diagonal of the layer Hessian, as HAWQ-V2/HAWQ-V3 and GPTQ use it), or
 * h = 1 (plain weight MSE) without calibration — sensitivity `hess` (the default) or `mse`. `kld` measures
 * instead the model's mean KL divergence from the float model on calibration text with only that tensor
 * quantized (the caller supplies it, as `lossOf`: it needs the forward pass); the knapsack then assumes
 * the per-tensor KLDs add up.
 */
import { QuantlabError } from "../core/errors.js";
import { canonicalSpec, toSpec } from "../quant/spec.js";
import type { QTensor } from "../quant/tensor.js";
import { assignBits } from "./mixed.js";
import { quantizeLearned } from "./learned.js";

export type MixedSensitivity = "hess" | "mse" | "kld";

export interface MixedSpec {
  /** bits per weight over the quantized tensors */
  budgetBpw: number;
  sensitivity: MixedSensitivity;
  /** canonical tensor specs, in the order given */
  candidates: string[];
}

const MIXED_RE = /^mixed:(\d+(?:\.\d+)?)bpw:(?:(hess|mse|kld):)?(.+)$/;

export function isMixedSpec(text: string): boolean {
  return text.trim().toLowerCase().startsWith("mixed:");
}

/** Parses `mixed:<B>bpw:<spec>+<spec>…`; E_SPEC naming the bad part. */
export function parseMixedSpec(text: string): MixedSpec {
  const t = text.trim().toLowerCase();
  const m = MIXED_RE.exec(t);
  if (!m) throw new QuantlabError("E_SPEC", `spec "${text}": expected mixed:<bits>bpw:<spec>+<spec>+…, e.g. mixed:3.5bpw:int2:g32:asym+int3:g32+int4:g32+int8:channel`);
  const budgetBpw = Number(m[1]);
  if (!(budgetBpw > 0 && budgetBpw <= 32)) throw new QuantlabError("E_SPEC", `spec "${text}": budget ${m[1]} bits/weight outside (0, 32]`);
  const sensitivity = (m[2] ?? "hess") as MixedSensitivity;
  const candidates = m[3]!.split("+").map((s) => s.trim());
  if (candidates.length < 2) throw new QuantlabError("E_SPEC", `spec "${text}": give at least two candidate specs separated by +`);
  const out: string[] = [];
  for (const c of candidates) {
    const s = toSpec(c); // throws E_SPEC naming the candidate's bad part
    if (s.activations || s.integerMatmul) throw new QuantlabError("E_SPEC", `spec "${text}": candidate "${c}" quantizes activations; mixed precision chooses weight formats only`);
    const cs = canonicalSpec(s);
    if (out.includes(cs)) throw new QuantlabError("E_SPEC", `spec "${text}": candidate "${c}" is given twice`);
    out.push(cs);
  }
  return { budgetBpw, sensitivity, candidates: out };
}

export function printMixedSpec(m: MixedSpec): string {
  return `mixed:${m.budgetBpw}bpw:${m.sensitivity === "hess" ? "" : `${m.sensitivity}:`}${m.candidates.join("+")}`;
}

export interface MixedTensor {
  name: string;
  /** (rows, cols) row-major */
  w: Float32Array;
  shape: readonly [number, number];
  /** E[x_col²] of the tensor's input, (cols); absent = 1 */
  hDiag?: ArrayLike<number>;
}

export interface MixedPlan {
  /** chosen spec per tensor name */
  choice: Map<string, string>;
  /** the chosen QTensor per tensor name */
  tensors: Map<string, QTensor>;
  /** achieved bits per weight over all the tensors */
  bpw: number;
  /** Σ chosen losses */
  loss: number;
  /** how many tensors got each candidate */
  counts: Record<string, number>;
  sensitivity: "hessian-diag" | "mse" | "kld";
}

/** A sensitivity supplied by the caller: loss of tensor `ti` quantized as `q` (candidate `ci`). */
export type LossOf = (ti: number, ci: number, q: QTensor) => number;

/** Sensitivity-weighted squared error Σ_c h_c Σ_r (w − q)². */
export function weightedError(w: Float32Array, q: Float32Array, cols: number, hDiag?: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) {
    const e = w[i]! - q[i]!;
    s += (hDiag ? hDiag[i % cols]! : 1) * e * e;
  }
  return s;
}

/** Quantizes every tensor with every candidate, then picks one per tensor under the budget. */
export function planMixed(tensors: readonly MixedTensor[], m: MixedSpec, opts: { seed?: number; onTensor?: () => void; lossOf?: LossOf } = {}): MixedPlan {
  if (tensors.length === 0) throw new QuantlabError("E_ARG", "mixed precision: no tensors to quantize");
  if (m.sensitivity === "kld" && !opts.lossOf) throw new QuantlabError("E_ARG", `${printMixedSpec(m)}: kld sensitivity needs the model and calibration text (--calib)`);
  const all: QTensor[][] = [];
  const options = tensors.map((t, ti) => {
    const qs = m.candidates.map((spec) => quantizeLearned(t.w, t.shape, spec, { name: t.name, seed: (opts.seed ?? 0) + ti }));
    all.push(qs);
    opts.onTensor?.();
    return {
      name: t.name,
      numel: t.w.length,
      options: qs.map((q, ci) => ({
        bitsPerWeight: q.bitsPerWeight,
        loss: opts.lossOf ? opts.lossOf(ti, ci, q) : weightedError(t.w, q.dequantize(), t.shape[1], m.sensitivity === "hess" ? t.hDiag : undefined),
      })),
    };
  });
  const a = assignBits(options, m.budgetBpw);
  const choice = new Map<string, string>();
  const chosen = new Map<string, QTensor>();
  const counts: Record<string, number> = Object.fromEntries(m.candidates.map((c) => [c, 0]));
  tensors.forEach((t, ti) => {
    const c = a.choice[ti]!;
    choice.set(t.name, m.candidates[c]!);
    chosen.set(t.name, all[ti]![c]!);
    counts[m.candidates[c]!]! += 1;
  });
  const sensitivity = opts.lossOf ? "kld" : m.sensitivity === "hess" && tensors.some((t) => t.hDiag) ? "hessian-diag" : "mse";
  return { choice, tensors: chosen, bpw: a.bitsPerWeight, loss: a.totalLoss, counts, sensitivity };
}
