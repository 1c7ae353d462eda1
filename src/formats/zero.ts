/**
 * "0-bit" quantization: no bits per element; every element decodes to 1, so a group becomes its scale.
 * The survey's degenerate end of the scale ("0-bit quantization. Good luck with this algorithm."). The
 * MSE-optimal single value of a group is its mean (`zeroBitValue`); quant/ stores it as the group scale.
 */
import { QuantlabError } from "../core/errors.js";
import { FORMAT_IDS } from "./ids.js";
import { LevelFormat } from "./round.js";
import type { Format } from "./types.js";

/** The one value that replaces a group: its mean (minimizes Σ (x − v)²). */
export function zeroBitValue(src: Float32Array): number {
  let s = 0;
  for (let i = 0; i < src.length; i++) {
    if (!Number.isFinite(src[i]!)) throw new QuantlabError("E_VALUE", `zeroBitValue: value ${i} of the group is ${src[i]}`);
    s += src[i]!;
  }
  return src.length === 0 ? 0 : s / src.length;
}

export const zeroFormats = {
  zero: new LevelFormat(FORMAT_IDS.zero, "zero", "zero", 0, [[0, 1]], "0-bit: every element is 1 × the group scale (set the scale to the group mean)"),
} satisfies Record<string, Format>;
