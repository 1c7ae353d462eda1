/**
 * A decoder forward pass (every ARCH_TRAITS architecture as llama.cpp builds it: biases, q/k norms per head or over
 * the projection, NeoX rope, Granite multipliers, Phi-3's partial rotary and LongRoPE factors, Gemma 2/3's sandwich
 * norms, GeGLU, √dim embedding scale, soft-caps, query scale and sliding layers, OLMo 2's post-norms) that computes
 * as llama.cpp's CPU backend does (ggml-cpu, no flash attention), op
 * by op and rounding by rounding, so its next-token probabilities can be compared with llama.cpp's on
 * the same GGUF at the 1e-6 level instead of "within quantization noise".
 *
 * Why a second forward pass: with quantized weights ggml rounds every matmul input to 8 bits (Q8_0/Q8_K)
 * and, with an f16 KV cache, attention inputs to f16. A last-bit difference anywhere (summation order, an
 * exp approximation) flips a few of those roundings and the flips compound over layers: two correct
 * implementations — or llama.cpp with flash attention on and off — then differ by 1e-2 in probability.
 * Matching llama.cpp to 1e-3 therefore needs its arithmetic, not just its math:
 *
 * - matmuls (ggml_compute_forward_mul_mat): the input row is converted to the weight type's vec_dot_type
 *   (Q8_0/Q8_1/Q8_K for quantized weights, f16 for F16); quantized dots in ggml's block order
 *   (src/ggml/dot.ts); F16 and F32 rows in llamafile-sgemm lane order when the row length is a multiple
 *   of the vector width, else ggml_vec_dot_f16/f32 order (4 accumulators, tree, reduce, scalar tail);
 * - rms_norm: Σx² in double of f32 squares, scale = 1/sqrtf(mean + eps), then × weight (ggml_mul);
 * - rope (ggml rope_yarn, ext_factor 0): θ multiplied by powf(base, −2/n_rot) pair after pair in f32, ÷ the freq
 *   factor (rope_freqs / LongRoPE's set), × freq_scale (linear scaling), cos and sin × attn_factor; values past n_rot
 *   pass through;
 * - attention: K·q and V·p as the sgemm / vec_dot paths above over the KV cache (f16 or f32), scores
 *   × 1/√d, soft_max with ggml_v_expf on full vectors, Σ in double, × (float)(1/Σ);
 * - swiglu: ggml_v_silu on full vectors, the scalar expf form on the tail; geglu (GGML_GELU_FP16): the input
 *   rounded to f16 indexes ggml_table_gelu_f16 (gelu_f32 of that f16 value, rounded to f16), 0 below −10, x above 10;
 * - soft-caps (ggml_scale 1/c, ggml_tanh, ggml_scale c) on the scores before soft_max and on the logits; the query
 *   scale of phi3 / Gemma as ggml_scale of Q after RoPE (soft_max's scale then 1); sliding windows as −∞ in the mask.
 *
 * Decode only (one position per call) and unoptimized: a reference for tests and for reproducing
 * llama.cpp's numbers, not a fast path. The vector width is that of the ggml CPU variant llama.cpp runs
 * (AVX-512 or AVX2; src/ggml/simd-math.ts).
 */
import { QuantlabError } from "../core/errors.js";
import { f16BitsToF32, f32ToF16Bits, f32ToBf16Bits, bf16BitsToF32 } from "../core/f16.js";
import { fr } from "../ggml/cfloat.js";
import { glibcTanhf } from "../ggml/glibc-math.js";
import { activationRowBytes, quantizeActivationsRow, vecDot, vecDotType } from "../ggml/dot.js";
import { GGML_TYPES, GgmlType, ggmlRowBytes } from "../ggml/types.js";
import { expf, fma32, ggmlSiluScalar, ggmlVExpf, ggmlVSilu, quantizeRowQ8X86, reduceLanes, simdLanes, type GgmlSimd } from "../ggml/simd-math.js";
import { dequantizeWeight, rowReader, type RowReader } from "../kernels/dequantize.js";
import { ARCH_TRAITS, TensorNames, blockTensors, fusedFileTensors, isArchitecture, layerRope, layerWindow, rotaryDimOf, type ArchTraits, type BlockTensors, type ModelConfig } from "./config.js";
import { ROPE_FREQS, ropeFactorSet, type CausalLM, type LogitsSink } from "./llama.js";
import type { Model } from "./weights.js";
import type { Weight } from "../core/weight.js";

export interface GgmlForwardOptions {
  /** vector width of the ggml CPU variant to reproduce (default "avx512") */
  simd?: GgmlSimd;
  /** llama.cpp's KV cache type (`-ctk/-ctv`; llama.cpp's default "f16") */
  kvType?: "f16" | "f32";
  /** positions the cache holds (default: the model's seqLen) */
  contextLength?: number;
}

/** llama_kv_cache::get_padding without flash attention: n_kv is the used cells rounded up to this */
const KV_PAD = 32;

/** one weight matrix as ggml multiplies it */
interface Mat {
  name: string;
  rows: number;
  cols: number;
  /** "q": ggml blocks (vecDot); "f16"/"bf16": 16-bit rows, input rounded the same; "f32": f32 rows */
  mode: "q" | "f16" | "bf16" | "f32";
  type: GgmlType;
  data: Uint8Array; // q: (rows, rowBytes)
  rowBytes: number;
  w: Float32Array; // f16/bf16/f32: values as f32 (rows, cols)
  /** llama.cpp holds it in the CPU_REPACK buffer (Q4_0 as q4_0_8x8), which sums its dots in another order (vecDotX86) */
  repacked: boolean;
}

const roundF16 = (x: number): number => f16BitsToF32(f32ToF16Bits(x));
const roundBf16 = (x: number): number => bf16BitsToF32(f32ToBf16Bits(x));

