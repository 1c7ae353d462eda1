/**
 * Scale searches of ggml-quants.c, in C float arithmetic (see cfloat.ts): `make_qx_quants`,
 * `make_q3_quants`, `make_qkx2_quants`, `make_qkx3_quants`, `make_qp_quants`, `best_index_int8`.
 * All of them round with `nearest_int` (round half to even). Arrays are passed with offsets so the block
 * loops allocate nothing.
 */
import { fr, GROUP_MAX_EPS, nearestInt } from "./cfloat.js";

/**
 * make_qx_quants: symmetric levels L ∈ [0, 2·nmax) (stored as l + nmax) for x ≈ scale·l.
 * rmse_type 0: plain RTN with scale = max/−nmax. rmse_type 1..4: weighted least squares over 19 trial
 * scales (−(nmax ± 0.1·is)/max), weights qw or x², 1, |x|, √|x|. Negative rmse_type: one least-squares
 * step, averaged with the RTN scale. Returns the scale.
 */
export function makeQxQuants(
  n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, Lo: number,
  rmseType: number, qw: Float32Array | null, qwo = 0,
): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[Lo + i] = 0;
    return 0;
  }
  let iscale = fr(-nmax / max);
  if (rmseType === 0) {
    for (let i = 0; i < n; i++) {
      const l = nearestInt(fr(iscale * x[xo + i]!));
      L[Lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
    }
    return fr(1 / iscale);
  }
  let returnEarly = false;
  if (rmseType < 0) {
    rmseType = -rmseType;
    returnEarly = true;
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    let l = nearestInt(fr(iscale * v));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[Lo + i] = l + nmax;
    const w = qw ? qw[qwo + i]! : rmseWeight(rmseType, v);
    sumlx = fr(sumlx + fr(fr(w * v) * l));
    suml2 = fr(suml2 + fr(fr(w * l) * l));
  }
  let scale = suml2 ? fr(sumlx / suml2) : 0;
  if (returnEarly) return suml2 > 0 ? fr(0.5 * fr(scale + fr(1 / iscale))) : fr(1 / iscale);
  let best = fr(scale * sumlx);
  const tenth = fr(0.1);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(tenth * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      let l = nearestInt(fr(iscale * v));
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      const w = qw ? qw[qwo + i]! : rmseWeight(rmseType, v);
      sumlx = fr(sumlx + fr(fr(w * v) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(fr(iscale * x[xo + i]!));
        L[Lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}

/** make_qx_quants' weight without quant_weights: x², 1, |x| or √|x| for rmse_type 1, 2, 3, 4. */
function rmseWeight(rmseType: number, v: number): number {
  return rmseType === 1 ? fr(v * v) : rmseType === 2 ? 1 : rmseType === 3 ? Math.abs(v) : fr(Math.sqrt(Math.abs(v)));
}

/**
 * make_q3_quants: symmetric levels for Q3_K's reference quantizer. With do_rmse, starts from RTN and
 * moves single levels while the weighted (x²) fit improves, up to 5 passes. L gets l + nmax.
 */
export function makeQ3Quants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, Lo: number, doRmse: boolean): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[Lo + i] = 0;
    return 0;
  }
  const iscale = fr(-nmax / max);
  if (doRmse) {
    let sumlx = 0;
    let suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      let l = nearestInt(fr(iscale * v));
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      L[Lo + i] = l;
      const w = fr(v * v);
      sumlx = fr(sumlx + fr(fr(w * v) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    for (let itry = 0; itry < 5; itry++) {
      let nChanged = 0;
      for (let i = 0; i < n; i++) {
        const v = x[xo + i]!;
        const w = fr(v * v);
        const li = L[Lo + i]!;
        let slx = fr(sumlx - fr(fr(w * v) * li));
        if (slx > 0) {
          let sl2 = fr(suml2 - fr(fr(w * li) * li));
          let newL = nearestInt(fr(fr(v * sl2) / slx));
          newL = Math.max(-nmax, Math.min(nmax - 1, newL));
          if (newL !== li) {
            slx = fr(slx + fr(fr(w * v) * newL));
            sl2 = fr(sl2 + fr(fr(w * newL) * newL));
            if (sl2 > 0 && fr(fr(slx * slx) * suml2) > fr(fr(sumlx * sumlx) * sl2)) {
              L[Lo + i] = newL;
              sumlx = slx;
              suml2 = sl2;
              nChanged++;
            }
          }
        }
      }
      if (!nChanged) break;
    }
    for (let i = 0; i < n; i++) L[Lo + i] = L[Lo + i]! + nmax;
    return suml2 > 0 ? fr(sumlx / suml2) : 0;
  }
  for (let i = 0; i < n; i++) {
    let l = nearestInt(fr(iscale * x[xo + i]!));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[Lo + i] = l + nmax;
  }
  return fr(1 / iscale);
}

/**
 * make_qkx2_quants: affine levels L ∈ [0, nmax] for x ≈ scale·l − theMin (theMin ≥ 0). Tries nstep+1
 * inverse scales (rmin + rdelta·is + nmax)/(max − min) and keeps the weighted least-squares (scale, min)
 * with the smallest weighted error (squared, or absolute with use_mad). Writes −min to mins[mo]; returns scale.
 */
export function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, xo: number, weights: Float32Array, wo: number,
  L: Uint8Array, Lo: number, mins: Float32Array, mo: number, Laux: Uint8Array,
  rmin: number, rdelta: number, nstep: number, useMad: boolean,
): number {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = weights[wo]!;
  let sumX = fr(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    const w = weights[wo + i]!;
    sumW = fr(sumW + w);
    sumX = fr(sumX + fr(w * v));
  }
  // the same sums in double (and Σw·x²), for screening trials with lsErrorLowerBound
  let swD = 0;
  let sxD = 0;
  let sx2D = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const wv = weights[wo + i]! * v;
    swD += weights[wo + i]!;
    sxD += wv;
    sx2D += wv * v;
  }
  const maxAbs = Math.max(Math.abs(min), Math.abs(max));
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[Lo + i] = 0;
    mins[mo] = -min;
    return 0;
  }
  // `min` moves to the best fit found so far, and later trial scales (and levels) are relative to it
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const l = nearestInt(fr(iscale * fr(v - min)));
    const lc = Math.max(0, Math.min(nmax, l));
    L[Lo + i] = lc;
    let diff = fr(fr(fr(scale * lc) + min) - v);
    diff = useMad ? Math.abs(diff) : fr(diff * diff);
    bestError = fr(bestError + fr(weights[wo + i]! * diff));
  }
  if (nstep < 1) {
    mins[mo] = -min;
    return scale;
  }
  const dx = DX; // (n) x − min in f32, recomputed when min moves
  let dxMin = NaN;
  for (let is = 0, same = false; is <= nstep; is++, same = true) {
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    if (dxMin !== min) {
      for (let i = 0; i < n; i++) dx[i] = fr(x[xo + i]! - min);
      dxMin = min;
    }
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * dx[i]!))));
      if (Laux[i] !== l) {
        Laux[i] = l;
        same = false;
      }
    }
    // the same levels as the previous trial give the same sums and error, hence the same (non-)choice
    if (same) continue;
    if (!useMad) {
      let sl = 0;
      let sl2 = 0;
      let sxl = 0;
      for (let i = 0; i < n; i++) {
        const l = Laux[i]!;
        const wl = weights[wo + i]! * l;
        sl += wl;
        sl2 += wl * l;
        sxl += wl * x[xo + i]!;
      }
      if (lsErrorLowerBound(swD, sxD, sx2D, sl, sl2, sxl, nmax, maxAbs, n) >= bestError) continue;
    }
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      const l = Laux[i]!;
      const w = weights[wo + i]!;
      const wl = fr(w * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * v));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = useMad ? Math.abs(diff) : fr(diff * diff);
        curError = fr(curError + fr(weights[wo + i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[Lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  mins[mo] = -min;
  return scale;
}

/** scratch of the trial loops: x − min per element of a (sub-)block (n ≤ 256) */
const DX = new Float64Array(256);

/** 2^-24: unit roundoff of f32 */
const U32 = 2 ** -24;

/**
 * A lower bound on the weighted squared error that the f32 code of make_qkx2/qkx3_quants computes for a
 * trial's levels, from sums in double: Σw·(s·l + m − x)² is smallest at the least-squares (s, m), and the
 * f32 evaluation (rounded s·l, +m, −x, squares, products, a sum of n terms) can only undercut the exact
 * error at its own (s, m) by the rounding bound used here (generous: every term's absolute error ≤
 * 4u·(2|s|·nmax + 2|m| + max|x|), relative error of the sum ≤ (n + 8)u). A trial whose bound is not below
 * the best error so far cannot be chosen by the exact code, so the exact f32 pass is skipped for it;
 * the bytes are the same, the search is 2–3× faster. -Infinity when no bound is safe.
 */
function lsErrorLowerBound(sw: number, sx: number, sx2: number, sl: number, sl2: number, sxl: number, nmax: number, maxAbs: number, n: number): number {
  const D = sw * sl2 - sl * sl;
  if (!(D > 1e-9 * sw * sl2)) return -Infinity;
  const s = (sw * sxl - sx * sl) / D;
  const m = (sl2 * sx - sl * sxl) / D;
  // min over (s, m) of Σw(s·l + m − x)², by the normal equations; less a margin for cancellation in double
  const e = sx2 - s * sxl - m * sx - 1e-12 * sx2;
  const delta = 4 * U32 * (2 * Math.abs(s) * nmax + 2 * Math.abs(m) + maxAbs);
  const B = delta * delta * sw;
  if (!(e > B)) return -Infinity;
  return (e - 2 * Math.sqrt(e * B)) * (1 - (n + 8) * U32);
}

/**
 * make_qkx3_quants: make_qkx2_quants with optional weights (null → x²), a `max <= min` guard, and levels
 * in the search clamped before rounding (v > 0 ? nearest_int(min(v, nmax)) : 0), as the imatrix
 * quantizers (`quantize_row_q{2,4,5}_K_impl`, `q4_1/q5_1_impl`) call it. The guard and the clamp give
 * the same results as make_qkx2_quants' (max ≥ min always holds once min ≤ 0; the trial levels stay in
 * [0, nmax + rmin + nstep·rdelta], where rounding then clamping equals clamping then rounding), so it
 * runs make_qkx2_quants on the x² weights (the byte-identity tests against llama.cpp cover both).
 */
export function makeQkx3Quants(
  n: number, nmax: number, x: Float32Array, xo: number, weights: Float32Array | null,
  L: Uint8Array, mins: Float32Array, mo: number, Laux: Uint8Array,
  rmin: number, rdelta: number, nstep: number, useMad: boolean, Lo = 0,
): number {
  let w = weights;
  if (!w) {
    w = SQ;
    for (let i = 0; i < n; i++) SQ[i] = fr(x[xo + i]! * x[xo + i]!);
  }
  return makeQkx2Quants(n, nmax, x, xo, w, 0, L, Lo, mins, mo, Laux, rmin, rdelta, nstep, useMad);
}

/** scratch of makeQkx3Quants: x² weights of a (sub-)block (n ≤ 256) */
const SQ = new Float32Array(256);

/**
 * make_qp_quants: positive levels L ∈ [0, nmax] for non-negative x (the sub-block scales/mins of the
 * imatrix k-quant quantizers) with weights qw: 9 trial scales, then single-level moves (5 passes).
 */
export function makeQpQuants(n: number, nmax: number, x: Float32Array, L: Uint8Array, qw: Float32Array): number {
  let max = 0;
  for (let i = 0; i < n; i++) max = max > x[i]! ? max : x[i]!;
  if (max < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[i] = 0;
    return 0;
  }
  let iscale = fr(nmax / max);
  for (let i = 0; i < n; i++) L[i] = nearestInt(fr(iscale * x[i]!));
  const scale = fr(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; i++) {
    const diff = fr(x[i]! - fr(scale * L[i]!));
    bestMse = fr(bestMse + fr(fr(qw[i]! * diff) * diff));
  }
  const tenth = fr(0.1);
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const iscaleIs = fr(fr(fr(tenth * is) + nmax) / max);
    const scaleIs = fr(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.min(nmax, nearestInt(fr(iscaleIs * x[i]!)));
      const diff = fr(x[i]! - fr(scaleIs * l));
      mse = fr(mse + fr(fr(qw[i]! * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.min(nmax, nearestInt(fr(iscale * x[i]!)));
    L[i] = l;
    const w = qw[i]!;
    sumlx = fr(sumlx + fr(fr(w * x[i]!) * l));
    suml2 = fr(suml2 + fr(fr(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const w = qw[i]!;
      const li = L[i]!;
      let slx = fr(sumlx - fr(fr(w * x[i]!) * li));
      let sl2 = fr(suml2 - fr(fr(w * li) * li));
      if (slx > 0 && sl2 > 0) {
        const newL = Math.min(nmax, nearestInt(fr(fr(x[i]! * sl2) / slx)));
        if (newL !== li) {
          slx = fr(slx + fr(fr(w * x[i]!) * newL));
          sl2 = fr(sl2 + fr(fr(w * newL) * newL));
          if (fr(fr(slx * slx) * suml2) > fr(fr(sumlx * sumlx) * sl2)) {
            L[i] = newL;
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  return suml2 > 0 ? fr(sumlx / suml2) : 0;
}

/**
 * best_index_int8 (llama.cpp before 2025-03): index of the nearest value in the sorted table `val`;
 * on an exact tie (in float) the upper one.
 */
export function bestIndexInt8(n: number, val: Int8Array, x: number): number {
  if (x <= val[0]!) return 0;
  if (x >= val[n - 1]!) return n - 1;
  let ml = 0;
  let mu = n - 1;
  while (mu - ml > 1) {
    const mav = (ml + mu) >> 1;
    if (x < val[mav]!) mu = mav;
    else ml = mav;
  }
  return fr(x - val[mu - 1]!) < fr(val[mu]! - x) ? mu - 1 : mu;
}

/** Σx²/n over a whole row in C float order (the `sigma2` of q4_0/q4_1/q5_0/q5_1 `_impl`). */
export function rowSigma2(x: Float32Array, xo: number, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s = fr(s + fr(x[xo + j]! * x[xo + j]!));
  return fr(s / n);
}
