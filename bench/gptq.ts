// GPTQ speed and memory: one 4096×4096 linear (8192 calibration tokens, int4:g128) at 2 threads on the WASM
// backend's float64 kernels, against the PyTorch reference loop (bench/gptq_torch.py, when torch imports)
// and the FLOP bound of the same run's WASM f32 GEMM probe (section "layer"); whole-model time for
// stories260K (the CLI defaults: 128 windows of 256) and for a synthetic Llama-3.2-1B-shaped model (random
// weights generated layer by layer, streamed out), with the process RSS high-water mark (section "model").
// `node dist/bench/run.js gptq:layer` runs only the first.
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNodeWasmBackend } from "../src/kernels/wasm/pool-node.js";
import type { WasmBackend } from "../src/kernels/wasm/backend.js";
import type { LinalgKernels } from "../src/kernels/types.js";
import { Rng } from "../src/core/rng.js";
import { Tensor } from "../src/core/tensor.js";
import { f32ArrayToBf16 } from "../src/core/f16.js";
import { gptqQuantize, HessianAccumulator, RegistryQuantizer, quantize, runLayerwise, normalizeRecipe, sha256Hex } from "../src/algos/index.js";
import { gptqLayerwise } from "../src/algos/methods/gptq.js";
import { newLayerwiseTimings } from "../src/algos/methods/types.js";
import { SITE_GROUPS } from "../src/algos/pipeline.js";
import { noProgress } from "../src/core/progress.js";
import { refGgmlEncoder } from "../src/ggml/encoder.js";
import { linearWeightNames } from "../src/algos/select.js";
import { dataPath } from "../src/io/node/data.js";
import { loadModel } from "../src/io/node/load.js";
import { TensorNames, expectedShapes, type ModelConfig } from "../src/model/config.js";
import type { Model } from "../src/model/weights.js";
import { fmt, stats, type BenchContext, type BenchSection } from "./types.js";
import type { Weight } from "../src/core/weight.js";

const MiB = 2 ** 20;

/** RSS high-water mark of this process (Linux VmHWM), else the current RSS. */
function peakRssMiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.memoryUsage().rss / MiB;
}

interface LayerTimes { hessianS: number; factorS: number; columnsS: number; totalS: number }

/** correlated inputs (a rank-64 signal plus noise), as real activations are far from white */
export function layerInputs(rng: Rng, n: number, nTok: number): Float32Array {
  const basis = rng.fillNormal(new Float32Array(64 * n), 1);
  const x = new Float32Array(nTok * n);
  const z = new Float32Array(64);
  for (let t = 0; t < nTok; t++) {
    rng.fillNormal(z, 1);
    const o = t * n;
    for (let c = 0; c < n; c++) x[o + c] = 0.1 * rng.normal();
    for (let k = 0; k < 64; k++) { const zk = z[k]!; const b = k * n; for (let c = 0; c < n; c++) x[o + c] += zk * basis[b + c]!; }
  }
  return x;
}

/** GPTQ of one n×n linear (int4:g128:asym) on the given kernels: Hessian from x, then the solve. */
function gptqLayer(x: Float32Array, n: number, nTok: number, w: Float32Array, kernels: LinalgKernels | undefined): LayerTimes {
  let t0 = performance.now();
  const acc = new HessianAccumulator(n, kernels, kernels ? "f32" : "f64");
  for (let s = 0; s < nTok; s += 512) acc.add(x.subarray(s * n, Math.min(nTok, s + 512) * n), Math.min(512, nTok - s));
  const h = acc.takeHessian();
  const hessianMs = performance.now() - t0;
  const timings = { factorMs: 0, columnsMs: 0 };
  t0 = performance.now();
  gptqQuantize(w, n, n, h, new RegistryQuantizer("int4:g128:asym"), { overwriteHessian: true, timings, ...(kernels ? { kernels, updates: "f32" as const } : {}) });
  const gptqMs = performance.now() - t0;
  kernels?.free(h);
  return { hessianS: hessianMs / 1000, factorS: timings.factorMs / 1000, columnsS: timings.columnsMs / 1000, totalS: (hessianMs + gptqMs) / 1000 };
}

