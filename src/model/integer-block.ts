/**
 * Integer-only end to end (spec part `iops`, e.g. `int8:channel:a8:intmm:iops`): besides the linears
 * (model/integer-linear.ts), the block's RMSNorm, SiLU, attention scores and softmax run as integer
 * approximations (model/integer-ops.ts: I-BERT's i-exp / i-softmax / i-sqrt, Kim et al. 2021; I-LLM's
 * integer RMSNorm and SwiGLU, Hu et al. 2024). A Backend wrapper supplies them through the hooks the forward
 * pass already calls (`addRmsnorm`, `swiglu`, `kvCache` with `attend`), so llama.ts runs unchanged.
 *
 * Where floats remain, and why: the residual stream and its adds (x + y), biases and Granite's scalar
 * multipliers, the embedding lookup and an f32 classifier stay float, as in I-BERT / I-LLM, whose integer
 * graphs also enter and leave through scales. Each integer op has a boundary in (a float becomes an integer
 * code with a scale: x_q = rne(x / S)) and a boundary out (code · scale); between them only integer +, −, ×,
 * ⌊/⌋, rounding shifts and dyadic multipliers (m / 2^k from a scale, Jacob et al. 2018) run. Every integer
 * stays below 2^53, so JS numbers hold them exactly; each op checks the bound that makes that true.
 *
 * - RMSNorm: x (after the residual add) to int16 codes per row (S = fround(max|x| / 32767)), iRmsnorm at
 *   2^−NORM_BITS, × the weight as a Q.W_FRAC integer, out = code · 2^−(NORM_BITS + W_FRAC).
 * - SwiGLU: gate and up come out of integer linears as Q.16 fixed point (y_fixed · 2^−16, integer-linear's
 *   OUT_FRAC), so their codes are exact: g_q = gate · 2^16. silu = iSilu(g_q) at S = 2^−16 (σ at 2^−SIG_BITS),
 *   rounded back to Q.16, times u_q: out = silu_q · u_q · 2^−32. Element-wise, so chunking cannot change it.
 * - Attention: K and V stored as int8 per (position, KV head) with their scale's dyadic form; each query head
 *   to int8 (S_q = fround(max|q| / 127)). Score codes at one common scale 2^−SCORE_FRAC:
 *   roundShift(Σ q_q·k_q · M_t) with M_t = S_q·S_k[t] / (fround(√headDim) · 2^−SCORE_FRAC) as a dyadic
 *   multiplier; iSoftmax to probabilities at 2^−PROB_BITS; the value sum Σ_t p_t·(S_v[t]/S_vmax)·v_q[t]
 *   with the ratio as a dyadic multiplier per position, out = acc · S_vmax · 2^−PROB_BITS.
 * Everything is integer from code to code, so logits do not depend on the backend, the thread count or how
 * a sequence is chunked (tested bit for bit).
 */
import { QuantlabError } from "../core/errors.js";
import { toDyadic } from "../formats/int.js";
import type { Backend, KvCache } from "../kernels/types.js";
import { iExpConstants, iRmsnorm, iSilu, iSoftmax, type IExpConstants } from "./integer-ops.js";
import { IntegerLinearBackend, MULT_BITS, OUT_FRAC, hasIntegerLinears, roundShift } from "./integer-linear.js";
import { QTensor } from "../quant/tensor.js";
import { ARCH_TRAITS } from "./config.js";
import type { Model } from "./weights.js";

/** output bits of iRmsnorm (x / rms at 2^−14) */
export const NORM_BITS = 14;
/** fraction bits of the norm weights as integers */
export const W_FRAC = 12;
/** output bits of iSigmoid inside iSilu */
export const SIG_BITS = 14;
/** fraction bits of the common score scale */
export const SCORE_FRAC = 10;
/** output bits of iSoftmax */
export const PROB_BITS = 16;

const SAFE = 2 ** 53;
const Q16 = 2 ** OUT_FRAC;

function rne(v: number): number {
  let r = Math.round(v);
  if (r - v === 0.5 && r % 2 !== 0) r--;
  return r;
}

/** m/2^k · m'/2^k' renormalized to MULT_BITS significant bits (an integer product and a rounding shift). */
function mulDyadic(a: { m: number; k: number }, b: { m: number; k: number }): { m: number; k: number } {
  let m = a.m * b.m, k = a.k + b.k;
  const excess = Math.max(0, Math.ceil(Math.log2(m + 1)) - MULT_BITS);
  if (excess > 0) { m = roundShift(m, excess); k -= excess; }
  return { m, k };
}

