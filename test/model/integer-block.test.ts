/**
 * Integer-only end to end (model/integer-block.ts, spec part `iops`): the attention's score codes and value
 * sums equal a BigInt computation of the documented steps; norms, SwiGLU and attention stay within their
 * quantization error of the float ops; on stories260K the whole block is integer from code to code, so prefill
 * and decode, 1 and 2 threads give the same bits (the f32 classifier's sum order alone differs by backend).
 */
import { describe, test } from "node:test";
import { shiftAway } from "../helpers/bigint.js";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Rng } from "../../src/core/rng.js";
import { toDyadic } from "../../src/formats/int.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { createNodeWasmBackend } from "../../src/kernels/wasm/pool-node.js";
import { Llama } from "../../src/model/llama.js";
import { F32KvCache, attendRef } from "../../src/model/kv-cache.js";
import { IntegerAttentionCache, IntegerOpsBackend, PROB_BITS, SCORE_FRAC } from "../../src/model/integer-block.js";
import { MULT_BITS, roundShift } from "../../src/model/integer-linear.js";
import { iExpConstants, iSilu, iSoftmax } from "../../src/model/integer-ops.js";
import { quantize } from "../../src/algos/quantize.js";
import { kld, ModelLogits } from "../../src/eval/kld.js";
import { parseSpec, printSpec } from "../../src/quant/spec.js";
import { addRmsnormRef, swigluRef } from "../../src/kernels/ref/rows.js";
import type { Backend } from "../../src/kernels/types.js";
import type { Model } from "../../src/model/weights.js";

const rne = (v: number) => { let r = Math.round(v); if (r - v === 0.5 && r % 2 !== 0) r--; return r; };
/** the int8 codes and scale of a row: S = fround(max|x| / 127) */
function int8Of(x: ArrayLike<number>): { q: number[]; s: number } {
  let amax = 0;
  for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(x[i]!));
  const s = Math.fround(amax / 127);
  return { q: Array.from(x, (v) => Math.max(-127, Math.min(127, rne(v / s)))), s };
}
/** a·b of two dyadic numbers renormalized to MULT_BITS significant bits, on BigInt */
function mulDyadicBig(a: { m: number; k: number }, b: { m: number; k: number }): { m: bigint; k: number } {
  let m = BigInt(a.m) * BigInt(b.m), k = a.k + b.k;
  const excess = Math.max(0, m.toString(2).length - MULT_BITS);
  if (excess > 0) { m = shiftAway(m, excess); k -= excess; }
  return { m, k };
}