/** f32 GFLOP/s of the WASM backend's mat-mat kernel (OUT = X·Wᵀ, 256 × 4096 · 4096², f32 weights) at its thread count. */
function gemmProbe(be: WasmBackend, d: number, n: number): number {
  const rng = new Rng(11);
  const w = be.prepare({ kind: "dense", tensor: new Tensor("f32", [d, d], rng.fillNormal(new Float32Array(d * d), 1)) });
  const x = rng.fillNormal(new Float32Array(n * d), 1), out = new Float32Array(n * d);
  be.matmul(w, x, n, out);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    be.matmul(w, x, n, out);
    times.push((performance.now() - t0) / 1000);
  }
  be.release(w);
  return (2 * n * d * d) / stats(times).median / 1e9;
}

/**
 * The Python interpreter for the PyTorch peer: $QUANTLAB_PYTHON when set (an error there is reported, not
 * skipped over), else the first of `python3` (PATH) and /usr/bin/python3 (Debian's python3-torch) that
 * imports torch. Returns the interpreter, or why none can run the peer.
 */
function torchPython(): { python: string } | string {
  const env = process.env.QUANTLAB_PYTHON;
  const candidates = env ? [env] : ["python3", "/usr/bin/python3"];
  const why: string[] = [];
  for (const python of candidates) {
    const probe = spawnSync(python, ["-c", "import torch"], { encoding: "utf8" });
    if (probe.status === 0) return { python };
    why.push(`${python}: ${(probe.stderr || probe.error?.message || "does not run").trim().split("\n").pop()}`);
  }
  return `no interpreter imports torch (${why.join("; ")}); set QUANTLAB_PYTHON to one that does`;
}

/** The PyTorch peer (bench/gptq_torch.py), or the reason it cannot run. */
function torchPeer(n: number, nTok: number, threads: number): LayerTimes & { version: string; python: string; cpuS: number } | string {
  const py = torchPython();
  if (typeof py === "string") return py;
  const script = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "gptq_torch.py");
  const r = spawnSync(py.python, [script, String(n), String(nTok), String(threads)], { encoding: "utf8", timeout: 1_800_000 });
  if (r.status !== 0) return `bench/gptq_torch.py (${py.python}) failed: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`;
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!) as { hessian_s: number; factor_s: number; columns_s: number; total_s: number; cpu_s: number; torch: string };
  return { hessianS: j.hessian_s, factorS: j.factor_s, columnsS: j.columns_s, totalS: j.total_s, cpuS: j.cpu_s, version: j.torch, python: py.python };
}

/** Llama-3.2-1B's shapes (HF config: hidden 2048, intermediate 8192, 16 layers, 32 heads, 8 KV heads, vocab 128256, tied). */
function llama32_1bConfig(nLayers: number): ModelConfig {
  return { arch: "llama", dim: 2048, hiddenDim: 8192, nLayers, nHeads: 32, nKvHeads: 8, headDim: 64, vocabSize: 128256, seqLen: 2048, ropeTheta: 500000, normEps: 1e-5, tiedEmbeddings: true, name: "synthetic Llama-3.2-1B shape" };
}

