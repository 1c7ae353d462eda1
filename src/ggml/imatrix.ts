/**
 * Importance matrices as llama.cpp's `llama-imatrix` tool makes them (tools/imatrix/imatrix.cpp): for each
 * weight matrix `blk.*` that multiplies activations, the mean over all calibration tokens of x_j² for every
 * input column j. Weights that share an input (attn_q/k/v; ffn_gate/up) get the same vector. The output
 * projection is left out (llama-imatrix only collects it with --process-output) and the token embedding
 * is a row lookup, not a product, so neither has one. llama-quantize passes the vector to
 * `ggml_quantize_chunk` as the per-column weight of the scale searches (quantizeRow's `imatrix`).
 *
 * This file: the accumulator (sums in float64, one count per token) and the legacy `.dat` file format
 * llama-imatrix writes with `--output-format dat` (and did by default before 2025-07):
 *   int32 n_entries; per entry: int32 name_len, name bytes, int32 ncall, int32 nval, f32[nval] values
 *   (values = mean x² · ncall, so the mean is value / ncall); optionally int32 chunk count and a dataset name.
 * The GGUF form (`<name>.in_sum2` and `<name>.counts` tensors) is read by io/imatrix-file.ts.
 */
import { QuantlabError } from "../core/errors.js";

/** Tensor name → mean squared activation per input column (length = the tensor's row width). */
export type Imatrix = Map<string, Float32Array>;

/** Sums x² per column over tokens, for named groups of weights that share one input. */
export class ImatrixAccumulator {
  private readonly sums = new Map<string, Float64Array>(); // (width) Σ x² per column
  private readonly counts = new Map<string, number>(); // tokens seen
  private readonly members = new Map<string, readonly string[]>(); // group → weight names

  /** sumSquares: a backend's kernel for the sums (WASM: the same bits as the loop below, 2–6.5× faster measured at widths 256–768), else the loop */
  constructor(private readonly sumSquares?: (x: Float32Array, n: number, width: number, sums: Float64Array) => void) {}

  /** Declares a group (e.g. "blk.0.attn_in") and the weight names that read its input. */
  define(group: string, width: number, names: readonly string[]): void {
    this.sums.set(group, new Float64Array(width));
    this.counts.set(group, 0);
    this.members.set(group, names);
  }

  /** Adds n rows of `width` activations (x is (n, width)). */
  add(group: string, x: Float32Array, n: number, width: number): void {
    const s = this.sums.get(group);
    if (!s) throw new QuantlabError("E_ARG", `imatrix: unknown input group ${group}`);
    if (s.length !== width) throw new QuantlabError("E_ARG", `imatrix: ${group} has width ${s.length}, got rows of ${width}`);
    if (this.sumSquares) this.sumSquares(x, n, width, s);
    else for (let i = 0; i < n; i++) {
      const o = i * width;
      for (let j = 0; j < width; j++) {
        const v = x[o + j]!;
        s[j] += v * v;
      }
    }
    this.counts.set(group, this.counts.get(group)! + n);
  }

  /** Tokens accumulated for a group. */
  count(group: string): number {
    return this.counts.get(group) ?? 0;
  }

  /** Mean x² per column, under every member weight's name (groups with no tokens are left out). */
  result(): Imatrix {
    const out: Imatrix = new Map();
    for (const [g, s] of this.sums) {
      const n = this.counts.get(g)!;
      if (n === 0) continue;
      const mean = new Float32Array(s.length);
      for (let j = 0; j < s.length; j++) mean[j] = s[j]! / n;
      for (const name of this.members.get(g)!) out.set(name, mean);
    }
    return out;
  }
}

/** Sanity limits for reading .dat files (a model has a few thousand weight matrices at most). */
const MAX_DAT_ENTRIES = 1 << 20;
const MAX_NAME_BYTES = 4096;

/** Parses llama-imatrix's legacy `.dat` file into mean squared activations per weight name. */
export function parseImatrixDat(bytes: Uint8Array, file = "imatrix.dat"): { imatrix: Imatrix; chunks?: number; dataset?: string } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  const need = (n: number, what: string) => {
    if (p + n > bytes.length) throw new QuantlabError("E_FORMAT", `${file}: truncated at byte ${p} reading ${what}`);
  };
  const i32 = (what: string) => {
    need(4, what);
    const v = dv.getInt32(p, true);
    p += 4;
    return v;
  };
  const n = i32("the entry count");
  if (n < 0 || n > MAX_DAT_ENTRIES) throw new QuantlabError("E_FORMAT", `${file}: ${n} entries is not a plausible count (not an imatrix .dat file?)`);
  const imatrix: Imatrix = new Map();
  const dec = new TextDecoder();
  for (let e = 0; e < n; e++) {
    const len = i32(`entry ${e}'s name length`);
    if (len <= 0 || len > MAX_NAME_BYTES) throw new QuantlabError("E_FORMAT", `${file}: entry ${e} has a name of ${len} bytes`);
    need(len, `entry ${e}'s name`);
    const name = dec.decode(bytes.subarray(p, p + len));
    p += len;
    const ncall = i32(`${name}: ncall`);
    const nval = i32(`${name}: nval`);
    if (nval < 0 || nval > 1 << 28) throw new QuantlabError("E_FORMAT", `${file}: ${name} has ${nval} values`);
    need(4 * nval, `${name}: values`);
    const v = new Float32Array(nval);
    for (let j = 0; j < nval; j++) {
      const x = dv.getFloat32(p + 4 * j, true);
      // llama-quantize: e[j] /= ncall (values were stored as mean · ncall)
      v[j] = ncall > 0 ? x / ncall : x;
      if (!Number.isFinite(v[j]!)) throw new QuantlabError("E_FORMAT", `${file}: ${name} value ${j} is not finite`);
    }
    p += 4 * nval;
    imatrix.set(name, v);
  }
  const out: { imatrix: Imatrix; chunks?: number; dataset?: string } = { imatrix };
  if (p + 4 <= bytes.length) {
    out.chunks = i32("the chunk count");
    if (p + 4 <= bytes.length) {
      const len = i32("the dataset name length");
      if (len > 0 && p + len <= bytes.length) out.dataset = dec.decode(bytes.subarray(p, p + len));
    }
  }
  return out;
}

/** Writes the legacy `.dat` form (what llama-quantize --imatrix reads), with ncall = chunks. */
export function formatImatrixDat(imatrix: Imatrix, chunks: number, dataset = ""): Uint8Array {
  const enc = new TextEncoder();
  const names = [...imatrix.keys()].sort();
  const ds = enc.encode(dataset);
  let size = 4 + 4 + 4 + ds.length;
  const encoded = names.map((n) => enc.encode(n));
  for (let i = 0; i < names.length; i++) size += 12 + encoded[i]!.length + 4 * imatrix.get(names[i]!)!.length;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let p = 0;
  dv.setInt32(p, names.length, true); p += 4;
  const ncall = Math.max(1, chunks);
  for (let i = 0; i < names.length; i++) {
    const v = imatrix.get(names[i]!)!;
    dv.setInt32(p, encoded[i]!.length, true); p += 4;
    out.set(encoded[i]!, p); p += encoded[i]!.length;
    dv.setInt32(p, ncall, true); p += 4;
    dv.setInt32(p, v.length, true); p += 4;
    for (let j = 0; j < v.length; j++, p += 4) dv.setFloat32(p, v[j]! * ncall, true);
  }
  dv.setInt32(p, chunks, true); p += 4;
  dv.setInt32(p, ds.length, true); p += 4;
  out.set(ds, p);
  return out;
}
