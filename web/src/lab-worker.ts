/**
 * The lab's library host: a Web Worker running the same quantlab code as the CLI — loaders over File-backed
 * byte sources (src/io/blob-source.ts: File.slice + FileReaderSync, so weights are read lazily and a large
 * file is never copied whole into the heap), `quantize(model, recipe)`, the writers (src/io/quantize-output.ts,
 * into a Blob), the compare measurements (src/eval/compare.ts), generation. The page only draws.
 *
 * Kernels: the WASM SIMD backend; with threads over SharedArrayBuffer when the page is cross-origin isolated
 * (pool workers are Web Workers, src/kernels/wasm/pool-web.ts, loading the same POOL_TASKS table), else one
 * thread. Where WebAssembly with shared memory is unavailable, the TypeScript reference backend.
 *
 * Every result is reloaded from its own Blob (the file the person downloads) for generation and histograms,
 * so what the page shows is what the file holds — and a restarted worker (cancel) picks results up again.
 */
import { QuantlabError } from "../../src/core/errors.js";
import type { Progress } from "../../src/core/progress.js";
import { numel } from "../../src/core/tensor.js";
import { isWeightLoaded, releaseWeight, weightShape } from "../../src/core/weight.js";
import { quantize } from "../../src/algos/quantize.js";
import { linearWeightNames } from "../../src/algos/select.js";
import { channelOutliers } from "../../src/eval/channel-outliers.js";
import { CompareSession } from "../../src/eval/compare.js";
import { gridHistogram } from "../../src/eval/grid-histogram.js";
import { BlobDir, BlobSink, BlobSource } from "../../src/io/blob-source.js";
import { loadModelSource, loadPickedModel, type NamedSource } from "../../src/io/open-model.js";
import { placerOf } from "../../src/io/placement.js";
import { resultExtension, writeQuantizeResult } from "../../src/io/quantize-output.js";
import { inferOnnxDtype, writeOnnxDir } from "../../src/io/onnx.js";
import { zipSync } from "fflate";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import type { Backend } from "../../src/kernels/types.js";
import { WasmBackend } from "../../src/kernels/wasm/backend.js";
import { canShareMemory, WebWorkerHost } from "../../src/kernels/wasm/pool-web.js";
import { generate } from "../../src/model/generate.js";
import { Llama, ropeFactorSet } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { QTensor } from "../../src/quant/tensor.js";
import type { BackendInfo, ModelSummary, OnnxReply, QuantizeReply, Reply, Request } from "./protocol.js";
import { formChoices, recipeOfChoice, type FormChoice } from "./recipe.js";
import { quantKvCacheFactory } from "../../src/model/kv-quant.js";

interface Scope {
  postMessage(m: Reply): void;
  onmessage: ((e: { data: { rid: number; req: Request } | { init: string } }) => void) | null;
  navigator: { hardwareConcurrency?: number };
}
const scope = self as unknown as Scope;

/**
 * `search` is the page's query string (a worker's own location is its script's URL), sent as the first message.
 * Threads: the page's ?threads=N, else up to 4 of the machine's cores, when memory can be shared.
 * Activations of quantlab-spec weights: ?activations=q8 runs them on the integer Q8 kernels (as the CLI's
 * --packed-activations q8), else f32 (the exact fake-quant numbers); any other value is shown as a note and f32 kept.
 */
function makeBackend(search: string): { backend: Backend; info: BackendInfo } {
  const isolated = canShareMemory();
  const params = new URLSearchParams(search);
  const act = params.get("activations") ?? "f32";
  const packedActivations = act === "q8" ? "q8" : "f32";
  const actNote = act !== "f32" && act !== "q8" ? `?activations=${act} is not f32 or q8: f32 activations` : undefined;
  const want = Number(params.get("threads") ?? "");
  const threads = isolated ? (Number.isInteger(want) && want > 0 ? want : Math.min(4, scope.navigator.hardwareConcurrency ?? 1)) : 1;
  try {
    const host = threads > 1 ? new WebWorkerHost(() => new Worker(new URL("./pool-worker.ts", import.meta.url), { type: "module" }) as never) : undefined;
    const backend = new WasmBackend({ threads, packedActivations, ...(host ? { workerHost: host } : {}) });
    const note = [!isolated ? "not cross-origin isolated: one thread" : undefined, actNote].filter(Boolean).join(" · ");
    return { backend, info: { backend: backend.name, threads: backend.threads, workersRunning: 0, isolated, packedActivations, ...(note ? { note } : {}), ...formChoices() } };
  } catch (e) {
    return { backend: new RefBackend(), info: { backend: "ref", threads: 1, workersRunning: 0, isolated, packedActivations: "f32", note: `WebAssembly kernels unavailable (${(e as Error).message}): TypeScript reference kernels${packedActivations === "q8" ? " (f32 activations only)" : ""}`, ...formChoices() } };
  }
}

