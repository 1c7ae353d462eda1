/**
 * Installs the ggml block decoder into the kernels' dequantize hook, so {kind: "ggml"} weights run through
 * the reference backend. Imported for its side effect by src/ggml/index.ts. (The hook lives in
 * kernels/dequantize.ts so that kernels need not import every codec; this file is the one place where
 * ggml/ reaches into kernels/, and only to register itself.)
 */
import { registerGgmlDequantizer } from "../kernels/dequantize.js";
import { dequantize } from "./codecs.js";

registerGgmlDequantizer((type, data, n) => dequantize(type, data, n));
