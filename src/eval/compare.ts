/**
 * Compare tables: quantize one model several ways and measure each against the float model on the same
 * windows — bits per weight (scales and zero points included), the size of the file `quantize` writes,
 * perplexity, mean KL divergence, top-1 agreement, worst-tensor SQNR and the time. One implementation for
 * `quantlab compare`, `quantlab report` and the browser lab.
 *
 * Rows are weight specs (round to nearest, or mixed precision), llama-quantize presets (GGUF blocks), and
 * KV-cache specs (float weights, quantized cache). The float model's logits are computed on the first row
 * and replayed for every other (RecordedLogits), so it runs once.
 *
 * This is the one module of eval that uses algos (it quantizes); algos uses eval's windows and KLD below it.
 */
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { numel } from "../core/tensor.js";
import { isWeightLoaded, releaseWeight, weightShape } from "../core/weight.js";
import { METHODS } from "../algos/methods/index.js";
import { isMixedSpec, parseMixedSpec, printMixedSpec } from "../algos/mixed-model.js";
import { normalizeRecipe, quantize, type QuantizeResult } from "../algos/quantize.js";
import type { Recipe } from "../algos/recipe.js";
import { linearWeightNames, selectTensors } from "../algos/select.js";
import { GGML_PRESET_NAMES, parseGgmlPreset } from "../ggml/mix.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import type { Backend } from "../kernels/types.js";
import { quantModelEntries } from "../io/quant-model.js";
import { writeQuantizeResult } from "../io/quantize-output.js";
import { safetensorsSize } from "../io/safetensors.js";
import { IntegerLinearBackend } from "../model/integer-linear.js";
import { integerRuntime } from "../model/integer-block.js";
import { parseKvSpec, quantKvCacheFactory, type QuantKvCache, type QuantKvCacheOptions } from "../model/kv-quant.js";
import { Llama } from "../model/llama.js";
import type { Model } from "../model/weights.js";
import { errorStats } from "../quant/metrics.js";
import { canonicalSpec, printSpec } from "../quant/spec.js";
import { kld, ModelLogits, type KldResult, type LogitsSource } from "./kld.js";

/** One row to measure: a weight spec, a llama-quantize preset, or (neither) float weights; optionally a quantized KV cache. */
export interface CompareTarget {
  spec?: string;
  preset?: string;
  kv?: string;
}

export interface CompareRow {
  /** weight spec or preset name ("f32" for rows that only quantize the KV cache) */
  spec: string;
  /** set on llama-quantize preset rows (GGUF blocks; `spec` is the preset's name) */
  preset?: string;
  /** KV-cache spec, when the cache is quantized */
  kv?: string;
  /** storage bits per K/V element of the quantized cache (scales included) */
  kvBits?: number;
  /** KIVI's options of that cache, when set: keys per channel, recent positions kept in f32 */
  kvKeys?: "token" | "channel";
  kvWindow?: number;
  /** mixed-precision rows: how many tensors got each candidate, and which */
  mixed?: { counts: Record<string, number>; sensitivity: string; choice: Record<string, string> };
  /** integer-only rows: dot products run and overflow counts */
  integer?: { dots: number; accOverflows: number; outSaturations: number };
  /** bits per weight as `quantize` reports it: over the quantized tensors (specs), over every tensor of the file (presets) */
  bpw: number;
  /** bits per weight over the block linears alone, the same set for every row (what the frontier plots) */
  linearBpw: number;
  sizeBytes: number;
  ppl: number;
  meanKld: number;
  top1: number;
  worstSqnrDb: number;
  /** quantization time */
  seconds: number;
  /** evaluation time (both models on the text) */
  evalSeconds: number;
}

/** Per-tensor error of a row's quantized weights against the float model's. */
export interface TensorError {
  name: string;
  sqnrDb: number;
  relErr: number;
}

export interface CompareMeasure {
  row: CompareRow;
  /** the recipe the row ran (absent for KV-cache-only rows) */
  recipe?: Recipe;
  /** each quantized tensor's SQNR (from `quantize()`'s reports for specs, measured here for presets) */
  tensors: TensorError[];
  kld?: KldResult;
}

/**
 * `--specs` items as targets: a llama-quantize preset name (Q4_K_M, Q8_0 …) is a preset row, anything else
 * must be a spec (or a mixed-precision spec). Bad items fail here, before any work.
 */
