/** The QuantizedTensor contract is defined with the Weight type in core (core/weight.ts); quant/ implements it (quant/tensor.ts). */
export type { QuantizedTensor } from "../core/weight.js";
