/**
 * The report as one self-contained HTML file: inline CSS, the plots as inline SVG (render.ts), tables, each
 * row's recipe, the machine it ran on. No script, no font, no image, no link is fetched: the file opens
 * offline and makes no network request.
 */
import type { CompareRow } from "../eval/compare.js";
import type { ReportData } from "./build.js";
import { frontierSpec, histogramSpec, layerBarsSpec, layerKldShare, layerSqnr, outlierHeatmapSpec } from "./plots.js";
import { renderSvg, type PlotSpec } from "./render.js";

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function fmt(x: number, d: number): string {
  return Number.isFinite(x) ? x.toFixed(d) : x === Infinity ? "∞" : "–";
}

function fmtBytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

async function figure(spec: PlotSpec, caption: string, cls = "fig"): Promise<string> {
  return `<figure class="${cls}">${await renderSvg(spec)}<figcaption>${caption}</figcaption></figure>`;
}

function table(head: string[], body: string[][], numeric: boolean[], rowClass: (i: number) => string | undefined = () => undefined): string {
  const th = head.map((h, i) => `<th${numeric[i] ? ' class="num"' : ""}>${h}</th>`).join("");
  const tr = body.map((r, j) => `<tr${rowClass(j) ? ` class="${rowClass(j)}"` : ""}>${r.map((c, i) => `<td${numeric[i] ? ' class="num"' : ""}>${c}</td>`).join("")}</tr>`).join("\n");
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
}

const CSS = `
body { font: 14px/1.45 Helvetica, Arial, sans-serif; color: #222; margin: 24px auto; max-width: 1180px; padding: 0 20px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #555; margin: 0 0 12px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.preset td:first-child::after { content: " (llama.cpp)"; color: #b03a2e; font-size: 11px; }
figure { margin: 8px 0 16px; } figcaption { color: #555; font-size: 12px; max-width: 760px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 8px 24px; } .grid figure { margin: 4px 0; }
pre { background: #f7f7f7; padding: 6px 8px; font-size: 11.5px; white-space: pre-wrap; word-break: break-all; margin: 2px 0 8px; }
details summary { cursor: pointer; } dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 13px; } dt { color: #555; } dd { margin: 0; }
`;

function compareTable(d: ReportData): string {
  const rows = d.rows.map((r) => r.row);
  const eval_ = d.text !== undefined;
  const head = ["row", "bits/weight", "bits/weight (block linears)", "size", ...(eval_ ? ["ppl", "Δppl %", "mean KLD", "top-1"] : []), "worst SQNR dB", "quantize s"];
  const numeric = head.map((_, i) => i > 0);
  const line = (r: CompareRow) => [
    escapeHtml(r.spec), fmt(r.bpw, 3), fmt(r.linearBpw, 3), fmtBytes(r.sizeBytes),
    ...(eval_ ? [fmt(r.ppl, 4), fmt((100 * (r.ppl - d.base.ppl)) / d.base.ppl, 2), fmt(r.meanKld, 5), fmt(r.top1, 4)] : []),
    fmt(r.worstSqnrDb, 2), fmt(r.seconds, 2),
  ];
  const body = [["float model", "32.000", "32.000", fmtBytes(d.base.sizeBytes), ...(eval_ ? [fmt(d.base.ppl, 4), "0.00", "0", "1"] : []), "∞", "–"], ...rows.map(line)];
  // presets get a marker (the first body row is the float model)
  return table(head, body, numeric, (j) => (j > 0 && rows[j - 1]!.preset !== undefined ? "preset" : undefined));
}

function kvTable(d: ReportData): string {
  const head = ["KV-cache spec", "bits per K/V element", "ppl", "Δppl %", "mean KLD", "top-1"];
  const body = d.kvRows.map((r) => [escapeHtml(r.kv ?? "f32"), fmt(r.kvBits ?? 32, 3), fmt(r.ppl, 4), fmt((100 * (r.ppl - d.base.ppl)) / d.base.ppl, 2), fmt(r.meanKld, 5), fmt(r.top1, 4)]);
  body.unshift(["f32 (float cache)", "32.000", fmt(d.base.ppl, 4), "0.00", "0", "1"]);
  return table(head, body, head.map((_, i) => i > 0));
}

