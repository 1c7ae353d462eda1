/**
 * `quantlab bench <model>`: prefill and decode tokens/s of quantlab's forward pass (after a warm-up;
 * median of --reps runs), and with --vs-llamacpp the same measured with llama.cpp (node-llama-cpp, CPU
 * build, same thread count) on the same file in the same process, runs alternating, and the ratio.
 * The sessions below are also what `npm run bench` (bench/model.ts) drives.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { loadModel } from "../../io/node/load.js";
import { closeModel, type Model } from "../../model/weights.js";
import { Llama } from "../../model/llama.js";
import { WasmBackend } from "../../kernels/wasm/backend.js";
import { createNodeWasmBackend } from "../../kernels/wasm/pool-node.js";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, addPackedActivationsOption, checkPackedActivations, packedActivationsOf, backendFromOptions, backendReady, displayName, placerOf, positiveInt, type BackendOptions } from "../model-options.js";

/** One engine with a model loaded: timed prefill of a prompt, then timed greedy decode from its end. */
export interface SpeedSession {
  readonly engine: string;
  /** milliseconds to evaluate `tokens` from position 0 (the cache is cleared first) */
  prefill(tokens: readonly number[]): Promise<number>;
  /** milliseconds to generate `n` tokens greedily after the last prefill */
  decode(n: number): Promise<number>;
  close(): Promise<void>;
}

export interface SessionOptions {
  threads: number;
  /** positions the context must hold (prompt + generated) */
  context: number;
  /** prefill batch (llama.cpp's batch size; quantlab's prefill chunk) */
  batch: number;
  backend?: string;
  /** wasm backend layouts (see WasmBackendOptions.layouts; default auto) */
  layouts?: "auto" | "native" | "repacked";
  /** --packed-activations: f32 (default) or q8 */
  packedActivations?: string;
}

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** quantlab: the model loaded straight into the backend's memory (GGUF), Llama forward pass. */
export async function openQuantlabSession(path: string, o: SessionOptions): Promise<SpeedSession & { backendName: string; weightBytes: number; loadMs: number; llama: Llama; setThreads(n: number): void }> {
  const t0 = performance.now();
  const backend = o.layouts && o.backend !== "ref"
    ? createNodeWasmBackend({ threads: o.threads, layouts: o.layouts, packedActivations: packedActivationsOf({ backend: "wasm", packedActivations: o.packedActivations }) })
    : backendFromOptions({ backend: o.backend ?? "wasm", threads: o.threads, packedActivations: o.packedActivations });
  let model: Model | undefined;
  try {
    model = await loadModel(path, { place: placerOf(backend) });
    checkPackedActivations(model, { backend: o.backend ?? "wasm", packedActivations: o.packedActivations }, path);
    const llama = new Llama(model, { backend, contextLength: o.context, maxBatch: o.batch });
    await backendReady(backend);
    const weightBytes = backend instanceof WasmBackend ? backend.listing().reduce((a, r) => a + r.bytes, 0) : NaN;
    const loadMs = performance.now() - t0;
    let next = 0;
    let pos = 0;
    return {
      engine: "quantlab",
      backendName: llama.backend.name,
      weightBytes,
      loadMs,
      llama,
      /** run on fewer threads than the backend was made with (1 = the calling thread only) */
      setThreads(n: number) {
        if (backend instanceof WasmBackend) backend.minParallelBytes = n <= 1 ? Infinity : 128 * 1024;
      },
      async prefill(tokens) {
        llama.reset();
        const s = performance.now();
        const logits = llama.prefill(tokens, 0);
        const ms = performance.now() - s;
        next = argmax(logits);
        pos = tokens.length;
        return ms;
      },
      async decode(n) {
        if (pos + n > llama.capacity) throw new QuantlabError("E_ARG", `bench: ${pos} + ${n} positions exceed the context ${llama.capacity}`);
        const s = performance.now();
        for (let i = 0; i < n; i++) next = argmax(llama.forward(next, pos++));
        return performance.now() - s;
      },
      async close() {
        backend.dispose?.();
        await closeModel(model!);
      },
    };
  } catch (e) {
    backend.dispose?.();
    if (model) await closeModel(model);
    throw e;
  }
}

/** llama.cpp through node-llama-cpp (a devDependency, imported only here): the model loaded once; a
 * session per thread count (one context each). */