export class IntegerOpsBackend extends IntegerLinearBackend {
  private readonly wq = new WeakMap<Float32Array, Int32Array>();
  private readonly siluK: IExpConstants = iExpConstants(1 / Q16);
  private qrow = new Float64Array(0);
  private nrow = new Float64Array(0);

  /** the attention is part of this backend's arithmetic: another KV cache (--kv) would silently replace it */
  readonly ownsAttention = "integer-only end to end (spec part iops)";

  constructor(inner: Backend, acts?: ConstructorParameters<typeof IntegerLinearBackend>[1]) {
    super(inner, acts, `intops+${inner.name}`);
  }

  /** x ← x + y; out = irmsnorm(x) ⊙ w, integer from the int16 codes of x to the product with the Q.12 weight */
  addRmsnorm(x: Float32Array, y: Float32Array | undefined, w: Float32Array, out: Float32Array, n: number, dim: number, eps: number): void {
    let wq = this.wq.get(w);
    if (!wq) {
      wq = new Int32Array(dim);
      for (let i = 0; i < dim; i++) {
        const v = rne(w[i]! * 2 ** W_FRAC);
        if (Math.abs(v) >= 2 ** 31) throw new QuantlabError("E_UNSUPPORTED", `integer RMSNorm: weight ${w[i]} does not fit a Q.${W_FRAC} int32`);
        wq[i] = v;
      }
      this.wq.set(w, wq);
    }
    if (this.qrow.length < dim) { this.qrow = new Float64Array(dim); this.nrow = new Float64Array(dim); }
    const q = this.qrow, nr = this.nrow;
    const outScale = 2 ** -(NORM_BITS + W_FRAC);
    for (let r = 0; r < n; r++) {
      const o = r * dim;
      if (y) for (let i = 0; i < dim; i++) x[o + i] = x[o + i]! + y[o + i]!;
      let amax = 0;
      for (let i = 0; i < dim; i++) {
        const v = x[o + i]!;
        if (!Number.isFinite(v)) throw new QuantlabError("E_VALUE", `integer RMSNorm: residual element ${i} of row ${r} is ${v}`);
        const a = Math.abs(v);
        if (a > amax) amax = a;
      }
      const S = Math.fround(amax / 32767);
      if (!(S > 0)) { out.fill(0, o, o + dim); continue; }
      for (let i = 0; i < dim; i++) { const c = rne(x[o + i]! / S); q[i] = c > 32767 ? 32767 : c < -32767 ? -32767 : c; }
      iRmsnorm(q, dim, S, eps, NORM_BITS, nr);
      for (let i = 0; i < dim; i++) {
        const p = nr[i]! * wq[i]!;
        if (Math.abs(p) >= SAFE) throw new QuantlabError("E_UNSUPPORTED", `integer RMSNorm: product ${p} overflows exact integers`);
        out[o + i] = p * outScale;
      }
    }
  }

  /** gate[i] ← silu(gate[i])·up[i] on Q.16 codes: iSilu, a rounding shift back to Q.16, an integer product */
  swiglu(gate: Float32Array, up: Float32Array, n: number): void {
    const k = this.siluK;
    const out2 = 2 ** -(2 * OUT_FRAC);
    for (let i = 0; i < n; i++) {
      const g = gate[i]!, u = up[i]!;
      if (!Number.isFinite(g) || !Number.isFinite(u)) throw new QuantlabError("E_VALUE", `integer SwiGLU: element ${i} is ${Number.isFinite(g) ? u : g}`);
      const gq = rne(g * Q16), uq = rne(u * Q16);
      if (Math.abs(gq) >= 2 ** 31 || Math.abs(uq) >= 2 ** 31) throw new QuantlabError("E_UNSUPPORTED", `integer SwiGLU: element ${i} (${Math.abs(gq) >= 2 ** 31 ? g : u}) does not fit a Q15.16 int32`);
      const s = roundShift(iSilu(gq, k, SIG_BITS), SIG_BITS); // silu at Q.16
      const p = s * uq;
      if (Math.abs(p) >= SAFE) throw new QuantlabError("E_UNSUPPORTED", `integer SwiGLU: product at element ${i} overflows exact integers`);
      gate[i] = p * out2;
    }
  }

