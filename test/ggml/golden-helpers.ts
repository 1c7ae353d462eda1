/** Reads the llama.cpp goldens (shared/data/ggml/golden-<type>.gguf: tensors x, q, dq) for the ggml tests. */
import { openGguf } from "../../src/io/gguf.js";
import { FileSource } from "../../src/io/node/file.js";
import { dataPath } from "../../src/io/node/data.js";
import { f32Bits } from "../../src/core/f16.js";
import { GGML_TYPES, GgmlType } from "../../src/ggml/types.js";

export interface Golden {
  type: GgmlType;
  /** (rows, cols) */
  rows: number;
  cols: number;
  x: Float32Array; // (rows, cols)
  q: Uint8Array; // (rows, bytes per row)
  dq: Float32Array; // (rows, cols)
}

/** golden file name suffix per type (as in shared/data/README.md) */
export const GOLDEN_FILES: Partial<Record<GgmlType, string>> = {
  [GgmlType.F16]: "f16",
  [GgmlType.BF16]: "bf16",
  [GgmlType.Q4_0]: "q4_0",
  [GgmlType.Q4_1]: "q4_1",
  [GgmlType.Q5_0]: "q5_0",
  [GgmlType.Q5_1]: "q5_1",
  [GgmlType.Q8_0]: "q8_0",
  [GgmlType.Q2_K]: "q2_K",
  [GgmlType.Q3_K]: "q3_K",
  [GgmlType.Q4_K]: "q4_K",
  [GgmlType.Q5_K]: "q5_K",
  [GgmlType.Q6_K]: "q6_K",
  [GgmlType.IQ4_NL]: "iq4_nl",
  [GgmlType.IQ4_XS]: "iq4_xs",
  [GgmlType.TQ1_0]: "tq1_0",
  [GgmlType.TQ2_0]: "tq2_0",
};

function f32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.slice().buffer);
}

export async function loadGolden(type: GgmlType): Promise<Golden> {
  const f = await openGguf(new FileSource(dataPath("ggml", `golden-${GOLDEN_FILES[type]}.gguf`)));
  try {
    const qi = f.tensor("q")!;
    if (qi.type !== type) throw new Error(`golden q has type ${qi.type}, expected ${type}`);
    const [rows, cols] = qi.shape as [number, number];
    return {
      type,
      rows,
      cols,
      x: f32(await f.readTensorBytes("x")),
      q: (await f.readTensorBytes("q")).slice(),
      dq: f32(await f.readTensorBytes("dq")),
    };
  } finally {
    await f.close();
  }
}

const hex = (b: Uint8Array): string => Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
const bits = (v: number): string => f32Bits(v).toString(16).padStart(8, "0");

/**
 * Compares two f32 arrays bit for bit. Returns null when equal, else a report of the worst block (most
 * differing elements): its bytes and up to 8 differing elements with their bits.
 */
export function bitDiffReport(type: GgmlType, q: Uint8Array, want: Float32Array, got: Float32Array): string | null {
  const { blockSize, bytesPerBlock } = GGML_TYPES[type];
  let total = 0;
  let worst = -1;
  let worstCount = 0;
  for (let b = 0; b * blockSize < want.length; b++) {
    let c = 0;
    for (let i = b * blockSize; i < (b + 1) * blockSize; i++) if (f32Bits(want[i]!) !== f32Bits(got[i]!)) c++;
    total += c;
    if (c > worstCount) {
      worstCount = c;
      worst = b;
    }
  }
  if (total === 0) return null;
  const lines = [`${total} elements differ; worst block ${worst} (${worstCount} of ${blockSize}), bytes ${hex(q.subarray(worst * bytesPerBlock, (worst + 1) * bytesPerBlock))}`];
  let shown = 0;
  for (let i = worst * blockSize; i < (worst + 1) * blockSize && shown < 8; i++) {
    if (f32Bits(want[i]!) !== f32Bits(got[i]!)) {
      lines.push(`  [${i}] want ${want[i]} (0x${bits(want[i]!)}) got ${got[i]} (0x${bits(got[i]!)})`);
      shown++;
    }
  }
  return lines.join("\n");
}

export function rmse(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s / a.length);
}
