/** Shared plumbing of the commands that run a model (run, eval, kld): load through loadModel (closed when the command ends), check the tokenizer. */
import { basename } from "node:path";
import { setFlagsFromString } from "node:v8";
import type { Command } from "commander";
import { QuantlabError } from "../core/errors.js";
import { loadModel, type LoadOptions } from "../io/node/load.js";
import type { Model } from "../model/weights.js";
import type { Tokenizer } from "../model/tokenizer.js";
import type { Backend } from "../kernels/types.js";
import { RefBackend } from "../kernels/ref/backend.js";
import { createNodeWasmBackend } from "../kernels/wasm/pool-node.js";
import { WasmBackend } from "../kernels/wasm/backend.js";
import { wasmVariantSupported } from "../kernels/wasm/module.js";
import type { KvCacheFactory } from "../model/kv-cache.js";
import { quantKvCacheFactory } from "../model/kv-quant.js";

/**
 * Node 20 keeps relaxed SIMD behind a V8 flag (on by default from Node 22). V8 flags are process-wide and
 * must be set before a module using them compiles; the kernels compile on first backend creation, after
 * this runs. `auto` then picks the relaxed build only if the engine validates it (shared/notes/kernels.md).
 */
export function enableRelaxedSimd(): void {
  if (wasmVariantSupported("relaxed")) return;
  setFlagsFromString("--experimental-wasm-relaxed-simd");
}
enableRelaxedSimd();

export interface BackendOptions {
  backend: string;
  threads?: number;
  /** --packed-activations (commands that run quantized models): f32 (default) or q8 */
  packedActivations?: string;
}

const verbose = (): boolean => process.argv.includes("--verbose");

/**
 * `--backend wasm|ref [--threads n]` → a Backend: the one definition every command uses. wasm (the
 * default) is the WebAssembly SIMD backend with `threads` threads (worker pool over shared memory); ref the
 * plain-TypeScript reference (one thread: --threads > 1 with it is an error, it would have no effect).
 */
export function backendFromOptions(o: BackendOptions): Backend {
  switch (o.backend) {
    case "ref":
      if ((o.threads ?? 1) > 1) throw new QuantlabError("E_ARG", `option --threads: the ref backend runs on one thread; use --backend wasm for ${o.threads} threads`);
      if (o.packedActivations === "q8") throw new QuantlabError("E_ARG", "option --packed-activations q8: the ref backend multiplies in f32 only; use --backend wasm");
      return new RefBackend();
    case "wasm": return createNodeWasmBackend({ threads: o.threads ?? 1, packedActivations: packedActivationsOf(o) });
    default: throw new QuantlabError("E_ARG", `option --backend: unknown backend "${o.backend}" (expected wasm or ref)`);
  }
}

export { placerOf } from "../io/placement.js";

/** Waits for a threaded backend's workers (they start only while the event loop turns); says so if they do not. */
export async function backendReady(backend: Backend): Promise<void> {
  if (!(backend instanceof WasmBackend) || backend.threads <= 1) return;
  const ok = await backend.ready(10000);
  if (!ok && verbose()) process.stderr.write(`quantlab: not all ${backend.threads - 1} worker threads started within 10 s; the main thread covers for them\n`);
}

/** --packed-activations checked: f32 (default) or q8. */
export function packedActivationsOf(o: BackendOptions): "f32" | "q8" {
  const v = o.packedActivations ?? "f32";
  if (v !== "f32" && v !== "q8") throw new QuantlabError("E_ARG", `option --packed-activations: expected f32 or q8, got "${v}"`);
  return v;
}

/**
 * Adds --packed-activations to a command that runs models (run, eval, kld, bench): how the wasm backend runs
 * weights quantized with quantlab specs (GGUF block types always take Q8 activations, as llama.cpp's do).
 */
export function addPackedActivationsOption(cmd: Command): Command {
  return cmd.option(
    "--packed-activations <mode>",
    "quantlab-spec weights on the wasm backend: f32 (default: exact, the fake-quant numbers) or q8 (each input rounded to 8 bits per 32 as llama.cpp does: integer kernels, several times faster decode; docs/kernels.md)",
  );
}

/** A warning when --packed-activations q8 cannot change anything: the model holds no quantlab-quantized weight. */
export function checkPackedActivations(model: Model, o: BackendOptions, path: string): void {
  if (o.packedActivations !== "q8") return;
  for (const w of model.weights.values()) if (w.kind === "quant") return;
  process.stderr.write(`quantlab: warning: --packed-activations q8 has no effect on ${displayName(path)}: it holds no quantlab-quantized weights (GGUF block types always run with Q8 activations)\n`);
}

