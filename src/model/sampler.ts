/**
 * Next-token sampling as in llama2.c run.c `sample`: temperature 0 is argmax (first maximum);
 * otherwise logits / temperature → softmax → [top-k] → [top-p nucleus] → draw with a seeded Rng.
 * run.c's top-p drops tokens below (1 − p)/(n − 1) before sorting (they cannot be in the nucleus) and
 * keeps the smallest prefix of the sorted probabilities whose sum exceeds p; we do the same.
 */
import { QuantlabError } from "../core/errors.js";
import { Rng } from "../core/rng.js";

export interface SamplerOptions {
  /** 0 = greedy (default 0) */
  temperature?: number;
  /** nucleus mass in (0, 1); ≥ 1 or ≤ 0 disables it (default 0.9, as run.c) */
  topP?: number;
  /** keep only the k most likely tokens; 0 disables it (default 0) */
  topK?: number;
  seed?: number;
}

export function argmax(x: Float32Array, n = x.length): number {
  let best = 0;
  let max = x[0]!;
  for (let i = 1; i < n; i++) {
    if (x[i]! > max) {
      max = x[i]!;
      best = i;
    }
  }
  return best;
}

export class Sampler {
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly seed: number;
  private readonly rng: Rng;
  private probs = new Float64Array(0); // (vocab)
  private order = new Int32Array(0); // (vocab) candidate ids

  constructor(opts: SamplerOptions = {}) {
    this.temperature = opts.temperature ?? 0;
    this.topP = opts.topP ?? 0.9;
    this.topK = opts.topK ?? 0;
    this.seed = opts.seed ?? 1;
    if (!(this.temperature >= 0) || !Number.isFinite(this.temperature)) throw new QuantlabError("E_ARG", `temperature ${this.temperature}: expected a number ≥ 0`);
    if (!Number.isFinite(this.topP)) throw new QuantlabError("E_ARG", `top-p ${this.topP}: expected a number`);
    if (!Number.isInteger(this.topK) || this.topK < 0) throw new QuantlabError("E_ARG", `top-k ${this.topK}: expected an integer ≥ 0`);
    this.rng = new Rng(this.seed);
  }

  sample(logits: Float32Array): number {
    const n = logits.length;
    if (this.temperature === 0) return argmax(logits, n);
    if (this.probs.length !== n) {
      this.probs = new Float64Array(n);
      this.order = new Int32Array(n);
    }
    const p = this.probs;
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, logits[i]! / this.temperature);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const e = Math.exp(logits[i]! / this.temperature - max);
      p[i] = e;
      sum += e;
    }
    for (let i = 0; i < n; i++) p[i] = p[i]! / sum;
    const coin = this.rng.next();
    const useK = this.topK > 0 && this.topK < n;
    const useP = this.topP > 0 && this.topP < 1;
    if (!useK && !useP) {
      // run.c sample_mult: walk the CDF
      let cdf = 0;
      for (let i = 0; i < n; i++) {
        cdf += p[i]!;
        if (coin < cdf) return i;
      }
      return n - 1; // rounding
    }
    // candidates sorted by probability (desc), ties by id
    let m = 0;
    const cutoff = useP ? (1 - this.topP) / (n - 1) : 0;
    let best = 0;
    for (let i = 0; i < n; i++) {
      if (p[i]! >= cutoff) this.order[m++] = i;
      if (p[i]! > p[best]!) best = i;
    }
    if (m === 0) this.order[m++] = best; // tiny vocabularies with a small p: keep the mode
    const cand = this.order.subarray(0, m);
    cand.sort((a, b) => p[b]! - p[a]! || a - b);
    if (useK) m = Math.min(m, this.topK);
    let mass = 0;
    let last = m - 1;
    for (let i = 0; i < m; i++) {
      mass += p[cand[i]!]!;
      if (useP && mass > this.topP) {
        last = i;
        break;
      }
    }
    let total = 0;
    for (let i = 0; i <= last; i++) total += p[cand[i]!]!;
    const r = coin * total;
    let cdf = 0;
    for (let i = 0; i <= last; i++) {
      cdf += p[cand[i]!]!;
      if (r < cdf) return cand[i]!;
    }
    return cand[last]!;
  }
}
