/**
 * The open files of one lazily loaded model (DESIGN.md data flow: headers first, tensors on demand).
 *
 * Readers parse headers, then describe each tensor as byte ranges of a source plus a decoder; the store
 * turns that into a LazyData (core/lazy.ts) that reads the ranges synchronously on first access. Sources
 * without synchronous reads (HTTP ranges, the browser's async File API) cannot do that, so `finishLoad`
 * reads their tensors up front, as every reader did before, and those stay in memory (pinned).
 * The files stay open until `close()` (Model.close); a read after that is an error naming file and tensor.
 */
import { QuantlabError, type ErrorCode } from "../core/errors.js";
import { LazyData } from "../core/lazy.js";
import { noProgress, type Progress } from "../core/progress.js";
import type { ByteSource } from "./source.js";

/** One contiguous run of a tensor's bytes in its file. */
export interface ByteRange {
  offset: number;
  byteLength: number;
}

/** Gives a destination of exactly `byteLength` bytes for a tensor's bytes (WASM placement), or undefined. */
export type PlaceBytes = () => Uint8Array | undefined;

/** Placement of one of several byte ranges (a quantized tensor's codes among its side arrays). */
export interface PlaceRange {
  range: number;
  place: PlaceBytes;
  /** keep the decoded value when released (default true). false: the value holds more than the placed
   * bytes (a QTensor's side arrays) and may be dropped; a later read places the range anew */
  pin?: boolean;
}

interface Pending {
  lazy: LazyData<unknown>;
  src: ByteSource;
  tensor: string;
  ranges: readonly ByteRange[];
  decode: (parts: Uint8Array[]) => unknown;
  place: PlaceRange | undefined;
}

export class TensorStore {
  private readonly sources = new Set<ByteSource>();
  /** tensors of sources without synchronous reads, read by finishLoad */
  private readonly upFront: Pending[] = [];
  private closed = false;

  /** Adds a source the model reads from (closed with the store). */
  add(src: ByteSource): ByteSource {
    this.sources.add(src);
    return src;
  }

  /**
   * Lazy data of one tensor: its byte ranges in `src`, read (in order) and handed to `decode` on first
   * access. `place` may supply the destination of the single range (or of range `place.range` of several);
   * bytes read into it are pinned. `raw`: the value is a plain view of the one range's bytes (no decoding
   * beyond the typed view), so partial reads may bypass it (LazyData.readBytes); never with a placement.
   */
  tensor<T>(src: ByteSource, tensor: string, ranges: readonly ByteRange[], decode: (parts: Uint8Array[]) => T, placeIn?: PlaceBytes | PlaceRange, raw = false): LazyData<T> {
    this.add(src);
    if (typeof placeIn === "function" && ranges.length !== 1) throw new QuantlabError("E_INTERNAL", `${src.name}: tensor "${tensor}": a placed tensor must be one byte range`);
    const place: PlaceRange | undefined = typeof placeIn === "function" ? { range: 0, place: placeIn } : placeIn;
    if (place && !(place.range >= 0 && place.range < ranges.length)) throw new QuantlabError("E_INTERNAL", `${src.name}: tensor "${tensor}": placed range ${place.range} of ${ranges.length}`);
    const fileBytes = ranges.reduce((a, r) => a + r.byteLength, 0);
    const readSync = src.readIntoSync?.bind(src);
    if (!readSync) {
      const lazy = new LazyData<T>(fileBytes, () => {
        throw new QuantlabError("E_INTERNAL", `${src.name}: tensor "${tensor}" was not read at load (the source has no synchronous reads)`);
      });
      this.upFront.push({ lazy: lazy as LazyData<unknown>, src, tensor, ranges, decode, place });
      return lazy;
    }
    const r0 = ranges[0];
    const readBytes = raw && !place && ranges.length === 1 && r0
      ? (byteOffset: number, dst: Uint8Array): void => {
        if (this.closed) throw new QuantlabError("E_IO", `${src.name}: tensor "${tensor}" read after the model was closed`);
        if (!(byteOffset >= 0 && byteOffset + dst.length <= r0.byteLength)) throw new QuantlabError("E_INTERNAL", `${src.name}: tensor "${tensor}": bytes ${byteOffset}..${byteOffset + dst.length} outside its ${r0.byteLength}`);
        try {
          readSync(r0.offset + byteOffset, dst);
        } catch (e) {
          throw readError(e, src.name, tensor);
        }
      }
      : undefined;
    return new LazyData<T>(fileBytes, () => {
      if (this.closed) throw new QuantlabError("E_IO", `${src.name}: tensor "${tensor}" read after the model was closed`);
      const dst = place?.place();
      const parts = ranges.map((r, i) => {
        const b = (i === place?.range ? dst : undefined) ?? new Uint8Array(r.byteLength);
        if (b.length !== r.byteLength) throw new QuantlabError("E_INTERNAL", `${src.name}: tensor "${tensor}": placed destination has ${b.length} bytes, the tensor ${r.byteLength}`);
        try {
          readSync(r.offset, b);
        } catch (e) {
          throw readError(e, src.name, tensor);
        }
        return b;
      });
      return { value: decode(parts), pinned: dst !== undefined && place!.pin !== false };
    }, readBytes);
  }

  /** Reads, now, every tensor of sources that cannot read synchronously (see the file comment). */
  async finishLoad(progress: Progress = noProgress): Promise<void> {
    if (this.upFront.length === 0) return;
    progress.start(this.upFront.length, "loading");
    for (const p of this.upFront.splice(0)) {
      const dst = p.place?.place();
      const parts: Uint8Array[] = [];
      for (const [i, r] of p.ranges.entries()) {
        try {
          if (dst && i === p.place!.range) {
            await p.src.readInto(r.offset, dst);
            parts.push(dst);
          } else parts.push(await p.src.read(r.offset, r.byteLength));
        } catch (e) {
          throw readError(e, p.src.name, p.tensor);
        }
      }
      // pinned: these bytes cannot be read again synchronously, so releaseWeight keeps them
      p.lazy.fill(p.decode(parts), true);
      progress.tick();
    }
    progress.done();
  }

  /** Closes every source (idempotent). Tensors already read stay usable; the rest fail when touched. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sources) await s.close?.();
  }
}

/** A failed tensor read as one line naming the file and the tensor (the source's own words after it). */
function readError(e: unknown, file: string, tensor: string): QuantlabError {
  const msg = (e as Error).message ?? String(e);
  const detail = msg.startsWith(`${file}: `) ? msg.slice(file.length + 2) : msg;
  const code: ErrorCode = e instanceof QuantlabError ? e.code : "E_IO";
  return new QuantlabError(code, `${file}: tensor "${tensor}": ${detail}`, { cause: e });
}
