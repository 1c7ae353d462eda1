/**
 * Structured mutations of model files for the fuzzing suite (test/fuzz/fuzz.test.ts, `npm run fuzz`).
 *
 * A mutation is plain data (fast-check generates and shrinks it): a kind, and a list of choices the
 * kind consumes (which field, which value). The mutators know each format's structure independently of
 * quantlab's readers — they walk GGUF headers, safetensors JSON headers, llama2.c headers and tokenizer
 * files themselves — so they aim at the fields a reader trusts (counts, lengths, dimensions, offsets,
 * types, ids) rather than flipping random bytes in tensor data that no reader interprets.
 */
import fc from "fast-check";

/** One mutation: `kind` picks the operator, `choices` feed its decisions (consumed cyclically). */
export interface Mutation {
  kind: number;
  choices: number[];
}

export const mutationArb: fc.Arbitrary<Mutation[]> = fc.array(
  fc.record({ kind: fc.nat(1000), choices: fc.array(fc.nat(), { minLength: 4, maxLength: 12 }) }),
  { minLength: 1, maxLength: 3 },
);

/** Cyclic reader over a mutation's choices. */
export class Choices {
  private i = 0;
  constructor(private readonly xs: number[]) {}
  next(n: number): number {
    if (n <= 0) return 0;
    const v = this.xs[this.i++ % this.xs.length]! + Math.floor(this.i / this.xs.length) * 7919;
    return v % n;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.next(a.length)]!;
  }
  chance(pct: number): boolean {
    return this.next(100) < pct;
  }
}

// ---------------------------------------------------------------------------------------------------
// Binary fields

interface Field {
  off: number;
  width: 1 | 4 | 8;
  role: string;
}

function interestingInt(c: Choices, orig: bigint, width: 1 | 4 | 8, fileSize: number): bigint {
  const max = (1n << BigInt(8 * width)) - 1n;
  const list: bigint[] = [
    0n, 1n, 2n, 3n, 7n, 8n, 31n, 32n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn,
    0x100000000n, 1n << 53n, (1n << 53n) + 1n, 1n << 62n, 1n << 63n, max, 4194304n, 5000000n, 1000000000n,
    BigInt(fileSize), BigInt(fileSize) + 1n, BigInt(fileSize) - 1n, orig + 1n, orig - 1n, orig * 2n, orig * 1000n, orig / 2n, orig + 4096n,
  ];
  let v = c.pick(list);
  if (c.chance(10)) v = BigInt(c.next(0x7fffffff)) * BigInt(c.next(1 << 20) + 1);
  if (v < 0n) v = max;
  return v & max;
}

function writeInt(b: Uint8Array, f: Field, v: bigint): void {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (f.off + f.width > b.length) return;
  if (f.width === 1) dv.setUint8(f.off, Number(v & 0xffn));
  else if (f.width === 4) dv.setUint32(f.off, Number(v & 0xffffffffn), true);
  else dv.setBigUint64(f.off, v, true);
}

function readInt(b: Uint8Array, f: Field): bigint {
  if (f.off + f.width > b.length) return 0n; // an earlier mutation cut the file short
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (f.width === 1) return BigInt(dv.getUint8(f.off));
  if (f.width === 4) return BigInt(dv.getUint32(f.off, true));
  return dv.getBigUint64(f.off, true);
}