export class GgmlForward implements CausalLM {
  /** one position at a time */
  readonly maxBatch = 1;
  readonly config: ModelConfig;
  readonly simd: GgmlSimd;
  readonly kvType: "f16" | "f32";
  readonly capacity: number;
  private readonly L: number; // lanes
  private readonly model: Model;
  private readonly embedding: RowReader;
  private readonly layers: BlockTensors<Float32Array, Mat>[];
  private readonly outputNorm: Float32Array;
  private readonly output: Mat;
  /** each layer's RoPE as ggml_rope_ext gets it */
  private readonly ropes: LayerRope[]; // (nLayers)
  /** Q × this after RoPE (phi3, Gemma: ggml_scale), soft_max's scale then 1; undefined: soft_max scales */
  private readonly qScale: number | undefined;
  private readonly K: Float32Array; // (layers, capacity, kvDim), values already rounded to kvType
  private readonly V: Float32Array;
  private readonly logits: Float32Array;
  private readonly traits: ArchTraits;

  constructor(model: Model, opts: GgmlForwardOptions = {}) {
    const c = model.config;
    if (!isArchitecture(c.arch)) throw new QuantlabError("E_UNSUPPORTED", `GgmlForward: unknown architecture "${String(c.arch)}"`);
    const t = ARCH_TRAITS[c.arch];
    // llama.cpp's gemma3 graph without sliding layers soft-caps the logits by a default of its own (non-iSWA build)
    if (c.arch === "gemma3" && c.slidingWindow === undefined) throw new QuantlabError("E_UNSUPPORTED", "GgmlForward: gemma3 without sliding layers (llama.cpp's non-iSWA gemma3 graph soft-caps the logits by its own default) is not emulated");
    if (c.ropeLinearFactor !== undefined && c.arch !== "gemma3") throw new QuantlabError("E_UNSUPPORTED", `GgmlForward: linear RoPE scaling on ${c.arch} is not emulated`);
    this.model = model;
    this.config = c;
    this.traits = t;
    this.simd = opts.simd ?? "avx512";
    this.kvType = opts.kvType ?? "f16";
    this.L = simdLanes(this.simd);
    this.capacity = opts.contextLength ?? c.seqLen;
    if (c.ropeScaling && !model.weights.has(ROPE_FREQS)) {
      throw new QuantlabError("E_UNSUPPORTED", `${model.source.path}: ggml arithmetic: RoPE scaling without a ${ROPE_FREQS} tensor is not emulated`);
    }
    const W = model.weights;
    const get = (n: string): Weight => {
      const w = W.get(n);
      if (!w) throw new QuantlabError("E_FORMAT", `${model.source.path}: missing tensor ${n}`);
      return w;
    };
    const vec = (n: string) => dequantizeWeight(get(n), n).data;
    // which Q4_0 matrices llama.cpp repacks (ggml_repack_get_optimal_repack_type: q4_0_8x8 on AVX2 / AVX-512 when
    // ne[1] % 8 == 0). Observed, not traced in llama.cpp's buffer choice: Phi-3's fused attn_qkv / ffn_up run outside
    // the repack buffer (the tiny phi3 files agree to 1e-6 only so), and so does a tied output read from token_embd
    // (its buffer is chosen for get_rows)
    const fusedParts = new Set(t.fusedProjections ? fusedFileTensors(c).flatMap((f) => f.parts.map((p) => p.name)) : []);
    const mat = (n: string, tiedHead = false) => {
      const m = prepareMat(get(n), n);
      m.repacked = m.mode === "q" && (m.type === GgmlType.Q4_0 || m.type === GgmlType.Q4_K) && m.rows % 8 === 0 && !fusedParts.has(n) && !tiedHead;
      return m;
    };
    this.embedding = rowReader(get(TensorNames.tokenEmbd), TensorNames.tokenEmbd);
    this.layers = [];
    for (let l = 0; l < c.nLayers; l++) this.layers.push(blockTensors(l, vec, mat, this.traits));
    this.outputNorm = vec(TensorNames.outputNorm);
    this.output = W.has(TensorNames.output) ? mat(TensorNames.output) : mat(TensorNames.tokenEmbd, true);
    const freqFactors = W.has(ROPE_FREQS) ? vec(ROPE_FREQS) : undefined;
    const rd = rotaryDimOf(c);
    if (freqFactors && freqFactors.length !== rd / 2) throw new QuantlabError("E_FORMAT", `${ROPE_FREQS}: ${freqFactors.length} values, expected rotary dimension / 2 = ${rd / 2}`);
    if (freqFactors && c.longRope) throw new QuantlabError("E_FORMAT", `${model.source.path}: both ${ROPE_FREQS} and LongRoPE factors`);
    // LongRoPE: llama.cpp picks rope_factors_long when the context is beyond the original one (llama_model::get_rope_factors),
    // and multiplies cos/sin by rope.scaling.attn_factor (cparams.yarn_attn_factor *= hparams.rope_attn_factor)
    const lr = c.longRope;
    const factors = lr ? Float32Array.from(ropeFactorSet(c, this.capacity) === "long" ? lr.longFactor : lr.shortFactor) : freqFactors;
    const mscale = lr ? fr(lr.attentionFactor) : 1;
    this.ropes = [];
    for (let l = 0; l < c.nLayers; l++) {
      const r = layerRope(c, l);
      // hparams.rope_freq_scale_train = 1.0f/ropescale (linear scaling); theta_scale = powf(freq_base, -2.0f/n_dims)
      this.ropes.push({ thetaScale: fr(Math.pow(fr(r.theta), fr(-2 / rd))), freqScale: r.linear === 1 ? 1 : fr(1 / fr(r.linear)), factors, mscale, window: layerWindow(c, l) });
    }
    this.qScale = queryScaleOf(c);
    const kvDim = c.nKvHeads * c.headDim;
    this.K = new Float32Array(c.nLayers * this.capacity * kvDim);
    this.V = new Float32Array(c.nLayers * this.capacity * kvDim);
    this.logits = new Float32Array(c.vocabSize);
  }

