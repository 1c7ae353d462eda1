/**
 * The WASM float64 linear-algebra kernels (kernels/types.ts LinalgKernels) on a WasmBackend's shard 0:
 * buffers live in the shard's memory, the GEMMs (assembly/linalg.ts run_k48, C ±= A·Bᵀ on f64x2) are
 * split over the worker pool by rows, the rest runs on the calling thread.
 * - Gram: 256 tokens at a time transposed to channel-major f64, then one lower-triangle GEMM; or (f32 products)
 *   256 tokens at a time transposed to channel-major f32, summed in f32 per tile (run_k84), added into f64.
 * - Upper Cholesky of A⁻¹ (same algorithm as algos/linalg.ts upperCholeskyOfInverseInPlace: A reversed,
 *   lower Cholesky, lower triangular inverse, reversed back): the Cholesky left-looking in column blocks
 *   of 64 (one GEMM per block for its rows and those below, the diagonal block on the calling thread, the
 *   rows below on the pool), the inverse in column
 *   blocks from the last (one GEMM per block: X[i, j1:]·L[j1:, J], then the small block solve).
 * - Lazy update: U's block rows transposed to (cols − j0, count), one GEMM.
 * Isomorphic.
 */
import { QuantlabError } from "../../core/errors.js";
import {
  K_GEMM_NT_F64, K_RANK1_F64, K_GRAM_F32, K_RANK1T_F64, K_GEMM_SUB_F32, K_CHOL_BELOW_F64, L_C, L_LDC, L_A, L_LDA, L_B, L_LDB, L_M, L_N, L_K, L_FLAGS, L_ROW0, L_K0, L_DESC_WORDS, LF_SUB, LF_LOWER, LF_TRI_A,
} from "../../../assembly/abi-linalg.js";
import type { LinalgKernels } from "../types.js";
import type { WasmArena } from "./arena.js";
import type { Dispatcher } from "./pool.js";

interface LinalgExports {
  f32_to_f64_transposed(x: number, m: number, n: number, t: number, ldt: number): void;
  f64_mirror_lower(a: number, n: number): void;
  f64_reverse(a: number, n: number): void;
  f64_zero_upper(a: number, n: number): void;
  chol_panel_f64(a: number, n: number, j0: number, j1: number): number;
  chol_below_f64(a: number, n: number, j0: number, j1: number, r0: number, r1: number): void;
  trinv_block_f64(a: number, n: number, j0: number, j1: number, g: number, s: number): void;
  f64_transpose_block(a: number, lda: number, r0: number, c0: number, rows: number, cols: number, bt: number, ldb: number): void;
  run_k48(desc: number, r0: number, r1: number): void;
  run_k84(desc: number, r0: number, r1: number): void;
  run_k86(desc: number, r0: number, r1: number): void;
  f64_to_f32_transpose_pad(a: number, lda: number, r0: number, c0: number, rows: number, cols: number, bt: number, ldb: number): void;
  f64_rank1t_sub(wt: number, ldw: number, r0: number, r1: number, j0: number, j1: number, e: number, u: number): void;
  f32_transpose_pad(x: number, m: number, n: number, t: number, ldt: number): void;
  f64_rank1_sub(w: number, ldw: number, r0: number, r1: number, j0: number, j1: number, e: number, lde: number, u: number): void;
}

/** tokens per Gram GEMM */
const GRAM_CHUNK = 256;
/** tokens per f32-product Gram panel (the f32 sums' length: assembly/linalg.ts run_k84, algos/linalg.ts addGramF32) */
const GRAM_F32_PANEL = 256;
/** columns per Cholesky / inverse block */
const BS = 64;

export class WasmLinalg implements LinalgKernels {
  readonly name: string;
  private readonly k: LinalgExports;
  private readonly desc: number;
  private readonly live = new Set<number>();

  constructor(private readonly arena: WasmArena, kernels: object, private readonly pool: Dispatcher, private readonly checkOpen: () => void) {
    this.k = kernels as unknown as LinalgExports;
    this.desc = arena.alloc(L_DESC_WORDS * 4, 64, "linalg descriptor");
    this.name = `wasm-t${pool.threads}`;
  }

  alloc(n: number): Float64Array {
    this.checkOpen();
    const off = this.arena.alloc(n * 8, 64, `f64 buffer of ${n} values`);
    this.live.add(off);
    // through the arena's views, so it knows the buffer (after a grow, memory.buffer is a new object)
    const a = new Float64Array(this.arena.u8.buffer, off, n);
    a.fill(0);
    return a;
  }

  free(a: Float64Array): void {
    const off = this.offset(a, "free");
    this.live.delete(off);
    this.arena.free(off);
  }

  owns(a: Float64Array): boolean {
    return this.arena.owns(a.buffer);
  }

