/**
 * The reference twin of the WASM float64 linear-algebra kernels (kernels/types.ts LinalgKernels): the
 * plain TypeScript algorithms of algos/linalg.ts on ordinary Float64Arrays.
 */
import { addGram, upperCholeskyOfInverseInPlace } from "../../algos/linalg.js";
import type { LinalgKernels } from "../types.js";

export class RefLinalg implements LinalgKernels {
  readonly name = "ref";
  alloc(n: number): Float64Array {
    return new Float64Array(n);
  }
  free(_a: Float64Array): void {
    // garbage collected
  }
  owns(_a: Float64Array): boolean {
    return true;
  }
  gramAddLower(x: Float32Array, nTok: number, n: number, acc: Float64Array): void {
    addGram(x, nTok, n, acc);
  }
  mirrorLower(acc: Float64Array, n: number): void {
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) acc[j * n + i] = acc[i * n + j]!;
  }
  upperCholeskyOfInverseInPlace(a: Float64Array, n: number): boolean {
    return upperCholeskyOfInverseInPlace(a, n);
  }
  lazyUpdate(w: Float64Array, rows: number, cols: number, e: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void {
    lazyUpdateRef(w, rows, cols, e, count, u, i1, j0);
  }
  rank1Update(w: Float64Array, rows: number, cols: number, j0: number, j1: number, e: Float64Array, lde: number, eCol: number, u: Float64Array, uRow: number): void {
    rank1UpdateRef(w, rows, cols, j0, j1, e, lde, eCol, u, uRow);
  }
}

/** w[r, j] −= e[r·lde + eCol]·u[uRow·cols + j] for j0 ≤ j < j1 (algos/gptq.ts's in-block loop) */
export function rank1UpdateRef(w: Float64Array, rows: number, cols: number, j0: number, j1: number, e: Float64Array, lde: number, eCol: number, u: Float64Array, uRow: number): void {
  const uo = uRow * cols;
  for (let r = 0; r < rows; r++) {
    const ev = e[r * lde + eCol]!;
    if (ev === 0) continue;
    const ro = r * cols;
    for (let j = j0; j < j1; j++) w[ro + j]! -= ev * u[uo + j]!;
  }
}

/** W[:, j0:] −= E·U[i1:i1+count, j0:], four rows of U per pass over a row of W (algos/gptq.ts's loop) */
export function lazyUpdateRef(w: Float64Array, rows: number, cols: number, err: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void {
  for (let r = 0; r < rows; r++) {
    const ro = r * cols;
    const eo = r * count;
    let k = 0;
    for (; k + 4 <= count; k += 4) {
      const e0 = err[eo + k]!, e1 = err[eo + k + 1]!, e2 = err[eo + k + 2]!, e3 = err[eo + k + 3]!;
      const u0 = (i1 + k) * cols, u1 = u0 + cols, u2 = u1 + cols, u3 = u2 + cols;
      for (let j = j0; j < cols; j++) w[ro + j]! -= e0 * u[u0 + j]! + e1 * u[u1 + j]! + e2 * u[u2 + j]! + e3 * u[u3 + j]!;
    }
    for (; k < count; k++) {
      const e = err[eo + k]!;
      if (e === 0) continue;
      const uo = (i1 + k) * cols;
      for (let j = j0; j < cols; j++) w[ro + j]! -= e * u[uo + j]!;
    }
  }
}
