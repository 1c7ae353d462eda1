/**
 * Any registry spec (src/quant/) as a GroupQuantizer, so GPTQ, AWQ, HQQ and RTN target int2..int8,
 * nf4, fp4, ternary, pow2, mx … with the spec's own calibration, scale storage and rounding; and the
 * way back: an algorithm's result (values already on the grid + group parameters) → a packed QTensor.
 *
 * quant's SpecQuantizer already has the GroupQuantizer shape (fit → stored scale and zero point,
 * fakeQuant = decode(encode)); this adapter adds
 * - checks that the spec can be walked column by column (channel or g<N>, no outlier side table,
 *   nearest rounding),
 * - an HQQ mode: `fit` runs the half-quadratic solver (hqq.ts) for affine int specs, then rounds scale
 *   and zero to the spec's storage (asymf: float zero point, the reference's zero-only updates; asym: every
 *   zero update projected to an integer code inside the solver, with the joint scale + zero step, since
 *   the zero-only step cannot leave its starting code),
 * - `toQTensor`: re-encodes the algorithm's output with its parameters (quantizeTensor with `params`),
 *   so codes come out exactly; double-quantized scale dtypes (dq, scale=u8…) re-round the group scales
 *   per super-block there, which moves values by at most the super-scale's rounding.
 */
import { QuantlabError } from "../core/errors.js";
import { SpecQuantizer, printSpec, quantizeTensor, toSpec, type GroupParams, type QTensor, type QuantSpec } from "../quant/index.js";
import { HqqQuantizer, type HqqOptions } from "./hqq.js";
import type { GroupQuantizer } from "./quantizer.js";
import type { WeightQuantResult } from "./rtn.js";

export interface RegistryQuantizerOptions {
  /** fit groups with HQQ (affine int specs with float zero points: int<b>:…:asymf) */
  hqq?: Omit<HqqOptions, "bits" | "groupSize">;
}

export class RegistryQuantizer implements GroupQuantizer<GroupParams> {
  readonly spec: QuantSpec;
  readonly name: string;
  readonly groupSize: number;
  readonly sq: SpecQuantizer;
  private readonly hqq: HqqQuantizer | undefined;

  constructor(specIn: string | QuantSpec, opts: RegistryQuantizerOptions = {}) {
    const spec = toSpec(specIn);
    this.spec = spec;
    this.name = printSpec(spec);
    const g = spec.granularity;
    if (g.kind !== "channel" && g.kind !== "group") {
      throw new QuantlabError("E_SPEC", `spec "${this.name}": GPTQ/AWQ/HQQ walk rows group by group and need channel or g<N> granularity, not ${g.kind}`);
    }
    if (spec.outlierPercent !== undefined) throw new QuantlabError("E_SPEC", `spec "${this.name}": outlier side tables are not supported with calibration methods; use rtn`);
    if (spec.rounding === "stochastic") throw new QuantlabError("E_SPEC", `spec "${this.name}": stochastic rounding is not supported with calibration methods; use rtn`);
    this.sq = new SpecQuantizer(spec);
    this.groupSize = this.sq.groupSize;
    if (opts.hqq) {
      if (!this.sq.isInt || (spec.scheme !== "asymf" && spec.scheme !== "asym")) {
        throw new QuantlabError("E_SPEC", `spec "${this.name}": HQQ optimizes an affine integer grid; use int<b>:…:asymf (float zero point) or int<b>:…:asym (zero rounded to an integer)`);
      }
      // with an integer zero the reference's zero-only update rounds back to where it started (it moves
      // the zero by less than one code), so asym uses the joint scale + zero step unless told otherwise
      const asym = spec.scheme === "asym";
      this.hqq = new HqqQuantizer({ optimizeScale: asym, ...opts.hqq, bits: spec.bits, groupSize: this.groupSize, roundZero: asym });
    }
  }

  fit(segment: ArrayLike<number>, importance?: ArrayLike<number>): GroupParams {
    if (!this.hqq) return this.sq.fit(segment, importance);
    const p = this.hqq.fit(segment);
    const scale = this.sq.storeOne(p.scale);
    const zero = scale === p.scale ? p.zero : (p.zero * p.scale) / scale; // keep the offset scale·zero
    if (this.spec.scheme === "asym") {
      // integer zero point (HQQ's round_zero): nearest code, inside the grid
      const z = Math.round(zero);
      return { scale, zero: Math.min(this.sq.qmax, Math.max(0, z)) };
    }
    return { scale, zero: this.sq.storedZero(zero) };
  }

  fakeQuant(x: number, p: GroupParams): number {
    return this.sq.fakeQuant(x, p);
  }

  /** Packs an algorithm's result for a (rows, cols) weight. Groups must be contiguous (no act-order without static groups). */
  toQTensor(r: WeightQuantResult<GroupParams>, rows: number, cols: number, name = "tensor"): QTensor {
    const gw = this.groupSize <= 0 || this.groupSize > cols ? cols : this.groupSize;
    for (let c = 0; c < cols; c++) {
      if (r.groupIndex[c] !== Math.floor(c / gw)) throw new QuantlabError("E_ARG", `tensor ${name}: column ${c} is in group ${r.groupIndex[c]}, not a contiguous group; use static groups with act-order`);
    }
    return quantizeTensor(r.q, [rows, cols], this.spec, { name, params: r.params });
  }
}
