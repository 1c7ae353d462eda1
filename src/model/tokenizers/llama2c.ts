/**
 * llama2.c's tokenizer (karpathy/llama2.c run.c `encode`/`decode`/`safe_printf`), reproduced exactly:
 *
 * encode: optional BOS (id 1); a dummy-prefix " " token when the text is not empty; each UTF-8 code
 * point looked up whole, else its bytes as byte-fallback tokens (byte + 3, i.e. the `<0xNN>` pieces);
 * then, repeatedly, the adjacent pair whose concatenated piece exists in the vocab with the highest
 * score is merged (ties: the leftmost pair; a score must beat run.c's initial -1e10), BOS included in
 * the scan as in run.c. run.c rescans all pairs after every merge (quadratic); we keep the candidate
 * pairs in a heap ordered by (score desc, position asc), which picks the same pair at every step.
 *
 * decodeToken: run.c `decode` (strip one leading space after BOS; a `<0xNN>` piece becomes the raw
 * byte) followed by `safe_printf` (a one-byte piece that is neither printable ASCII nor whitespace is
 * not printed). So concatenating decodeToken() over a generation gives exactly what run.c prints.
 *
 * Pieces are kept as raw bytes; lookups use "binary strings" (one char per byte, as latin1) so pieces
 * that are not valid UTF-8 on their own still concatenate and match byte for byte.
 */
import { QuantlabError } from "../../core/errors.js";
import type { EncodeOptions, TokenType, Tokenizer, Vocab } from "../tokenizer.js";

/** SentencePiece's whitespace marker, used by GGUF `llama` vocabularies in place of ' ' */
const SPM_SPACE = "\u2581";
/** run.c encode(): `float best_score = -1e10;` — a pair must score strictly above this to merge */
const RUNC_MIN_SCORE = -1e10;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: false });
/** a surrogate code unit outside a pair (with the u flag a pair is one code point, not \p{Cs}) */
const LONE_SURROGATE = /\p{Cs}/u;

function binaryString(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0) break; // C strings: a piece ends at its first NUL, as in run.c's strcmp lookups
    s += String.fromCharCode(bytes[i]!);
  }
  return s;
}

/** run.c decode(): `sscanf(piece, "<0x%02hhX>", &byte_val) == 1` — "<0x" then one or two hex digits */
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{1,2})/;
/** the exact form of a byte-fallback piece, used for GGUF token types */
const BYTE_PIECE_EXACT = /^<0x[0-9A-F]{2}>$/;

export interface Llama2cTokenizerInit {
  /** raw bytes of each piece, index = token id */
  pieces: Uint8Array[];
  scores: Float32Array; // (vocab)
  /** the int32 at the head of tok.bin; informational (run.c sizes a buffer with it) */
  maxTokenLength?: number;
  bosId?: number;
  eosId?: number;
  unkId?: number;
  /** GGUF token types when known (fromVocab); otherwise derived from the pieces */
  types?: Int32Array;
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  private readonly scores: Float32Array; // (vocab)
  private readonly types: Int32Array | undefined;
  private readonly maxLenGiven: number | undefined;
  /** the GGUF-form strings ('▁' for ' ') of a tokenizer built by fromVocab: its pieces are their UTF-8 with
   * '▁' → ' ', made on first use — quantizing or converting a GGUF reads the vocabulary back (vocab()) and
   * never encodes, and 128 K pieces' bytes and lookup tables cost ≈ 0.2 s of start-up */
  private readonly ggufTexts: readonly string[] | undefined;
  private piecesMade: Uint8Array[] | undefined;
  private tablesMade: { keys: string[]; lookup: Map<string, number>; byteIds: Int32Array } | undefined;

  /** `ggufTexts` in place of `pieces`: fromVocab's form (the pieces are made from them when first needed) */
  constructor(init: Llama2cTokenizerInit | (Omit<Llama2cTokenizerInit, "pieces"> & { ggufTexts: readonly string[] })) {
    const n = "pieces" in init ? init.pieces.length : init.ggufTexts.length;
    if (init.scores.length !== n) throw new QuantlabError("E_ARG", `tokenizer: ${n} pieces but ${init.scores.length} scores`);
    this.vocabSize = n;
    this.piecesMade = "pieces" in init ? init.pieces : undefined;
    this.ggufTexts = "pieces" in init ? undefined : init.ggufTexts;
    this.scores = init.scores;
    this.bosId = init.bosId ?? 1; // run.c hard-codes BOS = 1, EOS = 2
    this.eosId = init.eosId ?? 2;
    this.unkId = init.unkId ?? 0;
    this.types = init.types;
    this.maxLenGiven = init.maxTokenLength;
  }