// made when the page's first message gives its query string (start below)
let backend!: Backend;
let info!: BackendInfo;
let base: Model | undefined;
const results = new Map<string, Model>();
/** the KV cache each result was asked for (its generation runs with it too) */
const resultKv = new Map<string, NonNullable<FormChoice["kv"]>>();
/** one compare session per evaluation text: the float model's logits are computed once for it */
let session: { text: string; s: CompareSession } | undefined;

function post(m: Reply): void {
  scope.postMessage(m);
}

/** Progress as messages, at most every 50 ms (the page redraws a bar; more would be noise). */
function progressFor(rid: number): Progress {
  let total = 0, value = 0, label = "", last = 0;
  const send = (force = false) => {
    const now = performance.now();
    if (!force && now - last < 50) return;
    last = now;
    post({ rid, type: "progress", label, value, total });
  };
  return {
    start(t, l) { total = t; value = 0; label = l; send(true); },
    tick(n = 1) { value += n; send(); },
    done() { value = total; send(true); },
  };
}

function needBase(): Model {
  if (!base) throw new QuantlabError("E_ARG", "open a model first");
  return base;
}

function summary(m: Model): ModelSummary {
  const c = m.config;
  let params = 0;
  for (const w of m.weights.values()) params += numel(weightShape(w));
  return { name: c.name ?? m.source.path, format: m.source.format, params, nLayers: c.nLayers, dim: c.dim, hiddenDim: c.hiddenDim, vocabSize: c.vocabSize, seqLen: c.seqLen, linears: linearWeightNames(m).filter((n) => m.weights.has(n)), tokenizer: !!m.tokenizer };
}

const named = (f: File): NamedSource => ({ name: f.name, source: new BlobSource(f.name, f) });

async function open(req: Extract<Request, { type: "open" }>, rid: number): Promise<ModelSummary> {
  if (base) await base.close?.();
  base = undefined;
  session = undefined;
  const dir = req.dir ? new BlobDir(req.dir.name, req.dir.files) : undefined;
  base = await loadPickedModel({ files: req.files.map(named), ...(dir ? { dir } : {}) }, { progress: progressFor(rid), place: placerOf(backend) });
  return summary(base);
}

async function adopt(id: string, fileName: string, blob: Blob): Promise<void> {
  results.set(id, await loadModelSource({ name: fileName, source: new BlobSource(fileName, blob) }, undefined, { place: placerOf(backend) }));
}

function sessionFor(evalText: string | undefined, rid: number): CompareSession {
  const m = needBase();
  const text = evalText ?? "";
  if (!session || session.text !== text) {
    const tok = m.tokenizer;
    if (text && !tok) throw new QuantlabError("E_ARG", `${m.config.name}: no tokenizer, so no KLD can be measured (add the tokenizer file)`);
    // the report's defaults: windows of 256 positions, 1020 scored tokens (4 windows)
    const ctx = Math.min(256, m.config.seqLen);
    session = { text, s: new CompareSession(m, { ...(text ? { tokens: tok!.encode(text, { bos: false }) } : {}), bosId: tok?.bosId ?? 1, ctx, maxTokens: 1020, backend }) };
  }
  session.s.progress = progressFor(rid);
  return session.s;
}

/** Downloadable outputs: the file quantize writes (and, on request, its ONNX directory: onnxRequest). */
async function quantizeRequest(req: Extract<Request, { type: "quantize" }>, rid: number): Promise<QuantizeReply> {
  const m = needBase();
  const progress = progressFor(rid);
  const { recipe, calibText, note } = await recipeOfChoice(req.choice, m.config.seqLen);
  const r = await quantize(m, recipe, { ...(calibText !== undefined ? { calibText } : {}), backend, progress });
  const sink = new BlobSink();
  const stem = (m.config.name ?? "model").replace(/\.(bin|gguf|safetensors)$/i, "");
  const label = "preset" in r.recipe.target ? r.recipe.target.preset : r.recipe.target.spec;
  const fileName = `${stem}-${label.replace(/[^A-Za-z0-9_.+-]+/g, "_")}${resultExtension(r)}`;
  await writeQuantizeResult(r, sink, fileName, { progress });
  const blob = sink.toBlob();
  const kv = req.choice.kv;
  const kvOptions = { ...(kv?.keys !== undefined ? { keys: kv.keys } : {}), ...(kv?.window !== undefined ? { window: kv.window } : {}) };
  if (kv) quantKvCacheFactory(kv.spec, kvOptions); // a bad KV spec or option fails before the measurement
  const measured = await sessionFor(req.evalText, rid).measureResult(r, kv?.spec, undefined, kvOptions);
  await adopt(req.id, fileName, blob);
  if (kv) resultKv.set(req.id, kv);
  const gridTensors = [...r.model.weights].filter(([, w]) => w.kind === "quant" && w.q instanceof QTensor && w.q.quantizer.dim === 1).map(([n]) => n);
  return { id: req.id, fileName, blob, output: r.output, recipeJson: r.recipeJson, row: measured.row, tensors: measured.tensors, gridTensors, ...(note ? { note } : {}) };
}

/**
 * The transformers.js directory of a result, as the CLI's `quantlab export <file> --onnx <dir>` writes it
 * (the same writer, dtype inferred from the codes the same way), zipped into one download: the browser has
 * no directory to write into. Entries are stored (no compression): the weights are already packed codes.
 */
