// The embedded default model: the tiny random-weight checkpoint, built once into a cache folder.
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { makeModel, PRESETS } from "../model/make.ts";

export const DEMO_NAME = "tiny-random-v1";

export function cacheDir(): string {
  return process.env.BUNSAI_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "bunsai");
}

/** Path of the demo checkpoint, building it first if needed (atomically: built aside, then renamed). */
export async function defaultModelPath(log: (s: string) => void = (s) => console.error(s)): Promise<string> {
  const dir = join(cacheDir(), "models", DEMO_NAME);
  if (existsSync(join(dir, "model.safetensors"))) return dir;
  log(`bunsai: building the embedded demo model (random weights, Bonsai layout) in ${dir}`);
  mkdirSync(join(cacheDir(), "models"), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  await makeModel(tmp, PRESETS.tiny!, 0);
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process won the race; use its copy
  }
  return dir;
}

export const DEMO_NOTICE =
  "note: no --model given, so this is the embedded RANDOM-WEIGHT demo model: the text is gibberish by design.\n" +
  "      For real output pass a Bonsai MLX 1-bit checkpoint: --model path/to/Bonsai-1.7B-mlx-1bit";