export interface LlamaCppModel {
  version: string;
  loadMs: number;
  session(o: SessionOptions): Promise<SpeedSession>;
  close(): Promise<void>;
}

export async function openLlamaCpp(path: string): Promise<LlamaCppModel> {
  type Nlc = typeof import("node-llama-cpp");
  let nlc: Nlc;
  let version = "?";
  try {
    nlc = await import("node-llama-cpp");
    const pkg = new URL("../package.json", import.meta.resolve("node-llama-cpp"));
    version = (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
  } catch (e) {
    throw new QuantlabError("E_UNSUPPORTED", `--vs-llamacpp needs the node-llama-cpp package (a devDependency: npm install --include=dev): ${(e as Error).message.split("\n")[0]}`);
  }
  const t0 = performance.now();
  // maxThreads 0: each context's thread count is used as given (node-llama-cpp LlamaContextOptions.threads)
  const llama = await nlc.getLlama({ gpu: false, build: "never", logLevel: nlc.LlamaLogLevel.error, progressLogs: false, maxThreads: 0 });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const loadMs = performance.now() - t0;
  return {
    version: `node-llama-cpp ${version}`,
    loadMs,
    async session(o) {
      const ctx = await model.createContext({ contextSize: o.context, batchSize: o.batch, threads: { ideal: o.threads, min: o.threads }, sequences: 1 });
      const seq = ctx.getSequence();
      let next = 0;
      return {
        engine: "llama.cpp",
        async prefill(tokens) {
          await seq.clearHistory();
          const items = tokens.map((t, i) => (i === tokens.length - 1 ? [t, { generateNext: { token: true } }] : t)) as Parameters<typeof seq.controlledEvaluate>[0];
          const s = performance.now();
          const res = await seq.controlledEvaluate(items);
          const ms = performance.now() - s;
          next = (res[res.length - 1] as { next?: { token?: number | null } } | undefined)?.next?.token ?? 0;
          return ms;
        },
        async decode(n) {
          // evaluate([next]) evaluates it, then yields one greedy token per further evaluation: n yields = n evaluations
          let i = 0;
          const s = performance.now();
          for await (const t of seq.evaluate([next as never], { temperature: 0 })) {
            next = t;
            if (++i >= n) break;
          }
          return performance.now() - s;
        },
        async close() {
          await ctx.dispose();
        },
      };
    },
    async close() {
      await model.dispose();
      await llama.dispose();
    },
  };
}

/** A deterministic prompt of n token ids in the vocabulary (skipping the first 259: specials and bytes). */
export function benchPrompt(vocab: number, n: number): number[] {
  const lo = Math.min(259, Math.floor(vocab / 2));
  return Array.from({ length: n }, (_, i) => lo + ((i * 7919 + 13) % (vocab - lo)));
}

export interface SpeedFigures {
  /** tokens/s, median and best of the timed runs */
  prefill: { median: number; best: number };
  decode: { median: number; best: number };
  runs: number;
}

export function summarize(prefillMs: number[], decodeMs: number[], promptTokens: number, genTokens: number): SpeedFigures {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return {
    prefill: { median: (promptTokens * 1000) / med(prefillMs), best: (promptTokens * 1000) / Math.min(...prefillMs) },
    decode: { median: (genTokens * 1000) / med(decodeMs), best: (genTokens * 1000) / Math.min(...decodeMs) },
    runs: prefillMs.length,
  };
}

/**
 * Warm-up (a short prefill and decode on each session), then `reps` rounds; each round runs every
 * session in turn (prefill, then decode), so engines alternate and share whatever the machine's load is.
 */
export async function runAlternating(sessions: SpeedSession[], prompt: readonly number[], genTokens: number, reps: number, onRound?: (i: number) => void): Promise<SpeedFigures[]> {
  for (const s of sessions) {
    await s.prefill(prompt.slice(0, Math.min(prompt.length, 16)));
    await s.decode(Math.min(genTokens, 4));
  }
  const pre = sessions.map(() => [] as number[]);
  const dec = sessions.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < sessions.length; i++) {
      pre[i]!.push(await sessions[i]!.prefill(prompt));
      dec[i]!.push(await sessions[i]!.decode(genTokens));
    }
    onRound?.(r);
  }
  return sessions.map((_, i) => summarize(pre[i]!, dec[i]!, prompt.length, genTokens));
}

