// Shared test helpers: build generated checkpoints once per run, in a cache folder.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { makeModel, type ModelSpec } from "../src/model/make.ts";
import type { Q1Host } from "../src/quant/q1.ts";
import { f32ToF16Bits } from "../src/quant/f16.ts";
import { Rng } from "../src/util/rng.ts";

export const TEST_MODEL_ROOT = join(tmpdir(), "bunsai-test-models");

/** A generated checkpoint at a stable path (rebuilt if missing). */
export async function testModel(name: string, spec: ModelSpec, seed: number): Promise<string> {
  const dir = join(TEST_MODEL_ROOT, name);
  if (!existsSync(join(dir, "model.safetensors"))) {
    mkdirSync(TEST_MODEL_ROOT, { recursive: true });
    await makeModel(dir, spec, seed);
  }
  return dir;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}


/**
 * A 1-bit weight whose products with small-integer activations sum exactly in f32: random bits,
 * scales 2^-k that differ per (row, group) so a wrong group index shows, and biases that are
 * -scale/2 (Bonsai's sign form) or, with `affine`, another power of two.
 */
export function exactQ1(rng: Rng, rows: number, cols: number, affine = false): Q1Host {
  const groups = rows * (cols / 128);
  const scales = new Uint16Array(groups), biases = new Uint16Array(groups);
  for (let i = 0; i < groups; i++) {
    const s = 2 ** -(rng.u32() % 5);
    scales[i] = f32ToF16Bits(s);
    biases[i] = f32ToF16Bits(affine ? (rng.u32() & 1 ? 1 : -1) * 2 ** -(rng.u32() % 4) : -s / 2);
  }
  return { rows, cols, words: rng.fill(new Uint32Array(rows * (cols / 32))), scales, biases };
}

/** Small integers in [-4, 4]. */
export function smallInts(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.u32() % 9) - 4);
}
