/**
 * Saved reference logits ("QLGT" files), so a base model's distributions can be computed once and
 * compared against many quantized variants (`quantlab eval --save-logits`, `quantlab kld <file> …`).
 *
 * Layout (all little-endian):
 *   0   4 B  magic "QLGT"
 *   4   u32  version = 1
 *   8   u32  vocabSize
 *   12  u32  ctx          window size the logits were computed with (BOS + ctx−1 tokens)
 *   16  u32  nTokens      scored positions
 *   20  u32  bosId        token fed at position 0 of each window
 *   24  i32  targets[nTokens]          the token stream (each position's target; windows are
 *                                      consecutive runs of ctx−1 of them, see eval/windows.ts)
 *   24+4·nTokens  f32 logits[nTokens][vocabSize]   row-major, one row per scored position
 * The token stream and ctx are enough to rebuild every window's inputs, so no text is needed.
 */
import { QuantlabError } from "../core/errors.js";
import type { ByteSource } from "../io/source.js";
import type { LogitsSource } from "./kld.js";

export const LOGITS_MAGIC = 0x54474c51; // "QLGT" read as u32 LE
export const LOGITS_VERSION = 1;
export const LOGITS_HEADER_BYTES = 24;
/** 2^31 positions: a u32 count, and a byte offset that stays an exact double */
const MAX_TOKENS = 2 ** 31;

export interface LogitsFileHeader {
  vocabSize: number;
  ctx: number;
  nTokens: number;
  bosId: number;
}

export function encodeLogitsHeader(h: LogitsFileHeader, targets: Int32Array): Uint8Array {
  if (targets.length !== h.nTokens) throw new QuantlabError("E_INTERNAL", `logits file: ${targets.length} targets for ${h.nTokens} tokens`);
  const out = new Uint8Array(LOGITS_HEADER_BYTES + 4 * h.nTokens);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, LOGITS_MAGIC, true);
  dv.setUint32(4, LOGITS_VERSION, true);
  dv.setUint32(8, h.vocabSize, true);
  dv.setUint32(12, h.ctx, true);
  dv.setUint32(16, h.nTokens, true);
  dv.setUint32(20, h.bosId, true);
  for (let i = 0; i < h.nTokens; i++) dv.setInt32(LOGITS_HEADER_BYTES + 4 * i, targets[i]!, true);
  return out;
}

export function logitsFileBytes(h: LogitsFileHeader): number {
  return LOGITS_HEADER_BYTES + 4 * h.nTokens + 4 * h.nTokens * h.vocabSize;
}

export async function isLogitsFile(src: ByteSource): Promise<boolean> {
  if (src.size < 4) return false;
  const b = await src.read(0, 4);
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true) === LOGITS_MAGIC;
}

/** Reads saved logits row by row (in window order) through a ByteSource. */
export class SavedLogits implements LogitsSource {
  readonly header: LogitsFileHeader;
  readonly targets: Int32Array; // (nTokens)
  readonly maxRows = 64;
  private cursor = 0; // next global row
  private readonly dataOffset: number;

  private constructor(private readonly src: ByteSource, header: LogitsFileHeader, targets: Int32Array) {
    this.header = header;
    this.targets = targets;
    this.dataOffset = LOGITS_HEADER_BYTES + 4 * header.nTokens;
  }

  get vocabSize(): number {
    return this.header.vocabSize;
  }

  static async open(src: ByteSource): Promise<SavedLogits> {
    const name = src.name;
    if (src.size < LOGITS_HEADER_BYTES) throw new QuantlabError("E_FORMAT", `${name}: truncated: ${src.size} bytes, a logits file header needs ${LOGITS_HEADER_BYTES}`);
    const hb = await src.read(0, LOGITS_HEADER_BYTES);
    const dv = new DataView(hb.buffer, hb.byteOffset, LOGITS_HEADER_BYTES);
    if (dv.getUint32(0, true) !== LOGITS_MAGIC) throw new QuantlabError("E_FORMAT", `${name}: not a quantlab logits file (magic is not "QLGT")`);
    const version = dv.getUint32(4, true);
    if (version !== LOGITS_VERSION) throw new QuantlabError("E_UNSUPPORTED", `${name}: logits file version ${version} is not supported (only ${LOGITS_VERSION})`);
    const h: LogitsFileHeader = { vocabSize: dv.getUint32(8, true), ctx: dv.getUint32(12, true), nTokens: dv.getUint32(16, true), bosId: dv.getUint32(20, true) };
    if (h.vocabSize < 1 || h.ctx < 2 || h.nTokens < 1 || h.nTokens >= MAX_TOKENS || h.bosId >= h.vocabSize) {
      throw new QuantlabError("E_FORMAT", `${name}: bad logits file header (vocab ${h.vocabSize}, ctx ${h.ctx}, tokens ${h.nTokens}, bos ${h.bosId})`);
    }
    const need = logitsFileBytes(h);
    if (src.size !== need) {
      throw new QuantlabError("E_FORMAT", `${name}: ${src.size < need ? "truncated" : "wrong size"}: the header implies ${need} bytes but the file has ${src.size}`);
    }
    const tb = await src.read(LOGITS_HEADER_BYTES, 4 * h.nTokens);
    const tdv = new DataView(tb.buffer, tb.byteOffset, tb.byteLength);
    const targets = new Int32Array(h.nTokens);
    for (let i = 0; i < h.nTokens; i++) {
      const t = tdv.getInt32(4 * i, true);
      if (t < 0 || t >= h.vocabSize) throw new QuantlabError("E_FORMAT", `${name}: target ${i} = ${t} is outside the vocabulary`);
      targets[i] = t;
    }
    return new SavedLogits(src, h, targets);
  }

  /** Rows are served in file order; `inputs`/`pos` are checked against the saved stream by the caller. */
  async rows(_inputs: Int32Array, _pos: number, n: number): Promise<Float32Array> {
    const v = this.header.vocabSize;
    if (this.cursor + n > this.header.nTokens) throw new QuantlabError("E_ARG", `${this.src.name}: asked for rows beyond the ${this.header.nTokens} saved`);
    const bytes = await this.src.read(this.dataOffset + 4 * this.cursor * v, 4 * n * v);
    this.cursor += n;
    const out = new Float32Array(n * v);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n * v; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }

  rewind(): void {
    this.cursor = 0;
  }
}