/** Weights generated on every get (nothing cached but the bf16 embedding), like a lazy reader. */
class SyntheticWeights extends Map<string, Weight> {
  private readonly shapes: Map<string, number[]>;
  private readonly embedding: Weight;
  constructor(private readonly cfg: ModelConfig, private readonly seed: number) {
    super();
    this.shapes = expectedShapes(cfg);
    const [v, d] = this.shapes.get(TensorNames.tokenEmbd)!;
    const rng = new Rng(seed);
    const bf = new Uint16Array(v! * d!);
    const row = new Float32Array(d!);
    for (let r = 0; r < v!; r++) f32ArrayToBf16(rng.fillNormal(row, 0.02), bf.subarray(r * d!, (r + 1) * d!));
    this.embedding = { kind: "dense", tensor: new Tensor("bf16", [v!, d!], bf) };
  }
  override has(name: string): boolean {
    return this.shapes.has(name);
  }
  override get(name: string): Weight | undefined {
    const shape = this.shapes.get(name);
    if (!shape) return undefined;
    if (name === TensorNames.tokenEmbd) return this.embedding;
    const n = shape.reduce((a, b) => a * b, 1);
    let h = this.seed;
    for (let i = 0; i < name.length; i++) h = (Math.imul(h, 31) + name.charCodeAt(i)) >>> 0;
    const data = shape.length === 1 ? new Float32Array(n).fill(1) : new Rng(h).fillNormal(new Float32Array(n), 0.02);
    return { kind: "dense", tensor: new Tensor("f32", shape, data) };
  }
}

