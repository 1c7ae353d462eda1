/**
 * The lab page: forms, tables and plots. All model work happens in the library's Web Worker
 * (lab-worker.ts); this file sends requests, shows progress and draws the same Vega-Lite plots the HTML
 * report draws (src/report/plots.ts, rendered to SVG by src/report/render.ts).
 *
 * Cancel terminates the worker (a synchronous quantize cannot be interrupted from outside) and starts a
 * new one, which reopens the picked files and reloads every finished result from its Blob.
 */
import type { CompareRow } from "../../src/eval/compare.js";
import { frontierSpec, histogramSpec, layerBarsSpec, layerSqnr, outlierHeatmapSpec } from "../../src/report/plots.js";
import { renderSvg, type PlotSpec } from "../../src/report/render.js";
import type { BackendInfo, ChannelOutlierRow, GridHistogram, ModelSummary, OnnxReply, QuantizeReply, Reply, Request } from "./protocol.js";
import type { FormChoice } from "./recipe.js";

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`lab page: no #${id}`);
  return e as T;
};

/** What a request of a terminated worker fails with (the person cancelled it: nothing to report). */
class Cancelled extends Error {}

interface Handlers {
  progress?: (label: string, value: number, total: number) => void;
  text?: (piece: string) => void;
}

/** The worker and its pending requests. */
class Lab {
  private readonly w: Worker;
  private rid = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; h: Handlers }>();
  readonly ready: Promise<BackendInfo>;

  constructor() {
    this.w = new Worker(new URL("./lab-worker.ts", import.meta.url), { type: "module" });
    let onReady!: (i: BackendInfo) => void;
    this.ready = new Promise((r) => { onReady = r; });
    this.w.onmessage = (e: MessageEvent<Reply>) => {
      const m = e.data;
      if (m.type === "ready") return onReady(m.info);
      const p = this.pending.get(m.rid);
      if (!p) return;
      if (m.type === "progress") p.h.progress?.(m.label, m.value, m.total);
      else if (m.type === "text") p.h.text?.(m.piece);
      else {
        this.pending.delete(m.rid);
        if (m.type === "done") p.resolve(m.result);
        else p.reject(new Error(m.message));
      }
    };
    this.w.onerror = (e) => {
      for (const p of this.pending.values()) p.reject(new Error(`the library worker failed: ${e.message}`));
      this.pending.clear();
    };
    // the worker's own location is its script's URL: it learns ?threads= / ?activations= from this first message
    this.w.postMessage({ init: location.search });
  }

  call<T>(req: Request, h: Handlers = {}): Promise<T> {
    const rid = ++this.rid;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(rid, { resolve: resolve as (v: unknown) => void, reject, h });
      this.w.postMessage({ rid, req });
    });
  }

  terminate(reason: string): void {
    this.w.terminate();
    for (const p of this.pending.values()) p.reject(new Cancelled(reason));
    this.pending.clear();
  }
}

interface Result {
  reply: QuantizeReply;
  label: string;
  method: string;
}

const state: {
  lab: Lab;
  info?: BackendInfo;
  picked?: Extract<Request, { type: "open" }>;
  model?: ModelSummary;
  results: Result[];
  outliers?: ChannelOutlierRow[];
  busy: boolean;
  /** set while a cancelled worker is being replaced: the buttons stay off until it is back */
  restarting?: Promise<void>;
} = { lab: new Lab(), results: [], busy: false };

function fmt(x: number, d: number): string {
  return Number.isFinite(x) ? x.toFixed(d) : "–";
}

function fmtBytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

async function draw(el: HTMLElement, spec: PlotSpec): Promise<void> {
  el.innerHTML = await renderSvg(spec);
}

function setBusy(b: boolean): void {
  if (!b && state.restarting) return;
  state.busy = b;
  $<HTMLButtonElement>("quantize").disabled = b || !state.model;
  $<HTMLButtonElement>("generate").disabled = b || !state.model;
  $<HTMLButtonElement>("cancel").disabled = !b;
}

