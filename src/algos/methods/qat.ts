/**
 * Method "qat": quantization-aware training of the selected linears (algos/qat-llama.ts: fake quantization
 * with the spec in the forward pass, straight-through gradients, Adam, cosine schedule) on the calibration
 * text's token stream; the result is the QuantizedTensors of the final latent weights. `float: true` is
 * the control run (plain fine-tuning, float weights written).
 */
import { QuantlabError } from "../../core/errors.js";
import { qatLlama } from "../qat-llama.js";
import { isSpecTarget } from "../recipe.js";
import { specReport } from "./rtn.js";
import type { MethodDef, SpecTensorReport } from "./types.js";
import { dequantizeWeight } from "../../kernels/dequantize.js";

export const qat: MethodDef = {
  doc: "quantization-aware training: fake-quantize the linears, train on the calibration text (STE, Adam)",
  targets: ["spec"],
  options: {
    steps: { type: "integer", default: 200, min: 0, doc: "optimizer steps" },
    lr: { type: "number", default: 2e-3, min: 1e-12, doc: "Adam learning rate at step 0 (cosine decay to lrMin × lr)" },
    lrMin: { type: "number", default: 0.1, min: 0, max: 1, doc: "final learning rate as a fraction of lr" },
    batch: { type: "integer", default: 8, min: 1, doc: "windows per step" },
    seq: { type: "integer", default: 64, min: 2, doc: "positions per window, BOS included" },
    loss: { type: "string", default: "ce", choices: ["ce", "kd"], doc: "ce (next-token cross-entropy) or kd (KL to the float model)" },
    train: { type: "string", default: "all", choices: ["all", "linears"], doc: "which float tensors learn: all (linears, norms, embedding) or only the quantized linears" },
    float: { type: "boolean", default: false, doc: "control run: fine-tune in float without fake quantization" },
  },
  windows: () => ["stream"],
  calibration: () => "required",
  async run(ctx) {
    const { model, recipe, names, progress } = ctx;
    if (!isSpecTarget(recipe.target)) throw new QuantlabError("E_INTERNAL", "qat on a preset recipe");
    const o = recipe.options;
    const tokens = ctx.calib?.tokens;
    if (!tokens) throw new QuantlabError("E_ARG", "method qat trains on a calibration text: calibration.source must be a text, not the model");
    const r = qatLlama(model, tokens, {
      ...(o.float ? {} : { spec: recipe.target.spec }), names, steps: o.steps as number, lr: o.lr as number, lrMin: o.lrMin as number,
      batch: o.batch as number, seq: o.seq as number, seed: recipe.seed, loss: o.loss as "ce" | "kd", train: o.train as "all" | "linears",
      bosId: ctx.calib!.bosId, progress,
    });
    const tensors: SpecTensorReport[] = [];
    if (!o.float) {
      for (const name of r.names) {
        const w = r.model.weights.get(name)!;
        if (w.kind !== "quant") continue;
        // error against the trained latent weights is not kept by qatLlama: report against the original float weights
        tensors.push(specReport(name, w.q.shape, w.q.spec, dequantizeWeight(model.weights.get(name)!, name).data, w.q));
      }
    }
    return { model: r.model, tensors, qat: { losses: r.losses, trainTokens: tokens.length } };
  },
};
