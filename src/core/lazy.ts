/**
 * Data read on first use: the bytes of a tensor stay in their file until something reads `Tensor.data`,
 * a ggml weight's `data` or a QTensor's arrays; they are then cached until `release()`. io/ readers make
 * these over synchronous byte sources (io/lazy.ts), so a model's weight map exists right after the header
 * is parsed, with every name, kind, dtype and shape, and a command that touches one tensor reads only it.
 *
 * The load is synchronous on purpose: weights are read from deep inside synchronous code (a backend's
 * `prepare`, a quantizer's loop), and every such caller would otherwise have to become async.
 */

/** What a loader returns: the value, and whether its memory belongs to someone else. */
export interface LazyLoaded<T> {
  value: T;
  /**
   * The bytes live where they cannot be given back or read again (caller-placed WebAssembly memory,
   * or a source without synchronous reads): `release()` keeps them.
   */
  pinned?: boolean;
  /** Called when `release()` drops this value: its memory may be reused from then on (a buffer pool's
   * give-back). Only for values no one keeps past a release. */
  onRelease?: () => void;
}

export class LazyData<T> {
  private value: T | undefined;
  private pinned = false;
  private onRelease: (() => void) | undefined;

  /**
   * @param fileBytes bytes the loader reads from its source (what a load costs, for accounting)
   * @param load reads and decodes; throws a QuantlabError naming the file and tensor when it cannot
   * @param readBytes when the value is a plain view of the file's bytes (one range, no decoding): reads
   *   `dst.length` of those bytes from `byteOffset` into `dst` without loading (or caching) the value, so a
   *   streaming consumer reads each part once, straight into its own buffer (see weightByteReader)
   */
  constructor(readonly fileBytes: number, private readonly load: () => LazyLoaded<T>, readonly readBytes?: (byteOffset: number, dst: Uint8Array) => void) {}

  get(): T {
    if (this.value !== undefined) return this.value;
    const r = this.load();
    this.value = r.value;
    this.pinned = r.pinned === true;
    this.onRelease = r.onRelease;
    return r.value;
  }

  /** Sets the value without calling the loader (sources read ahead of time, asynchronously). */
  fill(value: T, pinned: boolean): void {
    this.value = value;
    this.pinned = pinned;
    this.onRelease = undefined;
  }

  get loaded(): boolean {
    return this.value !== undefined;
  }

  /**
   * Drops the cached value so its memory can be collected; the next `get()` reads it again. Returns
   * false when nothing was dropped (not loaded, or pinned). A value that was modified in place comes back
   * as the file's bytes: release only what you did not write to.
   */
  release(): boolean {
    if (this.value === undefined || this.pinned) return false;
    this.value = undefined;
    const give = this.onRelease;
    this.onRelease = undefined;
    give?.();
    return true;
  }
}

/**
 * Owner object (a Tensor, a ggml weight record, a QTensor) → its lazy data. A side table rather than a
 * property, so spreading or JSON-printing a weight record never copies or exposes the slot.
 */
const slots = new WeakMap<object, LazyData<unknown>>();

export function attachLazy(owner: object, lazy: LazyData<unknown>): void {
  slots.set(owner, lazy);
}

export function lazyOf(owner: object): LazyData<unknown> | undefined {
  return slots.get(owner);
}
