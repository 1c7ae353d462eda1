/**
 * Orthogonal rotations for quantization (QuaRot, Ashkboos et al. 2024, arXiv:2404.00456; SpinQuant,
 * Liu et al. 2024, arXiv:2405.16406). A linear y = W·x equals (W·Rᵀ)·(R·x) for orthogonal R; a
 * randomized Hadamard R spreads a few huge activation channels over all channels, so activations and
 * weights quantize with much smaller error. The rotated float model computes exactly the same function.
 *
 * Constructions, by size n (documented in `Rotation.kind`):
 * - "hadamard": n = 2^k, Sylvester/Walsh–Hadamard, applied by the fast transform in O(n log n).
 * - "hadamard⊗paley": n = 2^k · (q+1) with q prime, q ≡ 3 (mod 4): Kronecker product of a
 *   Sylvester Hadamard and a Paley type-I Hadamard of order q+1 (12, 20, 24, 44, 48, 60, 68, 72, 80 …).
 *   Still a true ±1 Hadamard matrix, as QuaRot's hard-coded had12/had20/… tables are.
 * - "hadamard⊗random": anything else, n = 2^k · m with m odd (e.g. stories260K's 172 = 4 · 43: 43+1
 *   = 44 is a Paley order but 43 is not, and a Hadamard matrix of order 172 exists but needs a
 *   Williamson-type table we do not carry): a Sylvester Hadamard of order 2^k times a Haar-random
 *   orthogonal m×m matrix (seeded). Orthogonal and dense within each factor; costs O(n·m) to apply.
 * In every case R = K · diag(±1) / norm with random signs (the "randomized" Hadamard of QuaRot), so
 * different seeds give different rotations.
 */
import { QuantlabError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import { randomOrthogonal } from "./linalg.js";
import type { OnlineRotation } from "../model/transforms.js";

export type RotationKind = "hadamard" | "hadamard⊗paley" | "hadamard⊗random";

export interface Rotation {
  readonly n: number;
  readonly kind: RotationKind;
  /** x ← R·x, in place, for `count` consecutive vectors of length n (default 1) */
  apply(x: Float32Array | Float64Array, count?: number): void;
  /** x ← Rᵀ·x, in place (the inverse) */
  applyT(x: Float32Array | Float64Array, count?: number): void;
  /** R as a dense (n, n) matrix */
  matrix(): Float64Array;
  /** R as the factors the forward pass applies online (model/transforms.ts), in f32 */
  factors(): OnlineRotation;
}

function isPrime(q: number): boolean {
  if (q < 2) return false;
  for (let d = 2; d * d <= q; d++) if (q % d === 0) return false;
  return true;
}

/**
 * Paley construction I: for q prime ≡ 3 mod 4, H = I + S with S = [[0, 1ᵀ], [−1, Q]] and Q the
 * Jacobsthal matrix Q_ij = χ(j − i) (quadratic character mod q) is a Hadamard matrix of order q+1.
 */
export function paleyHadamard(q: number): Float64Array {
  if (!isPrime(q) || q % 4 !== 3) throw new QuantlabError("E_ARG", `paley: q must be a prime ≡ 3 mod 4, got ${q}`);
  const chi = new Int8Array(q).fill(-1);
  chi[0] = 0;
  for (let x = 1; x < q; x++) chi[(x * x) % q] = 1;
  const n = q + 1;
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) h[i * n + i] = 1;
  for (let j = 1; j < n; j++) {
    h[j] = 1; // first row: 1ᵀ
    h[j * n] = -1; // first column: −1
  }
  for (let i = 0; i < q; i++) for (let j = 0; j < q; j++) if (i !== j) h[(i + 1) * n + (j + 1)] = chi[(((j - i) % q) + q) % q]!;
  return h;
}

/** Largest dense (non-power-of-two) Kronecker factor: 2048² doubles = 32 MB, QR in a few seconds. */
const MAX_DENSE_FACTOR = 2048;

