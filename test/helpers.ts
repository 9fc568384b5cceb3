// Shared test helpers: build generated checkpoints once per run, in a cache folder.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { makeModel, type ModelSpec } from "../src/model/make.ts";

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