/** Adds --backend and --threads to a command. */
export function addBackendOptions(cmd: Command): Command {
  return cmd
    .option("--backend <name>", "kernels: wasm (WebAssembly SIMD, default) or ref (plain TypeScript reference)", "wasm")
    .option("--threads <n>", "threads of the wasm backend (workers + the main thread): forward passes, calibration and ggml encoding", positiveInt("--threads"), 1);
}

/**
 * How to close the models this CLI run loaded. Their weights are read on first use (io/lazy.ts), so their
 * files stay open while the command runs; main() closes them all when the command ends, on success or error.
 */
const closers: (() => Promise<void>)[] = [];

/** loadModel for commands: the model is closed when the command ends (closeLoadedModels). */
export async function loadCliModel(path: string, opts: LoadOptions = {}): Promise<Model> {
  const model = await loadModel(path, opts);
  // keep the closer, not the model: a command that drops its model lets its weights be collected
  // (the loaders' close functions are closures over their files alone)
  const close = model.close;
  if (close) closers.push(close);
  return model;
}

/** Closes every model loadCliModel gave out (main.ts, after the command). */
export async function closeLoadedModels(): Promise<void> {
  for (const close of closers.splice(0)) await close();
}

export async function loadModelWithTokenizer(path: string, opts: LoadOptions): Promise<{ model: Model; tokenizer: Tokenizer }> {
  const model = await loadCliModel(path, opts);
  const tokenizer = model.tokenizer;
  if (!tokenizer) {
    throw new QuantlabError(
      "E_ARG",
      `${path}: no tokenizer found (for llama2.c models: tok${model.config.vocabSize}.bin or tokenizer.bin beside the model); pass --tokenizer <file>`,
    );
  }
  // HF checkpoints often pad the embedding beyond the tokenizer (e.g. to a multiple of 64): only a
  // tokenizer that can produce ids the model cannot embed is an error (llama2.c loading checks equality)
  if (tokenizer.vocabSize > model.config.vocabSize) {
    throw new QuantlabError("E_FORMAT", `${path}: tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary has only ${model.config.vocabSize}`);
  }
  return { model, tokenizer };
}

/** --allow-nonfinite on every command that writes weights (model/finite.ts) */
export const ALLOW_NONFINITE_HELP = "write weights holding NaN/Inf instead of refusing the model (by default every write path and quantize stop at the first one, naming the tensor)";

export function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new QuantlabError("E_ARG", `option ${name}: expected a positive integer, got "${v}"`);
    return n;
  };
}

export function displayName(path: string): string {
  return basename(path.replace(/\/+$/, ""));
}

/** Adds --kv <spec>, --kv-keys, --kv-window (quantized KV cache, src/model/kv-quant.ts) to a command. */
export function addKvOption(cmd: Command, what = "the model"): Command {
  return cmd
    .option("--kv <spec>", `store ${what}'s KV cache quantized with a spec (e.g. int8, int4:g4:asym, fp8_e4m3, nf4:channel; KIVI: int2:g32:asym --kv-keys channel --kv-window 32; docs/model.md)`)
    .option("--kv-keys <axis>", "with --kv: quantize keys per \"token\" (default, as values) or per \"channel\" over groups of the spec's g<G> tokens (KIVI)")
    .option("--kv-window <n>", "with --kv: keep the n most recent positions unquantized (KIVI's residual; default 0)", (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new QuantlabError("E_ARG", `option --kv-window: expected a non-negative integer, got "${v}"`);
      return n;
    });
}

export interface KvFlags {
  kv?: string;
  kvKeys?: string;
  kvWindow?: number;
}

/** `{ kvCache }` for LlamaOptions from --kv / --kv-keys / --kv-window (nothing when absent); bad specs fail here, before any work. */
export function kvCacheOption(o: KvFlags): { kvCache?: KvCacheFactory } {
  if (o.kv === undefined) {
    if (o.kvKeys !== undefined) throw new QuantlabError("E_ARG", "option --kv-keys: needs --kv <spec>");
    if (o.kvWindow !== undefined) throw new QuantlabError("E_ARG", "option --kv-window: needs --kv <spec>");
    return {};
  }
  if (o.kvKeys !== undefined && o.kvKeys !== "token" && o.kvKeys !== "channel") throw new QuantlabError("E_ARG", `option --kv-keys: expected "token" or "channel", got "${o.kvKeys}"`);
  return { kvCache: quantKvCacheFactory(o.kv, { ...(o.kvKeys ? { keys: o.kvKeys as "token" | "channel" } : {}), ...(o.kvWindow !== undefined ? { window: o.kvWindow } : {}) }) };
}
