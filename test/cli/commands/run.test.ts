import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPath } from "../../../src/io/node/data.js";
import { quantlab, expectOneLineError } from "../helpers-cli.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8"));
const model = dataPath("stories260K", "stories260K.bin");

describe("quantlab run", () => {
  test("--json greedy on both reference prompts: tokenIds and text as run.c", () => {
    for (const g of ref.greedy) {
      const r = quantlab("run", model, "--prompt", g.prompt, "--tokens", "200", "--temperature", "0", "--json");
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.tokenIds, g.token_ids);
      assert.equal(out.text, g.stdout);
    }
  });

  test("the README's first command (default model, greedy by default) prints run.c's stdout exactly", () => {
    const r = quantlab("run", "--prompt", "Once upon a time", "--tokens", "200");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, ref.greedy[0].stdout);
  });

  test("sampling is seeded", () => {
    const a = quantlab("run", model, "-p", "Lily", "-n", "40", "-t", "0.9", "--top-k", "20", "-s", "7", "--json");
    const b = quantlab("run", model, "-p", "Lily", "-n", "40", "-t", "0.9", "--top-k", "20", "-s", "7", "--json");
    assert.equal(a.status, 0, a.stderr);
    assert.deepEqual(JSON.parse(a.stdout).tokenIds, JSON.parse(b.stdout).tokenIds);
    const n = JSON.parse(a.stdout).tokenIds.length;
    assert.ok(n > 5 && n <= 41, `BOS + up to 40 positions, got ${n}`); // fewer only if BOS is sampled
  });

  describe("bad input: one line, non-zero exit", () => {
    const dir = mkdtempSync(join(tmpdir(), "ql-run-"));
    const bytes = readFileSync(model);
    test("missing model file", () => expectOneLineError(quantlab("run", join(dir, "nope.bin")), /nope\.bin: no such file/));
    test("truncated checkpoint", () => {
      const p = join(dir, "trunc.bin");
      writeFileSync(p, bytes.subarray(0, 500_000));
      expectOneLineError(quantlab("run", p, "--tokenizer", dataPath("stories260K", "tok512.bin")), /trunc\.bin: truncated: the llama2\.c header implies at least \d+ bytes but the file has 500000/);
    });
    test("impossible header", () => {
      const p = join(dir, "hdr.bin");
      const b = Buffer.from(bytes);
      b.writeInt32LE(3, 12); // n_heads 3 does not divide dim 64
      b.writeInt32LE(1, 16); // n_kv_heads 1
      writeFileSync(p, b);
      expectOneLineError(quantlab("run", p), /hdr\.bin: bad llama2\.c header: dim 64 is not a multiple of n_heads 3/);
    });
    test("tokenizer that does not match the vocabulary", () => {
      const tok = join(dir, "tok.bin");
      writeFileSync(tok, readFileSync(dataPath("stories260K", "tok512.bin")).subarray(0, 60)); // cut inside an entry
      expectOneLineError(quantlab("run", model, "--tokenizer", tok), /tok\.bin: truncated: token \d+/);
      // a well-formed tokenizer with too few tokens: keep the first 300 entries
      const src = readFileSync(dataPath("stories260K", "tok512.bin"));
      let o = 4;
      for (let i = 0; i < 300; i++) o += 8 + src.readInt32LE(o + 4);
      writeFileSync(tok, src.subarray(0, o));
      expectOneLineError(quantlab("run", model, "--tokenizer", tok), new RegExp(`tokenizer ${tok.replace(/[.]/g, "\\.")} has 300 tokens but model .*stories260K\\.bin has vocab_size 512`));
    });
    test("no tokenizer beside the model", () => {
      const p = join(dir, "alone.bin");
      copyFileSync(model, p);
      expectOneLineError(quantlab("run", p, "-p", "Hi"), /alone\.bin: no tokenizer found .*pass --tokenizer <file>/, 2);
    });
    test("bad option values", () => {
      expectOneLineError(quantlab("run", model, "--temperature", "-1"), /temperature -1/, 2);
      expectOneLineError(quantlab("run", model, "--ctx", "0"), /option --ctx: expected a positive integer/, 2);
      expectOneLineError(quantlab("run", model, "--kv-window", "4"), /option --kv-window: needs --kv <spec>/, 2);
      expectOneLineError(quantlab("run", model, "--kv", "int2:g32", "--kv-keys", "head"), /option --kv-keys: expected "token" or "channel", got "head"/, 2);
      expectOneLineError(quantlab("run", model, "--kv", "int4:channel", "--kv-keys", "channel"), /channel keys \(KIVI\) quantize each channel over groups of G tokens/, 2);
    });
  });
});

test("LongRoPE (Phi-3): the factor set follows --ctx, else the model's context, never the KV cache --tokens sizes", async () => {
  const { saveHfDir } = await import("../../../src/io/node/hf-file.js");
  const { randomWeights, tinyTokenizer, TINY_VOCAB } = await import("../../helpers/tiny-arch.js");
  const cfg: import("../../../src/model/config.js").ModelConfig = {
    arch: "phi3", dim: 64, hiddenDim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: TINY_VOCAB, seqLen: 128, ropeTheta: 10000, normEps: 1e-6,
    tiedEmbeddings: false, rotaryDim: 12, longRope: { shortFactor: [1, 1.2, 1.5, 2, 3, 4], longFactor: [1, 4, 9, 16, 25, 36], originalMaxPositionEmbeddings: 32, attentionFactor: 1 }, name: "tiny-phi",
  };
  const dir = join(mkdtempSync(join(tmpdir(), "ql-run-phi-")), "m");
  const weights = randomWeights(cfg, 5, 0.3);
  // sharp attention, so where keys sit (RoPE) decides the text
  for (const [n, w] of weights) if (/attn_(q|k)\.weight$/.test(n) && w.kind === "dense") { const d = w.tensor.data as Float32Array; for (let i = 0; i < d.length; i++) d[i] = d[i]! * 6; }
  await saveHfDir({ config: cfg, weights, tokenizer: tinyTokenizer(), source: { path: "memory", format: "memory" } }, dir);
  const text = (...extra: string[]) => {
    const r = quantlab("run", dir, "--prompt", "The theater was in the west", "--tokens", "24", "--temperature", "0", "--json", ...extra);
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout).tokenIds as number[]).join(" ");
  };
  const byDefault = text(), long = text("--ctx", "128"), short = text("--ctx", "32");
  assert.equal(byDefault, long, "a 24-token run of a 128-position model rotates with the long factors (context 128 > 32)");
  assert.notEqual(short, long, "the factor sets differ on this model, so the comparison means something");
});
