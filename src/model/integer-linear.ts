/**
 * Integer-only linears (W8A8 and narrower): a Backend wrapper that runs every weight whose spec says
 * `intmm` (e.g. `int8:channel:a8:intmm`) with integer arithmetic and hands every other weight to the
 * wrapped backend. Survey: "integer-only-arithmetic quantization" (Jacob et al. 2018, "Quantization and
 * Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference"; I-BERT, Kim et al. 2021,
 * for dyadic requantization).
 *
 * One output y[r] of one token:
 *   1. boundary in:  s_x = fround(absmax(x)/qmax) per token (a<b>, the same rule as the fake-quant path
 *      in transforms.ts) or the calibrated static scale (a<b>s); x_q = clamp(rne(x / s_x)) ∈ int8.
 *   2. inner loop:   acc = Σ_c w_q[r,c] · x_q[c]  — int8 × int8 products, int32 accumulator; no float.
 *   3. requantize:   M = s_w[r] · s_x as a dyadic number, computed from the two scales' dyadic forms
 *      (m_w/2^k_w)·(m_x/2^k_x) with an integer product renormalized to MULT_BITS bits (integer shift);
 *      y_fixed = round(acc · m / 2^(k − OUT_FRAC)): a Q(31−OUT_FRAC).OUT_FRAC int32, saturated (counted).
 *   4. boundary out: y = y_fixed · 2^−OUT_FRAC (exact) for the float parts of the model (norms, softmax).
 * Steps 2–3 use only integer multiplies, adds and rounding shifts. They run on JS numbers, which hold
 * every integer below 2^53 exactly; `prepare` checks the bounds that make that true (and proves a 32-bit
 * accumulator cannot overflow). A narrower accumulator (`acc=16`) wraps as two's complement hardware does
 * (or saturates with `acc=16s`) and every overflowing dot product is counted in `stats`.
 */
import { QuantlabError } from "../core/errors.js";
import { toDyadic } from "../formats/int.js";
import { QTensor } from "../quant/tensor.js";
import type { IntegerMatmul } from "../quant/spec.js";
import { int8RowsRef, type Backend, type Int8Rows, type MatvecJob, type PreparedWeight } from "../kernels/types.js";
import { siteKey, type ActivationQuantConfig, type LinearSite } from "./transforms.js";
import type { Weight } from "../core/weight.js";
import type { Model } from "./weights.js";

/** significant bits of each scale's dyadic form and of the renormalized multiplier */
export const MULT_BITS = 15;
/** fraction bits of the int32 fixed-point output */
export const OUT_FRAC = 16;
const OUT_MAX = 2 ** 31 - 1;
const OUT_MIN = -(2 ** 31);

const SITE_OF: Record<string, LinearSite> = {
  attn_q: "attn_in", attn_k: "attn_in", attn_v: "attn_in", attn_output: "attn_out_in",
  ffn_gate: "ffn_in", ffn_up: "ffn_in", ffn_down: "ffn_down_in",
};

/** The (layer, site) of a block linear's canonical name, e.g. blk.3.ffn_up.weight → 3.ffn_in. */
export function linearSiteKey(name: string): string | undefined {
  const m = /^blk\.(\d+)\.([a-z_]+)\.weight$/.exec(name);
  const site = m ? SITE_OF[m[2]!] : undefined;
  return site ? siteKey(Number(m![1]), site) : undefined;
}

/** round(v / 2^s) for an integer v (|v| < 2^53), ties away from zero (gemmlowp's RoundingDivideByPOT); s < 0 shifts left. */
export function roundShift(v: number, s: number): number {
  if (s <= 0) return v * 2 ** -s;
  const p = 2 ** s;
  const a = Math.floor((Math.abs(v) + p / 2) / p); // exact: power-of-two division and floor of an exact double
  return v < 0 ? -a : a;
}

export interface IntegerLinearStats {
  /** dot products computed */
  dots: number;
  /** dot products whose accumulator overflowed (narrow accumulators only) */
  accOverflows: number;
  /** outputs saturated to the int32 fixed-point range */
  outSaturations: number;
}