  private get pieces(): Uint8Array[] {
    return (this.piecesMade ??= this.ggufTexts!.map((p) => utf8.encode(p.split(SPM_SPACE).join(" "))));
  }

  /** The longest piece in bytes (unless tok.bin's header gave it). */
  get maxTokenLength(): number {
    if (this.maxLenGiven !== undefined) return this.maxLenGiven;
    let maxLen = 0;
    for (const p of this.pieces) maxLen = Math.max(maxLen, p.length);
    return maxLen;
  }

  /** The lookup of pieces (binary strings) to ids and the byte-fallback ids, built on first use. */
  private get tables(): { keys: string[]; lookup: Map<string, number>; byteIds: Int32Array } {
    if (this.tablesMade) return this.tablesMade;
    const n = this.vocabSize;
    const keys = this.pieces.map(binaryString);
    const lookup = new Map<string, number>();
    for (let id = 0; id < n; id++) {
      const k = keys[id]!;
      if (!lookup.has(k)) lookup.set(k, id); // duplicates: the first id wins
    }
    // run.c byte fallback is `byte + 3` (ids 3..258 are <0x00>..<0xFF> in llama2.c vocabularies).
    // A vocabulary that spells its byte pieces elsewhere (GGUF) is honoured through the lookup.
    const byteIds = new Int32Array(256); // byte → token id
    for (let b = 0; b < 256; b++) {
      const hex = b.toString(16).toUpperCase().padStart(2, "0");
      const id = lookup.get(`<0x${hex}>`);
      byteIds[b] = id ?? (b + 3 < n ? b + 3 : this.unkId);
    }
    return (this.tablesMade = { keys, lookup, byteIds });
  }

  /** Builds the tokenizer from a GGUF `llama` (SentencePiece) vocabulary: '▁' becomes ' '. */
  static fromVocab(v: Vocab): Llama2cTokenizer {
    if (v.model !== "llama") throw new QuantlabError("E_UNSUPPORTED", `tokenizer: model "${v.model}" is not a SentencePiece (llama) vocabulary`);
    return new Llama2cTokenizer({ ggufTexts: v.pieces.slice(), scores: v.scores, bosId: v.bosId, eosId: v.eosId, unkId: v.unkId, types: v.types });
  }

  /** Raw bytes of a piece (as stored in tok.bin). */
  piece(id: number): Uint8Array {
    this.checkId(id);
    return this.pieces[id]!;
  }

  score(id: number): number {
    this.checkId(id);
    return this.scores[id]!;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const bytes = utf8.encode(text);
    const { lookup, byteIds } = this.tables;
    let len = bytes.indexOf(0); // C string: stops at NUL
    if (len < 0) len = bytes.length;
    const tokens: number[] = [];
    if (opts.bos ?? false) tokens.push(this.bosId);
    if (len > 0) {
      // add_dummy_prefix: run.c looks up " " (ours falls back to the byte token if the vocab lacks it)
      tokens.push(lookup.get(" ") ?? byteIds[0x20]!);
    }
    // one code point at a time: a lead byte starts a new buffer, continuation bytes join (max 4 bytes)
    let start = 0;
    for (let i = 0; i < len; i++) {
      if ((bytes[i]! & 0xc0) !== 0x80) start = i;
      const next = i + 1 < len ? bytes[i + 1]! : 0;
      if ((next & 0xc0) === 0x80 && i - start + 1 < 4) continue;
      const cp = bytes.subarray(start, i + 1);
      const id = lookup.get(binaryString(cp));
      if (id !== undefined) tokens.push(id);
      else for (const b of cp) tokens.push(byteIds[b]!);
      start = i + 1;
    }
    const merged = this.merge(tokens);
    if (opts.eos ?? false) merged.push(this.eosId);
    return merged;
  }

