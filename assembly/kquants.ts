// ggml k-quant encoders (Q2_K … Q6_K), with and without an importance matrix, in WebAssembly f32.
//
// A line-by-line twin of the TypeScript codecs src/ggml/kquants.ts and src/ggml/search.ts (themselves
// byte-identical with llama.cpp's quantize_row_*_ref / *_impl): every C float operation there is one f32
// operation here, in the same order (wasm has no FMA and binaryen does not reassociate floats), and the
// double-precision screen of make_qkx2_quants (search.ts lsErrorLowerBound) is the same f64 code, so the
// bytes are the TypeScript codec's for every finite input (test/kernels/wasm/kquant-encoders.test.ts).
// Rows holding Inf/NaN never come here (the task sends them to the TS codec, src/kernels/wasm/tasks.ts).
//
// Threads: every thread has its own instance (globals are per thread) over the one shared memory; the
// small per-block scratch arrays live in host-allocated slots that a call claims with an atomic
// compare-exchange and frees on return.
import { f32_to_f16, f16_to_f32 } from "./f16";
import { KQ_SLOT_BYTES } from "./abi";

const MAGIC: f32 = 12582912.0; // 1.5·2^23
const GROUP_MAX_EPS: f32 = 1e-15;
/** 2^-24: unit roundoff of f32 (search.ts U32) */
const U32: f64 = 5.9604644775390625e-8;

// scratch slot layout (bytes)
const S_L = 0; // u8[256] levels of the block (i8 for Q3_K)
const S_LAUX = 256; // u8[32] trial levels
const S_W = 288; // f32[32] weights of a sub-block
const S_SC = 416; // f32[16] sub-block scales
const S_MN = 480; // f32[16] sub-block mins (−min)
const S_SW = 544; // f32[16] Σ weights per sub-block
const S_LS = 608; // u8[16] scale codes
const S_LM = 624; // u8[16] min codes
const S_DX = 640; // f32[32] x − min
const S_XD = 768; // f64[32] x
const S_WD = 1024; // f64[32] weights
// 4-lane searches (make_qkx2_x4): lane k is sub-block k of a group of four; element i of the four is one v128
const S_XT = 2048; // f32x4[32] x
const S_WT = 2560; // f32x4[32] weights
const S_LT = 3072; // f32x4[32] levels of the best trial so far
const S_LA = 3584; // f32x4[32] levels of the current trial
const S_WXT = 3840; // f32x4[16] weight · x (make_qx1_x4: 16 elements, after S_LA's first 16)
// slots are KQ_SLOT_BYTES (abi.ts) each

/** make_qkx2_quants' −min, returned beside the scale (a global: one per thread's instance) */
let outMin: f32 = 0;

@inline function lf(p: usize, i: i32): f32 { return load<f32>(p + (<usize>i << 2)); }
@inline function sf(p: usize, i: i32, v: f32): void { store<f32>(p + (<usize>i << 2), v); }
@inline function lb(p: usize, i: i32): i32 { return <i32>load<u8>(p + <usize>i); }
@inline function sb(p: usize, i: i32, v: i32): void { store<u8>(p + <usize>i, <u8>v); }
@inline function lsb(p: usize, i: i32): i32 { return <i32>load<i8>(p + <usize>i); }
@inline function clampi(v: i32, lo: i32, hi: i32): i32 { return max(lo, min(hi, v)); }

/** ggml nearest_int: add 1.5·2^23 in f32, read the low mantissa bits (cfloat.ts nearestInt) */
@inline function nearest_int(x: f32): i32 {
  return (reinterpret<i32>(x + MAGIC) & 0x7fffff) - 0x400000;
}

/** clamp(nearest_int(iscale·v), 0, nmax) per lane, the scalar nearest_int's exact ops */
@inline function levels4(v: v128, vis: v128, vn: v128): v128 {
  const t = f32x4.add(f32x4.mul(vis, v), f32x4.splat(MAGIC));
  const l = i32x4.sub(v128.and(t, i32x4.splat(0x7fffff)), i32x4.splat(0x400000));
  return i32x4.min_s(i32x4.max_s(l, i32x4.splat(0)), vn);
}

/** C's truth of a float (`if (d)`): non-zero, and NaN counts as true in C but `!NaN` is true in JS; the
 * TS codec's `!d`/`d ?` tests treat NaN as false, so this does too */
@inline function truthy(x: f32): bool { return x != 0 && x == x; }

@inline function ldF16(p: usize): f32 { return f16_to_f32(<u32>load<u16>(p)); }
/** writes x as f16 at p; returns nothing (readers re-read the stored bits) */
@inline function stF16(p: usize, x: f32): void { store<u16>(p, <u16>f32_to_f16(x)); }

// ---------------------------------------------------------------- searches (search.ts)

/** search.ts lsErrorLowerBound, the same f64 expressions */
function lsLowerBound(sw: f64, sx: f64, sx2: f64, sl: f64, sl2: f64, sxl: f64, nmax: i32, maxAbs: f64, n: i32): f64 {
  const D = sw * sl2 - sl * sl;
  if (!(D > 1e-9 * sw * sl2)) return -Infinity;
  const s = (sw * sxl - sx * sl) / D;
  const m = (sl2 * sx - sl * sxl) / D;
  const e = sx2 - s * sxl - m * sx - 1e-12 * sx2;
  const delta = 4 * U32 * (2 * Math.abs(s) * <f64>nmax + 2 * Math.abs(m) + maxAbs);
  const B = delta * delta * sw;
  if (!(e > B)) return -Infinity;
  return (e - 2 * Math.sqrt(e * B)) * (1 - <f64>(n + 8) * U32);
}

