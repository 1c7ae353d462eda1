import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { dataPath } from "../../../src/io/node/data.js";
import { loadLlama2cTokenizerFile } from "../../../src/io/node/llama2c-file.js";
import { Llama2cTokenizer } from "../../../src/model/tokenizers/llama2c.js";
import { loadGgufFile } from "../../../src/io/node/gguf-file.js";

const ref = JSON.parse(readFileSync(dataPath("stories260K", "reference.json"), "utf8"));
const tok = await loadLlama2cTokenizerFile(dataPath("stories260K", "tok512.bin"));

/**
 * Scalar reference: run.c encode() transcribed literally — quadratic rescan of all pairs after each
 * merge, byte strings compared as Buffers — to check the heap-based encoder against.
 */
function encodeRef(t: Llama2cTokenizer, text: string, bos: boolean): number[] {
  const pieces: Buffer[] = [];
  for (let i = 0; i < t.vocabSize; i++) pieces.push(Buffer.from(t.piece(i)));
  const find = (b: Buffer): number => pieces.findIndex((p) => p.equals(b));
  const bytes = Buffer.from(text, "utf8");
  const out: number[] = bos ? [1] : [];
  if (bytes.length > 0) out.push(find(Buffer.from(" ")));
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if ((bytes[i]! & 0xc0) !== 0x80) buf = [];
    buf.push(bytes[i]!);
    if (i + 1 < bytes.length && (bytes[i + 1]! & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = find(Buffer.from(buf));
    if (id >= 0) out.push(id);
    else for (const b of buf) out.push(b + 3);
    buf = [];
  }
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i + 1 < out.length; i++) {
      const id = find(Buffer.concat([pieces[out[i]!]!, pieces[out[i + 1]!]!]));
      if (id !== -1 && t.score(id) > best) {
        best = t.score(id);
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    out.splice(bestIdx, 2, bestId);
  }
  return out;
}

describe("llama2.c tokenizer (tok512.bin)", () => {
  test("file facts: 512 tokens, max_token_length 7, BOS/EOS/byte pieces", () => {
    assert.equal(tok.vocabSize, 512);
    assert.equal(tok.maxTokenLength, ref.tokenizer.max_token_length);
    assert.equal(tok.bosId, ref.tokenizer.bos_id);
    assert.equal(tok.eosId, ref.tokenizer.eos_id);
    assert.equal(Buffer.from(tok.piece(1)).toString(), "\n<s>\n");
    assert.equal(Buffer.from(tok.piece(3 + 0x41)).toString(), "<0x41>");
  });

  test("encode of the reference prompt (BOS, dummy prefix) = reference token_ids and pieces", () => {
    const ids = tok.encode(ref.logits.prompt, { bos: true });
    assert.deepEqual(ids, ref.logits.token_ids);
    assert.deepEqual(ids.map((i) => Buffer.from(tok.piece(i)).toString()), ref.logits.token_pieces);
    for (const g of ref.greedy) assert.deepEqual(tok.encode(g.prompt, { bos: true }), g.prompt_token_ids);
  });

  test("encode of the eval text prefix (no BOS) = reference eval token stream", () => {
    const text = readFileSync(dataPath("tinystories", "eval.txt")).subarray(0, ref.eval.text_prefix_bytes).toString("utf8");
    const ids = tok.encode(text, { bos: false });
    assert.equal(ids.length, ref.eval.encoded_token_count);
    assert.deepEqual(ids.slice(0, ref.eval.n_predicted_tokens), ref.eval.token_ids);
  });

  test("heap merge = run.c's quadratic merge on a table of edge cases", () => {
    const cases = ["", " ", "a", "  ", "Once upon a time", "héllo wörld", "日本語 ok", "emoji 😀!", "\n\n\tTab", "x\u0000y", "aaaa aaaa", "ﬁ", "\u{10FFFF}", "—“quoted”—"];
    for (const s of cases) {
      for (const bos of [false, true]) assert.deepEqual(tok.encode(s, { bos }), encodeRef(tok, s.split("\u0000")[0]!, bos), JSON.stringify(s));
    }
    assert.deepEqual(tok.encode("Hi", { bos: true, eos: true }).at(-1), 2);
  });

  test("heap merge = run.c's quadratic merge (property, random text)", () => {
    const alphabet = fc.constantFrom(..."abcdefghilmnorstuwyTLO ,.!'\"\n".split(""), "é", "ü", "—", "日", "😀", "  ", "the ", " was", "ing");
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 40 }), (parts) => {
        const s = parts.join("");
        assert.deepEqual(tok.encode(s), encodeRef(tok, s, false));
      }),
      { numRuns: 150, seed: 7 },
    );
  });

  test("decodeToken follows run.c decode + safe_printf", () => {
    const id = (s: string) => tok.encode(s).at(-1)!; // the last piece of a short text
    const once = 403; // " Once"
    assert.equal(tok.decodeToken(1, once), "Once"); // leading space stripped after BOS
    assert.equal(tok.decodeToken(2, once), " Once");
    assert.equal(tok.decodeToken(1, 3 + 0x0a), "\n"); // <0x0A> → newline (isspace)
    assert.equal(tok.decodeToken(5, 3 + 0x41), "A"); // <0x41> → 'A'
    assert.equal(tok.decodeToken(5, 3 + 0x00), ""); // NUL: nothing printed
    assert.equal(tok.decodeToken(5, 3 + 0x07), ""); // BEL: not printable, skipped
    assert.equal(tok.decodeToken(5, 3 + 0xc3), ""); // lone UTF-8 lead byte: skipped by safe_printf
    assert.equal(tok.decodeToken(5, id("é")), "é"); // multi-byte vocab piece printed whole
    assert.throws(() => tok.decodeToken(1, 512), /outside the vocabulary/);
  });

  test("decoding the greedy reference ids as run.c prints them gives reference stdout", () => {
    for (const g of ref.greedy) {
      let s = "";
      for (let i = 1; i < g.token_ids.length; i++) s += tok.decodeToken(g.token_ids[i - 1], g.token_ids[i]);
      assert.equal(s + "\n", g.stdout);
    }
  });

  test("decode() joins byte-fallback tokens into UTF-8", () => {
    for (const s of ["héllo 😀 日本", "plain text, with punctuation!"]) assert.equal(tok.decode(tok.encode(s, { bos: true })), s);
  });

  test("vocab() is in GGUF form (as llama.cpp's llama2.c converter writes it) and round-trips", () => {
    const v = tok.vocab();
    assert.equal(v.model, "llama");
    assert.deepEqual(v.pieces.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
    assert.deepEqual([...v.types.slice(0, 4)], [2, 3, 3, 6]);
    assert.equal(v.pieces[259], "\u2581t");
    assert.equal(v.pieces[410], "\u2581");
    assert.equal(v.types[259], 1);
    assert.equal(v.scores[300], tok.score(300));
    const back = Llama2cTokenizer.fromVocab(v);
    const text = readFileSync(dataPath("tinystories", "eval.txt"), "utf8").slice(0, 3000);
    assert.deepEqual(back.encode(text, { bos: true }), tok.encode(text, { bos: true }));
  });

  test("vocab() equals the vocabulary llama.cpp's converter wrote into stories260K-F32.gguf", async () => {
    const m = await loadGgufFile(dataPath("ggml", "stories260K", "stories260K-F32.gguf"));
    const theirs = m.tokenizer!.vocab();
    const ours = tok.vocab();
    assert.deepEqual(ours.pieces, theirs.pieces);
    assert.deepEqual([...ours.types], [...theirs.types]);
    assert.deepEqual([...ours.scores], [...theirs.scores]);
  });
});