  kvCache(nLayers: number, capacity: number, nKvHeads: number, headDim: number): KvCache {
    return new IntegerAttentionCache(nLayers, capacity, nKvHeads, headDim);
  }
}

/**
 * K and V as int8 per (position, KV head) with f32 scales and their dyadic forms; `attend` is integer from
 * the query codes to the value sums (see the file comment). `scores` / `mix` (the per-head path a sliding
 * window takes) are refused: the softmax between them would be float.
 */
export class IntegerAttentionCache implements KvCache {
  private readonly k: Int8Array; // (nLayers, nKvHeads, capacity, headDim)
  private readonly v: Int8Array;
  private readonly sk: Float32Array; // (nLayers, nKvHeads, capacity)
  private readonly sv: Float32Array;
  private readonly dk: Float64Array; // dyadic m, k of each K scale: (nLayers, nKvHeads, capacity, 2)
  private readonly invSqrt: { m: number; k: number };

  constructor(readonly nLayers: number, readonly capacity: number, readonly nKvHeads: number, readonly headDim: number) {
    const n = nLayers * nKvHeads * capacity;
    this.k = new Int8Array(n * headDim);
    this.v = new Int8Array(n * headDim);
    this.sk = new Float32Array(n);
    this.sv = new Float32Array(n);
    this.dk = new Float64Array(2 * n);
    // scores are divided by fround(√headDim) as attendRef does, then put at scale 2^−SCORE_FRAC
    this.invSqrt = toDyadic(2 ** SCORE_FRAC / Math.fround(Math.sqrt(headDim)), MULT_BITS);
  }

  get bytes(): number {
    return this.k.byteLength + this.v.byteLength + this.sk.byteLength + this.sv.byteLength + this.dk.byteLength;
  }

  private row(layer: number, kvHead: number, t: number): number {
    return (layer * this.nKvHeads + kvHead) * this.capacity + t;
  }

  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
    const hd = this.headDim;
    for (let h = 0; h < this.nKvHeads; h++) {
      const r = this.row(layer, h, pos);
      this.sk[r] = quantizeInt8(k, h * hd, hd, this.k, r * hd, `K of layer ${layer} position ${pos}`);
      this.sv[r] = quantizeInt8(v, h * hd, hd, this.v, r * hd, `V of layer ${layer} position ${pos}`);
      const d = toDyadic(this.sk[r]!, MULT_BITS);
      this.dk[2 * r] = d.m;
      this.dk[2 * r + 1] = d.k;
    }
  }

  scores(): void {
    throw new QuantlabError("E_UNSUPPORTED", "integer attention (iops) runs whole (attend): a per-head score/softmax/mix path (sliding windows) would put a float softmax between integer ops");
  }

  mix(): void {
    this.scores();
  }

  attend(layer: number, q: Float32Array, pos0: number, n: number, nHeads: number, out: Float32Array): void {
    const hd = this.headDim;
    const qDim = nHeads * hd;
    const kvMul = nHeads / this.nKvHeads;
    const len = pos0 + n;
    const qq = new Int32Array(hd);
    const codes = new Float64Array(len);
    const probs = new Float64Array(len);
    const acc = new Float64Array(hd);
    for (let i = 0; i < n; i++) {
      const m = pos0 + i + 1; // positions this query sees
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / kvMul);
        const off = i * qDim + h * hd;
        const sq = quantizeInt8(q, off, hd, qq, 0, `query of position ${pos0 + i} head ${h}`);
        if (!(sq > 0)) {
          // a zero query: uniform scores
          for (let t = 0; t < m; t++) codes[t] = 0;
        } else {
          const dq = mulDyadic(toDyadic(sq, MULT_BITS), this.invSqrt);
          for (let t = 0; t < m; t++) {
            const r = this.row(layer, kvh, t);
            const ko = r * hd;
            let dot = 0;
            for (let e = 0; e < hd; e++) dot += qq[e]! * this.k[ko + e]!;
            const M = mulDyadic(dq, { m: this.dk[2 * r]!, k: this.dk[2 * r + 1]! });
            codes[t] = roundShift(dot * M.m, M.k);
          }
        }
        iSoftmax(codes, m, 2 ** -SCORE_FRAC, PROB_BITS, probs);
        // Σ_t p_t · S_v[t] · v_q[t]: every position's probability brought to the largest V scale by a dyadic ratio
        let svMax = 0;
        for (let t = 0; t < m; t++) svMax = Math.max(svMax, this.sv[this.row(layer, kvh, t)]!);
        acc.fill(0);
        if (svMax > 0) {
          for (let t = 0; t < m; t++) {
            const r = this.row(layer, kvh, t);
            const ratio = toDyadic(this.sv[r]! / svMax, MULT_BITS);
            const p = roundShift(probs[t]! * ratio.m, ratio.k);
            if (p === 0) continue;
            const vo = r * hd;
            for (let e = 0; e < hd; e++) acc[e] += p * this.v[vo + e]!;
          }
        }
        const outScale = svMax * 2 ** -PROB_BITS;
        for (let e = 0; e < hd; e++) out[off + e] = acc[e]! * outScale;
      }
    }
  }

  reset(): void {}
}