class IntPrepared implements PreparedWeight {
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly name: string,
    readonly wq: Int8Array, // (rows, cols) signed weight codes
    /** the inner loop on the wrapped backend's kernel (int8 activations, 32-bit accumulator), when it runs there */
    readonly kernel: Int8Rows | undefined,
    readonly mW: Float64Array, // (rows) dyadic numerators of the weight scales
    readonly kW: Int32Array, // (rows) dyadic shifts
    readonly actBits: number,
    readonly staticScale: number | undefined,
    readonly mm: IntegerMatmul,
  ) {}
  get bytes(): number {
    return this.wq.byteLength + 12 * this.rows;
  }
}

export class IntegerLinearBackend implements Backend {
  readonly name: string;
  readonly stats: IntegerLinearStats = { dots: 0, accOverflows: 0, outSaturations: 0 };
  private xq = new Int32Array(0); // (cols) quantized activations of one token
  private xq8 = new Int8Array(0); // the same as int8, for a kernel
  private acc = new Int32Array(0); // (rows) a kernel's sums

  /** `acts`: the spec's activation config (static scales per "<layer>.<site>"); dynamic when absent or dynamic. */
  constructor(private readonly inner: Backend, private readonly acts?: ActivationQuantConfig, name?: string) {
    this.name = name ?? `intmm+${inner.name}`;
  }

