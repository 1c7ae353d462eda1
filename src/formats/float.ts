/**
 * Floating-point formats: one generic ExMy minifloat codec and its named instances.
 *
 * Code layout (MSB → LSB): [sign (1 bit, if signed)] [exponent field E (e bits)] [mantissa field M (m bits)].
 * Value of a finite code, with bias b:
 *   E > 0 (or any E when zeroExp = "normal"):  (−1)^s · 2^(E − b) · (1 + M / 2^m)
 *   E = 0, zeroExp = "subnormal":               (−1)^s · 2^(1 − b) · (M / 2^m)      (gradual underflow)
 *   E = 0, zeroExp = "flush":                   ±0 (codes with M ≠ 0 are non-canonical zeros)
 * Special codes, `special`:
 *   "ieee"  E all ones: M = 0 is ±Inf, M ≠ 0 NaN (fp16, bf16, fp32, OCP fp8 E5M2)
 *   "fn"    finite + NaN: only S.1…1.1…1 is NaN, no Inf (OCP fp8 E4M3, E8M0 when unsigned)
 *   "fnuz"  finite, NaN = 1.0…0.0…0 (the would-be −0), no −0 (fp8 e4m3fnuz/e5m2fnuz, bias 8/16)
 *   "none"  every code is finite (OCP MX fp6 E3M2/E2M3, fp4 E2M1)
 *
 * Sources: OCP 8-bit Floating Point Specification (OFP8) rev 1.0 (E4M3: bias 7, max 448 = S.1111.110,
 * NaN S.1111.111; E5M2: bias 15, max 57344, IEEE Inf/NaN); OCP Microscaling Formats (MX) v1.0 §5.3
 * (FP6 E2M3 bias 1 max 7.5, FP6 E3M2 bias 3 max 28, FP4 E2M1 bias 1 max 6, no Inf/NaN; E8M0 scale: bias
 * 127, 2^(E−127), 0xFF = NaN, no zero, no sign); IEEE 754-2019 binary16/binary32; bfloat16 = top half of
 * binary32. fnuz variants: Graphcore/AMD 8-bit formats as in LLVM's Float8E4M3FNUZ/Float8E5M2FNUZ.
 *
 * Encoding is exact for any float64 input: round to nearest, ties to even mantissa, computed on the
 * exact quantum 2^(exponent − m) (no double rounding through f32). Overflow follows `Overflow`.
 */
import { QuantlabError } from "../core/errors.js";
import { f32Bits, f32ToBf16Bits, f32ToF16Bits } from "../core/f16.js";
import type { Rng } from "../core/rng.js";
import type { FormatName } from "./ids.js";
import { FORMAT_IDS } from "./ids.js";
import { exponentOf, LevelSet, nanError, pow2, roundHalfEven, roundStochastic, stochasticRng } from "./round.js";
import type { EncodeOptions, Format, FormatFamily, Overflow } from "./types.js";

export type ZeroExp = "subnormal" | "flush" | "normal";
export type FloatSpecials = "ieee" | "fn" | "fnuz" | "none";

export interface MinifloatParams {
  /** exponent field bits, 1..11 */
  e: number;
  /** mantissa field bits, 0..52 */
  m: number;
  /** exponent bias; default 2^(e−1) − 1 (IEEE) */
  bias?: number;
  /** what exponent field 0 means; default "subnormal". `subnormals: false` is the same as "flush". */
  zeroExp?: ZeroExp;
  subnormals?: boolean;
  /** Inf/NaN convention; default "ieee" */
  special?: FloatSpecials;
  /** default true */
  signed?: boolean;
  /** default "saturate" */
  overflow?: Overflow;
}

export interface MinifloatRowInfo {
  id: number;
  name: string;
  description: string;
  family?: FormatFamily;
}

