/**
 * The plots of the report and the browser lab, as Vega-Lite specs built from plain data (render.ts turns
 * them into SVG, in Node and in the browser alike): one plotting library, one spec per plot, so the page
 * and the report show the same pictures.
 *
 * - histogram: a tensor's weights in grid units with the format's levels drawn on it (eval/grid-histogram.ts)
 * - layer bars: per-layer SQNR of each row's tensors, and each layer's KLD contribution
 * - outlier heatmap: per input channel, max |w| over the median channel's (eval/channel-outliers.ts)
 * - frontier: bits per weight vs mean KLD across rows, llama.cpp presets marked, the Pareto front drawn
 */
import type { TopLevelSpec } from "vega-lite";
import type { ChannelOutlierRow } from "../eval/channel-outliers.js";
import type { GridHistogram } from "../eval/grid-histogram.js";

/** Shared look: the same fonts and sizes everywhere, no view border. */
const CONFIG = {
  font: "Helvetica, Arial, sans-serif",
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: "normal", grid: true, gridColor: "#e8e8e8" },
  legend: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: "normal" },
  title: { fontSize: 13, subtitleFontSize: 11, anchor: "start", subtitleColor: "#555" },
} as const;

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** Grids with more levels than this are drawn as ticks along the axis, not as lines across the plot. */
const MAX_LINES = 48;

export function histogramSpec(h: GridHistogram, size = { width: 300, height: 140 }): TopLevelSpec {
  const width = (h.hi - h.lo) / h.counts.length;
  const bins = h.counts.map((count, i) => ({ x0: h.lo + i * width, x1: h.lo + (i + 1) * width, count }));
  const notes = [`${h.levelsInView} of ${h.totalLevels} levels in view${h.levels.length === 0 && h.levelsInView > 0 ? " (too dense to draw)" : h.levels.length > MAX_LINES ? " (ticks on the axis)" : ""}`];
  if (h.below + h.above > 0) notes.push(`${h.below + h.above} clipped`);
  if (h.outliers > 0) notes.push(`${h.outliers} outliers in f16`);
  const x = { field: "x0", type: "quantitative", scale: { domain: [h.lo, h.hi], nice: false, zero: false }, title: "w / scale + zero (grid units)", axis: { tickCount: 6 } } as const;
  return {
    $schema: SCHEMA,
    config: CONFIG,
    width: size.width,
    height: size.height,
    title: { text: h.spec, subtitle: [h.tensor, notes.join(", ")] },
    layer: [
      {
        data: { values: bins },
        mark: { type: "rect", color: "#4c78a8" },
        encoding: { x, x2: { field: "x1" }, y: { field: "count", type: "quantitative", title: "weights", axis: { tickCount: 4 } } },
      },
      h.levels.length <= MAX_LINES
        ? { data: { values: h.levels.map((v) => ({ v })) }, mark: { type: "rule", color: "#e45756", strokeWidth: 1, opacity: 0.75 }, encoding: { x: { field: "v", type: "quantitative" } } }
        : { data: { values: h.levels.map((v) => ({ v })) }, mark: { type: "tick", orient: "vertical", color: "#e45756", thickness: 1, size: 10, opacity: 0.9 }, encoding: { x: { field: "v", type: "quantitative" }, y: { value: size.height - 5 } } },
    ],
  } as TopLevelSpec;
}

export interface LayerValue {
  layer: number;
  /** the row (spec or preset) */
  row: string;
  value: number;
}

/** Mean SQNR (dB) of each layer's quantized tensors, per row: the per-layer bars. */
export function layerSqnr(d: { rows: readonly { row: { spec: string }; tensors: readonly { name: string; sqnrDb: number }[] }[] }): LayerValue[] {
  const out: LayerValue[] = [];
  for (const r of d.rows) {
    const by = new Map<number, number[]>();
    for (const t of r.tensors) {
      const m = /^blk\.(\d+)\./.exec(t.name);
      if (!m || !Number.isFinite(t.sqnrDb)) continue;
      const l = Number(m[1]);
      by.set(l, [...(by.get(l) ?? []), t.sqnrDb]);
    }
    for (const [layer, v] of by) out.push({ layer, row: r.row.spec, value: v.reduce((a, b) => a + b, 0) / v.length });
  }
  return out;
}

/** Each layer's KLD as a share of the row's sum over layers (which layers the row's damage comes from). */
export function layerKldShare(d: { layerKld: readonly { row: string; layer: number; kld: number }[] }): LayerValue[] {
  const sums = new Map<string, number>();
  for (const x of d.layerKld) sums.set(x.row, (sums.get(x.row) ?? 0) + Math.max(0, x.kld));
  return d.layerKld.map((x) => ({ layer: x.layer, row: x.row, value: sums.get(x.row)! > 0 ? Math.max(0, x.kld) / sums.get(x.row)! : 0 }));
}

