// Random packed weights for benchmarks (bits random, Bonsai sign-form scales per group).
import type { Q1Host } from "../src/quant/q1.ts";
import { f32ToF16Bits } from "../src/quant/f16.ts";
import type { Rng } from "../src/util/rng.ts";

export function exactWeight(rng: Rng, rows: number, cols: number): Q1Host {
  const g = rows * (cols / 128), scales = new Uint16Array(g), biases = new Uint16Array(g);
  const s = f32ToF16Bits(2 / Math.sqrt(cols)), bias = f32ToF16Bits(-1 / Math.sqrt(cols));
  scales.fill(s); biases.fill(bias);
  return { rows, cols, words: rng.fill(new Uint32Array(rows * (cols / 32))), scales, biases };
}
