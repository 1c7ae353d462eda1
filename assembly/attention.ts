// Causal attention over an f32 KV cache, and the vector exp it needs (AssemblyScript, both builds).
// Re-exported by assembly/forward.ts; the host side is src/kernels/wasm/kv-cache.ts, the reference
// src/model/kv-cache.ts attendRef (F32KvCache.scores/mix and the softmax the forward pass has always used).
//
// One job = one layer of one prefill chunk (or one decode step): n query positions pos0 … pos0+n−1, every
// query head. Its "rows" are the n·nHeads (position, head) items, numbered heaviest first (the last
// position, which sees the most keys, is item 0), so the pool's dynamic chunk claiming hands out the
// long rows early and the short ones fill in at the end. Heads of one position are adjacent, so the
// query heads that share a KV head (GQA) read the same K/V rows while they are in cache.
//
// Per item, as llama2.c run.c orders it: score_t = (q·k_t) / sqrt(hd) for t ≤ pos (f32 dot, f32
// division by the f32 square root), p_t = exp(score_t − max), out = (Σ p_t·v_t) · (1/Σ p_t). The scores
// of one item go to a scratch row of `capacity` f32; each call claims one of A_NSLOTS rows with an
// atomic compare-exchange (a pool thread runs one chunk at a time, so threads + 1 rows never run out).
import {
  A_Q, A_OUT, A_K, A_V, A_N, A_POS0, A_NHEADS, A_KVMUL, A_HD, A_CAP, A_SCALE, A_SCRATCH, A_SLOTS, A_NSLOTS,
} from "./abi";
import { v_exp, v_exp_nonpos, reduce4f } from "./vmath";

// ---------------------------------------------------------------- exp

/** y[i] = e^x[i] for i < n (any n; the tail runs the same vector code on one lane): v_exp, or with
 * `nonpos` ≠ 0 v_exp_nonpos (x ≤ 0 only). For tests. */
export function exp_f32_row(x: usize, n: i32, y: usize, nonpos: i32): void {
  let i = 0;
  if (nonpos != 0) {
    for (; i + 4 <= n; i += 4) v128.store(y + (<usize>i << 2), v_exp_nonpos(v128.load(x + (<usize>i << 2))));
    for (; i < n; i++) store<f32>(y + (<usize>i << 2), f32x4.extract_lane(v_exp_nonpos(f32x4.splat(load<f32>(x + (<usize>i << 2)))), 0));
    return;
  }
  for (; i + 4 <= n; i += 4) v128.store(y + (<usize>i << 2), v_exp(v128.load(x + (<usize>i << 2))));
  for (; i < n; i++) store<f32>(y + (<usize>i << 2), f32x4.extract_lane(v_exp(f32x4.splat(load<f32>(x + (<usize>i << 2)))), 0));
}

// ---------------------------------------------------------------- attention

/** a·b + c as a multiply and an add in both builds: relaxed_madd may or may not fuse depending on the
 * engine and CPU, which would make attention outputs (and calibration results, hence file bytes) differ
 * between machines and between the builds. (Fusing measured 1.1–1.3× faster on this machine.) */
@inline function madd(a: v128, b: v128, c: v128): v128 {
  return f32x4.add(f32x4.mul(a, b), c);
}


/** q·k of one key (the last len mod 4 keys of an item): 4 lanes at a time, then the head's scalar tail */
@inline function dot1(q: usize, k: usize, hd: i32, hd4: i32): f32 {
  let a = f32x4.splat(0);
  let d = 0;
  for (; d < hd4; d += 4) a = madd(v128.load(q + (<usize>d << 2)), v128.load(k + (<usize>d << 2)), a);
  let s = (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1)) + (f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3));
  for (; d < hd; d++) s += load<f32>(q + (<usize>d << 2)) * load<f32>(k + (<usize>d << 2));
  return s;
}