/** In-place unnormalized Walsh–Hadamard transform along `len` = 2^k elements spaced `stride` apart. */
function fwht(x: Float32Array | Float64Array, off: number, len: number, stride: number): void {
  for (let h = 1; h < len; h *= 2) {
    for (let i = 0; i < len; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = off + j * stride;
        const b = a + h * stride;
        const u = x[a]!;
        const v = x[b]!;
        x[a] = u + v;
        x[b] = u - v;
      }
    }
  }
}

/** Splits n into 2^k · b with b = 1, a Paley order, or odd; describes the construction. */
export function hadamardPlan(n: number): { pow2: number; b: number; kind: RotationKind; q?: number } {
  if (!Number.isInteger(n) || n < 1) throw new QuantlabError("E_ARG", `rotation: size must be a positive integer, got ${n}`);
  let pow2 = 1;
  while (n % (pow2 * 2) === 0) pow2 *= 2;
  if (pow2 === n) return { pow2, b: 1, kind: "hadamard" };
  // try b = n / 2^a with b − 1 a prime ≡ 3 mod 4, preferring the largest power-of-two part, and
  // b ≤ MAX_DENSE_FACTOR (the dense factor costs b² memory and O(n·b) per vector)
  for (let p = pow2; p >= 1; p /= 2) {
    const b = n / p;
    if (b > MAX_DENSE_FACTOR) break;
    if (b % 4 === 0 && isPrime(b - 1) && (b - 1) % 4 === 3) return { pow2: p, b, kind: "hadamard⊗paley", q: b - 1 };
  }
  const m = n / pow2;
  if (m > MAX_DENSE_FACTOR) {
    throw new QuantlabError("E_UNSUPPORTED", `rotation: size ${n} = ${pow2}·${m} has an odd factor above ${MAX_DENSE_FACTOR} and no Paley Hadamard order; no cheap orthogonal construction`);
  }
  return { pow2, b: m, kind: "hadamard⊗random" };
}

class KroneckerRotation implements Rotation {
  readonly n: number;
  readonly kind: RotationKind;
  private readonly pow2: number;
  private readonly b: number;
  private readonly inner: Float64Array | undefined; // (b, b), orthonormal
  private readonly signs: Float64Array; // (n)
  private readonly scale: number;
  private readonly tmp: Float64Array; // (b)

  constructor(n: number, seed: number) {
    const plan = hadamardPlan(n);
    this.n = n;
    this.kind = plan.kind;
    this.pow2 = plan.pow2;
    this.b = plan.b;
    const rng = new Rng(seed);
    this.signs = new Float64Array(n);
    for (let i = 0; i < n; i++) this.signs[i] = rng.next() < 0.5 ? -1 : 1;
    if (plan.kind === "hadamard⊗paley") {
      const h = paleyHadamard(plan.q!);
      const f = 1 / Math.sqrt(plan.b);
      for (let i = 0; i < h.length; i++) h[i]! *= f;
      this.inner = h;
    } else if (plan.kind === "hadamard⊗random") {
      this.inner = plan.b > 1 ? randomOrthogonal(plan.b, rng) : undefined;
    }
    this.scale = 1 / Math.sqrt(this.pow2);
    this.tmp = new Float64Array(this.b);
  }

  // Index i = p·b + r (p < pow2, r < b): R = (H_pow2 ⊗ B) · diag(signs) / √pow2.
  apply(x: Float32Array | Float64Array, count = 1): void {
    this.check(x, count);
    const { n, b, pow2 } = this;
    for (let v = 0; v < count; v++) {
      const o = v * n;
      for (let i = 0; i < n; i++) x[o + i]! *= this.signs[i]!;
      if (this.inner) for (let p = 0; p < pow2; p++) this.mulInner(x, o + p * b, false);
      for (let r = 0; r < b; r++) fwht(x, o + r, pow2, b);
      for (let i = 0; i < n; i++) x[o + i]! *= this.scale;
    }
  }

