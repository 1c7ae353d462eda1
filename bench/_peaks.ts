// The engine's arithmetic ceilings (assembly/probe.ts): multiply-adds per second one thread issues with the
// SIMD instruction a kernel family is built on, registers only. A mat-mat tile on that instruction also
// loads, unpacks and scales, so it runs below its ceiling; docs/kernels.md ("Compute ceilings") sets prefill against them.
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";

export interface SimdPeaks {
  /** GOP/s (2 ops per multiply-add), one thread, best of 5 */
  dotI8: number;
  dotI16: number;
  maddF32: number;
  variant: string;
}

const CHAINS = 12;

export function simdPeaks(): SimdPeaks {
  const be = createNodeWasmBackend({ threads: 1 });
  try {
    const k = be.kernels;
    const time = (f: (iters: number) => number, macsPerStep: number): number => {
      const iters = 2_000_000;
      f(iters / 10);
      let best = Infinity;
      for (let r = 0; r < 5; r++) {
        const t0 = performance.now();
        const v = f(iters);
        const dt = performance.now() - t0;
        if (!Number.isFinite(v) || v === -1) throw new Error("simd peak probe: unavailable in this build");
        best = Math.min(best, dt);
      }
      return (2 * macsPerStep * CHAINS * iters) / (best * 1e6);
    };
    return {
      dotI8: time((n) => k.probe_dot_i8(n, 3), 16),
      dotI16: time((n) => k.probe_dot_i16(n, 3), 8),
      maddF32: time((n) => k.probe_madd_f32(n, 1), 4),
      variant: be.variant,
    };
  } finally {
    be.dispose();
  }
}