/** scores of 4 consecutive keys at k (rows of rs bytes) as one vector: each q vector is loaded once for
 * the 4 keys, the 4 accumulators are independent add chains, and one transpose-reduce sums them. (8 keys
 * per step, or the head dimension unrolled by 16, measured 10–30% slower: more registers than x64 has.) */
@inline function dot4(q: usize, k: usize, rs: usize, hd: i32, hd4: i32): v128 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let d = 0; d < hd4; d += 4) {
    const o = <usize>d << 2;
    const qv = v128.load(q + o);
    a0 = madd(qv, v128.load(k + o), a0);
    a1 = madd(qv, v128.load(k + rs + o), a1);
    a2 = madd(qv, v128.load(k + 2 * rs + o), a2);
    a3 = madd(qv, v128.load(k + 3 * rs + o), a3);
  }
  let r = reduce4f(a0, a1, a2, a3);
  if (hd4 < hd) {
    let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
    for (let d = hd4; d < hd; d++) {
      const o = <usize>d << 2;
      const qd = load<f32>(q + o);
      t0 += qd * load<f32>(k + o);
      t1 += qd * load<f32>(k + rs + o);
      t2 += qd * load<f32>(k + 2 * rs + o);
      t3 += qd * load<f32>(k + 3 * rs + o);
    }
    let t = f32x4.splat(t0);
    t = f32x4.replace_lane(t, 1, t1);
    t = f32x4.replace_lane(t, 2, t2);
    t = f32x4.replace_lane(t, 3, t3);
    r = f32x4.add(r, t);
  }
  return r;
}

/** s[t] = (q·k_t)/scale for t < len; returns the largest */
@inline function scores(q: usize, k: usize, hd: i32, len: i32, scale: f32, s: usize): f32 {
  const hd4 = hd & ~3;
  const rs = <usize>hd << 2;
  const vs = f32x4.splat(scale);
  let m0 = f32x4.splat(-Infinity), m1 = f32x4.splat(-Infinity);
  let t = 0;
  for (; t + 8 <= len; t += 8) {
    const a = f32x4.div(dot4(q, k + <usize>t * rs, rs, hd, hd4), vs);
    const b = f32x4.div(dot4(q, k + <usize>(t + 4) * rs, rs, hd, hd4), vs);
    v128.store(s + (<usize>t << 2), a);
    v128.store(s + (<usize>t << 2), b, 16);
    m0 = f32x4.max(m0, a);
    m1 = f32x4.max(m1, b);
  }
  if (t + 4 <= len) {
    const a = f32x4.div(dot4(q, k + <usize>t * rs, rs, hd, hd4), vs);
    v128.store(s + (<usize>t << 2), a);
    m0 = f32x4.max(m0, a);
    t += 4;
  }
  m0 = f32x4.max(m0, m1);
  let m = max(max(f32x4.extract_lane(m0, 0), f32x4.extract_lane(m0, 1)), max(f32x4.extract_lane(m0, 2), f32x4.extract_lane(m0, 3)));
  for (; t < len; t++) {
    const v = dot1(q, k + <usize>t * rs, hd, hd4) / scale;
    store<f32>(s + (<usize>t << 2), v);
    m = max(m, v);
  }
  return m;
}

// Sums over positions are blocked: a block's terms go into fresh accumulators that are then added to
// the running totals, so an f32 sum of len terms carries about (block + len/block) roundings instead of
// len. At 257 positions the straight sums measured 11.5 ε·Σ|p·v| from float64, the blocked ones 5.2, as
// short rows do (the reference, which accumulates in float64, 1.8).
const EXP_BLOCK = 32; // exps per block (4 steps of 8)
const MIX_BLOCK = 16; // V rows per block

/** s[t] ← e^(s[t] − m) for t < len; returns Σ (two vector accumulators, blocked, then the lanes). The
 * arguments are ≤ 0, so the exp without its overflow end (v_exp_nonpos, 1.6× faster than v_exp) serves. */