function showProgress(label: string, value: number, total: number): void {
  const bar = $<HTMLProgressElement>("progress");
  bar.max = Math.max(1, total);
  bar.value = Math.min(value, total);
  $("progress-label").textContent = total > 0 ? `${label} ${value}/${total}` : label;
}

function showError(e: unknown): void {
  if (e instanceof Cancelled) return;
  const el = $("quantize-error");
  el.hidden = false;
  el.textContent = (e as Error).message ?? String(e);
}

// ---- the form

function fillForm(info: BackendInfo): void {
  const preset = $<HTMLSelectElement>("preset");
  preset.innerHTML = info.presets.map((p) => `<option${p === "Q4_K_M" ? " selected" : ""}>${p}</option>`).join("");
  const kind = $<HTMLSelectElement>("target-kind");
  const methods = () => {
    const k = kind.value;
    const m = $<HTMLSelectElement>("method");
    m.innerHTML = info.methods.filter((x) => x.targets.includes(k)).map((x) => `<option value="${x.name}" title="${x.doc.replace(/"/g, "&quot;")}">${x.name}</option>`).join("");
    $("spec-label").hidden = k !== "spec";
    $("preset-label").hidden = k !== "preset";
  };
  kind.onchange = methods;
  methods();
}

function choice(): FormChoice {
  const kind = $<HTMLSelectElement>("target-kind").value;
  const calib = $<HTMLTextAreaElement>("calib").value;
  const calibFile = $<HTMLInputElement>("calib-file").files?.[0];
  return {
    target: kind === "preset" ? { preset: $<HTMLSelectElement>("preset").value } : { spec: $<HTMLInputElement>("spec").value.trim() },
    method: $<HTMLSelectElement>("method").value,
    ...(calib ? { calibText: calib, calibName: calibFile?.name ?? "calibration.txt" } : {}),
    ...kvChoice(),
  };
}

/** The KV-cache fields: a spec (empty: the f32 cache), KIVI's per-channel keys and float window (quantlab's --kv flags). */
function kvChoice(): Pick<FormChoice, "kv"> {
  const spec = $<HTMLInputElement>("kv").value.trim();
  const keys = $<HTMLSelectElement>("kv-keys").value as "token" | "channel";
  const windowText = $<HTMLInputElement>("kv-window").value.trim();
  const window = windowText === "" ? 0 : Number(windowText);
  // options without a cache spec change nothing: said, not dropped
  if (!spec && (keys !== "token" || window !== 0)) throw new Error("KV-cache keys / window are set but no KV-cache spec: fill in the KV cache field or reset them");
  if (!spec) return {};
  if (!Number.isInteger(window) || window < 0) throw new Error(`KV-cache window ${JSON.stringify(windowText)}: expected a whole number of positions ≥ 0`);
  return { kv: { spec, ...(keys === "channel" ? { keys } : {}), ...(window > 0 ? { window } : {}) } };
}

/** A result's label: its target, and its KV cache when it has one. */
function resultLabel(target: string, kv: FormChoice["kv"]): string {
  if (!kv) return target;
  return `${target} + KV ${kv.spec}${kv.keys === "channel" ? " (channel keys)" : ""}${kv.window ? ` (window ${kv.window})` : ""}`;
}

/** A text file chosen next to a textarea fills it. */
function linkTextFile(input: string, area: string): void {
  $<HTMLInputElement>(input).onchange = async () => {
    const f = $<HTMLInputElement>(input).files?.[0];
    if (f) $<HTMLTextAreaElement>(area).value = await f.text();
  };
}

// ---- model

