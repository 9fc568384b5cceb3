// bun run generate -- --prompt "Hello" [--model DIR] ...   (flags modelled on mlx_lm.generate)
import { fstatSync, readFileSync } from "node:fs";
import { loadModel } from "../index.ts";
import { BACKEND_CHOICES, BackendUnavailableError, unavailableReason, type BackendChoice } from "../backend/select.ts";
import { numFlag, parseFlags, runMain, UsageError } from "./args.ts";
import { DEMO_NOTICE, defaultModelPath } from "./default-model.ts";
import type { GenerationStats } from "../generate.ts";

const USAGE = `usage: bun run generate -- [options]

  --model DIR            Bonsai MLX 1-bit checkpoint folder (default: the embedded random-weight demo)
  --prompt TEXT          the prompt; "-" reads it from stdin (default: stdin when piped, else "Hello")
  --system TEXT          a system message (chat template only)
  --max-tokens N         tokens to generate (default 256)
  --temp T               temperature, 0 = greedy (default 0)
  --top-p P              nucleus sampling (default 1 = off)
  --top-k K              keep the K most likely tokens (default 0 = off)
  --min-p P              drop tokens below P x the best probability (default 0 = off)
  --repeat-penalty R     penalise the last 64 tokens (default 1 = off)
  --seed N               seed for sampling (default: random)
  --ctx N                context size (default: prompt + max tokens)
  --no-chat-template     feed the prompt as raw text
  --no-thinking          Qwen3: render the chat template with enable_thinking = false
  --backend NAME         ${BACKEND_CHOICES.join(" | ")} (default auto: CUDA, else Metal on macOS, else CPU)
  --json                 print one JSON object (text + stats) instead of streaming
  -h, --help             this text`;

function readStdin(): string {
  return readFileSync(0, "utf8");
}

function stdinIsData(): boolean {
  try {
    const s = fstatSync(0);
    return s.isFIFO() || s.isFile();
  } catch {
    return false;
  }
}

await runMain(async () => {
  const { values: v } = parseFlags(process.argv.slice(2), {
    model: { type: "string" }, prompt: { type: "string" }, system: { type: "string" },
    "max-tokens": { type: "string" }, temp: { type: "string" }, "top-p": { type: "string" },
    "top-k": { type: "string" }, "min-p": { type: "string" }, "repeat-penalty": { type: "string" },
    seed: { type: "string" }, ctx: { type: "string" }, "no-chat-template": { type: "boolean", default: false },
    "no-thinking": { type: "boolean", default: false }, backend: { type: "string", default: "auto" },
    json: { type: "boolean", default: false }, help: { type: "boolean", short: "h" },
  }, USAGE);
  if (v.help) { console.log(USAGE); return; }
  if (!BACKEND_CHOICES.includes(v.backend as BackendChoice)) throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(", ")}, got "${v.backend}"`);
  const opts = {
    maxTokens: numFlag("max-tokens", v["max-tokens"], 256, { int: true, min: 0 }),
    temperature: numFlag("temp", v.temp, 0, { min: 0 }),
    topP: numFlag("top-p", v["top-p"], 1, { min: 0, max: 1 }),
    topK: numFlag("top-k", v["top-k"], 0, { int: true, min: 0 }),
    minP: numFlag("min-p", v["min-p"], 0, { min: 0, max: 1 }),
    repetitionPenalty: numFlag("repeat-penalty", v["repeat-penalty"], 1, { min: 0 }),
    seed: v.seed === undefined ? undefined : numFlag("seed", v.seed, 0, { int: true, min: 0 }),
    ctx: v.ctx === undefined ? undefined : numFlag("ctx", v.ctx, 0, { int: true, min: 1 }),
  };
  if (opts.topP === 0) throw new UsageError("--top-p must be > 0");
  if (opts.repetitionPenalty === 0) throw new UsageError("--repeat-penalty must be > 0");
  let prompt: string = v.prompt ?? "";
  if (v.prompt === "-" || (v.prompt === undefined && stdinIsData())) prompt = readStdin();
  if (prompt === "" && v.prompt === undefined) prompt = "Hello";
  if (prompt === "") throw new UsageError(v.prompt === "-" ? "--prompt -: stdin was empty" : "--prompt is empty");

  const log = (s: string) => { if (!v.json) console.error(s); };
  if (v.backend === "cuda" || v.backend === "metal") { // say so before any work
    const why = await unavailableReason(v.backend);
    if (why !== null) throw new BackendUnavailableError(`backend "${v.backend}" is not available: ${why}`);
  }
  let modelPath = v.model;
  if (!modelPath) {
    modelPath = await defaultModelPath(log);
    log(DEMO_NOTICE);
  }
  const m = await loadModel(modelPath, { backend: v.backend as BackendChoice });
  log(`bunsai: ${modelPath} on ${m.backend.name} (${m.backend.device}), loaded in ${(m.loadMs / 1000).toFixed(2)} s`);
  try {
    const chat = !v["no-chat-template"] && m.tokenizer.hasChatTemplate;
    if (!chat && !v["no-chat-template"]) log("bunsai: the tokenizer has no chat template; using the raw prompt");
    if (!chat && v.system !== undefined) throw new UsageError("--system needs the chat template (drop --no-chat-template)");
    const ids = m.promptIds(prompt, { chat, system: v.system, enableThinking: !v["no-thinking"] });
    const gen = m.generate(ids, opts);
    let r = await gen.next();
    while (!r.done) {
      if (!v.json) process.stdout.write(r.value.text);
      r = await gen.next();
    }
    const stats: GenerationStats = r.value;
    if (v.json) {
      console.log(JSON.stringify({ model: modelPath, backend: m.backend.name, device: m.backend.device, ...stats }));
    } else {
      process.stdout.write("\n");
      console.error("==========");
      console.error(`Prompt: ${stats.promptTokens} tokens, ${stats.promptTps.toFixed(1)} tokens-per-sec`);
      console.error(`Generation: ${stats.generatedTokens} tokens, ${stats.generationTps.toFixed(1)} tokens-per-sec (finish: ${stats.finishReason})`);
      console.error(`Time to first token: ${stats.ttftMs.toFixed(0)} ms`);
      console.error(`Peak memory: ${(stats.peakMemoryBytes / 1e9).toFixed(3)} GB (process RSS)`);
    }
  } finally {
    m.dispose();
  }
});
