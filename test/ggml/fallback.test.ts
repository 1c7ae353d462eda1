import { test } from "node:test";
import assert from "node:assert/strict";
import { ggmlRowFit } from "../../src/ggml/fallback.js";
import { GgmlType as T, ggmlTypeName } from "../../src/ggml/types.js";

test("types fit rows that are whole blocks", () => {
  for (const t of [T.Q4_K, T.Q6_K, T.TQ1_0, T.IQ4_XS]) assert.deepEqual(ggmlRowFit(t, 768), { requested: t, fits: true, use: t, llamaRefuses: false });
  for (const t of [T.Q4_0, T.Q8_0, T.IQ4_NL, T.F16, T.F32]) assert.equal(ggmlRowFit(t, 64).use, t);
});

test("stories260K as llama-quantize handled it (shared/data/README.md): 64-wide rows and the 172-wide ffn_down", () => {
  // [requested, use for 64-wide, use for 172-wide]
  const table: [T, T, T][] = [
    [T.Q2_K, T.IQ4_NL, T.F16],
    [T.Q3_K, T.IQ4_NL, T.F16],
    [T.Q4_K, T.Q5_0, T.F16],
    [T.Q5_K, T.Q5_1, T.F16],
    [T.Q6_K, T.Q8_0, T.F16],
    [T.TQ2_0, T.Q4_0, T.F16],
    [T.TQ1_0, T.Q4_0, T.F16],
    [T.IQ4_XS, T.IQ4_NL, T.F16],
  ];
  for (const [req, w64, w172] of table) {
    const a = ggmlRowFit(req, 64);
    assert.equal(a.use, w64, `${ggmlTypeName(req)} @64 → ${ggmlTypeName(a.use)}`);
    assert.equal(a.fits, false);
    assert.equal(a.llamaRefuses, false);
    assert.match(a.reason!, /row width 64 is not a multiple of .* block size 256: using .* \(llama\.cpp's fall-back\)/);
    assert.equal(ggmlRowFit(req, 172).use, w172, `${ggmlTypeName(req)} @172`);
  }
});

test("32-block types on 172-wide rows: llama.cpp refuses, quantlab uses F16 and says so", () => {
  for (const t of [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL]) {
    const r = ggmlRowFit(t, 172);
    assert.equal(r.use, T.F16);
    assert.equal(r.llamaRefuses, true);
    assert.match(r.reason!, /row width 172 is not a multiple of .*block size 32: llama\.cpp refuses it; using F16/);
  }
});

test("bad widths are refused", () => {
  assert.throws(() => ggmlRowFit(T.Q4_0, 0), /row width 0 must be a positive integer/);
});