  /** Starts a fresh sequence (positions are overwritten as they are fed again from 0). */
  reset(): void {}

  /** Feeds tokens at pos0… one position at a time; every position's logits go to the sink (n = 1). */
  prefill(tokens: ArrayLike<number>, pos0: number, sink?: LogitsSink): Float32Array {
    if (tokens.length === 0) throw new QuantlabError("E_ARG", "prefill: no tokens");
    for (let i = 0; i < tokens.length; i++) {
      const logits = this.forward(tokens[i]!, pos0 + i);
      sink?.(logits, i, 1);
    }
    return this.logits;
  }

  /** Logits for `token` at `pos` (positions 0..pos−1 fed before). A view, overwritten by the next call. */
  forward(token: number, pos: number): Float32Array {
    const c = this.model.config;
    const { dim, hiddenDim: hidden, headDim: hd, nHeads, nKvHeads, vocabSize } = c;
    if (!Number.isInteger(token) || token < 0 || token >= vocabSize) throw new QuantlabError("E_ARG", `token id ${token} is outside the vocabulary (0..${vocabSize - 1})`);
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.capacity) throw new QuantlabError("E_ARG", `position ${pos} is beyond the context length ${this.capacity}`);
    const qDim = nHeads * hd, kvDim = nKvHeads * hd;
    const x = new Float32Array(dim);
    this.embedding(token, x, 0);
    const mul = c.multipliers;
    // llama.cpp build_granite: ggml_scale of the embeddings, of each branch before its residual add, kq_scale =
    // f_attention_scale, and the logits × 1/f_logit_scale
    if (mul) for (let j = 0; j < dim; j++) x[j] = fr(x[j]! * fr(mul.embedding));
    // Gemma: ggml_scale(inpL, sqrtf(n_embd))
    if (this.traits.embedScaleSqrtDim) { const e = fr(Math.sqrt(dim)); for (let j = 0; j < dim; j++) x[j] = fr(x[j]! * e); }
    const residual = mul ? fr(mul.residual) : 1;
    const xb = new Float32Array(dim);
    const q = new Float32Array(qDim), k = new Float32Array(kvDim), v = new Float32Array(kvDim);
    const att = new Float32Array(qDim), tmp = new Float32Array(dim);
    const g = new Float32Array(hidden), u = new Float32Array(hidden);
    const kvRound = this.kvType === "f16" ? roundF16 : fr;
    const eps = fr(c.normEps);
    // llama.cpp: kq_scale = 1.0f/sqrtf(float(n_embd_head)) in soft_max, or 1 when Q was scaled (phi3, Gemma)
    const kqScale = mul ? fr(mul.attention) : this.qScale !== undefined ? 1 : fr(1 / fr(Math.sqrt(hd)));
    for (let l = 0; l < c.nLayers; l++) {
      const Ly = this.layers[l]!;
      const rp = this.ropes[l]!;
      // pre-norm (llama, Gemma's sandwich), or the stream itself (OLMo 2: build_olmo2 reads inpL)
      if (Ly.attnNorm) rmsNorm(xb, x, Ly.attnNorm, eps);
      else xb.set(x);
      this.matvec(Ly.wq, xb, q);
      this.matvec(Ly.wk, xb, k);
      this.matvec(Ly.wv, xb, v);
      // qwen2: ggml_add of the biases after each mul_mat; qwen3 / Gemma 3: build_norm (RMS) of each head of q and k;
      // OLMo 2: build_norm of the whole projection (the norm's width says which)
      if (Ly.bq) addInPlace(q, Ly.bq);
      if (Ly.bk) addInPlace(k, Ly.bk);
      if (Ly.bv) addInPlace(v, Ly.bv);
      if (Ly.qNorm) for (let h = 0; h < qDim; h += Ly.qNorm.length) rmsNormAt(q, h, Ly.qNorm.length, Ly.qNorm, eps);
      if (Ly.kNorm) for (let h = 0; h < kvDim; h += Ly.kNorm.length) rmsNormAt(k, h, Ly.kNorm.length, Ly.kNorm, eps);
      this.rope(q, pos, rp);
      this.rope(k, pos, rp);
      if (this.qScale !== undefined) for (let j = 0; j < qDim; j++) q[j] = fr(q[j]! * this.qScale);
      const base = l * this.capacity * kvDim;
      for (let j = 0; j < kvDim; j++) {
        this.K[base + pos * kvDim + j] = kvRound(k[j]!);
        this.V[base + pos * kvDim + j] = kvRound(v[j]!);
      }
      const n = pos + 1;
      // LLAMA_SWA_TYPE_STANDARD: position p sees p − W + 1 … p; the rest of the row is −∞ in the mask
      const first = rp.window === undefined ? 0 : Math.max(0, pos - rp.window + 1);
      const group = nHeads / nKvHeads;
      for (let h = 0; h < nHeads; h++) this.attendHead(q, h * hd, base + Math.floor(h / group) * hd, kvDim, first, n, kqScale, att, h * hd);
      this.matvec(Ly.wo, att, tmp);
      if (Ly.postAttnNorm) rmsNorm(tmp, tmp.slice(), Ly.postAttnNorm, eps);
      if (mul) for (let j = 0; j < dim; j++) tmp[j] = fr(tmp[j]! * residual);
      for (let j = 0; j < dim; j++) x[j] = fr(x[j]! + tmp[j]!);
      if (Ly.ffnNorm) rmsNorm(xb, x, Ly.ffnNorm, eps);
      else xb.set(x);
      this.matvec(Ly.gate, xb, g);
      this.matvec(Ly.up, xb, u);
      if (this.traits.activation === "gelu_tanh") geglu(g, u);
      else this.swiglu(g, u);
      this.matvec(Ly.down, g, tmp);
      if (Ly.postFfnNorm) rmsNorm(tmp, tmp.slice(), Ly.postFfnNorm, eps);
      if (mul) for (let j = 0; j < dim; j++) tmp[j] = fr(tmp[j]! * residual);
      for (let j = 0; j < dim; j++) x[j] = fr(x[j]! + tmp[j]!);
    }
    rmsNorm(xb, x, this.outputNorm, eps);
    this.matvec(this.output, xb, this.logits);
    if (mul) {
      const inv = fr(1 / fr(mul.logits));
      for (let j = 0; j < vocabSize; j++) this.logits[j] = fr(this.logits[j]! * inv);
    }
    if (c.finalSoftcap !== undefined) softcap(this.logits, c.finalSoftcap);
    return this.logits;
  }

  /**
   * One head: softmax(q·K · scale) · V over positions first..n−1, into out[outOff..+hd), as llama.cpp's graph computes
   * it over its n_kv cache cells: the used cells padded to 32 without flash attention (llama_kv_cache::get_padding),
   * at most the cache size — R = min(capacity, n rounded up to 32) here, the cells past n masked to −∞ like those
   * before first (measured: stories260K's 31-token prompt agrees with llama.cpp only with R = 32, not 31). With R a
   * multiple of the width the padding changes no sum; otherwise (a cache size that is not) the tails below apply:
   * - K·q: mul_mat(k, q) with q a permuted view (not contiguous), so never llamafile sgemm with an f32 cache:
   *   ggml_vec_dot_f32 over the head size; an f16 cache converts q to f16 first (contiguous), then sgemm when the head
   *   size is a multiple of the width, else ggml_vec_dot_f16;
   * - soft_max over the row of R: max, ggml_v_expf on each full vector, glibc expf on the tail, Σ in double of each
   *   vector's lane sum and of each tail value, × (float)(1/Σ);
   * - V·p: mul_mat(v^T, kq), p contiguous: llamafile sgemm lane order when R is a multiple of the width, else
   *   ggml_vec_dot_f32/f16 over R (p goes to the cache type first).
   */
  private attendHead(q: Float32Array, qOff: number, kvOff: number, kvDim: number, first: number, n: number, scale: number, out: Float32Array, outOff: number): void {
    const hd = this.model.config.headDim;
    const L = this.L;
    const f16 = this.kvType === "f16";
    const R = Math.min(this.capacity, Math.ceil(n / KV_PAD) * KV_PAD);
    const qh = new Float32Array(hd);
    for (let i = 0; i < hd; i++) qh[i] = f16 ? roundF16(q[qOff + i]!) : q[qOff + i]!;
    const s = new Float32Array(R).fill(-Infinity);
    const krow = new Float32Array(hd);
    const capRaw = this.model.config.attnSoftcap;
    const cap = capRaw === undefined ? undefined : fr(capRaw);
    const invCap = cap === undefined ? 1 : fr(1 / cap);
    for (let t = first; t < n; t++) {
      const o = kvOff + t * kvDim;
      for (let i = 0; i < hd; i++) krow[i] = this.K[o + i]!;
      let kq = f16 ? this.dot(krow, 0, qh, hd, "f16") : this.dot(krow, 0, qh, hd, "f32", false);
      // build_attn_mha: soft-cap (scale 1/c, tanh, scale c) before soft_max_ext(kq, mask, kq_scale)
      if (cap !== undefined) kq = fr(glibcTanhf(fr(kq * invCap)) * cap);
      s[t] = fr(kq * scale);
    }
    let max = -Infinity;
    for (let t = 0; t < R; t++) if (s[t]! > max) max = s[t]!;
    let sum = 0;
    const full = R - (R % L);
    const chunk = new Float32Array(L);
    for (let c0 = 0; c0 < full; c0 += L) {
      for (let t = c0; t < c0 + L; t++) chunk[t - c0] = s[t] = ggmlVExpf(fr(s[t]! - max), this.simd);
      sum += reduceLanes(chunk, L, "movehl");
    }
    for (let t = full; t < R; t++) sum += s[t] = expf(fr(s[t]! - max));
    const inv = fr(1 / sum);
    const p = new Float32Array(R);
    for (let t = 0; t < R; t++) p[t] = f16 ? roundF16(fr(s[t]! * inv)) : fr(s[t]! * inv);
    const vcol = new Float32Array(R);
    for (let i = 0; i < hd; i++) {
      for (let t = 0; t < R; t++) vcol[t] = t < n ? this.V[kvOff + t * kvDim + i]! : 0; // cells past n: p = 0
      out[outOff + i] = this.dot(vcol, 0, p, R, f16 ? "f16" : "f32");
    }
  }

  /**
   * Σ a·b over n f32 values (16-bit values when kind is f16: products exact in f32), as ggml multiplies
   * a row by a column: llamafile sgemm (one accumulator per lane, k ≡ lane mod width, then a reduce)
   * when n is a multiple of the width and `sgemm` (llamafile takes the product: a contiguous input); else ggml_vec_dot_f32/f16 (4 accumulators per 4·width step, a
   * tree and a reduce, then the tail: float mul and add for f32, double for f16).
   */
  private dot(a: Float32Array, aOff: number, b: Float32Array, n: number, kind: "f32" | "f16", sgemm = true): number {
    const L = this.L;
    if (sgemm && n % L === 0) {
      const lanes = new Float64Array(L);
      for (let i = 0; i < n; i++) lanes[i % L] = kind === "f16" ? fr(lanes[i % L]! + a[aOff + i]! * b[i]!) : fma32(a[aOff + i]!, b[i]!, lanes[i % L]!);
      return reduceLanes(lanes, L, "movehl");
    }
    const step = 4 * L;
    const np = n - (n % step);
    let sum = 0;
    if (np > 0) {
      const acc = [new Float64Array(L), new Float64Array(L), new Float64Array(L), new Float64Array(L)];
      for (let i = 0; i < np; i += step) {
        for (let j = 0; j < 4; j++) {
          const r = acc[j]!;
          for (let l = 0; l < L; l++) {
            const e = i + j * L + l;
            r[l] = kind === "f16" ? fr(r[l]! + a[aOff + e]! * b[e]!) : fma32(a[aOff + e]!, b[e]!, r[l]!);
          }
        }
      }
      for (let l = 0; l < L; l++) {
        acc[0]![l] = fr(acc[0]![l]! + acc[2]![l]!);
        acc[1]![l] = fr(acc[1]![l]! + acc[3]![l]!);
      }
      for (let l = 0; l < L; l++) acc[0]![l] = fr(acc[0]![l]! + acc[1]![l]!);
      sum = reduceLanes(acc[0]!, L, "hadd");
    }
    if (kind === "f16") {
      for (let i = np; i < n; i++) sum += a[aOff + i]! * b[i]!; // ggml_float (double) tail
      return fr(sum);
    }
    return f32DotTail(a, aOff, b, np, n, sum, L);
    return sum;
  }

  private matvec(m: Mat, x: Float32Array, out: Float32Array): void {
    if (m.mode === "q") {
      // x86 builds quantize Q8_0/Q8_1 inputs with the AVX form; Q8_K with the reference form
      const at = vecDotType(m.type);
      const a = at === GgmlType.Q8_0 || at === GgmlType.Q8_1
        ? quantizeRowQ8X86(x, m.cols, new Uint8Array(activationRowBytes(m.type, m.cols)), at === GgmlType.Q8_1)
        : quantizeActivationsRow(m.type, x, m.cols);
      for (let r = 0; r < m.rows; r++) out[r] = vecDotX86(m.type, m.data.subarray(r * m.rowBytes, (r + 1) * m.rowBytes), a, m.cols, m.repacked);
      return;
    }
    if (m.mode === "bf16") {
      // ggml_vec_dot_bf16's order is not emulated (no llama-quantize preset writes BF16 matrices)
      const xr = x.map(roundBf16);
      for (let r = 0; r < m.rows; r++) {
        let s = 0;
        for (let i = 0; i < m.cols; i++) s += m.w[r * m.cols + i]! * xr[i]!;
        out[r] = fr(s);
      }
      return;
    }
    const xr = m.mode === "f16" ? x.map(roundF16) : x;
    for (let r = 0; r < m.rows; r++) out[r] = this.dot(m.w, r * m.cols, xr, m.cols, m.mode);
  }

  /**
   * ggml rope (ggml_rope_cache_init / rope_yarn with ext_factor 0): θ_i = pos · theta_scale^i in f32, ÷ freq_factors[i],
   * × freq_scale, cos and sin × mscale; normal mode rotates the pairs (2i, 2i+1) of each head, NeoX mode (traits.rope
   * "neox") the pairs (i, i + n_rot/2), for i < n_rot/2; the values past n_rot pass through.
   */
  private rope(x: Float32Array, pos: number, r: LayerRope): void {
    const hd = this.model.config.headDim;
    const rd = rotaryDimOf(this.model.config);
    const neox = this.traits.rope === "neox";
    for (let h = 0; h < x.length; h += hd) {
      let theta = fr(pos);
      for (let i = 0; i < rd / 2; i++) {
        const extrap = r.factors ? fr(theta / r.factors[i]!) : theta;
        const t = r.freqScale === 1 ? extrap : fr(r.freqScale * extrap);
        const cs = r.mscale === 1 ? fr(Math.cos(t)) : fr(fr(Math.cos(t)) * r.mscale);
        const sn = r.mscale === 1 ? fr(Math.sin(t)) : fr(fr(Math.sin(t)) * r.mscale);
        const a = neox ? h + i : h + 2 * i, b = neox ? h + i + rd / 2 : h + 2 * i + 1;
        const x0 = x[a]!, x1 = x[b]!;
        // rotate_pairs (ops.cpp) as gcc contracted it in the bundled AVX-512 build (objdump of libggml-cpu-zen4.so):
        // the cos product is fused, the sin product (normal mode) / the x1 product (NeoX mode) rounded first
        x[a] = fma32(x0, cs, -fr(x1 * sn));
        x[b] = neox ? fma32(x0, sn, fr(x1 * cs)) : fma32(x1, cs, fr(x0 * sn));
        theta = fr(theta * r.thetaScale);
      }
    }
  }

  /** g ← silu(g) ⊙ u (ggml_vec_swiglu_f32) */
  private swiglu(g: Float32Array, u: Float32Array): void {
    const n = g.length;
    const full = n - (n % this.L);
    for (let i = 0; i < n; i++) g[i] = fr((i < full ? ggmlVSilu(g[i]!, this.simd) : ggmlSiluScalar(g[i]!)) * u[i]!);
  }
}

