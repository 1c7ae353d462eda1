/**
 * The WASM backend's KV cache: f32 keys and values in one of the backend's shared memories, laid out as
 * the reference cache (model/kv-cache.ts F32KvCache) lays out its arrays — (nLayers, nKvHeads, capacity,
 * headDim), so each KV head of a layer is one dense (positions, headDim) matrix — and a batched `attend`
 * that runs a whole chunk's causal attention in WASM SIMD (assembly/attention.ts), its (position, head)
 * items split across the worker pool when the chunk is big enough. `store`, `scores` and `mix` work on
 * views of the same memory in TypeScript (per-head callers such as tests; the forward pass uses `attend`).
 * Isomorphic.
 */
import { QuantlabError } from "../../core/errors.js";
import type { KvCache } from "../types.js";
import {
  K_ATTN_F32, A_Q, A_OUT, A_K, A_V, A_N, A_POS0, A_NHEADS, A_KVMUL, A_HD, A_CAP, A_SCALE, A_SCRATCH, A_SLOTS, A_NSLOTS, ATTN_DESC_WORDS,
} from "../../../assembly/abi.js";
import type { Shard, ShardedMemory } from "./memory.js";
import { runJobPart, type Dispatcher } from "./pool.js";
import { POOL_TASKS } from "./tasks.js";

/** What a cache needs of its backend. */
export interface KvCacheHost {
  memory: ShardedMemory;
  pool: Dispatcher;
  /** jobs doing less work than this many bytes of K/V reads run on the calling thread alone */
  minParallelBytes(): number;
  /** throws once the backend is disposed */
  checkOpen(): void;
}

/** The regions a cache holds, kept apart from the cache so a finalizer can free them. */
interface Regions {
  memory: ShardedMemory;
  shard: number;
  /** K and V of every layer (allocWeight) */
  kv: number;
  /** descriptor, slot flags, score rows, and the query/output staging (arena allocations) */
  scratch: number[];
  freed: boolean;
}

function freeRegions(r: Regions): void {
  if (r.freed) return;
  r.freed = true;
  r.memory.free(r.shard, r.kv);
  for (const off of r.scratch) r.memory.free(r.shard, off);
}

/** a cache dropped without dispose() gives its wasm memory back when collected */
const finalizer = new FinalizationRegistry<Regions>(freeRegions);

export class WasmKvCache implements KvCache {
  readonly bytes: number;
  private readonly k: Float32Array; // (nLayers, nKvHeads, capacity, headDim), a view into wasm memory
  private readonly v: Float32Array; // (nLayers, nKvHeads, capacity, headDim)
  private readonly shard: Shard;
  private readonly regions: Regions;
  private readonly desc: number;
  private readonly scale: number;
  /** staging for q and the attention output, (n, nHeads·headDim) each, grown on demand */
  private stageCap = 0;
  private qOff = 0;
  private outOff = 0;

  /** A cache in `host`'s memory, or undefined when no memory can hold one this size. */
  static create(host: KvCacheHost, nLayers: number, capacity: number, nKvHeads: number, headDim: number, threads: number): WasmKvCache | undefined {
    for (const [what, x] of [["layers", nLayers], ["capacity", capacity], ["KV heads", nKvHeads], ["head dim", headDim]] as const) {
      if (!Number.isInteger(x) || x < 1) throw new QuantlabError("E_ARG", `wasm KV cache: ${what} ${x}: expected a positive integer`);
    }
    const elems = nLayers * nKvHeads * capacity * headDim;
    let at: { shard: Shard; off: number };
    try {
      at = host.memory.allocWeight(2 * elems * 4, "KV cache");
    } catch (e) {
      if (e instanceof QuantlabError && e.code === "E_VALUE") return undefined;
      throw e;
    }
    return new WasmKvCache(host, at, nLayers, capacity, nKvHeads, headDim, threads);
  }