/** Grouped bars: one group per layer, one bar per row. */
export function layerBarsSpec(values: readonly LayerValue[], o: { title: string; subtitle?: string; yTitle: string; rows: readonly string[]; width?: number; height?: number; format?: string }): TopLevelSpec {
  return {
    $schema: SCHEMA,
    config: CONFIG,
    width: o.width ?? 640,
    height: o.height ?? 200,
    title: { text: o.title, ...(o.subtitle ? { subtitle: o.subtitle } : {}) },
    data: { values: values.map((v) => ({ ...v, layerName: `blk.${v.layer}` })) },
    mark: { type: "bar" },
    encoding: {
      x: { field: "layerName", type: "nominal", title: "layer", sort: { field: "layer" }, axis: { labelAngle: 0 } },
      xOffset: { field: "row", type: "nominal", sort: [...o.rows] },
      y: { field: "value", type: "quantitative", title: o.yTitle, ...(o.format ? { axis: { format: o.format } } : {}) },
      color: { field: "row", type: "nominal", sort: [...o.rows], title: null, scale: { scheme: "tableau10" }, legend: { orient: "right", labelLimit: 180 } },
    },
  } as TopLevelSpec;
}

/** Heatmap: a row per tensor, input channels along x, colour = column max |w| over the median column's. */
export function outlierHeatmapSpec(rows: readonly ChannelOutlierRow[], o: { width?: number } = {}): TopLevelSpec {
  const cells = rows.flatMap((r) => r.ratio.map((ratio, b) => ({ tensor: r.tensor, c0: b * r.binCols, c1: Math.min(r.cols, (b + 1) * r.binCols), ratio: Math.max(ratio, 1e-3) })));
  const maxCols = Math.max(1, ...rows.map((r) => r.cols));
  const binned = rows.some((r) => r.binCols > 1);
  return {
    $schema: SCHEMA,
    config: CONFIG,
    width: o.width ?? 560,
    height: { step: 12 },
    title: { text: "Outlier input channels", subtitle: `max |w| of each input channel ÷ the median channel's${binned ? " (wide tensors: the largest of each bin of adjacent channels)" : ""}` },
    data: { values: cells },
    mark: { type: "rect" },
    encoding: {
      x: { field: "c0", type: "quantitative", title: "input channel", scale: { domain: [0, maxCols], nice: false }, axis: { tickCount: 8, grid: false } },
      x2: { field: "c1" },
      y: { field: "tensor", type: "nominal", title: null, sort: rows.map((r) => r.tensor), axis: { labelFontSize: 10, labelLimit: 200 } },
      color: { field: "ratio", type: "quantitative", title: "× median", scale: { type: "log", scheme: "viridis" }, legend: { orient: "right", gradientLength: 160 } },
    },
  } as TopLevelSpec;
}

export interface FrontierPoint {
  label: string;
  bpw: number;
  kld: number;
  preset: boolean;
}

/** The points no other point beats in both size and KLD, by increasing bits. */
export function paretoFront(points: readonly FrontierPoint[]): FrontierPoint[] {
  const sorted = [...points].filter((p) => Number.isFinite(p.kld) && Number.isFinite(p.bpw)).sort((a, b) => a.bpw - b.bpw || a.kld - b.kld);
  const out: FrontierPoint[] = [];
  let best = Infinity;
  for (const p of sorted) if (p.kld < best) { out.push(p); best = p.kld; }
  return out;
}

/** KLD below this is drawn at it (a log axis has no 0; fp16 rows can measure exactly 0). */
export const KLD_FLOOR = 1e-6;

/** One label's box: its text at (x, y) with the given alignment, in plot pixels. */
interface PlacedLabel {
  text: string;
  x: number;
  y: number;
  align: "left" | "right" | "center";
  baseline: "middle" | "bottom" | "top";
  /** a line from the point to a label placed away from it: x1, y1, x2, y2 */
  leader?: [number, number, number, number];
}

/**
 * Greedy label placement: each point's name goes to the first spot around it (right, left, above, below,
 * the corners) whose box overlaps no point and no name placed before, inside the plot; points are taken
 * from the most crowded. vega's own label transform draws on a canvas, which Node lacks, so the report and
 * the page place labels here alike. Text widths are estimated (0.6 em per character, generous for sans-serif).
 */