const i8 = (b: Uint8Array, o: number): number => (b[o]! << 24) >> 24;
const f16At = (b: Uint8Array, o: number): number => f16BitsToF32(b[o]! | (b[o + 1]! << 8));

/**
 * One weight row · one quantized activation row as the x86 build of ggml-cpu sums it, where that differs from the
 * generic C order of vecDot (src/ggml/dot.ts, the reference the WASM kernels follow) — a last-bit difference in a
 * matmul output flips a later Q8 rounding now and then, which is ~1e-3 in p:
 * - Q4_0 that llama.cpp's CPU_REPACK buffer holds as q4_0_8x8 (Mat.repacked): ggml_gemv / ggml_gemm
 *   _q4_0_8x8_q8_0 accumulate one fma per block, sumf = fma(Σq·q8, d_w·d_a, sumf);
 * - Q4_0 (other tensors), Q5_0, Q8_0: ggml_vec_dot_*_q8_0 AVX2 (also the AVX-512 build's): mul_sum_i8_pairs_float
 *   gives 8 lanes of 4 products each, acc = fma(d_w·d_a, lanes, acc) per block, then hsum_float_8 (high half + low
 *   half, movehl, movehdup);
 * - Q4_K / Q6_K: vecDotKX86;
 * - other types: vecDot.
 */
