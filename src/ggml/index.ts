/**
 * llama.cpp block types: codecs (bit-exact decode, reference quantizers), dot products, row-width
 * fall-back.
 */

export * from "./types.js";
export {
  dequantize, dequantizeRow, quantize, quantizeRow, hasGgmlCodec, ggmlUsesImatrix, llamaCppDecodes,
  GGML_CODEC_TYPES, type GgmlCodecType, type QuantizeOptions,
} from "./codecs.js";
export { vecDot, vecDotType, quantizeActivationsRow, activationRowBytes } from "./dot.js";
export { ggmlRowFit, type RowFit } from "./fallback.js";
export { KVALUES_IQ4NL } from "./iq4.js";
export {
  GGML_PRESETS, GGML_PRESET_NAMES, ggmlMix, ggmlQuantizable, parseGgmlPreset, formatMixChoice,
  type GgmlPreset, type MixChoice, type MixModelInfo, type MixOptions, type MixTensor,
} from "./mix.js";
export { ImatrixAccumulator, formatImatrixDat, parseImatrixDat, type Imatrix } from "./imatrix.js";
export { refGgmlEncoder, checkEncodeJob, type GgmlEncoder, type EncodeRowsJob, type CheckedEncodeJob } from "./encoder.js";
