/**
 * Preset targets (llama-quantize's Q4_K_M, Q8_0, …) for the methods that take them (rtn, gptq): the
 * importance matrix (collected from the calibration text as llama-imatrix does, or read from a file by the
 * caller), per-tensor type overrides, and the encoding itself (algos/ggml-quant.ts).
 */
import { QuantlabError } from "../../core/errors.js";
import { GgmlType, ggmlRowBytes, ggmlTypeByName, ggmlTypeName } from "../../ggml/types.js";
import { ggmlMix, parseGgmlPreset } from "../../ggml/mix.js";
import { TensorNames, fusedFileTensors } from "../../model/config.js";
import { checkGgmlTransformable, transformForGgml } from "../ggml-transform.js";
import { weightShape } from "../../core/weight.js";
import { collectImatrix } from "../imatrix.js";
import { quantizeModelToGgml } from "../ggml-quant.js";
import { globToRegExp } from "../select.js";
import type { ImatrixInfo, MethodContext, MethodOutput } from "./types.js";

export interface GgmlPresetRoute {
  /** GPTQ codes on llama.cpp's scales */
  gptq: boolean;
  /** AWQ scales (and clipping) searched against each linear's ggml type, folded in before quantizing */
  awq?: { grid: number; clip: boolean; clipGrid?: number; maxShrink?: number };
  /** SmoothQuant's scales (migration strength α) folded in before quantizing */
  smooth?: { alpha: number };
}