describe("integer attention (IntegerAttentionCache.attend)", () => {
  test("every output equals the documented integer steps computed on BigInt (one layer, GQA, 9 positions)", () => {
    const L = 1, cap = 9, kvH = 2, nH = 4, hd = 8;
    const rng = new Rng(5);
    const c = new IntegerAttentionCache(L, cap, kvH, hd);
    const ks: Float32Array[] = [], vs: Float32Array[] = [];
    for (let p = 0; p < cap; p++) {
      const k = rng.fillNormal(new Float32Array(kvH * hd), 2), v = rng.fillNormal(new Float32Array(kvH * hd), 1);
      ks.push(k); vs.push(v);
      c.store(0, p, k, v);
    }
    const q = rng.fillNormal(new Float32Array(cap * nH * hd), 1.5);
    const out = new Float32Array(q.length);
    c.attend(0, q, 0, cap, nH, out);
    const invSqrt = toDyadic(2 ** SCORE_FRAC / Math.fround(Math.sqrt(hd)), MULT_BITS);
    for (let i = 0; i < cap; i++) {
      for (let h = 0; h < nH; h++) {
        const g = Math.floor(h / (nH / kvH));
        const qi = int8Of(q.subarray((i * nH + h) * hd, (i * nH + h + 1) * hd));
        const dq = mulDyadicBig(toDyadic(qi.s, MULT_BITS), invSqrt);
        const codes: number[] = [];
        const kc: { q: number[]; s: number }[] = [], vc: { q: number[]; s: number }[] = [];
        for (let t = 0; t <= i; t++) {
          kc.push(int8Of(ks[t]!.subarray(g * hd, (g + 1) * hd)));
          vc.push(int8Of(vs[t]!.subarray(g * hd, (g + 1) * hd)));
          let dot = 0n;
          for (let e = 0; e < hd; e++) dot += BigInt(qi.q[e]!) * BigInt(kc[t]!.q[e]!);
          const M = mulDyadicBig({ m: Number(dq.m), k: dq.k }, toDyadic(kc[t]!.s, MULT_BITS));
          codes.push(Number(shiftAway(dot * M.m, M.k)));
        }
        const p = new Float64Array(i + 1);
        iSoftmax(codes, i + 1, 2 ** -SCORE_FRAC, PROB_BITS, p); // itself checked against BigInt in integer-ops.test.ts
        const svMax = Math.max(...vc.map((x) => x.s));
        const acc = new Array<bigint>(hd).fill(0n);
        for (let t = 0; t <= i; t++) {
          const r = toDyadic(vc[t]!.s / svMax, MULT_BITS);
          const pt = shiftAway(BigInt(p[t]!) * BigInt(r.m), r.k);
          for (let e = 0; e < hd; e++) acc[e]! += pt * BigInt(vc[t]!.q[e]!);
        }
        for (let e = 0; e < hd; e++) {
          const want = Math.fround(Number(acc[e]!) * svMax * 2 ** -PROB_BITS);
          assert.equal(out[(i * nH + h) * hd + e], want, `position ${i} head ${h} element ${e}`);
        }
      }
    }
  });

  test("within the quantization error of float attention; the per-head path is refused", () => {
    const L = 1, cap = 16, kvH = 2, nH = 4, hd = 16;
    const rng = new Rng(8);
    const c = new IntegerAttentionCache(L, cap, kvH, hd), f = new F32KvCache(L, cap, kvH, hd);
    for (let p = 0; p < cap; p++) {
      const k = rng.fillNormal(new Float32Array(kvH * hd), 1), v = rng.fillNormal(new Float32Array(kvH * hd), 1);
      c.store(0, p, k, v); f.store(0, p, k, v);
    }
    const q = rng.fillNormal(new Float32Array(cap * nH * hd), 1);
    const a = new Float32Array(q.length), b = new Float32Array(q.length);
    c.attend(0, q, 0, cap, nH, a);
    attendRef(f, 0, q, 0, cap, nH, b, new Float32Array(cap));
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst < 0.05 && worst > 0, `max |Δ| vs float attention ${worst}`);
    assert.throws(() => c.scores(), /integer attention \(iops\) runs whole \(attend\)/);
  });
});

describe("integer RMSNorm and SwiGLU (IntegerOpsBackend)", () => {
  test("close to the float ops; the SwiGLU of Q.16 inputs equals its BigInt steps", () => {
    const be = new IntegerOpsBackend(new RefBackend());
    const rng = new Rng(2);
    const dim = 64, n = 3;
    const x = rng.fillNormal(new Float32Array(n * dim), 3), y = rng.fillNormal(new Float32Array(n * dim), 1);
    const w = rng.fillUniform(new Float32Array(dim), 0.5, 1.5);
    const x2 = x.slice(), y2 = y.slice();
    const out = new Float32Array(n * dim), ref = new Float32Array(n * dim);
    be.addRmsnorm(x, y, w, out, n, dim, 1e-5);
    addRmsnormRef(x2, y2, w, ref, n, dim, 1e-5);
    assert.deepEqual(x, x2, "the residual add is the float add");
    let worst = 0;
    for (let i = 0; i < out.length; i++) worst = Math.max(worst, Math.abs(out[i]! - ref[i]!));
    assert.ok(worst < 2e-3, `RMSNorm max |Δ| ${worst}`);
    // SwiGLU on Q.16 values (what integer linears output)
    const g = Float32Array.from({ length: 200 }, () => Math.round(rng.normal() * 4 * 65536) / 65536);
    const u = Float32Array.from({ length: 200 }, () => Math.round(rng.normal() * 2 * 65536) / 65536);
    const gf = g.slice();
    swigluRef(gf, u.slice(), 200);
    const gi = g.slice();
    be.swiglu(gi, u, 200);
    let ws = 0;
    for (let i = 0; i < 200; i++) ws = Math.max(ws, Math.abs(gi[i]! - gf[i]!));
    assert.ok(ws < 0.02, `SwiGLU max |Δ| ${ws}`);
    // each output is the documented integer steps: silu code (iSilu, checked against BigInt in integer-ops.test.ts)
    // rounded back to Q.16, times u's Q.16 code, × 2^−32
    const k = iExpConstants(2 ** -16);
    for (let i = 0; i < 200; i++) {
      const gq = g[i]! * 65536, uq = u[i]! * 65536;
      const sq = roundShift(iSilu(gq, k, 14), 14);
      assert.equal(gi[i], Math.fround(sq * uq * 2 ** -32), `element ${i}`);
    }
  });
});

