/** Spec grammar of integer-only matmul (intmm, acc=<bits>[s]): round trips and one-line errors. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { QuantlabError } from "../../src/core/errors.js";
import { parseSpec, printSpec } from "../../src/quant/spec.js";

describe("intmm specs", () => {
  test("parse / print", () => {
    for (const s of ["int8:channel:a8:intmm", "int8:channel:a8s:intmm", "int4:channel:a8:intmm", "int8:tensor:a6:intmm", "int8:channel:a8:intmm:acc=16", "int8:channel:a8:intmm:acc=16s", "int8:channel:symfull:a8:intmm"]) {
      assert.equal(printSpec(parseSpec(s)), s);
    }
    assert.deepEqual(parseSpec("int8:intmm:a8").integerMatmul, { accBits: 32, overflow: "wrap" });
    assert.deepEqual(parseSpec("int8:a8:intmm:acc=20s").integerMatmul, { accBits: 20, overflow: "saturate" });
    assert.equal(parseSpec("int8:channel:a8").integerMatmul, undefined);
  });
  test("impossible combinations name the problem", () => {
    const bad: [string, RegExp][] = [
      ["int8:channel:intmm", /needs integer activations/],
      ["int8:channel:afp8:intmm", /needs integer activations/],
      ["int8:channel:a16:intmm", /needs integer activations of at most 8 bits/],
      ["int12:channel:a8:intmm", /multiplied as int8/],
      ["nf4:channel:a8:intmm", /integer weight grid/],
      ["int8:channel:asym:a8:intmm", /symmetric grid/],
      ["int8:g32:a8:intmm", /per output channel/],
      ["int8:channel:dq:a8:intmm", /double-quantized/],
      ["int8:channel:a8:acc=16", /add intmm/],
      ["int8:channel:a8:intmm:acc=40", /accumulator bits must be in 8..32/],
      ["int8:channel:a8:intmm:sr", /rounded to nearest/],
    ];
    for (const [s, re] of bad) assert.throws(() => parseSpec(s), (e: unknown) => e instanceof QuantlabError && e.code === "E_SPEC" && re.test(e.message), s);
  });
});
