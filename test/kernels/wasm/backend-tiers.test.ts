// Both V8 wasm tiers run every kernel correctly: Liftoff only (the baseline tier that miscompiles
// i32x4.relaxed_dot_i8x16_i7x16_add_s on Node 20, shared/notes/kernels.md) and TurboFan only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("./tier-check.js", import.meta.url));

for (const flags of [["--liftoff-only"], ["--no-liftoff"]]) {
  test(`every kernel agrees with the oracle under ${flags.join(" ")}`, () => {
    const r = spawnSync(process.execPath, [...flags, script], { encoding: "utf8", timeout: 120000 });
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout.trim().split("\n").pop()!) as { variants: string[]; failures: string[] };
    assert.ok(res.variants.includes("simd"));
    assert.deepEqual(res.failures, []);
  });
}
