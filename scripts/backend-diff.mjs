// Measures how far the ref and wasm backends' calibration passes drift apart (docs/determinism.md):
// two importance matrices (llama-imatrix .dat) and the two GGUFs quantized with them.
// Usage: node scripts/backend-diff.mjs ref.dat wasm.dat ref.gguf wasm.gguf
import { readFileSync } from "node:fs";
import { parseImatrixDat } from "../dist/src/ggml/imatrix.js";
import { openGguf } from "../dist/src/io/gguf.js";
import { BufferSource } from "../dist/src/io/source.js";
import { ggmlTypeName, ggmlTypeTraits } from "../dist/src/ggml/types.js";

const [refDat, wasmDat, refGguf, wasmGguf] = process.argv.slice(2);
const a = parseImatrixDat(new Uint8Array(readFileSync(refDat))).imatrix;
const b = parseImatrixDat(new Uint8Array(readFileSync(wasmDat))).imatrix;
let maxRel = 0, n = 0, differ = 0;
for (const [k, va] of a) {
  const vb = b.get(k);
  for (let i = 0; i < va.length; i++) {
    n++;
    if (va[i] !== vb[i]) differ++;
    const rel = Math.abs(va[i] - vb[i]) / Math.max(Math.abs(va[i]), 1e-30);
    if (rel > maxRel) maxRel = rel;
  }
}
console.log(`imatrix: ${a.size} entries, ${n} values, ${differ} differ, max relative difference ${maxRel.toExponential(2)}`);
const fa = await openGguf(new BufferSource(refGguf, new Uint8Array(readFileSync(refGguf))));
const fb = await openGguf(new BufferSource(wasmGguf, new Uint8Array(readFileSync(wasmGguf))));
let blocks = 0, diffBlocks = 0;
const perType = new Map();
for (const t of fa.tensors) {
  const x = await fa.readTensorBytes(t), y = await fb.readTensorBytes(t.name);
  const bs = ggmlTypeTraits(t.type).bytesPerBlock;
  for (let o = 0; o < x.length; o += bs) {
    blocks++;
    let same = true;
    for (let j = 0; j < bs; j++) if (x[o + j] !== y[o + j]) { same = false; break; }
    if (!same) { diffBlocks++; const k = ggmlTypeName(t.type); perType.set(k, (perType.get(k) ?? 0) + 1); }
  }
}
console.log(`gguf: ${blocks} blocks, ${diffBlocks} differ (${[...perType].map(([k, v]) => `${k} ${v}`).join(", ")})`);