function vecDotX86(type: GgmlType, w: Uint8Array, a: Uint8Array, n: number, repacked: boolean): number {
  if (type === GgmlType.Q4_K || type === GgmlType.Q6_K) return vecDotKX86(type, w, a, n, repacked);
  if (type !== GgmlType.Q4_0 && type !== GgmlType.Q5_0 && type !== GgmlType.Q8_0) return vecDot(type, w, a, n);
  const wb = GGML_TYPES[type].bytesPerBlock, ab = GGML_TYPES[GgmlType.Q8_0].bytesPerBlock;
  const nb = n / 32;
  // the weight's level of element j (0..31) of the block at x
  const level = type === GgmlType.Q8_0
    ? (x: number, j: number) => i8(w, x + 2 + j)
    : type === GgmlType.Q4_0
      ? (x: number, j: number) => ((j < 16 ? w[x + 2 + j]! & 0x0f : w[x + 2 + j - 16]! >> 4) - 8)
      : (x: number, j: number) => {
        const qh = (w[x + 2]! | (w[x + 3]! << 8) | (w[x + 4]! << 16) | (w[x + 5]! << 24)) >>> 0;
        const lo = j < 16 ? w[x + 6 + j]! & 0x0f : w[x + 6 + j - 16]! >> 4;
        return (lo | (((qh >>> j) & 1) << 4)) - 16;
      };
  if (type === GgmlType.Q4_0 && repacked) {
    let sumf = 0;
    for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
      let sumi = 0;
      for (let j = 0; j < 32; j++) sumi += level(x, j) * i8(a, y + 2 + j);
      sumf = fr(sumi * fr(f16At(w, x) * f16At(a, y)) + sumf); // exact product, one rounding: the fma
    }
    return sumf;
  }
  const acc = new Float64Array(8);
  for (let ib = 0, x = 0, y = 0; ib < nb; ib++, x += wb, y += ab) {
    const d = fr(f16At(w, x) * f16At(a, y));
    for (let k = 0; k < 8; k++) {
      let si = 0;
      for (let j = 4 * k; j < 4 * k + 4; j++) si += level(x, j) * i8(a, y + 2 + j);
      acc[k] = fr(d * si + acc[k]!);
    }
  }
  return fr(fr(fr(acc[0]! + acc[4]!) + fr(acc[2]! + acc[6]!)) + fr(fr(acc[1]! + acc[5]!) + fr(acc[3]! + acc[7]!)));
}