describe("iops on stories260K: integer from code to code", async () => {
  const base = await loadModel(dataPath("stories260K", "stories260K.bin"));
  const tok = base.tokenizer!;
  const r = await quantize(base, { target: { spec: "int8:channel:a8:intmm:iops" }, method: "rtn" });
  const m = r.model;
  const ids = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 400), { bos: true }).slice(0, 48);
  const V = base.config.vocabSize;
  /** the last block's integer outputs (attention and SwiGLU, the inputs of wo and down) of every position, and the logits */
  const capture = (backend: Backend, mode: "decode" | "prefill") => {
    const last = base.config.nLayers - 1;
    const acts: number[][] = [];
    const logits: Float32Array[] = [];
    const l = new Llama(m, { backend, contextLength: 64, inputHook: (layer, site, x) => { if (layer === last && (site === "attn_out_in" || site === "ffn_down_in")) acts.push(Array.from(x)); } });
    if (mode === "decode") ids.forEach((t, p) => logits.push(Float32Array.from(l.forward(t, p))));
    else l.prefill(ids, 0, (lg, _r, n) => { for (let i = 0; i < n; i++) logits.push(lg.slice(i * V, (i + 1) * V)); });
    // per position, whatever the chunking: attention then SwiGLU rows
    const qDim = base.config.nHeads * base.config.headDim, H = base.config.hiddenDim;
    const att: number[] = [], ffn: number[] = [];
    for (let i = 0; i < acts.length; i += 2) { att.push(...acts[i]!); ffn.push(...acts[i + 1]!); }
    assert.equal(att.length, ids.length * qDim);
    assert.equal(ffn.length, ids.length * H);
    return { att, ffn, logits };
  };

  test("spec part iops: printed and parsed; needs intmm", () => {
    assert.equal(printSpec(parseSpec("int8:channel:a8:iops:intmm")), "int8:channel:a8:intmm:iops");
    assert.throws(() => parseSpec("int8:channel:a8:iops"), /"iops": integer non-linear operations extend integer-only matmul; add intmm/);
  });

  test("integer from code to code: the last block's attention and SwiGLU outputs are the same bits on ref and wasm, at 1 and 2 threads, in prefill and decode; logits differ only by the f32 classifier's sum order", () => {
    const l = new Llama(m, { backend: new RefBackend() });
    assert.match(l.backend.name, /^intops\+/);
    assert.ok(l.kv instanceof IntegerAttentionCache, "the integer attention is the cache");
    const want = capture(new RefBackend(), "decode");
    const check = (got: ReturnType<typeof capture>, what: string) => {
      assert.deepEqual(got.att, want.att, `${what}: attention outputs`);
      assert.deepEqual(got.ffn, want.ffn, `${what}: SwiGLU outputs`);
      let d = 0;
      got.logits.forEach((row, p) => row.forEach((v, j) => { d = Math.max(d, Math.abs(v - want.logits[p]![j]!)); }));
      assert.ok(d <= 1e-4, `${what}: logits ${d}`);
    };
    check(capture(new RefBackend(), "prefill"), "ref prefill");
    for (const threads of [1, 2]) {
      const be = createNodeWasmBackend({ threads });
      try {
        check(capture(be, "decode"), `wasm ${threads} thread(s) decode`);
        check(capture(be, "prefill"), `wasm ${threads} thread(s) prefill`);
      } finally {
        be.dispose?.();
      }
    }
  });

  test("KLD vs float stays small; mixing iops and plain intmm linears, --kv, and an architecture with q/k norms are refused", async () => {
    const evalIds = tok.encode(readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 6000), { bos: false });
    const k = await kld(new ModelLogits(new Llama(base, { contextLength: 128 })), new ModelLogits(new Llama(m, { contextLength: 128 })), evalIds, { ctx: 128, maxTokens: 508, bosId: tok.bosId });
    assert.ok(k.meanKld < 0.01, `iops KLD ${k.meanKld}`);
    const mixed = await quantize(base, { target: { spec: "int8:channel:a8:intmm:iops" }, method: "rtn", overrides: [{ match: "blk.0.ffn_up.weight", spec: "int8:channel:a8:intmm" }] });
    assert.throws(() => new Llama(mixed.model), /asks for integer non-linear ops \(iops\) but blk\.0\.ffn_up\.weight does not/);
    const { quantKvCacheFactory } = await import("../../src/model/kv-quant.js");
    assert.throws(() => new Llama(m, { kvCache: quantKvCacheFactory("int8") }), /would replace the attention of integer-only end to end/);
    assert.throws(() => new Llama({ ...m, config: { ...m.config, arch: "qwen3" } }), /iops: architecture qwen3's per-head q\/k norms have no integer version yet/);
  });
});
