/**
 * The lab's form → a recipe (docs/recipe.md), built the way `quantlab quantize`'s flags build one
 * (src/cli/recipe-flags.ts) so the same choices give the same recipe — and so the same file bytes:
 * `--type Q4_K_M` ≡ preset Q4_K_M with method rtn; `--spec s` ≡ spec s; a calibration text becomes
 * `--calib` (spec targets; 128 random windows of 256, the CLI's --samples/--seq defaults) or `--imatrix`
 * (presets; llama-imatrix chunks of min(512, context)). A text the method does not read is left out
 * (the CLI would refuse it; the page says so instead).
 */
import { METHODS } from "../../src/algos/methods/index.js";
import { normalizeRecipe } from "../../src/algos/quantize.js";
import { METHOD_NAMES, sha256Hex, type MethodName } from "../../src/algos/recipe.js";
import { GGML_PRESET_NAMES } from "../../src/ggml/mix.js";

export interface FormChoice {
  target: { spec: string } | { preset: string };
  method: string;
  calibText?: string;
  calibName?: string;
  /** the result's KV cache (model/kv-quant.ts), as `--kv spec [--kv-keys channel] [--kv-window n]`: measured and generated with */
  kv?: { spec: string; keys?: "token" | "channel"; window?: number };
}

/** What the form offers: every method with the targets it takes, every llama-quantize preset. */
export function formChoices(): { methods: { name: string; targets: string[]; doc: string }[]; presets: string[] } {
  return {
    methods: METHOD_NAMES.map((m) => ({ name: m, targets: [...METHODS[m].targets], doc: METHODS[m].doc })),
    presets: [...GGML_PRESET_NAMES],
  };
}

export async function recipeOfChoice(c: FormChoice, seqLen: number): Promise<{ recipe: Record<string, unknown>; calibText?: string; note?: string }> {
  if (!(METHOD_NAMES as readonly string[]).includes(c.method)) throw new Error(`unknown method ${c.method}`);
  const method = c.method as MethodName;
  const recipe: Record<string, unknown> = { method, options: {}, seed: 0 };
  const preset = "preset" in c.target;
  recipe.target = "preset" in c.target ? { preset: c.target.preset, pure: false, refine: false } : { spec: c.target.spec };
  const text = c.calibText?.length ? c.calibText : undefined;
  if (text === undefined) return { recipe };
  const ref = { name: c.calibName ?? "calibration.txt", sha256: await sha256Hex(new TextEncoder().encode(text)) };
  const calibrated = preset
    ? { ...recipe, imatrix: { source: "calibration" }, calibration: { source: { text: ref }, windows: { kind: "chunks", ctx: Math.min(512, seqLen), maxChunks: null } } }
    : { ...recipe, calibration: { source: { text: ref }, windows: method === "qat" ? { kind: "stream" } : { kind: "random", samples: 128, seq: 256 } } };
  if (!preset && METHODS[method].calibration(normalizeRecipe(recipe)) === "unused") return { recipe, note: `method ${method} reads no calibration text: the text was not used` };
  return { recipe: calibrated, calibText: text };
}
