// bunsai's public API.
//
//   const m = await loadModel("path/to/Bonsai-1.7B-mlx-1bit", { backend: "auto" });
//   const logits = await m.logits(m.tokenizer.encode("The capital of France is"));
//   for await (const s of m.generate("Hello", { maxTokens: 32 })) process.stdout.write(s.text);
//   m.dispose();

import { loadCheckpoint, type Checkpoint } from "./io/checkpoint.ts";
import type { ModelConfig } from "./io/config.ts";
import { createBackend, type BackendChoice } from "./backend/select.ts";
import type { Backend } from "./backend/backend.ts";
import { Qwen3, type Session } from "./model/qwen3.ts";
import { TextTokenizer, type ChatMessage, type ChatOptions } from "./tokenizer.ts";
import { generateSteps, type GenerateOptions, type GenerationStats, type Step } from "./generate.ts";

export type { ModelConfig, Backend, BackendChoice, Session, ChatMessage, ChatOptions, GenerateOptions, GenerationStats, Step };
export { TextTokenizer };

export interface LoadOptions {
  backend?: BackendChoice;
}

export interface Model {
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  readonly backend: Backend;
  readonly model: Qwen3;
  readonly checkpoint: Checkpoint;
  readonly loadMs: number;
  /** Logits of the last position ([vocab]), or of every position ([ids.length, vocab]). */
  logits(ids: number[], opts?: { allPositions?: boolean }): Promise<Float32Array>;
  /** Token ids for a prompt: a string (through the chat template unless chat is false) or messages. */
  promptIds(prompt: string | ChatMessage[], opts?: ChatOptions & { chat?: boolean; system?: string }): number[];
  /** Streams generation steps; the generator's return value holds the stats. */
  generate(prompt: string | ChatMessage[] | number[], opts?: GenerateOptions & ChatOptions & { chat?: boolean; system?: string }): AsyncGenerator<Step, GenerationStats>;
  dispose(): void;
}

export async function loadModel(path: string, opts: LoadOptions = {}): Promise<Model> {
  const t0 = performance.now();
  const checkpoint = loadCheckpoint(path);
  const tokenizer = TextTokenizer.load(path, checkpoint.config.eosTokenIds);
  const backend = await createBackend(opts.backend ?? "auto");
  let model: Qwen3;
  try {
    model = new Qwen3(checkpoint.config, backend, checkpoint);
  } catch (e) {
    backend.dispose();
    throw e;
  }
  const loadMs = performance.now() - t0;

  const promptIds: Model["promptIds"] = (prompt, o = {}) => {
    if (typeof prompt === "string" && o.chat === false) return tokenizer.encode(prompt);
    const messages: ChatMessage[] = typeof prompt === "string" ? [{ role: "user", content: prompt }] : [...prompt];
    if (o.system !== undefined) messages.unshift({ role: "system", content: o.system });
    return tokenizer.encode(tokenizer.applyChatTemplate(messages, o));
  };

  return {
    config: checkpoint.config, tokenizer, backend, model, checkpoint, loadMs,
    async logits(ids, o = {}) {
      const session = model.newSession(Math.max(1, ids.length));
      try {
        return await model.forward(session, ids, o);
      } finally {
        session.dispose();
      }
    },
    promptIds,
    generate(prompt, o = {}) {
      const ids = Array.isArray(prompt) && typeof prompt[0] === "number" ? (prompt as number[]) : promptIds(prompt as string | ChatMessage[], o);
      return generateSteps(model, tokenizer, ids, o);
    },
    dispose() { model.dispose(); },
  };
}
