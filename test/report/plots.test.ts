// The plots of the report and the lab (report/plots.ts → SVG through vega, report/render.ts) and the report
// page (report/html.ts): a histogram draws one line per level of the format's grid, dense grids as ticks;
// frontier labels never overlap each other or a point, however crowded; the Pareto front is the set
// nothing beats in both size and KLD; the HTML is self-contained (no script, no fetched URL) and shows
// every row, recipe and machine field it is given.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../src/core/rng.js";
import { gridHistogram } from "../../src/eval/grid-histogram.js";
import type { ReportData } from "../../src/report/build.js";
import { reportHtml } from "../../src/report/html.js";
import { frontierSpec, histogramSpec, layerKldShare, layerSqnr, paretoFront, placeLabels } from "../../src/report/plots.js";
import { renderSvg } from "../../src/report/render.js";
import { quantizeTensor } from "../../src/quant/tensor.js";

const rng = new Rng(9);
const w = Float32Array.from({ length: 32 * 64 }, () => rng.normal());
const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

test("histogram: one rule per level of the grid (int4 asym: 16), ticks for a dense grid (fp8: 253 in view)", async () => {
  const h = gridHistogram("blk.0.w", w, quantizeTensor(w, [32, 64], "int4:g32:asym"), 40);
  const svg = await renderSvg(histogramSpec(h));
  assert.ok(svg.startsWith("<svg"));
  assert.equal(count(svg, /aria-roledescription="rule mark"/g), 16);
  assert.equal(count(svg, /aria-roledescription="rect mark"/g), 40);
  assert.match(svg, /int4:g32:asym/);
  const f = gridHistogram("blk.0.w", w, quantizeTensor(w, [32, 64], "fp8_e4m3:channel"));
  assert.ok(f.levels.length > 48);
  const fsvg = await renderSvg(histogramSpec(f));
  assert.equal(count(fsvg, /aria-roledescription="rule mark"/g), 0);
  assert.equal(count(fsvg, /aria-roledescription="tick"/g), f.levels.length);
  assert.match(fsvg, /ticks on the axis/);
});

test("frontier labels: no two names and no name and point overlap, even for points on top of each other", async () => {
  const pts = Array.from({ length: 12 }, (_, i) => ({ text: `spec-${i}:g32`, px: 100 + (i % 3) * 4, py: 80 + Math.floor(i / 3) * 3 }));
  const labels = placeLabels(pts, 560, 300);
  const boxes = labels.map((l) => {
    const wd = 0.6 * 10 * l.text.length, h = 12;
    const x0 = l.align === "left" ? l.x : l.align === "right" ? l.x - wd : l.x - wd / 2;
    const y0 = l.baseline === "bottom" ? l.y - h : l.baseline === "top" ? l.y : l.y - h / 2;
    return [x0, y0, x0 + wd, y0 + h] as const;
  });
  const overlap = (a: readonly number[], b: readonly number[]) => a[0]! < b[2]! && b[0]! < a[2]! && a[1]! < b[3]! && b[1]! < a[3]!;
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) assert.ok(!overlap(boxes[i]!, boxes[j]!), `labels ${i} and ${j} overlap`);
    for (const p of pts) assert.ok(!overlap(boxes[i]!, [p.px - 6, p.py - 6, p.px + 6, p.py + 6]), `label ${i} covers a point`);
  }
  assert.ok(labels.some((l) => l.leader), "crowded labels get a leader line");
  const points = [
    { label: "a", bpw: 4, kld: 0.2, preset: false }, { label: "b", bpw: 4.5, kld: 0.3, preset: false },
    { label: "c", bpw: 5, kld: 0.05, preset: true }, { label: "d", bpw: 8, kld: 0, preset: false }, { label: "e", bpw: 8.5, kld: NaN, preset: false },
  ];
  assert.deepEqual(paretoFront(points).map((p) => p.label), ["a", "c", "d"]);
  const svg = await renderSvg(frontierSpec(points));
  for (const l of ["a", "b", "c", "d"]) assert.match(svg, new RegExp(`>${l}</text>`));
  assert.doesNotMatch(svg, />e<\/text>/, "a row without KLD is not drawn");
});