  private constructor(
    private readonly host: KvCacheHost,
    at: { shard: Shard; off: number },
    readonly nLayers: number,
    readonly capacity: number,
    readonly nKvHeads: number,
    readonly headDim: number,
    threads: number,
  ) {
    const elems = nLayers * nKvHeads * capacity * headDim;
    this.shard = at.shard;
    const a = at.shard.arena;
    // views stay valid when the memory grows: a shared memory's old buffers keep aliasing it
    this.k = new Float32Array(a.memory.buffer, at.off, elems);
    this.v = new Float32Array(a.memory.buffer, at.off + elems * 4, elems);
    this.bytes = 2 * elems * 4;
    // one score row per thread that may run a chunk at once (+1 spare), each claimed by a busy flag
    const nSlots = threads + 1;
    this.desc = a.alloc(ATTN_DESC_WORDS * 4, 64, "attention descriptor");
    const slots = a.alloc(nSlots * 4, 64, "attention slots");
    const scores = a.alloc(nSlots * capacity * 4, 64, "attention scores");
    a.i32.fill(0, slots >>> 2, (slots >>> 2) + nSlots);
    this.regions = { memory: host.memory, shard: at.shard.index, kv: at.off, scratch: [this.desc, slots, scores], freed: false };
    finalizer.register(this, this.regions, this);
    const d = a.u32, o = this.desc >>> 2;
    d[o + A_K] = at.off; // per layer: + layer·(layer stride), set by attend
    d[o + A_HD] = headDim;
    d[o + A_CAP] = capacity;
    d[o + A_SCRATCH] = scores;
    d[o + A_SLOTS] = slots;
    d[o + A_NSLOTS] = nSlots;
    // run.c: score /= sqrtf(head_size), the square root rounded to f32 first
    this.scale = Math.fround(Math.sqrt(headDim));
    a.f32[o + A_SCALE] = this.scale;
  }

  private base(layer: number, kvHead: number): number {
    return (layer * this.nKvHeads + kvHead) * this.capacity * this.headDim;
  }