@inline function expSum(s: usize, len: i32, m: f32): f32 {
  const vm = f32x4.splat(m);
  let tot = f32x4.splat(0);
  let t = 0;
  while (t + 8 <= len) {
    const end = min(len & ~7, t + EXP_BLOCK);
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
    for (; t < end; t += 8) {
      const p = s + (<usize>t << 2);
      const e0 = v_exp_nonpos(f32x4.sub(v128.load(p), vm));
      const e1 = v_exp_nonpos(f32x4.sub(v128.load(p, 16), vm));
      v128.store(p, e0);
      v128.store(p, e1, 16);
      a0 = f32x4.add(a0, e0);
      a1 = f32x4.add(a1, e1);
    }
    tot = f32x4.add(tot, f32x4.add(a0, a1));
  }
  if (t + 4 <= len) {
    const p = s + (<usize>t << 2);
    const e0 = v_exp_nonpos(f32x4.sub(v128.load(p), vm));
    v128.store(p, e0);
    tot = f32x4.add(tot, e0);
    t += 4;
  }
  let sum = (f32x4.extract_lane(tot, 0) + f32x4.extract_lane(tot, 1)) + (f32x4.extract_lane(tot, 2) + f32x4.extract_lane(tot, 3));
  for (; t < len; t++) {
    const p = s + (<usize>t << 2);
    const e = f32x4.extract_lane(v_exp_nonpos(f32x4.splat(load<f32>(p) - m)), 0);
    store<f32>(p, e);
    sum += e;
  }
  return sum;
}

/** out[0..w) (+)= Σ_{t0≤t<t1} p[t]·v_t[0..w) for w = 32, 16 or 4 columns (8, 4, 1 accumulators that stay in
 * registers while the rows stream by); the first block stores, later ones add */
@inline function mixBlock(w: i32, p: usize, v: usize, rs: usize, t0: i32, t1: i32, out: usize, first: bool): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let r = v + <usize>t0 * rs;
  for (let t = t0; t < t1; t++, r += rs) {
    const c = v128.load32_splat(p + (<usize>t << 2));
    a0 = madd(c, v128.load(r), a0);
    if (w >= 16) {
      a1 = madd(c, v128.load(r, 16), a1);
      a2 = madd(c, v128.load(r, 32), a2);
      a3 = madd(c, v128.load(r, 48), a3);
    }
    if (w == 32) {
      a4 = madd(c, v128.load(r, 64), a4);
      a5 = madd(c, v128.load(r, 80), a5);
      a6 = madd(c, v128.load(r, 96), a6);
      a7 = madd(c, v128.load(r, 112), a7);
    }
  }
  if (!first) {
    a0 = f32x4.add(a0, v128.load(out));
    if (w >= 16) {
      a1 = f32x4.add(a1, v128.load(out, 16));
      a2 = f32x4.add(a2, v128.load(out, 32));
      a3 = f32x4.add(a3, v128.load(out, 48));
    }
    if (w == 32) {
      a4 = f32x4.add(a4, v128.load(out, 64));
      a5 = f32x4.add(a5, v128.load(out, 80));
      a6 = f32x4.add(a6, v128.load(out, 96));
      a7 = f32x4.add(a7, v128.load(out, 112));
    }
  }
  v128.store(out, a0);
  if (w >= 16) {
    v128.store(out, a1, 16);
    v128.store(out, a2, 32);
    v128.store(out, a3, 48);
  }
  if (w == 32) {
    v128.store(out, a4, 64);
    v128.store(out, a5, 80);
    v128.store(out, a6, 96);
    v128.store(out, a7, 112);
  }
}

/** out[0..hd) = inv · Σ_{t<len} p[t]·v_t: columns in blocks of 32, 16 and 4, rows in blocks of MIX_BLOCK,
 * then the last columns one at a time; a final pass scales by inv */
