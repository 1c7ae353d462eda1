/**
 * Same input + seed → the same bytes, for every command that writes or prints a result, at any
 * --threads (each output row is computed by one thread, docs/determinism.md), and the same bytes from
 * --backend ref and wasm wherever no float forward pass is involved. Where one is (calibration and
 * imatrix passes: f64 sums in the ref backend, f32 SIMD lanes in wasm), the two backends may differ in
 * the last bits; the test bounds that difference at what docs/determinism.md reports.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../../src/io/node/data.js";
import { parseImatrixDat } from "../../../src/ggml/imatrix.js";
import { openGguf } from "../../../src/io/gguf.js";
import { BufferSource } from "../../../src/io/source.js";
import { ggmlTypeTraits } from "../../../src/ggml/types.js";
import { cli } from "../helpers-cli.js";

const S260 = dataPath("stories260K", "stories260K.bin");
const S3M = dataPath("stories3M", "stories3M.bin");
const TOK = dataPath("stories260K", "tok512.bin");
const TEXT = dataPath("tinystories", "eval.txt");

const bytes = (p: string) => new Uint8Array(readFileSync(p));

/** A --json result without its timings and the backend label (which names the thread count): nothing else may change. */
function stable(stdout: string): unknown {
  return JSON.parse(stdout, (k, v) => (/seconds|PerSecond|Ms$|^backend$/.test(k) ? undefined : v));
}