interface BenchOptions extends BackendOptions {
  layouts?: "auto" | "native" | "repacked";
  promptTokens: number;
  genTokens: number;
  reps: number;
  vsLlamacpp?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command("bench")
    .description("prefill and decode tokens/s (optionally next to llama.cpp on the same GGUF)")
    .argument("<model>", "GGUF (for --vs-llamacpp), or any model file quantlab loads")
    .option("--prompt-tokens <n>", "prompt length for the prefill measurement", positiveInt("--prompt-tokens"), 128)
    .option("--gen-tokens <n>", "tokens generated greedily for the decode measurement", positiveInt("--gen-tokens"), 64)
    .option("--reps <n>", "timed runs after the warm-up (median reported)", positiveInt("--reps"), 3)
    .option("--vs-llamacpp", "also measure llama.cpp (node-llama-cpp, CPU, same threads) on the same file, alternating runs")
    .option("--layouts <kind>", "wasm: auto (default: fastest measured per type), native (Q8_0/Q4_0/Q4_K/Q6_K on the file's blocks, in place, rows not interleaved: least memory) or repacked (SoA copies: more bytes, fewer instructions)", (v: string) => {
      if (v !== "auto" && v !== "native" && v !== "repacked") throw new QuantlabError("E_ARG", `option --layouts: expected auto, native or repacked, got "${v}"`);
      return v;
    })
    .option("--json", "print one JSON object");
  addPackedActivationsOption(cmd);
  addBackendOptions(cmd).action(async (path: string, o: BenchOptions) => {
    const context = o.promptTokens + o.genTokens + 8;
    const so: SessionOptions = { threads: o.threads ?? 1, context, batch: Math.min(o.promptTokens, 512), backend: o.backend, layouts: o.layouts, packedActivations: o.packedActivations };
    const sessions: SpeedSession[] = [];
    const closers: (() => Promise<void>)[] = [];
    try {
      const q = await openQuantlabSession(path, so);
      sessions.push(q);
      let cpp: LlamaCppModel | undefined;
      if (o.vsLlamacpp) {
        cpp = await openLlamaCpp(path);
        closers.push(() => cpp!.close());
        sessions.push(await cpp.session(so));
      }
      const prompt = benchPrompt(q.llama.config.vocabSize, o.promptTokens);
      const bar = stderrProgress();
      bar.start(o.reps, "bench");
      const figs = await runAlternating(sessions, prompt, o.genTokens, o.reps, () => bar.tick());
      bar.done();
      const ours = figs[0]!;
      const theirs = figs[1];
      const ratio = theirs ? { prefill: ours.prefill.median / theirs.prefill.median, decode: ours.decode.median / theirs.decode.median } : undefined;
      if (o.json) {
        printJson({
          model: path, threads: so.threads, promptTokens: o.promptTokens, genTokens: o.genTokens, reps: o.reps,
          quantlab: { backend: q.backendName, weightBytes: q.weightBytes, loadSeconds: q.loadMs / 1000, ...ours },
          ...(theirs && cpp ? { llamacpp: { version: cpp.version, loadSeconds: cpp.loadMs / 1000, ...theirs }, ratio } : {}),
        });
        return;
      }
      const f = (x: number) => x.toFixed(x < 10 ? 2 : 1);
      const lines = [
        `${displayName(path)}: ${o.promptTokens}-token prefill, ${o.genTokens}-token decode, ${so.threads} thread(s), median of ${o.reps}`,
        `quantlab (${q.backendName}):  prefill ${f(ours.prefill.median)} tok/s   decode ${f(ours.decode.median)} tok/s`,
      ];
      if (theirs && cpp && ratio) {
        lines.push(`llama.cpp (${cpp.version}):  prefill ${f(theirs.prefill.median)} tok/s   decode ${f(theirs.decode.median)} tok/s`);
        lines.push(`ratio quantlab / llama.cpp:  prefill ${ratio.prefill.toFixed(2)}×   decode ${ratio.decode.toFixed(2)}×`);
      }
      process.stdout.write(lines.join("\n") + "\n");
    } finally {
      for (const s of sessions) await s.close();
      for (const c of closers) await c();
    }
  });
}