  /** byte offset of a buffer from `alloc` (or a view inside one) */
  private offset(a: Float64Array, what: string): number {
    if (!this.arena.owns(a.buffer)) throw new QuantlabError("E_ARG", `wasm linalg ${what}: the buffer was not allocated by this backend's linalg kernels (use alloc)`);
    return a.byteOffset;
  }

  private scratch(bytes: number, what: string): { off: number; done: () => void } {
    const off = this.arena.alloc(bytes, 64, what);
    return { off, done: () => this.arena.free(off) };
  }

  /** C (m, n) ±= A (m, k)·B (n, k)ᵀ on the pool */
  private gemm(c: number, ldc: number, a: number, lda: number, b: number, ldb: number, m: number, n: number, kk: number, flags: number, row0 = 0, k0 = 0): void {
    if (m <= 0 || n <= 0 || kk <= 0) return;
    const d = this.arena.u32;
    const o = this.desc >>> 2;
    d[o + L_C] = c; d[o + L_LDC] = ldc; d[o + L_A] = a; d[o + L_LDA] = lda; d[o + L_B] = b; d[o + L_LDB] = ldb;
    d[o + L_M] = m; d[o + L_N] = n; d[o + L_K] = kk; d[o + L_FLAGS] = flags; d[o + L_ROW0] = row0; d[o + L_K0] = k0;
    const rows = Math.ceil(m / 2);
    // small products are not worth waking the workers
    if (m * n * kk < 1 << 18) this.k.run_k48(this.desc, 0, rows);
    else this.pool.run([{ desc: this.desc, rows, task: K_GEMM_NT_F64 }]);
  }

  /**
   * The Gram forms' token loop: x's rows in panels of `chunk` tokens (staged into the arena when x lives
   * elsewhere), each handed to `panel` as (arena offset of its first row, tokens); `transposeBytes` of scratch
   * for the panel's transpose at `t`.
   */
  private forGramPanels(x: Float32Array, nTok: number, n: number, chunk: number, transposeBytes: number, what: string,
    panel: (xOff: number, m: number, t: number) => void): void {
    const t = this.scratch(transposeBytes, what);
    const xs = this.arena.owns(x.buffer) ? undefined : this.scratch(chunk * n * 4, "Gram input");
    try {
      for (let t0 = 0; t0 < nTok; t0 += chunk) {
        const m = Math.min(chunk, nTok - t0);
        let xOff: number;
        if (xs) {
          this.arena.f32.set(x.subarray(t0 * n, (t0 + m) * n), xs.off >>> 2);
          xOff = xs.off;
        } else xOff = x.byteOffset + t0 * n * 4;
        panel(xOff, m, t.off);
      }
    } finally {
      xs?.done();
      t.done();
    }
  }

  gramAddLower(x: Float32Array, nTok: number, n: number, acc: Float64Array): void {
    this.checkOpen();
    if (x.length < nTok * n) throw new QuantlabError("E_ARG", `wasm linalg gram: x has ${x.length} values, need ${nTok}×${n}`);
    const accOff = this.offset(acc, "gram");
    const chunk = Math.min(GRAM_CHUNK, nTok);
    this.forGramPanels(x, nTok, n, chunk, n * chunk * 8, "Gram transpose", (xOff, m, t) => {
      this.k.f32_to_f64_transposed(xOff, m, n, t, chunk);
      this.gemm(accOff, n, t, chunk, t, chunk, n, n, m, LF_LOWER);
    });
  }

  gramAddLowerF32(x: Float32Array, nTok: number, n: number, acc: Float64Array): void {
    this.checkOpen();
    if (x.length < nTok * n) throw new QuantlabError("E_ARG", `wasm linalg gram (f32 products): x has ${x.length} values, need ${nTok}×${n}`);
    if (nTok <= 0) return;
    const accOff = this.offset(acc, "gram");
    const chunk = Math.min(GRAM_F32_PANEL, nTok);
    const ldt = (chunk + 3) & ~3;
    this.forGramPanels(x, nTok, n, chunk, n * ldt * 4, "Gram transpose (f32)", (xOff, m, t) => {
      const k = (m + 3) & ~3;
      this.k.f32_transpose_pad(xOff, m, n, t, ldt);
      const d = this.arena.u32;
      const o = this.desc >>> 2;
      d[o + L_C] = accOff; d[o + L_LDC] = n; d[o + L_A] = t; d[o + L_LDA] = ldt; d[o + L_M] = n; d[o + L_K] = k;
      const rows = Math.ceil(n / 2);
      if (n * n * k < 1 << 19) this.k.run_k84(this.desc, 0, rows);
      else this.pool.run([{ desc: this.desc, rows, task: K_GRAM_F32 }]);
    });
  }

