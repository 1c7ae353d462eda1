/**
 * One shared WebAssembly.Memory and a bump allocator over it (the kernels are built with
 * AssemblyScript minimal runtime, they never allocate). Prepared weights, activation scratch and the worker-pool
 * control block all live here, so workers see everything by byte offset. Shared memory never moves,
 * but growing it makes a new, longer SharedArrayBuffer: views are re-created when the length changes.
 * One memory holds at most 4 GiB (65536 pages) in wasm32 (shared/notes/kernels.md §6).
 */
import { QuantlabError } from "../../core/errors.js";

const PAGE = 65536;
/** wasm32 limit: 65536 pages = 4 GiB */
export const MAX_PAGES = 65536;

export class WasmArena {
  readonly memory: WebAssembly.Memory;
  readonly maxPages: number;
  private top: number;
  private viewLength = -1;
  private _u8!: Uint8Array;
  private _f32!: Float32Array;
  private _u32!: Uint32Array;
  private _i32!: Int32Array;

  constructor(base: number, opts: { initialPages?: number; maxPages?: number } = {}) {
    this.maxPages = Math.min(opts.maxPages ?? MAX_PAGES, MAX_PAGES);
    const initial = Math.max(1, Math.min(opts.initialPages ?? 64, this.maxPages));
    this.memory = new WebAssembly.Memory({ initial, maximum: this.maxPages, shared: true });
    this.top = align(base, 64);
    this.refresh();
  }

  /** bytes allocated so far (including the module's static data below the heap base) */
  get used(): number {
    return this.top;
  }

  /** Allocates `bytes` (aligned to `alignment`), growing the memory; throws E_VALUE when past the cap. */
  alloc(bytes: number, alignment = 64, what = "buffer"): number {
    const off = align(this.top, alignment);
    const end = off + bytes;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const needPages = Math.ceil(end / PAGE);
      if (needPages > this.maxPages) {
        throw new QuantlabError("E_VALUE", `wasm backend: ${what} needs ${fmtMiB(bytes)}, but one WebAssembly memory holds at most ${fmtMiB(this.maxPages * PAGE)} (${fmtMiB(off)} already used); use a smaller model or a narrower weight type`);
      }
      // grow geometrically (fewer grow calls while loading a model), capped at the maximum
      const cur = have / PAGE;
      const target = Math.min(this.maxPages, Math.max(needPages, Math.ceil(cur * 1.25)));
      this.memory.grow(target - cur);
    }
    this.top = end;
    return off;
  }

  /** The SharedArrayBuffers this memory has handed out (one per length it grew to): typed arrays over any
   * of them are views into this memory. */
  private readonly buffers = new Set<ArrayBufferLike>();

  /** Does this typed array's buffer belong to this memory? */
  owns(buf: ArrayBufferLike): boolean {
    return this.buffers.has(buf);
  }

  /** A byte view of [off, off + bytes) (e.g. where a loader reads a tensor). */
  view(off: number, bytes: number): Uint8Array {
    this.refresh();
    return new Uint8Array(this._u8.buffer, off, bytes);
  }

  private refresh(): void {
    const buf = this.memory.buffer;
    this.buffers.add(buf);
    if (buf.byteLength === this.viewLength) return;
    this.viewLength = buf.byteLength;
    this._u8 = new Uint8Array(buf);
    this._f32 = new Float32Array(buf);
    this._u32 = new Uint32Array(buf);
    this._i32 = new Int32Array(buf);
  }
  get u8(): Uint8Array { this.refresh(); return this._u8; }
  get f32(): Float32Array { this.refresh(); return this._f32; }
  get u32(): Uint32Array { this.refresh(); return this._u32; }
  get i32(): Int32Array { this.refresh(); return this._i32; }
}

export function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function fmtMiB(b: number): string {
  return `${(b / 1048576).toFixed(1)} MiB`;
}
