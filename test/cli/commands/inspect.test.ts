/** `quantlab inspect <model> --calib <text> --json`: weight stats for every tensor, activation stats per linear input. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { dataPath } from "../../../src/io/node/data.js";
import { quantlab } from "../helpers-cli.js";

test("inspect --calib --json reports activation statistics at every block-linear input", () => {
  const r = quantlab("inspect", dataPath("stories260K", "stories260K.bin"), "--calib", dataPath("tinystories", "calib.txt"), "--calib-tokens", "300", "--json");
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { tensors: { name: string }[]; activations: { site: string; nTokens: number; channels: number; absMax: number; std: number; kurtosis: number }[] };
  assert.ok(j.tensors.some((t) => t.name === "blk.0.ffn_down.weight"));
  assert.equal(j.activations.length, 5 * 4); // 5 layers × {attn_in, attn_out_in, ffn_in, ffn_down_in}
  const down = j.activations.find((a) => a.site === "0.ffn_down_in")!;
  assert.equal(down.channels, 172);
  assert.equal(j.activations.find((a) => a.site === "0.attn_in")!.channels, 64);
  for (const a of j.activations) {
    assert.ok(a.nTokens >= 300, a.site);
    assert.ok(a.absMax > 0 && a.std > 0 && a.absMax >= a.std && Number.isFinite(a.kurtosis), a.site);
  }
});
