/** Bit packing: round trips for every width (fast-check), the documented layout against a bit-by-bit reference, 5-trits-per-byte packing. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { pack, packTernary5, packTrits5, packedBytes, unpack, unpackTernary5, unpackTrits5 } from "../../src/quant/pack.js";
import { QuantlabError } from "../../src/core/errors.js";

/** reference: set each stream bit t = i·bits + j to bit j of code i, at bit t%8 of byte t/8 */
function packRef(codes: number[], bits: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((codes.length * bits) / 8));
  codes.forEach((c, i) => {
    for (let j = 0; j < bits; j++) if ((c >> j) & 1) out[(i * bits + j) >> 3]! |= 1 << ((i * bits + j) & 7);
  });
  return out;
}

describe("pack / unpack", () => {
  test("unpack(pack(q)) = q and the bytes match the bit-by-bit reference, every width 0..16", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 16 }).chain((bits) => fc.tuple(fc.constant(bits), fc.array(fc.integer({ min: 0, max: 2 ** bits - 1 }), { maxLength: 300 }))),
        ([bits, codes]) => {
          const bytes = pack(Uint16Array.from(codes), bits);
          if (bytes.length !== packedBytes(codes.length, bits)) return false;
          if (bits > 0 && !bytes.every((b, i) => b === packRef(codes, bits)[i])) return false;
          const back = unpack(bytes, bits, codes.length);
          return back.length === codes.length && codes.every((c, i) => back[i] === c);
        },
      ),
      { seed: 6, numRuns: 2000 },
    );
  });

  test("layout examples: 4-bit low nibble first, 3-bit codes straddle bytes", () => {
    assert.deepEqual(Array.from(pack([0x1, 0xf, 0x3], 4)), [0xf1, 0x03]);
    // c0 = 5 (101), c1 = 3 (011), c2 = 6 (110): bits 0-2 = 101, 3-5 = 011, 6-8 = 110 → byte0 = 0b10_011_101, byte1 = 0b1
    assert.deepEqual(Array.from(pack([5, 3, 6], 3)), [0b10011101, 0b1]);
    assert.deepEqual(Array.from(pack([0x1ab], 9)), [0xab, 0x01]);
    assert.deepEqual(Array.from(unpack(Uint8Array.of(0xab, 0x01), 9, 1)), [0x1ab]);
  });

  test("Uint8Array codes and destinations; caller-allocated output", () => {
    const codes = Uint8Array.from({ length: 37 }, (_, i) => (i * 7) % 32);
    const dst = new Uint8Array(packedBytes(37, 5));
    assert.equal(pack(codes, 5, dst), dst);
    const back = unpack(dst, 5, 37, new Uint8Array(37));
    assert.ok(back instanceof Uint8Array);
    assert.deepEqual(Array.from(back), Array.from(codes));
  });

  test("errors: a code wider than the width, a short buffer, a bad width", () => {
    assert.throws(() => pack([8], 3), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE" && /code 0 is 8/.test(e.message));
    assert.throws(() => unpack(new Uint8Array(1), 3, 3), (e: unknown) => e instanceof QuantlabError && e.code === "E_FORMAT");
    assert.throws(() => pack([1], 17), (e: unknown) => e instanceof QuantlabError && e.code === "E_ARG");
  });
});

describe("5 trits per byte (1.6 bits/weight)", () => {
  test("every one of the 243 five-digit groups round-trips and bytes are ⌈v·256/243⌉", () => {
    for (let v = 0; v < 243; v++) {
      const d = [Math.floor(v / 81) % 3, Math.floor(v / 27) % 3, Math.floor(v / 9) % 3, Math.floor(v / 3) % 3, v % 3];
      const b = packTrits5(d);
      assert.equal(b.length, 1);
      assert.equal(b[0], Math.ceil((v * 256) / 243));
      assert.deepEqual(Array.from(unpackTrits5(b, 5)), d);
    }
  });

  test("round trips for any length (fast-check), ternary codes via packTernary5", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(0, 1, 3), { maxLength: 200 }), (codes) => {
        const b = packTernary5(codes);
        if (b.length !== Math.ceil(codes.length / 5)) return false;
        const back = unpackTernary5(b, codes.length);
        return codes.every((c, i) => back[i] === c);
      }),
      { seed: 7, numRuns: 1000 },
    );
    assert.throws(() => packTernary5([2]), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE");
    assert.throws(() => packTrits5([3]), (e: unknown) => e instanceof QuantlabError && e.code === "E_VALUE");
  });
});