export async function reportHtml(d: ReportData): Promise<string> {
  const parts: string[] = [];
  const m = d.model;
  parts.push(`<h1>${escapeHtml(d.title)}</h1>`);
  parts.push(`<p class="sub">${escapeHtml(m.name)} (${escapeHtml(m.format)}): ${(m.params / 1e6).toFixed(3)} M parameters, ${m.nLayers} layers, dim ${m.dim}, hidden ${m.hiddenDim}, vocabulary ${m.vocabSize}, context ${m.seqLen}.` +
    (d.text ? ` Evaluated on ${escapeHtml(d.text.name)}: ${d.text.tokens} tokens in windows of ${d.text.ctx}.` : " No evaluation text: KLD, perplexity and the frontier need <code>--text</code>.") + `</p>`);

  parts.push(`<h2>Compare</h2>`);
  parts.push(compareTable(d));
  parts.push(`<p class="sub">bits/weight as <code>quantize</code> reports it (specs: over the quantized tensors; presets: over every tensor of the GGUF); the next column counts the block linears alone, the same tensors for every row. Size: the file <code>quantlab quantize</code> writes (quantized safetensors, or GGUF for presets).</p>`);

  const points = d.rows.map((r) => ({ label: r.row.spec, bpw: r.row.linearBpw, kld: r.row.meanKld, preset: r.row.preset !== undefined }));
  if (d.text && points.some((p) => Number.isFinite(p.kld))) {
    parts.push(`<h2>Size vs KLD</h2>`);
    parts.push(await figure(frontierSpec(points), "Each row's bits per weight over the block linears against its mean KL divergence from the float model; llama.cpp presets as red diamonds. KLD below 1e-6 is drawn at 1e-6."));
  }

  const rowsOrder = d.rows.map((r) => r.row.spec);
  parts.push(`<h2>Per layer</h2>`);
  parts.push(await figure(layerBarsSpec(layerSqnr(d), { title: "SQNR per layer", subtitle: "mean over the layer's quantized tensors; higher is better", yTitle: "SQNR (dB)", rows: rowsOrder }), "10·log10(‖W‖² / ‖W − Ŵ‖²) of each quantized tensor, averaged over the layer's tensors."));
  if (d.layerKld.length) {
    parts.push(await figure(layerBarsSpec(layerKldShare(d), { title: "KLD contribution per layer", subtitle: "KLD with only that layer quantized, as a share of the row's sum over layers", yTitle: "share of KLD", rows: rowsOrder, format: "%" }), `Each row's quantization applied to one layer at a time (the rest float), its mean KLD (on the first ${d.layerTokens} tokens) divided by the sum over layers.`));
    const byRow = new Map<string, string[]>();
    for (const x of d.layerKld) byRow.set(x.row, [...(byRow.get(x.row) ?? []), fmt(x.kld, 5)]);
    parts.push(`<details><summary>per-layer KLD values</summary>${table(["row", ...Array.from({ length: m.nLayers }, (_, l) => `blk.${l}`)], [...byRow].map(([k, v]) => [escapeHtml(k), ...v]), [false, ...Array.from({ length: m.nLayers }, () => true)])}</details>`);
  }

  parts.push(`<h2>Weights on the grid: ${escapeHtml(d.histTensor.name)}</h2>`);
  parts.push(`<p class="sub">${escapeHtml(d.histTensor.reason[0]!.toUpperCase() + d.histTensor.reason.slice(1))}. Each weight divided by its group's stored scale (plus the zero point), so all groups share one axis; red lines: the format's levels. llama.cpp presets are left out (their blocks have two-level scales).</p>`);
  const hs: string[] = [];
  for (const h of d.histograms) hs.push(await figure(histogramSpec(h), "", "fig"));
  parts.push(`<div class="grid">${hs.join("")}</div>`);

  parts.push(`<h2>Outlier channels</h2>`);
  parts.push(await figure(outlierHeatmapSpec(d.outliers), "The float model's block linears. Per-channel and per-group scales follow the rows; an input channel (column) far above the median stretches every row's range."));

  if (d.kvRows.length) {
    parts.push(`<h2>KV cache</h2>`);
    parts.push(kvTable(d));
    parts.push(`<p class="sub">Float weights, the KV cache stored with each spec.</p>`);
  }

  parts.push(`<h2>Recipes</h2>`);
  for (const r of d.rows) if (r.recipeJson) parts.push(`<details><summary>${escapeHtml(r.row.spec)}</summary><pre>${escapeHtml(JSON.stringify(JSON.parse(r.recipeJson), null, 1))}</pre></details>`);

  parts.push(`<h2>Machine</h2>`);
  const mach = { ...d.machine, "report time": `${d.seconds.toFixed(1)} s`, generated: d.generatedAt };
  parts.push(`<dl>${Object.entries(mach).map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join("")}</dl>`);

  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${escapeHtml(d.title)}</title><style>${CSS}</style></head><body>\n${parts.join("\n")}\n</body></html>\n`;
}