/** Generic ExMy minifloat. The named float rows are instances; tests check them against spec tables. */
export class Minifloat implements Format {
  readonly id: number;
  readonly name: string;
  readonly family: FormatFamily;
  readonly description: string;
  readonly bits: number;
  readonly blockSize = 1;
  readonly maxValue: number;
  readonly minValue: number;
  readonly minPositive: number;
  readonly valueCount: number;
  readonly hasInf: boolean;
  readonly hasNaN: boolean;
  readonly overflow: Overflow;
  readonly e: number;
  readonly m: number;
  readonly bias: number;
  readonly zeroExp: ZeroExp;
  readonly special: FloatSpecials;
  readonly signed: boolean;
  /** smallest exponent of a normal binade (the quantum below it stays 2^(emin − m)) */
  readonly emin: number;
  /** canonical NaN code (positive, quiet for ieee) or −1 */
  readonly nanCode: number;
  /** +Inf code or −1 */
  readonly infCode: number;
  /** code of +maxValue */
  readonly maxCode: number;
  private readonly signBit: number;
  private readonly mScale: number;
  private readonly mMask: number;
  /** nearest-even table for small formats (≤ 12 bits): same results as the arithmetic path, faster */
  private levelSet: LevelSet | undefined;
  private readonly eMask: number;
  private valuesCache: Float64Array | undefined;

  constructor(p: MinifloatParams, info: MinifloatRowInfo) {
    const e = p.e;
    const m = p.m;
    if (!Number.isInteger(e) || e < 1 || e > 11 || !Number.isInteger(m) || m < 0 || m > 52) {
      throw new QuantlabError("E_SPEC", `minifloat ${info.name}: need 1 ≤ e ≤ 11 and 0 ≤ m ≤ 52 exponent/mantissa bits, got e=${e} m=${m}`);
    }
    this.e = e;
    this.m = m;
    this.bias = p.bias ?? 2 ** (e - 1) - 1;
    if (!Number.isInteger(this.bias)) throw new QuantlabError("E_SPEC", `minifloat ${info.name}: bias must be an integer, got ${this.bias}`);
    this.zeroExp = p.zeroExp ?? (p.subnormals === false ? "flush" : "subnormal");
    this.special = p.special ?? "ieee";
    this.signed = p.signed ?? true;
    if (this.special === "ieee" && m === 0) throw new QuantlabError("E_SPEC", `minifloat ${info.name}: IEEE specials need at least one mantissa bit`);
    if (this.special === "fnuz" && !this.signed) throw new QuantlabError("E_SPEC", `minifloat ${info.name}: fnuz puts NaN on the sign bit, so it must be signed`);
    this.bits = (this.signed ? 1 : 0) + e + m;
    if (this.bits > 64) throw new QuantlabError("E_SPEC", `minifloat ${info.name}: ${this.bits} bits is more than 64`);
    this.id = info.id;
    this.name = info.name;
    this.family = info.family ?? "float";
    this.description = info.description;
    this.overflow = p.overflow ?? "saturate";
    this.signBit = this.signed ? 2 ** (e + m) : 0;
    this.mScale = 2 ** m;
    this.mMask = 2 ** m - 1;
    this.eMask = 2 ** e - 1;
    this.emin = this.zeroExp === "normal" ? -this.bias : 1 - this.bias;
    const topE = this.eMask;
    let maxE = topE;
    let maxM = this.mMask;
    if (this.special === "ieee") maxE = topE - 1;
    else if (this.special === "fn") {
      if (m === 0) maxE = topE - 1;
      else maxM = this.mMask - 1;
    }
    this.maxCode = maxE * 2 ** m + maxM;
    this.maxValue = this.magnitude(maxE, maxM);
    this.minValue = this.signed ? -this.maxValue : this.magnitude(0, 0);
    this.minPositive = this.zeroExp === "subnormal" && m > 0 ? this.magnitude(0, 1) : this.magnitude(this.zeroExp === "normal" ? 0 : 1, 0);
    this.hasInf = this.special === "ieee";
    this.hasNaN = this.special !== "none";
    this.nanCode =
      this.special === "ieee" ? topE * 2 ** m + 2 ** (m - 1)
      : this.special === "fn" ? topE * 2 ** m + this.mMask
      : this.special === "fnuz" ? this.signBit
      : -1;
    this.infCode = this.special === "ieee" ? topE * 2 ** m : -1;
    // distinct finite values: magnitudes 0..maxCode (flush: the 2^m − 1 non-canonical zeros drop out),
    // mirrored when signed, zero counted once
    const mags = this.maxCode + 1 - (this.zeroExp === "flush" ? this.mMask : 0);
    const hasZero = this.zeroExp !== "normal";
    this.valueCount = this.signed ? 2 * mags - (hasZero ? 1 : 0) : mags;
  }

