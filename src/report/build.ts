/**
 * The data of a quantization report: the compare table (eval/compare.ts, the same rows `quantlab compare`
 * prints), each row's recipe and per-tensor SQNR, each layer's KLD contribution (the row's quantization
 * applied to that layer alone), a histogram of one tensor on each spec's grid, the float model's outlier
 * channels, and the KV-cache rows. Plain JSON-able data: html.ts draws it, the browser lab can too.
 * Isomorphic: the caller loads the model and tokenizes the text.
 */
import { QuantlabError } from "../core/errors.js";
import { noProgress, type Progress } from "../core/progress.js";
import { numel } from "../core/tensor.js";
import { isWeightLoaded, releaseWeight, weightShape } from "../core/weight.js";
import { linearWeightNames } from "../algos/select.js";
import { channelOutliers, type ChannelOutlierRow } from "../eval/channel-outliers.js";
import { CompareSession, type CompareOptions, type CompareRow, type CompareTarget, type TensorError } from "../eval/compare.js";
import { gridHistogram, type GridHistogram } from "../eval/grid-histogram.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import type { Model } from "../model/weights.js";
import { QTensor } from "../quant/tensor.js";

export interface ReportRow {
  row: CompareRow;
  /** the canonical recipe JSON the row ran (what its file would carry as quantlab.recipe) */
  recipeJson?: string;
  tensors: TensorError[];
}

export interface ReportData {
  title: string;
  model: { name: string; format: string; params: number; nLayers: number; dim: number; hiddenDim: number; vocabSize: number; seqLen: number };
  /** the evaluation text, when there was one */
  text?: { name: string; tokens: number; ctx: number };
  base: { ppl: number; sizeBytes: number };
  rows: ReportRow[];
  /** rows with float weights and a quantized KV cache */
  kvRows: CompareRow[];
  /** KLD with only layer `layer` quantized as row `row` says */
  layerKld: { row: string; layer: number; kld: number }[];
  /** tokens each per-layer measurement scored */
  layerTokens: number;
  /** the tensor the histograms show, and why that one */
  histTensor: { name: string; reason: string };
  histograms: GridHistogram[];
  outliers: ChannelOutlierRow[];
  /** where and how it ran (filled by the caller: OS, CPU, runtime, backend) */
  machine: Record<string, string>;
  seconds: number;
  generatedAt: string;
}

export interface ReportOptions extends CompareOptions {
  targets: readonly CompareTarget[];
  title?: string;
  textName?: string;
  /** measure each layer's KLD contribution (one more quantize + evaluation per row and layer; default: with text) */
  layerKld?: boolean;
  /** tokens the per-layer measurements score (the first windows of the rows'; default: all of them) */
  layerTokens?: number;
  /** the tensor the histograms show (default: the block linear with the strongest outlier channel) */
  histTensor?: string;
  machine?: Record<string, string>;
}

export async function buildReport(model: Model, o: ReportOptions): Promise<ReportData> {
  const t0 = Date.now();
  const progress: Progress = o.progress ?? noProgress;
  const session = new CompareSession(model, o);
  session.checkRecipes(o.targets);
  try {
    const linears = linearWeightNames(model).filter((n) => model.weights.has(n));
    const outliers = channelOutliers(model, linears);
    let histTensor: ReportData["histTensor"];
    if (o.histTensor !== undefined) {
      if (!model.weights.has(o.histTensor)) throw new QuantlabError("E_ARG", `option --hist-tensor: ${model.config.name ?? "the model"} has no tensor "${o.histTensor}" (names look like ${linears.slice(0, 3).join(", ")})`);
      histTensor = { name: o.histTensor, reason: "chosen with --hist-tensor" };
    } else {
      const worst = outliers.reduce((a, b) => (b.maxRatio > a.maxRatio ? b : a), outliers[0]!);
      histTensor = { name: worst.tensor, reason: `the block linear with the strongest outlier channel (column ${worst.maxColumn}, ${worst.maxRatio.toFixed(1)}× the median)` };
    }

    const rows: ReportRow[] = [];
    const kvRows: CompareRow[] = [];
    const histograms: GridHistogram[] = [];
    for (const t of o.targets) {
      const m = await session.measure(t, {
        keep: (q) => {
          const w = q.model.weights.get(histTensor.name);
          if (w?.kind !== "quant" || !(w.q instanceof QTensor) || w.q.quantizer.dim > 1) return; // presets (ggml blocks), learned codebooks: no per-weight grid
          const f = model.weights.get(histTensor.name)!;
          const wasLoaded = isWeightLoaded(f);
          histograms.push(gridHistogram(histTensor.name, dequantizeWeight(f, histTensor.name).data, w.q));
          if (!wasLoaded) releaseWeight(f);
        },
      });
      if (t.spec === undefined && t.preset === undefined) kvRows.push(m.row);
      else rows.push({ row: m.row, ...(m.recipe ? { recipeJson: JSON.stringify(m.recipe) } : {}), tensors: m.tensors });
    }

    const layerKld: ReportData["layerKld"] = [];
    let layerTokens = 0;
    if (o.tokens && (o.layerKld ?? true)) {
      const weightTargets = o.targets.filter((t) => t.spec !== undefined || t.preset !== undefined);
      progress.start(weightTargets.length * model.config.nLayers, "layer KLD");
      for (const t of weightTargets) {
        for (let l = 0; l < model.config.nLayers; l++) {
          const inLayer = (n: string) => n.startsWith(`blk.${l}.`);
          let tensors: { only?: string[]; keepFloat?: string[] };
          if (t.preset !== undefined) {
            // a preset covers every tensor: keep all the others in float
            tensors = { keepFloat: [...model.weights].filter(([n, w]) => !inLayer(n) && w.kind === "dense" && weightShape(w).length === 2).map(([n]) => n) };
          } else {
            const only = session.names.filter(inLayer);
            if (only.length === 0) continue;
            tensors = { only };
          }
          const m = await session.measure({ ...t, kv: undefined }, { tensors, ...(o.layerTokens !== undefined ? { maxTokens: Math.min(o.layerTokens, o.maxTokens ?? Infinity) } : {}) });
          layerKld.push({ row: t.preset ?? t.spec!, layer: l, kld: m.row.meanKld });
          layerTokens = m.kld?.tokens ?? 0;
          progress.tick();
        }
      }
      progress.done();
    }
    const c = model.config;
    let params = 0;
    for (const w of model.weights.values()) params += numel(weightShape(w));
    return {
      title: o.title ?? `quantlab report: ${c.name ?? model.source.path}`,
      model: { name: c.name ?? model.source.path, format: model.source.format, params, nLayers: c.nLayers, dim: c.dim, hiddenDim: c.hiddenDim, vocabSize: c.vocabSize, seqLen: c.seqLen },
      ...(o.tokens ? { text: { name: o.textName ?? "text", tokens: session.tokens, ctx: o.ctx } } : {}),
      base: { ppl: session.basePpl, sizeBytes: session.floatSizeBytes() },
      rows, kvRows, layerKld, layerTokens, histTensor, histograms, outliers,
      machine: o.machine ?? {},
      seconds: (Date.now() - t0) / 1000,
      generatedAt: new Date().toISOString(),
    };
  } finally {
    session.dispose();
  }
}
