// bun test/reference/make-models.ts OUT_DIR: writes every reference checkpoint to OUT_DIR/<name>
// plus OUT_DIR/<name>/prompt.json, for test/reference/transformers_logits.py.
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { makeModel } from "../../src/model/make.ts";
import { REFERENCE_MODELS } from "./models.ts";

const out = process.argv[2];
if (!out) { console.error("usage: bun test/reference/make-models.ts OUT_DIR"); process.exit(2); }
for (const [name, m] of Object.entries(REFERENCE_MODELS)) {
  await makeModel(join(out, name), m.spec, m.seed);
  writeFileSync(join(out, name, "prompt.json"), JSON.stringify(m.prompt));
  console.log(`wrote ${join(out, name)}`);
}