export function placeLabels(pts: readonly { text: string; px: number; py: number }[], width: number, height: number, fontSize = 10, radius = 6, lines: readonly (readonly [number, number])[][] = []): PlacedLabel[] {
  const boxes: [number, number, number, number][] = pts.map((p) => [p.px - radius, p.py - radius, p.px + radius, p.py + radius]);
  // polylines (the Pareto front) as a chain of small boxes every few pixels
  for (const line of lines) {
    for (let k = 1; k < line.length; k++) {
      const [ax, ay] = line[k - 1]!, [bx, by] = line[k]!;
      const n = Math.ceil(Math.hypot(bx - ax, by - ay) / 4);
      for (let j = 0; j <= n; j++) { const x = ax + ((bx - ax) * j) / n, y = ay + ((by - ay) * j) / n; boxes.push([x - 1.5, y - 1.5, x + 1.5, y + 1.5]); }
    }
  }
  // what a spot costs: the area it covers of points, lines and names, plus what sticks out of the plot
  const cost = (b: [number, number, number, number]) => {
    let c = 0;
    for (const o of boxes) c += Math.max(0, Math.min(b[2], o[2]) - Math.max(b[0], o[0])) * Math.max(0, Math.min(b[3], o[3]) - Math.max(b[1], o[1]));
    const out = Math.max(0, -b[0]) + Math.max(0, -b[1]) + Math.max(0, b[2] - width) + Math.max(0, b[3] - height);
    return c + out * 50;
  };
  const crowd = (i: number) => pts.reduce((n, q) => n + (Math.hypot(q.px - pts[i]!.px, q.py - pts[i]!.py) < 40 ? 1 : 0), 0);
  const order = pts.map((_, i) => i).sort((a, b) => crowd(b) - crowd(a) || a - b);
  const out: PlacedLabel[] = new Array(pts.length);
  for (const i of order) {
    const p = pts[i]!;
    const w = 0.6 * fontSize * p.text.length, h = fontSize + 2, g = radius + 2;
    const cands: [PlacedLabel, [number, number, number, number]][] = [
      [{ text: p.text, x: p.px + g, y: p.py, align: "left", baseline: "middle" }, [p.px + g, p.py - h / 2, p.px + g + w, p.py + h / 2]],
      [{ text: p.text, x: p.px - g, y: p.py, align: "right", baseline: "middle" }, [p.px - g - w, p.py - h / 2, p.px - g, p.py + h / 2]],
      [{ text: p.text, x: p.px, y: p.py - g, align: "center", baseline: "bottom" }, [p.px - w / 2, p.py - g - h, p.px + w / 2, p.py - g]],
      [{ text: p.text, x: p.px, y: p.py + g, align: "center", baseline: "top" }, [p.px - w / 2, p.py + g, p.px + w / 2, p.py + g + h]],
      [{ text: p.text, x: p.px + g, y: p.py - g, align: "left", baseline: "bottom" }, [p.px + g, p.py - g - h, p.px + g + w, p.py - g]],
      [{ text: p.text, x: p.px + g, y: p.py + g, align: "left", baseline: "top" }, [p.px + g, p.py + g, p.px + g + w, p.py + g + h]],
      [{ text: p.text, x: p.px - g, y: p.py - g, align: "right", baseline: "bottom" }, [p.px - g - w, p.py - g - h, p.px - g, p.py - g]],
      [{ text: p.text, x: p.px - g, y: p.py + g, align: "right", baseline: "top" }, [p.px - g - w, p.py + g, p.px - g, p.py + g + h]],
    ];
    // farther out, with a leader line back to the point, when every close spot is taken
    for (const d of [2.2, 3.4, 4.6, 6, 8]) {
      for (const [dx, dy] of [[1, -1], [1, 1], [-1, -1], [-1, 1], [0, -1], [0, 1], [1, -0.01], [-1, -0.01]] as const) {
        const lx = p.px + dx * g * d, ly = p.py + dy * g * d;
        const align = dx > 0 ? "left" : dx < 0 ? "right" : "center";
        const baseline = dy < 0 ? "bottom" : "top";
        const bx0 = align === "left" ? lx : align === "right" ? lx - w : lx - w / 2;
        const by0 = baseline === "bottom" ? ly - h : ly;
        cands.push([{ text: p.text, x: lx, y: ly, align, baseline, leader: [p.px + dx * radius * 0.7, p.py + dy * radius * 0.7, lx, ly] }, [bx0, by0, bx0 + w, by0 + h]]);
      }
    }
    // the first free spot in the order above, else the least covered one
    let pick = cands[0]!, best = Infinity;
    for (const cand of cands) {
      const c = cost(cand[1]);
      if (c === 0) { pick = cand; break; }
      if (c < best) { best = c; pick = cand; }
    }
    boxes.push(pick[1]);
    out[i] = pick[0];
  }
  return out;
}

/** A "nice" linear domain around [lo, hi]: padded, ends on multiples of the tick step. */
function niceLinear(lo: number, hi: number): [number, number] {
  const span = hi - lo || Math.abs(hi) || 1;
  const step = 10 ** Math.floor(Math.log10(span / 4));
  const m = span / step > 20 ? step * 5 : span / step > 8 ? step * 2 : step;
  return [Math.floor((lo - span * 0.08) / m) * m, Math.ceil((hi + span * 0.08) / m) * m];
}

