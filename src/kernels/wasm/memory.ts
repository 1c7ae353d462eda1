/**
 * Where the WASM backend's bytes live: shared WebAssembly.Memory "shards", each with its own kernel
 * instance for the calling thread. One wasm32 memory holds at most 4 GiB, so weights fill shard 0 up to
 * a limit (leaving room for activation scratch), then shard 1, and so on; a tensor never straddles
 * shards. Regions freed by `release` are reused (arena free list) before the last shard grows.
 * `placeTensor` hands a loader the spot to read a tensor into so that `prepare` uses it in place, and
 * `locate` recognises such arrays later.
 */
import { QuantlabError } from "../../core/errors.js";
import { f16Table32 } from "../../core/f16.js";
import { GGML_TYPES, GgmlType } from "../../ggml/types.js";
import { MAX_PAGES, WasmArena } from "./arena.js";
import type { NativeRow } from "./layouts.js";
import { instantiateKernels, type KernelExports } from "./module.js";
import type { PoolShard } from "./pool.js";

const PAGE = 65536;

/** One WebAssembly.Memory with the caller's kernel instance on it. */
export interface Shard {
  index: number;
  arena: WasmArena;
  kernels: KernelExports;
  /** byte offset of the f16 → f32 table the native kernels read scales through (0 until first needed) */
  lut: number;
  /** the shard as the calling thread's pool tasks see it */
  pool: PoolShard;
}

export interface ShardMemoryOptions {
  /** memory limits of each shard in 64 KiB pages (default maximum 65536 = 4 GiB, the wasm32 cap) */
  initialPages?: number;
  maxPages?: number;
  /** bytes of each shard kept free of weights for activation scratch (default min(256 MiB, ¼ of a shard)) */
  scratchReserveBytes?: number;
}

export class ShardedMemory {
  readonly shards: Shard[] = [];
  /** where the module's static data ends (the first byte an arena may hand out) */
  readonly heapBase: number;
  readonly maxPages: number;
  /** weights may fill a shard up to this byte offset; the rest is for scratch */
  readonly weightLimit: number;
  private readonly initialPages: number | undefined;
  /** called for every shard after the first (the pool hands it to the workers) */
  onNewShard: ((sh: Shard) => void) | undefined;

  constructor(private readonly module: WebAssembly.Module, opts: ShardMemoryOptions = {}) {
    // instantiate once on a throwaway memory to learn where static data ends, then on the real ones
    const probe = instantiateKernels(module, new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }));
    this.heapBase = probe.heap_base();
    this.maxPages = Math.min(opts.maxPages ?? MAX_PAGES, MAX_PAGES);
    this.initialPages = opts.initialPages;
    const cap = this.maxPages * PAGE;
    this.weightLimit = cap - Math.min(opts.scratchReserveBytes ?? 256 * 2 ** 20, Math.floor(cap / 4));
    this.shards.push(this.newShard());
  }

  /** shard 0 (the pool's control block, encoder scratch, the bandwidth probe) */
  get first(): Shard {
    return this.shards[0]!;
  }

  private newShard(): Shard {
    const arena = new WasmArena(this.heapBase, { initialPages: this.initialPages, maxPages: this.maxPages });
    const kernels = instantiateKernels(this.module, arena.memory);
    return { index: this.shards.length, arena, kernels, lut: 0, pool: { kernels, memory: arena.memory } };
  }

  /** The shard's f16 → f32 table (65536 f32, 256 KiB), made on first use. */
  lut(sh: Shard): number {
    if (sh.lut === 0) {
      sh.lut = sh.arena.alloc(65536 * 4, 64, "f16 table");
      sh.arena.f32.set(f16Table32(), sh.lut >>> 2);
    }
    return sh.lut;
  }

  /**
   * Allocates `bytes` for a weight: a freed hole under the weight limit in any shard, else the top of the
   * last shard while it stays under the limit, else a new shard. Throws E_VALUE when a single tensor is
   * larger than one shard can hold.
   */
  allocWeight(bytes: number, what: string): { shard: Shard; off: number } {
    for (const sh of this.shards) {
      const off = sh.arena.tryAlloc(bytes, 64, this.weightLimit, true);
      if (off !== undefined) return { shard: sh, off };
    }
    let sh = this.shards[this.shards.length - 1]!;
    const off = sh.arena.tryAlloc(bytes, 64, this.weightLimit);
    if (off !== undefined) return { shard: sh, off };
    if (this.heapBase + 64 + bytes > this.weightLimit) {
      throw new QuantlabError("E_VALUE", `wasm backend: ${what} needs ${mib(bytes)}, more than one WebAssembly memory takes for weights (${mib(this.weightLimit)} of a ${mib(this.maxPages * PAGE)} memory)`);
    }
    sh = this.newShard();
    this.shards.push(sh);
    this.onNewShard?.(sh);
    return { shard: sh, off: sh.arena.alloc(bytes, 64, what) };
  }

  /** Returns a region allocWeight (or the shard's arena) gave out. */
  free(shard: number, off: number): void {
    this.shards[shard]!.arena.free(off);
  }

  /** The shard and byte offset of an array that lives in one of our memories, else undefined. */
  locate(a: ArrayBufferView): { shard: Shard; off: number } | undefined {
    for (const sh of this.shards) {
      if (sh.arena.owns(a.buffer) && a.byteOffset + a.byteLength <= sh.arena.used) return { shard: sh, off: a.byteOffset };
    }
    return undefined;
  }

  /**
   * Where a loader should read a tensor of this type and shape so that `prepare` uses the bytes in place:
   * a view into wasm memory of exactly the tensor's byte length, or undefined when the backend would
   * convert or repack it anyway (`native` says which ggml types it runs on their file bytes). Only
   * matrices (2-D) are placed.
   */
  placeTensor(type: GgmlType, shape: readonly number[], name: string, native: (t: GgmlType) => NativeRow | undefined): Uint8Array | undefined {
    if (shape.length !== 2) return undefined;
    const [rows, cols] = shape as [number, number];
    if (type !== GgmlType.F32 && type !== GgmlType.F16 && !native(type)) return undefined;
    const { blockSize, bytesPerBlock } = GGML_TYPES[type];
    if (cols % blockSize !== 0) return undefined;
    const bytes = ((rows * cols) / blockSize) * bytesPerBlock;
    const { shard, off } = this.allocWeight(bytes, name);
    return shard.arena.view(off, bytes);
  }

  /** Memory use per shard (the top of each arena, weights and free holes included) and the weight limit. */
  stats(): { shards: number[]; free: number[]; weightLimit: number } {
    return { shards: this.shards.map((s) => s.arena.used), free: this.shards.map((s) => s.arena.freeBytes), weightLimit: this.weightLimit };
  }
}

export function mib(b: number): string {
  return `${(b / 1048576).toFixed(1)} MiB`;
}