function folderPick(files: FileList): Extract<Request, { type: "open" }> {
  const list = [...files];
  const first = (list[0] as File & { webkitRelativePath?: string } | undefined)?.webkitRelativePath ?? "";
  const name = first.split("/")[0] || "folder";
  // only the folder's own files (a Hugging Face directory is flat)
  const own = list.filter((f) => ((f as File & { webkitRelativePath?: string }).webkitRelativePath ?? "").split("/").length === 2);
  return { type: "open", files: [], dir: { name, files: own.map((f) => [f.name, f]) } };
}

async function openModel(req: Extract<Request, { type: "open" }>): Promise<void> {
  state.picked = req;
  state.results = [];
  state.outliers = undefined;
  renderResults();
  $("model-info").textContent = "reading…";
  setBusy(true);
  try {
    const m = await state.lab.call<ModelSummary>(req, { progress: showProgress });
    state.model = m;
    $("model-info").textContent = `${m.name} (${m.format}): ${(m.params / 1e6).toFixed(3)} M parameters, ${m.nLayers} layers, dim ${m.dim}, hidden ${m.hiddenDim}, vocabulary ${m.vocabSize}, context ${m.seqLen}${m.tokenizer ? "" : ", no tokenizer"}.`;
    state.outliers = await state.lab.call<ChannelOutlierRow[]>({ type: "outliers" });
    await draw($("plot-outliers"), outlierHeatmapSpec(state.outliers, { width: 480 }));
    showProgress("", 0, 0);
  } catch (e) {
    state.model = undefined;
    $("model-info").textContent = `Cannot open: ${(e as Error).message}`;
  } finally {
    setBusy(false);
  }
}

// ---- quantize and results

let nextId = 1;

async function runQuantize(): Promise<void> {
  $("quantize-error").hidden = true;
  const id = `r${nextId++}`;
  setBusy(true);
  try {
    const c = choice();
    const reply = await state.lab.call<QuantizeReply>({ type: "quantize", id, choice: c, ...($<HTMLTextAreaElement>("eval").value ? { evalText: $<HTMLTextAreaElement>("eval").value } : {}) }, { progress: showProgress });
    state.results.push({ reply, label: resultLabel("preset" in c.target ? c.target.preset : reply.row.spec, c.kv), method: c.method });
    showProgress(`done: ${reply.fileName}`, 1, 1);
    $("progress-label").textContent = `done: ${reply.fileName}${reply.note ? ` (${reply.note})` : ""}`;
    renderResults();
    await renderPlots();
  } catch (e) {
    showError(e);
    showProgress("", 0, 0);
  } finally {
    setBusy(false);
  }
}

/** ONNX exports made so far, by result id */
const onnxExports = new Map<string, OnnxReply>();

function onnxLink(o: OnnxReply): HTMLAnchorElement {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(o.blob);
  a.download = o.fileName;
  a.className = "download-onnx";
  a.textContent = `${o.fileName} (${o.dtype})`;
  return a;
}

/** Exports a result as its ONNX directory (zipped) and adds the download link to its row. */
async function exportOnnx(id: string, tr: HTMLElement): Promise<void> {
  if (state.busy) return;
  $("quantize-error").hidden = true;
  setBusy(true);
  try {
    const o = await state.lab.call<OnnxReply>({ type: "onnx", id }, { progress: showProgress });
    onnxExports.set(id, o);
    tr.querySelector("button.onnx")?.replaceWith(onnxLink(o));
    $("progress-label").textContent = `done: ${o.fileName}${o.notes.length ? ` — ${o.notes.join("; ")}` : ""}`;
  } catch (e) {
    showError(e);
    showProgress("", 0, 0);
  } finally {
    setBusy(false);
  }
}