/** make_qkx2_quants (search.ts makeQkx2Quants): levels to L, −min to outMin, returns the scale */
function make_qkx2(n: i32, nmax: i32, x: usize, w: usize, L: usize, s: usize, rmin: f32, rdelta: f32, nstep: i32, useMad: bool): f32 {
  const Laux = s + S_LAUX;
  const dx = s + S_DX;
  let lo = lf(x, 0);
  let hi = lo;
  let sumW = lf(w, 0);
  let sumX: f32 = sumW * lf(x, 0);
  for (let i = 1; i < n; i++) {
    const v = lf(x, i);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    const wi = lf(w, i);
    sumW = sumW + wi;
    sumX = sumX + wi * v;
  }
  let swD: f64 = 0;
  let sxD: f64 = 0;
  let sx2D: f64 = 0;
  const wd = s + S_WD;
  const xd = s + S_XD;
  for (let i = 0; i < n; i++) {
    const v = <f64>lf(x, i);
    store<f64>(xd + (<usize>i << 3), v);
    store<f64>(wd + (<usize>i << 3), <f64>lf(w, i));
    const wv = <f64>lf(w, i) * v;
    swD += <f64>lf(w, i);
    sxD += wv;
    sx2D += wv * v;
  }
  const maxAbs = <f64>max(abs(lo), abs(hi));
  if (lo > 0) lo = 0;
  if (hi == lo) {
    for (let i = 0; i < n; i++) sb(L, i, 0);
    outMin = -lo;
    return 0;
  }
  let iscale: f32 = <f32>nmax / (hi - lo);
  let scale: f32 = <f32>1 / iscale;
  let bestError: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = lf(x, i);
    const lc = clampi(nearest_int(iscale * (v - lo)), 0, nmax);
    sb(L, i, lc);
    let diff: f32 = scale * <f32>lc + lo - v;
    diff = useMad ? abs(diff) : diff * diff;
    bestError = bestError + lf(w, i) * diff;
  }
  if (nstep < 1) {
    outMin = -lo;
    return scale;
  }
  let dxMin: f32 = NaN;
  for (let is = 0; is <= nstep; is++) {
    let same = is > 0;
    iscale = (rmin + rdelta * <f32>is + <f32>nmax) / (hi - lo);
    if (dxMin != lo) {
      const vlo = f32x4.splat(lo);
      for (let i = 0; i < n; i += 4) v128.store(dx + (<usize>i << 2), f32x4.sub(v128.load(x + (<usize>i << 2)), vlo));
      dxMin = lo;
    }
    // the trial's levels 16 at a time: per lane the scalar ops (iscale·dx, + 1.5·2^23, mantissa bits, clamp)
    const vis = f32x4.splat(iscale);
    const vn = i32x4.splat(nmax);
    for (let i = 0; i < n; i += 16) {
      const p = dx + (<usize>i << 2);
      const b = i8x16.narrow_i16x8_u(
        i16x8.narrow_i32x4_s(levels4(v128.load(p), vis, vn), levels4(v128.load(p, 16), vis, vn)),
        i16x8.narrow_i32x4_s(levels4(v128.load(p, 32), vis, vn), levels4(v128.load(p, 48), vis, vn)));
      if (!i8x16.all_true(i8x16.eq(b, v128.load(Laux + i)))) same = false;
      v128.store(Laux + i, b);
    }
    // the same levels as the previous trial give the same sums and error, hence the same (non-)choice
    if (same) continue;
    if (!useMad) {
      let sl: f64 = 0;
      let sl2: f64 = 0;
      let sxl: f64 = 0;
      for (let i = 0; i < n; i++) {
        const l = <f64>lb(Laux, i);
        const wl = load<f64>(wd + (<usize>i << 3)) * l;
        sl += wl;
        sl2 += wl * l;
        sxl += wl * load<f64>(xd + (<usize>i << 3));
      }
      if (lsLowerBound(swD, sxD, sx2D, sl, sl2, sxl, nmax, maxAbs, n) >= <f64>bestError) continue;
    }
    let sumL: f32 = 0;
    let sumL2: f32 = 0;
    let sumXL: f32 = 0;
    for (let i = 0; i < n; i++) {
      const v = lf(x, i);
      const l = <f32>lb(Laux, i);
      const wl: f32 = lf(w, i) * l;
      sumL = sumL + wl;
      sumL2 = sumL2 + wl * l;
      sumXL = sumXL + wl * v;
    }
    const D: f32 = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale: f32 = (sumW * sumXL - sumX * sumL) / D;
      let thisMin: f32 = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      let curError: f32 = 0;
      for (let i = 0; i < n; i++) {
        let diff: f32 = thisScale * <f32>lb(Laux, i) + thisMin - lf(x, i);
        diff = useMad ? abs(diff) : diff * diff;
        curError = curError + lf(w, i) * diff;
      }
      if (curError < bestError) {
        memory.copy(L, Laux, n);
        bestError = curError;
        scale = thisScale;
        lo = thisMin;
      }
    }
  }
  outMin = -lo;
  return scale;
}

/**
 * make_qkx2 for four sub-blocks of 32 at once, one per SIMD lane: x and weights transposed at S_XT / S_WT
 * (element i of sub-blocks k = 0…3 in the lanes of v128 i). Per lane every operation is the scalar
 * make_qkx2's (useMad false) in its order, so each lane's levels, scale and −min are the scalar's bits; the
 * scalar's branches become per-lane selects. The scalar's two shortcuts are left out, which changes no
 * result: a trial whose levels repeat the previous one's gives the same error, hence the same (non-)choice,
 * and the f64 lower-bound screen only skips trials that cannot win. Levels (as f32) go to S_LT; returns
 * the scales, with the −mins in outMin4.
 */
function make_qkx2_x4(nmax: i32, s: usize, rmin: f32, rdelta: f32, nstep: i32): v128 {
  const XT = s + S_XT;
  const WT = s + S_WT;
  const LT = s + S_LT;
  const LA = s + S_LA;
  const n = 32;
  let lo = v128.load(XT);
  let hi = lo;
  let sumW = v128.load(WT);
  let sumX = f32x4.mul(sumW, lo);
  for (let i = 1; i < n; i++) {
    const v = v128.load(XT + (<usize>i << 4));
    lo = f32x4.pmin(lo, v); // v < lo ? v : lo
    hi = f32x4.pmax(hi, v); // hi < v ? v : hi
    const wi = v128.load(WT + (<usize>i << 4));
    sumW = f32x4.add(sumW, wi);
    sumX = f32x4.add(sumX, f32x4.mul(wi, v));
  }
  const zero = f32x4.splat(0);
  lo = f32x4.pmin(lo, zero); // if (lo > 0) lo = 0
  const flat = f32x4.eq(hi, lo); // those lanes: levels 0, scale 0, −min −lo (set at the end)
  const flatLo = lo;
  const vn = i32x4.splat(nmax);
  const fnmax = f32x4.splat(<f32>nmax);
  const magic = f32x4.splat(MAGIC);
  const mant = i32x4.splat(0x7fffff);
  const half = i32x4.splat(0x400000);
  const izero = i32x4.splat(0);
  let iscale = f32x4.div(fnmax, f32x4.sub(hi, lo));
  let scale = f32x4.div(f32x4.splat(1), iscale);
  let bestError = zero;
  for (let i = 0; i < n; i++) {
    const p = <usize>i << 4;
    const v = v128.load(XT + p);
    const t = f32x4.add(f32x4.mul(iscale, f32x4.sub(v, lo)), magic);
    const lc = f32x4.convert_i32x4_s(i32x4.min_s(i32x4.max_s(i32x4.sub(v128.and(t, mant), half), izero), vn));
    v128.store(LT + p, lc);
    const diff = f32x4.sub(f32x4.add(f32x4.mul(scale, lc), lo), v);
    bestError = f32x4.add(bestError, f32x4.mul(v128.load(WT + p), f32x4.mul(diff, diff)));
  }
  for (let is = 0; is <= nstep; is++) {
    const base: f32 = rmin + rdelta * <f32>is;
    iscale = f32x4.div(f32x4.add(f32x4.splat(base), fnmax), f32x4.sub(hi, lo));
    let sumL = zero;
    let sumL2 = zero;
    let sumXL = zero;
    for (let i = 0; i < n; i++) {
      const p = <usize>i << 4;
      const v = v128.load(XT + p);
      const t = f32x4.add(f32x4.mul(iscale, f32x4.sub(v, lo)), magic);
      const l = f32x4.convert_i32x4_s(i32x4.min_s(i32x4.max_s(i32x4.sub(v128.and(t, mant), half), izero), vn));
      v128.store(LA + p, l);
      const wl = f32x4.mul(v128.load(WT + p), l);
      sumL = f32x4.add(sumL, wl);
      sumL2 = f32x4.add(sumL2, f32x4.mul(wl, l));
      sumXL = f32x4.add(sumXL, f32x4.mul(wl, v));
    }
    const D = f32x4.sub(f32x4.mul(sumW, sumL2), f32x4.mul(sumL, sumL));
    const dpos = f32x4.gt(D, zero);
    if (!v128.any_true(dpos)) continue;
    let thisScale = f32x4.div(f32x4.sub(f32x4.mul(sumW, sumXL), f32x4.mul(sumX, sumL)), D);
    let thisMin = f32x4.div(f32x4.sub(f32x4.mul(sumL2, sumX), f32x4.mul(sumL, sumXL)), D);
    const mpos = f32x4.gt(thisMin, zero);
    thisMin = v128.bitselect(zero, thisMin, mpos);
    thisScale = v128.bitselect(f32x4.div(sumXL, sumL2), thisScale, mpos);
    let curError = zero;
    for (let i = 0; i < n; i++) {
      const p = <usize>i << 4;
      const diff = f32x4.sub(f32x4.add(f32x4.mul(thisScale, v128.load(LA + p)), thisMin), v128.load(XT + p));
      curError = f32x4.add(curError, f32x4.mul(v128.load(WT + p), f32x4.mul(diff, diff)));
    }
    const take = v128.and(dpos, f32x4.lt(curError, bestError));
    if (!v128.any_true(take)) continue;
    for (let i = 0; i < n; i++) {
      const p = <usize>i << 4;
      v128.store(LT + p, v128.bitselect(v128.load(LA + p), v128.load(LT + p), take));
    }
    bestError = v128.bitselect(curError, bestError, take);
    scale = v128.bitselect(thisScale, scale, take);
    lo = v128.bitselect(thisMin, lo, take);
  }
  if (v128.any_true(flat)) {
    for (let i = 0; i < n; i++) v128.store(LT + (<usize>i << 4), v128.bitselect(zero, v128.load(LT + (<usize>i << 4)), flat));
    scale = v128.bitselect(zero, scale, flat);
    lo = v128.bitselect(flatLo, lo, flat);
  }
  outMin4 = f32x4.neg(lo);
  return scale;
}