  /** exact value of a magnitude (exponent field, mantissa field) */
  magnitude(E: number, M: number): number {
    if (E === 0 && this.zeroExp === "subnormal") return M * 2 ** (1 - this.bias - this.m);
    if (E === 0 && this.zeroExp === "flush") return 0;
    return (2 ** this.m + M) * 2 ** (E - this.bias - this.m);
  }

  decode(code: number): number {
    if (!(code >= 0 && code < 2 ** this.bits) || !Number.isInteger(code)) return NaN;
    const neg = this.signed && code >= this.signBit;
    const mag = neg ? code - this.signBit : code;
    const M = mag % 2 ** this.m;
    const E = Math.floor(mag / 2 ** this.m);
    switch (this.special) {
      case "ieee":
        if (E === this.eMask) return M === 0 ? (neg ? -Infinity : Infinity) : NaN;
        break;
      case "fn":
        if (E === this.eMask && M === this.mMask) return NaN;
        break;
      case "fnuz":
        if (code === this.signBit) return NaN;
        break;
      case "none":
        break;
    }
    const v = this.magnitude(E, M);
    return neg ? -v : v;
  }

  /** code of an exact representable magnitude v ≥ 0 (v ≤ maxValue) */
  private magnitudeCode(v: number): number {
    if (v === 0) return 0;
    const ex = exponentOf(v);
    if (ex < this.emin) return v / pow2(this.emin - this.m); // subnormal: E = 0
    return (ex + this.bias) * this.mScale + (v / pow2(ex - this.m) - this.mScale);
  }

  /** rounds a > 0 (finite) to a representable magnitude with unbounded exponent above */
  private roundMagnitude(a: number, rng: Rng | undefined): number {
    const minNormal = 2 ** this.emin;
    if (a < minNormal) {
      if (this.zeroExp === "normal") return minNormal; // no zero (E8M0): the smallest value is nearest
      if (this.zeroExp === "flush") {
        // representable: 0 and minNormal; a tie at minNormal/2 goes to 0 (both codes have M = 0)
        if (rng) return rng.next() < a / minNormal ? minNormal : 0;
        return a > minNormal / 2 ? minNormal : 0;
      }
    }
    const qe = Math.max(exponentOf(a), this.emin) - this.m; // quantum exponent
    const q = pow2(qe);
    const n = a / q; // exact: scaling by a power of two
    let r = rng ? roundStochastic(n, rng) : roundHalfEven(n);
    if (this.m === 0 && !rng && n - Math.floor(n) === 0.5) {
      // no mantissa bit to be even: a tie between 2^k and 2^(k+1) goes to the even exponent code
      const lower = Math.floor(n);
      r = this.magnitudeCode(lower * q) % 2 === 0 ? lower : lower + 1;
    }
    return r * q;
  }

  private overflowCode(neg: boolean, mode: Overflow): number {
    const s = neg ? this.signBit : 0;
    if (mode === "nonfinite") {
      if (this.infCode >= 0) return s + this.infCode;
      if (this.nanCode >= 0) return this.special === "fnuz" ? this.nanCode : s + this.nanCode;
    }
    return s + this.maxCode;
  }

