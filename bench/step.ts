// One prefill of 5 tokens then 3 decode steps on CUDA, no graph: a small target for a kernel profiler.
//   ncu --clock-control none --metrics gpu__time_duration.sum --csv bun bench/step.ts --preset 8b
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaBackend } from "../src/backend/cuda/index.ts";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { makeModel, PRESETS } from "../src/model/make.ts";
import { Qwen3 } from "../src/model/qwen3.ts";

process.env.BUNSAI_NO_GRAPH = "1";
const i = process.argv.indexOf("--preset"), preset = i > 0 ? process.argv[i + 1]! : "8b";
const spec = PRESETS[preset];
if (!spec) throw new Error(`unknown preset ${preset}`);
const dir = join(process.env.BUNSAI_BENCH_DIR ?? tmpdir(), `bunsai-bench-${preset}`);
if (!existsSync(join(dir, "model.safetensors"))) await makeModel(dir, spec, 0);
const ck = loadCheckpoint(dir);
const model = new Qwen3(ck.config, new CudaBackend(), ck);
const s = model.newSession(256);
await model.forward(s, [785, 6722, 315, 9625, 374]);
let tok = 12095;
for (let k = 0; k < 3; k++) tok = await model.nextToken(s, tok, { temperature: 0, topK: 0, topP: 1 });
console.log(`step.ts: ${preset} done, last token ${tok}`);
model.dispose();
