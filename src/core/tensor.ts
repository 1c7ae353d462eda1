/**
 * Dense tensors over typed arrays. Shapes are row-major, outermost first: a linear layer's weight is
 * (nOut, nIn) and row r is data[r*nIn ... (r+1)*nIn). f16/bf16 are stored as raw Uint16 bits.
 */
import { QuantlabError } from "./errors.js";
import { bf16ArrayToF32, f16ArrayToF32 } from "./f16.js";
import { LazyData, attachLazy } from "./lazy.js";

export type DType = "f32" | "f16" | "bf16" | "i8" | "u8" | "i16" | "i32";

export interface DTypeInfo {
  bytes: number;
  array: "Float32Array" | "Uint16Array" | "Int8Array" | "Uint8Array" | "Int16Array" | "Int32Array";
}

export const DTYPES: Record<DType, DTypeInfo> = {
  f32: { bytes: 4, array: "Float32Array" },
  f16: { bytes: 2, array: "Uint16Array" },
  bf16: { bytes: 2, array: "Uint16Array" },
  i8: { bytes: 1, array: "Int8Array" },
  u8: { bytes: 1, array: "Uint8Array" },
  i16: { bytes: 2, array: "Int16Array" },
  i32: { bytes: 4, array: "Int32Array" },
};

export type TypedData = Float32Array | Uint16Array | Int8Array | Uint8Array | Int16Array | Int32Array;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Creates a typed array view of `dtype` over bytes, zero-copy when the offset is aligned, else copies. */
export function viewAs(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, count: number): TypedData {
  const bytes = DTYPES[dtype].bytes;
  if (byteOffset % bytes !== 0) {
    const copy = new Uint8Array(count * bytes);
    copy.set(new Uint8Array(buffer, byteOffset, count * bytes));
    return viewAs(dtype, copy.buffer, 0, count);
  }
  switch (dtype) {
    case "f32": return new Float32Array(buffer, byteOffset, count);
    case "f16":
    case "bf16": return new Uint16Array(buffer, byteOffset, count);
    case "i8": return new Int8Array(buffer, byteOffset, count);
    case "u8": return new Uint8Array(buffer, byteOffset, count);
    case "i16": return new Int16Array(buffer, byteOffset, count);
    case "i32": return new Int32Array(buffer, byteOffset, count);
  }
}

export function allocate(dtype: DType, count: number): TypedData {
  return viewAs(dtype, new ArrayBuffer(count * DTYPES[dtype].bytes), 0, count);
}

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  private readonly own: TypedData | undefined;
  private readonly lazy: LazyData<TypedData> | undefined;

  /**
   * `data` is the elements, or a LazyData that reads them on first access (io/ readers; the loader
   * returns exactly numel(shape) elements of `dtype`).
   */
  constructor(dtype: DType, shape: readonly number[], data?: TypedData | LazyData<TypedData>) {
    const n = numel(shape);
    this.dtype = dtype;
    this.shape = [...shape];
    if (data instanceof LazyData) {
      this.own = undefined;
      this.lazy = data;
      attachLazy(this, data);
      return;
    }
    this.own = data ?? allocate(dtype, n);
    this.lazy = undefined;
    if (this.own.length !== n) {
      throw new QuantlabError("E_FORMAT", `tensor data has ${this.own.length} elements but shape [${shape.join(", ")}] needs ${n}`);
    }
  }

  /** The elements; for a lazily loaded tensor the first access reads them from the file (then cached). */
  get data(): TypedData {
    return this.own ?? this.lazy!.get();
  }

  static fromF32(shape: readonly number[], data: Float32Array): Tensor {
    return new Tensor("f32", shape, data);
  }

  // from the shape, so that asking for sizes never reads a lazy tensor's bytes
  get numel(): number {
    return numel(this.shape);
  }

  get byteLength(): number {
    return this.numel * DTYPES[this.dtype].bytes;
  }

  /** Number of rows when seen as a matrix (all but the last dim) and the row length. */
  get rows(): number {
    return this.shape.length === 0 ? 1 : this.numel / this.cols;
  }
  get cols(): number {
    return this.shape.length === 0 ? 1 : this.shape[this.shape.length - 1]!;
  }

  /** Zero-copy view of rows [start, start+count) of a 2-D (or higher, flattened) tensor. */
  rowsView(start: number, count: number): Tensor {
    const c = this.cols;
    const sub = this.data.subarray(start * c, (start + count) * c) as TypedData;
    return new Tensor(this.dtype, [count, c], sub);
  }

  /** Zero-copy reshape. */
  reshape(shape: readonly number[]): Tensor {
    if (numel(shape) !== this.numel) {
      throw new QuantlabError("E_ARG", `cannot reshape [${this.shape.join(", ")}] to [${shape.join(", ")}]`);
    }
    return new Tensor(this.dtype, shape, this.data);
  }

  /** f32 copy (or the same array when already f32 and `copy` is false). */
  toF32(copy = false): Float32Array {
    const d = this.data;
    switch (this.dtype) {
      case "f32": return copy ? new Float32Array(d as Float32Array) : (d as Float32Array);
      case "f16": return f16ArrayToF32(d as Uint16Array);
      case "bf16": return bf16ArrayToF32(d as Uint16Array);
      default: return Float32Array.from(d as ArrayLike<number>);
    }
  }
}
