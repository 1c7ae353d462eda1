/**
 * One shared WebAssembly.Memory and an allocator over it (the kernels are built with AssemblyScript's
 * minimal runtime, they never allocate). Prepared weights, activation scratch and the worker-pool
 * control block all live here, so workers see everything by byte offset. Shared memory never moves,
 * but growing it makes a new, longer SharedArrayBuffer: views are re-created when the length changes.
 * One memory holds at most 4 GiB (65536 pages) in wasm32 (shared/notes/kernels.md §6), and it can never
 * shrink, so freed regions go on a free list (first fit, neighbours merged) that later allocations
 * reuse: weights prepared for a short time (calibration prepares a block's f32 linears, runs them,
 * changes them) then cost one block's worth of memory, not one per run. Allocation is a bump of the top
 * when no hole fits; freeing the topmost region lowers the top.
 */
import { QuantlabError } from "../../core/errors.js";

const PAGE = 65536;
/** wasm32 limit: 65536 pages = 4 GiB */
export const MAX_PAGES = 65536;

export class WasmArena {
  readonly memory: WebAssembly.Memory;
  readonly maxPages: number;
  private top: number;
  /** live allocations: offset → bytes (free() checks against it) */
  private readonly live = new Map<number, number>();
  /** free holes below `top`, sorted by offset, never adjacent (merged on free) */
  private holes: { off: number; end: number }[] = [];
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

  /** the top of allocated memory (including the module's static data below the heap base and free holes) */
  get used(): number {
    return this.top;
  }

  /** bytes in free holes below the top (reused by later allocations) */
  get freeBytes(): number {
    let n = 0;
    for (const h of this.holes) n += h.end - h.off;
    return n;
  }

  /** Allocates `bytes` (aligned to `alignment`): the first free hole that fits, else at the top, growing
   * the memory; throws E_VALUE when past the cap. */
  alloc(bytes: number, alignment = 64, what = "buffer"): number {
    bytes = Math.max(bytes, 1); // every allocation owns its offset (free() looks it up)
    const off = this.tryAlloc(bytes, alignment, Infinity);
    if (off !== undefined) return off;
    return this.allocTop(bytes, alignment, what);
  }

  /** Allocates like `alloc` but only where the region ends at or below `limit` (and, with `holesOnly`,
   * only in a free hole); undefined when nothing fits. */
  tryAlloc(bytes: number, alignment: number, limit: number, holesOnly = false): number | undefined {
    bytes = Math.max(bytes, 1);
    for (let i = 0; i < this.holes.length; i++) {
      const h = this.holes[i]!;
      const off = align(h.off, alignment);
      if (off + bytes > h.end || off + bytes > limit) continue;
      // keep what is left on either side as holes
      const rest: { off: number; end: number }[] = [];
      if (off > h.off) rest.push({ off: h.off, end: off });
      if (off + bytes < h.end) rest.push({ off: off + bytes, end: h.end });
      this.holes.splice(i, 1, ...rest);
      this.live.set(off, bytes);
      return off;
    }
    if (holesOnly || align(this.top, alignment) + bytes > Math.min(limit, this.maxPages * PAGE)) return undefined;
    return this.allocTop(bytes, alignment, "buffer");
  }

  /** Returns a region `alloc` gave out; its bytes may be handed out again. */
  free(off: number): void {
    const bytes = this.live.get(off);
    if (bytes === undefined) throw new QuantlabError("E_INTERNAL", `wasm arena: free of offset ${off}, which is not a live allocation`);
    this.live.delete(off);
    let start = off, end = off + bytes;
    // merge with the holes either side
    let i = 0;
    while (i < this.holes.length && this.holes[i]!.end < start) i++;
    if (i < this.holes.length && this.holes[i]!.end === start) {
      start = this.holes[i]!.off;
      this.holes.splice(i, 1);
    }
    if (i < this.holes.length && this.holes[i]!.off === end) {
      end = this.holes[i]!.end;
      this.holes.splice(i, 1);
    }
    if (end === this.top) this.top = start;
    else this.holes.splice(i, 0, { off: start, end });
  }

  private allocTop(bytes: number, alignment: number, what: string): number {
    const base = this.top;
    const off = align(base, alignment);
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
      this.grown = true;
    }
    // the alignment gap below the new region is a hole too (found again by first fit)
    if (off > base) this.holes.push({ off: base, end: off });
    this.top = end;
    this.live.set(off, bytes);
    return off;
  }

  /** The SharedArrayBuffers this memory has handed out (one per length it grew to): typed arrays over any
   * of them are views into this memory. */
  private readonly buffers = new Set<ArrayBufferLike>();
  /** the newest of them (the one most views are on): owns() tests it first */
  private current: ArrayBufferLike | undefined;

  /** Does this typed array's buffer belong to this memory? */
  owns(buf: ArrayBufferLike): boolean {
    return buf === this.current || this.buffers.has(buf);
  }

  /** A byte view of [off, off + bytes) (e.g. where a loader reads a tensor). */
  view(off: number, bytes: number): Uint8Array {
    this.refresh();
    return new Uint8Array(this._u8.buffer, off, bytes);
  }

  /** set when this arena grew its memory since the views were made: only `allocTop` grows it (the kernels never
   * allocate, workers never grow), so the getters below — they run on every kernel call, a decode token makes
   * hundreds — skip the `memory.buffer` read (a host call, measurable per token) while it is clear */
  private grown = true;

  private refresh(): void {
    if (!this.grown) return;
    this.grown = false;
    const buf = this.memory.buffer;
    this.buffers.add(buf);
    this.current = buf;
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
