/**
 * Byte sources: parsers read through this interface so the same code reads files (io/node), in-memory
 * buffers, and HTTP ranges (browser, hub). Offsets are byte offsets; reads past the end are errors.
 */
import { QuantlabError } from "../core/errors.js";

export interface ByteSource {
  /** file name or URL, used in error messages */
  readonly name: string;
  readonly size: number;
  /** reads exactly `length` bytes at `offset` (throws E_FORMAT "truncated" when the source is shorter) */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** reads into `dst` (e.g. a view on WebAssembly memory) without an intermediate copy where possible */
  readInto(offset: number, dst: Uint8Array): Promise<void>;
  /**
   * The same, synchronously: what lazily loaded weights read through on first access (io/lazy.ts).
   * Optional: sources without it (HTTP ranges) have their tensors read at load instead. Files (io/node),
   * buffers, and in a browser Worker File slices through FileReaderSync can offer it.
   */
  readIntoSync?(offset: number, dst: Uint8Array): void;
  close?(): Promise<void>;
}

export class BufferSource implements ByteSource {
  constructor(readonly name: string, private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    return this.bytes.subarray(offset, offset + length);
  }
  async readInto(offset: number, dst: Uint8Array): Promise<void> {
    this.readIntoSync(offset, dst);
  }
  readIntoSync(offset: number, dst: Uint8Array): void {
    checkRange(this, offset, dst.length);
    dst.set(this.bytes.subarray(offset, offset + dst.length));
  }
}

export function checkRange(src: { name: string; size: number }, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > src.size) {
    throw new QuantlabError("E_FORMAT", `${src.name}: truncated: need bytes ${offset}..${offset + length} but the file has ${src.size}`);
  }
}
