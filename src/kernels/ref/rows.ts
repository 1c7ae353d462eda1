/**
 * Reference element-wise kernels of the forward pass, in plain TypeScript (float64 arithmetic, one f32
 * rounding per stored value): what a backend's own versions (Backend.swiglu) are tested against, and what
 * runs when a backend has none (kernels/types.ts `swiglu`).
 */

/** gate[i] ← silu(gate[i])·up[i] = gate[i] / (1 + e^(−gate[i])) · up[i] for i < n (llama2.c run.c SwiGLU) */
export function swigluRef(gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const a = gate[i]!;
    gate[i] = (a / (1 + Math.exp(-a))) * up[i]!;
  }
}
