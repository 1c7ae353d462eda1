// Run by backend-tiers.test.ts in a child node with V8 tier flags (--liftoff-only, or --no-liftoff):
// every kernel of both builds against the oracle (mat-vec, and mat-mat for the dense GEMM), with 2 threads. Prints one JSON line.
import { QUANT_TYPES, VARIANTS, backend, denseWeight, ggmlWeight, oracle, randomF32, disposeAll, worstRelError } from "../helpers.js";

const failures: string[] = [];
const workersUp: boolean[] = [];
for (const variant of VARIANTS) {
  // the tiers are what is tested here; if a worker is slow to start, the caller runs its chunks
  const be = backend(variant, 2);
  workersUp.push(await be.ready(5000));
  const cases = [denseWeight("f32", 9, 77, randomF32(9 * 77, 1)), denseWeight("f16", 9, 77, randomF32(9 * 77, 2))];
  for (const t of QUANT_TYPES) cases.push(ggmlWeight(t, 9, 512, randomF32(9 * 512, 10 + t)));
  for (const w of cases) {
    const x = randomF32(w.cols, 3);
    const out = new Float32Array(w.rows);
    const p = be.prepare(w.weight, w.label);
    be.matvec(p, x, out);
    const { err } = worstRelError(out, oracle(w, x, 1, p));
    if (!(err <= 2e-6)) failures.push(`${variant} ${w.label}: ${err}`);
  }
  // dense prefill (the GEMM of run_k1/run_k2): full tiles plus row, token and column tails
  for (const w of [denseWeight("f32", 11, 523, randomF32(11 * 523, 4)), denseWeight("f16", 11, 523, randomF32(11 * 523, 5))]) {
    const n = 7;
    const x = randomF32(n * w.cols, 6);
    const out = new Float32Array(n * w.rows);
    be.matmul(be.prepare(w.weight, w.label), x, n, out);
    const { err } = worstRelError(out, oracle(w, x, n));
    if (!(err <= 2e-6)) failures.push(`${variant} ${w.label} n=${n}: ${err}`);
  }
}
disposeAll();
console.log(JSON.stringify({ variants: VARIANTS, failures, workersUp }));