  private check(layer: number): void {
    if (this.regions.freed) throw new QuantlabError("E_ARG", "wasm KV cache: used after dispose()");
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.nLayers) throw new QuantlabError("E_ARG", `wasm KV cache: layer ${layer} is outside 0..${this.nLayers - 1}`);
  }

  store(layer: number, pos: number, k: Float32Array, v: Float32Array): void {
    this.check(layer);
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.capacity) throw new QuantlabError("E_ARG", `wasm KV cache: position ${pos} is outside 0..${this.capacity - 1}`);
    const hd = this.headDim;
    const K = this.k, V = this.v;
    if (k.length < this.nKvHeads * hd || v.length < this.nKvHeads * hd) throw new QuantlabError("E_ARG", `wasm KV cache: k and v need ${this.nKvHeads * hd} elements (have ${k.length}, ${v.length})`);
    const a = this.shard.arena;
    if (a.owns(k.buffer) && a.owns(v.buffer)) {
      // k and v in this cache's memory (a backend's residentF32): one WASM call copies every head's rows
      const o = this.base(layer, 0) + pos * hd;
      this.shard.kernels.kv_store_f32(K.byteOffset + o * 4, V.byteOffset + o * 4, k.byteOffset, v.byteOffset, this.nKvHeads, hd, this.capacity * hd * 4);
      return;
    }
    for (let g = 0; g < this.nKvHeads; g++) {
      const o = this.base(layer, g) + pos * hd;
      const s = g * hd;
      for (let j = 0; j < hd; j++) {
        K[o + j] = k[s + j]!;
        V[o + j] = v[s + j]!;
      }
    }
  }

  scores(layer: number, kvHead: number, q: Float32Array, qOff: number, n: number, out: Float32Array): void {
    this.check(layer);
    const hd = this.headDim, K = this.k;
    let o = this.base(layer, kvHead);
    for (let t = 0; t < n; t++, o += hd) {
      let s = 0;
      for (let i = 0; i < hd; i++) s += q[qOff + i]! * K[o + i]!;
      out[t] = s;
    }
  }

  mix(layer: number, kvHead: number, p: Float32Array, n: number, out: Float32Array, outOff: number): void {
    this.check(layer);
    const hd = this.headDim, V = this.v;
    const b = this.base(layer, kvHead);
    for (let i = 0; i < hd; i++) {
      let s = 0;
      for (let t = 0, o = b + i; t < n; t++, o += hd) s += p[t]! * V[o]!;
      out[outOff + i] = s;
    }
  }

  attend(layer: number, q: Float32Array, pos0: number, n: number, nHeads: number, out: Float32Array): void {
    this.host.checkOpen();
    this.check(layer);
    const hd = this.headDim;
    const w = n * nHeads * hd;
    if (!Number.isInteger(nHeads) || nHeads < 1 || nHeads % this.nKvHeads !== 0) throw new QuantlabError("E_ARG", `wasm KV cache: ${nHeads} query heads is not a multiple of ${this.nKvHeads} KV heads`);
    if (!Number.isInteger(n) || n < 1 || !Number.isInteger(pos0) || pos0 < 0 || pos0 + n > this.capacity) {
      throw new QuantlabError("E_ARG", `wasm KV cache: positions ${pos0}..${pos0 + n - 1} are outside 0..${this.capacity - 1}`);
    }
    if (q.length < w || out.length < w) throw new QuantlabError("E_ARG", `wasm KV cache: q and out need ${n}×${nHeads * hd} elements (have ${q.length}, ${out.length})`);
    const a = this.shard.arena;
    // q and out in this cache's memory (a backend's residentF32) are read and written where they are, unless they overlap
    const qIn = a.owns(q.buffer);
    const outIn = a.owns(out.buffer) && (out.byteOffset + 4 * w <= q.byteOffset || q.byteOffset + 4 * w <= out.byteOffset || !qIn);
    if (!qIn || !outIn) this.stage(w);
    if (!qIn) a.f32.set(q.subarray(0, w), this.qOff >>> 2);
    const d = a.u32, o = this.desc >>> 2;
    const layerBytes = this.nKvHeads * this.capacity * hd * 4;
    d[o + A_Q] = qIn ? q.byteOffset : this.qOff;
    d[o + A_OUT] = outIn ? out.byteOffset : this.outOff;
    d[o + A_K] = this.regions.kv + layer * layerBytes;
    d[o + A_V] = this.regions.kv + this.bytes / 2 + layer * layerBytes;
    d[o + A_N] = n;
    d[o + A_POS0] = pos0;
    d[o + A_NHEADS] = nHeads;
    d[o + A_KVMUL] = nHeads / this.nKvHeads;
    const rows = n * nHeads;
    // work as bytes of K and V rows read (what minParallelBytes measures for weights): Σ_i (pos0 + i + 1) per head
    const work = 8 * hd * nHeads * (n * pos0 + (n * (n + 1)) / 2);
    if (work < this.host.minParallelBytes()) runJobPart(this.shard.pool, POOL_TASKS, K_ATTN_F32, this.desc, 0, rows);
    else this.host.pool.run([{ desc: this.desc, rows, shard: this.shard.index, task: K_ATTN_F32 }]);
    if (!outIn) out.set(a.f32.subarray(this.outOff >>> 2, (this.outOff >>> 2) + w));
  }

  /** q and output staging for `elems` f32 each */
  private stage(elems: number): void {
    if (elems <= this.stageCap) return;
    const a = this.shard.arena;
    const r = this.regions.scratch;
    if (this.stageCap > 0) {
      a.free(this.qOff);
      a.free(this.outOff);
      r.splice(r.indexOf(this.qOff), 1);
      r.splice(r.indexOf(this.outOff), 1);
    }
    const cap = Math.max(elems, 2 * this.stageCap);
    this.qOff = a.alloc(cap * 4, 64, "attention queries");
    this.outOff = a.alloc(cap * 4, 64, "attention output");
    r.push(this.qOff, this.outOff);
    this.stageCap = cap;
  }

  reset(): void {
    // positions are always written before they are read, so nothing needs clearing
  }

  dispose(): void {
    finalizer.unregister(this);
    freeRegions(this.regions);
  }
}