  mirrorLower(acc: Float64Array, n: number): void {
    this.checkOpen();
    this.k.f64_mirror_lower(this.offset(acc, "mirror"), n);
  }

  upperCholeskyOfInverseInPlace(a: Float64Array, n: number): boolean {
    this.checkOpen();
    if (a.length < n * n) throw new QuantlabError("E_ARG", `wasm linalg cholesky: buffer has ${a.length} values, need ${n}×${n}`);
    const p = this.offset(a, "cholesky");
    const k = this.k;
    k.f64_reverse(p, n * n); // B = J·A·J
    const saved = new Float64Array(n);
    for (let i = 0; i < n; i++) saved[i] = a[i * n + i]!;
    const sup = new Float64Array(BS);
    // left-looking blocked lower Cholesky: the strict upper triangle (B's, by symmetry) is never written
    for (let j0 = 0; j0 < n; j0 += BS) {
      const j1 = Math.min(n, j0 + BS);
      // the block's rows and those below: a[j0:, J] −= a[j0:, :j0]·a[J, :j0]ᵀ, lower part only inside the block
      // (LF_LOWER guarantees j ≤ i but may write a[i, i + 1] for even i − j0: those are kept and put back, as
      // the strict upper triangle is what a failed factorization restores B from)
      const bs = j1 - j0;
      if (j0 > 0) {
        for (let i = j0; i + 1 < j1; i++) sup[i - j0] = a[i * n + i + 1]!;
        this.gemm(p + (j0 * n + j0) * 8, n, p + j0 * n * 8, n, p + j0 * n * 8, n, n - j0, bs, j0, LF_SUB | LF_LOWER);
        for (let i = j0; i + 1 < j1; i++) a[i * n + i + 1] = sup[i - j0]!;
      }
      const bad = k.chol_panel_f64(p, n, j0, j1) >= 0;
      if (!bad && j1 < n) {
        const below = n - j1;
        if (below * bs * bs < 1 << 17) k.chol_below_f64(p, n, j0, j1, 0, below);
        else {
          const d = this.arena.u32;
          const o = this.desc >>> 2;
          d[o + L_C] = p; d[o + L_LDC] = n; d[o + L_N] = j0; d[o + L_K] = j1;
          this.pool.run([{ desc: this.desc, rows: below, task: K_CHOL_BELOW_F64 }]);
        }
      }
      if (bad) {
        // restore B's lower triangle from its upper one and the saved diagonal, then A
        for (let i = 0; i < n; i++) {
          a[i * n + i] = saved[i]!;
          for (let q = 0; q < i; q++) a[i * n + q] = a[q * n + i]!;
        }
        k.f64_reverse(p, n * n);
        return false;
      }
    }
    k.f64_zero_upper(p, n);
    // L⁻¹ in place, column blocks from the last: X[i, J] = −(X[i, j1:]·L[j1:, J])·L[J, J]⁻¹ for i ≥ j1
    const nb = Math.min(BS, n);
    const g = this.scratch(Math.max(1, (n - Math.min(n, nb)) * nb * 8), "inverse block");
    const bt = this.scratch(Math.max(1, n * nb * 8), "inverse block (transposed)");
    const s = this.scratch(nb * nb * 8, "diagonal block inverse");
    try {
      const lastJ0 = Math.floor((n - 1) / BS) * BS;
      for (let j0 = lastJ0; j0 >= 0; j0 -= BS) {
        const j1 = Math.min(n, j0 + BS);
        const bs = j1 - j0;
        const below = n - j1;
        if (below > 0) {
          new Float64Array(this.arena.u8.buffer, g.off, below * bs).fill(0);
          k.f64_transpose_block(p, n, j1, j0, below, bs, bt.off, below);
          this.gemm(g.off, bs, p + (j1 * n + j1) * 8, n, bt.off, below, below, bs, below, LF_TRI_A, j1, j1);
        }
        // S = L[J, J]⁻¹ into s and the block; then X[j1:, J] = −g·S as a GEMM (St = Sᵀ in bt)
        k.trinv_block_f64(p, n, j0, j1, 0, s.off);
        if (below > 0) {
          k.f64_transpose_block(s.off, bs, 0, 0, bs, bs, bt.off, bs);
          const f = new Float64Array(this.arena.u8.buffer);
          for (let i = j1; i < n; i++) f.fill(0, i * n + j0 + p / 8, i * n + j1 + p / 8);
          this.gemm(p + (j1 * n + j0) * 8, n, g.off, bs, bt.off, bs, below, bs, bs, LF_SUB);
        }
      }
    } finally {
      s.done();
      bt.done();
      g.done();
    }
    k.f64_reverse(p, n * n); // U = J·L⁻¹·J
    return true;
  }