/** make_qkx2_x4's −mins (a global: one per thread's instance) */
let outMin4: v128 = f32x4.splat(0);

/** The 4×4 transpose of the f32x4 rows at src, src + stride, src + 2·stride, src + 3·stride, stored as 4 vectors at dst. */
@inline function transpose4x4(src: usize, stride: usize, dst: usize): void {
  const a = v128.load(src);
  const b = v128.load(src + stride);
  const c = v128.load(src + 2 * stride);
  const d = v128.load(src + 3 * stride);
  const t0 = i32x4.shuffle(a, b, 0, 4, 1, 5);
  const t1 = i32x4.shuffle(a, b, 2, 6, 3, 7);
  const t2 = i32x4.shuffle(c, d, 0, 4, 1, 5);
  const t3 = i32x4.shuffle(c, d, 2, 6, 3, 7);
  v128.store(dst, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
  v128.store(dst, i32x4.shuffle(t0, t2, 2, 3, 6, 7), 16);
  v128.store(dst, i32x4.shuffle(t1, t3, 0, 1, 4, 5), 32);
  v128.store(dst, i32x4.shuffle(t1, t3, 2, 3, 6, 7), 48);
}

/** x of sub-blocks 4g … 4g+3 (32 each) of the 256-block at x, transposed to S_XT (4×4 transposes) */
function transposeX4(x: usize, g: i32, s: usize): void {
  const XT = s + S_XT;
  const x0 = x + (<usize>(4 * g) << 7);
  for (let q = 0; q < 8; q++) transpose4x4(x0 + (<usize>q << 4), 128, XT + (<usize>q << 6));
}

/** S_LT's levels (f32 lanes) → bytes of sub-blocks 4g … 4g+3 at L + 32·(4g + k) */
function storeLevels4(L: usize, g: i32, s: usize): void {
  const LT = s + S_LT;
  const l0 = L + <usize>(128 * g);
  for (let i = 0; i < 32; i++) {
    const l = i32x4.trunc_sat_f32x4_s(v128.load(LT + (<usize>i << 4)));
    sb(l0, i, i32x4.extract_lane(l, 0));
    sb(l0 + 32, i, i32x4.extract_lane(l, 1));
    sb(l0 + 64, i, i32x4.extract_lane(l, 2));
    sb(l0 + 96, i, i32x4.extract_lane(l, 3));
  }
}

/** make_qx_quants with rmse_type 1 (search.ts makeQxQuants): weights qw, or x² when qw is 0; L gets l + nmax */
function make_qx1(n: i32, nmax: i32, x: usize, L: usize, qw: usize): f32 {
  let mx: f32 = 0;
  let amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = abs(lf(x, i));
    if (ax > amax) {
      amax = ax;
      mx = lf(x, i);
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) sb(L, i, 0);
    return 0;
  }
  const fn = <f32>nmax;
  let iscale: f32 = -fn / mx;
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = lf(x, i);
    const l = clampi(nearest_int(iscale * v), -nmax, nmax - 1);
    sb(L, i, l + nmax);
    const w: f32 = qw != 0 ? lf(qw, i) : v * v;
    const fl = <f32>l;
    sumlx = sumlx + w * v * fl;
    suml2 = suml2 + w * fl * fl;
  }
  qxScale = truthy(suml2) ? sumlx / suml2 : 0;
  qxBest = qxScale * sumlx;
  // the 18 trial scales is = −9 … −1, 1 … 9 four at a time, one per lane: per lane the sums are the scalar
  // code's, in its order; the trials are then judged one by one in is order, as the scalar loop does
  for (let t0 = 0; t0 < 18; t0 += 4) {
    const is0 = qxTrial(t0), is1 = qxTrial(t0 + 1), is2 = qxTrial(t0 + 2), is3 = qxTrial(t0 + 3);
    const sc0: f32 = -(fn + QX_TENTH * <f32>is0) / mx;
    const sc1: f32 = -(fn + QX_TENTH * <f32>is1) / mx;
    const sc2: f32 = -(fn + QX_TENTH * <f32>is2) / mx;
    const sc3: f32 = -(fn + QX_TENTH * <f32>is3) / mx;
    const vis = f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(sc0), 1, sc1), 2, sc2), 3, sc3);
    let aLX = f32x4.splat(0);
    let aL2 = f32x4.splat(0);
    const vlo = i32x4.splat(-nmax);
    const vhi = i32x4.splat(nmax - 1);
    for (let i = 0; i < n; i++) {
      const vx = v128.load32_splat(x + (<usize>i << 2));
      const vw = qw != 0 ? v128.load32_splat(qw + (<usize>i << 2)) : f32x4.mul(vx, vx);
      const t = f32x4.add(f32x4.mul(vis, vx), f32x4.splat(MAGIC));
      const l = i32x4.sub(v128.and(t, i32x4.splat(0x7fffff)), i32x4.splat(0x400000));
      const fl = f32x4.convert_i32x4_s(i32x4.min_s(i32x4.max_s(l, vlo), vhi));
      aLX = f32x4.add(aLX, f32x4.mul(f32x4.mul(vw, vx), fl));
      aL2 = f32x4.add(aL2, f32x4.mul(f32x4.mul(vw, fl), fl));
    }
    qxJudge(n, nmax, x, L, sc0, f32x4.extract_lane(aLX, 0), f32x4.extract_lane(aL2, 0));
    qxJudge(n, nmax, x, L, sc1, f32x4.extract_lane(aLX, 1), f32x4.extract_lane(aL2, 1));
    if (t0 + 2 < 18) qxJudge(n, nmax, x, L, sc2, f32x4.extract_lane(aLX, 2), f32x4.extract_lane(aL2, 2));
    if (t0 + 3 < 18) qxJudge(n, nmax, x, L, sc3, f32x4.extract_lane(aLX, 3), f32x4.extract_lane(aL2, 3));
  }
  return qxScale;
}

/**
 * make_qx1 for four sub-blocks of 16 at once (n = 16), one per SIMD lane: x transposed at S_XT, the weights
 * (qw, or x² when none) at S_WT. Per lane every operation is the scalar make_qx1's in its order, and the
 * trials are judged per lane in the scalar's `is` order (branches as selects), so each lane's levels and
 * scale are the scalar's bits. Levels (l + nmax, f32) go to S_LT; returns the four scales.
 */
