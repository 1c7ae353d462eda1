/**
 * The layer-by-layer post-training quantization pipeline shared by the calibration methods (gptq, awq,
 * awq+gptq, smoothquant, hqq, and rtn with rotations). Each method is a `LayerwiseMethod` (its own file in
 * methods/): an optional scale migration per input site and the quantization of one block's linears.
 *
 * Walks the transformer blocks in order. Each block's weights are copied to f32, transformed
 * (rotation, AWQ/SmoothQuant scales folded into the RMSNorm or the previous linear), quantized with
 * the method, and the quantized block is run on the calibration hidden states to produce the next
 * block's inputs. So every block is calibrated on the outputs of the already-quantized blocks before
 * it, and memory stays near one block's f32 weights plus T = samples·seq hidden states.
 *
 * `rotate`: QuaRot-style randomized Hadamard rotation of the residual stream, fused into the weights
 * after folding every RMSNorm (the output head is untied), plus a rotation of the FFN-down input fused
 * into ffn_down and applied online by the forward pass (model.inputTransforms).
 * A spec with an activation part (a<b>, a<b>s) sets model.inputTransforms.activations: every block
 * linear's input is fake-quantized at run time (static scales are calibrated here, block by block).
 *
 * Where a fold is impossible the site is left unscaled: AWQ/SmoothQuant on the attention-output input
 * need v rows to match o columns one to one, which grouped-query attention breaks (llm-awq skips it too).
 */
import { QuantlabError } from "../core/errors.js";
import { Tensor } from "../core/tensor.js";
import { releaseWeight, type Weight } from "../core/weight.js";
import { dequantizeWeight } from "../kernels/dequantize.js";
import { ARCH_TRAITS, TensorNames } from "../model/config.js";
import { fakeQuantInputs, siteKey, type InputTransforms, type LinearSite } from "../model/transforms.js";
import type { Model } from "../model/weights.js";
import { ActivationObserver, printSpec, quantizeTensor, toSpec, type QTensor, type QuantSpec } from "../quant/index.js";
import { BlockPassCache, BlockRunner, LINEAR_KEYS, alignedChunkWindows, blockWeights, linearName, type BlockWeights, type LinearKey } from "./calib.js";
import { isSpecTarget } from "./recipe.js";
import { foldNormInPlace, randomizedHadamard, rotateInputsInPlace, rotateOutputsInPlace, type Rotation } from "./rotation.js";
import { RegistryQuantizer } from "./spec-quantizer.js";
import { rtnQuantize } from "./rtn.js";
import { ChannelStats, divideNormInPlace, divideRowsInPlace, scaleColumnsInPlace } from "./stats.js";
import type { MethodContext, MethodOutput, SpecTensorReport } from "./methods/types.js";
import { specReport } from "./methods/rtn.js";

/** Sites in block order with the linears they feed. */
export const SITE_GROUPS: readonly { site: LinearSite; keys: LinearKey[] }[] = [
  { site: "attn_in", keys: ["wq", "wk", "wv"] },
  { site: "attn_out_in", keys: ["wo"] },
  { site: "ffn_in", keys: ["gate", "up"] },
  { site: "ffn_down_in", keys: ["down"] },
];

export function rowsOf(key: LinearKey, c: Model["config"]): number {
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  switch (key) {
    case "wq": return qDim;
    case "wk": case "wv": return kvDim;
    case "wo": case "down": return c.dim;
    case "gate": case "up": return c.hiddenDim;
  }
}

export function colsOf(key: LinearKey, c: Model["config"]): number {
  if (key === "wo") return c.nHeads * c.headDim;
  if (key === "down") return c.hiddenDim;
  return c.dim;
}

/** One input site of a block, for a method's scale migration (AWQ, SmoothQuant). */
export interface SiteMigration {
  layer: number;
  site: LinearSite;
  /** every linear reading the site (skipped ones too: they all take the scale), and their rows */
  keys: readonly LinearKey[];
  linears: { w: Float32Array; rows: number }[];
  cols: number;
  stats: ChannelStats;
  /** the quantizer of the site's linears (one spec per site for methods that migrate) */
  quantizer: RegistryQuantizer;
}