async function onnxRequest(id: string, rid: number): Promise<OnnxReply> {
  const m = results.get(id);
  if (!m) throw new QuantlabError("E_ARG", `no result ${id}`);
  const dtype = inferOnnxDtype(m);
  const stem = (m.source.path.split("/").pop() ?? "model").replace(/\.(bin|gguf|safetensors)$/i, "");
  const files: Record<string, Uint8Array> = {};
  const dir = {
    async writeFile<T>(file: string, write: (sink: BlobSink) => Promise<T>): Promise<T> {
      const sink = new BlobSink();
      const r = await write(sink);
      files[`${stem}-onnx/${file}`] = new Uint8Array(await sink.toBlob().arrayBuffer());
      return r;
    },
  };
  post({ rid, type: "progress", label: "ONNX export", value: 0, total: 1 });
  const r = await writeOnnxDir(m, dir, { dtype, name: `${stem}-onnx` });
  post({ rid, type: "progress", label: "ONNX export", value: 1, total: 1 });
  const zip = zipSync(Object.fromEntries(Object.entries(files).map(([k, v]) => [k, [v, { level: 0 }]])));
  return { fileName: `${stem}-onnx.zip`, blob: new Blob([zip], { type: "application/zip" }), dtype, files: r.files, notes: r.notes };
}

function histogram(id: string, tensor: string) {
  const m = needBase();
  const q = results.get(id)?.weights.get(tensor);
  if (!q || q.kind !== "quant" || !(q.q instanceof QTensor)) throw new QuantlabError("E_ARG", `${tensor}: not a quantlab-quantized tensor of this result (GGUF presets have no per-weight grid)`);
  const f = m.weights.get(tensor)!;
  const wasLoaded = isWeightLoaded(f);
  const h = gridHistogram(tensor, dequantizeWeight(f, tensor).data, q.q);
  if (!wasLoaded) releaseWeight(f);
  return h;
}

function run(req: Extract<Request, { type: "generate" }>, rid: number): { text: string; tokenIds: number[] } {
  const m = req.which === "float" ? needBase() : results.get(req.which);
  if (!m) throw new QuantlabError("E_ARG", `no result ${req.which}`);
  if (!m.tokenizer) throw new QuantlabError("E_ARG", `${m.config.name}: no tokenizer (for a llama2.c model, pick its tok<vocab>.bin too)`);
  // as `quantlab run`: a KV cache for the positions this run can reach (a 128k-context model would want GBs for the
  // whole context), LongRoPE's factor set by the model's own context
  const kv = req.which === "float" ? undefined : resultKv.get(req.which);
  const kvCache = kv ? { kvCache: quantKvCacheFactory(kv.spec, { ...(kv.keys !== undefined ? { keys: kv.keys } : {}), ...(kv.window !== undefined ? { window: kv.window } : {}) }) } : {};
  const llama = new Llama(m, { backend, ...kvCache, ...(req.steps > 0 ? { contextLength: Math.min(m.config.seqLen, req.steps) } : {}), ropeFactors: ropeFactorSet(m.config, m.config.seqLen) });
  try {
    // the CLI's `quantlab run` defaults: greedy, llama2.c models stop at BOS only
    const r = generate(llama, m.tokenizer, { prompt: req.prompt, steps: req.steps, temperature: 0, topP: 0.9, topK: 0, seed: 1, stopAtEos: m.source.format !== "llama2c", onText: (piece) => post({ rid, type: "text", piece }) });
    return { text: r.text, tokenIds: r.tokenIds };
  } finally {
    llama.dispose();
  }
}

async function handle(rid: number, req: Request): Promise<unknown> {
  switch (req.type) {
    case "open": return open(req, rid);
    case "adopt": return adopt(req.id, req.fileName, req.blob);
    case "quantize": return quantizeRequest(req, rid);
    case "histogram": return histogram(req.id, req.tensor);
    case "outliers": { const m = needBase(); return channelOutliers(m, linearWeightNames(m).filter((n) => m.weights.has(n))); }
    case "generate": return run(req, rid);
    case "onnx": return onnxRequest(req.id, rid);
  }
}

// requests run one at a time, in order (the library is synchronous between awaits)
let queue: Promise<void> = Promise.resolve();
scope.onmessage = (e) => {
  if ("init" in e.data) return start(e.data.init);
  const { rid, req } = e.data;
  queue = queue.then(async () => {
    try {
      post({ rid, type: "done", result: await handle(rid, req) });
    } catch (err) {
      post({ rid, type: "error", message: (err as Error).message ?? String(err) });
    }
  });
};

function start(search: string): void {
  ({ backend, info } = makeBackend(search));
  void (async () => {
    // threaded pools start their workers asynchronously; say which kernels run once they are up
    if (backend instanceof WasmBackend && backend.threads > 1) {
      await backend.ready(10000);
      info.workersRunning = backend.poolStats().alive;
    }
    post({ rid: 0, type: "ready", info });
  })();
}
