// The Bonsai / MLX 1-bit affine format (bits = 1, group_size = 128).
//
//   weight  uint32 [rows, cols/32]   column 32c + j of a row is bit j (LSB first) of word c
//   scales  f16    [rows, cols/128]
//   biases  f16    [rows, cols/128]
//   w[r][k] = scale[r][k/128] * bit + bias[r][k/128]
//
// Bonsai stores its native sign form (w = d * (+-1)) as scale = 2d, bias = -d.

import { f16ArrayToF32, f32ToF16Bits, f16BitsToF32 } from "./f16.ts";

export const GROUP = 128;
export const WORDS_PER_GROUP = GROUP / 32;

/** A packed 1-bit matrix on the host. Scales and biases are f16 bits. */
export interface Q1Host {
  rows: number; // out features (N)
  cols: number; // in features (K), a multiple of 128
  words: Uint32Array; // [rows, cols/32]
  scales: Uint16Array; // [rows, cols/128] f16
  biases: Uint16Array; // [rows, cols/128] f16
}

export function checkQ1Shape(rows: number, cols: number, what = "weight"): void {
  if (!Number.isInteger(rows) || rows <= 0) throw new Error(`${what}: rows must be a positive integer, got ${rows}`);
  if (!Number.isInteger(cols) || cols <= 0 || cols % GROUP !== 0) {
    throw new Error(`${what}: in-features must be a positive multiple of ${GROUP}, got ${cols}`);
  }
}

/**
 * MLX-exact bits=1 affine quantization of a row-major f32 matrix [rows, cols], per group of 128:
 * scale = max(max - min, 1e-7), bias = min, bit = clip(round((w - bias) / scale), 0, 1);
 * scale and bias are then cast to f16. (Computed in f32 like MLX.)
 */
export function quantizeQ1(w: Float32Array, rows: number, cols: number): Q1Host {
  checkQ1Shape(rows, cols);
  if (w.length !== rows * cols) throw new Error(`quantizeQ1: expected ${rows * cols} values, got ${w.length}`);
  const groups = cols / GROUP;
  const words = new Uint32Array(rows * (cols / 32));
  const scales = new Uint16Array(rows * groups);
  const biases = new Uint16Array(rows * groups);
  const f = Math.fround;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const base = r * cols + g * GROUP;
      let lo = Infinity, hi = -Infinity;
      for (let j = 0; j < GROUP; j++) {
        const v = w[base + j]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = Math.max(f(hi - lo), 1e-7);
      for (let j = 0; j < GROUP; j++) {
        // round-half-to-even then clip to [0, 1]: the bit is set iff (w - min) / scale > 0.5
        const t = f(f(w[base + j]! - lo) / f(scale));
        if (t > 0.5) words[r * (cols / 32) + g * WORDS_PER_GROUP + (j >> 5)]! |= 1 << (j & 31);
      }
      scales[r * groups + g] = f32ToF16Bits(scale);
      biases[r * groups + g] = f32ToF16Bits(lo);
    }
  }
  return { rows, cols, words, scales, biases };
}

/** Packs a [rows, cols] array of 0/1 bits into uint32 words, LSB first. */
export function packBits(bits: Uint8Array, rows: number, cols: number): Uint32Array {
  if (cols % 32 !== 0) throw new Error(`packBits: cols must be a multiple of 32, got ${cols}`);
  const out = new Uint32Array(rows * (cols / 32));
  for (let i = 0; i < rows * cols; i++) if (bits[i]) out[i >> 5]! |= 1 << (i & 31);
  return out;
}

/** Unpacks uint32 words into one 0/1 byte per column. */
export function unpackBits(words: Uint32Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) out[i] = (words[i >> 5]! >>> (i & 31)) & 1;
  return out;
}

/** Dequantizes row r into out[cols] (f32). */
export function dequantRow(w: Q1Host, r: number, out: Float32Array): Float32Array {
  const wpr = w.cols / 32, groups = w.cols / GROUP;
  for (let g = 0; g < groups; g++) {
    const s = f16BitsToF32(w.scales[r * groups + g]!);
    const b = f16BitsToF32(w.biases[r * groups + g]!);
    for (let c = 0; c < WORDS_PER_GROUP; c++) {
      const word = w.words[r * wpr + g * WORDS_PER_GROUP + c]!;
      const k0 = g * GROUP + c * 32;
      for (let j = 0; j < 32; j++) out[k0 + j] = ((word >>> j) & 1) ? s + b : b;
    }
  }
  return out;
}

/** Dequantizes the whole matrix to f32 [rows, cols] (tests and small models only). */
export function dequantQ1(w: Q1Host): Float32Array {
  const out = new Float32Array(w.rows * w.cols);
  for (let r = 0; r < w.rows; r++) dequantRow(w, r, out.subarray(r * w.cols, (r + 1) * w.cols));
  return out;
}

/** Sign form (bits + one f16 `d` per group, w = d * (2*bit - 1)) -> affine (scale = 2d, bias = -d). */
export function signToAffine(rows: number, cols: number, words: Uint32Array, d: Uint16Array): Q1Host {
  checkQ1Shape(rows, cols);
  const scales = new Uint16Array(d.length), biases = new Uint16Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const v = f16BitsToF32(d[i]!);
    scales[i] = f32ToF16Bits(2 * v); // exact: doubling an f16 only moves its exponent
    biases[i] = d[i]! ^ 0x8000; // -d, exact
  }
  return { rows, cols, words, scales, biases };
}

/** Affine -> sign form; only valid when every bias is exactly -scale/2 (Bonsai files). */
export function affineToSign(w: Q1Host): { words: Uint32Array; d: Uint16Array } {
  const d = new Uint16Array(w.scales.length);
  for (let i = 0; i < d.length; i++) {
    const s = f16BitsToF32(w.scales[i]!), b = f16BitsToF32(w.biases[i]!);
    if (b !== -s / 2) throw new Error(`affineToSign: group ${i} has bias ${b} != -scale/2 (${-s / 2}); not a sign-form weight`);
    d[i] = f32ToF16Bits(s / 2);
  }
  return { words: w.words, d };
}

/** Stacks matrices with the same in-features: rows of a, then rows of b, ... (one launch serves all). */
export function concatRows(parts: Q1Host[]): Q1Host {
  const cols = parts[0]!.cols;
  for (const p of parts) if (p.cols !== cols) throw new Error(`concatRows: in-features differ (${p.cols} vs ${cols})`);
  const cat = <T extends Uint32Array | Uint16Array>(arrays: T[], make: (n: number) => T): T => {
    const out = make(arrays.reduce((n, a) => n + a.length, 0));
    let o = 0;
    for (const a of arrays) { out.set(a, o); o += a.length; }
    return out;
  };
  return {
    rows: parts.reduce((n, p) => n + p.rows, 0), cols,
    words: cat(parts.map((p) => p.words), (n) => new Uint32Array(n)),
    scales: cat(parts.map((p) => p.scales), (n) => new Uint16Array(n)),
    biases: cat(parts.map((p) => p.biases), (n) => new Uint16Array(n)),
  };
}

/** Scales and biases as f32 (for the CPU backend). */
export function q1ScalesF32(w: Q1Host): { scales: Float32Array; biases: Float32Array } {
  return { scales: f16ArrayToF32(w.scales), biases: f16ArrayToF32(w.biases) };
}
