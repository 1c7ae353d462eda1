// Element-wise kernels of the forward pass besides attention (AssemblyScript, both builds): SwiGLU.
// Re-exported by assembly/forward.ts; the host side is WasmBackend.swiglu, the reference
// kernels/ref/rows.ts swigluRef.
import { v_exp_nonpos } from "./vmath";

/** silu(g)·u with silu(g) = g / (1 + e^−g) (llama2.c run.c), evaluated as g·s/(1 + e) with e = e^−|g| and
 * s = 1 for g ≥ 0 (run.c's expression exactly), s = e for g < 0 (the same value, multiplied through by e^g):
 * the exp never overflows, so large negative gates keep their tiny result instead of −0, and the exp's
 * argument is ≤ 0 (v_exp_nonpos). Results under 2^−100 in magnitude may flush to 0 (the exp flushes below
 * 2^−126). */
@inline function silu_mul(g: v128, u: v128): v128 {
  const e = v_exp_nonpos(f32x4.neg(f32x4.abs(g)));
  const s = v128.bitselect(e, f32x4.splat(1), f32x4.lt(g, f32x4.splat(0)));
  return f32x4.mul(f32x4.div(f32x4.mul(g, s), f32x4.add(f32x4.splat(1), e)), u);
}

/** g[i] ← silu(g[i])·u[i] for i < n (SwiGLU), 8 then 4 per step, the tail on one lane of the same code. */
export function swiglu_f32(g: usize, u: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    v128.store(g + o, silu_mul(v128.load(g + o), v128.load(u + o)));
    v128.store(g + o, silu_mul(v128.load(g + o, 16), v128.load(u + o, 16)), 16);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(g + o, silu_mul(v128.load(g + o), v128.load(u + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(g + o, f32x4.extract_lane(silu_mul(f32x4.splat(load<f32>(g + o)), f32x4.splat(load<f32>(u + o))), 0));
  }
}
