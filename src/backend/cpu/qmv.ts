// 1-bit matrix-vector product on the CPU, the reference for every GPU matvec kernel.
//
// Per row r and group g (128 columns), with bits b_j, scale s and bias c:
//   sum_j x_j * (s * b_j + c) = s * sum_{b_j = 1} x_j + c * sum_j x_j
// so only the x values under set bits are added, and no weight is ever dequantized.
//
// To make "sum of x under set bits" cheap in JavaScript, x is cut into bytes of 8 columns and, for
// each, a 256-entry table of all subset sums is built once per vector; a row then costs one table
// lookup per weight byte instead of eight bit tests. Sums are accumulated in f64.

import { GROUP } from "../../quant/q1.ts";

export interface Q1Cpu {
  rows: number;
  cols: number;
  bytes: Uint8Array; // the packed words viewed as little-endian bytes: byte b of a row = columns 8b..8b+7
  scales: Float32Array; // [rows, cols/128]
  biases: Float32Array; // [rows, cols/128]
}

/** Subset-sum tables: lut[c * 256 + m] = sum of x[8c + i] over the set bits i of m. */
export function buildLut(x: Float32Array, cols: number, lut: Float64Array<ArrayBufferLike> = new Float64Array((cols / 8) * 256)): Float64Array<ArrayBufferLike> {
  for (let c = 0; c < cols / 8; c++) {
    const t = c * 256;
    lut[t] = 0;
    for (let m = 1; m < 256; m++) {
      const low = m & -m; // lowest set bit
      lut[t + m] = lut[t + (m ^ low)]! + x[8 * c + 31 - Math.clz32(low)]!;
    }
  }
  return lut;
}

/** out[w.rows] = W x, for one activation row x[w.cols]. */
export function qmv(out: Float32Array, x: Float32Array, w: Q1Cpu, lut?: Float64Array<ArrayBufferLike>): void {
  const { rows, cols, bytes, scales, biases } = w;
  const groups = cols / GROUP, bytesPerRow = cols / 8, bytesPerGroup = GROUP / 8;
  const table = buildLut(x, cols, lut);
  // sum of x per group, shared by every row
  const xsum = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    let s = 0;
    for (let j = 0; j < GROUP; j++) s += x[g * GROUP + j]!;
    xsum[g] = s;
  }
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    const rowBase = r * bytesPerRow;
    for (let g = 0; g < groups; g++) {
      let ones = 0; // sum of x under set bits in this group
      const b0 = rowBase + g * bytesPerGroup;
      for (let b = 0; b < bytesPerGroup; b++) {
        const c = g * bytesPerGroup + b;
        ones += table[c * 256 + bytes[b0 + b]!]!;
      }
      acc += scales[r * groups + g]! * ones + biases[r * groups + g]! * xsum[g]!;
    }
    out[r] = acc;
  }
}

/** out[M, w.rows] = x[M, w.cols] W^T, one matvec per activation row. */
export function qmm(out: Float32Array, x: Float32Array, w: Q1Cpu, M: number): void {
  const lut = new Float64Array((w.cols / 8) * 256);
  for (let m = 0; m < M; m++) {
    qmv(out.subarray(m * w.rows, (m + 1) * w.rows), x.subarray(m * w.cols, (m + 1) * w.cols), w, lut);
  }
}