export async function run(ctx: BenchContext): Promise<BenchSection[]> {
  const sections: BenchSection[] = [];
  const want = (name: string): boolean => !ctx.sections || ctx.sections.length === 0 || ctx.sections.includes(name);
  const threads = 2;
  const be = createNodeWasmBackend({ threads });
  await be.ready();
  const kernels = be.linalg();
  if (want("layer")) {
    const n = ctx.quick ? 512 : 4096;
    const nTok = ctx.quick ? 1024 : 8192;
    const rng = new Rng(7);
    const x = layerInputs(rng, n, nTok);
    const w = rng.fillNormal(new Float32Array(n * n), 0.02);
    const loadBefore = loadavg()[0]!.toFixed(2);
    const cpu0 = process.cpuUsage();
    const q = gptqLayer(x, n, nTok, w, kernels);
    const cpu = process.cpuUsage(cpu0);
    const cpuS = (cpu.user + cpu.system) / 1e6;
    ctx.log(`gptq ${n}×${n} wasm t${threads}: ${JSON.stringify(q)} (load ${loadBefore})`);
    const gflops = gemmProbe(be, ctx.quick ? 1024 : 4096, 256);
    // FLOP counts of the issue: n·d² (XᵀX), d³/3 + d³/6 (Cholesky, inverse), out·d²/2 (updates)
    const flops = nTok * n * n + n ** 3 / 3 + n ** 3 / 6 + (n * n * n) / 2;
    const boundS = flops / (gflops * 1e9);
    const torch = torchPeer(n, nTok, threads);
    const loadAfter = loadavg()[0]!.toFixed(2);
    ctx.log(`gemm probe ${gflops.toFixed(1)} GFLOP/s, bound ${boundS.toFixed(1)} s; torch ${JSON.stringify(torch)}`);
    const row = (name: string, t: LayerTimes, vsTorch: string, cpuCol: string): (string | number)[] =>
      [name, fmt(t.hessianS, 2), fmt(t.factorS, 2), fmt(t.columnsS, 2), fmt(t.totalS, 2), cpuCol, vsTorch, `×${fmt(t.totalS / boundS, 2)}`];
    const rows = [row(`quantlab WASM SIMD (f32 products, f64 factor), ${threads} threads`, q, typeof torch === "string" ? "—" : `×${fmt(q.totalS / torch.totalS, 2)}`, fmt(cpuS, 1))];
    if (typeof torch !== "string") rows.push(row(`PyTorch ${torch.version} CPU (${torch.python}), ${threads} threads (bench/gptq_torch.py)`, torch, "×1.00", fmt(torch.cpuS, 1)));
    rows.push(["FLOP bound (this run's WASM f32 GEMM probe)", "", "", "", fmt(boundS, 2), "", "", "×1.00"]);
    sections.push({
      title: `GPTQ, one ${n}×${n} linear (${nTok} calibration tokens, int4:g128:asym), ${threads} threads`,
      table: { headers: ["implementation", "Hessian s", "Cholesky + inverse s", "column loop s", "total s", "CPU s (process)", "vs PyTorch", "vs FLOP bound"], rows },
      notes: [
        `Load average (1 min) ${loadBefore} before, ${loadAfter} after, on a 2-core machine shared with other jobs: absolute times are inflated by whatever else ran; CPU s (quantlab: the process, workers' waits included; PyTorch: the script's process_time over the three phases) is the steadier comparison on a loaded machine.`,
        "quantlab: WasmBackend.linalg() (src/kernels/wasm/linalg.ts, assembly/linalg.ts): the Hessian from f32 products (256 tokens at a time channel-major f32, 2×4 f32x4 tiles summing each panel in f32, added into the f64 lower triangle), the left-looking blocked Cholesky (blocks of 64: one f64x2 GEMM for the block's rows and those below, the rows below the diagonal block on the pool) and the blocked triangular inverse (from the last block) in float64, the column loop on each 128-column block held transposed (in-block updates in f64 on the pool, fakeQuant in TypeScript) and the lazy batch update with f32 products (2×4 f32x4 tiles, subtracted from the f64 W); fused multiply-adds in the relaxed build, which bench/run.ts enables. The f32 products keep the loss, not the codes (GPTQ carries every moved code on): docs/kernels.md, \"GPTQ's linear algebra\"; `products`/`updates: \"f64\"` give the reference's codes.",
        `FLOP bound: (n·d² + d³/3 + d³/6 + out·d²/2) FLOPs = ${fmt(flops / 1e9, 1)} GFLOP at ${fmt(gflops, 1)} GFLOP/s, the f32 mat-mat kernel of the same backend (256×4096 · 4096², ${threads} threads, median of 3). quantlab's Cholesky and inverse run in float64 (half the lanes of that f32 probe).`,
        typeof torch === "string" ? `PyTorch peer skipped: ${torch}.` : "PyTorch: the authors' fasterquant structure (float32 Hessian, cholesky → cholesky_inverse → upper cholesky, per-column loop with in-block rank-1 updates, lazy batch update per 128 columns), torch.set_num_threads(2); same shapes, its own random data.",
        "Before (single-threaded float64 TypeScript, 2026-12-02, load 5–12): 2048×2048 67.6 s, 4096×4096 579.0 s.",
      ],
    });
  }

  const wantSynth = want("model") || want("synth");
  if (!wantSynth) {
    be.dispose();
    return sections;
  }
  const modelRows: (string | number)[][] = [];
  let t0 = performance.now();
  if (want("model")) {
    // whole model: stories260K with the CLI defaults
    const m = await loadModel(dataPath("stories260K", "stories260K.bin"));
    const text = readFileSync(dataPath("tinystories", "calib.txt"), "utf8");
    const samples = ctx.quick ? 16 : 128, seq = ctx.quick ? 64 : 256;
    const calibRef = { name: "calib.txt", sha256: await sha256Hex(new TextEncoder().encode(text)) };
    t0 = performance.now();
    await quantize(m, { target: { spec: "int4:g32:asym" }, method: "gptq", seed: 1, calibration: { source: { text: calibRef }, windows: { kind: "random", samples, seq } } }, { calibText: text, backend: be });
    const s260 = (performance.now() - t0) / 1000;
    ctx.log(`stories260K gptq: ${s260.toFixed(1)} s`);
    modelRows.push(["stories260K (5 layers, 35 linears)", `${samples}×${seq}`, 5, fmt(s260, 1), fmt(s260, 1), fmt(peakRssMiB(), 0), "", ""]);
  }

  // synthetic Llama-3.2-1B shape, layer by layer: QUANTLAB_GPTQ_LAYERS blocks (default 1) on QUANTLAB_GPTQ_WINDOWS
  // calibration windows (NxL, default 4x128; the issue's: 128x256), the whole model's time projected from the
  // per-phase timings (blocks are identical in cost). Fewer than 16: the model gets one more block, unselected,
  // so the last timed block runs its pass to the next block's inputs as every block but the model's last does.
  // quick: a quarter-width stand-in (dim 512, FFN 2048, vocab 32000) so the smoke run stays short
  const envLayers = process.env.QUANTLAB_GPTQ_LAYERS, envWindows = process.env.QUANTLAB_GPTQ_WINDOWS;
  const layersRun = envLayers ? Number(envLayers) : 1;
  if (!Number.isInteger(layersRun) || layersRun < 1 || layersRun > 16) throw new Error(`QUANTLAB_GPTQ_LAYERS must be an integer 1..16, got ${envLayers}`);
  const wm = envWindows ? /^(\d+)x(\d+)$/.exec(envWindows) : null;
  if (envWindows && !wm) throw new Error(`QUANTLAB_GPTQ_WINDOWS must be <windows>x<length> (e.g. 128x256), got ${envWindows}`);
  const nLayersModel = layersRun < 16 ? layersRun + 1 : 16;
  const cfg = ctx.quick ? { ...llama32_1bConfig(nLayersModel), dim: 512, hiddenDim: 2048, nHeads: 8, nKvHeads: 2, vocabSize: 32000, name: "quarter-width stand-in" } : llama32_1bConfig(nLayersModel);
  const synth: Model = { config: cfg, weights: new SyntheticWeights(cfg, 3), source: { path: "synthetic", format: "memory" } };
  const sSamples = wm ? Number(wm[1]) : ctx.quick ? 1 : 4, sSeq = wm ? Number(wm[2]) : ctx.quick ? 64 : 128;
  const sw = Array.from({ length: sSamples }, (_, i) => Int32Array.from({ length: sSeq }, (_, p) => (p === 0 ? 1 : (i * 7919 + p * 104729) % cfg.vocabSize)));
  let quantBytes = 0;
  const rssBefore = peakRssMiB();
  const lastName = `blk.${layersRun - 1}.ffn_down.weight`;
  let tLast = 0;
  const timings = newLayerwiseTimings();
  // QUANTLAB_GPTQ_CLOCK=cpu: the phases in CPU seconds of the process (workers included), for a loaded machine
  const cpuClock = process.env.QUANTLAB_GPTQ_CLOCK === "cpu";
  if (process.env.QUANTLAB_GPTQ_CLOCK && !cpuClock) throw new Error(`QUANTLAB_GPTQ_CLOCK must be "cpu" (or unset: wall clock), got ${process.env.QUANTLAB_GPTQ_CLOCK}`);
  const cpuMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
  if (cpuClock) timings.now = cpuMs;
  let cpuLast = 0;
  // QUANTLAB_GPTQ_FFN_CACHE_MIB: keep that much of the FFN-down input between its pass and the block's last (default 0)
  const ffnCacheMiB = Number(process.env.QUANTLAB_GPTQ_FFN_CACHE_MIB ?? 0);
  if (!(ffnCacheMiB >= 0)) throw new Error(`QUANTLAB_GPTQ_FFN_CACHE_MIB must be a number ≥ 0, got ${process.env.QUANTLAB_GPTQ_FFN_CACHE_MIB}`);
  const loadS0 = loadavg()[0]!.toFixed(2);
  const cpuS0 = process.cpuUsage();
  t0 = performance.now();
  // the pipeline itself (no tokenizer, so no recipe calibration text): fixed pseudo-random token windows
  const recipe = normalizeRecipe({ target: { spec: "int4:g128:asym" }, method: "gptq" });
  const names = linearWeightNames(synth).filter((n) => Number(/^blk\.(\d+)\./.exec(n)?.[1] ?? -1) < layersRun);
  await runLayerwise({
    model: synth, recipe, names, specOf: () => "int4:g128:asym", progress: noProgress, encoder: refGgmlEncoder, backend: be, timings, ffnCacheBytes: ffnCacheMiB * MiB,
    calib: { bosId: 1, windows: () => sw },
    onTensor: (name, w) => { if (w.kind === "quant") quantBytes += w.q.storageBits / 8; if (name === lastName) { tLast = performance.now(); cpuLast = cpuMs(); } },
  }, gptqLayerwise(recipe.options, kernels));
  const sSyn = (tLast - t0) / 1000;
  const cpuSyn = process.cpuUsage(cpuS0);
  const loadS1 = loadavg()[0]!.toFixed(2);
  const peak = peakRssMiB();
  const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
  // per block: everything but the embedding, over the blocks run; the model's last block has no pass to a next block
  const finalPerBlock = timings.finalPassMs / 1000 / layersRun;
  const cpuRun = cpuLast / 1000 - (cpuS0.user + cpuS0.system) / 1e6;
  const perBlock = ((cpuClock ? cpuRun : sSyn) - timings.embedMs / 1000) / layersRun;
  const projected = timings.embedMs / 1000 + 16 * perBlock - finalPerBlock;
  const unit = cpuClock ? "CPU s" : "s";
  const phase = (ms: number): string => `${fmt(ms / 1000 / layersRun, 1)} ${cpuClock ? "CPU " : ""}s`;
  const breakdown = [
    ...SITE_GROUPS.map((g) => `forward to ${g.site} ${phase(timings.forwardMs[g.site] ?? 0)} + Gram ${phase(timings.hookMs[g.site] ?? 0)}`),
    `GPTQ solves (factor + column loops) ${phase(timings.quantizeMs)}`, `pass of the quantized block ${phase(timings.finalPassMs)}`,
    `the rest (weights generated and copied, the report's error measures, packing) ${fmt(perBlock - (sum(timings.forwardMs) + sum(timings.hookMs) + timings.quantizeMs + timings.finalPassMs) / 1000 / layersRun, 1)} ${unit}`,
  ].join("; ");
  ctx.log(`synthetic 1B: ${layersRun} layers (${sSamples}×${sSeq}) in ${sSyn.toFixed(1)} s (${cpuRun.toFixed(1)} CPU s), per block ${perBlock.toFixed(1)} ${unit} (${breakdown}), embed ${(timings.embedMs / 1000).toFixed(1)} ${unit}, projected 16: ${projected.toFixed(0)} ${unit}, peak RSS ${peak.toFixed(0)} MiB, CPU ${((cpuSyn.user + cpuSyn.system) / 1e6).toFixed(0)} s, load ${loadS0}→${loadS1}`);
  const synthName = ctx.quick ? `quarter-width Llama stand-in (dim 512, FFN 2048), ${layersRun} of 16 layers run` : `Llama-3.2-1B shape (dim 2048, FFN 8192, 16 layers), ${layersRun} of 16 layers run`;
  modelRows.push([synthName, `${sSamples}×${sSeq}`, layersRun, fmt(sSyn, 1), fmt(projected, 0) + (cpuClock ? " CPU s" : "") + (layersRun < 16 ? " (projected)" : ""), fmt(peak, 0), fmt(perBlock, 1) + (cpuClock ? " CPU s" : ""), `${loadS0} → ${loadS1}${ffnCacheMiB ? `, FFN cache ${ffnCacheMiB} MiB` : ""}`]);
  sections.push({
    title: "GPTQ, whole model, layer by layer",
    table: { headers: ["model", "calib windows × len", "layers run", "seconds", "seconds, all layers", "peak RSS MiB (process high-water)", "s per block", "load (1 min)"], rows: modelRows },
    notes: [
      "stories260K: int4:g32:asym, calibration from tinystories/calib.txt with the `quantlab quantize` defaults (128 windows of 256, seed 1); time includes the calibration forward passes.",
      `Synthetic: random f32 weights generated per tensor when the pipeline asks (bf16 embedding of 128256×2048 = 501 MiB resident), int4:g128:asym, ${sSamples} windows of ${sSeq} random tokens; quantized linears are streamed out (\`onTensor\`), as a writer would, so memory stays at one block: f32 block weights (233 MiB), and in the WASM backend's memory the float64 Hessian/Cholesky factor of the 8192-wide FFN-down input (512 MiB, overwritten in place), GPTQ's float64 working copy of one weight (128 MiB) and the prepared f32 copies of the linears a pass runs (gate + up + down 192 MiB); with calibration, the hidden states T × 2048 (256 MiB at 32768 tokens), the kept attention output (256 MiB, from the attn_out_in pass to the ffn_in pass) and one chunk's scratch (≈ 100 MiB at 1024 tokens); WebAssembly memory does not shrink, so the high-water mark also holds what the earlier sections of this run grew it to.`,
      "GPTQ here runs on the 2-thread WASM backend's linalg() kernels (Gram, Cholesky of H⁻¹, column updates) and its forward passes; before (single-threaded TypeScript, 2026-12-02, load 5–12): stories260K 279.9 s, one 1B-shaped block 1080.6 s (17290 s extrapolated), peak RSS 1684 MiB.",
      `Peak RSS before the synthetic run (stories260K, the single-layer benches): ${fmt(rssBefore, 0)} MiB; packed output of the ${layersRun} layer(s): ${fmt(quantBytes / MiB, 1)} MiB (×${16 / layersRun} for the whole model, if kept in memory instead of streamed).`,
      `Per block (mean over the ${layersRun} run, ${cpuClock ? "CPU time of the process, workers included (QUANTLAB_GPTQ_CLOCK=cpu)" : "wall clock"}): ${breakdown}; embedding ${fmt(timings.embedMs / 1000, 1)} ${unit} once; ${fmt(sSyn, 1)} s wall, ${fmt(cpuRun, 1)} CPU s for the ${layersRun} block(s). Projected whole model = embedding + 16 × per block − one pass of the quantized block (the last block needs none).`,
      "Before the streamed passes (whole-batch passes, each site recomputed from the block input; 2026-12-08 01:41 UTC, load 1.6 → 2.9): one block at 128×256 481.8 s wall, 490 CPU s, peak RSS 4821 MiB (7588 s projected for 16). Streamed (02:07 UTC, load 4.5 → 2.2): 238.6 s wall, 322.7 CPU s, 2313 MiB; with QUANTLAB_GPTQ_FFN_CACHE_MIB=1024 (02:15 UTC, load 8.1 → 4.4): 256 CPU s, 3082 MiB. docs/kernels.md, \"GPTQ of a whole model\": ≈ 48 min (≈ 39 min with the FFN cache) projected for 16 blocks on a quiet machine.",
      "The whole model, as the issue asks (128 windows of 256, all 16 blocks, synthetic model only): `QUANTLAB_GPTQ_LAYERS=16 QUANTLAB_GPTQ_WINDOWS=128x256 node dist/bench/run.js gptq:synth` (add `QUANTLAB_GPTQ_FFN_CACHE_MIB=1024` to keep the FFN-down input for the last pass: gate/up once instead of twice, +1 GiB; `QUANTLAB_GPTQ_CLOCK=cpu` times the phases in CPU seconds); one block at the full calibration: `QUANTLAB_GPTQ_LAYERS=1 QUANTLAB_GPTQ_WINDOWS=128x256 node dist/bench/run.js gptq:synth`.",
      "Per block: a pass per input site (4 sites, sequential: q/k/v, then o with q/k/v quantized, then gate/up, then down), the GPTQ solves, and one pass of the quantized block. The passes are streamed (pipeline.ts streamPasses, calib.ts BlockPassCache): chunks of 1024 tokens (whole windows), q/k/v and gate/up through one matmulMany each, and each pass resumes after what an earlier pass of the block computed with the same weights: the attention once (attn_out_in pass, kept T × qDim), the residual after attention once (ffn_in pass, written over the block input), gate/up twice (ffn_down_in pass and the final pass: their T × 8192 output, 1 GiB at 32768 tokens, is not kept), down once. Same codes as the whole-batch passes (test/algos/gptq-passes.test.ts). Per token per block that is ≈ 94 M multiply-adds of f32 GEMM (was ≈ 122 M, and four attentions instead of one); the Gram n·d²/2 (three sites of 2048, one of 8192) ≈ 40 M; at 32768 tokens the two are ≈ 6.2 and 2.6 TFLOP per block.",
    ],
  });
  be.dispose();
  return sections;
}