/** Cancel: a fresh worker, the same files, the finished results reloaded from their Blobs. */
async function cancel(): Promise<void> {
  $<HTMLButtonElement>("cancel").disabled = true;
  const old = state.lab;
  const restart = async () => {
    state.lab = new Lab();
    await state.lab.ready;
    if (state.picked) {
      await state.lab.call<ModelSummary>(state.picked);
      for (const r of state.results) await state.lab.call({ type: "adopt", id: r.reply.id, fileName: r.reply.fileName, blob: r.reply.blob });
    }
  };
  old.terminate("cancelled");
  state.restarting = restart();
  $("progress-label").textContent = "cancelled; restarting the library…";
  try {
    await state.restarting;
    $("progress-label").textContent = "cancelled";
  } catch (e) {
    showError(e);
  } finally {
    state.restarting = undefined;
    $<HTMLProgressElement>("progress").value = 0;
    setBusy(false);
  }
}

function renderResults(): void {
  const body = $("results").querySelector("tbody")!;
  body.innerHTML = "";
  $("results-empty").hidden = state.results.length > 0;
  for (const r of state.results) {
    const row: CompareRow = r.reply.row;
    const tr = document.createElement("tr");
    tr.dataset.id = r.reply.id;
    const cells = [r.label, r.method, fmt(row.bpw, 3), fmtBytes(row.sizeBytes), fmt(row.meanKld, 5), fmt(row.top1, 4), fmt(row.worstSqnrDb, 2), fmt(row.seconds, 2)];
    tr.innerHTML = cells.map((c, i) => `<td${i >= 2 ? ' class="num"' : ""}></td>`).join("") + "<td></td>";
    cells.forEach((c, i) => { tr.children[i]!.textContent = c; });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(r.reply.blob);
    a.download = r.reply.fileName;
    a.className = "download";
    a.textContent = `${r.reply.fileName}`;
    tr.lastElementChild!.append(a);
    // the same result as the directory transformers.js / ONNX Runtime load (quantlab export --onnx), zipped
    const done = onnxExports.get(r.reply.id);
    if (done) tr.lastElementChild!.append(" ", onnxLink(done));
    else {
      const onnx = document.createElement("button");
      onnx.className = "onnx";
      onnx.textContent = "ONNX (.zip)";
      onnx.title = "export this result for transformers.js / ONNX Runtime: its codes as MatMulNBits / DequantizeLinear (docs/onnx.md)";
      onnx.addEventListener("click", () => void exportOnnx(r.reply.id, tr));
      tr.lastElementChild!.append(" ", onnx);
    }
    // the recipe the file carries (quantlab.recipe): `quantlab quantize <model> --recipe <file>` repeats it
    const rec = document.createElement("details");
    rec.innerHTML = "<summary>recipe</summary><pre></pre>";
    rec.querySelector("pre")!.textContent = JSON.stringify(JSON.parse(r.reply.recipeJson), null, 1);
    tr.lastElementChild!.append(rec);
    body.append(tr);
  }
  const opts = state.results.map((r) => `<option value="${r.reply.id}">${r.label} (${r.method})</option>`).join("");
  $<HTMLSelectElement>("gen-result").innerHTML = opts;
  if (state.results.length) $<HTMLSelectElement>("gen-result").value = state.results[state.results.length - 1]!.reply.id;
  const spec = state.results.filter((r) => r.reply.gridTensors.length > 0);
  const hr = $<HTMLSelectElement>("hist-result");
  const keep = hr.value;
  hr.innerHTML = spec.map((r) => `<option value="${r.reply.id}">${r.label} (${r.method})</option>`).join("");
  if (spec.some((r) => r.reply.id === keep)) hr.value = keep;
  else if (spec.length) hr.value = spec[spec.length - 1]!.reply.id;
  fillHistTensors();
}

function fillHistTensors(): void {
  const r = state.results.find((x) => x.reply.id === $<HTMLSelectElement>("hist-result").value);
  const ht = $<HTMLSelectElement>("hist-tensor");
  const keep = ht.value;
  const names = r?.reply.gridTensors ?? [];
  ht.innerHTML = names.map((n) => `<option>${n}</option>`).join("");
  // default: the tensor with the strongest outlier channel, as the report picks
  const worst = state.outliers?.filter((o) => names.includes(o.tensor)).reduce((a, b) => (b.maxRatio > a.maxRatio ? b : a), { tensor: names[0] ?? "", maxRatio: -1 } as { tensor: string; maxRatio: number });
  ht.value = names.includes(keep) ? keep : worst?.tensor ?? names[0] ?? "";
}