/** Generic byte-level operators: flip, truncate, insert, delete, duplicate a range. */
function byteOp(b: Uint8Array<ArrayBufferLike>, c: Choices, focusEnd: number): Uint8Array<ArrayBufferLike> {
  const end = Math.max(1, Math.min(b.length, focusEnd));
  switch (c.next(6)) {
    case 0: {
      const out = b.slice();
      const n = 1 + c.next(8);
      for (let i = 0; i < n; i++) out[c.next(end)] ^= 1 << c.next(8);
      return out;
    }
    case 1: return b.slice(0, c.chance(70) ? c.next(end) : c.next(b.length));
    case 2: {
      const at = c.next(end);
      const ins = new Uint8Array(1 + c.next(64)).map(() => c.next(256));
      const out = new Uint8Array(b.length + ins.length);
      out.set(b.subarray(0, at));
      out.set(ins, at);
      out.set(b.subarray(at), at + ins.length);
      return out;
    }
    case 3: {
      const at = c.next(end);
      const n = Math.min(1 + c.next(64), b.length - at);
      const out = new Uint8Array(b.length - n);
      out.set(b.subarray(0, at));
      out.set(b.subarray(Math.min(b.length, at + n)), at);
      return out;
    }
    case 4: {
      const out = b.slice();
      const at = c.next(end);
      out.fill(c.pick([0, 0xff, 0x41]), at, Math.min(out.length, at + 1 + c.next(32)));
      return out;
    }
    default: {
      // append junk or a second copy of the header region
      const extra = c.chance(50) ? b.subarray(0, end) : new Uint8Array(1 + c.next(1024)).map(() => c.next(256));
      const out = new Uint8Array(b.length + extra.length);
      out.set(b);
      out.set(extra, b.length);
      return out;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// GGUF

interface GgufLayout {
  fields: Field[];
  /** value fields of numeric KVs, by key */
  kv: Map<string, Field>;
  headerEnd: number;
}

const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Walks a well-formed GGUF header (the unmutated base), recording every field a reader trusts. */
export function ggufLayout(b: Uint8Array): GgufLayout {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: Field[] = [];
  const kv = new Map<string, Field>();
  let p = 4;
  const f = (width: 1 | 4 | 8, role: string): Field => {
    const x = { off: p, width, role };
    fields.push(x);
    p += width;
    return x;
  };
  f(4, "version");
  const nT = Number(readInt(b, f(8, "n_tensors")));
  const nKv = Number(readInt(b, f(8, "n_kv")));
  const str = (role: string): string => {
    const len = Number(readInt(b, f(8, `${role} length`)));
    const s = new TextDecoder().decode(b.subarray(p, p + len));
    p += len;
    return s;
  };
  const value = (type: number, key: string, depth: number): void => {
    if (type === 8) { str(`${key} string`); return; }
    if (type === 9) {
      const it = Number(readInt(b, f(4, `${key} item type`)));
      const n = Number(readInt(b, f(8, `${key} count`)));
      if (it === 8) for (let i = 0; i < n; i++) {
        // record only a few string lengths of long arrays (the vocabulary): enough targets, bounded lists
        if (i < 8 || i === n - 1) str(`${key}[${i}]`);
        else { const len = Number(dv.getBigUint64(p, true)); p += 8 + len; }
      } else if (it === 9) for (let i = 0; i < n; i++) value(9, key, depth + 1);
      else p += n * (SCALAR_BYTES[it] ?? 1);
      return;
    }
    const w = SCALAR_BYTES[type] ?? 4;
    if (w === 4 || w === 8 || w === 1) {
      const x = f(w as 1 | 4 | 8, `${key} value`);
      if (depth === 0) kv.set(key, x);
    } else p += w;
  };
  for (let i = 0; i < nKv; i++) {
    const key = str("key");
    const type = Number(readInt(b, f(4, `${key} type`)));
    value(type, key, 0);
  }
  for (let i = 0; i < nT; i++) {
    str("tensor name");
    const nd = Number(readInt(b, f(4, "n_dims")));
    for (let d = 0; d < nd; d++) f(8, `dim ${d}`);
    f(4, "ggml type");
    f(8, "tensor offset");
  }
  return { fields, kv, headerEnd: p };
}

/** Keys a hostile file sets to something huge first (the examples and their siblings). */
const GGUF_TARGET_KEYS = [
  "llama.block_count", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
  "llama.context_length", "llama.vocab_size", "llama.rope.dimension_count", "llama.attention.key_length", "llama.rope.freq_base",
  "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "general.alignment", "general.file_type",
];

export function mutateGguf(base: Uint8Array, layout: GgufLayout, muts: Mutation[]): Uint8Array<ArrayBufferLike> {
  let b: Uint8Array<ArrayBufferLike> = base.slice();
  for (const m of muts) {
    const c = new Choices(m.choices);
    const kind = m.kind % 10;
    if (kind <= 3) {
      const fld = c.pick(layout.fields);
      writeInt(b, fld, interestingInt(c, readInt(b, fld), fld.width, b.length));
    } else if (kind <= 5) {
      const keys = GGUF_TARGET_KEYS.filter((k) => layout.kv.has(k));
      const fld = keys.length > 0 && c.chance(80) ? layout.kv.get(c.pick(keys))! : c.pick([...layout.kv.values()]);
      if (!fld) continue;
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      if (fld.off + fld.width > b.length) continue;
      if (fld.width === 4 && c.chance(30)) dv.setFloat32(fld.off, c.pick([NaN, Infinity, -1, 0, 1e30, -0]), true);
      else writeInt(b, fld, interestingInt(c, readInt(b, fld), fld.width, b.length));
    } else b = byteOp(b, c, c.chance(85) ? layout.headerEnd : b.length);
  }
  return b;
}

// ---------------------------------------------------------------------------------------------------
// JSON (safetensors headers, config.json, index, tokenizer.json, tokenizer_config.json)

function deep(n: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

const NASTY: unknown[] = [
  0, -1, 1, 2, 3, 1.5, -0.5, 64, 1e9, 4194304, 5e6, 2 ** 31, 2 ** 32, 2 ** 53, 1e308, -1e308, 1e-320,
  "", "x", "A", "B", "a b", "Sequence", "SpecialToken", "BPE", "Unigram", "WordPiece", "llama", "F32", "F16", "I64", "BOOL", "model.safetensors", "../x.safetensors", "<s>", "\u2581",
  true, false, null, [], {}, [true], [1e9], [0, 1e9], [-1], ["a", "b"], { type: "Sequence" }, { type: "Strip", content: " ", start: 1e9, stop: 0 },
  { type: "FixedLength", length: 0 }, { SpecialToken: true }, { Sequence: { id: "C", type_id: 0 } }, { Regex: "(" }, { String: "" },
  "a".repeat(70000), deep(100),
];

type Json = unknown;
type Slot = { parent: Record<string, Json> | Json[]; key: string | number };

/** Walks down from the root, stopping at each level with some probability: every section gets its share. */
function pickSlot(root: Json, c: Choices): Slot | undefined {
  let parent: Record<string, Json> | Json[] | undefined;
  let key: string | number | undefined;
  let node = root;
  for (let depth = 0; depth < 12; depth++) {
    const isArr = Array.isArray(node);
    const isObj = typeof node === "object" && node !== null && !isArr;
    if (!isArr && !isObj) break;
    const keys: (string | number)[] = isArr ? (node as Json[]).map((_, i) => i) : Object.keys(node as object);
    if (keys.length === 0) break;
    if (parent !== undefined && c.chance(30)) break;
    parent = node as Record<string, Json> | Json[];
    key = c.pick(keys);
    node = (node as Record<string | number, Json>)[key as string];
  }
  return parent === undefined ? undefined : { parent, key: key! };
}

/** One structural JSON mutation, in place (returns the root, which may be replaced). */
export function mutateJsonValue(root: Json, c: Choices): Json {
  // every value taken from NASTY is a copy: a shared one mutated later would change the list itself
  const s = pickSlot(root, c);
  if (!s) return structuredClone(c.pick(NASTY));
  const p = s.parent as Record<string | number, Json>;
  switch (c.next(7)) {
    case 0: case 1: case 2:
      p[s.key] = structuredClone(c.pick(NASTY));
      break;
    case 3:
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
      else delete p[s.key];
      break;
    case 4: {
      // a number nudged: off-by-one and order-of-magnitude errors
      const v = p[s.key];
      if (typeof v === "number") p[s.key] = c.pick([v + 1, v - 1, v * 2, v * 1000, -v, v + 0.5, v * 65536]);
      else p[s.key] = structuredClone(c.pick(NASTY));
      break;
    }
    case 5: {
      // a value from elsewhere in the document
      const other = pickSlot(root, c);
      if (other) p[s.key] = structuredClone((other.parent as Record<string | number, Json>)[other.key]);
      break;
    }
    default:
      if (Array.isArray(s.parent)) s.parent.push(structuredClone(s.parent[c.next(s.parent.length)] ?? null));
      else p[`${String(s.key)}_${c.next(10)}`] = structuredClone(c.pick(NASTY));
  }
  return root;
}

export function mutateJsonText(text: string, muts: Mutation[]): string {
  let root: Json = JSON.parse(text);
  let raw: string | undefined;
  for (const m of muts) {
    const c = new Choices(m.choices);
    if (m.kind % 10 < 8) root = mutateJsonValue(root, c);
    else {
      // textual damage: truncated or spliced JSON
      const t = raw ?? JSON.stringify(root);
      const at = c.next(t.length);
      raw = c.chance(50) ? t.slice(0, at) : t.slice(0, at) + c.pick(["{", "}", "[", "]", ",", '"', "\\", "\u0000", "1e999"]) + t.slice(at);
    }
  }
  return raw ?? JSON.stringify(root);
}

// ---------------------------------------------------------------------------------------------------
// safetensors

export function mutateSafetensors(base: Uint8Array, muts: Mutation[]): Uint8Array<ArrayBufferLike> {
  const dv = new DataView(base.buffer, base.byteOffset, base.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const headerText = new TextDecoder().decode(base.subarray(8, 8 + n));
  let b: Uint8Array<ArrayBufferLike> = base;
  const jsonMuts = muts.filter((m) => m.kind % 10 < 7);
  if (jsonMuts.length > 0) {
    const text = mutateJsonText(headerText.trimEnd(), jsonMuts);
    const enc = new TextEncoder().encode(text);
    const keepLength = new Choices(jsonMuts[0]!.choices).chance(10);
    const len = keepLength ? n : enc.length;
    const out = new Uint8Array(8 + enc.length + (b.length - 8 - n));
    new DataView(out.buffer).setBigUint64(0, BigInt(len), true);
    out.set(enc, 8);
    out.set(b.subarray(8 + n), 8 + enc.length);
    b = out;
  }
  for (const m of muts.filter((m) => m.kind % 10 >= 7)) {
    const c = new Choices(m.choices);
    if (c.chance(30)) {
      const out = b.slice();
      writeInt(out, { off: 0, width: 8, role: "header length" }, interestingInt(c, BigInt(n), 8, b.length));
      b = out;
    } else b = byteOp(b, c, c.chance(70) ? 8 + n : b.length);
  }
  return b;
}

// ---------------------------------------------------------------------------------------------------
// llama2.c

export function mutateLlama2c(base: Uint8Array, muts: Mutation[]): Uint8Array<ArrayBufferLike> {
  let b: Uint8Array<ArrayBufferLike> = base.slice();
  const v2 = new DataView(b.buffer).getUint32(0, true) === 0x616b3432;
  const o = v2 ? 8 : 0;
  const fields: Field[] = [];
  for (let i = 0; i < 7; i++) fields.push({ off: o + 4 * i, width: 4, role: `header int ${i}` });
  if (v2) fields.push({ off: 4, width: 4, role: "version" }, { off: o + 28, width: 1, role: "shared_classifier" }, { off: o + 29, width: 4, role: "group_size" });
  for (const m of muts) {
    const c = new Choices(m.choices);
    if (m.kind % 10 < 6) {
      const f = c.pick(fields);
      // signed ints: negative values matter (vocab_size < 0 means an unshared classifier)
      const v = c.chance(20) ? BigInt.asUintN(32, -BigInt(1 + c.next(1000))) : interestingInt(c, readInt(b, f), f.width, b.length);
      writeInt(b, f, v);
    } else b = byteOp(b, c, c.chance(60) ? (v2 ? 256 : 28) : b.length);
  }
  return b;
}

/** tok.bin: max_token_length, then per token (f32 score, i32 len, bytes). */
export function mutateLlama2cTokenizer(base: Uint8Array, muts: Mutation[]): Uint8Array<ArrayBufferLike> {
  const fields: Field[] = [{ off: 0, width: 4, role: "max_token_length" }];
  const dv = new DataView(base.buffer, base.byteOffset, base.byteLength);
  for (let p = 4; p + 8 <= base.length;) {
    fields.push({ off: p, width: 4, role: "score" }, { off: p + 4, width: 4, role: "len" });
    p += 8 + dv.getInt32(p + 4, true);
  }
  let b: Uint8Array<ArrayBufferLike> = base.slice();
  for (const m of muts) {
    const c = new Choices(m.choices);
    if (m.kind % 10 < 6) {
      const f = c.pick(fields);
      if (f.off + 4 > b.length) continue;
      if (f.role === "score" && c.chance(50)) new DataView(b.buffer).setFloat32(f.off, c.pick([NaN, Infinity, -Infinity, 1e38, -1e10]), true);
      else writeInt(b, f, c.chance(20) ? BigInt.asUintN(32, -BigInt(1 + c.next(1000))) : interestingInt(c, readInt(b, f), 4, b.length));
    } else b = byteOp(b, c, b.length);
  }
  return b;
}