  rank1Update(w: Float64Array, rows: number, cols: number, j0: number, j1: number, e: Float64Array, lde: number, eCol: number, u: Float64Array, uRow: number): void {
    if (j1 <= j0 || rows <= 0) return;
    const wp = this.offset(w, "rank-1 update"), ep = this.offset(e, "rank-1 update"), up = this.offset(u, "rank-1 update");
    if (rows * (j1 - j0) < 1 << 16) {
      this.k.f64_rank1_sub(wp, cols, 0, rows, j0, j1, ep + eCol * 8, lde, up + uRow * cols * 8);
      return;
    }
    const d = this.arena.u32;
    const o = this.desc >>> 2;
    d[o + L_C] = wp; d[o + L_LDC] = cols; d[o + L_A] = ep + eCol * 8; d[o + L_LDA] = lde; d[o + L_B] = up + uRow * cols * 8;
    d[o + L_N] = j0; d[o + L_K] = j1;
    this.pool.run([{ desc: this.desc, rows, task: K_RANK1_F64 }]);
  }

  lazyUpdateF32(w: Float64Array, rows: number, cols: number, eT: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void {
    this.checkOpen();
    const width = cols - j0;
    if (width <= 0 || count <= 0 || rows <= 0) return;
    const wp = this.offset(w, "lazy update"), ep = this.offset(eT, "lazy update"), up = this.offset(u, "lazy update");
    const kp = (count + 3) & ~3;
    const ef = this.scratch(rows * kp * 4, "lazy update (f32 E)");
    const uf = this.scratch(width * kp * 4, "lazy update (f32 Uᵀ)");
    try {
      this.k.f64_to_f32_transpose_pad(ep, rows, 0, 0, count, rows, ef.off, kp);
      this.k.f64_to_f32_transpose_pad(up, cols, i1, j0, count, width, uf.off, kp);
      const d = this.arena.u32;
      const o = this.desc >>> 2;
      d[o + L_C] = wp + j0 * 8; d[o + L_LDC] = cols; d[o + L_A] = ef.off; d[o + L_LDA] = kp; d[o + L_B] = uf.off; d[o + L_LDB] = kp;
      d[o + L_M] = rows; d[o + L_N] = width; d[o + L_K] = kp;
      const jobRows = Math.ceil(rows / 2);
      if (rows * width * kp < 1 << 18) this.k.run_k86(this.desc, 0, jobRows);
      else this.pool.run([{ desc: this.desc, rows: jobRows, task: K_GEMM_SUB_F32 }]);
    } finally {
      uf.done();
      ef.done();
    }
  }

  transposeBlock(a: Float64Array, lda: number, r0: number, c0: number, rows: number, cols: number, bt: Float64Array, ldb: number): void {
    this.checkOpen();
    if (rows <= 0 || cols <= 0) return;
    this.k.f64_transpose_block(this.offset(a, "transpose"), lda, r0, c0, rows, cols, this.offset(bt, "transpose"), ldb);
  }

  rank1UpdateT(wt: Float64Array, ldw: number, rows: number, j0: number, j1: number, e: Float64Array, eOff: number, u: Float64Array, uOff: number): void {
    if (j1 <= j0 || rows <= 0) return;
    const wp = this.offset(wt, "rank-1 update"), ep = this.offset(e, "rank-1 update") + eOff * 8, up = this.offset(u, "rank-1 update") + uOff * 8;
    if (rows * (j1 - j0) < 1 << 16) {
      this.k.f64_rank1t_sub(wp, ldw, 0, rows, j0, j1, ep, up);
      return;
    }
    const d = this.arena.u32;
    const o = this.desc >>> 2;
    d[o + L_C] = wp; d[o + L_LDC] = ldw; d[o + L_A] = ep; d[o + L_B] = up; d[o + L_N] = j0; d[o + L_K] = j1;
    this.pool.run([{ desc: this.desc, rows, task: K_RANK1T_F64 }]);
  }

  lazyUpdate(w: Float64Array, rows: number, cols: number, e: Float64Array, count: number, u: Float64Array, i1: number, j0: number): void {
    this.checkOpen();
    const width = cols - j0;
    if (width <= 0 || count <= 0 || rows <= 0) return;
    const wp = this.offset(w, "lazy update"), ep = this.offset(e, "lazy update"), up = this.offset(u, "lazy update");
    const bt = this.scratch(width * count * 8, "lazy update (transposed U)");
    try {
      this.k.f64_transpose_block(up, cols, i1, j0, count, width, bt.off, count);
      this.gemm(wp + j0 * 8, cols, ep, count, bt.off, count, rows, width, count, LF_SUB);
    } finally {
      bt.done();
    }
  }
}
