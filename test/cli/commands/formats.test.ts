/** `quantlab formats` end to end: JSON shape and the facts it prints, text table, bad options. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { listFormats } from "../../../src/formats/registry.js";

// dist/test/cli/commands/formats.test.js → bin/quantlab.js
const BIN = fileURLToPath(new URL("../../../../bin/quantlab.js", import.meta.url));

function run(...args: string[]) {
  return spawnSync(process.execPath, [BIN, "formats", ...args], { encoding: "utf8" });
}

test("formats --json lists every registry row with family, bits, value count and range", () => {
  const r = run("--json");
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { formats: Array<{ name: string; bits: number; valueCount: number; min: number; max: number; family: string }>; constructors: unknown[] };
  assert.equal(out.formats.length, listFormats().length);
  const byName = new Map(out.formats.map((f) => [f.name, f]));
  assert.deepEqual(byName.get("fp8_e4m3"), { ...byName.get("fp8_e4m3"), bits: 8, valueCount: 253, min: -448, max: 448, family: "float" });
  assert.deepEqual(byName.get("int3_sym"), { ...byName.get("int3_sym"), bits: 3, valueCount: 7, min: -3, max: 3 });
  assert.equal(byName.get("nf4")!.valueCount, 16);
  assert.ok(out.constructors.length >= 5);
});

test("formats text table, --values, and a bad --family as a one-line error with exit code 2", () => {
  const t = run("--family", "float", "--values", "fp4_e2m1");
  assert.equal(t.status, 0);
  assert.match(t.stdout, /fp8_e5m2\s+float\s+8\s+247/);
  assert.match(t.stdout, /-6 -4 -3 -2 -1\.5 -1 -0\.5 0 0\.5 1 1\.5 2 3 4 6/);
  const bad = run("--family", "nope");
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr.trim().split("\n").length, 1);
  assert.match(bad.stderr, /--family: unknown family "nope"/);
});
