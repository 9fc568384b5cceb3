// bun run make-model [--preset tiny|1.7b|4b|8b] --out DIR [--seed N] [--force]
import { existsSync, readdirSync } from "node:fs";
import { makeModel, PRESETS } from "../model/make.ts";
import { numFlag, parseFlags, runMain, UsageError } from "./args.ts";

const USAGE = `usage: bun run make-model [--preset ${Object.keys(PRESETS).join("|")}] --out DIR [--seed N] [--force]

Writes a deterministic random-weight checkpoint in the Bonsai MLX 1-bit layout (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json) with the real shapes of the preset.`;

await runMain(async () => {
  const { values: v } = parseFlags(process.argv.slice(2), {
    preset: { type: "string", default: "tiny" }, out: { type: "string" }, seed: { type: "string" },
    force: { type: "boolean", default: false }, help: { type: "boolean", short: "h" },
  }, USAGE);
  if (v.help) { console.log(USAGE); return; }
  const spec = PRESETS[v.preset!];
  if (!spec) throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(", ")}, got "${v.preset}"`);
  if (!v.out) throw new UsageError(`--out DIR is required\n\n${USAGE}`);
  if (existsSync(v.out) && readdirSync(v.out).length > 0 && !v.force) {
    throw new UsageError(`--out ${v.out} exists and is not empty; pass --force to overwrite`);
  }
  const seed = numFlag("seed", v.seed, 0, { int: true, min: 0 });
  const t0 = performance.now();
  console.error(`make-model: preset ${v.preset} (hidden ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab}) -> ${v.out}`);
  await makeModel(v.out, spec, seed);
  console.error(`make-model: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