  applyT(x: Float32Array | Float64Array, count = 1): void {
    this.check(x, count);
    const { n, b, pow2 } = this;
    for (let v = 0; v < count; v++) {
      const o = v * n;
      // Rᵀ = diag(signs) · (H ⊗ Bᵀ) / √pow2 (H symmetric)
      for (let r = 0; r < b; r++) fwht(x, o + r, pow2, b);
      if (this.inner) for (let p = 0; p < pow2; p++) this.mulInner(x, o + p * b, true);
      for (let i = 0; i < n; i++) x[o + i]! *= this.signs[i]! * this.scale;
    }
  }

  matrix(): Float64Array {
    const n = this.n;
    const m = new Float64Array(n * n);
    const e = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      e.fill(0);
      e[j] = 1;
      this.apply(e);
      for (let i = 0; i < n; i++) m[i * n + j] = e[i]!;
    }
    return m;
  }

  factors(): OnlineRotation {
    const f: OnlineRotation = { n: this.n, pow2: this.pow2, signs: Float32Array.from(this.signs) };
    if (this.inner) f.inner = Float32Array.from(this.inner);
    return f;
  }

  private mulInner(x: Float32Array | Float64Array, o: number, transpose: boolean): void {
    const b = this.b;
    const m = this.inner!;
    const t = this.tmp;
    for (let i = 0; i < b; i++) {
      let s = 0;
      if (transpose) for (let j = 0; j < b; j++) s += m[j * b + i]! * x[o + j]!;
      else for (let j = 0; j < b; j++) s += m[i * b + j]! * x[o + j]!;
      t[i] = s;
    }
    for (let i = 0; i < b; i++) x[o + i] = t[i]!;
  }

  private check(x: Float32Array | Float64Array, count: number): void {
    if (x.length < count * this.n) throw new QuantlabError("E_ARG", `rotation: ${x.length} values for ${count} vectors of length ${this.n}`);
  }
}

/** Randomized Hadamard-family rotation of size n (see the file comment for which construction). */
export function randomizedHadamard(n: number, seed = 0): Rotation {
  return new KroneckerRotation(n, seed);
}

/** W ← W·Rᵀ for w (rows, cols = R.n): the linear now reads R·x (each row w_r becomes R·w_r). */
export function rotateInputsInPlace(w: Float32Array | Float64Array, rows: number, cols: number, r: Rotation): void {
  if (r.n !== cols || w.length !== rows * cols) throw new QuantlabError("E_ARG", `rotateInputs: weight (${rows}, ${cols}) vs rotation of size ${r.n}`);
  r.apply(w, rows);
}

/** W ← R·W for w (rows = R.n, cols): the linear now writes R·y. */
export function rotateOutputsInPlace(w: Float32Array | Float64Array, rows: number, cols: number, r: Rotation): void {
  if (r.n !== rows || w.length !== rows * cols) throw new QuantlabError("E_ARG", `rotateOutputs: weight (${rows}, ${cols}) vs rotation of size ${r.n}`);
  const col = new Float64Array(rows);
  for (let c = 0; c < cols; c++) {
    for (let i = 0; i < rows; i++) col[i] = w[i * cols + c]!;
    r.apply(col);
    for (let i = 0; i < rows; i++) w[i * cols + c] = col[i]!;
  }
}

/**
 * Folds an RMSNorm weight into the linears that read the norm's output: W ← W·diag(g), g ← 1.
 * Needed before a residual rotation, since diag(g) does not commute with R (QuaRot §4, "fusing
 * RMSNorm"). With tied embeddings the output head must be untied first (its g differs from the
 * embedding's identity).
 */
export function foldNormInPlace(g: Float32Array | Float64Array, linears: readonly { w: Float32Array | Float64Array; rows: number }[]): void {
  const cols = g.length;
  for (const l of linears) {
    if (l.w.length !== l.rows * cols) throw new QuantlabError("E_ARG", `foldNorm: weight of ${l.w.length} values is not (${l.rows}, ${cols})`);
    for (let r = 0; r < l.rows; r++) for (let c = 0; c < cols; c++) l.w[r * cols + c]! *= g[c]!;
  }
  g.fill(1);
}
