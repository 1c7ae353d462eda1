/**
 * What `quantlab formats` lists beyond the element formats: presets, granularities, schemes, calibration
 * methods, scale dtypes and options, with the bits per weight of representative specs (computed, not
 * typed: each row quantizes a (64, 4096) tensor of zeros and reads `bitsPerWeight`, so overheads of
 * scales, zero points and super-scales are exact for rows that are a multiple of the group).
 */
import { presetDescriptions, printSpec, parseSpec, SCALE_DTYPES } from "./spec.js";
import { quantizeTensor } from "./tensor.js";

export interface SpecCatalog {
  grammar: string;
  presets: { name: string; about: string; element: string; block: number }[];
  granularities: { token: string; about: string }[];
  schemes: { token: string; about: string }[];
  calibrations: { token: string; about: string }[];
  rounding: { token: string; about: string }[];
  scaleDtypes: string[];
  options: { token: string; about: string }[];
  examples: { spec: string; bitsPerWeight: number }[];
}

export const SPEC_GRAMMAR = "<format>[:<granularity>][:<option>...]";

const EXAMPLES = ["fp16", "bf16", "fp8_e4m3:tensor", "fp8_e4m3:channel", "int8:channel", "int8:g32", "int4:channel", "int4:g128", "int4:g64", "int4:g32", "int4:g32:asym",
  "int4:g32:asymf", "int4:g32:scale=f16", "int4:g32:dq", "int4:g32:scale=u6:sb=8", "nf4:g64", "nf4:g64:dq", "fp4_e2m1:g32", "mxfp8_e4m3", "mxfp6_e3m2", "mxfp4", "mxint8",
  "nvfp4", "bfp8", "bfp4:g16", "int3:g32", "int2:g32:asym", "ternary:channel", "ternary:channel:trits", "binary:channel", "pow2:4bit:g32", "int4:g64:outliers=1", "zero:g32"];

export function specCatalog(): SpecCatalog {
  const zeros = new Float32Array(64 * 4096);
  return {
    grammar: SPEC_GRAMMAR,
    presets: presetDescriptions(),
    granularities: [
      { token: "none", about: "no scale: cast to the element format" },
      { token: "tensor", about: "one scale per tensor" },
      { token: "layer", about: "one scale shared by a set of tensors" },
      { token: "channel", about: "one scale per output channel (row)" },
      { token: "ichannel", about: "one scale per input channel (column)" },
      { token: "g<N>", about: "groups of N along the input dimension; ragged last group" },
      { token: "b<R>x<C>", about: "2-D tiles" },
    ],
    schemes: [
      { token: "sym", about: "restricted symmetric integer grid (default)" },
      { token: "symfull", about: "full signed range, extreme → −2^(b−1)" },
      { token: "asym", about: "affine with integer zero points" },
      { token: "asymf", about: "affine with float zero points (HQQ)" },
    ],
    calibrations: [
      { token: "minmax", about: "range of the group (default)" },
      { token: "p<pct>", about: "percentile clipping" },
      { token: "mse", about: "clip-ratio grid search minimizing squared error" },
      { token: "kl", about: "TensorRT entropy (KL-divergence) threshold" },
      { token: "absmean", about: "ternary/binary scale = mean |w| (BitNet b1.58, XNOR-Net)" },
      { token: "twn", about: "ternary threshold 0.7·mean|w| (TWN)" },
    ],
    rounding: [
      { token: "rne", about: "round to nearest, ties to even (default)" },
      { token: "sr", about: "stochastic rounding, seeded" },
    ],
    scaleDtypes: [...SCALE_DTYPES],
    options: [
      { token: "scale=<dtype>", about: "how group scales are stored" },
      { token: "dq", about: "double quantization: u8 scales, f32 super-scale per 256" },
      { token: "sb=<N|tensor>", about: "scales per super-block" },
      { token: "<N>bit", about: "width of a parameterized family (pow2, logsqrt2, pow2sum)" },
      { token: "a<b> / a<b>s", about: "int-b activations, dynamic per token / static per tensor" },
      { token: "afp8 / afp8s", about: "fp8 E4M3 activations" },
      { token: "outliers=<pct>", about: "largest |w| kept in an f16 side table" },
      { token: "trits", about: "ternary packed 5 per byte (1.6 bits)" },
    ],
    examples: EXAMPLES.map((s) => ({ spec: printSpec(parseSpec(s)), bitsPerWeight: quantizeTensor(zeros, [64, 4096], s).bitsPerWeight })),
  };
}
