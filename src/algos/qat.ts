/**
 * Quantization-aware training basics: the forward pass uses fake-quantized weights, the backward pass
 * treats the rounding as the identity (straight-through estimator, Bengio, Léonard & Courville 2013;
 * as used for QAT by Jacob et al. 2018), so SGD updates latent float weights toward values whose
 * quantized version works well. Shown on the smallest useful model: softmax regression trained by
 * minibatch SGD on float32 typed arrays — enough to see QAT recover accuracy that post-training
 * quantization loses at 2–3 bits.
 */
import { QuantlabError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import type { GroupQuantizer } from "./quantizer.js";
import { rtnQuantize, type WeightQuantResult } from "./rtn.js";

export interface LinearClassifier {
  classes: number;
  dim: number;
  /** (classes, dim) */
  w: Float32Array;
  /** (classes) */
  b: Float32Array;
  /** quantizer parameters frozen during QAT (then used for evaluation too) */
  frozen?: WeightQuantResult<unknown>;
}

export interface TrainOptions<P> {
  epochs: number;
  /** SGD learning rate */
  lr: number;
  batch?: number;
  seed?: number;
  /** fake-quantize the weights in the forward pass (QAT); absent = float training */
  quantizer?: GroupQuantizer<P>;
  /** start from these weights (copied) instead of zeros */
  init?: LinearClassifier;
  /**
   * fit the quantizer's group parameters (scales, zeros) once on the starting weights and keep them:
   * the grid stays put while the latent weights move across it (default: refit every step)
   */
  freezeParams?: boolean;
}

/** Weights the model computes with: fq(W) (with the frozen parameters when training froze them), or W. */
export function effectiveWeights<P>(m: LinearClassifier, quantizer?: GroupQuantizer<P>): Float32Array {
  if (!quantizer) return m.w;
  if (m.frozen) return applyFrozen(m.w, m.frozen as WeightQuantResult<P>, quantizer, m.classes, m.dim);
  return rtnQuantize(m.w, m.classes, m.dim, quantizer).q;
}

/** Share of rows of x (n, dim) whose argmax logit equals the label. */
export function accuracy<P>(m: LinearClassifier, x: Float32Array, labels: Int32Array, quantizer?: GroupQuantizer<P>): number {
  const w = effectiveWeights(m, quantizer);
  const n = labels.length;
  let ok = 0;
  for (let i = 0; i < n; i++) {
    let best = -Infinity;
    let arg = -1;
    for (let c = 0; c < m.classes; c++) {
      let z = m.b[c]!;
      for (let j = 0; j < m.dim; j++) z += w[c * m.dim + j]! * x[i * m.dim + j]!;
      if (z > best) {
        best = z;
        arg = c;
      }
    }
    if (arg === labels[i]) ok++;
  }
  return ok / n;
}

/**
 * Minibatch SGD on the mean cross-entropy of softmax(W·x + b). With a quantizer, the forward pass
 * uses fq(W) recomputed every step and ∂L/∂W := ∂L/∂fq(W) (straight-through).
 */
export function trainSoftmaxRegression<P>(x: Float32Array, labels: Int32Array, classes: number, opts: TrainOptions<P>): LinearClassifier {
  const n = labels.length;
  if (n === 0 || x.length % n !== 0) throw new QuantlabError("E_ARG", `qat: ${x.length} inputs for ${n} labels`);
  const dim = x.length / n;
  for (let i = 0; i < n; i++) {
    if (!(labels[i]! >= 0 && labels[i]! < classes)) throw new QuantlabError("E_ARG", `qat: label ${labels[i]} at row ${i} is outside 0..${classes - 1}`);
  }
  const m: LinearClassifier = opts.init
    ? { classes, dim, w: Float32Array.from(opts.init.w), b: Float32Array.from(opts.init.b) }
    : { classes, dim, w: new Float32Array(classes * dim), b: new Float32Array(classes) };
  const batch = opts.batch ?? 32;
  const rng = new Rng(opts.seed ?? 0);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const gw = new Float32Array(classes * dim);
  const gb = new Float32Array(classes);
  const z = new Float64Array(classes);
  const frozen = opts.quantizer && opts.freezeParams ? rtnQuantize(m.w, classes, dim, opts.quantizer) : undefined;
  for (let ep = 0; ep < opts.epochs; ep++) {
    // Fisher–Yates shuffle, seeded
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    for (let s = 0; s < n; s += batch) {
      const e = Math.min(n, s + batch);
      const w = frozen ? applyFrozen(m.w, frozen, opts.quantizer!, classes, dim) : effectiveWeights(m, opts.quantizer);
      gw.fill(0);
      gb.fill(0);
      for (let k = s; k < e; k++) {
        const i = order[k]!;
        let zmax = -Infinity;
        for (let c = 0; c < classes; c++) {
          let v = m.b[c]!;
          for (let j = 0; j < dim; j++) v += w[c * dim + j]! * x[i * dim + j]!;
          z[c] = v;
          zmax = Math.max(zmax, v);
        }
        let sum = 0;
        for (let c = 0; c < classes; c++) sum += (z[c] = Math.exp(z[c]! - zmax));
        for (let c = 0; c < classes; c++) {
          const g = z[c]! / sum - (c === labels[i] ? 1 : 0); // ∂L/∂logit
          gb[c]! += g;
          for (let j = 0; j < dim; j++) gw[c * dim + j]! += g * x[i * dim + j]!;
        }
      }
      const f = opts.lr / (e - s);
      for (let t = 0; t < gw.length; t++) m.w[t]! -= f * gw[t]!; // straight-through: the gradient w.r.t. fq(W) updates W
      for (let c = 0; c < classes; c++) m.b[c]! -= f * gb[c]!;
    }
  }
  return frozen ? { ...m, frozen } : m;
}

function applyFrozen<P>(w: Float32Array, fr: WeightQuantResult<P>, q: GroupQuantizer<P>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const gw = q.groupSize <= 0 || q.groupSize > cols ? cols : q.groupSize;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = fr.groupIndex[c]!;
      out[r * cols + c] = q.fakeQuant(w[r * cols + c]!, fr.params[r * fr.nGroups + g]!, c - g * gw);
    }
  }
  return out;
}