test("per-layer values: mean SQNR of each layer's tensors; KLD shares sum to 1 per row", () => {
  const rows = [{ row: { spec: "x" }, tensors: [{ name: "blk.0.a", sqnrDb: 10 }, { name: "blk.0.b", sqnrDb: 20 }, { name: "blk.1.a", sqnrDb: 30 }, { name: "output.weight", sqnrDb: 5 }] }];
  assert.deepEqual(layerSqnr({ rows }).sort((a, b) => a.layer - b.layer), [{ layer: 0, row: "x", value: 15 }, { layer: 1, row: "x", value: 30 }]);
  const share = layerKldShare({ layerKld: [{ row: "x", layer: 0, kld: 1 }, { row: "x", layer: 1, kld: 3 }, { row: "y", layer: 0, kld: 0 }] });
  assert.deepEqual(share.map((s) => s.value), [0.25, 0.75, 0]);
});

test("the report page: self-contained, every row, recipe and machine field, presets marked", async () => {
  const h = gridHistogram("blk.0.attn_q.weight", w, quantizeTensor(w, [32, 64], "int4:g32:asym"));
  const row = (spec: string, extra: object = {}) => ({ spec, bpw: 4.5, linearBpw: 4.5, sizeBytes: 1234, ppl: 5.1, meanKld: 0.05, top1: 0.9, worstSqnrDb: 20, seconds: 0.1, evalSeconds: 0.2, ...extra });
  const d: ReportData = {
    title: "report <of> test",
    model: { name: "m.bin", format: "llama2c", params: 2048, nLayers: 1, dim: 64, hiddenDim: 128, vocabSize: 32, seqLen: 64 },
    text: { name: "eval.txt", tokens: 100, ctx: 32 },
    base: { ppl: 5, sizeBytes: 8192 },
    rows: [
      { row: row("int4:g32:asym"), recipeJson: JSON.stringify({ kind: "quantlab.recipe", target: { spec: "int4:g32:asym" } }), tensors: [{ name: "blk.0.attn_q.weight", sqnrDb: 20, relErr: 0.01 }] },
      { row: row("Q4_K_M", { preset: "Q4_K_M", meanKld: 0.02, linearBpw: 4.8 }), recipeJson: JSON.stringify({ kind: "quantlab.recipe", target: { preset: "Q4_K_M" } }), tensors: [{ name: "blk.0.attn_q.weight", sqnrDb: 25, relErr: 0.003 }] },
    ],
    kvRows: [row("f32", { kv: "int8:channel", kvBits: 12 })],
    layerKld: [{ row: "int4:g32:asym", layer: 0, kld: 0.05 }, { row: "Q4_K_M", layer: 0, kld: 0.02 }],
    layerTokens: 64,
    histTensor: { name: "blk.0.attn_q.weight", reason: "chosen by the test" },
    histograms: [h],
    outliers: [{ tensor: "blk.0.attn_q.weight", cols: 64, binCols: 1, ratio: Array.from({ length: 64 }, (_, i) => 1 + (i === 5 ? 3 : 0)), maxRatio: 4, maxColumn: 5 }],
    machine: { cpu: "Test CPU × 2", runtime: "Node.js test" },
    seconds: 1.5,
    generatedAt: "2026-01-01T00:00:00.000Z",
  };
  const html = await reportHtml(d);
  assert.match(html, /^<!doctype html>/);
  // nothing to fetch or run (SVG's url(#id) points inside the page)
  const fetchy = html.match(/<script|<link|<img|<iframe|@import|url\((?!#)/i);
  assert.equal(fetchy, null, `found ${fetchy?.[0]}`);
  // the only URLs are SVG's namespace names, which are never fetched
  const urls = [...html.matchAll(/https?:\/\/[^\s"'<>)]+/g)].map((m) => m[0]);
  assert.deepEqual([...new Set(urls)].sort(), ["http://www.w3.org/1999/xlink", "http://www.w3.org/2000/svg"]);
  assert.match(html, /<title>report &lt;of&gt; test<\/title>/);
  assert.equal(count(html, /<svg/g), 5, "frontier, SQNR bars, KLD bars, one histogram, the heatmap");
  assert.match(html, /<tr class="preset"><td>Q4_K_M<\/td>/);
  assert.match(html, /<td>int4:g32:asym<\/td><td class="num">4\.500<\/td>/);
  assert.match(html, /<td>int8:channel<\/td><td class="num">12\.000<\/td>/);
  assert.match(html, /&quot;preset&quot;: &quot;Q4_K_M&quot;/);
  assert.match(html, /<dt>cpu<\/dt><dd>Test CPU × 2<\/dd>/);
  assert.match(html, /Chosen by the test\./);
});