/**
 * The leftover loop of ggml_vec_dot_f32 (`for (i = np; i < n; ++i) sumf += x[i]*y[i];`, float sumf) as gcc compiled
 * it into the bundled ggml-cpu variants (objdump of node-llama-cpp 3.21.1's libggml-cpu-zen4.so / -haswell.so): the
 * loop is vectorized by the vector width while it can, then once by half of it — the products rounded in a vector
 * (vmulps), then added to sumf one by one in order (vaddss) — and the last elements (< half the width) are
 * contracted (vfmadd231ss). AVX-512: 16s, one 8, fma for < 8; AVX2: 8s, one 4, fma for < 4. With a head size of 8,
 * the whole K·q dot of attention is this tail (AVX-512): eight rounded products summed in order.
 */
function f32DotTail(a: Float32Array, aOff: number, b: Float32Array, from: number, n: number, sum: number, lanes: number): number {
  let i = from;
  const chunk = (w: number) => {
    for (const end = i + w; i < end; i++) sum = fr(sum + fr(a[aOff + i]! * b[i]!));
  };
  while (n - i >= lanes) chunk(lanes);
  if (n - i >= lanes / 2) chunk(lanes / 2);
  for (; i < n; i++) sum = fma32(a[aOff + i]!, b[i]!, sum);
  return sum;
}

const f32View = new DataView(new ArrayBuffer(4));
const f32At = (b: Uint8Array, o: number): number => { for (let i = 0; i < 4; i++) f32View.setUint8(i, b[o + i]!); return f32View.getFloat32(0, true); };

