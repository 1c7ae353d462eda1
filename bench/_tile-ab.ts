// A/B of one interleaved-row kernel entry (run_k13 = K_Q4_0X4, run_k14 = K_Q8_0X4) between two WASM binaries,
// called directly on one instance each (no worker pool, no dispatch, no quantizer): the tile's own rate on
// shapes that stay in L1/L2, for kernel experiments. Synthetic blocks (random codes, f16 scales in
// [2^-15, 2^-14)), random Q8_0 activation codes with their sums per 16; both builds get the same bytes, and
// the outputs are compared bit for bit. Times are the process's CPU time, alternating old/new.
//   node --experimental-wasm-relaxed-simd dist/bench/_tile-ab.js <old.wasm> [new.wasm] [13|14] [RxC] [n] [reps]
// e.g. old = /work/main/build/kernels-relaxed.wasm, new = build/kernels-relaxed.wasm (this tree's build).
import { readFileSync } from "node:fs";

const [oldW, newW = "build/kernels-relaxed.wasm", kindArg = "13", shape = "64x2048", nArg = "16", repsArg = "7"] = process.argv.slice(2);
if (oldW === undefined) throw new Error("usage: _tile-ab.js <old.wasm> [new.wasm] [13|14] [RxC] [n] [reps]");
const kind = Number(kindArg);
if (kind !== 13 && kind !== 14) throw new Error(`_tile-ab: kind ${kindArg} not supported (13 = Q4_0X4, 14 = Q8_0X4)`);
const [rows, cols] = shape.split("x").map(Number) as [number, number];
if (!(rows % 4 === 0 && cols % 32 === 0)) throw new Error(`_tile-ab: shape ${shape}: rows must be a multiple of 4, cols of 32`);
const n = Number(nArg);
const nb = cols / 32, groups = rows / 4, bs = kind === 13 ? 18 : 34;

interface Side { go: () => void; out: () => Float32Array }

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

async function side(file: string): Promise<Side> {
  const memory = new WebAssembly.Memory({ initial: 2048, maximum: 65536, shared: true });
  const mod = await WebAssembly.compile(readFileSync(file));
  const env: Record<string, WebAssembly.ImportValue> = {};
  for (const i of WebAssembly.Module.imports(mod)) env[i.name] = i.kind === "memory" ? memory : () => {};
  const e = (await WebAssembly.instantiate(mod, { env })).exports as Record<string, (...a: number[]) => number>;
  const u8 = new Uint8Array(memory.buffer), dv = new DataView(memory.buffer);
  let p = (e.heap_base!() + 4095) & ~4095;
  const alloc = (bytes: number): number => { const r = p; p = (p + bytes + 4095) & ~4095; return r; };
  const lut = alloc(65536 * 4); // f16 bits → f32, the table the kernels read for block scales
  for (let h = 0; h < 65536; h++) {
    const ex = (h >> 10) & 31, f = h & 1023;
    const v = ex === 0 ? f * 2 ** -24 : ex === 31 ? (f ? NaN : Infinity) : (1 + f / 1024) * 2 ** (ex - 15);
    dv.setFloat32(lut + 4 * h, h >> 15 ? -v : v, true);
  }
  const r = rng(1);
  const w0 = alloc(groups * nb * bs * 4);
  for (let g = 0; g < groups; g++) for (let b = 0; b < nb; b++) for (let k = 0; k < 4; k++) {
    const o = w0 + ((g * nb + b) * 4 + k) * bs;
    dv.setUint16(o, 0x0400 + Math.floor(r() * 0x0400), true);
    for (let j = 2; j < bs; j++) u8[o + j] = kind === 13 ? Math.floor(r() * 256) : (Math.floor(r() * 255) - 127) & 255;
  }
  const x16 = alloc(n * cols * 2), x8 = alloc(n * cols), xd = alloc(n * nb * 4), xs = alloc(n * nb * 8), out = alloc(n * rows * 4);
  for (let t = 0; t < n; t++) for (let b = 0; b < nb; b++) {
    dv.setFloat32(xd + (t * nb + b) * 4, 0.001 + r() * 0.01, true);
    for (let h = 0; h < 2; h++) {
      let s = 0;
      for (let j = 0; j < 16; j++) {
        const i = t * cols + b * 32 + h * 16 + j, c = Math.floor(r() * 255) - 127;
        s += c;
        u8[x8 + i] = c & 255;
        dv.setInt16(x16 + 2 * i, c, true);
      }
      dv.setInt32(xs + (t * nb + b) * 8 + 4 * h, s, true);
    }
  }
  // descriptor words (assembly/abi.ts D_*): kind, rows, cols, w0, w1 (lut), w2, xf, x16, x8, xd, xs, out, n
  const desc = alloc(64 * 4);
  [kind, rows, cols, w0, lut, 0, 0, x16, x8, xd, xs, out, n].forEach((v, k) => dv.setInt32(desc + 4 * k, v, true));
  const run = e[`run_k${kind}`]!;
  return { go: () => void run(desc, 0, groups), out: () => new Float32Array(memory.buffer, out, n * rows).slice() };
}

const a = await side(oldW), b = await side(newW);
const macs = rows * cols * n, inner = Math.max(1, Math.round(1e9 / macs));
const cpu = (f: () => void): number => {
  const c0 = process.cpuUsage();
  for (let i = 0; i < inner; i++) f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
};
for (let i = 0; i < 3; i++) { a.go(); b.go(); }
const oa = a.out(), ob = b.out();
const same = oa.every((v, i) => Object.is(v, ob[i]));
const ta: number[] = [], tb: number[] = [];
for (let rep = 0; rep < Number(repsArg); rep++) {
  if (rep & 1) { tb.push(cpu(b.go)); ta.push(cpu(a.go)); } else { ta.push(cpu(a.go)); tb.push(cpu(b.go)); }
}
const med = (x: number[]): number => [...x].sort((p, q) => p - q)[x.length >> 1]!;
const rate = (ms: number): string => (macs * inner / ms / 1e6).toFixed(1);
console.log(`run_k${kind} ${rows}x${cols} n=${n}: old ${rate(med(ta))}, new ${rate(med(tb))} G weight·token/s (old/new time ${(med(ta) / med(tb)).toFixed(2)}, best ${rate(Math.min(...ta))} / ${rate(Math.min(...tb))}), same bits: ${same}`);
