/** `quantlab inspect`: `--calib --json` activation statistics per linear input; `--only <globs>` restricts the weight table. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { dataPath } from "../../../src/io/node/data.js";
import { expectOneLineError, quantlab } from "../helpers-cli.js";

const model = dataPath("stories260K", "stories260K.bin");

test("inspect --only 'blk.0.*,output_norm.weight' --json: those tensors in model order, rows equal to the full table's", () => {
  const full = quantlab("inspect", model, "--json");
  assert.equal(full.status, 0, full.stderr);
  const only = quantlab("inspect", model, "--only", "blk.0.*,output_norm.weight", "--json");
  assert.equal(only.status, 0, only.stderr);
  type Row = { name: string; shape: number[]; std: number };
  const all = (JSON.parse(full.stdout) as { tensors: Row[] }).tensors;
  const some = (JSON.parse(only.stdout) as { tensors: Row[] }).tensors;
  const want = all.filter((t) => t.name.startsWith("blk.0.") || t.name === "output_norm.weight");
  assert.equal(want.length, 10);
  assert.deepEqual(some, want);
});

test("inspect --only: a glob that matches nothing is a one-line error naming it", () => {
  expectOneLineError(quantlab("inspect", model, "--only", "blk.0.*,blk.7.*"), /option --only: "blk\.7\.\*" matches no tensor \(names look like token_embd\.weight/, 2); // E_ARG: usage error
});

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