describe("fromVocab makes its pieces and lookups on first use", () => {
  const SP = "\u2581";
  const texts = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x20>", " ", SP, `${SP}a`, "a", "b", "ab", `${SP}ab`, "a b", `x${SP}y z`, "\ufeffq", "\ufeff", "😀", "é", "a\ud800", "\udc00", "<0xZZ>", "ctl"];
  const types = Int32Array.from(texts.map((t, i) => (i < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : i === texts.length - 1 ? 3 : i % 5 === 0 ? 4 : 1)));
  const vocab = { model: "llama" as const, pieces: texts, scores: Float32Array.from(texts, (_, i) => -i / 3), types, bosId: 1, eosId: 2, unkId: 0, addBos: true };
  /** the eager twin: the pieces' bytes made up front, as fromVocab did before */
  const eager = () => new Llama2cTokenizer({ pieces: texts.map((p) => new TextEncoder().encode(p.split(SP).join(" "))), scores: vocab.scores, bosId: 1, eosId: 2, unkId: 0, types });

  test("vocab() of a fresh fromVocab tokenizer (no bytes made) = the eager twin's, piece for piece", () => {
    const lazy = Llama2cTokenizer.fromVocab(vocab).vocab();
    const want = eager().vocab();
    assert.deepEqual(lazy.pieces, want.pieces);
    assert.deepEqual(lazy.types, want.types);
    assert.deepEqual(lazy.scores, want.scores);
    // the cases the fast path must get right: a leading U+FEFF is dropped as the decoder drops it, a lone
    // surrogate becomes U+FFFD, a literal space of a normal piece becomes '▁', of another type stays ' '
    assert.equal(lazy.pieces[texts.indexOf("\ufeffq")], "q");
    assert.equal(lazy.pieces[texts.indexOf("a\ud800")], "a\ufffd");
    assert.equal(lazy.pieces[texts.indexOf("a b")], `a${SP}b`);
  });

  test("encode, pieces, decode and maxTokenLength of the lazy tokenizer = the eager twin's", () => {
    const a = Llama2cTokenizer.fromVocab(vocab);
    const b = eager();
    assert.equal(a.maxTokenLength, b.maxTokenLength);
    for (const s of ["ab ab", "a b\n", "😀é z", "", "qq\u0001"]) assert.deepEqual(a.encode(s, { bos: true }), b.encode(s, { bos: true }), s);
    for (let id = 0; id < texts.length; id++) {
      assert.deepEqual(a.piece(id), b.piece(id));
      assert.equal(a.decodeToken(1, id), b.decodeToken(1, id));
    }
    fc.assert(fc.property(fc.string({ maxLength: 12 }), (s) => { assert.deepEqual(a.encode(s), b.encode(s)); }));
  });
});