async function renderHistogram(): Promise<void> {
  const id = $<HTMLSelectElement>("hist-result").value, tensor = $<HTMLSelectElement>("hist-tensor").value;
  if (!id || !tensor) return;
  const h = await state.lab.call<GridHistogram>({ type: "histogram", id, tensor });
  await draw($("plot-hist"), histogramSpec(h, { width: 380, height: 170 }));
}

async function renderPlots(): Promise<void> {
  const rows = state.results.map((r) => ({ row: { spec: r.label }, tensors: r.reply.tensors }));
  const order = [...new Set(rows.map((r) => r.row.spec))];
  await draw($("plot-layers"), layerBarsSpec(layerSqnr({ rows }), { title: "SQNR per layer", subtitle: "mean over the layer's quantized tensors; higher is better", yTitle: "SQNR (dB)", rows: order, width: 420, height: 180 }));
  const points = state.results.filter((r) => Number.isFinite(r.reply.row.meanKld)).map((r) => ({ label: r.label, bpw: r.reply.row.linearBpw, kld: r.reply.row.meanKld, preset: r.reply.row.preset !== undefined }));
  if (points.length) await draw($("plot-frontier"), frontierSpec(points, { width: 420, height: 240 }));
  await renderHistogram();
}

// ---- generate

async function runGenerate(): Promise<void> {
  $("quantize-error").hidden = true;
  const prompt = $<HTMLInputElement>("prompt").value;
  const steps = Number($<HTMLInputElement>("steps").value);
  const which = $<HTMLSelectElement>("gen-result").value;
  setBusy(true);
  try {
    const out = $("gen-float");
    out.textContent = "";
    await state.lab.call({ type: "generate", which: "float", prompt, steps }, { text: (p) => { out.textContent += p; } });
    const q = $("gen-quant");
    q.textContent = "";
    if (which) {
      const r = state.results.find((x) => x.reply.id === which)!;
      $("gen-quant-title").textContent = `${r.label} (${r.method}) — ${r.reply.fileName}`;
      await state.lab.call({ type: "generate", which, prompt, steps }, { text: (p) => { q.textContent += p; } });
    }
    document.body.dataset.generated = String(Number(document.body.dataset.generated ?? "0") + 1);
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

// ---- wiring

async function start(): Promise<void> {
  const info = await state.lab.ready;
  state.info = info;
  $("status").textContent = `kernels: ${info.backend}, ${info.threads} thread${info.threads > 1 ? `s (${info.workersRunning} worker${info.workersRunning === 1 ? "" : "s"} running)` : ""} · ${info.isolated ? "cross-origin isolated" : "not cross-origin isolated"}${info.packedActivations === "q8" ? " · q8 activations for spec weights" : ""}${info.note ? ` · ${info.note}` : ""}`;
  document.body.dataset.ready = "1";
  fillForm(info);
  linkTextFile("calib-file", "calib");
  linkTextFile("eval-file", "eval");
  $<HTMLInputElement>("model-files").onchange = () => {
    const f = $<HTMLInputElement>("model-files").files;
    if (f && f.length) void openModel({ type: "open", files: [...f] });
  };
  $<HTMLInputElement>("model-dir").onchange = () => {
    const f = $<HTMLInputElement>("model-dir").files;
    if (f && f.length) void openModel(folderPick(f));
  };
  $("quantize").onclick = () => void runQuantize();
  $("cancel").onclick = () => void cancel();
  $("generate").onclick = () => void runGenerate();
  $("hist-result").onchange = () => { fillHistTensors(); void renderHistogram().catch(showError); };
  $("hist-tensor").onchange = () => void renderHistogram().catch(showError);
}

void start();