export function parseCompareTargets(specs: readonly string[], kvSpecs: readonly string[] = [], kvAll?: string): CompareTarget[] {
  const kv = kvAll === undefined ? undefined : printSpec(parseKvSpec(kvAll));
  const out: CompareTarget[] = specs.map((s) => {
    if (isMixedSpec(s)) return { spec: printMixedSpec(parseMixedSpec(s)), kv };
    if ((GGML_PRESET_NAMES as readonly string[]).includes(s.toUpperCase()) && !isSpec(s)) return { preset: parseGgmlPreset(s), kv };
    return { spec: canonicalSpec(s), kv };
  });
  for (const k of kvSpecs) out.push({ kv: printSpec(parseKvSpec(k)) });
  return out;
}

function isSpec(s: string): boolean {
  try {
    canonicalSpec(s);
    return true;
  } catch {
    return false;
  }
}

export interface CompareOptions {
  /** the evaluation text's tokens (no BOS); without them rows are quantized but not evaluated (NaN) */
  tokens?: ArrayLike<number>;
  bosId: number;
  /** window length in positions, BOS included */
  ctx: number;
  maxTokens?: number;
  backend: Backend;
  progress?: Progress;
  /** calibration text for rows whose method reads one (static activation scales, mixed sensitivity) */
  calib?: { text: string; ref: { name: string; sha256: string } };
  /** tokens of the calibration text the rows use (default 4096) */
  calibTokens?: number;
  /** the recipe's tensor selection (default: every block linear) */
  tensors?: { only?: string[]; keepFloat?: string[] };
}

/** Records a LogitsSource's answers on the first pass and replays them afterwards (the float model runs once). */
class RecordedLogits implements LogitsSource {
  private readonly calls: Float32Array[] = [];
  private i = 0;
  private recording = true;
  constructor(private readonly live: LogitsSource) {}
  get vocabSize(): number { return this.live.vocabSize; }
  get maxRows(): number { return this.live.maxRows; }
  replay(): void { this.recording = false; this.i = 0; }
  async rows(inputs: Int32Array, pos: number, n: number): Promise<Float32Array> {
    if (this.recording) {
      const r = (await this.live.rows(inputs, pos, n)).slice();
      this.calls.push(r);
      return r;
    }
    const r = this.calls[this.i++];
    if (!r || r.length !== n * this.vocabSize) throw new QuantlabError("E_INTERNAL", "compare: replayed base logits out of step");
    return r;
  }
}

/** Counts bytes without keeping them (the size of a GGUF `quantize` would write). */
const countingSink = () => {
  const s = { bytes: 0, write: async (c: Uint8Array) => { s.bytes += c.length; } };
  return s;
};

/**
 * Quantizes and measures rows against one float model. Construct once per model and text; `measure` each
 * target (or a target restricted to some tensors, for per-layer contributions).
 */
export class CompareSession {
  private base: RecordedLogits | undefined;
  private baseLlama: Llama | undefined;
  private recorded = false;
  /** the float model's perplexity on the text (NaN until a row was evaluated, or without text) */
  basePpl = NaN;
  /** tokens scored per row */
  tokens = 0;
  /** the tensors the rows quantize (selection applied) */
  readonly names: string[];
  private readonly linears: Set<string>;

  /** where the rows report progress (may be swapped between rows, e.g. per request in the browser lab) */
  progress: Progress;

  constructor(readonly model: Model, private readonly opts: CompareOptions) {
    this.progress = opts.progress ?? noProgress;
    this.names = selectTensors(model, opts.tensors?.only, opts.tensors?.keepFloat);
    this.linears = new Set(linearWeightNames(model).filter((n) => model.weights.has(n)));
  }

  /** Size of the float model as quantlab's safetensors (the table's first row). */
  floatSizeBytes(): number {
    const { entries, metadata } = quantModelEntries(this.model);
    return safetensorsSize(entries, metadata);
  }