  encode(x: number, opts?: EncodeOptions): number {
    return this.encodeWith(x, opts, true);
  }

  private encodeWith(x: number, opts: EncodeOptions | undefined, table: boolean): number {
    if (Number.isNaN(x)) {
      if (this.nanCode < 0) throw nanError(this.name);
      return this.nanCode;
    }
    const rng = stochasticRng(opts, this.name);
    const mode = opts?.overflow ?? this.overflow;
    let neg = x < 0 || Object.is(x, -0);
    let a = Math.abs(x);
    if (!this.signed && neg) {
      a = 0; // nearest representable to a negative number is the smallest one
      neg = false;
    }
    if (a === Infinity) return this.overflowCode(neg, mode);
    if (table && !rng && this.bits <= 12 && a <= this.maxValue && this.signed && this.zeroExp === "subnormal") {
      // the level table gives the nearest value with ties to the even code = even mantissa, and −0 for
      // negative inputs that round to zero (its rounding is checked against this path in the tests)
      this.levelSet ??= new LevelSet(this.name, this.codePairs());
      return this.levelSet.encode(x, undefined);
    }
    let v = a === 0 ? (this.zeroExp === "normal" ? 2 ** this.emin : 0) : this.roundMagnitude(a, rng);
    if (v > this.maxValue) {
      if (mode === "saturate" || (this.infCode < 0 && this.nanCode < 0)) v = this.maxValue;
      else return this.overflowCode(neg, mode);
    }
    const mc = this.magnitudeCode(v);
    if (!neg) return mc;
    if (mc === 0 && this.special === "fnuz") return 0; // no −0: that code is NaN
    return this.signBit + mc;
  }

  private codePairs(): Array<[number, number]> {
    const pairs: Array<[number, number]> = [];
    for (let c = 0; c < 2 ** this.bits; c++) {
      const v = this.decode(c);
      if (!Number.isFinite(v)) continue;
      if (v === 0 && this.magnitudeCode(0) + (Object.is(v, -0) ? this.signBit : 0) !== c) continue; // flush: non-canonical zeros
      pairs.push([c, v]);
    }
    return pairs;
  }

  /**
   * The level table, when nearest encode is a pure table lookup for every input: signed, subnormals, at most
   * 12 bits, and saturating (beyond ±max the table's ends are the saturated codes).
   */
  nearestTable(): LevelSet | undefined {
    if (!(this.signed && this.zeroExp === "subnormal" && this.bits <= 12 && this.overflow === "saturate")) return undefined;
    this.levelSet ??= new LevelSet(this.name, this.codePairs());
    return this.levelSet;
  }

  /** the arithmetic encoder alone (no level-table shortcut); tests check both paths agree */
  encodeArithmetic(x: number, opts?: EncodeOptions): number {
    return this.encodeWith(x, opts, false);
  }

  values(): Float64Array | undefined {
    if (this.bits > 16) return undefined;
    if (!this.valuesCache) {
      const set = new Set<number>();
      for (let c = 0; c < 2 ** this.bits; c++) {
        const v = this.decode(c);
        if (Number.isFinite(v)) set.add(v === 0 ? 0 : v);
      }
      this.valuesCache = Float64Array.from([...set].sort((a, b) => a - b));
    }
    return this.valuesCache;
  }
}

/** IEEE rows keep a fast path through core/f16.ts for inputs that are already f32 (the common case). */
class F32FastMinifloat extends Minifloat {
  constructor(
    p: MinifloatParams,
    info: MinifloatRowInfo,
    private readonly fromF32: (x: number) => number,
  ) {
    super(p, info);
  }
  override encode(x: number, opts?: EncodeOptions): number {
    // f32 → f16/bf16/f32 round-to-nearest-even in core/f16.ts is exact when x is an f32 value; a float64
    // x goes through the exact path (rounding it to f32 first could double-round a near-midpoint).
    if ((opts === undefined || ((opts.rounding ?? "nearest") === "nearest" && (opts.overflow ?? this.overflow) === "nonfinite")) && Math.fround(x) === x) {
      return this.fromF32(x);
    }
    return super.encode(x, opts);
  }
}

