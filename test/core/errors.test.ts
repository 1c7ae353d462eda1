/** Typed errors (core/errors.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { QuantlabError, assert as invariant, fail } from "../../src/core/errors.js";

test("QuantlabError carries a code, its name and a cause; fail and assert throw it", () => {
  const cause = new Error("inner");
  const e = new QuantlabError("E_IO", "x.bin: no such file", { cause });
  assert.ok(e instanceof Error);
  assert.deepEqual([e.name, e.code, e.message, e.cause], ["QuantlabError", "E_IO", "x.bin: no such file", cause]);
  assert.throws(() => fail("E_SPEC", "bad spec"), (x: unknown) => x instanceof QuantlabError && x.code === "E_SPEC" && x.message === "bad spec");
  assert.throws(() => invariant(0, "broken invariant"), (x: unknown) => x instanceof QuantlabError && x.code === "E_INTERNAL");
  assert.doesNotThrow(() => invariant(1, "fine"));
});