  /**
   * The recipe of a row: round to nearest (mixed precision for mixed specs; a preset's own mix), calibrated
   * where the row's method reads calibration — mixed precision on the first `calibTokens` tokens in windows
   * of ctx; static activation scales on as many seeded windows of ctx as that holds.
   */
  recipeOf(t: CompareTarget, tensors = this.opts.tensors): Record<string, unknown> | undefined {
    if (t.preset !== undefined) {
      const r: Record<string, unknown> = { target: { preset: t.preset }, method: "rtn" };
      if (tensors?.keepFloat) r.tensors = { keepFloat: tensors.keepFloat };
      return r;
    }
    if (t.spec === undefined) return undefined;
    const sel: Record<string, string[]> = {};
    if (tensors?.only) sel.only = tensors.only;
    if (tensors?.keepFloat) sel.keepFloat = tensors.keepFloat;
    const r: Record<string, unknown> = { target: { spec: t.spec }, method: isMixedSpec(t.spec) ? "mixed" : "rtn", ...(Object.keys(sel).length ? { tensors: sel } : {}) };
    const n = normalizeRecipe(r);
    const def = METHODS[n.method];
    const calib = this.opts.calib;
    if (calib && def.calibration(n) !== "unused") {
      const ctx = this.opts.ctx, calibTokens = this.opts.calibTokens ?? 4096;
      const windows = def.windows(n).includes("consecutive") ? { kind: "consecutive", ctx, maxTokens: calibTokens } : { kind: "random", samples: Math.max(1, Math.floor(calibTokens / (ctx - 1))), seq: ctx };
      r.calibration = { source: { text: calib.ref }, windows };
    }
    return r;
  }

  /** Every row's recipe, normalized: bad recipes (and a calibration text no row reads) fail before any work. */
  checkRecipes(targets: readonly CompareTarget[]): void {
    const recipes = targets.map((t) => this.recipeOf(t)).map((r) => (r === undefined ? undefined : normalizeRecipe(r)));
    if (this.opts.calib && !recipes.some((r) => r?.calibration)) throw new QuantlabError("E_ARG", "option --calib: no spec in --specs reads calibration data (static activations a<b>s, mixed precision with hess or kld sensitivity)");
  }

  /**
   * Quantizes (unless the row only quantizes the KV cache) and evaluates one row. `tensors` restricts the
   * row's quantization (e.g. one layer); `keep` hands the quantize result to the caller before the session
   * lets it go (histograms, the browser lab's download).
   */
  async measure(t: CompareTarget, o: { tensors?: { only?: string[]; keepFloat?: string[] }; keep?: (q: QuantizeResult) => void; maxTokens?: number } = {}): Promise<CompareMeasure> {
    const opts = this.opts;
    const recipe = this.recipeOf(t, o.tensors ?? opts.tensors);
    const q = recipe === undefined ? undefined : await quantize(this.model, recipe, { ...(opts.calib ? { calibText: opts.calib.text } : {}), backend: opts.backend, progress: this.progress });
    const m = await this.measureResult(q, t.kv, o.maxTokens);
    if (q) o.keep?.(q);
    return m;
  }