  prepare(w: Weight, name = "weight"): PreparedWeight {
    const q = w.kind === "quant" ? w.q : undefined;
    const spec = q instanceof QTensor ? q.specObject : undefined;
    if (!q || !(q instanceof QTensor) || !spec?.integerMatmul) return this.inner.prepare(w, name);
    const a = spec.activations!;
    const [rows, cols] = [q.layout.rows, q.layout.cols];
    const qz = q.quantizer;
    const codes = q.unpackCodes();
    const wq = new Int8Array(rows * cols);
    for (let i = 0; i < wq.length; i++) wq[i] = codes[i]! - qz.codeOffset;
    const mW = new Float64Array(rows), kW = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const s = q.scales!.values[spec.granularity.kind === "channel" ? r : 0]!;
      const d = toDyadic(s, MULT_BITS);
      mW[r] = d.m;
      kW[r] = d.k;
    }
    // bounds: |x_q| ≤ 2^(a−1), |w_q| ≤ 2^(b−1); a 32-bit accumulator must hold cols such products, and
    // acc · multiplier must stay below 2^53 for exact JS integers
    const maxAcc = cols * 2 ** (a.bits - 1) * 2 ** (spec.bits - 1);
    if (spec.integerMatmul.accBits === 32 && maxAcc > OUT_MAX) {
      throw new QuantlabError("E_UNSUPPORTED", `${name}: ${cols} inputs can overflow a 32-bit accumulator at ${spec.bits}-bit weights × ${a.bits}-bit activations`);
    }
    if (maxAcc * 2 ** MULT_BITS >= 2 ** 53) throw new QuantlabError("E_UNSUPPORTED", `${name}: ${cols} inputs are too many for exact requantization in JS integers`);
    let staticScale: number | undefined;
    if (a.mode === "static") {
      const key = linearSiteKey(name);
      staticScale = key !== undefined ? this.acts?.scales?.[key] : undefined;
      if (staticScale === undefined) throw new QuantlabError("E_ARG", `${name}: static activation scale missing (calibrate with --calib)`);
    }
    // the int8 × int8 → int32 loop runs on the backend's kernel (WASM SIMD) when codes and activations are
    // 8-bit and the accumulator is 32 bits; narrow accumulators (wrap/saturate per step) stay in this loop
    const onKernel = spec.integerMatmul.accBits === 32 && a.bits <= 8 && spec.bits <= 8;
    const kernel = onKernel ? (this.inner.int8Rows?.(wq, rows, cols, name) ?? int8RowsRef(wq, rows, cols)) : undefined;
    return new IntPrepared(rows, cols, name, wq, kernel, mW, kW, a.bits, staticScale, spec.integerMatmul);
  }

  /** Integer weights give their kernel memory back; others belong to the inner backend. */
  release(pw: PreparedWeight): void {
    if (pw instanceof IntPrepared) pw.kernel?.release();
    else this.inner.release(pw);
  }

  matvec(pw: PreparedWeight, x: Float32Array, out: Float32Array): void {
    if (pw instanceof IntPrepared) this.intMatvec(pw, x, out);
    else this.inner.matvec(pw, x, out);
  }

  matmul(pw: PreparedWeight, x: Float32Array, n: number, out: Float32Array): void {
    if (!(pw instanceof IntPrepared)) return this.inner.matmul(pw, x, n, out);
    for (let i = 0; i < n; i++) this.intMatvec(pw, x.subarray(i * pw.cols, (i + 1) * pw.cols), out.subarray(i * pw.rows, (i + 1) * pw.rows));
  }

  matvecMany(jobs: readonly MatvecJob[]): void {
    const rest: MatvecJob[] = [];
    for (const j of jobs) {
      if (j.w instanceof IntPrepared) this.intMatvec(j.w, j.x, j.out);
      else rest.push(j);
    }
    if (rest.length === 0) return;
    if (this.inner.matvecMany) this.inner.matvecMany(rest);
    else for (const j of rest) this.inner.matvec(j.w, j.x, j.out);
  }

  dispose(): void {
    this.inner.dispose?.();
  }

  /** Quantizes one token (boundary in); returns its scale's dyadic form, or undefined for an all-zero token. */
  private quantizeInput(pw: IntPrepared, x: Float32Array): { m: number; k: number } | undefined {
    const cols = pw.cols;
    if (this.xq.length < cols) this.xq = new Int32Array(cols);
    const qmax = 2 ** (pw.actBits - 1) - 1;
    let s = pw.staticScale;
    if (s === undefined) {
      let amax = 0;
      for (let c = 0; c < cols; c++) { const v = Math.abs(x[c]!); if (v > amax) amax = v; }
      s = Math.fround(amax / qmax);
    }
    if (!(s > 0)) return undefined;
    const xq = this.xq;
    for (let c = 0; c < cols; c++) {
      const v = x[c]! / s;
      let r = Math.round(v);
      if (r - v === 0.5 && r % 2 !== 0) r--; // ties to even, as fakeQuantInputs
      xq[c] = r > qmax ? qmax : r < -qmax ? -qmax : r;
    }
    return toDyadic(s, MULT_BITS);
  }

  private intMatvec(pw: IntPrepared, x: Float32Array, out: Float32Array): void {
    const { rows, cols, wq, mW, kW, mm } = pw;
    const dx = this.quantizeInput(pw, x);
    if (!dx) { out.fill(0, 0, rows); return; }
    const xq = this.xq;
    const st = this.stats;
    const narrow = mm.accBits < 32;
    const accMax = 2 ** (mm.accBits - 1) - 1, accMin = -(2 ** (mm.accBits - 1)), span = 2 ** mm.accBits;
    let sums: Int32Array | undefined;
    if (pw.kernel) {
      if (this.xq8.length < cols) this.xq8 = new Int8Array(cols);
      if (this.acc.length < rows) this.acc = new Int32Array(rows);
      for (let c = 0; c < cols; c++) this.xq8[c] = xq[c]!;
      pw.kernel.dots(this.xq8, this.acc);
      sums = this.acc;
    }
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let acc = 0;
      if (sums) acc = sums[r]!;
      else if (!narrow) {
        // int8·int8 products into an int32 accumulator (no overflow possible: checked at prepare)
        for (let c = 0; c < cols; c++) acc += wq[o + c]! * xq[c]!;
      } else {
        let over = false;
        for (let c = 0; c < cols; c++) {
          acc += wq[o + c]! * xq[c]!;
          if (acc > accMax || acc < accMin) {
            over = true;
            if (mm.overflow === "saturate") acc = acc > accMax ? accMax : accMin;
            else acc -= Math.floor((acc - accMin) / span) * span; // two's complement wrap-around
          }
        }
        if (over) st.accOverflows++;
      }
      // dyadic requantization: m = m_w·m_x (< 2^30) renormalized to MULT_BITS bits by a rounding shift
      const m = roundShift(mW[r]! * dx.m, MULT_BITS);
      const k = kW[r]! + dx.k - MULT_BITS;
      let y = roundShift(acc * m, k - OUT_FRAC);
      if (y > OUT_MAX) { y = OUT_MAX; st.outSaturations++; } else if (y < OUT_MIN) { y = OUT_MIN; st.outSaturations++; }
      out[r] = y / 2 ** OUT_FRAC;
    }
    st.dots += rows;
  }
}

/** True when any weight of a model map is marked for integer-only execution. */
export function hasIntegerLinears(weights: ReadonlyMap<string, Weight>): boolean {
  for (const w of weights.values()) if (w.kind === "quant" && w.q instanceof QTensor && w.q.specObject.integerMatmul) return true;
  return false;
}

