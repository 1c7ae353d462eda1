/**
 * GPTQ onto llama.cpp block types: the block scales come from ggml's own search (with the importance
 * matrix, i.e. exactly the bytes llama-quantize would write), then GPTQ (algos/gptq.ts, the PTQ
 * engineer's implementation, static groups) re-chooses every element's code column by column with
 * those scales fixed, spreading each rounding error over the columns not yet quantized through the
 * layer's input Hessian H = 2/N Σ x xᵀ. The result is an ordinary block of the same type (same size),
 * decoded by llama.cpp like any other; only the codes differ.
 *
 * Types whose value is affine in an unsigned binary code per element (Q2_K … Q6_K, Q4_0, Q4_1, Q5_0,
 * Q5_1) are supported. Where each element's code bits live is found once per type by probing the
 * decoder (flip one bit, see which single element moves and by how much), so no bit layout is written
 * twice.
 */
import { QuantlabError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import { dequantizeRow, quantizeRow } from "../ggml/codecs.js";
import { GGML_TYPES, GgmlType, ggmlTypeName } from "../ggml/types.js";
import { gptqQuantize } from "./gptq.js";
import type { LinalgKernels } from "../kernels/types.js";
import type { GroupQuantizer } from "./quantizer.js";

/** Where the code bits of each element of a block are: bit k of element e at byte pos[e·nBits + k], bit bit[…]. */
interface CodeLayout {
  blockSize: number;
  bytesPerBlock: number;
  nBits: number;
  pos: Int32Array; // (blockSize, nBits) byte offsets
  bit: Uint8Array; // (blockSize, nBits) bit index in the byte
}

const GPTQ_TYPES: ReadonlySet<GgmlType> = new Set([
  GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
  GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
]);

export function ggmlGptqSupports(t: GgmlType): boolean {
  return GPTQ_TYPES.has(t);
}

const layouts = new Map<GgmlType, CodeLayout>();

/** Finds each element's code bits by flipping every bit of a few real blocks and decoding. */
export function codeLayout(type: GgmlType): CodeLayout {
  const cached = layouts.get(type);
  if (cached) return cached;
  if (!GPTQ_TYPES.has(type)) throw new QuantlabError("E_UNSUPPORTED", `GPTQ on ggml blocks: ${ggmlTypeName(type)} is not supported`);
  const { blockSize: B, bytesPerBlock: nb } = GGML_TYPES[type];
  const found: Map<number, number>[] = Array.from({ length: B }, () => new Map()); // per element: bitpos → weight
  const rng = new Rng(1234);
  const x = new Float32Array(B);
  const block = new Uint8Array(nb);
  const base = new Float32Array(B);
  const moved = new Float32Array(B);
  for (let trial = 0; trial < 4; trial++) {
    rng.fillNormal(x, 1);
    quantizeRow(type, x, block, B);
    dequantizeRow(type, block, base, B);
    for (let byte = 0; byte < nb; byte++) {
      for (let b = 0; b < 8; b++) {
        block[byte]! ^= 1 << b;
        dequantizeRow(type, block, moved, B);
        block[byte]! ^= 1 << b;
        let e = -1;
        let n = 0;
        for (let i = 0; i < B; i++) if (moved[i] !== base[i]) { e = i; n++; }
        if (n !== 1) continue; // a scale bit (moves a whole sub-block) or a bit that changed nothing here
        const setDelta = block[byte]! & (1 << b) ? base[e]! - moved[e]! : moved[e]! - base[e]!;
        found[e]!.set(byte * 8 + b, setDelta);
      }
    }
  }
  let nBits = -1;
  const pos: number[] = [];
  const bit: number[] = [];
  for (let e = 0; e < B; e++) {
    const bits = [...found[e]!].sort((a, b) => Math.abs(a[1]) - Math.abs(b[1]));
    if (nBits < 0) nBits = bits.length;
    if (bits.length !== nBits || nBits === 0) throw new QuantlabError("E_INTERNAL", `${ggmlTypeName(type)}: element ${e} has ${bits.length} code bits, element 0 has ${nBits}`);
    const step = bits[0]![1];
    bits.forEach(([p, d], k) => {
      if (Math.abs(d / step - 2 ** k) > 1e-3 * 2 ** k) throw new QuantlabError("E_INTERNAL", `${ggmlTypeName(type)}: element ${e}'s code bit ${k} weighs ${d / step}`);
      pos.push(p >> 3);
      bit.push(p & 7);
    });
  }
  const l: CodeLayout = { blockSize: B, bytesPerBlock: nb, nBits, pos: Int32Array.from(pos), bit: Uint8Array.from(bit) };
  layouts.set(type, l);
  return l;
}

/** Writes codes (blockSize) into a block's code bits, leaving its scales as they are. */
export function setBlockCodes(type: GgmlType, block: Uint8Array, o: number, codes: ArrayLike<number>): void {
  const L = codeLayout(type);
  for (let e = 0; e < L.blockSize; e++) {
    const c = codes[e]!;
    for (let k = 0; k < L.nBits; k++) {
      const p = o + L.pos[e * L.nBits + k]!;
      const m = 1 << L.bit[e * L.nBits + k]!;
      if ((c >> k) & 1) block[p]! |= m;
      else block[p]! &= ~m;
    }
  }
}

/** The codes of a block's elements. */
export function blockCodes(type: GgmlType, block: Uint8Array, o: number, out: Int32Array): void {
  const L = codeLayout(type);
  for (let e = 0; e < L.blockSize; e++) {
    let c = 0;
    for (let k = 0; k < L.nBits; k++) if (block[o + L.pos[e * L.nBits + k]!]! & (1 << L.bit[e * L.nBits + k]!)) c |= 1 << k;
    out[e] = c;
  }
}

/**
 * GPTQ of one weight (rows, cols) onto `type`: scales from ggml's quantizer (with `imatrix` when given),
 * codes by GPTQ with Hessian h (cols × cols). Returns the blocks (rows · cols/blockSize · bytesPerBlock).
 */
export function gptqGgml(type: GgmlType, w: Float32Array, rows: number, cols: number, h: Float64Array, imatrix?: Float32Array, opts: { percDamp?: number; name?: string; kernels?: LinalgKernels } = {}): Uint8Array {
  const L = codeLayout(type);
  const B = L.blockSize;
  if (cols % B !== 0) throw new QuantlabError("E_ARG", `${opts.name ?? "weight"}: row width ${cols} is not a multiple of ${ggmlTypeName(type)}'s block size ${B}`);
  const nGroups = cols / B;
  const nBlocks = rows * nGroups;
  // llama.cpp's blocks: their scales stay, their codes are GPTQ's starting point
  const blocks = new Uint8Array(nBlocks * L.bytesPerBlock);
  for (let r = 0; r < rows; r++) {
    quantizeRow(type, w.subarray(r * cols, (r + 1) * cols), blocks.subarray(r * nGroups * L.bytesPerBlock, (r + 1) * nGroups * L.bytesPerBlock), cols, imatrix ? { imatrix } : {});
  }
  // per element: value(code) = v0 + a·code (decoded with all codes 0, then all 1)
  const v0 = new Float32Array(rows * cols);
  const a = new Float32Array(rows * cols);
  const nCodes = 1 << L.nBits;
  {
    const tmp = new Uint8Array(L.bytesPerBlock);
    const zeros = new Int32Array(B);
    const ones = new Int32Array(B).fill(1);
    const d0 = new Float32Array(B);
    const d1 = new Float32Array(B);
    for (let k = 0; k < nBlocks; k++) {
      tmp.set(blocks.subarray(k * L.bytesPerBlock, (k + 1) * L.bytesPerBlock));
      setBlockCodes(type, tmp, 0, zeros);
      dequantizeRow(type, tmp, d0, B);
      setBlockCodes(type, tmp, 0, ones);
      dequantizeRow(type, tmp, d1, B);
      for (let i = 0; i < B; i++) {
        v0[k * B + i] = d0[i]!;
        a[k * B + i] = d1[i]! - d0[i]!;
      }
    }
  }
  // static groups: GPTQ fits every group first, rows outer and groups inner; params = block index
  let next = 0;
  const quantizer: GroupQuantizer<number> = {
    name: ggmlTypeName(type),
    groupSize: B,
    fit: (segment) => {
      const k = next++;
      if (k >= nBlocks || segment.length !== B) throw new QuantlabError("E_INTERNAL", `gptq ${ggmlTypeName(type)}: unexpected group fit #${k} of ${segment.length} values`);
      return k;
    },
    fakeQuant: (x, k, index) => {
      const i = k * B + index;
      const step = a[i]!;
      const base = v0[i]!;
      if (step === 0) return base;
      const c = Math.max(0, Math.min(nCodes - 1, Math.round((x - base) / step)));
      return base + step * c;
    },
  };
  const res = gptqQuantize(w, rows, cols, h, quantizer, { staticGroups: true, actOrder: false, percDamp: opts.percDamp ?? 0.01, name: opts.name, ...(opts.kernels ? { kernels: opts.kernels } : {}) });
  if (next !== nBlocks) throw new QuantlabError("E_INTERNAL", `gptq ${ggmlTypeName(type)}: ${next} group fits for ${nBlocks} blocks`);
  // the codes GPTQ chose, back into the blocks
  const codes = new Int32Array(B);
  for (let k = 0; k < nBlocks; k++) {
    const r = Math.floor(k / nGroups);
    const c0 = (k % nGroups) * B;
    for (let e = 0; e < B; e++) {
      const i = k * B + e;
      const step = a[i]!;
      codes[e] = step === 0 ? 0 : Math.max(0, Math.min(nCodes - 1, Math.round((res.q[r * cols + c0 + e]! - v0[i]!) / step)));
    }
    setBlockCodes(type, blocks, k * L.bytesPerBlock, codes);
  }
  return blocks;
}
