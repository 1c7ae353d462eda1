/** The 0-bit format: every element is its group's mean. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { getFormat } from "../../src/formats/registry.js";
import { zeroBitValue } from "../../src/formats/zero.js";

describe("0-bit", () => {
  test("every element decodes to 1; the group value is its mean", () => {
    const f = getFormat("zero");
    assert.equal(f.bits, 0);
    assert.equal(f.encode(123), 0);
    assert.equal(f.decode(0), 1);
    assert.equal(zeroBitValue(Float32Array.of(1, 2, 3, 6)), 3);
  });
});