/**
 * Q4_K / Q6_K × Q8_K as the bundled x86 ggml-cpu sums them (objdump of node-llama-cpp 3.21.1's libggml-cpu-zen4.so;
 * the orders of arch/x86/quants.c AVX2 and arch/x86/repack.cpp). Integer sums are exact in every form, so only the
 * float steps per 256-element super-block matter:
 * - Q4_K held as q4_K_8x8 (CPU_REPACK, rows ≡ 0 mod 8; ggml_gemv / ggml_gemm_q4_K_8x8_q8_K): one int sum over the
 *   super-block, acc = fma(Σ, d_w·d_a, acc), and the mins apart, accm = fma(Σ min·bsum, dmin_w·d_a, accm); the
 *   result is acc − accm;
 * - Q4_K otherwise (ggml_vec_dot_q4_K_q8_K AVX2): 8 int lanes, lane k holding elements 4k…4k+3 of each 32, acc_k =
 *   fma(d_a·d_w, lane_k, acc_k); the mins in 4 lanes (sub-blocks 2m, 2m+1), accm_m = fma(−d_a·dmin_w, Σ, accm_m);
 *   the result is (movehl/movehdup sum of accm) + hsum_float_8(acc);
 * - Q6_K (ggml_vec_dot_q6_K_q8_K AVX2; never repacked on x86): the same 8 lanes (levels − 32 folded in), acc_k =
 *   fma(d_a·d_w, lane_k, acc_k), hsum_float_8.
 */
function vecDotKX86(type: GgmlType, w: Uint8Array, a: Uint8Array, n: number, repacked: boolean): number {
  const wb = GGML_TYPES[type].bytesPerBlock, ab = GGML_TYPES[GgmlType.Q8_K].bytesPerBlock;
  const nb = n / 256;
  const lv = new Int32Array(256); // the weight's levels of one super-block
  const sc = new Int32Array(8); // Q4_K: scale per 32 elements; Q6_K: per 16 (16 entries used below)
  const mn = new Int32Array(8);
  const sc16 = new Int32Array(16);
  const acc = new Float64Array(8), accm = new Float64Array(4);
  let accR = 0, accmR = 0;
  for (let i = 0, x = 0, y = 0; i < nb; i++, x += wb, y += ab) {
    const da = f32At(a, y);
    const q8 = (e: number) => i8(a, y + 4 + e);
    if (type === GgmlType.Q4_K) {
      for (let j = 0, k = 0, q = x + 16; j < 4; j++, q += 32) {
        for (let l = 0; l < 32; l++) lv[k++] = w[q + l]! & 0xf;
        for (let l = 0; l < 32; l++) lv[k++] = w[q + l]! >> 4;
      }
      const s = x + 4;
      for (let j = 0; j < 8; j++) {
        if (j < 4) { sc[j] = w[s + j]! & 63; mn[j] = w[s + j + 4]! & 63; }
        else { sc[j] = (w[s + j + 4]! & 0xf) | ((w[s + j - 4]! >> 6) << 4); mn[j] = (w[s + j + 4]! >> 4) | ((w[s + j]! >> 6) << 4); }
      }
      const bsum32 = (j: number) => { const o = y + 260 + 4 * j; return ((a[o]! | (a[o + 1]! << 8)) << 16 >> 16) + ((a[o + 2]! | (a[o + 3]! << 8)) << 16 >> 16); };
      const dw = f16At(w, x), dminw = f16At(w, x + 2);
      if (repacked) {
        let sumi = 0, summs = 0;
        for (let e = 0; e < 256; e++) sumi += sc[e >> 5]! * lv[e]! * q8(e);
        for (let j = 0; j < 8; j++) summs += mn[j]! * bsum32(j);
        accR = fma32(fr(sumi), fr(dw * da), accR);
        accmR = fma32(fr(summs), fr(dminw * da), accmR);
        continue;
      }
      const d = fr(da * dw), dmin = -fr(da * dminw);
      for (let m = 0; m < 4; m++) accm[m] = fma32(dmin, fr(mn[2 * m]! * bsum32(2 * m) + mn[2 * m + 1]! * bsum32(2 * m + 1)), accm[m]!);
      for (let k = 0; k < 8; k++) {
        let si = 0;
        for (let c = 0; c < 256; c += 32) for (let e = c + 4 * k; e < c + 4 * k + 4; e++) si += sc[e >> 5]! * lv[e]! * q8(e);
        acc[k] = fma32(d, fr(si), acc[k]!);
      }
    } else {
      for (let h = 0, ql = x, qh = x + 128, k = 0; h < 256; h += 128, ql += 64, qh += 32, k += 128) {
        for (let l = 0; l < 32; l++) {
          const b = w[qh + l]!;
          lv[k + l] = ((w[ql + l]! & 0xf) | ((b & 3) << 4)) - 32;
          lv[k + l + 32] = ((w[ql + l + 32]! & 0xf) | (((b >> 2) & 3) << 4)) - 32;
          lv[k + l + 64] = ((w[ql + l]! >> 4) | (((b >> 4) & 3) << 4)) - 32;
          lv[k + l + 96] = ((w[ql + l + 32]! >> 4) | (((b >> 6) & 3) << 4)) - 32;
        }
      }
      for (let j = 0; j < 16; j++) sc16[j] = i8(w, x + 192 + j);
      const d = fr(da * f16At(w, x + 208));
      for (let k = 0; k < 8; k++) {
        let si = 0;
        for (let c = 0; c < 256; c += 32) for (let e = c + 4 * k; e < c + 4 * k + 4; e++) si += sc16[e >> 4]! * lv[e]! * q8(e);
        acc[k] = fma32(d, fr(si), acc[k]!);
      }
    }
  }
  if (type === GgmlType.Q4_K && repacked) return fr(accR - accmR);
  const hs = fr(fr(fr(acc[0]! + acc[4]!) + fr(acc[2]! + acc[6]!)) + fr(fr(acc[1]! + acc[5]!) + fr(acc[3]! + acc[7]!)));
  if (type === GgmlType.Q6_K) return hs;
  const m = fr(fr(accm[0]! + accm[2]!) + fr(accm[1]! + accm[3]!));
  return fr(m + hs);
}

/** One layer's ggml_rope_ext parameters, and its sliding window. */
interface LayerRope {
  thetaScale: number;
  freqScale: number;
  factors: Float32Array | undefined; // (n_rot/2) rope_freqs or LongRoPE's chosen set
  mscale: number;
  window: number | undefined;
}