/** One block, for a method's quantization step. */
export interface BlockStep {
  layer: number;
  config: Model["config"];
  /** the block's f32 weights after the transforms (a quantized linear's entry becomes its dequantized values) */
  bw: BlockWeights;
  /** the linears to quantize, in block order */
  selected: readonly LinearKey[];
  /** the method's quantizer of a linear's spec */
  quantizer(k: LinearKey): RegistryQuantizer;
  /** round to nearest with the linear's spec (quant's quantizeTensor) */
  quantizeRtn(k: LinearKey, w: Float32Array): QTensor;
  /** round to nearest with the method's column quantizer (its fit: HQQ's solver, AWQ's clipped weights …) */
  quantizeWith(k: LinearKey, w: Float32Array): QTensor;
  /** the site's input (T, width) for the block as quantized so far (hook called, block run stops after the site) */
  captureSite(site: LinearSite, hook: (x: Float32Array, T: number) => void): void;
  /** what the migration step left for a linear (AWQ's clipped weights) */
  migrated: Map<LinearKey, Float32Array>;
  /** per-linear detail from the migration step (α …), merged into the report */
  detail: Map<LinearKey, Record<string, number>>;
  /** records a linear's quantized form (work started at t0, Date.now()); its bw entry becomes the dequantized values */
  setQuant(k: LinearKey, q: QTensor, t0: number, detail?: Record<string, number>): void;
}

export interface LayerwiseMethod {
  label: string;
  /**
   * The hooks of `captureSite` only read their input and take it in any number of row chunks (GPTQ's Hessian
   * sums): the passes then run in chunks of whole windows (calib.ts alignedChunkWindows, the same values as
   * one chunk) with a per-block BlockPassCache, so each site's pass resumes from what the earlier passes of
   * the block computed with the same weights, and the scratch is one chunk's. A number: the fewest tokens
   * per chunk (default 1024).
   */
  streamPasses?: boolean | number;
  /** checks a spec before any work (e.g. SmoothQuant needs an activation part) */
  validate?(spec: QuantSpec): void;
  /** the column-walking quantizer of a spec (default: RegistryQuantizer(spec)) */
  quantizer?(spec: QuantSpec): RegistryQuantizer;
  /** the method walks columns with a RegistryQuantizer (GPTQ, AWQ, HQQ): specs it cannot run are refused up front */
  columnQuantizer?: boolean;
  /** site statistics need the Gram matrix (AWQ's output-error search) */
  gram?: boolean;
  /**
   * Scale migration of one site: per-column scales s (the linears become W·diag(s), 1/s folds into the
   * producer), or undefined to leave the site alone. May stash per-linear weights in `migrated`.
   */
  migrate?(m: SiteMigration, step: BlockStep): Float64Array | undefined;
  quantizeBlock(step: BlockStep): void;
}

/**
 * The spec static activation scales are fitted with: symmetric int<b> per tensor, with the weight spec's
 * clipping method when it has one (percentile / mse / kl), else min-max — e.g. `int8:channel:p99.9:a8s`
 * clips activations at their 99.9th percentile too.
 */
export function staticActivationSpec(spec: QuantSpec): string {
  const a = spec.activations!;
  const c = spec.calibration;
  const cal = c.method === "percentile" ? `p${(c as { percentile: number }).percentile}` : c.method === "mse" || c.method === "kl" ? c.method : "";
  return `int${a.bits}:tensor${cal ? `:${cal}` : ""}`;
}

function f32Dense(shape: readonly number[], data: Float32Array): Weight {
  return { kind: "dense", tensor: new Tensor("f32", shape, data) };
}