/**
 * bits per weight (x) vs mean KLD (y, log), presets marked. The axes get fixed domains here so that the
 * label positions (placeLabels, in pixels) match where vega draws the points.
 */
export function frontierSpec(points: readonly FrontierPoint[], o: { width?: number; height?: number; xTitle?: string } = {}): TopLevelSpec {
  const W = o.width ?? 560, H = o.height ?? 300;
  const front = new Set(paretoFront(points));
  const shown = points.filter((p) => Number.isFinite(p.kld) && Number.isFinite(p.bpw));
  const klds = shown.map((p) => Math.max(p.kld, KLD_FLOOR));
  const [x0, x1] = niceLinear(Math.min(...shown.map((p) => p.bpw)), Math.max(...shown.map((p) => p.bpw)));
  // whole decades, one more where a point would sit on the edge (its name needs room)
  const lo = Math.log10(Math.min(...klds)), hi = Math.log10(Math.max(...klds));
  const y0 = 10 ** (Math.floor(lo) - (lo - Math.floor(lo) < 0.15 ? 1 : 0)), y1 = 10 ** (Math.ceil(hi) + (Math.ceil(hi) - hi < 0.15 ? 1 : 0));
  const px = (b: number) => ((b - x0) / (x1 - x0)) * W;
  const py = (k: number) => H - ((Math.log10(k) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0) || 1)) * H;
  const values = shown.map((p) => ({ label: p.label, bpw: p.bpw, kld: Math.max(p.kld, KLD_FLOOR), kind: p.preset ? "llama.cpp preset" : "quantlab spec", front: front.has(p) }));
  const frontLine = values.filter((v) => v.front).sort((a, b) => a.bpw - b.bpw).map((v) => [px(v.bpw), py(v.kld)] as const);
  const labels = placeLabels(values.map((v) => ({ text: v.label, px: px(v.bpw), py: py(v.kld) })), W, H, 10, 6, [frontLine]);
  const decades: number[] = [];
  for (let e = Math.round(Math.log10(y0)); e <= Math.round(Math.log10(y1)); e++) decades.push(10 ** e);
  const kinds = { domain: ["quantlab spec", "llama.cpp preset"], range: ["#4c78a8", "#e45756"] };
  const x = { field: "bpw", type: "quantitative", title: o.xTitle ?? "bits per weight (block linears)", scale: { domain: [x0, x1], nice: false, zero: false } } as const;
  const y: Record<string, unknown> = { field: "kld", type: "quantitative", title: "mean KLD (nats, log scale)", scale: { type: "log", domain: [y0, y1], nice: false }, axis: { values: decades, format: "~g" } } as const;
  return {
    $schema: SCHEMA,
    config: CONFIG,
    width: W,
    height: H,
    title: { text: "Size vs quality", subtitle: "mean KL divergence to the float model; dashed: the Pareto front (nothing smaller has lower KLD)" },
    layer: [
      { data: { values: values.filter((v) => v.front) }, mark: { type: "line", color: "#999", strokeDash: [4, 3], clip: true }, encoding: { x, y, order: { field: "bpw" } } },
      {
        data: { values },
        mark: { type: "point", filled: true, size: 70, opacity: 1 },
        encoding: {
          x, y,
          color: { field: "kind", type: "nominal", title: null, scale: kinds, legend: { orient: "top-right" } },
          shape: { field: "kind", type: "nominal", title: null, scale: { domain: kinds.domain, range: ["circle", "diamond"] } },
        },
      },
      {
        data: { values: labels.filter((l) => l.leader).map((l) => ({ x1: l.leader![0], y1: l.leader![1], x2: l.leader![2], y2: l.leader![3] })) },
        mark: { type: "rule", color: "#888", strokeWidth: 0.8 },
        encoding: { x: { field: "x1", type: "quantitative", scale: null }, y: { field: "y1", type: "quantitative", scale: null }, x2: { field: "x2" }, y2: { field: "y2" } },
      },
      ...(["left", "right", "center"] as const).flatMap((align) => (["middle", "bottom", "top"] as const).map((baseline) => ({ align, baseline }))).map(({ align, baseline }) => ({
        data: { values: labels.filter((l) => l.align === align && l.baseline === baseline) },
        mark: { type: "text", align, baseline, fontSize: 10, color: "#333" },
        // pixel positions from placeLabels: no scale
        encoding: { x: { field: "x", type: "quantitative", scale: null }, y: { field: "y", type: "quantitative", scale: null }, text: { field: "text" } },
      })),
    ],
  } as TopLevelSpec;
}