  /**
   * Evaluates a result `quantize()` made (any recipe: the browser lab quantizes with any method), or the
   * float model with a quantized KV cache when `q` is undefined.
   */
  async measureResult(q: QuantizeResult | undefined, kv?: string, maxTokens = this.opts.maxTokens, kvOptions: QuantKvCacheOptions = {}): Promise<CompareMeasure> {
    if (!kv && (kvOptions.keys !== undefined || kvOptions.window !== undefined)) throw new QuantlabError("E_ARG", "compare: KV-cache options (keys, window) without a KV-cache spec");
    const opts = this.opts;
    // fewer tokens score the first windows of the same plan, so the recorded float logits replay as a prefix
    if (maxTokens !== opts.maxTokens && (!this.recorded || (opts.maxTokens !== undefined && (maxTokens === undefined || maxTokens > opts.maxTokens)))) {
      throw new QuantlabError("E_INTERNAL", "compare: a row may score fewer tokens than the session only after a full row was measured");
    }
    const progress = this.progress;
    const qModel = q?.model ?? this.model;
    const tensors = q ? this.tensorErrors(q) : [];
    let r: KldResult | undefined;
    let kvBits: number | undefined;
    let integer: CompareRow["integer"];
    const t0 = Date.now();
    if (opts.tokens) {
      if (!this.base) {
        // made on the first evaluated row (its logits are recorded then), so bad rows fail before any forward pass
        this.baseLlama = new Llama(this.model, { contextLength: opts.ctx, backend: opts.backend });
        this.base = new RecordedLogits(new ModelLogits(this.baseLlama));
      }
      // integer-only linears quantize their own inputs (model/integer-linear.ts); the others fake-quantize them
      const { model: qm, backend: rowBackend } = integerRuntime(qModel, opts.backend);
      const llama = new Llama(qm, { contextLength: opts.ctx, backend: rowBackend, ...(kv ? { kvCache: quantKvCacheFactory(kv, kvOptions) } : {}) });
      if (this.recorded) this.base.replay();
      r = await kld(this.base, new ModelLogits(llama), opts.tokens, { ctx: opts.ctx, maxTokens, bosId: opts.bosId, progress });
      this.recorded = true;
      llama.dispose(); // the next row prepares its own weights
      if (this.baseLlama) {
        // every later row replays the recorded logits: the float model's prepared weights can go
        this.baseLlama.dispose();
        this.baseLlama = undefined;
      }
      if (maxTokens === opts.maxTokens) {
        this.basePpl = r.pplBase;
        this.tokens = r.tokens;
      }
      if (kv) kvBits = (llama.kv as QuantKvCache).bitsPerElement;
      if (rowBackend instanceof IntegerLinearBackend) integer = { ...rowBackend.stats };
    }
    const t = q?.recipe.target;
    const preset = t && "preset" in t ? t.preset : undefined;
    const row: CompareRow = {
      spec: preset ?? (t && "spec" in t ? t.spec : "f32"),
      ...(preset !== undefined ? { preset } : {}),
      bpw: q?.bpw ?? 32,
      linearBpw: q ? this.linearBpw(q) : 32,
      sizeBytes: await this.sizeOf(q),
      ppl: r?.pplOther ?? NaN,
      meanKld: r?.meanKld ?? NaN,
      top1: r?.top1 ?? NaN,
      worstSqnrDb: q ? Math.min(...tensors.map((x) => x.sqnrDb)) : Infinity,
      seconds: q?.seconds ?? 0,
      evalSeconds: r ? (Date.now() - t0) / 1000 : 0,
    };
    if (kv) {
      row.kv = kv;
      if (kvBits !== undefined) row.kvBits = kvBits;
      if (kvOptions.keys !== undefined) row.kvKeys = kvOptions.keys;
      if (kvOptions.window !== undefined) row.kvWindow = kvOptions.window;
    }
    if (q?.mixed) row.mixed = { counts: q.mixed.counts, sensitivity: q.mixed.sensitivity, choice: q.mixed.choice };
    if (integer) row.integer = integer;
    return { row, ...(q ? { recipe: q.recipe } : {}), tensors, ...(r ? { kld: r } : {}) };
  }

  /** Disposes the float model's prepared weights if no row ran (the rows dispose their own). */
  dispose(): void {
    this.baseLlama?.dispose();
    this.baseLlama = undefined;
  }

  private async sizeOf(q: QuantizeResult | undefined): Promise<number> {
    if (!q) return this.floatSizeBytes();
    if (q.output === "safetensors") {
      const { entries, metadata } = quantModelEntries(q.model);
      return safetensorsSize(entries, metadata);
    }
    // GGUF: the bytes `quantize -o x.gguf` writes (header, metadata, aligned tensors)
    const sink = countingSink();
    await writeQuantizeResult(q, sink, "size");
    return sink.bytes;
  }

  /** Storage bits per weight over the block linears (float ones at 32 bits): one footing for specs and presets. */
  private linearBpw(q: QuantizeResult): number {
    let bits = 0, count = 0;
    const quantBits = new Map<string, number>();
    for (const x of q.tensors ?? []) quantBits.set(x.name, x.storageBits);
    for (const x of q.ggml?.tensors ?? []) quantBits.set(x.name, x.bytes * 8);
    for (const n of this.linears) {
      const c = numel(weightShape(this.model.weights.get(n)!));
      bits += quantBits.get(n) ?? 32 * c;
      count += c;
    }
    return count ? bits / count : 0;
  }

  /** SQNR per quantized tensor: `quantize()`'s own reports for specs; measured against the float weights for presets (ggml blocks). */
  private tensorErrors(q: QuantizeResult): TensorError[] {
    if (q.tensors) return q.tensors.map((x) => ({ name: x.name, sqnrDb: x.sqnrDb, relErr: x.relErr }));
    const out: TensorError[] = [];
    for (const x of q.ggml?.tensors ?? []) {
      if (x.shape.length < 2 || x.type === "F32") continue; // kept in float
      const w = this.model.weights.get(x.name);
      const qw = q.model.weights.get(x.name);
      if (!w || !qw || qw.kind !== "ggml") continue;
      const wasLoaded = isWeightLoaded(w);
      const ref = dequantizeWeight(w, x.name).data;
      const got = dequantizeWeight(qw, x.name).data;
      if (!wasLoaded) releaseWeight(w);
      const e = errorStats(ref, got);
      out.push({ name: x.name, sqnrDb: e.sqnrDb, relErr: e.nmse });
    }
    return out;
  }
}
