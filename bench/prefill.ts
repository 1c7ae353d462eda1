// Llama prefill on stories3M as calibration runs it (imatrix: chunks of 256 positions, ctx 256): the
// forward pass's non-matmul work in WASM (the backend's KV cache with its batched attention, SwiGLU, the
// residual add + RMSNorm) against the TypeScript reference paths (F32KvCache + attendRef, swigluRef,
// addRmsnormRef), on the same WASM backend so the matmuls are the same, alternating run by run in one
// process; the attention of one layer alone, WasmKvCache.attend against attendRef; and, with
// QUANTLAB_PREFILL_BASE=<another build's dist/>, this build's prefill against that one's (each tree loads
// its own model and backend; the runs alternate).
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { loadModel } from "../src/io/node/load.js";
import { dataPath } from "../src/io/node/data.js";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../src/kernels/wasm/backend.js";
import type { Backend } from "../src/kernels/types.js";
import { Llama } from "../src/model/llama.js";
import { F32KvCache, attendRef, f32KvCache } from "../src/model/kv-cache.js";
import { fmt, stats, type BenchContext, type BenchSection } from "./types.js";

const CTX = 256;

/** The backend's matmuls without its row kernels and KV cache: the forward pass then takes the reference paths. */
function matmulsOnly(be: WasmBackend): Backend {
  return {
    name: `${be.name} (TypeScript rows)`,
    preparesCopies: be.preparesCopies,
    prepare: (w, name) => be.prepare(w, name),
    matvec: (w, x, out) => be.matvec(w, x, out),
    matmul: (w, x, n, out) => be.matmul(w, x, n, out),
    matvecMany: (jobs) => be.matvecMany(jobs),
    rowReader: (w) => be.rowReader(w),
    release: (w) => be.release(w),
  };
}

function tokens(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 1 : (i * 7919 + 13) % vocab));
}

async function prefillSection(ctx: BenchContext): Promise<BenchSection> {
  const reps = ctx.quick ? 3 : 11;
  const model = await loadModel(dataPath("stories3M", "stories3M.bin"), { tokenizer: dataPath("stories260K", "tok512.bin") });
  const ids = tokens(CTX, model.config.vocabSize);
  const rows: (string | number)[][] = [];
  for (const threads of [1, 2]) {
    const be = createNodeWasmBackend({ threads });
    await be.ready();
    const variants = {
      ts: new Llama(model, { backend: matmulsOnly(be), contextLength: CTX, kvCache: f32KvCache }),
      wasm: new Llama(model, { backend: be, contextLength: CTX }),
    };
    const ms: Record<keyof typeof variants, number[]> = { ts: [], wasm: [] };
    for (let r = 0; r <= reps; r++) {
      for (const k of ["ts", "wasm"] as const) {
        const t0 = performance.now();
        variants[k].reset();
        variants[k].prefill(ids, 0);
        if (r > 0) ms[k].push(performance.now() - t0); // the first round warms up
      }
    }
    variants.ts.dispose();
    variants.wasm.dispose();
    be.dispose();
    const a = stats(ms.ts), b = stats(ms.wasm);
    ctx.log(`prefill t${threads}: ts ${fmt(a.median, 1)} ms, wasm ${fmt(b.median, 1)} ms per ${CTX} positions`);
    rows.push([threads, fmt((CTX * 1000) / a.median, 0), fmt((CTX * 1000) / b.median, 0), `${fmt(a.median / b.median)}×`, `${fmt(a.min / b.min)}×`]);
  }
  return {
    title: "Llama prefill, stories3M, 256 positions per chunk (ctx 256): non-matmul work in WASM vs TypeScript",
    table: { headers: ["threads", "TypeScript rows + F32KvCache, tok/s", "WASM (kvCache, swiglu, addRmsnorm), tok/s", "ratio (medians)", "ratio (best)"], rows },
    notes: [
      `Median of ${reps} alternating runs of \`reset(); prefill(256 tokens)\` (maxBatch 128: two forward calls), the same WASM backend and matmuls for both; the TypeScript side runs attendRef over F32KvCache, swigluRef and addRmsnormRef.`,
      "The machine is shared (load average in the header): ratios are what to read, absolute tok/s move with the load.",
    ],
  };
}