/** Runs a layer-by-layer method over the model (spec targets). */
export async function runLayerwise(ctx: MethodContext, method: LayerwiseMethod): Promise<MethodOutput> {
  const { model, recipe, progress } = ctx;
  if (!isSpecTarget(recipe.target)) throw new QuantlabError("E_INTERNAL", "runLayerwise on a preset recipe");
  const c = model.config;
  const W = model.weights;
  const target = toSpec(recipe.target.spec);
  const act = target.activations;
  const selectedNames = new Set(ctx.names);
  const specs = new Map<string, QuantSpec>();
  for (const n of ctx.names) {
    const s = toSpec(ctx.specOf(n));
    if (JSON.stringify(s.activations ?? null) !== JSON.stringify(act ?? null)) {
      throw new QuantlabError("E_SPEC", `${n}: spec "${printSpec(s)}" quantizes activations differently from the target "${printSpec(target)}"; activation quantization is model-wide`);
    }
    specs.set(n, s);
  }
  for (const s of new Set([...specs.values()].map(printSpec))) method.validate?.(toSpec(s));
  if (act && act.format !== "int") throw new QuantlabError("E_UNSUPPORTED", `spec "${printSpec(target)}": the forward pass quantizes activations to integers only (a<bits>, a<bits>s), not ${act.format}`);
  // the column-walking quantizers (validate the specs for them before any work)
  const quantizers = new Map<string, RegistryQuantizer>();
  const quantizerOf = (name: string): RegistryQuantizer => {
    const s = specs.get(name)!;
    const key = printSpec(s);
    let q = quantizers.get(key);
    if (!q) { q = method.quantizer ? method.quantizer(s) : new RegistryQuantizer(s); quantizers.set(key, q); }
    return q;
  };
  if (method.columnQuantizer) for (const n of ctx.names) quantizerOf(n);

  const windows = ctx.calib ? ctx.calib.windows() : [];
  const seq = windows[0]?.length ?? 0;
  for (const w of windows) if (w.length !== seq) throw new QuantlabError("E_ARG", "calibration windows must all have the same length");
  const calibrate = windows.length > 0;

  const out = new Map<string, Weight>();
  const config = { ...c };
  const transforms: InputTransforms = {};
  const report: SpecTensorReport[] = [];

  // ---- rotations: residual R (dim) and the FFN-down input H (hidden)
  let R: Rotation | undefined;
  let H: Rotation | undefined;
  let embedding: Float32Array | Weight = W.get(TensorNames.tokenEmbd)!;
  if (recipe.rotate && ARCH_TRAITS[c.arch].norms !== "pre") {
    // a norm on a branch's output (rmsnorm(R·y) ⊙ w ≠ R·(rmsnorm(y) ⊙ w) for w ≠ 1) does not commute with the residual rotation
    throw new QuantlabError("E_UNSUPPORTED", `--rotate: architecture "${c.arch}" normalizes each branch's output before the residual add (post-attention / post-FFN norms), which a residual rotation cannot pass through`);
  }
  if (recipe.rotate) {
    const seed = recipe.rotate.seed;
    R = randomizedHadamard(c.dim, seed);
    if (recipe.rotate.mode !== "residual") H = randomizedHadamard(c.hiddenDim, seed + 1);
    const headName = W.has(TensorNames.output) ? TensorNames.output : TensorNames.tokenEmbd;
    const head = new Float32Array(dequantizeWeight(W.get(headName)!, headName).data);
    const outNorm = new Float32Array(dequantizeWeight(W.get(TensorNames.outputNorm)!, TensorNames.outputNorm).data);
    foldNormInPlace(outNorm, [{ w: head, rows: c.vocabSize }]);
    rotateInputsInPlace(head, c.vocabSize, c.dim, R);
    const table = new Float32Array(dequantizeWeight(embedding, TensorNames.tokenEmbd).data);
    rotateInputsInPlace(table, c.vocabSize, c.dim, R); // each row is a residual vector: e ← R·e
    out.set(TensorNames.tokenEmbd, f32Dense([c.vocabSize, c.dim], table));
    embedding = table;
    out.set(TensorNames.output, f32Dense([c.vocabSize, c.dim], head));
    out.set(TensorNames.outputNorm, f32Dense([c.dim], outNorm));
    config.tiedEmbeddings = false;
    if (H) transforms.ffnDownRotation = H.factors();
  } else {
    for (const n of [TensorNames.tokenEmbd, TensorNames.outputNorm, TensorNames.output]) {
      const w = W.get(n);
      if (w) out.set(n, w);
    }
  }
  if (act) transforms.activations = act.mode === "static" ? { bits: act.bits, mode: "static", scales: {} } : { bits: act.bits, mode: "dynamic" };
  // capture passes see the online rotation and dynamic activation quantization; static scales are set by the final pass
  const captureTransforms: InputTransforms = { ...transforms };
  if (act?.mode === "static") delete captureTransforms.activations;
  const actSpec = act ? staticActivationSpec(target) : undefined;

  const tm = ctx.timings;
  const now = tm?.now ?? ((): number => performance.now());
  const runner = calibrate ? new BlockRunner(model, seq, ctx.backend) : undefined;
  let tE = now();
  let X = runner ? runner.embed(embedding, windows) : undefined; // (T, dim) hidden states entering the block
  if (tm) tm.embedMs += now() - tE;
  const T = X ? X.length / c.dim : 0;
  const need = (what: string): [BlockRunner, Float32Array] => {
    if (!runner || !X) throw new QuantlabError("E_INTERNAL", `method ${method.label}: ${what} without calibration windows`);
    return [runner, X];
  };

  const stream = !!method.streamPasses && calibrate;
  if (ctx.ffnCacheBytes !== undefined && !(ctx.ffnCacheBytes >= 0)) throw new QuantlabError("E_ARG", `ffnCacheBytes must be ≥ 0, got ${ctx.ffnCacheBytes}`);
  const chunkWindows = stream ? alignedChunkWindows(seq, windows.length, typeof method.streamPasses === "number" ? method.streamPasses : undefined) : undefined;
  const nLinears = c.nLayers * LINEAR_KEYS.length;
  progress.start(nLinears, `${method.label}${R ? "+rotate" : ""} ${printSpec(target)}`);

  for (let l = 0; l < c.nLayers; l++) {
    const bw = blockWeights(model, l);
    if (R) rotateBlock(bw, c, R, H);
    const quantized = new Map<LinearKey, QTensor>();
    let captureMs = 0;
    // static activation scales: the final pass reads the block input again (all its sites' inputs), so it is kept
    const passCache = stream ? new BlockPassCache(act?.mode !== "static", ctx.ffnCacheBytes ?? 0) : undefined;
    const selected = LINEAR_KEYS.filter((k) => selectedNames.has(linearName(l, k)));
    const step: BlockStep = {
      layer: l,
      config: c,
      bw,
      selected,
      quantizer: (k) => quantizerOf(linearName(l, k)),
      quantizeRtn: (k, w) => quantizeTensor(w, [rowsOf(k, c), colsOf(k, c)], specs.get(linearName(l, k))!, { name: linearName(l, k) }),
      quantizeWith: (k, w) => {
        const rows = rowsOf(k, c), cols = colsOf(k, c);
        const gq = quantizerOf(linearName(l, k));
        return gq.toQTensor(rtnQuantize(w, rows, cols, gq), rows, cols, linearName(l, k));
      },
      captureSite: (site, hook) => {
        const [rn, x] = need(`capturing ${site}`);
        const t0 = now();
        let inHook = 0;
        rn.run(l, bw, x, {
          transforms: captureTransforms, stopAfter: site, hookSites: [site], ...(passCache ? { cache: passCache, chunkWindows } : {}),
          hook: (s, buf, width) => {
            if (s !== site) return;
            const h0 = now();
            hook(buf, buf.length / width);
            inHook += now() - h0;
          },
        });
        captureMs += now() - t0;
        if (tm) {
          tm.forwardMs[site] = (tm.forwardMs[site] ?? 0) + now() - t0 - inHook;
          tm.hookMs[site] = (tm.hookMs[site] ?? 0) + inHook;
        }
      },
      migrated: new Map(),
      detail: new Map(),
      setQuant: (k, q, t0, detail) => {
        const name = linearName(l, k);
        const d = detail || step.detail.has(k) ? { detail: { ...detail, ...step.detail.get(k) } } : {};
        report.push(specReport(name, [rowsOf(k, c), colsOf(k, c)], q.spec, bw[k], q, { seconds: (Date.now() - t0) / 1000, ...d }));
        quantized.set(k, q);
        bw[k] = q.dequantize();
        progress.tick();
      },
    };

    // ---- scale migration (AWQ / SmoothQuant) from one float-block pass
    if (method.migrate) {
      const [rn, x] = need("scale migration");
      tE = now();
      const stats = new Map<LinearSite, ChannelStats>();
      rn.run(l, bw, x, {
        transforms: captureTransforms,
        hook: (site, buf, width) => {
          const s = new ChannelStats(width, { gram: !!method.gram });
          s.add(buf, T);
          stats.set(site, s);
        },
        stopAfter: "ffn_down_in",
      });
      for (const g of SITE_GROUPS) {
        const keys = g.keys.filter((k) => selected.includes(k));
        if (keys.length === 0) continue;
        const cols = colsOf(keys[0]!, c);
        // where 1/s goes: a norm, or the rows of the previous linear
        const foldNorm = g.site === "attn_in" ? bw.attnNorm : g.site === "ffn_in" ? bw.ffnNorm : undefined;
        const foldPrev: LinearKey | undefined = g.site === "ffn_down_in" ? "up" : g.site === "attn_out_in" && c.nHeads === c.nKvHeads ? "wv" : undefined;
        if (!foldNorm && !foldPrev) {
          // nowhere to put 1/s: GQA's v rows (heads shared), or no norm before the branch (OLMo 2's attn_in / ffn_in);
          // the site keeps its weights as they are, and the report says so
          for (const k of keys) step.detail.set(k, { ...step.detail.get(k), noScaleFold: 1 });
          continue;
        }
        // all linears reading the site take the scale (skipped ones too), and a folded-into linear must still be float
        if (foldPrev && quantized.has(foldPrev)) continue;
        const specNames = new Set(keys.map((k) => printSpec(specs.get(linearName(l, k))!)));
        if (specNames.size > 1) throw new QuantlabError("E_SPEC", `method ${method.label}: blk.${l}.${g.site} feeds linears with different specs (${[...specNames].join(", ")}); its scale search needs one spec per input site`);
        const s = method.migrate({ layer: l, site: g.site, keys: g.keys, linears: g.keys.map((k) => ({ w: bw[k], rows: rowsOf(k, c) })), cols, stats: stats.get(g.site)!, quantizer: quantizerOf(linearName(l, keys[0]!)) }, step);
        if (!s) continue;
        for (const k of g.keys) scaleColumnsInPlace(bw[k], rowsOf(k, c), cols, s);
        if (foldNorm) divideNormInPlace(foldNorm, s);
        else {
          divideRowsInPlace(bw[foldPrev!], rowsOf(foldPrev!, c), colsOf(foldPrev!, c), s);
          // v's bias (Qwen2) is part of v's output rows: it takes the same 1/s
          if (foldPrev === "wv" && bw.bv) divideNormInPlace(bw.bv, s);
        }
        // a folded-into linear's clipped copy takes the same row scaling (RTN groups run along rows, so the clip scales with them)
        const clippedPrev = foldPrev ? step.migrated.get(foldPrev) : undefined;
        if (clippedPrev) divideRowsInPlace(clippedPrev, rowsOf(foldPrev!, c), colsOf(foldPrev!, c), s);
      }
      if (tm) tm.migrateMs += now() - tE;
    }

    // ---- weight quantization
    tE = now();
    method.quantizeBlock(step);
    if (tm) tm.quantizeMs += now() - tE - captureMs;
    // skipped linears report nothing but still count for the bar
    for (const k of LINEAR_KEYS) if (!selected.includes(k)) progress.tick();

    // ---- the quantized block's outputs feed the next block (static activation scales calibrated here)
    if (runner && X && l + 1 < c.nLayers + (act?.mode === "static" ? 1 : 0)) {
      tE = now();
      const a = transforms.activations;
      if (a?.mode === "static") {
        // rotation (if any) from the transforms, then calibrate this site's scale on the whole calibration
        // batch and fake-quantize with it, exactly as the forward pass will
        runner.run(l, bw, X, {
          transforms: captureTransforms,
          hook: (site, x, width) => {
            const ob = new ActivationObserver(width);
            ob.observe(x, `blk.${l}.${site} input`);
            const scale = ob.staticParams(actSpec!).scale;
            a.scales![siteKey(l, site)] = scale;
            fakeQuantInputs(x, T, width, a.bits, scale);
          },
        });
      } else if (passCache) {
        // the capture passes' transforms (the same, without static activations), so the cache's entries match
        runner.run(l, bw, X, { transforms: captureTransforms, cache: passCache, chunkWindows });
      } else {
        runner.run(l, bw, X, { transforms });
      }
      if (tm) tm.finalPassMs += now() - tE;
    }

    // ---- write the block; the source's block tensors are not needed any more (lazily loaded ones are dropped)
    const norms = [[TensorNames.attnNorm(l), bw.attnNorm], [TensorNames.ffnNorm(l), bw.ffnNorm], [TensorNames.postAttnNorm(l), bw.postAttnNorm], [TensorNames.postFfnNorm(l), bw.postFfnNorm]] as const;
    for (const n of [...norms.map(([n]) => n), ...LINEAR_KEYS.map((k) => linearName(l, k))]) {
      const w = W.get(n);
      if (w) releaseWeight(w);
    }
    for (const [n, v] of norms) if (v) out.set(n, f32Dense([c.dim], v));
    // the architecture's biases and q/k norms stay float (a folded scale may have changed v's bias)
    for (const [n, v] of [[TensorNames.attnQBias(l), bw.bq], [TensorNames.attnKBias(l), bw.bk], [TensorNames.attnVBias(l), bw.bv], [TensorNames.attnQNorm(l), bw.qNorm], [TensorNames.attnKNorm(l), bw.kNorm]] as const) {
      if (v) out.set(n, f32Dense([v.length], v));
    }
    for (const k of LINEAR_KEYS) {
      const q = quantized.get(k);
      const w: Weight = q ? { kind: "quant", q } : f32Dense([rowsOf(k, c), colsOf(k, c)], bw[k]);
      if (ctx.onTensor) ctx.onTensor(linearName(l, k), w);
      else out.set(linearName(l, k), w);
    }
  }
  progress.done();

  const result: Model = { config, weights: out, source: { path: model.source.path, format: "memory" } };
  if (model.tokenizer) result.tokenizer = model.tokenizer;
  if (transforms.ffnDownRotation || transforms.activations) result.inputTransforms = transforms;
  return { model: result, tensors: report, calibTokens: T };
}

