/**
 * Learned-codebook specs (`kmeans<b>:<granularity>`, `vq<b>d<d>:<granularity>`) as QTensors: the spec-level
 * adapter between quant's spec/QTensor (which stores a codebook and encodes against it) and this folder's
 * k-means (kmeans.ts), which fits the codebook. quant/ cannot call algos/ (layer order), so fitting lives here.
 *
 *   1. group scales from the spec's granularity and calibration, as for any "levels" format with max level 1
 *      (minmax: the group's absmax), stored in the spec's scale dtype;
 *   2. the weights divided by their group scale (outliers removed) are clustered: 1-D k-means with 2^b
 *      levels (Deep Compression's weight sharing, Han et al. 2016; optimal 1-D start, kmeans.ts) or k-means on
 *      d-dimensional sub-vectors of each row with 2^b codewords (vector quantization, as in
 *      Gong et al. 2014 "Compressing deep convolutional networks using vector quantization");
 *   3. quantizeTensor encodes every weight (sub-vector) to its nearest level (codeword) at its group's scale.
 * One codebook per tensor, in scale units (f32, counted in the storage bits). Deterministic for a seed.
 */
import { QuantlabError } from "../core/errors.js";
import { resolveElement } from "../quant/elements.js";
import { toSpec, type QuantSpec } from "../quant/spec.js";
import { quantizeTensor, type QTensor, type QuantizeOptions } from "../quant/tensor.js";
import { kmeans } from "./kmeans.js";

export interface LearnedOptions extends Pick<QuantizeOptions, "name" | "seed"> {
  /** most points (scalars or sub-vectors) k-means sees; larger tensors are subsampled with a fixed stride (default 65536) */
  maxPoints?: number;
  /** Lloyd iterations at most (default 50) */
  iters?: number;
}

/** True when the spec's element is a learned codebook (kmeans<b>, vq<b>d<d>). */
export function isLearnedSpec(spec: string | QuantSpec): boolean {
  const s = toSpec(spec);
  return resolveElement(s.format, s.bits)?.kind === "learned";
}

/**
 * Quantizes w (shape) under any spec: learned-codebook specs are fitted with k-means first, the others go
 * straight to quantizeTensor.
 */
export function quantizeLearned(w: Float32Array, shape: readonly number[], specIn: string | QuantSpec, opts: LearnedOptions = {}): QTensor {
  const spec = toSpec(specIn);
  const el = resolveElement(spec.format, spec.bits);
  const name = opts.name ?? "tensor";
  const seed = opts.seed ?? 0;
  if (el?.kind !== "learned") return quantizeTensor(w, shape, spec, { name, seed });
  const d = el.dim;
  const k = 2 ** el.bits;
  // 1. scales: quantize against a provisional unit codebook whose largest level is 1 (scale = clip / 1)
  const unit = new Float32Array(2 * d);
  for (let t = 0; t < d; t++) { unit[t] = -1; unit[d + t] = 1; }
  const pre = quantizeTensor(w, shape, spec, { name, seed, codebook: unit });
  const scales = pre.scales!.values;
  const gOf = pre.layout.groupOfElement();
  const outlier = new Uint8Array(w.length);
  if (pre.outliers) for (const i of pre.outliers.indices) outlier[i] = 1;
  // 2. normalized points (sub-vectors holding an outlier are left out of the fit; they are still encoded)
  const nVec = w.length / d;
  const maxPoints = opts.maxPoints ?? 65536;
  const stride = Math.max(1, Math.ceil(nVec / maxPoints));
  const pts: number[] = [];
  for (let v = 0; v < nVec; v += stride) {
    const s = scales[gOf[v * d]!]!;
    if (!(s !== 0) || !Number.isFinite(s)) continue;
    let skip = false;
    for (let t = 0; t < d; t++) if (outlier[v * d + t]) skip = true;
    if (skip) continue;
    for (let t = 0; t < d; t++) pts.push(w[v * d + t]! / s);
  }
  if (pts.length === 0) for (let t = 0; t < d; t++) pts.push(0); // all-zero tensor: one codeword at the origin
  const n = pts.length / d;
  const r = kmeans(pts, n, d, { k: Math.min(k, n), seed, iters: opts.iters ?? 50 });
  const codebook = Float32Array.from(r.centroids);
  for (const c of codebook) if (!Number.isFinite(c)) throw new QuantlabError("E_INTERNAL", `tensor ${name}: k-means gave a non-finite level`);
  // 3. encode at the same stored scales
  const params = Array.from(scales, (scale) => ({ scale, zero: 0 }));
  return quantizeTensor(w, shape, spec, { name, seed, codebook, params });
}