@inline function mix(p: usize, v: usize, hd: i32, len: i32, inv: f32, out: usize): void {
  const rs = <usize>hd << 2;
  let d = 0;
  for (; d + 32 <= hd; d += 32) {
    for (let t = 0; t < len; t += MIX_BLOCK) mixBlock(32, p, v + (<usize>d << 2), rs, t, min(len, t + MIX_BLOCK), out + (<usize>d << 2), t == 0);
  }
  for (; d + 16 <= hd; d += 16) {
    for (let t = 0; t < len; t += MIX_BLOCK) mixBlock(16, p, v + (<usize>d << 2), rs, t, min(len, t + MIX_BLOCK), out + (<usize>d << 2), t == 0);
  }
  for (; d + 4 <= hd; d += 4) {
    for (let t = 0; t < len; t += MIX_BLOCK) mixBlock(4, p, v + (<usize>d << 2), rs, t, min(len, t + MIX_BLOCK), out + (<usize>d << 2), t == 0);
  }
  for (; d < hd; d++) {
    let tot: f32 = 0;
    let r = v + (<usize>d << 2);
    for (let t = 0; t < len; t += MIX_BLOCK) {
      let a: f32 = 0;
      const t1 = min(len, t + MIX_BLOCK);
      for (let u = t; u < t1; u++, r += rs) a += load<f32>(p + (<usize>u << 2)) * load<f32>(r);
      tot += a;
    }
    store<f32>(out + (<usize>d << 2), tot);
  }
  const vi = f32x4.splat(inv);
  let j = 0;
  for (; j + 4 <= hd; j += 4) v128.store(out + (<usize>j << 2), f32x4.mul(v128.load(out + (<usize>j << 2)), vi));
  for (; j < hd; j++) store<f32>(out + (<usize>j << 2), load<f32>(out + (<usize>j << 2)) * inv);
}

/** K_ATTN_F32 (the pool's entry name for task 32): items [r0, r1) of the attention job at `desc` (abi.ts
 * A_*); item r is position n−1−⌊r/nHeads⌋, head r mod nHeads. */
export function run_k32(desc: usize, r0: i32, r1: i32): void {
  const q = load<u32>(desc + (A_Q << 2)) as usize;
  const out = load<u32>(desc + (A_OUT << 2)) as usize;
  const kb = load<u32>(desc + (A_K << 2)) as usize;
  const vb = load<u32>(desc + (A_V << 2)) as usize;
  const n = load<i32>(desc + (A_N << 2));
  const pos0 = load<i32>(desc + (A_POS0 << 2));
  const nHeads = load<i32>(desc + (A_NHEADS << 2));
  const kvMul = load<i32>(desc + (A_KVMUL << 2));
  const hd = load<i32>(desc + (A_HD << 2));
  const cap = load<i32>(desc + (A_CAP << 2));
  const scale = load<f32>(desc + (A_SCALE << 2));
  const scratch = load<u32>(desc + (A_SCRATCH << 2)) as usize;
  const slots = load<u32>(desc + (A_SLOTS << 2)) as usize;
  const nSlots = load<i32>(desc + (A_NSLOTS << 2));
  let slot = 0;
  while (slot < nSlots && atomic.cmpxchg<i32>(slots + (<usize>slot << 2), 0, 1) != 0) slot++;
  if (slot == nSlots) unreachable(); // more concurrent calls than threads: the host sized the slots wrong
  const s = scratch + <usize>slot * <usize>cap * 4;
  const uhd = <usize>hd;
  const headBytes = <usize>cap * uhd * 4; // one KV head's (capacity, hd) matrix
  for (let r = r0; r < r1; r++) {
    const i = n - 1 - r / nHeads;
    const h = r % nHeads;
    const len = pos0 + i + 1;
    const row = (<usize>i * <usize>nHeads + <usize>h) * uhd * 4;
    const kvh = <usize>(h / kvMul);
    const m = scores(q + row, kb + kvh * headBytes, hd, len, scale, s);
    const sum = expSum(s, len, m);
    mix(s, vb + kvh * headBytes, hd, len, <f32>1 / sum, out + row);
  }
  atomic.store<i32>(slots + (<usize>slot << 2), 0);
}
