/**
 * `quantlab quantize --method rtn --spec int8:channel:a8s --calib`: the static activation scales written into
 * the file are, per (layer, site), max |x| / 127 of that site's input over the calibration windows, with the
 * earlier sites already quantized by their own scales — recomputed here through Llama's input hook on the
 * loaded file — and they beat scales ½× or 2× off on KLD against the float model.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { Llama } from "../../../src/model/llama.js";
import type { Model } from "../../../src/model/weights.js";
import { kld, ModelLogits } from "../../../src/eval/kld.js";
import { quantlab } from "../helpers-cli.js";

const MODEL = dataPath("stories260K", "stories260K.bin");

test("a8s scales in the file = each site's absmax / 127 on the calibration windows, earlier sites quantized; they beat scales ½× or 2× off", async () => {
  const float = await loadModel(MODEL);
  const tok = float.tokenizer!;
  const dir = mkdtempSync(join(tmpdir(), "ql-a8s-"));
  try {
    // a calibration text of exactly seq − 1 tokens: every sampled window is BOS + the whole text, whatever the seed
    const text = readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 600);
    const ids = tok.encode(text, { bos: false });
    const calibPath = join(dir, "calib.txt");
    writeFileSync(calibPath, text);
    const out = join(dir, "q.safetensors");
    const r = quantlab("quantize", MODEL, "--method", "rtn", "--spec", "int8:channel:a8s", "--calib", calibPath, "--samples", "2", "--seq", String(ids.length + 1), "-o", out, "--json");
    assert.equal(r.status, 0, r.stderr);
    const q = await loadModel(out);
    const a = q.inputTransforms?.activations;
    assert.ok(a && a.mode === "static" && a.bits === 8 && a.scales, JSON.stringify(a));
    const scales = a.scales;
    assert.equal(Object.keys(scales).length, 4 * q.config.nLayers);

    // recompute: run the file's weights on the window with the activation quantization done here, recording
    // max |x| at each site before quantizing it with the file's scale (round to nearest, clamp to ±127)
    const amax: Record<string, number> = {};
    const { activations: _, ...otherTransforms } = q.inputTransforms!;
    const llama = new Llama({ ...q, inputTransforms: otherTransforms }, {
      contextLength: ids.length + 1,
      inputHook: (layer, site, x, n, width) => {
        const key = `${layer}.${site}`;
        let m = amax[key] ?? 0;
        for (let i = 0; i < n * width; i++) m = Math.max(m, Math.abs(x[i]!));
        amax[key] = m;
        const s = scales[key]!;
        for (let i = 0; i < n * width; i++) x[i] = Math.fround(Math.max(-127, Math.min(127, Math.round(x[i]! / s))) * s);
      },
    });
    llama.prefill([tok.bosId, ...ids], 0, () => {});
    for (const [key, s] of Object.entries(scales)) {
      // PTQ runs its own batched block pass; it agrees with Llama's to float rounding (measured ≤ 5e-5 relative)
      assert.ok(Math.abs(s / (amax[key]! / 127) - 1) < 2e-4, `${key}: scale ${s}, absmax/127 ${amax[key]! / 127}`);
    }

    // the calibrated scales against scales ½× (clipping) and 2× (coarse steps) off, on eval text
    const evalTokens = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 3000), { bos: false });
    const kldOf = async (m: Model) =>
      (await kld(new ModelLogits(new Llama(float, { contextLength: 128 })), new ModelLogits(new Llama(m, { contextLength: 128 })), evalTokens, { ctx: 128, maxTokens: 254, bosId: tok.bosId })).meanKld;
    const scaled = (k: number): Model => ({ ...q, inputTransforms: { activations: { bits: 8, mode: "static", scales: Object.fromEntries(Object.entries(scales).map(([key, s]) => [key, s * k])) } } });
    const calibrated = await kldOf(q);
    const weightsOnly = await kldOf({ ...q, inputTransforms: {} });
    // measured: weights only 4.4e-4, calibrated 7.4e-3, ½× 0.071, 2× 0.031
    assert.ok(calibrated > 2 * weightsOnly, `calibrated ${calibrated} vs weights only ${weightsOnly}`);
    for (const k of [0.5, 2]) {
      const off = await kldOf(scaled(k));
      assert.ok(off > 2 * calibrated, `scales ×${k}: KLD ${off} vs calibrated ${calibrated}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