async function attentionSection(ctx: BenchContext): Promise<BenchSection> {
  const reps = ctx.quick ? 5 : 31;
  const L = 1, nKv = 4, hd = 32, nHeads = 8, n = 128;
  const rnd = (m: number, seed: number) => {
    let s = seed;
    return Float32Array.from({ length: m }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 31) - 1);
  };
  const rows: (string | number)[][] = [];
  for (const threads of [1, 2]) {
    const be = createNodeWasmBackend({ threads });
    await be.ready();
    const w = be.kvCache(L, CTX, nKv, hd)!, r = new F32KvCache(L, CTX, nKv, hd);
    for (let t = 0; t < CTX; t++) {
      const k = rnd(nKv * hd, 2 * t + 1), v = rnd(nKv * hd, 2 * t + 2);
      w.store(0, t, k, v);
      r.store(0, t, k, v);
    }
    const q = rnd(n * nHeads * hd, 7), out = new Float32Array(n * nHeads * hd), att = new Float32Array(CTX);
    const tw: number[] = [], tr: number[] = [];
    for (let i = 0; i <= reps; i++) {
      let t0 = performance.now();
      for (let p0 = 0; p0 < CTX; p0 += n) w.attend!(0, q, p0, n, nHeads, out);
      if (i > 0) tw.push(performance.now() - t0);
      if (i % 5 === 0) {
        t0 = performance.now();
        for (let p0 = 0; p0 < CTX; p0 += n) attendRef(r, 0, q, p0, n, nHeads, out, att);
        if (i > 0) tr.push(performance.now() - t0);
      }
    }
    w.dispose!();
    be.dispose();
    const a = stats(tr), b = stats(tw);
    const macs = 2 * nHeads * hd * ((CTX * (CTX + 1)) / 2);
    rows.push([threads, fmt(a.median, 2), fmt(b.median, 3), fmt(macs / b.median / 1e6, 2), `${fmt(a.median / b.median, 1)}×`]);
  }
  return {
    title: "Attention of one layer, stories3M's shape (8 heads, 4 KV heads, head 32), 256 positions in two chunks of 128",
    table: { headers: ["threads", "attendRef(F32KvCache), ms", "WasmKvCache.attend, ms", "WASM GMAC/s (scores + mix)", "ratio"], rows },
    notes: [`Medians: WASM of ${reps} runs, TypeScript of ${Math.ceil(reps / 5)}.`],
  };
}

/** This build's prefill against another build's (its dist/ directory), alternating in this process. */
async function baseSection(ctx: BenchContext, baseDist: string): Promise<BenchSection> {
  const reps = ctx.quick ? 3 : 11;
  type Tree = { loadModel: typeof loadModel; createNodeWasmBackend: typeof createNodeWasmBackend; Llama: typeof Llama };
  const load = async (dist: string | undefined): Promise<Tree> => {
    if (!dist) return { loadModel, createNodeWasmBackend, Llama };
    const m = (f: string) => import(pathToFileURL(join(dist, f)).href);
    return { loadModel: (await m("src/io/node/load.js")).loadModel, createNodeWasmBackend: (await m("src/kernels/wasm/pool-node.js")).createNodeWasmBackend, Llama: (await m("src/model/llama.js")).Llama };
  };
  const rows: (string | number)[][] = [];
  for (const threads of [1, 2]) {
    const runs: { llama: Llama; be: WasmBackend; ms: number[] }[] = [];
    for (const dist of [baseDist, undefined]) {
      const t = await load(dist);
      const model = await t.loadModel(dataPath("stories3M", "stories3M.bin"), { tokenizer: dataPath("stories260K", "tok512.bin") });
      const be = t.createNodeWasmBackend({ threads });
      await be.ready();
      runs.push({ llama: new t.Llama(model, { backend: be, contextLength: CTX }), be, ms: [] });
    }
    const ids = tokens(CTX, runs[0]!.llama.config.vocabSize);
    for (let r = 0; r <= reps; r++) {
      for (const o of runs) {
        const t0 = performance.now();
        o.llama.reset();
        o.llama.prefill(ids, 0);
        if (r > 0) o.ms.push(performance.now() - t0);
      }
    }
    for (const o of runs) o.be.dispose();
    const a = stats(runs[0]!.ms), b = stats(runs[1]!.ms);
    rows.push([threads, fmt((CTX * 1000) / a.median, 0), fmt((CTX * 1000) / b.median, 0), `${fmt(a.median / b.median)}×`, `${fmt(a.min / b.min)}×`]);
  }
  return {
    title: "Llama prefill, stories3M, 256 positions per chunk: this build against a base build",
    table: { headers: ["threads", "base, tok/s", "this build, tok/s", "ratio (medians)", "ratio (best)"], rows },
    notes: [`Base: ${baseDist}. Median of ${reps} alternating rounds, each tree with its own model and backend, default options.`],
  };
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const out: BenchSection[] = [];
  if (!ctx.sections?.length || ctx.sections.includes("model")) out.push(await prefillSection(ctx));
  if (!ctx.sections?.length || ctx.sections.includes("attention")) out.push(await attentionSection(ctx));
  const base = process.env.QUANTLAB_PREFILL_BASE;
  if (base) out.push(await baseSection(ctx, base));
  return out;
}
