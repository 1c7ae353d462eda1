// Random test data shared by the quantizer tests.
import { Rng } from "../../src/core/rng.js";

/** n draws of a Student-t with ν degrees of freedom (heavy tails for small ν), seeded. */
export function studentT(n: number, nu: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let c = 0;
    for (let k = 0; k < nu; k++) { const z = rng.normal(); c += z * z; }
    out[i] = rng.normal() / Math.sqrt(c / nu);
  }
  return out;
}
