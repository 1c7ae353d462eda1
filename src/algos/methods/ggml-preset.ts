/**
 * Preset targets (llama-quantize's Q4_K_M, Q8_0, …) for the methods that take them (rtn, gptq): the
 * importance matrix (collected from the calibration text as llama-imatrix does, or read from a file by the
 * caller), per-tensor type overrides, and the encoding itself (algos/ggml-quant.ts).
 */
import { QuantlabError } from "../../core/errors.js";
import { GgmlType, ggmlRowBytes, ggmlTypeByName, ggmlTypeName } from "../../ggml/types.js";
import { parseGgmlPreset } from "../../ggml/mix.js";
import { weightShape } from "../../core/weight.js";
import { collectImatrix } from "../imatrix.js";
import { quantizeModelToGgml } from "../ggml-quant.js";
import { globToRegExp } from "../select.js";
import type { ImatrixInfo, MethodContext, MethodOutput } from "./types.js";

export async function runGgmlPreset(ctx: MethodContext, opts: { gptq: boolean }): Promise<MethodOutput> {
  const { model, recipe, progress } = ctx;
  const t = recipe.target;
  if (!("preset" in t)) throw new QuantlabError("E_INTERNAL", "runGgmlPreset on a spec recipe");
  const preset = parseGgmlPreset(t.preset);
  const t0 = Date.now();
  let im: ImatrixInfo | undefined;
  let hessians: Map<string, Float64Array> | undefined;
  if (recipe.imatrix && "source" in recipe.imatrix) {
    const w = recipe.calibration?.windows;
    if (!ctx.calib?.tokens || w?.kind !== "chunks") throw new QuantlabError("E_ARG", 'recipe: an importance matrix from calibration needs a text with windows {"kind": "chunks", …}');
    const r = collectImatrix(model, ctx.calib.tokens, { ctx: w.ctx, ...(w.maxChunks !== null ? { maxChunks: w.maxChunks } : {}), bosId: ctx.calib.bosId, ...(ctx.backend ? { backend: ctx.backend } : {}), progress, hessians: opts.gptq });
    im = { imatrix: r.imatrix, source: (recipe.calibration!.source as { text: { name: string } }).text.name, collected: true, chunks: r.chunks, tokens: r.tokens, ctx: r.ctx, seconds: (Date.now() - t0) / 1000 };
    hessians = r.hessians;
  } else if (recipe.imatrix && "file" in recipe.imatrix) {
    if (!ctx.imatrixFile) throw new QuantlabError("E_ARG", `recipe: imatrix file ${recipe.imatrix.file.name} was not supplied (quantize's imatrixFile option, or --imatrix <file>)`);
    im = { ...ctx.imatrixFile, collected: false, seconds: 0 };
  }
  if (opts.gptq && (recipe.options.actOrder || recipe.options.blockSize !== 128)) {
    throw new QuantlabError("E_ARG", "recipe: options.actOrder and options.blockSize apply to spec targets; GPTQ on llama.cpp's blocks uses static groups in column order");
  }
  if (opts.gptq && !hessians) throw new QuantlabError("E_ARG", "method gptq with a preset needs an importance matrix collected from a calibration text (--imatrix <text>): the input Hessians are collected with it");
  // per-tensor types: overrides (llama-quantize --tensor-type) and tensors kept in float
  const typeOverrides = new Map<string, GgmlType>();
  for (const o of recipe.overrides ?? []) {
    if (o.type === undefined) throw new QuantlabError("E_ARG", `recipe: override "${o.match}" gives a spec; preset targets take ggml types ("type")`);
    const type = ggmlTypeByName(o.type);
    if (type === undefined) throw new QuantlabError("E_ARG", `recipe: override "${o.match}": unknown ggml type "${o.type}"`);
    const re = globToRegExp(o.match);
    const hit = [...model.weights.keys()].filter((n) => re.test(n));
    if (hit.length === 0) throw new QuantlabError("E_ARG", `recipe: override "${o.match}" matches no tensor`);
    for (const n of hit) {
      const shape = weightShape(model.weights.get(n)!);
      if (ggmlRowBytes(type, shape[shape.length - 1]!) === undefined) throw new QuantlabError("E_ARG", `recipe: override "${o.match}": ${n}'s rows of ${shape[shape.length - 1]} do not fit ${ggmlTypeName(type)} blocks`);
      typeOverrides.set(n, type);
    }
  }
  for (const g of recipe.tensors?.keepFloat ?? []) {
    const re = globToRegExp(g);
    const hit = [...model.weights.keys()].filter((n) => re.test(n));
    if (hit.length === 0) throw new QuantlabError("E_ARG", `recipe: tensors.keepFloat "${g}" matches no tensor`);
    for (const n of hit) {
      const w = model.weights.get(n)!;
      const type = w.kind === "dense" ? ({ f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16 } as Record<string, GgmlType>)[w.tensor.dtype] : undefined;
      if (type === undefined) throw new QuantlabError("E_ARG", `recipe: tensors.keepFloat "${g}": ${n} is not stored as a float (${w.kind === "ggml" ? ggmlTypeName(w.type) : w.kind}); give it an override type instead`);
      typeOverrides.set(n, type);
    }
  }
  const r = quantizeModelToGgml(model, {
    type: preset, pure: t.pure, refine: t.refine, progress, encoder: ctx.encoder,
    ...(im ? { imatrix: im.imatrix } : {}),
    ...(hessians ? { gptq: { hessians, percDamp: recipe.options.damp as number, ...(ctx.backend?.linalg ? { kernels: ctx.backend.linalg() } : {}) } } : {}),
    ...(typeOverrides.size ? { overrides: typeOverrides } : {}),
  });
  return { model: r.model, ggml: { fileType: r.fileType, tensors: r.tensors, params: r.params, bytes: r.bytes, bitsPerWeight: r.bitsPerWeight }, ...(im ? { imatrix: im } : {}), calibTokens: im?.tokens ?? 0 };
}