  /** Greedy best-score pair merging, as run.c's loop but with a heap (see the file comment). */
  private merge(tokens: number[]): number[] {
    const n = tokens.length;
    if (n < 2) return tokens;
    const tok = Int32Array.from(tokens); // (n) current token of each live node
    const next = new Int32Array(n); // (n) index of the next live node, -1 at the end
    const prev = new Int32Array(n); // (n)
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap();
    const { lookup, keys } = this.tables;
    const push = (left: number): void => {
      const right = next[left]!;
      if (right < 0) return;
      const id = lookup.get(keys[tok[left]!]! + keys[tok[right]!]!);
      if (id === undefined) return;
      const s = this.scores[id]!;
      if (!(s > RUNC_MIN_SCORE)) return;
      heap.push({ score: s, left, right, leftTok: tok[left]!, rightTok: tok[right]!, id });
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    for (;;) {
      const e = heap.pop();
      if (!e) break;
      // stale entries: a node that merged away or changed token no longer matches
      if (next[e.left] !== e.right || tok[e.left] !== e.leftTok || tok[e.right] !== e.rightTok) continue;
      tok[e.left] = e.id;
      const after = next[e.right]!;
      next[e.left] = after;
      if (after >= 0) prev[after] = e.left;
      tok[e.right] = -1;
      next[e.right] = -2; // dead
      push(e.left);
      if (prev[e.left]! >= 0) push(prev[e.left]!);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }

  /** run.c decode() bytes (before safe_printf's filter). */
  decodeBytes(prevId: number, id: number): Uint8Array {
    this.checkId(id);
    let p = this.pieces[id]!;
    if (prevId === this.bosId && p[0] === 0x20) p = p.subarray(1); // SentencePiece strips the space after BOS
    const m = BYTE_PIECE.exec(binaryString(p));
    if (m) return Uint8Array.of(parseInt(m[1]!, 16));
    return p;
  }

  decodeToken(prevId: number, id: number): string {
    let p = this.decodeBytes(prevId, id);
    const end = p.indexOf(0);
    if (end >= 0) p = p.subarray(0, end); // printf("%s") stops at NUL
    if (p.length === 0) return "";
    if (p.length === 1) {
      // safe_printf: skip a lone byte unless isprint() || isspace() in the C locale
      const b = p[0]!;
      const printable = (b >= 0x20 && b <= 0x7e) || (b >= 0x09 && b <= 0x0d);
      return printable ? String.fromCharCode(b) : "";
    }
    return utf8Decoder.decode(p);
  }

  /** Whole-sequence text: bytes of every piece (byte tokens joined into UTF-8), BOS/EOS left out. */
  decode(ids: number[]): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    let prev = -1;
    for (const id of ids) {
      if (id !== this.bosId && id !== this.eosId) {
        const b = this.decodeBytes(prev, id);
        parts.push(b);
        total += b.length;
      }
      prev = id;
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return utf8Decoder.decode(all);
  }

  vocab(): Vocab {
    const n = this.vocabSize;
    const pieces: string[] = new Array(n);
    const types = new Int32Array(n);
    for (let id = 0; id < n; id++) {
      let t: TokenType;
      let text = this.pieceText(id);
      if (id === this.unkId) {
        t = 2;
        text = "<unk>";
      } else if (id === this.bosId) {
        t = 3;
        text = "<s>"; // tok.bin spells it "\n<s>\n"; llama.cpp's converter writes "<s>"
      } else if (id === this.eosId) {
        t = 3;
        text = "</s>";
      } else if (BYTE_PIECE_EXACT.test(text)) t = 6;
      else t = 1;
      if (this.types) t = this.types[id]! as TokenType;
      types[id] = t;
      pieces[id] = t === 1 && text.includes(" ") ? text.split(" ").join(SPM_SPACE) : text;
    }
    return {
      model: "llama",
      pieces,
      scores: new Float32Array(this.scores),
      types,
      bosId: this.bosId,
      eosId: this.eosId,
      unkId: this.unkId,
      addBos: true,
    };
  }

  /** The UTF-8 decoding of piece `id`. From fromVocab's strings without making the bytes: a well-formed string
   * decodes back from its UTF-8 unchanged, but for a leading U+FEFF, which the decoder takes as a byte-order
   * mark and drops. */
  private pieceText(id: number): string {
    const g = this.ggufTexts?.[id];
    if (g === undefined || LONE_SURROGATE.test(g)) return utf8Decoder.decode(this.pieces[id]!);
    const text = g.includes(SPM_SPACE) ? g.split(SPM_SPACE).join(" ") : g;
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new QuantlabError("E_ARG", `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }
}

interface PairEntry {
  score: number;
  left: number;
  right: number;
  leftTok: number;
  rightTok: number;
  id: number;
}

/** Binary max-heap on (score desc, left position asc): run.c's "best score, leftmost on ties". */
class PairHeap {
  private readonly a: PairEntry[] = [];
  private static before(x: PairEntry, y: PairEntry): boolean {
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }
  push(e: PairEntry): void {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!PairHeap.before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): PairEntry | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && PairHeap.before(a[l]!, a[m]!)) m = l;
        if (r < a.length && PairHeap.before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