export async function runGgmlPreset(ctx: MethodContext, opts: GgmlPresetRoute): Promise<MethodOutput> {
  const { recipe, progress } = ctx;
  let model = ctx.model;
  const t = recipe.target;
  if (!("preset" in t)) throw new QuantlabError("E_INTERNAL", "runGgmlPreset on a spec recipe");
  const preset = parseGgmlPreset(t.preset);
  const t0 = Date.now();
  const transforming = !!recipe.rotate || !!opts.awq || !!opts.smooth;
  if (transforming) checkGgmlTransformable(model, [recipe.rotate ? "rotate" : "", opts.awq || opts.smooth ? recipe.method : ""].filter(Boolean).join(" + "), !!recipe.rotate);
  // the tensors of the file (a rotation unties the output head: output.weight, shaped as the embedding)
  const outShapes = new Map<string, readonly number[]>([...model.weights].map(([n, w]) => [n, weightShape(w)]));
  if (recipe.rotate && !outShapes.has(TensorNames.output)) outShapes.set(TensorNames.output, outShapes.get(TensorNames.tokenEmbd)!);
  if (opts.gptq && (recipe.options.actOrder || recipe.options.blockSize !== 128)) {
    throw new QuantlabError("E_ARG", "recipe: options.actOrder and options.blockSize apply to spec targets; GPTQ on llama.cpp's blocks uses static groups in column order");
  }
  // per-tensor types: overrides (llama-quantize --tensor-type) and tensors kept in float
  const typeOverrides = new Map<string, GgmlType>();
  for (const o of recipe.overrides ?? []) {
    if (o.type === undefined) throw new QuantlabError("E_ARG", `recipe: override "${o.match}" gives a spec; preset targets take ggml types ("type")`);
    const type = ggmlTypeByName(o.type);
    if (type === undefined) throw new QuantlabError("E_ARG", `recipe: override "${o.match}": unknown ggml type "${o.type}"`);
    const re = globToRegExp(o.match);
    const hit = [...outShapes.keys()].filter((n) => re.test(n));
    if (hit.length === 0) throw new QuantlabError("E_ARG", `recipe: override "${o.match}" matches no tensor`);
    for (const n of hit) {
      const shape = outShapes.get(n)!;
      if (ggmlRowBytes(type, shape[shape.length - 1]!) === undefined) throw new QuantlabError("E_ARG", `recipe: override "${o.match}": ${n}'s rows of ${shape[shape.length - 1]} do not fit ${ggmlTypeName(type)} blocks`);
      typeOverrides.set(n, type);
    }
  }
  for (const g of recipe.tensors?.keepFloat ?? []) {
    const re = globToRegExp(g);
    const hit = [...outShapes.keys()].filter((n) => re.test(n));
    if (hit.length === 0) throw new QuantlabError("E_ARG", `recipe: tensors.keepFloat "${g}" matches no tensor`);
    for (const n of hit) {
      const w = model.weights.get(n) ?? model.weights.get(TensorNames.tokenEmbd)!; // an untied head is stored as the embedding is
      const type = w.kind === "dense" ? ({ f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16 } as Record<string, GgmlType>)[w.tensor.dtype] : undefined;
      if (type === undefined) throw new QuantlabError("E_ARG", `recipe: tensors.keepFloat "${g}": ${n} is not stored as a float (${w.kind === "ggml" ? ggmlTypeName(w.type) : w.kind}); give it an override type instead`);
      typeOverrides.set(n, type);
    }
  }
  // AWQ / rotation folded offline: the preset then quantizes a plain f32 model (importance matrix and
  // Hessians collected on it, i.e. on the inputs the stored weights see)
  let transformInfo: { alpha: Record<string, number>; calibTokens: number; noFold: Map<string, string> } | undefined;
  if (transforming) {
    const plan = new Map(ggmlMix(preset, [...outShapes].map(([name, shape]) => ({ name, shape })), { nLayers: model.config.nLayers, nHeads: model.config.nHeads, nKvHeads: model.config.nKvHeads }, { imatrix: !!recipe.imatrix, pure: t.pure }).map((p) => [p.name, p.type]));
    const typeOf = (n: string): GgmlType => typeOverrides.get(n) ?? plan.get(n)!;
    const r = transformForGgml(model, {
      ...(recipe.rotate ? { rotate: recipe.rotate } : {}),
      ...(opts.awq ? { awq: opts.awq, windows: ctx.calib!.windows() } : {}),
      ...(opts.smooth ? { smooth: opts.smooth, windows: ctx.calib!.windows() } : {}),
      typeOf, ...(ctx.backend ? { backend: ctx.backend } : {}), progress,
    });
    model = r.model;
    const noFold = new Map<string, string>();
    for (const sk of r.skipped) for (const n of sk.linears) noFold.set(n, `${sk.site}: ${sk.reason}`);
    transformInfo = { alpha: r.alpha, calibTokens: r.calibTokens, noFold };
  }
  let im: ImatrixInfo | undefined;
  let hessians: Map<string, Float64Array> | undefined;
  if (recipe.imatrix && "source" in recipe.imatrix) {
    const w = recipe.calibration?.windows;
    if (!ctx.calib?.tokens || w?.kind !== "chunks") throw new QuantlabError("E_ARG", 'recipe: an importance matrix from calibration needs a text with windows {"kind": "chunks", …}');
    const r = collectImatrix(model, ctx.calib.tokens, { ctx: w.ctx, ...(w.maxChunks !== null ? { maxChunks: w.maxChunks } : {}), bosId: ctx.calib.bosId, ...(ctx.backend ? { backend: ctx.backend } : {}), progress, hessians: opts.gptq, ...(recipe.imatrix.forward ? { forward: recipe.imatrix.forward } : {}), ...(recipe.imatrix.intBits !== undefined ? { intBits: recipe.imatrix.intBits } : {}) });
    im = { imatrix: r.imatrix, source: (recipe.calibration!.source as { text: { name: string } }).text.name, collected: true, chunks: r.chunks, tokens: r.tokens, ctx: r.ctx, seconds: (Date.now() - t0) / 1000 };
    hessians = r.hessians;
  } else if (recipe.imatrix && "file" in recipe.imatrix) {
    if (!ctx.imatrixFile) throw new QuantlabError("E_ARG", `recipe: imatrix file ${recipe.imatrix.file.name} was not supplied (quantize's imatrixFile option, or --imatrix <file>)`);
    im = { ...ctx.imatrixFile, collected: false, seconds: 0 };
  }
  if (opts.gptq && !hessians) throw new QuantlabError("E_ARG", "method gptq with a preset needs an importance matrix collected from a calibration text (--imatrix <text>): the input Hessians are collected with it");
  const r = quantizeModelToGgml(model, {
    type: preset, pure: t.pure, refine: t.refine, progress, encoder: ctx.encoder,
    ...(ctx.refuseNonFinite ? { refuseNonFinite: ctx.refuseNonFinite } : {}),
    ...(ctx.deferGgmlEncoding ? { deferEncoding: true } : {}),
    ...(im ? { imatrix: im.imatrix } : {}),
    ...(hessians ? { gptq: { hessians, percDamp: recipe.options.damp as number, ...(ctx.backend?.linalg ? { kernels: ctx.backend.linalg() } : {}) } } : {}),
    ...(typeOverrides.size ? { overrides: typeOverrides } : {}),
  });
  // the file's tensor names (Phi-3: attn_qkv / ffn_up hold several linears): a fused tensor shows its parts' entries
  const partsOf = (n: string) => [n, ...fusedFileTensors(model.config).filter((f) => f.gguf === n).flatMap((f) => f.parts.map((p) => p.name))];
  const tensors = transformInfo
    ? r.tensors.map((x) => {
      const names = partsOf(x.name);
      const alpha = names.map((n) => transformInfo!.alpha[n]).find((a) => a !== undefined);
      const why = names.map((n) => transformInfo!.noFold.get(n)).find((w) => w !== undefined);
      return { ...x, ...(alpha !== undefined ? { awqAlpha: alpha } : {}), ...(why !== undefined ? { noScaleFold: why } : {}) };
    })
    : r.tensors;
  return { model: r.model, ggml: { fileType: r.fileType, tensors, params: r.params, bytes: r.bytes, bitsPerWeight: r.bitsPerWeight }, ...(im ? { imatrix: im } : {}), calibTokens: Math.max(im?.tokens ?? 0, transformInfo?.calibTokens ?? 0) };
}