/**
 * Fuses the residual rotation R and the FFN-down input rotation H into one block (column-vector
 * convention h' = R·h): RMSNorm weights folded into the linears reading them (norms become 1, and a
 * unit RMSNorm commutes with R), linears reading the residual W ← W·Rᵀ, linears writing it W ← R·W,
 * ffn_down's inputs W ← W·Hᵀ (H applied online to the FFN-down input; none for rotate mode "residual").
 */
export function rotateBlock(bw: BlockWeights, c: Model["config"], R: Rotation, H?: Rotation): void {
  const { dim, hiddenDim } = c;
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  if (!bw.attnNorm || !bw.ffnNorm || bw.postAttnNorm || bw.postFfnNorm) throw new QuantlabError("E_INTERNAL", "rotateBlock: the block's norms are not all pre-branch norms");
  foldNormInPlace(bw.attnNorm, [{ w: bw.wq, rows: qDim }, { w: bw.wk, rows: kvDim }, { w: bw.wv, rows: kvDim }]);
  foldNormInPlace(bw.ffnNorm, [{ w: bw.gate, rows: hiddenDim }, { w: bw.up, rows: hiddenDim }]);
  rotateInputsInPlace(bw.wq, qDim, dim, R);
  rotateInputsInPlace(bw.wk, kvDim, dim, R);
  rotateInputsInPlace(bw.wv, kvDim, dim, R);
  rotateInputsInPlace(bw.gate, hiddenDim, dim, R);
  rotateInputsInPlace(bw.up, hiddenDim, dim, R);
  rotateOutputsInPlace(bw.wo, dim, qDim, R);
  rotateOutputsInPlace(bw.down, dim, hiddenDim, R);
  if (H) rotateInputsInPlace(bw.down, dim, hiddenDim, H);
}