/** int8 codes of x[off..off+n) with S = fround(max|x| / 127), ties to even; returns S (0 for an all-zero row). */
function quantizeInt8(x: Float32Array, off: number, n: number, dst: Int8Array | Int32Array, dOff: number, what: string): number {
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const v = x[off + i]!;
    if (!Number.isFinite(v)) throw new QuantlabError("E_VALUE", `integer attention: ${what} element ${i} is ${v}`);
    const a = Math.abs(v);
    if (a > amax) amax = a;
  }
  const s = Math.fround(amax / 127);
  if (!(s > 0)) { for (let i = 0; i < n; i++) dst[dOff + i] = 0; return 0; }
  for (let i = 0; i < n; i++) {
    const c = rne(x[off + i]! / s);
    dst[dOff + i] = c > 127 ? 127 : c < -127 ? -127 : c;
  }
  return s;
}

/**
 * How a model runs: a model with integer-only linears runs them through an IntegerLinearBackend over
 * `backend` on every path (run, eval, kld, bench, compare — whatever builds a Llama), never as float
 * fake quantization; their inputs are quantized by that backend, so the model's own activation transform
 * (the fake-quant `a<b>` of the other path) is taken off. Any other model runs as it is.
 */
export function integerRuntime(model: Model, backend: Backend): { model: Model; backend: Backend } {
  if (backend instanceof IntegerLinearBackend || !hasIntegerLinears(model.weights)) return { model, backend };
  const ops = integerOpsOf(model);
  const t = model.inputTransforms;
  const acts = t?.activations;
  let m = model;
  if (t && acts) {
    const { activations: _a, ...rest } = t;
    m = { ...model };
    if (Object.keys(rest).length) m.inputTransforms = rest;
    else delete m.inputTransforms;
  }
  return { model: m, backend: ops ? new IntegerOpsBackend(backend, acts) : new IntegerLinearBackend(backend, acts) };
}

/**
 * Whether the model asks for integer non-linear ops (every integer linear's spec has `iops`); a model where
 * only some do, or whose block has a step the integer ops do not cover, is refused by name.
 */
function integerOpsOf(model: Model): boolean {
  let withOps: string | undefined, without: string | undefined;
  for (const [name, w] of model.weights) {
    if (w.kind !== "quant" || !(w.q instanceof QTensor) || !w.q.specObject.integerMatmul) continue;
    if (w.q.specObject.integerMatmul.ops) withOps ??= name;
    else without ??= name;
  }
  if (!withOps) return false;
  if (without) throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: ${withOps} asks for integer non-linear ops (iops) but ${without} does not: end to end means every integer linear of the model (quantize all of them with iops)`);
  const c = model.config;
  if (ARCH_TRAITS[c.arch]?.qkNorm) throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: iops: architecture ${c.arch}'s per-head q/k norms have no integer version yet`);
  if (c.slidingWindow !== undefined) throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: iops: sliding-window attention (window ${c.slidingWindow}) has no integer attention yet`);
  for (const k of Object.keys(ARCH_TRAITS[c.arch] ?? {})) {
    if (!["qkvBias", "qkNorm", "rope", "multipliers"].includes(k) && JSON.stringify((ARCH_TRAITS[c.arch] as unknown as Record<string, unknown>)[k]) !== JSON.stringify((ARCH_TRAITS.llama as unknown as Record<string, unknown>)[k])) {
      throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: iops: architecture ${c.arch}'s ${k} has no integer version yet`);
    }
  }
  return true;
}