function make_qx1_x4(nmax: i32, s: usize): v128 {
  const XT = s + S_XT;
  const WT = s + S_WT;
  const WXT = s + S_WXT;
  const LT = s + S_LT;
  const n = 16;
  const zero = f32x4.splat(0);
  let mx = zero;
  let amax = zero;
  for (let i = 0; i < n; i++) {
    const p = <usize>i << 4;
    const v = v128.load(XT + p);
    const ax = f32x4.abs(v);
    const m = f32x4.gt(ax, amax);
    amax = v128.bitselect(ax, amax, m);
    mx = v128.bitselect(v, mx, m);
    v128.store(WXT + p, f32x4.mul(v128.load(WT + p), v));
  }
  const tiny = f32x4.lt(amax, f32x4.splat(GROUP_MAX_EPS)); // those lanes: levels 0, scale 0 (set at the end)
  const fn = <f32>nmax;
  const magic = f32x4.splat(MAGIC);
  // levels as floats: (y + 1.5·2^23) − 1.5·2^23 is nearest_int(y) exactly for |y| < 2^22 (the sum lands in
  // [2^23, 2^24), where f32 steps by 1, and the difference is exact), and here |y| = |iscale·x| ≤
  // (nmax + 0.9)·|x|/|mx| ≤ nmax + 0.9 in every lane that is not tiny (tiny lanes are overwritten below);
  // clamping integers in f32 is exact, so each level is the scalar's, with two fewer operations
  const vlo = f32x4.splat(<f32>-nmax);
  const vhi = f32x4.splat(<f32>(nmax - 1));
  const vn = f32x4.splat(fn);
  let iscale = f32x4.div(f32x4.splat(-fn), mx);
  let sumlx = zero;
  let suml2 = zero;
  // which clamps can bind (lanes that are not tiny; tiny lanes are overwritten at the end): |x| ≤ |mx| in a
  // lane, so |iscale·x| ≤ (nmax + 0.1·is)·(1 + 3ε) with ε = 2^−24 for the f32 roundings of 0.1·is, the sum,
  // the quotient and the product. The first fit (is = 0): nearest ≤ nmax in magnitude, so only the upper
  // clamp (nmax − 1) can bind; trials is = −5 … 4: |y| < nmax + 0.5, the same; is ≤ −6: |y| < nmax − 0.5, so
  // the level is within [−(nmax − 1), nmax − 1] and neither binds; is ≥ 5: |y| reaches nmax + 0.5 … nmax + 0.9,
  // so both can. Dropping a clamp that cannot bind keeps every level the scalar's (kquant-encoders tests).
  for (let i = 0; i < n; i++) {
    const p = <usize>i << 4;
    const fl = f32x4.pmin(f32x4.sub(f32x4.add(f32x4.mul(iscale, v128.load(XT + p)), magic), magic), vhi);
    v128.store(LT + p, f32x4.add(fl, vn));
    sumlx = f32x4.add(sumlx, f32x4.mul(v128.load(WXT + p), fl));
    suml2 = f32x4.add(suml2, f32x4.mul(f32x4.mul(v128.load(WT + p), fl), fl));
  }
  // truthy(suml2): non-zero and not NaN
  let scale = v128.bitselect(f32x4.div(sumlx, suml2), zero, v128.and(f32x4.ne(suml2, zero), f32x4.eq(suml2, suml2)));
  let best = f32x4.mul(scale, sumlx);
  // the 18 trials two at a time: both trials' sums come from one pass over the values (shared loads and loop
  // overhead, two independent add chains per sum), each sum in the scalar's order; the verdicts then follow in
  // the scalar's trial order (t before t + 1), so the result is the one-trial loop's
  for (let t = 0; t < 18; t += 2) {
    const iscA = f32x4.div(f32x4.neg(f32x4.splat(fn + QX_TENTH * <f32>qxTrial(t))), mx);
    const iscB = f32x4.div(f32x4.neg(f32x4.splat(fn + QX_TENTH * <f32>qxTrial(t + 1))), mx);
    let xa = zero;
    let la = zero;
    let xb = zero;
    let lb = zero;
    // pairs from t 0, 2 (trials 0 … 3): is −9 … −6, no clamp binds; t 4 … 10 (trials 4 … 11): is −5 … 3, only
    // the upper one; t 12 … 16 (trials 12 … 17): is 4 … 9, both (for is = 4 the lower one cannot bind, and a
    // clamp where it cannot bind changes nothing)
    if (t < 4) {
      for (let i = 0; i < n; i++) {
        const p = <usize>i << 4;
        const vx = v128.load(XT + p);
        const vwx = v128.load(WXT + p);
        const vw = v128.load(WT + p);
        const fa = f32x4.sub(f32x4.add(f32x4.mul(iscA, vx), magic), magic);
        const fb = f32x4.sub(f32x4.add(f32x4.mul(iscB, vx), magic), magic);
        xa = f32x4.add(xa, f32x4.mul(vwx, fa));
        la = f32x4.add(la, f32x4.mul(f32x4.mul(vw, fa), fa));
        xb = f32x4.add(xb, f32x4.mul(vwx, fb));
        lb = f32x4.add(lb, f32x4.mul(f32x4.mul(vw, fb), fb));
      }
    } else if (t < 12) {
      for (let i = 0; i < n; i++) {
        const p = <usize>i << 4;
        const vx = v128.load(XT + p);
        const vwx = v128.load(WXT + p);
        const vw = v128.load(WT + p);
        const fa = f32x4.pmin(f32x4.sub(f32x4.add(f32x4.mul(iscA, vx), magic), magic), vhi);
        const fb = f32x4.pmin(f32x4.sub(f32x4.add(f32x4.mul(iscB, vx), magic), magic), vhi);
        xa = f32x4.add(xa, f32x4.mul(vwx, fa));
        la = f32x4.add(la, f32x4.mul(f32x4.mul(vw, fa), fa));
        xb = f32x4.add(xb, f32x4.mul(vwx, fb));
        lb = f32x4.add(lb, f32x4.mul(f32x4.mul(vw, fb), fb));
      }
    } else {
      for (let i = 0; i < n; i++) {
        const p = <usize>i << 4;
        const vx = v128.load(XT + p);
        const vwx = v128.load(WXT + p);
        const vw = v128.load(WT + p);
        const fa = f32x4.pmin(f32x4.pmax(f32x4.sub(f32x4.add(f32x4.mul(iscA, vx), magic), magic), vlo), vhi);
        const fb = f32x4.pmin(f32x4.pmax(f32x4.sub(f32x4.add(f32x4.mul(iscB, vx), magic), magic), vlo), vhi);
        xa = f32x4.add(xa, f32x4.mul(vwx, fa));
        la = f32x4.add(la, f32x4.mul(f32x4.mul(vw, fa), fa));
        xb = f32x4.add(xb, f32x4.mul(vwx, fb));
        lb = f32x4.add(lb, f32x4.mul(f32x4.mul(vw, fb), fb));
      }
    }
    for (let k = 0; k < 2; k++) {
      const isc = k == 0 ? iscA : iscB;
      const sumlx = k == 0 ? xa : xb;
      const suml2 = k == 0 ? la : lb;
      const take = v128.and(f32x4.gt(suml2, zero), f32x4.gt(f32x4.mul(sumlx, sumlx), f32x4.mul(best, suml2)));
      if (!v128.any_true(take)) continue;
      // the trial's levels again (cheaper than storing them on every trial: most trials change nothing)
      for (let i = 0; i < n; i++) {
        const p = <usize>i << 4;
        const fl = f32x4.pmin(f32x4.pmax(f32x4.sub(f32x4.add(f32x4.mul(isc, v128.load(XT + p)), magic), magic), vlo), vhi);
        v128.store(LT + p, v128.bitselect(f32x4.add(fl, vn), v128.load(LT + p), take));
      }
      const sc = f32x4.div(sumlx, suml2);
      scale = v128.bitselect(sc, scale, take);
      best = v128.bitselect(f32x4.mul(sc, sumlx), best, take);
    }
  }
  if (v128.any_true(tiny)) {
    for (let i = 0; i < n; i++) v128.store(LT + (<usize>i << 4), v128.bitselect(zero, v128.load(LT + (<usize>i << 4)), tiny));
    scale = v128.bitselect(zero, scale, tiny);
  }
  return scale;
}

