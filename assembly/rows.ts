// Element-wise and row-wise kernels of the forward pass besides attention (AssemblyScript, both builds):
// SwiGLU, the residual add with the RMSNorm after it.
// Re-exported by assembly/forward.ts; the host side is WasmBackend.swiglu / addRmsnorm, the references
// kernels/ref/rows.ts swigluRef / addRmsnormRef.
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

/** Σ x[i]² for i < n: two vector accumulators, then the scalar tail */
@inline function sumsq(x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    const v0 = v128.load(x + o), v1 = v128.load(x + o, 16);
    a0 = f32x4.add(a0, f32x4.mul(v0, v0));
    a1 = f32x4.add(a1, f32x4.mul(v1, v1));
  }
  for (; i + 4 <= n; i += 4) {
    const v0 = v128.load(x + (<usize>i << 2));
    a0 = f32x4.add(a0, f32x4.mul(v0, v0));
  }
  a0 = f32x4.add(a0, a1);
  let s = (f32x4.extract_lane(a0, 0) + f32x4.extract_lane(a0, 1)) + (f32x4.extract_lane(a0, 2) + f32x4.extract_lane(a0, 3));
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    s += v * v;
  }
  return s;
}

/** For each of n rows of dim: x ← x + y (when y ≠ 0), then out = w ⊙ x / sqrt(mean(x²) + eps) (run.c
 * rmsnorm; the residual add that precedes every norm of a pre-norm block but the first, in the same pass).
 * out may be y. */
export function add_rmsnorm_f32(x: usize, y: usize, w: usize, out: usize, n: i32, dim: i32, eps: f32): void {
  const rb = <usize>dim << 2;
  for (let r = 0; r < n; r++) {
    const xr = x + <usize>r * rb, yr = y + <usize>r * rb, or = out + <usize>r * rb;
    if (y != 0) {
      let i = 0;
      for (; i + 4 <= dim; i += 4) v128.store(xr + (<usize>i << 2), f32x4.add(v128.load(xr + (<usize>i << 2)), v128.load(yr + (<usize>i << 2))));
      for (; i < dim; i++) store<f32>(xr + (<usize>i << 2), load<f32>(xr + (<usize>i << 2)) + load<f32>(yr + (<usize>i << 2)));
    }
    const inv: f32 = <f32>1 / sqrt<f32>(sumsq(xr, dim) / <f32>dim + eps);
    const vi = f32x4.splat(inv);
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      v128.store(or + o, f32x4.mul(v128.load(w + o), f32x4.mul(vi, v128.load(xr + o))));
    }
    for (; i < dim; i++) store<f32>(or + (<usize>i << 2), load<f32>(w + (<usize>i << 2)) * (inv * load<f32>(xr + (<usize>i << 2))));
  }
}

/** s[j] += x[i, j]² in f64 for n rows of width f32 values (rows width apart): per column, rows in order, each square
 * exact (an f32 product fits f64) and one rounding per add — the same operations, hence the same bits, as
 * ggml/imatrix.ts ImatrixAccumulator's TypeScript loop. */
export function sumsq_cols_f64(x: usize, n: i32, width: i32, s: usize): void {
  for (let i = 0; i < n; i++) {
    const xr = x + (<usize>i * <usize>width << 2);
    let j = 0;
    for (; j + 4 <= width; j += 4) {
      const v = v128.load(xr + (<usize>j << 2));
      const lo = f64x2.promote_low_f32x4(v);
      const hi = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
      const p = s + (<usize>j << 3);
      v128.store(p, f64x2.add(v128.load(p), f64x2.mul(lo, lo)));
      v128.store(p, f64x2.add(v128.load(p, 16), f64x2.mul(hi, hi)), 16);
    }
    for (; j < width; j++) {
      const v = <f64>load<f32>(xr + (<usize>j << 2));
      const p = s + (<usize>j << 3);
      store<f64>(p, load<f64>(p) + v * v);
    }
  }
}

/** RoPE on the heads of x[0 .. width) (f32, heads hd apart), rotating the first rd values of each by the angles at
 * cos/sin[j], j < rd/2: interleaved pairs (x[2j], x[2j+1]) (neox = 0) or NeoX halves (x[j], x[j + rd/2]). Each
 * output is x·cos ∓ y·sin in f64 — both products exact (f32 × f32), one f64 rounding of the sum, then one to
 * f32 — the operations, hence the bits, of model/llama.ts rope / ropeNeox in TypeScript. */
export function rope_f32(x: usize, width: i32, hd: i32, cos: usize, sin: usize, rd: i32, neox: i32): void {
  const half = rd >> 1;
  for (let h = 0; h < width; h += hd) {
    const p = x + (<usize>h << 2);
    if (neox == 0) {
      for (let j = 0; j < half; j++) {
        const q = p + (<usize>j << 3);
        // [a, b] → [a·c + b·(−s), b·c + a·s]
        const v = f64x2.promote_low_f32x4(v128.load64_zero(q));
        const w = i64x2.shuffle(v, v, 1, 0);
        const c = f64x2.splat(<f64>load<f32>(cos + (<usize>j << 2)));
        const s = <f64>load<f32>(sin + (<usize>j << 2));
        const r = f64x2.add(f64x2.mul(v, c), f64x2.mul(w, f64x2.replace_lane(f64x2.splat(s), 0, -s)));
        v128.store64_lane(q, f32x4.demote_f64x2_zero(r), 0);
      }
    } else {
      let j = 0;
      for (; j + 2 <= half; j += 2) {
        const qa = p + (<usize>j << 2), qb = qa + (<usize>half << 2);
        const a = f64x2.promote_low_f32x4(v128.load64_zero(qa)), b = f64x2.promote_low_f32x4(v128.load64_zero(qb));
        const c = f64x2.promote_low_f32x4(v128.load64_zero(cos + (<usize>j << 2)));
        const s = f64x2.promote_low_f32x4(v128.load64_zero(sin + (<usize>j << 2)));
        v128.store64_lane(qa, f32x4.demote_f64x2_zero(f64x2.sub(f64x2.mul(a, c), f64x2.mul(b, s))), 0);
        v128.store64_lane(qb, f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(a, s), f64x2.mul(b, c))), 0);
      }
      for (; j < half; j++) {
        const qa = p + (<usize>j << 2), qb = qa + (<usize>half << 2);
        const a = <f64>load<f32>(qa), b = <f64>load<f32>(qb);
        const c = <f64>load<f32>(cos + (<usize>j << 2)), s = <f64>load<f32>(sin + (<usize>j << 2));
        store<f32>(qa, <f32>(a * c - b * s));
        store<f32>(qb, <f32>(a * s + b * c));
      }
    }
  }
}

/** KV store: for each of heads rows of hd f32, k[g] → kd + g·stride and v[g] → vd + g·stride (bytes): one
 * position's keys and values into a cache laid out (kvHead, capacity, hd) (src/kernels/wasm/kv-cache.ts). */
export function kv_store_f32(kd: usize, vd: usize, k: usize, v: usize, heads: i32, hd: i32, stride: usize): void {
  const rb = <usize>hd << 2;
  for (let g = 0; g < heads; g++) {
    memory.copy(kd + <usize>g * stride, k + <usize>g * rb, rb);
    memory.copy(vd + <usize>g * stride, v + <usize>g * rb, rb);
  }
}