/** Build a minifloat outside the registry (e.g. `minifloat({ e: 3, m: 4, bias: 5 })` for experiments). */
export function minifloat(p: MinifloatParams, name?: string): Minifloat {
  const nm = name ?? `e${p.e}m${p.m}${p.bias !== undefined ? `b${p.bias}` : ""}`;
  return new Minifloat(p, { id: -1, name: nm, description: `custom minifloat E${p.e}M${p.m}` });
}

type FloatName = "fp32" | "fp16" | "bf16" | "fp8_e4m3" | "fp8_e5m2" | "fp8_e4m3fnuz" | "fp8_e5m2fnuz" | "fp6_e3m2" | "fp6_e2m3" | "fp4_e2m1" | "e8m0";

function row(name: FloatName & FormatName, p: MinifloatParams, description: string): Minifloat {
  return new Minifloat(p, { id: FORMAT_IDS[name], name, description });
}

export const floatFormats: Record<FloatName, Format> = {
  fp32: new F32FastMinifloat({ e: 8, m: 23, overflow: "nonfinite" }, { id: FORMAT_IDS.fp32, name: "fp32", description: "IEEE binary32 (no quantization; baseline)" }, f32Bits),
  fp16: new F32FastMinifloat({ e: 5, m: 10, overflow: "nonfinite" }, { id: FORMAT_IDS.fp16, name: "fp16", description: "IEEE binary16: E5M10, bias 15, max 65504, subnormals, Inf/NaN" }, f32ToF16Bits),
  bf16: new F32FastMinifloat({ e: 8, m: 7, overflow: "nonfinite" }, { id: FORMAT_IDS.bf16, name: "bf16", description: "bfloat16: E8M7, top half of binary32, Inf/NaN" }, f32ToBf16Bits),
  fp8_e4m3: row("fp8_e4m3", { e: 4, m: 3, bias: 7, special: "fn" }, "OCP OFP8 E4M3: bias 7, max 448, no Inf, NaN = S.1111.111; saturating (overflow: nonfinite gives NaN)"),
  fp8_e5m2: row("fp8_e5m2", { e: 5, m: 2, bias: 15, special: "ieee" }, "OCP OFP8 E5M2: bias 15, max 57344, IEEE Inf/NaN; saturating (overflow: nonfinite gives Inf)"),
  fp8_e4m3fnuz: row("fp8_e4m3fnuz", { e: 4, m: 3, bias: 8, special: "fnuz" }, "fp8 E4M3 FNUZ: bias 8, max 240, one NaN (0x80), no −0, no Inf"),
  fp8_e5m2fnuz: row("fp8_e5m2fnuz", { e: 5, m: 2, bias: 16, special: "fnuz" }, "fp8 E5M2 FNUZ: bias 16, max 57344, one NaN (0x80), no −0, no Inf"),
  fp6_e3m2: row("fp6_e3m2", { e: 3, m: 2, bias: 3, special: "none" }, "OCP MX FP6 E3M2: bias 3, max 28, no Inf/NaN"),
  fp6_e2m3: row("fp6_e2m3", { e: 2, m: 3, bias: 1, special: "none" }, "OCP MX FP6 E2M3: bias 1, max 7.5, no Inf/NaN"),
  fp4_e2m1: row("fp4_e2m1", { e: 2, m: 1, bias: 1, special: "none" }, "OCP MX FP4 E2M1: bias 1, values 0 0.5 1 1.5 2 3 4 6, no Inf/NaN"),
  e8m0: row("e8m0", { e: 8, m: 0, bias: 127, zeroExp: "normal", special: "fn", signed: false }, "OCP MX scale E8M0: unsigned 2^(E−127), 2^-127..2^127, 0xFF = NaN, no zero"),
};