/** 16 values of each of sub-blocks 4g … 4g+3 (stride 16 f32) at x → transposed at dst (f32x4[16]) */
function transpose16x4(x: usize, g: i32, dst: usize): void {
  const x0 = x + (<usize>(4 * g) << 6);
  for (let q = 0; q < 4; q++) transpose4x4(x0 + (<usize>q << 4), 64, dst + (<usize>q << 6));
}

const QX_TENTH: f32 = 0.1;
/** make_qx_quants' running best fit (globals: one per thread's instance) */
let qxScale: f32 = 0;
let qxBest: f32 = 0;

/** trial t (0 … 17, larger t repeat 17) of make_qx_quants: is = −9 … −1, 1 … 9 */
@inline function qxTrial(t: i32): i32 {
  const u = min(t, 17);
  return u < 9 ? u - 9 : u - 8;
}

/** one trial's verdict in make_qx_quants: a better fit replaces L, the scale and the best */
@inline function qxJudge(n: i32, nmax: i32, x: usize, L: usize, iscale: f32, sumlx: f32, suml2: f32): void {
  if (suml2 > 0 && sumlx * sumlx > qxBest * suml2) {
    for (let i = 0; i < n; i++) sb(L, i, nmax + clampi(nearest_int(iscale * lf(x, i)), -nmax, nmax - 1));
    qxScale = sumlx / suml2;
    qxBest = qxScale * sumlx;
  }
}

