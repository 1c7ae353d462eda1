// The forward pass's kernels besides the matmuls: causal attention over the f32 KV cache and the vector
// exp (attention.ts), SwiGLU (rows.ts). assembly/index.ts re-exports this module.
export * from "./attention";
export * from "./rows";
