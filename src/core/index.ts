export * from "./errors.js";
export * from "./f16.js";
export * from "./tensor.js";
export * from "./rng.js";
export * from "./progress.js";
export * from "./weight.js";
export * from "./lazy.js";
export * from "./ggml-type.js";