/**
 * What llama.cpp multiplies Q by after RoPE, or undefined when soft_max does the scaling: phi3 1.0f/sqrtf(n_embd_head)
 * (src/models/phi3.cpp); Gemma 2/3 hparams.f_attention_scale, 1/sqrtf(n_embd / n_head) for the 27B models (46 / 62
 * layers), else 1/sqrtf(n_embd_head_k) (src/models/gemma2.cpp load_arch_hparams) — the config's query scale must be it.
 */
function queryScaleOf(c: ModelConfig): number | undefined {
  if (c.arch === "phi3") return fr(1 / fr(Math.sqrt(c.headDim)));
  if (c.arch !== "gemma2" && c.arch !== "gemma3") {
    if (c.attnScale !== undefined) throw new QuantlabError("E_UNSUPPORTED", `GgmlForward: a query scale (attnScale) on ${c.arch} is not emulated`);
    return undefined;
  }
  const big = c.arch === "gemma2" ? c.nLayers === 46 : c.nLayers === 62;
  const d = big ? Math.floor(c.dim / c.nHeads) : c.headDim;
  const s = fr(1 / fr(Math.sqrt(d)));
  const have = c.attnScale ?? 1 / Math.sqrt(c.headDim);
  if (Math.abs(have - s) > 1e-6 * s) throw new QuantlabError("E_UNSUPPORTED", `GgmlForward: ${c.arch} query scale ${have} is not llama.cpp's (${s}, from the head size ${d})`);
  return s;
}

// ggml-cpu vec.h: static const float GELU_COEF_A = 0.044715f, SQRT_2_OVER_PI = 0.79788456080286535587989211986876f
const GELU_COEF_A = fr(0.044715);
const SQRT_2_OVER_PI = fr(0.79788456080286535587989211986876);

/**
 * ggml_gelu_f32: 0.5f·x·(1 + tanhf(SQRT_2_OVER_PI·x·(1 + GELU_COEF_A·x·x))), each operation in f32, glibc's tanhf; as
 * ggml_cpu_init fills the table in the bundled AVX-512 build (objdump), 1 + (GELU_COEF_A·x)·x is one fma
 */
function geluF32(x: number): number {
  const inner = fr(fr(SQRT_2_OVER_PI * x) * fma32(fr(GELU_COEF_A * x), x, 1));
  return fr(fr(0.5 * x) * fr(1 + glibcTanhf(inner)));
}

/**
 * g ← gelu(g) ⊙ u as ggml_vec_geglu_f32 under GGML_GELU_FP16 (ggml-cpu vec.h): 0 for x ≤ −10, x·u for x ≥ 10, else
 * ggml_table_gelu_f16[f16(x)] (the table holds f16(gelu_f32(f16 value))) × u.
 */
function geglu(g: Float32Array, u: Float32Array): void {
  for (let i = 0; i < g.length; i++) {
    const x = g[i]!;
    const y = x <= -10 ? 0 : x >= 10 ? x : roundF16(geluF32(roundF16(x)));
    g[i] = fr(y * u[i]!);
  }
}

/** a ← c·tanh(a/c): ggml_scale(1/c), ggml_tanh (glibc's tanhf, ggml/glibc-math.ts), ggml_scale(c) */
function softcap(a: Float32Array, capRaw: number): void {
  const c = fr(capRaw), inv = fr(1 / c);
  for (let i = 0; i < a.length; i++) a[i] = fr(glibcTanhf(fr(a[i]! * inv)) * c);
}

/** ggml_add of a bias row */
function addInPlace(x: Float32Array, b: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] = fr(x[i]! + b[i]!);
}

/** rmsNorm of x[off .. off + n) in place (a per-head norm: ggml_rms_norm over ne0 = head_dim, ggml_mul) */
function rmsNormAt(x: Float32Array, off: number, n: number, w: Float32Array, eps: number): void {
  const seg = x.slice(off, off + n);
  rmsNorm(seg, x.subarray(off, off + n).slice(), w, eps);
  x.set(seg, off);
}

/** ggml_compute_forward_rms_norm_f32 then ggml_mul by the weight. */
function rmsNorm(out: Float32Array, x: Float32Array, w: Float32Array, eps: number): void {
  const n = x.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += fr(x[i]! * x[i]!);
  const mean = fr(sum / n);
  const scale = fr(1 / fr(Math.sqrt(fr(mean + eps))));
  for (let i = 0; i < n; i++) out[i] = fr(fr(x[i]! * scale) * w[i]!);
}

function prepareMat(w: Weight, name: string): Mat {
  const empty = new Uint8Array(0);
  if (w.kind === "ggml" && w.type !== GgmlType.F32 && w.type !== GgmlType.F16 && w.type !== GgmlType.BF16) {
    const cols = w.shape[w.shape.length - 1]!;
    const rows = w.shape.reduce((a, b) => a * b, 1) / cols;
    return { name, rows, cols, mode: "q", type: w.type, data: w.data, rowBytes: ggmlRowBytes(w.type, cols)!, w: new Float32Array(0), repacked: false };
  }
  const d = dequantizeWeight(w, name);
  const is16 = (t: "f16" | "bf16") =>
    (w.kind === "dense" && w.tensor.dtype === t) || (w.kind === "ggml" && w.type === (t === "f16" ? GgmlType.F16 : GgmlType.BF16));
  const mode = is16("f16") ? "f16" : is16("bf16") ? "bf16" : "f32";
  return { name, rows: d.rows, cols: d.cols, mode, type: GgmlType.F32, data: empty, rowBytes: 0, w: d.data, repacked: false };
}
