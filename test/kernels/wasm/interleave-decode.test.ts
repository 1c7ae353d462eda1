// The 4-row interleaved Q8_0/Q4_0 mat-vecs (K_Q8_0X4, K_Q4_0X4) against a scalar twin of their float order,
// bit for bit: per block b, each row's exact integer sum isum = Σ code·xq, then one f32 step
// acc_k = fr(acc_k + fr(f32(isum) · fr(d_k · dx_b))). Rows of ≥ 4096 columns run two row groups at a time
// in the Q8_0 decode (dot8_q8_0x); the group counts here are odd and even (1, 2, 3, 5, 25 groups), so pairs and
// a single trailing group both run; with 2 and 3 threads the pool claims ceil(groups / (4·threads)) groups at
// a time, so only the 25-group matrix (chunks of 4 and 3 groups) pairs there.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlRowBytes, ggmlTypeName } from "../../../src/ggml/types.js";
import { quantizeRow } from "../../../src/ggml/codecs.js";
import { f16BitsToF32 } from "../../../src/core/f16.js";
import { quantizeActivationsQ8Ref } from "../../../src/kernels/ref/q8act.js";
import type { Weight } from "../../../src/core/weight.js";
import { VARIANTS, disposeAll, randomF32, readyBackend } from "../helpers.js";

after(disposeAll);

/** The scalar twin of dot4_q8_0x / dot4_q4_0x (and dot8_q8_0x) on the file's (not interleaved) blocks. */
function twin(type: GgmlType, data: Uint8Array, rows: number, cols: number, x: Float32Array): Float32Array {
  const a = quantizeActivationsQ8Ref(x, cols);
  const nb = cols / 32, bs = type === GgmlType.Q8_0 ? 34 : 18;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let b = 0; b < nb; b++) {
      const o = (r * nb + b) * bs;
      let isum = 0;
      for (let j = 0; j < 32; j++) {
        let code: number;
        if (type === GgmlType.Q8_0) code = dv.getInt8(o + 2 + j);
        else code = (j < 16 ? data[o + 2 + j]! & 15 : data[o + 2 + j - 16]! >> 4) - 8;
        isum += code * a.q[b * 32 + j]!;
      }
      const d = f16BitsToF32(dv.getUint16(o, true));
      acc = Math.fround(acc + Math.fround(isum * Math.fround(d * a.d[b]!)));
    }
    out[r] = acc;
  }
  return out;
}

for (const variant of VARIANTS) {
  describe(`WASM ${variant}: interleaved Q8_0/Q4_0 decode = the scalar twin bit for bit`, () => {
    for (const threads of [1, 2, 3]) {
      test(`threads=${threads}: 2048…8192 columns, 1–25 row groups`, async () => {
        const be = await readyBackend(variant, threads);
        let checked = 0;
        for (const type of [GgmlType.Q8_0, GgmlType.Q4_0]) {
          // 4096 + 96: an odd block count; 2048: below the pairing threshold (one group per pass)
          for (const cols of [2048, 4096, 4192, 8192]) {
            for (const rows of [4, 8, 12, 20, 100]) {
              const src = randomF32(rows * cols, rows * 7 + cols + type, 2);
              const data = new Uint8Array(rows * ggmlRowBytes(type, cols)!);
              quantizeRow(type, src, data, rows * cols);
              const original = data.slice();
              const w: Weight = { kind: "ggml", type, shape: [rows, cols], data };
              const p = be.prepare(w, `${ggmlTypeName(type)} ${rows}x${cols}`);
              const kernel = be.listing().find((l) => l.name === `${ggmlTypeName(type)} ${rows}x${cols}`)!.kernel;
              // SIMD128 repacks Q4_0 (another kernel and order): only the interleaved layouts are pinned here
              if (!/interleaved/.test(kernel)) {
                assert.ok(type === GgmlType.Q4_0 && variant === "simd", `${ggmlTypeName(type)} ${variant}: ${kernel}`);
                be.release(p);
                continue;
              }
              for (const seed of [1, 2]) {
                const x = randomF32(cols, seed * 101 + cols, seed === 2 ? 40 : 1);
                const got = new Float32Array(rows);
                be.matvec(p, x, got);
                const want = twin(type, original, rows, cols, x);
                for (let r = 0; r < rows; r++) {
                  assert.ok(Object.is(got[r], want[r]), `${ggmlTypeName(type)} ${rows}×${cols} t${threads} seed ${seed} row ${r}: ${got[r]} vs twin ${want[r]}`);
                }
                checked++;
              }
              be.release(p);
            }
          }
        }
        assert.ok(checked >= 40, `checked ${checked} mat-vecs`);
      });
    }
  });
}
