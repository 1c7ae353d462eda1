/**
 * Vega-Lite spec → SVG text, with vega's headless renderer: no DOM and no canvas needed, so `quantlab
 * report` renders in Node what the browser lab renders in the page, from the same specs (plots.ts).
 * Without a canvas vega estimates text widths from character counts (vega-scenegraph); the layouts in
 * plots.ts leave room for that.
 */
import { parse, View, type Spec } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

/** A Vega-Lite spec, or a Vega spec (plots that need Vega's label placement). */
export type PlotSpec = TopLevelSpec | Spec;

function isVegaLite(s: PlotSpec): s is TopLevelSpec {
  return typeof s.$schema === "string" && s.$schema.includes("vega-lite");
}

export async function renderSvg(spec: PlotSpec): Promise<string> {
  const view = new View(parse(isVegaLite(spec) ? compile(spec).spec : spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
