/** Calibration-based and survey quantization algorithms on plain (rows, cols) Float32Array matrices. */
export * from "./quantizer.js";
export * from "./rtn.js";
export * from "./linalg.js";
export * from "./stats.js";
export * from "./gptq.js";
export * from "./awq.js";
export * from "./smoothquant.js";
export * from "./int8.js";
export * from "./llmint8.js";
export * from "./hqq.js";
export * from "./rotation.js";
export * from "./kmeans.js";
export * from "./mixed.js";
export * from "./qat.js";
export * from "./spec-quantizer.js";
export * from "./calib.js";
export * from "./ptq.js";