describe("determinism: same input and seed, same bytes", () => {
  let dir: string;
  let calib: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ql-det-"));
    calib = join(dir, "calib.txt");
    writeFileSync(calib, readFileSync(dataPath("tinystories", "calib.txt"), "utf8").slice(0, 20_000));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs `args(threads, out)` at 1, 2 and 3 threads; every output file (and --json, timings aside) must match the first. */
  async function acrossThreads(label: string, outs: string[], args: (threads: string, out: (name: string) => string) => string[]): Promise<void> {
    const first = new Map<string, Uint8Array>();
    let firstJson: unknown;
    for (const threads of ["1", "2", "3"]) {
      const out = (name: string) => join(dir, `${label}-t${threads}-${name}`);
      const r = await cli(args(threads, out), "");
      assert.equal(r.code, 0, `${label} --threads ${threads}: ${r.stderr}`);
      const json = r.stdout.startsWith("{") ? stable(r.stdout.replace(new RegExp(`${label}-t${threads}-`, "g"), "")) : undefined;
      if (threads === "1") firstJson = json;
      else assert.deepEqual(json, firstJson, `${label}: --json differs at --threads ${threads}`);
      for (const o of outs) {
        const b = bytes(out(o));
        if (threads === "1") first.set(o, b);
        else assert.ok(Buffer.from(b).equals(Buffer.from(first.get(o)!)), `${label}: ${o} differs at --threads ${threads}`);
      }
    }
  }

  test("quantize --type Q4_K_M --imatrix <text> (stories3M): the GGUF and the saved imatrix at 1/2/3 threads", async () => {
    await acrossThreads("imatrix", ["q.gguf", "im.dat"], (t, out) => ["quantize", S3M, "--tokenizer", TOK, "--type", "Q4_K_M", "--imatrix", calib, "--imatrix-ctx", "128", "--imatrix-chunks", "6", "--imatrix-out", out("im.dat"), "--threads", t, "-o", out("q.gguf")]);
  });

  test("quantize --method gptq: preset (GPTQ codes on llama.cpp's scales) and spec target, at 1/2/3 threads", async () => {
    await acrossThreads("gptq-preset", ["q.gguf"], (t, out) => ["quantize", S260, "--type", "Q4_K_M", "--method", "gptq", "--imatrix", calib, "--imatrix-ctx", "128", "--imatrix-chunks", "6", "--threads", t, "-o", out("q.gguf")]);
    await acrossThreads("gptq-spec", ["q.safetensors"], (t, out) => ["quantize", S260, "--spec", "int4:g32:asym", "--method", "gptq", "--calib", calib, "--samples", "12", "--seq", "64", "--threads", t, "-o", out("q.safetensors")]);
  });

  test("eval --save-logits, kld --json, run --json (sampled) at 1/2/3 threads", async () => {
    await acrossThreads("eval", ["l.qlgt"], (t, out) => ["eval", S260, "--text", TEXT, "--ctx", "128", "--max-tokens", "1000", "--save-logits", out("l.qlgt"), "--threads", t, "--json"]);
    await acrossThreads("kld", [], (t) => ["kld", S260, dataPath("ggml", "stories260K", "stories260K-Q4_K_M.gguf"), "--text", TEXT, "--ctx", "128", "--max-tokens", "500", "--threads", t, "--json"]);
    await acrossThreads("run", [], (t) => ["run", S260, "--prompt", "Once upon a time", "--tokens", "60", "--temperature", "0.8", "--seed", "7", "--threads", t, "--json"]);
  });

  test("commands with no float forward pass write the same bytes with --backend ref and wasm", async () => {
    const pairs: [string, (b: string, o: string) => string[], string][] = [
      ["preset", (b, o) => ["quantize", S3M, "--tokenizer", TOK, "--type", "Q4_K_M", "--backend", b, "-o", o], "gguf"],
      ["spec", (b, o) => ["quantize", S260, "--spec", "int4:g32:asym", "--backend", b, "-o", o], "safetensors"],
      ["convert", (b, o) => ["convert", S3M, o, "--tokenizer", TOK, "--type", "Q8_0", "--backend", b], "gguf"],
    ];
    for (const [label, args, ext] of pairs) {
      const out = (b: string) => join(dir, `be-${label}-${b}.${ext}`);
      for (const b of ["ref", "wasm"]) {
        const r = await cli(args(b, out(b)), "");
        assert.equal(r.code, 0, r.stderr);
      }
      assert.ok(Buffer.from(bytes(out("ref"))).equals(Buffer.from(bytes(out("wasm")))), `${label}: ref and wasm differ`);
    }
  });

  test("qat: two runs with the same seed write the same file", async () => {
    const out = (i: number) => join(dir, `qat-${i}.safetensors`);
    for (const i of [1, 2]) {
      const r = await cli(["qat", S260, "--spec", "int4:g32:asym", "--text", calib, "--steps", "3", "--batch", "2", "--seq", "32", "--seed", "5", "-o", out(i)], "");
      assert.equal(r.code, 0, r.stderr);
    }
    assert.ok(Buffer.from(bytes(out(1))).equals(Buffer.from(bytes(out(2)))));
  });

  test("imatrix passes: ref and wasm differ only in the last bits (≤ 1e-5 relative), flipping under 2% of the blocks", async () => {
    const f = (b: string, n: string) => join(dir, `imb-${b}.${n}`);
    for (const b of ["ref", "wasm"]) {
      const r = await cli(["quantize", S3M, "--tokenizer", TOK, "--type", "Q4_K_M", "--imatrix", calib, "--imatrix-ctx", "128", "--imatrix-chunks", "4", "--imatrix-out", f(b, "dat"), "--backend", b, "-o", f(b, "gguf")], "");
      assert.equal(r.code, 0, r.stderr);
    }
    const a = parseImatrixDat(bytes(f("ref", "dat"))).imatrix, w = parseImatrixDat(bytes(f("wasm", "dat"))).imatrix;
    let maxRel = 0;
    for (const [k, va] of a) for (let i = 0; i < va.length; i++) maxRel = Math.max(maxRel, Math.abs(va[i]! - w.get(k)![i]!) / Math.max(Math.abs(va[i]!), 1e-30));
    assert.ok(maxRel > 0 && maxRel <= 1e-5, `imatrix max relative difference ${maxRel}`);
    const ga = await openGguf(new BufferSource("ref", bytes(f("ref", "gguf")))), gw = await openGguf(new BufferSource("wasm", bytes(f("wasm", "gguf"))));
    let blocks = 0, differ = 0;
    for (const t of ga.tensors) {
      const x = await ga.readTensorBytes(t), y = await gw.readTensorBytes(t.name);
      const bs = ggmlTypeTraits(t.type)!.bytesPerBlock;
      for (let o = 0; o < x.length; o += bs) {
        blocks++;
        if (!Buffer.from(x.subarray(o, o + bs)).equals(Buffer.from(y.subarray(o, o + bs)))) differ++;
      }
    }
    assert.ok(differ / blocks < 0.02, `${differ} of ${blocks} blocks differ`);
  });
});
