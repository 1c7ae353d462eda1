/**
 * Mixed-precision assignment: pick one option (bit width / spec) per tensor to minimize the summed
 * sensitivity under a total bit budget, a multiple-choice knapsack solved exactly by dynamic
 * programming over the budget (HAWQ-style allocation, Dong et al. 2019/2020, with an exact solver
 * instead of their ILP). Sensitivity is whatever the caller measures per option; `hessianWeightedError`
 * gives the usual proxy Σ_c H_cc · Σ_r (w_rc − q_rc)² (second-order output error with a diagonal
 * Hessian; plain weight MSE when no Hessian diagonal is given).
 */
import { QuantlabError } from "../core/errors.js";
import type { GroupQuantizer } from "./quantizer.js";
import { checkMatrix, rtnQuantize } from "./rtn.js";

export interface TensorOptions {
  name: string;
  numel: number;
  /** candidate encodings: bits per weight (overheads included) and the loss if chosen */
  options: { bitsPerWeight: number; loss: number }[];
}

export interface Assignment {
  /** chosen option index per tensor, in input order */
  choice: number[];
  totalBits: number;
  totalLoss: number;
  /** totalBits / Σ numel */
  bitsPerWeight: number;
}

/** The DP's state count limit (memory ≈ 8 bytes × states × tensors for the back-pointers, as Int8). */
const MAX_DP_STATES = 4_000_000;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Minimizes Σ loss subject to Σ numel · bitsPerWeight ≤ budgetBitsPerWeight · Σ numel. Costs are
 * counted in units of gcd(numel)/8 bits, so bit widths that are multiples of 1/8 are exact (others are
 * rounded up, never breaking the budget).
 */
export function assignBits(tensors: readonly TensorOptions[], budgetBitsPerWeight: number): Assignment {
  if (tensors.length === 0) throw new QuantlabError("E_ARG", "mixed precision: no tensors");
  let g = 0;
  let total = 0;
  for (const t of tensors) {
    if (!Number.isInteger(t.numel) || t.numel <= 0) throw new QuantlabError("E_ARG", `mixed precision: ${t.name} has numel ${t.numel}`);
    if (t.options.length === 0 || t.options.length > 127) throw new QuantlabError("E_ARG", `mixed precision: ${t.name} needs 1..127 options, got ${t.options.length}`);
    g = gcd(g, t.numel);
    total += t.numel;
  }
  const unitBits = g / 8;
  const capacity = Math.floor((budgetBitsPerWeight * total) / unitBits + 1e-9);
  if (!(capacity >= 0) || capacity + 1 > MAX_DP_STATES) {
    throw new QuantlabError("E_ARG", `mixed precision: budget needs ${capacity + 1} DP states (limit ${MAX_DP_STATES}); tensor sizes share too small a factor (gcd ${g})`);
  }
  const costs = tensors.map((t) => t.options.map((o) => Math.ceil((t.numel * o.bitsPerWeight) / unitBits - 1e-9)));
  // best[c] = least loss with cost exactly ≤ c so far; choice back-pointers per tensor
  let best = new Float64Array(capacity + 1).fill(0);
  const back: Int8Array[] = [];
  for (let ti = 0; ti < tensors.length; ti++) {
    const next = new Float64Array(capacity + 1).fill(Infinity);
    const bp = new Int8Array(capacity + 1).fill(-1);
    const opts = tensors[ti]!.options;
    for (let oi = 0; oi < opts.length; oi++) {
      const cost = costs[ti]![oi]!;
      const loss = opts[oi]!.loss;
      for (let c = cost; c <= capacity; c++) {
        const v = best[c - cost]! + loss;
        if (v < next[c]!) {
          next[c] = v;
          bp[c] = oi;
        }
      }
    }
    back.push(bp);
    best = next;
  }
  if (!Number.isFinite(best[capacity]!)) {
    const minBits = tensors.reduce((s, t) => s + t.numel * Math.min(...t.options.map((o) => o.bitsPerWeight)), 0);
    throw new QuantlabError("E_ARG", `mixed precision: budget ${budgetBitsPerWeight} bits/weight is below the smallest option mix (${(minBits / total).toFixed(3)})`);
  }
  // best[c] is monotone non-increasing in c (costs "≤ c"), so trace back from capacity
  const choice = new Array<number>(tensors.length);
  let c = capacity;
  for (let ti = tensors.length - 1; ti >= 0; ti--) {
    const oi = back[ti]![c]!;
    choice[ti] = oi;
    c -= costs[ti]![oi]!;
  }
  let totalBits = 0;
  let totalLoss = 0;
  tensors.forEach((t, ti) => {
    const o = t.options[choice[ti]!]!;
    totalBits += t.numel * o.bitsPerWeight;
    totalLoss += o.loss;
  });
  return { choice, totalBits, totalLoss, bitsPerWeight: totalBits / total };
}

/**
 * Sensitivity of quantizing w (rows, cols) with `quantizer` (RTN): Σ_c h_c Σ_r (w_rc − q_rc)², with
 * h = diag of the input Hessian (e.g. 2·mean x_c²) or 1 when absent.
 */
export function hessianWeightedError<P>(w: ArrayLike<number>, rows: number, cols: number, quantizer: GroupQuantizer<P>, hDiag?: ArrayLike<number>): number {
  checkMatrix(w, rows, cols, "sensitivity");
  const q = rtnQuantize(w, rows, cols, quantizer).q;
  let s = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const e = w[r * cols + c]! - q[r * cols + c]!;
      s += (hDiag ? hDiag[c]! : 1) * e * e;
    }
  }
  return s;
}
