/**
 * Reference element-wise kernels of the forward pass, in plain TypeScript (float64 arithmetic, one f32
 * rounding per stored value): what a backend's own versions (Backend.swiglu, Backend.addRmsnorm) are
 * tested against, and what runs when a backend has none (kernels/types.ts `swiglu`, `addRmsnorm`).
 */

/** gate[i] ← silu(gate[i])·up[i] = gate[i] / (1 + e^(−gate[i])) · up[i] for i < n (llama2.c run.c SwiGLU) */
export function swigluRef(gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const a = gate[i]!;
    gate[i] = (a / (1 + Math.exp(-a))) * up[i]!;
  }
}

/** out[i] = w ⊙ x[i] / sqrt(mean(x[i]²) + eps) for n rows of `dim` (run.c rmsnorm) */
export function rmsnormRowsRef(out: Float32Array, x: Float32Array, w: Float32Array, n: number, dim: number, eps: number): void {
  for (let i = 0; i < n; i++) {
    const o = i * dim;
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[o + j]! * x[o + j]!;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let j = 0; j < dim; j++) out[o + j] = w[j]! * (inv * x[o + j]!);
  }
}

/**
 * x ← x + y (when y is given), then out = rmsnorm(x) ⊙ w, for n rows of `dim`: the residual add and the
 * norm after it. Row by row, each row's add before its norm, so out may be y.
 */
export function addRmsnormRef(x: Float32Array, y: Float32Array | undefined, w: Float32Array, out: Float32Array, n: number, dim: number, eps: number): void {
  for (let i = 0; i < n; i++) {
    const o = i * dim;
    if (y) for (let j = o; j < o + dim; j++) x[j] = x[j]! + y[j]!;
    rmsnormRowsRef(out.subarray(o, o + dim), x.subarray(o, o + dim), w, 1, dim, eps);
  }
}