/** make_q3_quants(n, nmax, do_rmse = true) (search.ts makeQ3Quants): int8 levels, l + nmax on return */
function make_q3(n: i32, nmax: i32, x: usize, L: usize): f32 {
  let mx: f32 = 0;
  let amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = abs(lf(x, i));
    if (ax > amax) {
      amax = ax;
      mx = lf(x, i);
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) sb(L, i, 0);
    return 0;
  }
  const iscale: f32 = -<f32>nmax / mx;
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = lf(x, i);
    const l = clampi(nearest_int(iscale * v), -nmax, nmax - 1);
    sb(L, i, l);
    const w: f32 = v * v;
    sumlx = sumlx + w * v * <f32>l;
    suml2 = suml2 + w * <f32>l * <f32>l;
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const v = lf(x, i);
      const w: f32 = v * v;
      const li = lsb(L, i);
      let slx: f32 = sumlx - w * v * <f32>li;
      if (slx > 0) {
        let sl2: f32 = suml2 - w * <f32>li * <f32>li;
        const newL = clampi(nearest_int(v * sl2 / slx), -nmax, nmax - 1);
        if (newL != li) {
          slx = slx + w * v * <f32>newL;
          sl2 = sl2 + w * <f32>newL * <f32>newL;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            sb(L, i, newL);
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  for (let i = 0; i < n; i++) sb(L, i, lsb(L, i) + nmax);
  return suml2 > 0 ? sumlx / suml2 : 0;
}

/** make_qp_quants (search.ts makeQpQuants): positive levels (u8 stores wrap as the TS Uint8Array's do) */
function make_qp(n: i32, nmax: i32, x: usize, L: usize, qw: usize): f32 {
  let mx: f32 = 0;
  for (let i = 0; i < n; i++) mx = mx > lf(x, i) ? mx : lf(x, i);
  if (mx < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) sb(L, i, 0);
    return 0;
  }
  const fn = <f32>nmax;
  let iscale: f32 = fn / mx;
  for (let i = 0; i < n; i++) sb(L, i, nearest_int(iscale * lf(x, i)));
  const scale: f32 = <f32>1 / iscale;
  let bestMse: f32 = 0;
  for (let i = 0; i < n; i++) {
    const diff: f32 = lf(x, i) - scale * <f32>lb(L, i);
    bestMse = bestMse + lf(qw, i) * diff * diff;
  }
  const tenth: f32 = 0.1;
  for (let is = -4; is <= 4; is++) {
    if (is == 0) continue;
    const iscaleIs: f32 = (tenth * <f32>is + fn) / mx;
    const scaleIs: f32 = <f32>1 / iscaleIs;
    let mse: f32 = 0;
    for (let i = 0; i < n; i++) {
      const l = min(nmax, nearest_int(iscaleIs * lf(x, i)));
      const diff: f32 = lf(x, i) - scaleIs * <f32>l;
      mse = mse + lf(qw, i) * diff * diff;
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const l = min(nmax, nearest_int(iscale * lf(x, i)));
    sb(L, i, l);
    const w = lf(qw, i);
    sumlx = sumlx + w * lf(x, i) * <f32>l;
    suml2 = suml2 + w * <f32>l * <f32>l;
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const w = lf(qw, i);
      const li = lb(L, i);
      let slx: f32 = sumlx - w * lf(x, i) * <f32>li;
      let sl2: f32 = suml2 - w * <f32>li * <f32>li;
      if (slx > 0 && sl2 > 0) {
        const newL = min(nmax, nearest_int(lf(x, i) * sl2 / slx));
        if (newL != li) {
          slx = slx + w * lf(x, i) * <f32>newL;
          sl2 = sl2 + w * <f32>newL * <f32>newL;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            sb(L, i, newL);
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  return suml2 > 0 ? sumlx / suml2 : 0;
}

// ---------------------------------------------------------------- Q4_K / Q5_K (kquants.ts)

@inline function scaleK4(j: i32, q: usize): i32 {
  return j < 4 ? lb(q, j) & 63 : (lb(q, j + 4) & 0xf) | ((lb(q, j - 4) >> 6) << 4);
}
@inline function minK4(j: i32, q: usize): i32 {
  return j < 4 ? lb(q, j + 4) & 63 : (lb(q, j + 4) >> 4) | ((lb(q, j) >> 6) << 4);
}

function packScaleMinK4(ls: usize, lm: usize, q: usize): void {
  for (let j = 0; j < 8; j++) {
    const s = lb(ls, j);
    const m = lb(lm, j);
    if (j < 4) {
      sb(q, j, s);
      sb(q, j + 4, m);
    } else {
      sb(q, j + 4, (s & 0xf) | ((m & 0xf) << 4));
      sb(q, j - 4, lb(q, j - 4) | ((s >> 4) << 6));
      sb(q, j, lb(q, j) | ((m >> 4) << 6));
    }
  }
}

/** quantize_row_q4_K_ref / q5_K_ref scales (kquants.ts refScalesK); the sub-blocks' searches four at a time */
function refScalesK(x: usize, o: usize, s: usize, nmax: i32, rmin: f32, rdelta: f32, nstep: i32): void {
  for (let g = 0; g < 2; g++) {
    transposeX4(x, g, s);
    // per lane: sumX2 over the sub-block in order, avX = √(sumX2/32), weights avX + |x|
    let sumX2 = f32x4.splat(0);
    for (let l = 0; l < 32; l++) {
      const v = v128.load(s + S_XT + (<usize>l << 4));
      sumX2 = f32x4.add(sumX2, f32x4.mul(v, v));
    }
    const avX = f32x4.sqrt(f32x4.div(sumX2, f32x4.splat(32)));
    for (let l = 0; l < 32; l++) v128.store(s + S_WT + (<usize>l << 4), f32x4.add(avX, f32x4.abs(v128.load(s + S_XT + (<usize>l << 4)))));
    const sc = make_qkx2_x4(nmax, s, rmin, rdelta, nstep);
    v128.store(s + S_SC + (<usize>g << 4), sc);
    v128.store(s + S_MN + (<usize>g << 4), outMin4);
    storeLevels4(s + S_L, g, s);
  }
  let maxScale: f32 = 0;
  let maxMin: f32 = 0;
  for (let j = 0; j < 8; j++) {
    const sc = lf(s + S_SC, j);
    const mn = lf(s + S_MN, j);
    if (sc > maxScale) maxScale = sc;
    if (mn > maxMin) maxMin = mn;
  }
  const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : 0;
  const invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : 0;
  for (let j = 0; j < 8; j++) {
    sb(s + S_LS, j, min(63, nearest_int(invScale * lf(s + S_SC, j)) & 0xff));
    sb(s + S_LM, j, min(63, nearest_int(invMin * lf(s + S_MN, j)) & 0xff));
  }
  packScaleMinK4(s + S_LS, s + S_LM, o + 4);
  stF16(o, maxScale / 63);
  stF16(o + 2, maxMin / 63);
}

/** quantize_row_q4_K_impl / q5_K_impl scales (kquants.ts implScalesK) */
function implScalesK(x: usize, o: usize, qw: usize, s: usize, nmax: i32): void {
  let sumX2: f32 = 0;
  for (let l = 0; l < 256; l++) sumX2 = sumX2 + lf(x, l) * lf(x, l);
  const sigma2: f32 = (<f32>2 * sumX2) / 256;
  const vs2 = f32x4.splat(sigma2);
  for (let g = 0; g < 2; g++) {
    // the importance row transposed like x (through S_XT), then x itself
    transposeX4(qw, g, s);
    for (let l = 0; l < 32; l++) v128.store(s + S_WT + (<usize>l << 4), v128.load(s + S_XT + (<usize>l << 4)));
    transposeX4(x, g, s);
    // per lane: weights qw·√(σ² + x²), their sum in order
    let sumw = f32x4.splat(0);
    for (let l = 0; l < 32; l++) {
      const p = s + S_WT + (<usize>l << 4);
      const v = v128.load(s + S_XT + (<usize>l << 4));
      const wl = f32x4.mul(v128.load(p), f32x4.sqrt(f32x4.add(vs2, f32x4.mul(v, v))));
      v128.store(p, wl);
      sumw = f32x4.add(sumw, wl);
    }
    v128.store(s + S_SW + (<usize>g << 4), sumw);
    v128.store(s + S_SC + (<usize>g << 4), make_qkx2_x4(nmax, s, -0.9, 0.05, 36));
    v128.store(s + S_MN + (<usize>g << 4), outMin4);
    storeLevels4(s + S_L, g, s);
  }
  const dBlock = make_qp(8, 63, s + S_SC, s + S_LS, s + S_SW);
  const mBlock = make_qp(8, 63, s + S_MN, s + S_LM, s + S_SW);
  for (let j = 0; j < 8; j++) {
    sb(s + S_LS, j, min(63, lb(s + S_LS, j)));
    sb(s + S_LM, j, min(63, lb(s + S_LM, j)));
  }
  packScaleMinK4(s + S_LS, s + S_LM, o + 4);
  stF16(o, dBlock);
  stF16(o + 2, mBlock);
}

/** kquants.ts requantK4: levels from the stored f16 super-scales and 6-bit scale/min */
function requantK4(x: usize, o: usize, L: usize, nmax: i32): void {
  const dAll = ldF16(o);
  const mAll = ldF16(o + 2);
  for (let j = 0; j < 8; j++) {
    const d: f32 = dAll * <f32>scaleK4(j, o + 4);
    if (!truthy(d)) continue;
    const dm: f32 = mAll * <f32>minK4(j, o + 4);
    const xj = x + (<usize>j << 7);
    for (let ii = 0; ii < 32; ii++) sb(L, 32 * j + ii, clampi(nearest_int((lf(xj, ii) + dm) / d), 0, nmax));
  }
}

function packQ4K(L: usize, o: usize): void {
  for (let j = 0, q = o + 16; j < 256; j += 64, q += 32) {
    for (let l = 0; l < 32; l++) sb(q, l, lb(L, j + l) | (lb(L, j + l + 32) << 4));
  }
}

function packQ5K(L: usize, o: usize): void {
  const qh = o + 16;
  memory.fill(qh, 0, 32);
  let m1 = 1;
  let m2 = 2;
  for (let n = 0, ql = o + 48; n < 256; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
    for (let j = 0; j < 32; j++) {
      let l1 = lb(L, n + j);
      if (l1 > 15) {
        l1 -= 16;
        sb(qh, j, lb(qh, j) | m1);
      }
      let l2 = lb(L, n + j + 32);
      if (l2 > 15) {
        l2 -= 16;
        sb(qh, j, lb(qh, j) | m2);
      }
      sb(ql, j, l1 | (l2 << 4));
    }
  }
}

// ---------------------------------------------------------------- Q6_K

function quantQ6K(x: usize, o: usize, qw: usize, s: usize): void {
  const L = s + S_L;
  // the 16 sub-blocks' make_qx_quants four at a time (make_qx1_x4): weights qw, or x²
  for (let g = 0; g < 4; g++) {
    transpose16x4(x, g, s + S_XT);
    if (qw != 0) transpose16x4(qw, g, s + S_WT);
    else {
      for (let i = 0; i < 16; i++) {
        const v = v128.load(s + S_XT + (<usize>i << 4));
        v128.store(s + S_WT + (<usize>i << 4), f32x4.mul(v, v));
      }
    }
    v128.store(s + S_SC + (<usize>g << 4), make_qx1_x4(32, s));
    storeLevels16x4(s + S_LT, L + <usize>(64 * g));
  }
  let maxScale: f32 = 0;
  let maxAbsScale: f32 = 0;
  for (let ib = 0; ib < 16; ib++) {
    const sc = lf(s + S_SC, ib);
    const a = abs(sc);
    if (a > maxAbsScale) {
      maxAbsScale = a;
      maxScale = sc;
    }
  }
  if (maxAbsScale < GROUP_MAX_EPS) {
    memory.fill(o, 0, 210);
    return;
  }
  const iscale: f32 = <f32>-128 / maxScale;
  stF16(o + 208, <f32>1 / iscale);
  for (let ib = 0; ib < 16; ib++) sb(o + 192, ib, min(127, nearest_int(iscale * lf(s + S_SC, ib))) & 0xff);
  const dAll = ldF16(o + 208);
  // per lane the scalar clampi(nearest_int(x / d), −32, 31) + 32: IEEE division, the same magic-number
  // rounding and integer clamp, so the bytes are the scalar loop's
  const magic = f32x4.splat(MAGIC);
  const mant = i32x4.splat(0x7fffff);
  const bias = i32x4.splat(0x400000 - 32);
  const lo = i32x4.splat(0);
  const hi = i32x4.splat(63);
  for (let j = 0; j < 16; j++) {
    const d: f32 = dAll * <f32>lsb(o + 192, j);
    if (!truthy(d)) continue;
    const xj = x + (<usize>j << 6);
    const vd = f32x4.splat(d);
    const q0 = levelsQ6(v128.load(xj), vd, magic, mant, bias, lo, hi);
    const q1 = levelsQ6(v128.load(xj, 16), vd, magic, mant, bias, lo, hi);
    const q2 = levelsQ6(v128.load(xj, 32), vd, magic, mant, bias, lo, hi);
    const q3 = levelsQ6(v128.load(xj, 48), vd, magic, mant, bias, lo, hi);
    v128.store(L + (<usize>j << 4), i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  }
  // the 6-bit levels (0 … 63) → ql nibbles and qh 2-bit fields, 16 bytes at a time; 16-bit-lane shifts are
  // exact here (a level's bits never cross into its neighbour byte after the masks)
  const m4 = i8x16.splat(0x0f);
  for (let j = 0, ql = o, qh = o + 128; j < 256; j += 128, ql += 64, qh += 32) {
    for (let l = 0; l < 32; l += 16) {
      const p = L + <usize>(j + l);
      const a = v128.load(p);
      const b = v128.load(p, 32);
      const c = v128.load(p, 64);
      const e = v128.load(p, 96);
      v128.store(ql + <usize>l, v128.or(v128.and(a, m4), i16x8.shl(v128.and(c, m4), 4)));
      v128.store(ql + <usize>(l + 32), v128.or(v128.and(b, m4), i16x8.shl(v128.and(e, m4), 4)));
      const ah = v128.and(i16x8.shr_u(a, 4), m4);
      const bh = v128.and(i16x8.shr_u(b, 4), m4);
      const ch = v128.and(i16x8.shr_u(c, 4), m4);
      const eh = v128.and(i16x8.shr_u(e, 4), m4);
      v128.store(qh + <usize>l, v128.or(v128.or(ah, i16x8.shl(bh, 2)), v128.or(i16x8.shl(ch, 4), i16x8.shl(eh, 6))));
    }
  }
}

/** clamp(nearest_int(x / d), −32, 31) + 32 per lane (bias folds the + 32 into nearest_int's − 0x400000) */
@inline function levelsQ6(x: v128, vd: v128, magic: v128, mant: v128, bias: v128, lo: v128, hi: v128): v128 {
  const t = f32x4.add(f32x4.div(x, vd), magic);
  return i32x4.min_s(i32x4.max_s(i32x4.sub(v128.and(t, mant), bias), lo), hi);
}

/** make_qx1_x4's levels (f32x4[16] at LT: element i, lane k = sub-block k) → bytes of the 4 sub-blocks at
 * l0 + 16·k + i: exact (levels are integers 0 … 63), by narrowing and two rounds of byte shuffles */
function storeLevels16x4(LT: usize, l0: usize): void {
  // B_q: byte 4·i' + k = element 4q + i', lane k
  const b0 = narrowLevels4(LT);
  const b1 = narrowLevels4(LT + 64);
  const b2 = narrowLevels4(LT + 128);
  const b3 = narrowLevels4(LT + 192);
  // lanes 0, 1 of B0 | B1 (8 bytes each: elements 0 … 7 of lanes 0 and 1), and lanes 2, 3
  const t01a = i8x16.shuffle(b0, b1, 0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const t01b = i8x16.shuffle(b0, b1, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  const t23a = i8x16.shuffle(b2, b3, 0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const t23b = i8x16.shuffle(b2, b3, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  v128.store(l0, i8x16.shuffle(t01a, t23a, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
  v128.store(l0, i8x16.shuffle(t01a, t23a, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 16);
  v128.store(l0, i8x16.shuffle(t01b, t23b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), 32);
  v128.store(l0, i8x16.shuffle(t01b, t23b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 48);
}

/** four f32x4 levels at p (elements i … i+3) → 16 bytes, byte 4·i' + k = element i + i', lane k */
@inline function narrowLevels4(p: usize): v128 {
  const a = i32x4.trunc_sat_f32x4_s(v128.load(p));
  const b = i32x4.trunc_sat_f32x4_s(v128.load(p, 16));
  const c = i32x4.trunc_sat_f32x4_s(v128.load(p, 32));
  const d = i32x4.trunc_sat_f32x4_s(v128.load(p, 48));
  return i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(a, b), i16x8.narrow_i32x4_s(c, d));
}

// ---------------------------------------------------------------- Q2_K / Q3_K

function pack2bit(L: usize, q: usize): void {
  for (let j = 0; j < 256; j += 128) {
    for (let l = 0; l < 32; l++) {
      sb(q, j / 4 + l, lb(L, j + l) | (lb(L, j + l + 32) << 2) | (lb(L, j + l + 64) << 4) | (lb(L, j + l + 96) << 6));
    }
  }
}

function requantQ2(x: usize, o: usize, L: usize): void {
  const dAll = ldF16(o + 80);
  const mAll = ldF16(o + 82);
  for (let j = 0; j < 16; j++) {
    const sc = lb(o, j);
    const d: f32 = dAll * <f32>(sc & 0xf);
    if (!truthy(d)) continue;
    const dm: f32 = mAll * <f32>(sc >> 4);
    const xj = x + (<usize>j << 6);
    for (let ii = 0; ii < 16; ii++) sb(L, 16 * j + ii, clampi(nearest_int((lf(xj, ii) + dm) / d), 0, 3));
  }
}

function quantQ2KRef(x: usize, o: usize, s: usize): void {
  const w = s + S_W;
  const L = s + S_L;
  let maxScale: f32 = 0;
  let maxMin: f32 = 0;
  for (let j = 0; j < 16; j++) {
    const xj = x + (<usize>j << 6);
    for (let l = 0; l < 16; l++) sf(w, l, abs(lf(xj, l)));
    const sc = make_qkx2(16, 3, xj, w, L + 16 * j, s, -0.5, 0.1, 15, true);
    sf(s + S_SC, j, sc);
    sf(s + S_MN, j, outMin);
    if (sc > maxScale) maxScale = sc;
    if (outMin > maxMin) maxMin = outMin;
  }
  if (maxScale > 0) {
    const iscale: f32 = <f32>15 / maxScale;
    for (let j = 0; j < 16; j++) sb(o, j, nearest_int(iscale * lf(s + S_SC, j)));
    stF16(o + 80, maxScale / 15);
  } else {
    memory.fill(o, 0, 16);
    stF16(o + 80, 0);
  }
  if (maxMin > 0) {
    const iscale: f32 = <f32>15 / maxMin;
    for (let j = 0; j < 16; j++) sb(o, j, lb(o, j) | (nearest_int(iscale * lf(s + S_MN, j)) << 4));
    stF16(o + 82, maxMin / 15);
  } else {
    stF16(o + 82, 0);
  }
  requantQ2(x, o, L);
  pack2bit(L, o + 16);
}

function quantQ2KImpl(x: usize, o: usize, qw: usize, s: usize): void {
  const w = s + S_W;
  const L = s + S_L;
  let sumx2: f32 = 0;
  for (let j = 0; j < 256; j++) sumx2 = sumx2 + lf(x, j) * lf(x, j);
  const sigma2: f32 = sumx2 / 256;
  for (let j = 0; j < 16; j++) {
    const xj = x + (<usize>j << 6);
    const qj = qw + (<usize>j << 6);
    for (let l = 0; l < 16; l++) {
      const v = lf(xj, l);
      sf(w, l, lf(qj, l) * sqrt<f32>(sigma2 + v * v));
    }
    let sumw: f32 = 0;
    for (let l = 0; l < 16; l++) sumw = sumw + lf(w, l);
    sf(s + S_SW, j, sumw);
    sf(s + S_SC, j, make_qkx2(16, 3, xj, w, L + 16 * j, s, -0.9, 0.05, 36, false));
    sf(s + S_MN, j, outMin);
  }
  const dm = make_qp(16, 15, s + S_SC, s + S_LS, s + S_SW);
  const mm = make_qp(16, 15, s + S_MN, s + S_LM, s + S_SW);
  stF16(o + 80, dm);
  stF16(o + 82, mm);
  for (let j = 0; j < 16; j++) sb(o, j, lb(s + S_LS, j) | (lb(s + S_LM, j) << 4));
  requantQ2(x, o, L);
  pack2bit(L, o + 16);
}

@inline function q3Scale(q: usize, j: i32): i32 {
  const low = j < 8 ? lb(q, j) & 0xf : lb(q, j - 8) >> 4;
  const high = (lb(q, 8 + (j % 4)) >> (2 * (j >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

function packQ3Scales(ls: usize, q: usize): void {
  memory.fill(q, 0, 12);
  for (let j = 0; j < 16; j++) {
    let l = lb(ls, j);
    if (j < 8) sb(q, j, l & 0xf);
    else sb(q, j - 8, lb(q, j - 8) | ((l & 0xf) << 4));
    l >>= 4;
    sb(q, 8 + (j % 4), lb(q, 8 + (j % 4)) | (l << (2 * (j >> 2))));
  }
}

/** kquants.ts finishQ3: requantize with the stored scales, pack hmask and qs (L int8) */
function finishQ3(x: usize, o: usize, L: usize): void {
  const dAll = ldF16(o + 108);
  for (let j = 0; j < 16; j++) {
    const d: f32 = dAll * <f32>q3Scale(o + 96, j);
    if (!truthy(d)) continue;
    const xj = x + (<usize>j << 6);
    for (let ii = 0; ii < 16; ii++) sb(L, 16 * j + ii, clampi(nearest_int(lf(xj, ii) / d), -4, 3) + 4);
  }
  memory.fill(o, 0, 32);
  let m = 0;
  let hm = 1;
  for (let j = 0; j < 256; j++) {
    if (lsb(L, j) > 3) {
      sb(o, m, lb(o, m) | hm);
      sb(L, j, lsb(L, j) - 4);
    }
    if (++m == 32) {
      m = 0;
      hm <<= 1;
    }
  }
  pack2bit(L, o + 32);
}

function quantQ3KRef(x: usize, o: usize, s: usize): void {
  const L = s + S_L;
  let maxScale: f32 = 0;
  let amax: f32 = 0;
  for (let j = 0; j < 16; j++) {
    const sc = make_q3(16, 4, x + (<usize>j << 6), L + 16 * j);
    sf(s + S_SC, j, sc);
    const a = abs(sc);
    if (a > amax) {
      amax = a;
      maxScale = sc;
    }
  }
  if (truthy(maxScale)) {
    const iscale: f32 = <f32>-32 / maxScale;
    for (let j = 0; j < 16; j++) {
      const l = <i32><i8>nearest_int(iscale * lf(s + S_SC, j));
      sb(s + S_LS, j, clampi(l, -32, 31) + 32);
    }
    packQ3Scales(s + S_LS, o + 96);
    stF16(o + 108, <f32>1 / iscale);
  } else {
    memory.fill(o + 96, 0, 12);
    stF16(o + 108, 0);
  }
  finishQ3(x, o, L);
}

function quantQ3KImpl(x: usize, o: usize, qw: usize, s: usize): void {
  const w = s + S_W;
  const L = s + S_L;
  let sumx2: f32 = 0;
  for (let j = 0; j < 256; j++) sumx2 = sumx2 + lf(x, j) * lf(x, j);
  const sigma2: f32 = (<f32>2 * sumx2) / 256;
  for (let j = 0; j < 16; j++) {
    const xj = x + (<usize>j << 6);
    const qj = qw + (<usize>j << 6);
    for (let l = 0; l < 16; l++) {
      const v = lf(xj, l);
      sf(w, l, lf(qj, l) * sqrt<f32>(sigma2 + v * v));
    }
    let sumw: f32 = 0;
    for (let l = 0; l < 16; l++) sumw = sumw + lf(w, l);
    sf(s + S_SW, j, sumw);
    sf(s + S_SC, j, make_qx1(16, 4, xj, L + 16 * j, w));
  }
  const dBlock = make_qx1(16, 32, s + S_SC, s + S_LS, s + S_SW);
  packQ3Scales(s + S_LS, o + 96);
  stF16(o + 108, dBlock);
  finishQ3(x, o, L);
}

// ---------------------------------------------------------------- entry

// ggml type ids (src/ggml/types.ts GgmlType)
const Q2_K = 10;
const Q3_K = 11;
const Q4_K = 12;
const Q5_K = 13;
const Q6_K = 14;

/** Is `type` one this file encodes (1) or not (0). */
export function kquant_supported(type: i32): i32 {
  return type >= Q2_K && type <= Q6_K ? 1 : 0;
}

/**
 * nb consecutive 256-blocks of f32 at x → ggml blocks at dst; qw (0 = none) is the importance of one row
 * of blocksPerRow blocks (block b uses qw + (b mod blocksPerRow)·1 KiB). scratch: `slots` lock words
 * (one 64-byte line per 16), then slots·KQ_SLOT_BYTES. Returns 0, or −1 when no slot was free (the
 * caller then encodes in TS) or −2 for a type this file does not encode.
 */
export function quantize_blocks_k(type: i32, x: usize, nb: i32, blocksPerRow: i32, dst: usize, qw: usize, scratch: usize, slots: i32): i32 {
  if (kquant_supported(type) == 0) return -2;
  let slot = -1;
  for (let i = 0; i < slots; i++) {
    if (atomic.cmpxchg<i32>(scratch + (<usize>i << 2), 0, 1) == 0) {
      slot = i;
      break;
    }
  }
  if (slot < 0) return -1;
  const s = scratch + (<usize>((slots + 15) >> 4) << 6) + <usize>slot * KQ_SLOT_BYTES;
  const bpb: usize = type == Q2_K ? 84 : type == Q3_K ? 110 : type == Q4_K ? 144 : type == Q5_K ? 176 : 210;
  for (let b = 0; b < nb; b++) {
    const xb = x + (<usize>b << 10);
    const o = dst + <usize>b * bpb;
    const q = qw != 0 ? qw + (<usize>(b % blocksPerRow) << 10) : 0;
    if (type == Q4_K || type == Q5_K) {
      const nmax = type == Q4_K ? 15 : 31;
      if (q != 0) implScalesK(xb, o, q, s, nmax);
      else if (type == Q4_K) refScalesK(xb, o, s, 15, -1, 0.1, 20);
      else refScalesK(xb, o, s, 31, -0.5, 0.1, 15);
      requantK4(xb, o, s + S_L, nmax);
      if (type == Q4_K) packQ4K(s + S_L, o);
      else packQ5K(s + S_L, o);
    } else if (type == Q6_K) {
      quantQ6K(xb, o, q, s);
    } else if (type == Q3_K) {
      if (q != 0) quantQ3KImpl(xb, o, q, s);
      else quantQ3KRef(xb, o, s);
    } else {
      if (q != 0) quantQ2KImpl(xb, o, q, s);
      else quantQ2KRef(xb, o, s);
    }
  }
  atomic.store<i32>(scratch + (<usize>slot << 2), 0);
  return 0;
}
