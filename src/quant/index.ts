/** quant/: specs, schemes, granularity, calibration, rounding, packing, QuantizedTensor, metrics. */
export * from "./types.js";
export * from "./spec.js";
export * from "./elements.js";
export * from "./granularity.js";
export * from "./scales.js";
export * from "./calibrate.js";
export * from "./quantizer.js";
export * from "./tensor.js";
export * from "./serialize.js";
export * from "./observer.js";
export * from "./activations.js";
export * from "./metrics.js";
export * from "./pack.js";
export * from "./stats.js";
export * from "./catalog.js";
