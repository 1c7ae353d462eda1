// The benches' read-bandwidth yardstick: a WASM SIMD streaming f32 sum (assembly/index.ts stream_sum) over a
// region larger than the L3, best of 5, one thread. Decode GB/s (bytes streamed per token × tok/s) is set
// against it as "% of BW" (bench/model.ts, bench/packed.ts).
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import { stats } from "./types.js";

/** GB/s of a streaming read of `mib` MiB (1 thread, best of 5). */
export function readBandwidthGBs(mib: number): number {
  const be = createNodeWasmBackend();
  try {
    const bytes = mib * 2 ** 20;
    const off = be.arena.alloc(bytes);
    be.arena.f32.fill(1, off >> 2, (off + bytes) >> 2);
    be.kernels.stream_sum(off, bytes / 4);
    const t: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      be.kernels.stream_sum(off, bytes / 4);
      t.push(performance.now() - t0);
    }
    return bytes / 1e6 / stats(t).min;
  } finally {
    be.dispose();
  }
}
