/**
 * Run-time input transforms (model/transforms.ts) are part of what a quantized model computes, and only
 * quantlab's own quantized safetensors carry them. Writers of other formats (GGUF, HF directories, plain
 * safetensors) call this first: an online rotation changes the function the weights compute (its
 * inverse is fused into ffn_down), so dropping it would write a silently wrong model — refused, naming
 * it; activation fake-quantization only changes run-time rounding, so the weights stay right without it —
 * written with a warning the caller must show (stderr and --json).
 */
import { QuantlabError } from "../core/errors.js";
import type { Model } from "../model/weights.js";

export function uncarriedTransforms(model: Model, format: string, name: string): string[] {
  const t = model.inputTransforms;
  if (!t) return [];
  if (t.ffnDownRotation) {
    throw new QuantlabError("E_UNSUPPORTED", `${name}: ${model.source.path} has an online FFN-down rotation (quantize --rotate) that ${format} cannot carry; without it the model computes something else. Keep quantlab's quantized safetensors, or quantize without --rotate`);
  }
  const warnings: string[] = [];
  if (t.activations) {
    warnings.push(`${format} cannot carry ${model.source.path}'s ${t.activations.mode} int${t.activations.bits} activation quantization (${t.activations.mode === "static" ? "a" + t.activations.bits + "s" : "a" + t.activations.bits}): written without it, so the file runs with float activations`);
  }
  return warnings;
}
