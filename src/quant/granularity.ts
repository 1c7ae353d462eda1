/**
 * Group layouts: which elements share a scale. A tensor of shape (..., cols) is seen as (rows, cols),
 * rows = product of the leading dims (a 1-D tensor is one row). Groups are numbered:
 *   none / tensor / layer: 1 group (none stores no scale)
 *   channel:  one group per row (output channel), g = r
 *   ichannel: one group per column (input channel), g = c
 *   group G:  ceil(cols/G) groups per row along the input dimension, g = r·groupsPerRow + j; the last
 *             group of each row holds cols − (groupsPerRow−1)·G elements (ragged, never padded)
 *   block R×C: 2-D tiles, g = (r/R)·ceil(cols/C) + (c/C); edge tiles are smaller
 * Scales, zero points and super-blocks are stored in this group order; codes in row-major element order.
 */
import { QuantlabError } from "../core/errors.js";
import type { Granularity } from "./spec.js";

export interface GroupLayout {
  readonly rows: number;
  readonly cols: number;
  readonly nGroups: number;
  /** largest group length (scratch size) */
  readonly maxGroupLength: number;
  /** elements in group g */
  length(g: number): number;
  /** row-major start offset of group g when its elements are contiguous, else -1 */
  contiguousStart(g: number): number;
  /** writes the flat element indices of group g into idx; returns the count */
  indices(g: number, idx: Uint32Array): number;
  /** group of each element, (rows·cols) */
  groupOfElement(): Uint32Array;
}

export function matrixDims(shape: readonly number[]): { rows: number; cols: number } {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new QuantlabError("E_ARG", `bad tensor shape [${shape.join(", ")}]`);
  }
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  let rows = 1;
  for (let i = 0; i < shape.length - 1; i++) rows *= shape[i]!;
  return { rows, cols };
}

export function groupLayout(shape: readonly number[], g: Granularity): GroupLayout {
  const { rows, cols } = matrixDims(shape);
  const n = rows * cols;
  switch (g.kind) {
    case "none": case "tensor": case "layer":
      return contiguousLayout(rows, cols, 1, () => 0, () => n);
    case "channel":
      return contiguousLayout(rows, cols, rows, (i) => i * cols, () => cols);
    case "group": {
      const G = g.size;
      const per = Math.max(1, Math.ceil(cols / G));
      const lastLen = cols - (per - 1) * G;
      return contiguousLayout(rows, cols, rows * per, (i) => Math.floor(i / per) * cols + (i % per) * G, (i) => (i % per === per - 1 ? lastLen : G), Math.min(G, cols));
    }
    case "ichannel":
      return stridedLayout(rows, cols, cols, (gi, idx) => {
        for (let r = 0; r < rows; r++) idx[r] = r * cols + gi;
        return rows;
      }, () => rows);
    case "block2d": {
      const R = g.rows, C = g.cols;
      const br = Math.ceil(rows / R), bc = Math.ceil(cols / C);
      const len = (gi: number) => {
        const r0 = Math.floor(gi / bc) * R, c0 = (gi % bc) * C;
        return (Math.min(rows, r0 + R) - r0) * (Math.min(cols, c0 + C) - c0);
      };
      return stridedLayout(rows, cols, br * bc, (gi, idx) => {
        const r0 = Math.floor(gi / bc) * R, c0 = (gi % bc) * C;
        const r1 = Math.min(rows, r0 + R), c1 = Math.min(cols, c0 + C);
        let k = 0;
        for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) idx[k++] = r * cols + c;
        return k;
      }, len, Math.min(R, rows) * Math.min(C, cols));
    }
  }
}

function contiguousLayout(rows: number, cols: number, nGroups: number, start: (g: number) => number, length: (g: number) => number, maxLen?: number): GroupLayout {
  const layout: GroupLayout = {
    rows, cols, nGroups: rows * cols === 0 ? 0 : nGroups,
    maxGroupLength: maxLen ?? (nGroups > 0 ? length(0) : 0),
    length,
    contiguousStart: start,
    indices(g, idx) {
      const s = start(g), l = length(g);
      for (let k = 0; k < l; k++) idx[k] = s + k;
      return l;
    },
    groupOfElement() {
      const out = new Uint32Array(rows * cols);
      for (let gi = 0; gi < layout.nGroups; gi++) out.fill(gi, start(gi), start(gi) + length(gi));
      return out;
    },
  };
  return layout;
}

function stridedLayout(rows: number, cols: number, nGroups: number, indices: (g: number, idx: Uint32Array) => number, length: (g: number) => number, maxLen?: number): GroupLayout {
  const layout: GroupLayout = {
    rows, cols, nGroups: rows * cols === 0 ? 0 : nGroups,
    maxGroupLength: maxLen ?? (nGroups > 0 ? length(0) : 0),
    length,
    contiguousStart: () => -1,
    indices,
    groupOfElement() {
      const out = new Uint32Array(rows * cols);
      const idx = new Uint32Array(layout.maxGroupLength);
      for (let gi = 0; gi < layout.nGroups; gi++) {
        const k = indices(gi, idx);
        for (let j = 0; j < k; j++) out[idx[j]!] = gi;
      }
      return out;
    },
  };
  return layout;
}
