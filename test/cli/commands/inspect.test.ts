/** `quantlab inspect --only <globs>`: the weight table restricted to the matching tensors, with the same numbers. */
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
